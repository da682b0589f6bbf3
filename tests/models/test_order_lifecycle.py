"""The order lifecycle (SPEC §3), walked pair by pair, and the task states around it.

Cast: publisher Alice (invited by Carol), worker Bob (invited by Dave), outsiders Charlie (worker)
and Erin (publisher). Prices: P = 1000, F = 100; R_w = 50, R_p = 20, so fees keep 30.
"""

from __future__ import annotations

import pytest

from models import clock, orders, referrals, tasks
from models.audit import AuditLog
from models.errors import DomainError
from models.orders import TIMER_EVENTS, TRANSITIONS, Order, OrderEvent, OrderStatus
from models.outbox import Outbox
from models.tasks import TASK_TRANSITIONS, Task, TaskEvent, TaskStatus
from models.users import User
from tests import personas as p
from tests.models._support import (
    FEE,
    OPERATOR_ID,
    PRICE,
    R_P,
    R_W,
    advance_to,
    assert_unchanged,
    balances,
    books_stay_clean,  # noqa: F401  (autouse below)
    cast,
    changes,
    order_in,
    publish,
    snapshot,
)

S, E = OrderStatus, OrderEvent
TIMER_EVENT_SET = {E.COUNTDOWN_END, E.REVIEW_TIMEOUT, E.APPEAL_TIMEOUT}
# The operators' overrides (force complete / fail, from every live state) are walked in test_order_overrides.py.
WALKED = [e for e in OrderEvent if e not in orders.OVERRIDE_EVENTS]
PAIRS = [(state, event) for state in OrderStatus for event in WALKED]
HOLD = PRICE + FEE

COMPLETION_MONEY = {"bob": PRICE, "escrow": -HOLD, "fees": FEE - R_W - R_P, "referral_payable": R_W + R_P}
FAILURE_MONEY = {"alice": HOLD, "escrow": -HOLD}


@pytest.fixture(autouse=True)
def _audit_after_each_test(books_stay_clean):  # noqa: F811
    yield


# --- firing an event through its public function -----------------------------------------------------
async def fire(event: OrderEvent, c, order: Order):
    """Fire `event` at the order the way its actor would. Timer events: move the clock to the
    event's deadline and run the order's timer (returns run_timer's bool)."""
    oid = order.id
    if event == E.SUBMIT:
        return await orders.submit(oid, c.bob.id, proof_text="done")
    if event == E.ABANDON:
        return await orders.abandon(oid, c.bob.id)
    if event == E.APPROVE:
        return await orders.approve(oid, c.alice.id)
    if event == E.REJECT:
        return await orders.reject(oid, c.alice.id, reason="the screenshot is blurry")
    if event == E.ACCEPT_REJECTION:
        return await orders.accept_rejection(oid, c.bob.id)
    if event == E.APPEAL:
        return await orders.appeal(oid, c.bob.id, reason="it is sharp on my phone", evidence="img/123.png")
    if event == E.ARBITRATE_WORKER:
        return await orders.arbitrate(oid, OPERATOR_ID, worker_wins=True, note="the proof is fine")
    if event == E.ARBITRATE_PUBLISHER:
        return await orders.arbitrate(oid, OPERATOR_ID, worker_wins=False, note="the proof is blurry")
    # A timer event.
    own = TIMER_EVENTS.get(order.status)
    if own is not None and own[0] == event:
        advance_to(getattr(order, own[1]))  # exactly its deadline: due
    elif order.due_at is not None:
        advance_to(order.due_at, plus_s=-1)  # as late as possible without the state's own timer being due
    else:
        clock.advance(30 * 86_400)  # no timer runs in this state: any amount of time changes nothing
    return await orders.run_timer(oid)


def expected_refusal(state: OrderStatus, event: OrderEvent) -> str:
    if event in (E.ARBITRATE_WORKER, E.ARBITRATE_PUBLISHER) and state in orders.FINAL_STATES:
        return "already_decided"
    return "invalid_transition"


def actor_kind(event: OrderEvent) -> str:
    if event in TIMER_EVENT_SET:
        return "timer"
    if event in (E.ARBITRATE_WORKER, E.ARBITRATE_PUBLISHER):
        return "operator"
    return "user"


def test_the_walk_covers_every_state_and_event_and_every_declared_transition():
    assert len(PAIRS) == len(OrderStatus) * len(WALKED) == 7 * 11
    assert set(TRANSITIONS) <= set(PAIRS)
    # Every event leaves from exactly one state, and every final state is reachable.
    assert len({event for (_, event) in TRANSITIONS}) == len(WALKED)
    assert {S.COMPLETED, S.FAILED, S.ABANDONED} <= set(TRANSITIONS.values())


# --- the take ----------------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("quantity", [1, 2])
async def test_a_take_writes_its_order_outbox_and_audit_rows_exactly(database, quantity):
    """PostgreSQL takes in one function call, SQLite in separate statements: both must write these rows."""
    c = await cast()
    task = await publish(c, quantity=quantity)
    before_outbox = await Outbox.all().count()
    order = await orders.take(task.id, c.bob.id)
    now, deadline = order.taken_at, order.submit_deadline_at
    assert deadline == clock.after(now, task.countdown_s)

    stored = await Order.get(id=order.id)
    fields = Order._meta.fields_db_projection.values()
    assert {f: getattr(order, f) for f in fields} == {f: getattr(stored, f) for f in fields}
    assert (stored.status, stored.due_at, stored.worker_inviter_id, stored.publisher_inviter_id) == (
        S.IN_PROGRESS, deadline, c.dave.id, c.carol.id)
    assert (stored.unit_price_fen, stored.fee_fen, stored.review_window_s) == (task.unit_price_fen, task.fee_fen, task.review_window_s)
    assert order.taken_task == orders.TakenTask(task.id, task.title, task.instructions, None, None)

    rows = await Outbox.filter(id__gt=0).order_by("id").offset(before_outbox)
    info = {"order_id": order.id, "task_id": task.id, "title": task.title, "taken_at": clock.iso_us(now)}
    left = quantity - 1
    # The hall's row comes last: it carries the slots left, written with the slot UPDATE (migration 0019).
    assert [(r.channel.value, r.event, r.user_id, r.payload, r.status.value, r.next_attempt_at) for r in rows] == [
        ("push", "order.taken", c.alice.id, info, "pending", now),
        ("subscribe", "order_taken", c.alice.id, info, "pending", now),
        ("push", "order.changed", c.bob.id, {"order_id": order.id, "task_id": task.id, "status": "in_progress", "event": "take",
                                             "deadline_at": clock.iso_us(deadline)}, "pending", now),
        ("push", "hall.task_removed" if left == 0 else "hall.task_changed", None,
         {"task_id": task.id, "slots_untaken": left, "status": "full" if left == 0 else "open"}, "pending", now),
    ]
    assert order.push_ids == [r.id for r in rows if r.channel.value == "push"]  # what the API hands the relay
    [entry] = await AuditLog.filter(action="order.take", target_id=order.id)
    assert (entry.actor_kind, entry.actor_id, entry.target_kind, entry.data, entry.created_at) == (
        "user", c.bob.id, "order", {"task_id": task.id}, now)
    assert (await User.get(id=c.bob.id)).orders_in_progress == 1
    task_now = await Task.get(id=task.id)
    assert (task_now.slots_untaken, task_now.orders_live) == (left, 1)


@pytest.mark.asyncio
@pytest.mark.parametrize("state,event", PAIRS, ids=[f"{s.value}-{e.value}" for s, e in PAIRS])
async def test_every_event_in_every_state(database, state, event):
    c = await cast()
    order = await Order.get(id=(await order_in(state, c)).id)
    assert order.status == state
    before_money = await balances(**c.people())
    before = await snapshot()
    target = TRANSITIONS.get((state, event))

    if target is None:
        if event in TIMER_EVENT_SET:
            assert await fire(event, c, order) is False, "a timer that is not this state's must not fire"
        else:
            with pytest.raises(DomainError) as refused:
                await fire(event, c, order)
            assert refused.value.code == expected_refusal(state, event)
            assert refused.value.details.get("status") == state.value
        await assert_unchanged(before)
        return

    result = await fire(event, c, order)
    if event in TIMER_EVENT_SET:
        assert result is True
    else:
        assert result.status == target
    after = await Order.get(id=order.id)
    assert after.status == target

    # The money of SPEC §2, and nothing else.
    moved = changes(before_money, await balances(**c.people()))
    if target == S.COMPLETED:
        assert moved == COMPLETION_MONEY
        before_settle = await balances(**c.people())
        await referrals.settle()
        assert changes(before_settle, await balances(**c.people())) == {"dave": R_W, "carol": R_P, "referral_payable": -(R_W + R_P)}
    elif target == S.FAILED:
        assert moved == FAILURE_MONEY
    else:  # abandoned within the take window: the slot goes back to the hall, no money moves
        assert moved == {}

    # The task follows its orders.
    task = await Task.get(id=after.task_id)
    if target in (S.COMPLETED, S.FAILED):
        assert (task.status, task.orders_live, task.slots_untaken) == (TaskStatus.FINISHED, 0, 0)
    elif target == S.ABANDONED:
        assert (task.status, task.orders_live, task.slots_untaken) == (TaskStatus.OPEN, 0, 1)
    else:
        assert (task.status, task.orders_live, task.slots_untaken) == (TaskStatus.FULL, 1, 0)

    # The worker's in-progress counter counts only orders in progress.
    bob = await User.get(id=c.bob.id)
    assert bob.orders_in_progress == (1 if target == S.IN_PROGRESS else 0)

    # One audit row for the transition, by the right kind of actor; both sides are told.
    rows = await AuditLog.filter(target_kind="order", target_id=order.id, action=f"order.{event.value}")
    assert [(r.actor_kind, r.data["from"], r.data["to"]) for r in rows] == [(actor_kind(event), state.value, target.value)]
    new_events = await Outbox.filter(id__gt=max([r["id"] for r in before["outbox"]], default=0), event="order.changed")
    assert {e.user_id for e in new_events} == {c.alice.id, c.bob.id}

    # Deadlines: a timer settles at its deadline, not at the moment the sweep got to it.
    if event == E.COUNTDOWN_END:
        assert after.submitted_at == order.submit_deadline_at
        assert after.review_deadline_at == clock.after(order.submit_deadline_at, order.review_window_s)
        assert after.due_at == after.review_deadline_at
    elif event == E.REVIEW_TIMEOUT:
        assert after.finished_at == order.review_deadline_at and after.due_at is None
    elif event == E.APPEAL_TIMEOUT:
        assert after.finished_at == order.appeal_deadline_at and after.due_at is None
    elif event == E.REJECT:
        assert after.due_at == after.appeal_deadline_at == clock.after(after.rejected_at, order.appeal_window_s)
    elif event == E.APPEAL:
        assert after.due_at is None
    if target in orders.FINAL_STATES:
        assert after.due_at is None and after.finished_at is not None


# --- timers: not before their deadline, and lazily on read -------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("state", list(TIMER_EVENTS), ids=[s.value for s in TIMER_EVENTS])
async def test_a_timer_fired_before_its_deadline_does_nothing(database, state):
    c = await cast()
    order = await Order.get(id=(await order_in(state, c)).id)
    advance_to(order.due_at, plus_s=-1)
    before = await snapshot()
    assert await orders.run_timer(order.id) is False
    seen = await orders.get_order(order.id, worker_id=c.bob.id)
    assert seen.status == state
    await assert_unchanged(before)


@pytest.mark.asyncio
async def test_a_worker_who_submits_after_the_countdown_finds_the_order_already_awaiting_review(database):
    c = await cast()
    order = await order_in(S.IN_PROGRESS, c)
    advance_to(order.submit_deadline_at, plus_s=1)
    money = await balances(**c.people())
    with pytest.raises(DomainError) as refused:
        await orders.submit(order.id, c.bob.id, proof_text="late")
    assert refused.value.code == "deadline_passed"
    assert refused.value.details["status"] == S.AWAITING_REVIEW.value
    after = await Order.get(id=order.id)
    assert after.status == S.AWAITING_REVIEW and after.finished_by is None
    assert after.proof_text is None  # the late proof was not taken
    assert after.submitted_at == order.submit_deadline_at
    assert await AuditLog.filter(target_id=order.id, action="order.countdown_end", actor_kind="timer").count() == 1
    assert await AuditLog.filter(target_id=order.id, action="order.submit").count() == 0
    assert changes(money, await balances(**c.people())) == {}
    assert (await User.get(id=c.bob.id)).orders_in_progress == 0


@pytest.mark.asyncio
async def test_a_worker_cannot_abandon_after_the_countdown(database):
    c = await cast()
    order = await order_in(S.IN_PROGRESS, c)
    advance_to(order.submit_deadline_at)
    with pytest.raises(DomainError) as refused:
        await orders.abandon(order.id, c.bob.id)
    assert refused.value.code == "deadline_passed"
    assert (await Order.get(id=order.id)).status == S.AWAITING_REVIEW


@pytest.mark.asyncio
@pytest.mark.parametrize("action", ["approve", "reject"])
async def test_a_publisher_who_acts_after_the_review_window_finds_it_auto_approved(database, action):
    c = await cast()
    order = await order_in(S.AWAITING_REVIEW, c)
    money = await balances(**c.people())
    advance_to(order.review_deadline_at, plus_s=5)
    with pytest.raises(DomainError) as refused:
        if action == "approve":
            await orders.approve(order.id, c.alice.id)
        else:
            await orders.reject(order.id, c.alice.id, reason="too late to say")
    assert refused.value.code == "deadline_passed"
    assert refused.value.details["status"] == S.COMPLETED.value
    after = await Order.get(id=order.id)
    assert (after.status, after.finished_by, after.finished_at) == (S.COMPLETED, "review_timeout", order.review_deadline_at)
    assert changes(money, await balances(**c.people())) == COMPLETION_MONEY  # once, by the timer


@pytest.mark.asyncio
@pytest.mark.parametrize("action", ["appeal", "accept_rejection"])
async def test_a_worker_who_answers_a_rejection_after_the_appeal_window_finds_it_failed(database, action):
    c = await cast()
    order = await order_in(S.REJECTED, c)
    money = await balances(**c.people())
    advance_to(order.appeal_deadline_at)
    with pytest.raises(DomainError) as refused:
        if action == "appeal":
            await orders.appeal(order.id, c.bob.id, reason="please look again")
        else:
            await orders.accept_rejection(order.id, c.bob.id)
    assert refused.value.code == "deadline_passed"
    assert refused.value.details["status"] == S.FAILED.value
    after = await Order.get(id=order.id)
    assert (after.status, after.finished_by, after.appeal_reason) == (S.FAILED, "appeal_timeout", None)
    assert changes(money, await balances(**c.people())) == FAILURE_MONEY  # once, by the timer


@pytest.mark.asyncio
async def test_reading_an_overdue_order_applies_its_timer_first(database):
    c = await cast()
    order = await order_in(S.IN_PROGRESS, c)
    advance_to(order.submit_deadline_at, plus_s=30)
    assert (await Order.get(id=order.id)).status == S.IN_PROGRESS  # the row is stale until read
    seen = await orders.get_order(order.id, publisher_id=c.alice.id)
    assert seen.status == S.AWAITING_REVIEW
    assert (await Order.get(id=order.id)).status == S.AWAITING_REVIEW
    assert await orders.run_timer(order.id) is False  # the sweep finds nothing left to do


@pytest.mark.asyncio
async def test_reading_an_order_long_after_both_deadlines_opens_a_whole_review_window(database):
    c = await cast()
    order = await order_in(S.IN_PROGRESS, c)
    money = await balances(**c.people())
    clock.advance(order.review_window_s + 3_600)
    read_at = clock.now()
    seen = await orders.get_order(order.id, worker_id=c.bob.id)
    # Nobody applied the countdown's end in time, so Alice never had her review window: it opens
    # now, whole (SPEC §3 "a window that opens late is whole"); no money moves yet.
    assert seen.status == S.AWAITING_REVIEW and seen.submitted_at == order.submit_deadline_at
    assert seen.review_deadline_at >= clock.after(read_at, order.review_window_s)
    assert changes(money, await balances(**c.people())) == {}
    advance_to(seen.review_deadline_at, plus_s=1)
    seen = await orders.get_order(order.id, worker_id=c.bob.id)
    assert seen.status == S.COMPLETED and seen.finished_at == seen.review_deadline_at
    assert changes(money, await balances(**c.people())) == COMPLETION_MONEY


@pytest.mark.asyncio
async def test_the_review_deadline_after_a_sweep_a_moment_late_counts_from_the_countdowns_end(database):
    c = await cast()
    order = await order_in(S.IN_PROGRESS, c)
    advance_to(order.submit_deadline_at, plus_s=orders.LATE_TIMER_GRACE_S - 1)  # the sweeper was a moment late
    assert await orders.run_timer(order.id) is True
    after = await Order.get(id=order.id)
    expected_review = clock.after(order.submit_deadline_at, order.review_window_s)
    assert after.review_deadline_at == expected_review and after.due_at == expected_review  # no drift
    advance_to(expected_review, plus_s=-1)
    assert await orders.run_timer(order.id) is False
    clock.advance(1)
    assert await orders.run_timer(order.id) is True
    assert (await Order.get(id=order.id)).status == S.COMPLETED


@pytest.mark.asyncio
async def test_the_review_window_after_a_sweep_500_s_late_is_whole(database):
    c = await cast()
    order = await order_in(S.IN_PROGRESS, c)
    advance_to(order.submit_deadline_at, plus_s=500)  # the schedulers were down for 500 s
    applied_at = clock.now()
    assert await orders.run_timer(order.id) is True
    after = await Order.get(id=order.id)
    assert after.review_deadline_at >= clock.after(applied_at, order.review_window_s)
    assert after.due_at == after.review_deadline_at
    advance_to(after.review_deadline_at, plus_s=-1)
    assert await orders.run_timer(order.id) is False
    clock.advance(1)
    assert await orders.run_timer(order.id) is True
    assert (await Order.get(id=order.id)).status == S.COMPLETED


@pytest.mark.asyncio
async def test_a_timer_run_twice_moves_the_money_once(database):
    c = await cast()
    order = await order_in(S.AWAITING_REVIEW, c)
    money = await balances(**c.people())
    advance_to(order.review_deadline_at)
    assert await orders.run_timer(order.id) is True
    assert await orders.run_timer(order.id) is False
    assert changes(money, await balances(**c.people())) == COMPLETION_MONEY


@pytest.mark.asyncio
async def test_an_appeal_is_decided_once_and_the_second_decision_learns_it(database):
    c = await cast()
    order = await order_in(S.APPEALING, c)
    money = await balances(**c.people())
    await orders.arbitrate(order.id, OPERATOR_ID, worker_wins=True, note="fine")
    with pytest.raises(DomainError) as refused:
        await orders.arbitrate(order.id, OPERATOR_ID + 1, worker_wins=False, note="not fine")
    assert refused.value.code == "already_decided"
    assert changes(money, await balances(**c.people())) == COMPLETION_MONEY
    assert (await Order.get(id=order.id)).decision_note == "fine"


@pytest.mark.asyncio
async def test_an_appeal_never_times_out(database):
    c = await cast()
    order = await order_in(S.APPEALING, c)
    clock.advance(90 * 86_400)
    assert await orders.run_timer(order.id) is False
    assert (await orders.get_order(order.id, worker_id=c.bob.id)).status == S.APPEALING


# --- authorization: a stranger learns nothing and changes nothing -------------------------------------
STRANGER_CALLS = {
    "charlie submits": (S.IN_PROGRESS, lambda c, o: orders.submit(o, c.charlie.id, proof_text="mine")),
    "charlie abandons": (S.IN_PROGRESS, lambda c, o: orders.abandon(o, c.charlie.id)),
    "charlie appeals": (S.REJECTED, lambda c, o: orders.appeal(o, c.charlie.id, reason="me")),
    "charlie accepts the rejection": (S.REJECTED, lambda c, o: orders.accept_rejection(o, c.charlie.id)),
    "erin approves": (S.AWAITING_REVIEW, lambda c, o: orders.approve(o, c.erin.id)),
    "erin rejects": (S.AWAITING_REVIEW, lambda c, o: orders.reject(o, c.erin.id, reason="no")),
    "bob approves his own work": (S.AWAITING_REVIEW, lambda c, o: orders.approve(o, c.bob.id)),
    "alice submits for bob": (S.IN_PROGRESS, lambda c, o: orders.submit(o, c.alice.id)),
    "charlie reads it": (S.IN_PROGRESS, lambda c, o: orders.get_order(o, worker_id=c.charlie.id)),
    "erin reads it": (S.IN_PROGRESS, lambda c, o: orders.get_order(o, publisher_id=c.erin.id)),
    "bob submits an order that does not exist": (S.IN_PROGRESS, lambda c, o: orders.submit(o + 1000, c.bob.id)),
    "an operator decides an order that does not exist": (
        S.APPEALING, lambda c, o: orders.arbitrate(o + 1000, OPERATOR_ID, worker_wins=True, note="x"),
    ),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("who", list(STRANGER_CALLS))
async def test_somebody_elses_order_is_not_found_and_nothing_changes(database, who):
    state, call = STRANGER_CALLS[who]
    c = await cast()
    order = await order_in(state, c)
    before = await snapshot()
    with pytest.raises(DomainError) as refused:
        await call(c, order.id)
    assert refused.value.code == "order_not_found"
    await assert_unchanged(before)


@pytest.mark.asyncio
async def test_a_stranger_reading_an_overdue_order_does_not_settle_it(database):
    c = await cast()
    order = await order_in(S.IN_PROGRESS, c)
    advance_to(order.submit_deadline_at, plus_s=1)
    before = await snapshot()
    with pytest.raises(DomainError):
        await orders.get_order(order.id, worker_id=c.charlie.id)
    await assert_unchanged(before)


# --- task events (tasks.TASK_TRANSITIONS) ------------------------------------------------------------
async def task_state(task_id: int) -> tuple[TaskStatus, int, int]:
    t = await Task.get(id=task_id)
    return t.status, t.slots_untaken, t.orders_live


def test_every_task_transition_has_a_test_below():
    covered = {
        (TaskStatus.OPEN, TaskEvent.TAKE): "test_taking_the_last_slot_makes_the_task_full",
        (TaskStatus.OPEN, TaskEvent.SLOT_RETURNED): "test_abandoning_within_the_take_window_returns_the_slot_to_an_open_task",
        (TaskStatus.FULL, TaskEvent.SLOT_RETURNED): "test_abandoning_within_the_take_window_reopens_a_full_task",
        (TaskStatus.OPEN, TaskEvent.CANCEL): "test_cancelling_refunds_the_untaken_slots",
        (TaskStatus.OPEN, TaskEvent.EXPIRE): "test_expiry_refunds_the_untaken_slots",
        (TaskStatus.FULL, TaskEvent.LAST_ORDER_FINAL): "test_a_full_task_is_finished_when_its_last_order_ends",
    }
    assert set(covered) == set(TASK_TRANSITIONS)
    assert all(name in globals() for name in covered.values())


@pytest.mark.asyncio
async def test_taking_the_last_slot_makes_the_task_full(database):
    c = await cast()
    task = await publish(c, quantity=2)
    await orders.take(task.id, c.bob.id)
    assert await task_state(task.id) == (TaskStatus.OPEN, 1, 1)
    await orders.take(task.id, c.charlie.id)
    assert await task_state(task.id) == (TaskStatus.FULL, 0, 2)
    latecomer = await p.worker("frank")
    before = await snapshot()
    with pytest.raises(DomainError) as refused:
        await orders.take(task.id, latecomer.id)
    assert refused.value.code == "slot_taken"
    await assert_unchanged(before)


@pytest.mark.asyncio
async def test_abandoning_within_the_take_window_reopens_a_full_task(database):
    c = await cast()
    task = await publish(c, quantity=1)
    order = await orders.take(task.id, c.bob.id)
    assert await task_state(task.id) == (TaskStatus.FULL, 0, 1)
    money = await balances(**c.people())
    await orders.abandon(order.id, c.bob.id)
    assert await task_state(task.id) == (TaskStatus.OPEN, 1, 0)
    assert changes(money, await balances(**c.people())) == {}  # the hold stays, for the next taker
    again = await orders.take(task.id, c.charlie.id)
    assert again.status == S.IN_PROGRESS
    assert await task_state(task.id) == (TaskStatus.FULL, 0, 1)


@pytest.mark.asyncio
async def test_abandoning_within_the_take_window_returns_the_slot_to_an_open_task(database):
    c = await cast()
    task = await publish(c, quantity=3)
    order = await orders.take(task.id, c.bob.id)
    await orders.abandon(order.id, c.bob.id)
    assert await task_state(task.id) == (TaskStatus.OPEN, 3, 0)
    with pytest.raises(DomainError) as refused:  # the same worker does not get a second try
        await orders.take(task.id, c.bob.id)
    assert refused.value.code == "already_took_task"


@pytest.mark.asyncio
async def test_abandoning_after_the_take_window_refunds_the_publisher(database):
    c = await cast()
    task = await publish(c, quantity=1)
    order = await orders.take(task.id, c.bob.id)
    advance_to(task.take_deadline_at, plus_s=1)
    money = await balances(**c.people())
    await orders.abandon(order.id, c.bob.id)
    assert changes(money, await balances(**c.people())) == FAILURE_MONEY
    assert await task_state(task.id) == (TaskStatus.FINISHED, 0, 0)


@pytest.mark.asyncio
async def test_abandoning_an_order_of_a_cancelled_task_refunds_rather_than_reopening(database):
    c = await cast()
    task = await publish(c, quantity=2)
    order = await orders.take(task.id, c.bob.id)
    await tasks.cancel(task.id, c.alice.id)
    money = await balances(**c.people())
    await orders.abandon(order.id, c.bob.id)
    assert changes(money, await balances(**c.people())) == FAILURE_MONEY
    assert await task_state(task.id) == (TaskStatus.CANCELLED, 0, 0)


@pytest.mark.asyncio
async def test_expiry_refunds_the_untaken_slots(database):
    c = await cast()
    task = await publish(c, quantity=3)
    order = await orders.take(task.id, c.bob.id)
    money = await balances(**c.people())
    advance_to(task.take_deadline_at, plus_s=-1)
    assert await tasks.expire_if_due(task.id) is False  # not yet
    clock.advance(1)
    assert await tasks.expire_if_due(task.id) is True
    assert await tasks.expire_if_due(task.id) is False  # once
    assert changes(money, await balances(**c.people())) == {"alice": 2 * HOLD, "escrow": -2 * HOLD}
    assert await task_state(task.id) == (TaskStatus.EXPIRED, 0, 1)
    assert (await Task.get(id=task.id)).slots_refunded == 2
    # The order already running carries on and is paid from what stayed in escrow.
    await orders.submit(order.id, c.bob.id)
    await orders.approve(order.id, c.alice.id)
    assert await task_state(task.id) == (TaskStatus.EXPIRED, 0, 0)
    assert await p.available(c.bob) == PRICE


@pytest.mark.asyncio
async def test_reading_a_task_after_its_take_window_expires_it(database):
    c = await cast()
    task = await publish(c, quantity=2)
    money = await balances(**c.people())
    advance_to(task.take_deadline_at)
    assert (await tasks.get_task(task.id)).status == TaskStatus.EXPIRED
    assert changes(money, await balances(**c.people())) == {"alice": 2 * HOLD, "escrow": -2 * HOLD}
    with pytest.raises(DomainError) as refused:
        await orders.take(task.id, c.bob.id)
    assert refused.value.code == "task_closed"


@pytest.mark.asyncio
async def test_a_full_task_does_not_expire(database):
    c = await cast()
    task = await publish(c, quantity=1)
    await orders.take(task.id, c.bob.id)
    advance_to(task.take_deadline_at, plus_s=1)
    before = await snapshot()
    assert await tasks.expire_if_due(task.id) is False
    await assert_unchanged(before)


@pytest.mark.asyncio
async def test_cancelling_refunds_the_untaken_slots(database):
    c = await cast()
    task = await publish(c, quantity=3)
    await orders.take(task.id, c.bob.id)
    money = await balances(**c.people())
    cancelled = await tasks.cancel(task.id, c.alice.id)
    assert cancelled.status == TaskStatus.CANCELLED
    assert changes(money, await balances(**c.people())) == {"alice": 2 * HOLD, "escrow": -2 * HOLD}
    assert await task_state(task.id) == (TaskStatus.CANCELLED, 0, 1)
    before = await snapshot()
    with pytest.raises(DomainError) as refused:
        await tasks.cancel(task.id, c.alice.id)
    assert refused.value.code == "invalid_transition"
    await assert_unchanged(before)


@pytest.mark.asyncio
async def test_another_publisher_cannot_cancel_alices_task(database):
    c = await cast()
    task = await publish(c, quantity=3)
    before = await snapshot()
    with pytest.raises(DomainError) as refused:
        await tasks.cancel(task.id, c.erin.id)
    assert refused.value.code == "task_not_found"
    await assert_unchanged(before)


@pytest.mark.asyncio
async def test_a_full_task_cannot_be_cancelled(database):
    c = await cast()
    task = await publish(c, quantity=1)
    await orders.take(task.id, c.bob.id)
    before = await snapshot()
    with pytest.raises(DomainError) as refused:
        await tasks.cancel(task.id, c.alice.id)
    assert refused.value.code == "invalid_transition"
    assert refused.value.details["status"] == "full"
    await assert_unchanged(before)


@pytest.mark.asyncio
async def test_cancelling_after_the_take_window_finds_the_task_expired_and_refunds_once(database):
    c = await cast()
    task = await publish(c, quantity=2)
    money = await balances(**c.people())
    advance_to(task.take_deadline_at, plus_s=1)
    with pytest.raises(DomainError) as refused:
        await tasks.cancel(task.id, c.alice.id)
    assert refused.value.code == "invalid_transition"
    assert refused.value.details["status"] == "expired"
    assert changes(money, await balances(**c.people())) == {"alice": 2 * HOLD, "escrow": -2 * HOLD}


@pytest.mark.asyncio
async def test_a_full_task_is_finished_when_its_last_order_ends(database):
    c = await cast()
    task = await publish(c, quantity=2)
    first = await orders.take(task.id, c.bob.id)
    second = await orders.take(task.id, c.charlie.id)
    await orders.submit(first.id, c.bob.id)
    await orders.approve(first.id, c.alice.id)
    assert await task_state(task.id) == (TaskStatus.FULL, 0, 1)
    await orders.submit(second.id, c.charlie.id)
    await orders.reject(second.id, c.alice.id, reason="wrong code")
    await orders.accept_rejection(second.id, c.charlie.id)
    assert await task_state(task.id) == (TaskStatus.FINISHED, 0, 0)
