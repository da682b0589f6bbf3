"""An operator forces a stuck order to completed or failed (issue 13, models/order_overrides.py):
from every live state, the domain's money (ledger keys, referral rewards, the worker's counter, the
task's live orders), audited with the reason, exactly once — and on PostgreSQL, against the worker,
the publisher and the timers doing their own transition at the same instant."""

from __future__ import annotations

import asyncio

import pytest

from models import order_overrides, orders
from models.audit import AuditLog
from models.errors import DomainError
from models.ledger import JournalEntry
from models.orders import Order, OrderStatus
from models.tasks import Task, TaskStatus
from models.users import User
from scheduler import sweeper
from tests import personas as p
from tests.models._support import FEE, PRICE, R_P, R_W, advance_to, books_stay_clean, cast, order_in  # noqa: F401

S = OrderStatus
LIVE = [S.IN_PROGRESS, S.AWAITING_REVIEW, S.REJECTED, S.APPEALING]
OP = 9_001


@pytest.fixture(autouse=True)
def _audit_after_each_test(books_stay_clean):  # noqa: F811
    yield


@pytest.mark.asyncio
@pytest.mark.parametrize("state", LIVE)
async def test_force_complete_pays_the_worker_from_every_live_state(database, state):
    c = await cast()
    order = await order_in(state, c)
    assert await order_overrides.money(order, orders.OrderEvent.FORCE_COMPLETE) == {
        "paid_fen": PRICE, "fee_fen": FEE - R_W - R_P, "worker_referral_fen": R_W, "publisher_referral_fen": R_P}
    before = await p.available(c.bob)
    done = await order_overrides.force(order.id, OP, complete=True, reason="worker proved it by phone", expected=state.value)
    assert done.status == S.COMPLETED and done.finished_by == "force_complete" and done.due_at is None
    assert await p.available(c.bob) == before + PRICE
    assert await JournalEntry.filter(key=f"order:{order.id}:complete").count() == 1
    row = await AuditLog.get(action="order.force_complete", target_id=order.id)
    assert (row.actor_kind, row.actor_id, row.reason) == ("operator", OP, "worker proved it by phone")
    assert row.data["from"] == state.value and row.data["paid_fen"] == PRICE
    assert (await User.get(id=c.bob.id)).orders_in_progress == 0
    assert (await Task.get(id=order.task_id)).status == TaskStatus.FINISHED


@pytest.mark.asyncio
@pytest.mark.parametrize("state", LIVE)
async def test_force_fail_refunds_the_publisher_from_every_live_state(database, state):
    c = await cast()
    order = await order_in(state, c)
    before = await p.available(c.alice)
    done = await order_overrides.force(order.id, OP, complete=False, reason="task was fraudulent", expected=state.value)
    assert done.status == S.FAILED and done.finished_by == "force_fail"
    assert await p.available(c.alice) == before + PRICE + FEE
    assert await JournalEntry.filter(key=f"order:{order.id}:fail").count() == 1
    assert (await User.get(id=c.bob.id)).orders_in_progress == 0


@pytest.mark.asyncio
async def test_a_repeat_a_stale_state_and_a_final_order_move_nothing(database):
    c = await cast()
    order = await order_in(S.AWAITING_REVIEW, c)
    with pytest.raises(DomainError) as stale:  # the operator saw it in progress; it has moved since
        await order_overrides.force(order.id, OP, complete=True, reason="x", expected="in_progress")
    assert stale.value.code == "invalid_transition"
    await order_overrides.force(order.id, OP, complete=True, reason="x", expected="awaiting_review")
    for complete in (True, False):  # Back + submit, or the other button: already decided
        with pytest.raises(DomainError) as again:
            await order_overrides.force(order.id, OP, complete=complete, reason="x", expected="awaiting_review")
        assert again.value.code == "already_decided"
    assert await JournalEntry.filter(order_id=order.id).count() == 1
    with pytest.raises(DomainError) as empty:
        await order_overrides.force(order.id, OP, complete=True, reason="  ", expected="completed")
    assert empty.value.code == "invalid_input" and "reason" in empty.value.details["fields"]


@pytest.mark.asyncio
async def test_an_overdue_timer_applies_before_the_override(database):
    c = await cast()
    order = await order_in(S.AWAITING_REVIEW, c)
    advance_to(order.review_deadline_at, plus_s=1)  # the review window ran out: auto-approved
    with pytest.raises(DomainError) as late:
        await order_overrides.force(order.id, OP, complete=False, reason="x", expected="awaiting_review")
    assert late.value.code == "already_decided"
    assert (await Order.get(id=order.id)).finished_by == "review_timeout"


# --- races on PostgreSQL -----------------------------------------------------------------------------
async def _race(coros):
    results = await asyncio.gather(*coros, return_exceptions=True)
    unexpected = [r for r in results if isinstance(r, BaseException) and not isinstance(r, DomainError)]
    assert not unexpected, unexpected
    return [r for r in results if not isinstance(r, BaseException)], [r for r in results if isinstance(r, DomainError)]


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_race_force_fail_against_the_publisher_approving_and_other_operators(database):
    for _ in range(5):
        c = await cast()
        order = await order_in(S.AWAITING_REVIEW, c)
        wins, losses = await _race(
            [orders.approve(order.id, c.alice.id)]
            + [order_overrides.force(order.id, OP + i, complete=bool(i % 2), reason="stuck", expected="awaiting_review") for i in range(4)])
        assert len(wins) == 1 and len(losses) == 4
        assert {e.code for e in losses} <= {"already_decided", "invalid_transition", "deadline_passed"}
        final = await Order.get(id=order.id)
        assert final.status in (S.COMPLETED, S.FAILED)
        assert await JournalEntry.filter(order_id=order.id).count() == 1
        assert await AuditLog.filter(target_kind="order", target_id=order.id, action__in=[
            "order.approve", "order.force_complete", "order.force_fail"]).count() == 1


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_race_force_complete_against_the_scheduler_timing_the_order_out(database):
    for _ in range(5):
        c = await cast()
        order = await order_in(S.REJECTED, c)
        advance_to(order.appeal_deadline_at)  # the appeal window ends now: the sweeper fails it
        wins, losses = await _race([
            sweeper.sweep_orders(batch=10), orders.run_timer(order.id),
            order_overrides.force(order.id, OP, complete=True, reason="publisher abused rejections", expected="rejected"),
            order_overrides.force(order.id, OP + 1, complete=True, reason="same", expected="rejected"),
        ])
        final = await Order.get(id=order.id)
        assert final.status == S.FAILED  # the deadline had passed: the timer's, never the operator's
        assert await JournalEntry.filter(order_id=order.id).count() == 1  # money moved once
        assert await AuditLog.filter(action="order.force_complete", target_id=order.id).count() == 0
        assert (await User.get(id=c.bob.id)).orders_in_progress == 0


@pytest.mark.asyncio
async def test_the_money_shown_before_confirming_is_what_the_completion_posts_under_the_referral_rule(database):
    from models import settings as market_settings
    from models.referrals import ReferralReward

    await market_settings.update({"referral_requires_first_order": 1}, operator_id=OP)
    c = await cast()
    order = await order_in(S.AWAITING_REVIEW, c)  # the invitees' first order: their inviters earn nothing
    shown = await order_overrides.money(order, orders.OrderEvent.FORCE_COMPLETE)
    assert shown == {"paid_fen": PRICE, "fee_fen": FEE, "worker_referral_fen": 0, "publisher_referral_fen": 0}
    await order_overrides.force(order.id, OP, complete=True, reason="worker proved it by phone", expected="awaiting_review")
    assert await ReferralReward.filter(order_id=order.id).count() == 0


@pytest.mark.asyncio
async def test_a_deadline_passed_since_the_preview_is_the_timers_not_the_operators(database, monkeypatch):
    c = await cast()
    order = await order_in(S.REJECTED, c)
    real_settle = orders.settle_due

    async def settle_losing_its_race(o):  # the sweep holds the row: the preview's own settle loses quietly
        return o

    monkeypatch.setattr(orders, "settle_due", settle_losing_its_race)
    advance_to(order.appeal_deadline_at)
    with pytest.raises(DomainError):
        await order_overrides.force(order.id, OP, complete=True, reason="too late", expected="rejected")
    monkeypatch.setattr(orders, "settle_due", real_settle)
    assert (await Order.get(id=order.id)).status == S.REJECTED  # untouched: the timer fails it
    assert await JournalEntry.filter(order_id=order.id).count() == 0
