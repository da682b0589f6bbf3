"""Races: many coroutines doing the same thing at the same moment, on PostgreSQL.

Every test starts a crowd with `asyncio.gather`; each coroutine that calls a domain function runs its
transaction on its own pooled connection (the test URL allows 40), so the database, not Python, decides
who wins. For every race we assert the winner's effect (money moved exactly once, one audit row, one
journal entry) AND the loser's answer (a typed DomainError with its stable code), and that the books
still balance afterwards.

SQLite serialises writers, so these tests run only with TEST_DATABASE_URL (marker `postgres`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any, Awaitable, Iterable

import pytest
import pytest_asyncio

from models import clock, db, ledger, orders, recharges, tasks, withdrawals
from models import settings as market_settings
from models.errors import DomainError
from models.ledger import AccountKind
from models.orders import Order, OrderStatus
from models.tasks import Task, TaskStatus
from models.users import User
from models.withdrawals import Withdrawal, WithdrawalStatus
from scheduler import sweeper
from tests import personas as p

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]


@pytest_asyncio.fixture(autouse=True)
async def warm_pool(database):
    """Open the pool's 40 connections before the crowd arrives. The PostgreSQL server is shared (other
    test runs, benchmarks), so opening a connection can meet "too many clients" for a moment; that is
    the environment, not the race under test, so it is waited out here rather than in the race."""
    import asyncpg

    client = db.conn()
    if getattr(client, "_pool", None) is None:
        await client.create_connection(with_db=True)
    held = []
    try:
        for _ in range(40):
            for attempt in range(300):
                try:
                    held.append(await client._pool.acquire())
                    break
                except asyncpg.TooManyConnectionsError:
                    await asyncio.sleep(0.1)
    finally:
        for conn in held:
            await client._pool.release(conn)
    yield

PRICE, FEE = 1_000, 100  # P and F = floor(P × 10 %) with TEST_SETTINGS
SLOT = PRICE + FEE
OPERATOR_1, OPERATOR_2, OPERATOR_3 = 9_001, 9_002, 9_003


# --- helpers ---------------------------------------------------------------------------------------
async def crowd(coros: Iterable[Awaitable[Any]]) -> list[Any]:
    """Run everything at once; domain refusals are returned, anything else fails the test."""
    results = await asyncio.gather(*coros, return_exceptions=True)
    unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, DomainError)]
    assert not unexpected, f"{len(unexpected)} unexpected errors, first: {unexpected[0]!r}"
    return results


def split(results: list[Any]) -> tuple[list[Any], list[DomainError]]:
    wins = [r for r in results if not isinstance(r, DomainError)]
    losses = [r for r in results if isinstance(r, DomainError)]
    return wins, losses


def codes(errors: list[DomainError]) -> Counter:
    return Counter(e.code for e in errors)


async def workers(n: int, prefix: str = "w") -> list[User]:
    return list(await asyncio.gather(*(p.worker(f"{prefix}{i}") for i in range(n))))


async def publish(publisher: User, *, quantity: int = 1, price: int = PRICE) -> Task:
    return await tasks.publish(
        publisher.id, title="Scan the code", instructions="Scan the QR code and confirm", unit_price_fen=price, quantity=quantity
    )


async def count(sql: str, *args: Any) -> int:
    return int((await db.fetch_one(sql, *args))["n"])


async def entries(key: str) -> int:
    return await count("SELECT COUNT(*) AS n FROM journal_entries WHERE key = $1", key)


async def audit_rows(action: str, target_id: int) -> int:
    return await count("SELECT COUNT(*) AS n FROM audit_log WHERE action = $1 AND target_id = $2", action, target_id)


async def per_target(action: str) -> Counter:
    """How many audit rows of `action` each target has (one query for a whole crowd)."""
    rows = await db.fetch("SELECT target_id, COUNT(*) AS n FROM audit_log WHERE action = $1 GROUP BY target_id", action)
    return Counter({r["target_id"]: int(r["n"]) for r in rows})


async def per_key(pattern: str) -> Counter:
    rows = await db.fetch("SELECT key, COUNT(*) AS n FROM journal_entries WHERE key LIKE $1 GROUP BY key", pattern)
    return Counter({r["key"]: int(r["n"]) for r in rows})


async def books_clean() -> None:
    await p.assert_books_clean()
    total = await db.fetch_one("SELECT COALESCE(SUM(balance_fen), 0) AS s FROM accounts")
    assert int(total["s"]) == 0, "money was created or destroyed"


def advance_to(moment: dt.datetime, plus_s: float = 0.0) -> None:
    seconds = (moment - clock.now()).total_seconds() + plus_s
    if seconds > 0:
        clock.advance(seconds)


async def awaiting_review(n: int, *, n_tasks: int = 1, spread_s: float = 0.0) -> tuple[User, list[Order]]:
    """Alice's tasks with n orders awaiting review, each taken by its own worker. With `spread_s`,
    the submissions (hence the review deadlines) are spread that many seconds apart."""
    alice = await p.publisher("alice", balance_fen=n * SLOT)
    per_task = n // n_tasks
    ts = [await publish(alice, quantity=per_task) for _ in range(n_tasks)]
    crew = await workers(n)
    taken = await asyncio.gather(*(orders.take(ts[i % n_tasks].id, w.id) for i, w in enumerate(crew)))
    if spread_s:
        submitted = []
        for o in taken:
            submitted.append(await orders.submit(o.id, o.worker_id, proof_text="done"))
            clock.advance(spread_s)
    else:
        submitted = await asyncio.gather(*(orders.submit(o.id, o.worker_id, proof_text="done") for o in taken))
    return alice, list(submitted)


async def fresh(os: list[Order]) -> list[Order]:
    return [await Order.get(id=o.id) for o in os]


# --- takes -----------------------------------------------------------------------------------------
async def test_two_hundred_workers_clicking_one_slot_make_exactly_one_order(database):
    alice = await p.publisher("alice", balance_fen=SLOT)
    task = await publish(alice)
    crew = await workers(200)

    results = await crowd(orders.take(task.id, w.id) for w in crew)

    wins, losses = split(results)
    assert len(wins) == 1 and len(losses) == 199
    assert set(codes(losses)) <= {"slot_taken", "task_closed"}, codes(losses)
    assert all(e.status == 409 for e in losses)
    assert await Order.filter(task_id=task.id).count() == 1
    task = await Task.get(id=task.id)
    assert (task.status, task.slots_untaken, task.orders_live) == (TaskStatus.FULL, 0, 1)
    # Only the winner holds an order in progress: the losers' counters were rolled back.
    counters = dict(await User.filter(id__in=[w.id for w in crew]).values_list("id", "orders_in_progress"))
    assert counters == {w.id: int(w.id == wins[0].worker_id) for w in crew}
    assert await p.platform(AccountKind.ESCROW) == SLOT
    await books_clean()


async def test_five_hundred_workers_on_twenty_slots_make_exactly_twenty_orders(database):
    alice = await p.publisher("alice", balance_fen=20 * SLOT)
    task = await publish(alice, quantity=20)
    crew = await workers(500)

    results = await crowd(orders.take(task.id, w.id) for w in crew)

    wins, losses = split(results)
    assert len(wins) == 20 and len(losses) == 480
    assert set(codes(losses)) <= {"slot_taken", "task_closed"}, codes(losses)
    assert len({o.worker_id for o in wins}) == 20
    assert await Order.filter(task_id=task.id).count() == 20
    task = await Task.get(id=task.id)
    assert (task.status, task.slots_untaken, task.orders_live) == (TaskStatus.FULL, 0, 20)
    assert sum(await User.filter(id__in=[w.id for w in crew]).values_list("orders_in_progress", flat=True)) == 20
    await books_clean()


async def test_a_worker_racing_themself_over_ten_tasks_gets_only_their_limit(database):
    await market_settings.update({"max_orders_in_progress": 1}, operator_id=1)
    alice = await p.publisher("alice", balance_fen=10 * SLOT)
    ts = [await publish(alice) for _ in range(10)]
    bob = await p.worker("bob")

    results = await crowd(orders.take(t.id, bob.id) for t in ts)

    wins, losses = split(results)
    assert len(wins) == 1
    assert codes(losses) == {"too_many_orders_in_progress": 9}
    assert await Order.filter(worker_id=bob.id).count() == 1
    assert (await User.get(id=bob.id)).orders_in_progress == 1
    still_open = await Task.filter(status=TaskStatus.OPEN, slots_untaken=1).count()
    assert still_open == 9
    await books_clean()


async def test_the_same_worker_clicking_one_task_twenty_times_gets_one_order(database):
    alice = await p.publisher("alice", balance_fen=5 * SLOT)
    task = await publish(alice, quantity=5)
    bob = await p.worker("bob")

    wins, losses = split(await crowd(orders.take(task.id, bob.id) for _ in range(20)))

    assert len(wins) == 1
    # The limit (3 in progress) or the one-order-per-task rule stops every other click.
    assert set(codes(losses)) <= {"already_took_task", "too_many_orders_in_progress"}, codes(losses)
    assert await Order.filter(worker_id=bob.id).count() == 1
    assert (await User.get(id=bob.id)).orders_in_progress == 1
    assert (await Task.get(id=task.id)).slots_untaken == 4
    await books_clean()


# --- a person racing a timer -----------------------------------------------------------------------
async def test_approve_racing_the_auto_approve_pays_each_order_exactly_once(database):
    n = 60
    alice, os = await awaiting_review(n, spread_s=0.005)
    deadlines = sorted(o.review_deadline_at for o in os)
    advance_to(deadlines[n // 3])  # a third is due at once, the rest fall due during the race

    results = await crowd(
        [orders.approve(o.id, alice.id) for o in os]
        + [sweeper.sweep_orders(batch=n), sweeper.sweep_orders(batch=n)]
        + [orders.run_timer(o.id) for o in os]
    )

    approvals, timers = results[:n], results[n + 2:]
    os = await fresh(os)
    for o, approval in zip(os, approvals):
        assert o.status == OrderStatus.COMPLETED
        assert await entries(f"order:{o.id}:complete") == 1
        assert await audit_rows("order.approve", o.id) + await audit_rows("order.review_timeout", o.id) == 1
        if isinstance(approval, DomainError):  # the timer got there first: the publisher learns it
            assert approval.code == "deadline_passed" and approval.details["status"] == "completed"
            assert o.finished_by == "review_timeout"
        else:
            assert o.finished_by == "approve"
    assert all(t is False for o, t in zip(os, timers) if o.finished_by == "approve")
    for o in os:
        assert await p.available(o.worker_id) == PRICE
    assert await p.platform(AccountKind.ESCROW) == 0
    assert await p.platform(AccountKind.FEES) == n * FEE
    await books_clean()


async def test_reject_racing_the_auto_approve_either_rejects_or_pays_never_both(database):
    n = 60
    alice, os = await awaiting_review(n, spread_s=0.005)
    advance_to(sorted(o.review_deadline_at for o in os)[n // 3])

    results = await crowd(
        [orders.reject(o.id, alice.id, reason="blurry") for o in os] + [sweeper.sweep_orders(batch=n)] + [orders.run_timer(o.id) for o in os]
    )

    rejections = results[:n]
    os = await fresh(os)
    for o, rejection in zip(os, rejections):
        if isinstance(rejection, DomainError):
            assert rejection.code == "deadline_passed" and rejection.details["status"] == "completed"
            assert o.status == OrderStatus.COMPLETED and await entries(f"order:{o.id}:complete") == 1
            assert await p.available(o.worker_id) == PRICE
        else:
            assert o.status == OrderStatus.REJECTED and await entries(f"order:{o.id}:complete") == 0
            assert o.appeal_deadline_at > o.rejected_at
            assert await p.available(o.worker_id) == 0
        assert await audit_rows("order.reject", o.id) + await audit_rows("order.review_timeout", o.id) == 1
    await books_clean()


async def test_appeal_racing_the_appeal_timeout_either_appeals_or_fails_never_both(database):
    n = 60
    alice, os = await awaiting_review(n)
    rejected = []
    for o in os:
        rejected.append(await orders.reject(o.id, alice.id, reason="blurry"))
        clock.advance(0.005)
    advance_to(sorted(o.appeal_deadline_at for o in rejected)[n // 3])
    before = await p.available(alice)

    results = await crowd(
        [orders.appeal(o.id, o.worker_id, reason="it is sharp") for o in rejected]
        + [sweeper.sweep_orders(batch=n)]
        + [orders.run_timer(o.id) for o in rejected]
    )

    appeals = results[:n]
    failed = 0
    for o, appeal in zip(await fresh(rejected), appeals):
        if isinstance(appeal, DomainError):
            assert appeal.code == "deadline_passed" and appeal.details["status"] == "failed"
            assert o.status == OrderStatus.FAILED and await entries(f"order:{o.id}:fail") == 1
            failed += 1
        else:
            assert o.status == OrderStatus.APPEALING and o.due_at is None
            assert await entries(f"order:{o.id}:fail") == 0
        assert await audit_rows("order.appeal", o.id) + await audit_rows("order.appeal_timeout", o.id) == 1
    assert await p.available(alice) == before + failed * SLOT
    await books_clean()


# --- two sweepers ----------------------------------------------------------------------------------
async def _in_progress(n: int, n_tasks: int) -> tuple[User, list[Order]]:
    alice = await p.publisher("alice", balance_fen=n * SLOT)
    ts = [await publish(alice, quantity=n // n_tasks) for _ in range(n_tasks)]
    crew = await workers(n)
    taken = await asyncio.gather(*(orders.take(ts[i % n_tasks].id, w.id) for i, w in enumerate(crew)))
    return alice, list(taken)


async def test_two_sweepers_share_three_hundred_due_orders_and_apply_each_timer_once(database):
    n, n_tasks = 300, 1
    alice, os = await _in_progress(n, n_tasks)
    advance_to(max(o.submit_deadline_at for o in os), plus_s=1)

    claimed = await crowd([sweeper.sweep_orders(batch=n), sweeper.sweep_orders(batch=n)])

    assert sum(claimed) == n, f"the sweepers claimed {claimed}: overlapping or missed work"
    os = await fresh(os)
    assert {o.status for o in os} == {OrderStatus.AWAITING_REVIEW}
    assert all(o.sweep_failures == 0 for o in os), "a sweeper postponed rows (lock conflict between sweepers?)"
    assert await per_target("order.countdown_end") == Counter({o.id: 1 for o in os})
    for o in os:
        assert o.review_deadline_at == o.submit_deadline_at + dt.timedelta(seconds=o.review_window_s)
    assert sum(await User.filter(id__in=[o.worker_id for o in os]).values_list("orders_in_progress", flat=True)) == 0

    advance_to(max(o.review_deadline_at for o in os), plus_s=1)
    claimed = await crowd([sweeper.sweep_orders(batch=n), sweeper.sweep_orders(batch=n)])

    assert sum(claimed) == n, f"the sweepers claimed {claimed}"
    os = await fresh(os)
    assert {o.status for o in os} == {OrderStatus.COMPLETED}
    assert all(o.sweep_failures == 0 for o in os), "a sweeper postponed rows (lock conflict between sweepers?)"
    assert await per_key("order:%:complete") == Counter({f"order:{o.id}:complete": 1 for o in os})
    assert await per_target("order.review_timeout") == Counter({o.id: 1 for o in os})
    assert await p.platform(AccountKind.ESCROW) == 0
    assert await p.platform(AccountKind.FEES) == n * FEE
    assert await count("SELECT COUNT(*) AS n FROM journal_entries WHERE kind = 'order_complete'") == n
    assert set(await Task.filter(publisher_id=alice.id).values_list("status", flat=True)) == {TaskStatus.FINISHED}
    await books_clean()


async def test_two_sweepers_expire_three_hundred_due_tasks_once_each(database):
    n = 300
    alice = await p.publisher("alice", balance_fen=n * 2 * SLOT)
    ts = list(await asyncio.gather(*(publish(alice, quantity=2) for _ in range(n))))
    advance_to(max(t.take_deadline_at for t in ts), plus_s=1)

    claimed = await crowd([sweeper.sweep_tasks(batch=n), sweeper.sweep_tasks(batch=n)])

    assert sum(claimed) == n, f"the sweepers claimed {claimed}"
    assert await Task.filter(status=TaskStatus.EXPIRED).count() == n
    assert await per_key("task:%:expire") == Counter({f"task:{t.id}:expire": 1 for t in ts})
    assert await per_target("task.expire") == Counter({t.id: 1 for t in ts})
    assert await p.available(alice) == n * 2 * SLOT
    assert await p.platform(AccountKind.ESCROW) == 0
    await books_clean()


async def test_a_cancel_racing_the_expiry_sweep_refunds_the_slots_once(database):
    n = 50
    # One publisher per task: see the deadlock tests below for what a shared publisher does.
    pubs = list(await asyncio.gather(*(p.publisher(f"pub{i}", balance_fen=3 * SLOT) for i in range(n))))
    ts = []
    for pub in pubs:
        ts.append(await publish(pub, quantity=3))
        clock.advance(0.005)
    advance_to(sorted(t.take_deadline_at for t in ts)[n // 3])

    results = await crowd([tasks.cancel(t.id, t.publisher_id) for t in ts] + [sweeper.sweep_tasks(batch=n)])

    for t, cancel in zip(ts, results[:n]):
        t = await Task.get(id=t.id)
        if isinstance(cancel, DomainError):
            assert cancel.code == "invalid_transition" and cancel.details["status"] == "expired"
            assert t.status == TaskStatus.EXPIRED
        else:
            assert t.status == TaskStatus.CANCELLED
        assert await entries(f"task:{t.id}:expire") + await entries(f"task:{t.id}:cancel") == 1
        assert await p.available(t.publisher_id) == 3 * SLOT
    await books_clean()


# --- a sweep batch holding its locks while others act ---------------------------------------------
# A sweep settles a batch of rows in one transaction, taking its locks in the one fixed order (orders
# claimed with SKIP LOCKED → users → tasks by id → accounts by code; models/timer_batch.py). Each test
# below pauses a batch at a step before its commit (`timer_batch._checkpoint`) while a person, or a
# second sweeper, acts on another row of the same task / account shard / publisher: nobody may
# deadlock (PostgreSQL would abort one side with DeadlockDetectedError) and nothing is postponed.


def pause_batch_at(step: str, *, parties: int = 1):
    """A `timer_batch._checkpoint` that stops each calling asyncio task at `step` until released."""
    first_done, go = asyncio.Event(), asyncio.Event()
    barrier = asyncio.Barrier(parties) if parties > 1 else None
    seen: set = set()

    async def checkpoint(name: str) -> None:
        me = asyncio.current_task()
        if name != step or me in seen:
            return
        seen.add(me)
        if barrier is not None:
            await asyncio.wait_for(barrier.wait(), 10)
        else:
            first_done.set()
            await asyncio.wait_for(go.wait(), 10)

    return checkpoint, first_done, go


@pytest.mark.parametrize("step", ["claimed", "written", "locked"])
async def test_a_cancel_while_the_expiry_batch_holds_the_publishers_account_does_not_deadlock(database, monkeypatch, step):
    from models import timer_batch

    alice = await p.publisher("alice", balance_fen=40 * SLOT)
    t1, t2 = await publish(alice), await publish(alice)  # due when the sweep runs
    clock.advance(200)
    later = [await publish(alice) for _ in range(16)]  # still open; one shares t2's escrow shard
    t3 = next(t for t in later if t.id % ledger.PLATFORM_SHARDS == t2.id % ledger.PLATFORM_SHARDS)
    checkpoint, paused, go = pause_batch_at(step)
    monkeypatch.setattr(timer_batch, "_checkpoint", checkpoint)

    sweep = asyncio.create_task(sweeper.sweep_tasks(batch=10))
    await paused.wait()  # the batch holds t1 and t2 (and, once "locked", alice's account and their shards)
    cancel = asyncio.create_task(tasks.cancel(t3.id, alice.id))
    await asyncio.sleep(0.3)  # the cancel holds t3 and waits for (or takes) the accounts
    go.set()
    swept, cancelled = await asyncio.gather(sweep, cancel, return_exceptions=True)

    assert swept == 2
    assert not isinstance(cancelled, BaseException), repr(cancelled)
    statuses = {t.id: (await Task.get(id=t.id)).status for t in (t1, t2, t3)}
    assert statuses == {t1.id: TaskStatus.EXPIRED, t2.id: TaskStatus.EXPIRED, t3.id: TaskStatus.CANCELLED}
    await books_clean()


@pytest.mark.parametrize("step", ["claimed", "written", "locked"])
async def test_an_approve_while_the_review_batch_holds_an_escrow_shard_does_not_deadlock(database, monkeypatch, step):
    from models import timer_batch

    alice = await p.publisher("alice", balance_fen=40 * SLOT)
    task_a = await publish(alice)
    for _ in range(15):
        await publish(alice)
    task_b = await publish(alice, quantity=2)
    assert task_a.id % ledger.PLATFORM_SHARDS == task_b.id % ledger.PLATFORM_SHARDS  # one escrow shard
    w1, w2, w3 = await workers(3)
    o1, o2, o3 = await orders.take(task_a.id, w1.id), await orders.take(task_b.id, w2.id), await orders.take(task_b.id, w3.id)
    o1 = await orders.submit(o1.id, w1.id)
    clock.advance(0.01)
    o2 = await orders.submit(o2.id, w2.id)
    clock.advance(250)
    o3 = await orders.submit(o3.id, w3.id)
    advance_to(o2.review_deadline_at, plus_s=1)  # o1 and o2 are due; o3 has 249 s of review left
    checkpoint, paused, go = pause_batch_at(step)
    monkeypatch.setattr(timer_batch, "_checkpoint", checkpoint)

    sweep = asyncio.create_task(sweeper.sweep_orders(batch=10))
    await paused.wait()  # the batch holds o1, o2 (and, once "locked", tasks A and B and the shard)
    approve = asyncio.create_task(orders.approve(o3.id, alice.id))
    await asyncio.sleep(0.3)  # the approve holds o3 and waits for (or takes) task B and the shard
    go.set()
    swept, approved = await asyncio.gather(sweep, approve, return_exceptions=True)

    assert swept == 2
    assert not isinstance(approved, BaseException), repr(approved)
    os = await fresh([o1, o2, o3])
    assert [o.status for o in os] == [OrderStatus.COMPLETED] * 3
    assert [o.sweep_failures for o in os] == [0, 0, 0]
    await books_clean()


@pytest.mark.parametrize("step", ["claimed", "written"])
async def test_two_sweepers_crossing_two_tasks_do_not_deadlock(database, monkeypatch, step):
    from models import timer_batch

    alice = await p.publisher("alice", balance_fen=4 * SLOT)
    task_a, task_b = await publish(alice, quantity=2), await publish(alice, quantity=2)
    ws = await workers(4)
    # Due in this order: o1 (A), o2 (B) | o3 (B), o4 (A): each sweeper claims one of each task.
    plan = [(task_a, ws[0]), (task_b, ws[1]), (task_b, ws[2]), (task_a, ws[3])]
    os = []
    for task, w in plan:
        o = await orders.take(task.id, w.id)
        os.append(await orders.submit(o.id, w.id))
        clock.advance(0.01)
    advance_to(os[-1].review_deadline_at, plus_s=1)
    checkpoint, _, _ = pause_batch_at(step, parties=2)  # both batches hold their rows at once
    monkeypatch.setattr(timer_batch, "_checkpoint", checkpoint)

    claimed = await asyncio.gather(sweeper.sweep_orders(batch=2), sweeper.sweep_orders(batch=2), return_exceptions=True)

    assert claimed == [2, 2]
    os = await fresh(os)
    assert [o.status for o in os] == [OrderStatus.COMPLETED] * 4
    assert [o.sweep_failures for o in os] == [0] * 4, "a healthy row was postponed"
    await books_clean()


async def test_two_schedulers_with_two_lanes_each_and_people_acting_on_the_same_rows_apply_everything_once(database, monkeypatch):
    """Two scheduler processes (two lanes each) sweep orders in all three timed states on a few
    shared tasks while their people act on the same orders: every order ends in exactly one
    outcome, each timer or action applied once, nothing postponed, and the books balance."""
    from models import timer_batch

    alice, os = await awaiting_review(60, n_tasks=2, spread_s=0.005)  # review windows end at t0 + 1200 s
    reviews, appeals = os[:30], os[30:]
    clock.advance(600)
    rejected = []
    for o in appeals:  # appeal windows end at t0 + 1200 s too
        rejected.append(await orders.reject(o.id, alice.id, reason="blurry"))
        clock.advance(0.005)
    clock.advance(300)
    await p.fund(alice, 30 * SLOT)
    fresh_tasks = [await publish(alice, quantity=10) for _ in range(3)]
    in_progress = []
    for i, w in enumerate(await workers(30, prefix="late")):  # countdowns end at t0 + 1200 s as well
        in_progress.append(await orders.take(fresh_tasks[i % 3].id, w.id))
        clock.advance(0.005)
    os = reviews + rejected + in_progress
    deadlines = sorted([o.submit_deadline_at for o in in_progress] + [o.review_deadline_at for o in reviews]
                       + [o.appeal_deadline_at for o in rejected])
    advance_to(deadlines[len(deadlines) // 2])  # half is due at once, the rest falls due during the race
    batches = []
    real_settle = timer_batch.settle_orders

    async def counting(batch):
        n = await real_settle(batch)
        batches.append(n)
        return n

    monkeypatch.setattr(timer_batch, "settle_orders", counting)

    async def scheduler():
        total = 0
        for _ in range(5):
            total += await sweeper.sweep_all(batch=7, lanes=2)
            clock.advance(0.2)
            await asyncio.sleep(0)
        return total

    # People act on two orders in three; the third is left to the schedulers alone.
    acting = lambda group: [o for i, o in enumerate(group) if i % 3]  # noqa: E731
    people = ([orders.submit(o.id, o.worker_id, proof_text="done") for o in acting(in_progress)]
              + [orders.approve(o.id, alice.id) for o in acting(reviews)]
              + [orders.appeal(o.id, o.worker_id, reason="it is sharp") for o in acting(rejected)])
    results = await crowd([scheduler(), scheduler()] + people)

    acted = results[2:]
    assert all(isinstance(r, (Order, DomainError)) for r in acted), [r for r in acted if not isinstance(r, (Order, DomainError))]
    assert {r.code for r in acted if isinstance(r, DomainError)} <= {"deadline_passed"}, Counter(r.code for r in acted if isinstance(r, DomainError))
    for o in await fresh(in_progress):
        assert o.status == OrderStatus.AWAITING_REVIEW and o.sweep_failures == 0
        assert await audit_rows("order.submit", o.id) + await audit_rows("order.countdown_end", o.id) == 1
    for o in await fresh(reviews):
        assert o.status == OrderStatus.COMPLETED and o.sweep_failures == 0
        assert await entries(f"order:{o.id}:complete") == 1
        assert await audit_rows("order.approve", o.id) + await audit_rows("order.review_timeout", o.id) == 1
    for o in await fresh(rejected):
        assert o.status in (OrderStatus.APPEALING, OrderStatus.FAILED) and o.sweep_failures == 0
        assert await entries(f"order:{o.id}:fail") == (1 if o.status == OrderStatus.FAILED else 0)
        assert await audit_rows("order.appeal", o.id) + await audit_rows("order.appeal_timeout", o.id) == 1
    assert sum(await User.filter(id__in=[o.worker_id for o in in_progress]).values_list("orders_in_progress", flat=True)) == 0
    assert sum(batches) >= 30, f"the schedulers settled too little: {batches}"  # at least the untouched third
    await books_clean()


# --- operators -------------------------------------------------------------------------------------
async def test_two_operators_deciding_one_appeal_make_one_decision(database):
    n = 30
    alice, os = await awaiting_review(n)
    for o in os:
        await orders.reject(o.id, alice.id, reason="blurry")
        await orders.appeal(o.id, o.worker_id, reason="it is sharp")
    before = await p.available(alice)

    results = await crowd(
        call
        for o in os
        for call in (
            orders.arbitrate(o.id, OPERATOR_1, worker_wins=True, note="the proof is fine"),
            orders.arbitrate(o.id, OPERATOR_2, worker_wins=False, note="the proof is blurry"),
        )
    )

    refunded = 0
    for i, o in enumerate(await fresh(os)):
        for_worker, for_publisher = results[2 * i], results[2 * i + 1]
        decisions = [r for r in (for_worker, for_publisher) if not isinstance(r, DomainError)]
        refusals = [r for r in (for_worker, for_publisher) if isinstance(r, DomainError)]
        assert len(decisions) == 1 and len(refusals) == 1
        assert refusals[0].code == "already_decided" and refusals[0].details["status"] == o.status.value
        if o.status == OrderStatus.COMPLETED:
            assert o.decided_by == OPERATOR_1 and await p.available(o.worker_id) == PRICE
            assert await entries(f"order:{o.id}:complete") == 1 and await entries(f"order:{o.id}:fail") == 0
        else:
            assert o.status == OrderStatus.FAILED and o.decided_by == OPERATOR_2
            assert await p.available(o.worker_id) == 0
            assert await entries(f"order:{o.id}:fail") == 1 and await entries(f"order:{o.id}:complete") == 0
            refunded += 1
        assert await audit_rows("order.arbitrate_worker", o.id) + await audit_rows("order.arbitrate_publisher", o.id) == 1
    assert await p.available(alice) == before + refunded * SLOT
    await books_clean()


async def _withdrawals(n: int, amount: int) -> list[Withdrawal]:
    crew = await workers(n)
    for i, w in enumerate(crew):
        await ledger.adjust(w.id, amount, operator_id=OPERATOR_1, reason="test money", request_id=f"seed-{i}")
    return [await withdrawals.request(w.id, amount, request_id=f"wd-{w.id}") for w in crew]


async def test_three_operators_deciding_one_withdrawal_make_one_decision(database):
    amount, fee = 10_000, 100  # W = floor(A × 1 %)
    ws = await _withdrawals(30, amount)

    results = await crowd(
        call
        for w in ws
        for call in (
            withdrawals.approve(w.id, OPERATOR_1),
            withdrawals.mark_paid(w.id, OPERATOR_2, reference="bank-123"),
            withdrawals.reject(w.id, OPERATOR_3, reason="suspicious"),
        )
    )

    for i, w in enumerate(ws):
        trio = results[3 * i: 3 * i + 3]
        wins, losses = split(trio)
        assert len(wins) == 1 and len(losses) == 2
        w = await Withdrawal.get(id=w.id)
        assert all(e.code == "already_decided" and e.details["status"] == w.status.value for e in losses)
        paid, returned = await entries(f"withdrawal:{w.id}:paid"), await entries(f"withdrawal:{w.id}:return")
        money = (await p.available(w.user_id), await p.withdrawing(w.user_id))
        if w.status == WithdrawalStatus.PAYING:
            assert w.operator_id == OPERATOR_1 and (paid, returned) == (0, 0) and money == (0, amount)
        elif w.status == WithdrawalStatus.PAID:
            assert w.operator_id == OPERATOR_2 and (paid, returned) == (1, 0) and money == (0, 0)
        else:
            assert w.status == WithdrawalStatus.REJECTED
            assert w.operator_id == OPERATOR_3 and (paid, returned) == (0, 1) and money == (amount, 0)
    paid_out = await Withdrawal.filter(status=WithdrawalStatus.PAID).count()
    assert await p.platform(AccountKind.PAYOUTS) == paid_out * (amount - fee)
    await books_clean()


async def test_payout_success_and_failure_notifications_racing_settle_a_withdrawal_once(database):
    amount = 10_000
    ws = await _withdrawals(30, amount)
    for w in ws:
        await withdrawals.approve(w.id, OPERATOR_1)

    results = await crowd(
        call
        for w in ws
        for call in (
            withdrawals.payout_succeeded(w.id, transfer_bill_no=f"T{w.id}"),
            withdrawals.payout_failed(w.id, reason="user declined"),
            withdrawals.payout_succeeded(w.id, transfer_bill_no=f"T{w.id}"),
        )
    )

    for i, w in enumerate(ws):
        wins, losses = split(results[3 * i: 3 * i + 3])
        assert len(wins) == 1 and codes(losses) == {"already_decided": 2}
        w = await Withdrawal.get(id=w.id)
        assert w.status in (WithdrawalStatus.PAID, WithdrawalStatus.FAILED)
        assert await entries(f"withdrawal:{w.id}:paid") + await entries(f"withdrawal:{w.id}:return") == 1
        assert await p.withdrawing(w.user_id) == 0
    await books_clean()


# --- WeChat repeating itself -----------------------------------------------------------------------
async def test_ten_copies_of_one_payment_notification_credit_once(database):
    alice = await p.publisher("alice")
    r = await recharges.create(alice.id, 50_000, request_id="topup-1")

    results = await crowd(recharges.credit(r.out_trade_no, transaction_id="4200001", amount_fen=50_000) for _ in range(10))

    credited = [now for _, now in results]
    assert credited.count(True) == 1 and credited.count(False) == 9
    assert all(rec.status == recharges.RechargeStatus.PAID and rec.transaction_id == "4200001" for rec, _ in results)
    assert await p.available(alice) == 50_000
    assert await entries("wechatpay:4200001") == 1
    assert await audit_rows("recharge.credit", r.id) == 1
    await books_clean()


# --- a sweep interrupted half-way ------------------------------------------------------------------
async def _assert_whole_transitions(os: list[Order]) -> int:
    """Each order either moved with its money and its audit row, or not at all. Returns how many moved."""
    moved = 0
    for o in await fresh(os):
        paid = await entries(f"order:{o.id}:complete")
        logged = await audit_rows("order.review_timeout", o.id)
        if o.status == OrderStatus.COMPLETED:
            assert (paid, logged, await p.available(o.worker_id)) == (1, 1, PRICE)
            moved += 1
        else:
            assert o.status == OrderStatus.AWAITING_REVIEW
            assert (paid, logged, await p.available(o.worker_id)) == (0, 0, 0)
    await books_clean()
    return moved


@pytest.mark.parametrize("cancel_in_batch", [1, 3])
async def test_a_sweep_cancelled_after_some_batches_leaves_only_whole_batches(database, monkeypatch, cancel_in_batch):
    from models import timer_batch

    n, batch = 80, 10
    alice, os = await awaiting_review(n)
    advance_to(max(o.review_deadline_at for o in os), plus_s=1)
    batches, reached, never = 0, asyncio.Event(), asyncio.Event()
    sizes = []  # each batch's size (a lane's batches grow while they come back full)
    real_settle = timer_batch.settle_orders

    async def recording(size):
        sizes.append(size)
        return await real_settle(size)

    async def stop_in_batch(step):
        nonlocal batches
        if step == "locked":
            batches += 1
            if batches == cancel_in_batch:
                reached.set()
                await never.wait()  # this batch is in flight: written, not committed

    monkeypatch.setattr(timer_batch, "_checkpoint", stop_in_batch)
    monkeypatch.setattr(timer_batch, "settle_orders", recording)
    sweep = asyncio.create_task(sweeper.sweep_all(batch=batch, lanes=1))
    await reached.wait()
    sweep.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sweep

    # Each batch is its own transaction: the ones committed before the cancel stay, the one in
    # flight rolls back whole.
    moved = await _assert_whole_transitions(os)
    assert len(sizes) == cancel_in_batch and moved == sum(sizes[:-1])
    monkeypatch.undo()

    assert await sweeper.sweep_all(batch=n) == n - moved
    assert await _assert_whole_transitions(os) == n


async def test_a_sweep_cancelled_at_a_random_moment_leaves_only_whole_transitions(database):
    n = 40
    alice, os = await awaiting_review(n)
    advance_to(max(o.review_deadline_at for o in os), plus_s=1)

    sweep = asyncio.create_task(sweeper.sweep_orders(batch=n))
    await asyncio.sleep(0.01)
    sweep.cancel()
    try:
        await sweep
    except asyncio.CancelledError:
        pass

    moved = await _assert_whole_transitions(os)  # whatever was committed is whole
    assert 0 <= moved <= n
    await sweeper.sweep_all(batch=n)
    assert await _assert_whole_transitions(os) == n


async def test_a_step_raising_cancelled_error_mid_batch_rolls_back_the_whole_batch(database, monkeypatch):
    from models import timer_batch

    n = 40
    alice, os = await awaiting_review(n)
    advance_to(max(o.review_deadline_at for o in os), plus_s=1)
    real_plan, calls = timer_batch._plan, 0

    def plan_then_get_cancelled(o, now, *rest):
        nonlocal calls
        calls += 1
        if calls == 10:
            raise asyncio.CancelledError()
        return real_plan(o, now, *rest)

    monkeypatch.setattr(timer_batch, "_plan", plan_then_get_cancelled)
    with pytest.raises(asyncio.CancelledError):
        await sweeper.sweep_orders(batch=n)
    assert await _assert_whole_transitions(os) == 0  # the batch rolled back whole, the sweep stopped
    monkeypatch.undo()

    await sweeper.sweep_all(batch=n)
    assert await _assert_whole_transitions(os) == n
