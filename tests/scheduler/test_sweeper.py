"""The sweeper: timers applied when due and never before, in bounded batches, surviving a poisoned row,
without drift; and the lazy settlement that makes a late sweeper harmless (SPEC §3, STYLE habit 7).

Runs on SQLite and on PostgreSQL. Time moves with `clock.advance`, never by sleeping.
"""

from __future__ import annotations

import datetime as dt

import pytest

from models import clock, db, ledger, orders, tasks
from models.ledger import AccountKind
from models.orders import Order, OrderStatus
from models.tasks import Task, TaskStatus
from models.users import User
from scheduler import sweeper
from tests import personas as p

pytestmark = pytest.mark.asyncio

PRICE, FEE = 1_000, 100
SLOT = PRICE + FEE
COUNTDOWN_S, REVIEW_S, APPEAL_S, TAKE_WINDOW_S = 300, 1_200, 600, 180  # TEST_SETTINGS


def advance_to(moment: dt.datetime, plus_s: float = 0.0) -> None:
    seconds = (moment - clock.now()).total_seconds() + plus_s
    if seconds > 0:
        clock.advance(seconds)


async def publish(publisher: User, quantity: int = 1) -> Task:
    return await tasks.publish(publisher.id, title="Scan", instructions="Scan the code", unit_price_fen=PRICE, quantity=quantity)


async def taken(n: int = 1) -> tuple[User, list[Order]]:
    """Alice's task with n orders in progress, one per worker."""
    alice = await p.publisher("alice", balance_fen=n * SLOT)
    task = await publish(alice, n)
    return alice, [await orders.take(task.id, (await p.worker(f"w{i}")).id) for i in range(n)]


async def submitted(n: int = 1) -> tuple[User, list[Order]]:
    alice, os = await taken(n)
    return alice, [await orders.submit(o.id, o.worker_id, proof_text="done") for o in os]


async def entries(key: str) -> int:
    return int((await db.fetch_one("SELECT COUNT(*) AS n FROM journal_entries WHERE key = $1", key))["n"])


async def books_clean() -> None:
    await p.assert_books_clean()


# --- each timer, when due and not before -------------------------------------------------------------
async def test_the_countdown_end_moves_an_order_to_review_only_once_its_deadline_passes(database):
    _, [o] = await taken()

    advance_to(o.submit_deadline_at, plus_s=-1)
    assert await sweeper.sweep_orders() == 0
    assert (await Order.get(id=o.id)).status == OrderStatus.IN_PROGRESS

    clock.advance(1.5)
    assert await sweeper.sweep_orders() == 1
    o = await Order.get(id=o.id)
    assert o.status == OrderStatus.AWAITING_REVIEW
    assert o.submitted_at == o.submit_deadline_at
    assert o.review_deadline_at == o.due_at == o.submit_deadline_at + dt.timedelta(seconds=REVIEW_S)
    assert (await User.get(id=o.worker_id)).orders_in_progress == 0  # the worker may take another
    assert await sweeper.sweep_orders() == 0  # nothing more is due
    await books_clean()


async def test_it_auto_approves_after_the_review_window_and_not_before(database):
    alice, [o] = await submitted()

    advance_to(o.review_deadline_at, plus_s=-1)
    assert await sweeper.sweep_orders() == 0
    assert await p.available(o.worker_id) == 0

    clock.advance(1.5)
    assert await sweeper.sweep_orders() == 1
    o = await Order.get(id=o.id)
    assert (o.status, o.finished_by, o.due_at) == (OrderStatus.COMPLETED, "review_timeout", None)
    assert o.finished_at == o.review_deadline_at
    assert await p.available(o.worker_id) == PRICE
    assert await entries(f"order:{o.id}:complete") == 1
    await books_clean()


async def test_a_rejection_not_appealed_in_time_fails_the_order_and_refunds_the_publisher(database):
    alice, [o] = await submitted()
    o = await orders.reject(o.id, alice.id, reason="blurry")
    before = await p.available(alice)

    advance_to(o.appeal_deadline_at, plus_s=-1)
    assert await sweeper.sweep_orders() == 0
    assert (await Order.get(id=o.id)).status == OrderStatus.REJECTED

    clock.advance(1.5)
    assert await sweeper.sweep_orders() == 1
    o = await Order.get(id=o.id)
    assert (o.status, o.finished_by) == (OrderStatus.FAILED, "appeal_timeout")
    assert await p.available(alice) == before + SLOT
    assert await p.available(o.worker_id) == 0
    await books_clean()


async def test_an_appealing_order_has_no_timer(database):
    alice, [o] = await submitted()
    await orders.reject(o.id, alice.id, reason="blurry")
    await orders.appeal(o.id, o.worker_id, reason="it is sharp")

    clock.advance(30 * 86_400)
    assert await sweeper.sweep_all() == 0
    assert (await Order.get(id=o.id)).status == OrderStatus.APPEALING


async def test_a_task_expires_after_its_take_window_refunding_only_untaken_slots(database):
    alice = await p.publisher("alice", balance_fen=3 * SLOT)
    task = await publish(alice, 3)
    bob = await p.worker("bob")
    o = await orders.take(task.id, bob.id)

    advance_to(task.take_deadline_at, plus_s=-1)
    assert await sweeper.sweep_tasks() == 0
    assert (await Task.get(id=task.id)).status == TaskStatus.OPEN

    clock.advance(1.5)
    assert await sweeper.sweep_tasks() == 1
    task = await Task.get(id=task.id)
    assert (task.status, task.slots_untaken, task.slots_refunded) == (TaskStatus.EXPIRED, 0, 2)
    assert await p.available(alice) == 2 * SLOT
    assert await p.platform(AccountKind.ESCROW) == SLOT  # Bob's order is still held
    assert (await Order.get(id=o.id)).status == OrderStatus.IN_PROGRESS
    assert await sweeper.sweep_tasks() == 0
    await books_clean()


async def test_a_full_task_is_never_expired(database):
    alice = await p.publisher("alice", balance_fen=SLOT)
    task = await publish(alice)
    await orders.take(task.id, (await p.worker("bob")).id)
    clock.advance(TAKE_WINDOW_S + 1)
    assert await sweeper.sweep_tasks() == 0
    assert (await Task.get(id=task.id)).status == TaskStatus.FULL


# --- batches ---------------------------------------------------------------------------------------
async def test_a_sweep_claims_at_most_its_batch_and_sweep_all_drains_the_backlog(database):
    _, os = await submitted(7)
    advance_to(max(o.review_deadline_at for o in os), plus_s=1)

    assert await sweeper.sweep_orders(batch=3) == 3
    assert await Order.filter(status=OrderStatus.COMPLETED).count() == 3
    # The oldest deadlines go first.
    done = set(await Order.filter(status=OrderStatus.COMPLETED).values_list("id", flat=True))
    assert done == {o.id for o in sorted(os, key=lambda o: o.review_deadline_at)[:3]}

    assert await sweeper.sweep_all(batch=3) == 4
    assert await Order.filter(status=OrderStatus.COMPLETED).count() == 7
    assert await sweeper.sweep_all(batch=3) == 0
    await books_clean()


async def test_sweep_all_drains_tasks_and_orders_over_many_batches(database):
    alice = await p.publisher("alice", balance_fen=30 * SLOT)
    for _ in range(10):
        await publish(alice)
    _, os = await submitted(12)
    advance_to(max(o.review_deadline_at for o in os), plus_s=1)

    assert await sweeper.sweep_all(batch=4) == 10 + 12
    assert await Task.filter(status=TaskStatus.EXPIRED).count() == 10
    assert await Order.filter(status=OrderStatus.COMPLETED).count() == 12
    await books_clean()


async def test_sweep_all_leaves_nothing_due_after_a_long_outage(database):
    _, [o] = await taken()
    advance_to(o.submit_deadline_at, plus_s=REVIEW_S + 10)  # the scheduler was down for 25 minutes

    await sweeper.sweep_all()

    assert await Order.filter(due_at__lte=clock.now()).count() == 0
    # The review window the countdown's end opened is whole: Alice was never shown any of it.
    o = await Order.get(id=o.id)
    assert o.status == OrderStatus.AWAITING_REVIEW
    assert o.review_deadline_at >= clock.now() + dt.timedelta(seconds=REVIEW_S - 1)


# --- a poisoned row ----------------------------------------------------------------------------------
def explode_for(ids, real):
    def plan_or_explode(o, now, *rest):
        if o.id in ids:
            raise RuntimeError("poisoned row")
        return real(o, now, *rest)

    return plan_or_explode


async def test_a_poisoned_order_is_postponed_with_backoff_while_the_rest_of_the_batch_is_applied(database, monkeypatch):
    from models import timer_batch

    _, os = await submitted(3)
    poisoned = os[1]
    advance_to(max(o.review_deadline_at for o in os), plus_s=1)
    monkeypatch.setattr(timer_batch, "_plan", explode_for({poisoned.id}, timer_batch._plan))

    before = clock.now()
    assert await sweeper.sweep_orders() == 3
    after = clock.now()
    rows = {o.id: await Order.get(id=o.id) for o in os}
    assert [rows[o.id].status for o in os] == [OrderStatus.COMPLETED, OrderStatus.AWAITING_REVIEW, OrderStatus.COMPLETED]
    bad = rows[poisoned.id]
    assert bad.sweep_failures == 1
    assert before + dt.timedelta(seconds=2) <= bad.due_at <= after + dt.timedelta(seconds=2)
    assert await entries(f"order:{poisoned.id}:complete") == 0
    assert await p.available(poisoned.worker_id) == 0
    assert await sweeper.sweep_orders() == 0  # not retried at once: no spinning

    clock.advance(2.5)
    assert await sweeper.sweep_orders() == 1
    bad = await Order.get(id=poisoned.id)
    assert bad.sweep_failures == 2 and bad.due_at > clock.now() + dt.timedelta(seconds=3)  # 4 s the second time

    monkeypatch.undo()
    clock.advance(5)
    assert await sweeper.sweep_orders() == 1
    bad = await Order.get(id=poisoned.id)
    assert bad.status == OrderStatus.COMPLETED and bad.finished_at == bad.review_deadline_at
    assert await p.available(poisoned.worker_id) == PRICE
    await books_clean()


async def test_a_batch_that_fails_as_a_whole_is_settled_row_by_row_postponing_only_the_poisoned_row(database, monkeypatch):
    _, os = await submitted(3)
    poisoned = os[1]
    advance_to(max(o.review_deadline_at for o in os), plus_s=1)
    real_complete = orders._complete

    async def complete_or_explode(o, event, out):  # the row-by-row path's completion
        if o.id == poisoned.id:
            raise RuntimeError("poisoned row")
        return await real_complete(o, event, out)

    async def broken_ledger(entries):  # the batch's ledger write fails: the whole batch rolls back
        raise RuntimeError("batch write failed")

    monkeypatch.setattr(orders, "_complete", complete_or_explode)
    monkeypatch.setattr(ledger, "post_many", broken_ledger)

    assert await sweeper.sweep_orders() == 3
    rows = [await Order.get(id=o.id) for o in os]
    assert [o.status for o in rows] == [OrderStatus.COMPLETED, OrderStatus.AWAITING_REVIEW, OrderStatus.COMPLETED]
    assert [o.sweep_failures for o in rows] == [0, 1, 0]
    assert [await entries(f"order:{o.id}:complete") for o in os] == [1, 0, 1]
    await books_clean()


async def test_a_poisoned_order_backs_off_at_most_five_minutes(database, monkeypatch):
    from models import timer_batch

    _, [o] = await submitted()
    await Order.filter(id=o.id).update(sweep_failures=20)
    advance_to(o.review_deadline_at, plus_s=1)
    monkeypatch.setattr(timer_batch, "_plan", explode_for({o.id}, timer_batch._plan))

    assert await sweeper.sweep_orders() == 1
    row = await Order.get(id=o.id)
    assert row.sweep_failures == 21
    assert row.due_at <= clock.now() + dt.timedelta(seconds=sweeper.MAX_BACKOFF_S)


async def test_a_poisoned_task_does_not_starve_the_other_due_tasks(database, monkeypatch):
    alice = await p.publisher("alice", balance_fen=2 * SLOT)
    poisoned = await publish(alice)
    clock.advance(1)
    healthy = await publish(alice)
    advance_to(healthy.take_deadline_at, plus_s=1)
    real_expire = sweeper.expire_due

    async def expire_or_explode(task_id):
        if task_id == poisoned.id:
            raise RuntimeError("poisoned row")
        return await real_expire(task_id)

    monkeypatch.setattr(sweeper, "expire_due", expire_or_explode)
    from models import timer_batch

    async def broken_ledger(entries):  # the batch fails as a whole: row by row, the poisoned one backs off
        raise RuntimeError("batch write failed")

    monkeypatch.setattr(ledger, "post_many", broken_ledger)

    for _ in range(3):
        await sweeper.sweep_tasks(batch=1)

    assert (await Task.get(id=healthy.id)).status == TaskStatus.EXPIRED
    assert (await Task.get(id=poisoned.id)).status == TaskStatus.OPEN


# --- lazy settlement ---------------------------------------------------------------------------------
async def test_reading_an_overdue_order_applies_its_timer_without_the_sweeper(database):
    _, [o] = await taken()
    advance_to(o.submit_deadline_at, plus_s=1)

    seen = await orders.get_order(o.id, worker_id=o.worker_id)

    assert seen.status == OrderStatus.AWAITING_REVIEW
    assert (await Order.get(id=o.id)).status == OrderStatus.AWAITING_REVIEW
    assert await sweeper.sweep_orders() == 0  # nothing left for the sweeper


async def test_reading_an_order_overdue_for_two_windows_opens_the_review_window_whole(database):
    alice, [o] = await taken()
    advance_to(o.submit_deadline_at, plus_s=REVIEW_S + 1)

    seen = await orders.get_order(o.id, publisher_id=alice.id)

    # Nobody applied the countdown's end in time: Alice's review window opens now, whole; she is
    # not auto-approved without having had one (SPEC §3, docs/timers.md).
    assert seen.status == OrderStatus.AWAITING_REVIEW
    assert seen.review_deadline_at == seen.due_at
    assert abs((seen.review_deadline_at - clock.now()).total_seconds() - REVIEW_S) < 1
    assert await p.available(o.worker_id) == 0
    await books_clean()


async def test_reading_an_overdue_rejection_fails_the_order_and_refunds(database):
    alice, [o] = await submitted()
    o = await orders.reject(o.id, alice.id, reason="blurry")
    before = await p.available(alice)
    advance_to(o.appeal_deadline_at, plus_s=1)

    seen = await orders.get_order(o.id, worker_id=o.worker_id)

    assert seen.status == OrderStatus.FAILED
    assert await p.available(alice) == before + SLOT
    await books_clean()


async def test_reading_an_overdue_task_expires_it_and_refunds(database):
    alice = await p.publisher("alice", balance_fen=2 * SLOT)
    task = await publish(alice, 2)
    advance_to(task.take_deadline_at, plus_s=1)

    seen = await tasks.get_task(task.id)

    assert (seen.status, seen.slots_refunded) == (TaskStatus.EXPIRED, 2)
    assert await p.available(alice) == 2 * SLOT
    assert await sweeper.sweep_tasks() == 0
    await books_clean()


async def test_a_late_person_gets_the_timer_outcome_not_their_own(database):
    alice, [o] = await submitted()
    advance_to(o.review_deadline_at, plus_s=1)

    with pytest.raises(orders.DeadlinePassed) as refused:
        await orders.reject(o.id, alice.id, reason="too late")

    assert refused.value.details["status"] == "completed"
    assert await p.available(o.worker_id) == PRICE
    await books_clean()


# --- no drift ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("late_by_s", [0.5, orders.LATE_TIMER_GRACE_S - 1])
async def test_a_sweep_a_moment_late_does_not_move_the_next_deadline(database, late_by_s):
    _, [o] = await taken()
    advance_to(o.submit_deadline_at, plus_s=late_by_s)

    await sweeper.sweep_orders()

    o = await Order.get(id=o.id)
    assert o.status == OrderStatus.AWAITING_REVIEW
    assert o.review_deadline_at == o.submit_deadline_at + dt.timedelta(seconds=REVIEW_S)
    assert o.due_at == o.review_deadline_at

    advance_to(o.review_deadline_at, plus_s=500)  # the end of a window is final however late it is applied
    await sweeper.sweep_orders()
    o = await Order.get(id=o.id)
    assert o.status == OrderStatus.COMPLETED and o.finished_at == o.review_deadline_at


@pytest.mark.parametrize("late_by_s", [orders.LATE_TIMER_GRACE_S + 1, 500, 1_199, 30 * 86_400])
@pytest.mark.parametrize("who", ["sweeper", "reader"])
async def test_a_countdown_end_applied_late_opens_a_whole_review_window(database, late_by_s, who):
    alice, [o] = await taken()
    advance_to(o.submit_deadline_at, plus_s=late_by_s)  # the schedulers were down; nobody read it
    applied_at = clock.now()

    if who == "sweeper":
        await sweeper.sweep_orders()
    else:
        await orders.get_order(o.id, publisher_id=alice.id)

    o = await Order.get(id=o.id)
    assert o.status == OrderStatus.AWAITING_REVIEW
    assert o.submitted_at == o.submit_deadline_at  # the work was due then; the window opens now
    assert applied_at + dt.timedelta(seconds=REVIEW_S) <= o.review_deadline_at == o.due_at
    assert o.review_deadline_at <= clock.now() + dt.timedelta(seconds=REVIEW_S)

    advance_to(o.review_deadline_at, plus_s=-1)  # Alice may still reject in the last second
    rejected = await orders.reject(o.id, alice.id, reason="blurry")
    assert rejected.status == OrderStatus.REJECTED
    await books_clean()


async def test_deadlines_are_copied_at_publishing_so_a_settings_change_moves_none(database):
    from models import settings as market_settings

    _, [o] = await taken()
    await market_settings.update({"review_window_s": 60, "countdown_s": 60}, operator_id=1)
    advance_to(o.submit_deadline_at, plus_s=1)

    await sweeper.sweep_orders()

    o = await Order.get(id=o.id)
    assert o.review_deadline_at == o.submit_deadline_at + dt.timedelta(seconds=REVIEW_S)


# --- a batch killed half-way -------------------------------------------------------------------------
@pytest.mark.parametrize("step", ["claimed", "written", "locked"])
async def test_a_batch_killed_half_way_leaves_nothing_half_done(database, monkeypatch, step):
    import asyncio

    from models import timer_batch

    alice, os = await submitted(6)
    await orders.reject(os[0].id, alice.id, reason="blurry")
    _, [counting] = await taken()
    advance_to(max([o.review_deadline_at for o in os] + [counting.submit_deadline_at]), plus_s=700)  # all due

    async def snapshot():
        return (
            [(o.status, o.due_at) for o in await Order.filter(id__in=[o.id for o in os] + [counting.id]).order_by("id")],
            await db.fetch("SELECT code, balance_fen FROM accounts ORDER BY code"),
            [await db.fetch_one(f"SELECT COUNT(*) AS n FROM {t}") for t in ("journal_entries", "postings", "outbox", "audit_log", "referral_rewards")],
            await db.fetch("SELECT id, orders_live, status FROM tasks ORDER BY id"),
            await db.fetch("SELECT id, orders_in_progress FROM users ORDER BY id"),
        )

    before = await snapshot()
    reached, never = asyncio.Event(), asyncio.Event()

    async def stop_here(name):
        if name == step:
            reached.set()
            await never.wait()  # killed here, holding the batch's writes uncommitted

    monkeypatch.setattr(timer_batch, "_checkpoint", stop_here)
    sweep = asyncio.create_task(sweeper.sweep_orders())
    await asyncio.wait_for(reached.wait(), 10)
    sweep.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sweep

    assert await snapshot() == before  # the transaction rolled back: nothing of the batch stands
    await books_clean()

    monkeypatch.undo()
    assert await sweeper.sweep_all() == 7
    statuses = [o.status for o in await Order.filter(id__in=[o.id for o in os] + [counting.id]).order_by("id")]
    assert statuses == [OrderStatus.FAILED] + [OrderStatus.COMPLETED] * 5 + [OrderStatus.AWAITING_REVIEW]
    assert [await entries(f"order:{o.id}:complete") for o in os[1:]] == [1] * 5
    await books_clean()
