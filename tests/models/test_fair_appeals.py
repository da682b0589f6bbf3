"""Rejections that say why, answered appeals and the automatic appeal rules (issue 14 §2).

Cast: publisher Alice, worker Bob (tests/models/_support.py). Clock moved forward with `advance_to`.
"""

from __future__ import annotations

import pytest

from models import appeals, clock, orders, tasks
from models.appeals import AppealAutoDecision
from models.audit import AuditLog
from models.errors import DomainError
from models.orders import Order, OrderStatus
from tests.models._support import OPERATOR_ID, advance_to, balances, books_stay_clean, cast, changes, order_in  # noqa: F401

S = OrderStatus
CRITERIA = ["截图清晰可见二维码", "使用本人微信完成"]


@pytest.fixture(autouse=True)
def _books(books_stay_clean):  # noqa: F811
    yield


async def criteria_task(c):
    return await tasks.publish(c.alice.id, title="Scan the code", instructions="Scan and confirm", unit_price_fen=1_000,
                               criteria=CRITERIA)


@pytest.mark.asyncio
async def test_a_task_keeps_the_criteria_declared_at_publish(database):
    c = await cast()
    task = await criteria_task(c)
    assert (await tasks.Task.get(id=task.id)).criteria == CRITERIA


@pytest.mark.asyncio
@pytest.mark.parametrize("criteria,field", [
    (["same", "same"], "criteria"), ([""], "criteria"), (["x" * 101], "criteria"), ([f"c{i}" for i in range(11)], "criteria"),
])
async def test_criteria_must_be_a_short_list_of_short_distinct_lines(database, criteria, field):
    c = await cast()
    with pytest.raises(DomainError) as refused:
        await tasks.publish(c.alice.id, title="t", instructions="i", unit_price_fen=1_000, criteria=criteria)
    assert refused.value.code == "invalid_input" and field in refused.value.details["fields"]


@pytest.mark.asyncio
async def test_a_rejection_by_criterion_stores_it_and_the_worker_sees_it_with_the_appeal_countdown(database):
    c = await cast()
    task = await criteria_task(c)
    order = await order_in(S.AWAITING_REVIEW, c, task)
    rejected = await orders.reject(order.id, c.alice.id, criterion=1)
    seen = await orders.get_order(order.id, worker_id=c.bob.id)
    assert (seen.status, seen.reject_criterion, seen.reject_reason) == (S.REJECTED, CRITERIA[1], CRITERIA[1])
    assert seen.due_at == seen.appeal_deadline_at == rejected.appeal_deadline_at
    [row] = await AuditLog.filter(action="order.reject", target_id=order.id)
    assert row.data["criterion"] == CRITERIA[1]


@pytest.mark.asyncio
async def test_other_needs_a_reason_of_ten_characters_when_the_task_declared_criteria(database):
    c = await cast()
    task = await criteria_task(c)
    order = await order_in(S.AWAITING_REVIEW, c, task)
    for kwargs in ({}, {"reason": "不清楚"}, {"criterion": 2}, {"criterion": -1}):
        with pytest.raises(DomainError) as refused:
            await orders.reject(order.id, c.alice.id, **kwargs)
        assert refused.value.code == "invalid_input"
        assert set(refused.value.details["fields"]) <= {"reason", "criterion"}
    assert (await Order.get(id=order.id)).status == S.AWAITING_REVIEW
    done = await orders.reject(order.id, c.alice.id, reason="截图里的账号不是接单的账号")
    assert (done.reject_criterion, done.reject_reason) == (None, "截图里的账号不是接单的账号")


@pytest.mark.asyncio
async def test_a_task_without_criteria_is_rejected_with_a_reason_and_no_criterion(database):
    c = await cast()
    order = await order_in(S.AWAITING_REVIEW, c)
    with pytest.raises(DomainError) as refused:
        await orders.reject(order.id, c.alice.id, criterion=0)
    assert refused.value.details["fields"].keys() == {"criterion"}
    with pytest.raises(DomainError):
        await orders.reject(order.id, c.alice.id)
    assert (await orders.reject(order.id, c.alice.id, reason="blurry")).reject_reason == "blurry"


# --- the publisher's answer --------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_the_publisher_answers_an_appeal_once_and_both_sides_see_the_exchange(database):
    c = await cast()
    task = await criteria_task(c)
    order = await order_in(S.REJECTED, c, task)
    await orders.appeal(order.id, c.bob.id, reason="截图清晰，是本人账号", evidence="up_evidence")
    answered = await appeals.answer(order.id, c.alice.id, text="截图中的昵称与接单账号不同", image="up_answer")
    for seen in (await orders.get_order(order.id, worker_id=c.bob.id), await orders.get_order(order.id, publisher_id=c.alice.id)):
        assert (seen.appeal_reason, seen.appeal_evidence, seen.answer_text, seen.answer_image) == (
            "截图清晰，是本人账号", "up_evidence", "截图中的昵称与接单账号不同", "up_answer")
        assert seen.answered_at == answered.answered_at
    with pytest.raises(DomainError) as twice:
        await appeals.answer(order.id, c.alice.id, text="again")
    assert twice.value.code == "invalid_transition"
    with pytest.raises(DomainError) as stranger:
        await appeals.answer(order.id, c.erin.id, text="not mine")
    assert stranger.value.code == "order_not_found"
    assert await AuditLog.filter(action="order.appeal_answer", target_id=order.id).count() == 1


@pytest.mark.asyncio
async def test_an_appeal_that_is_not_appealing_cannot_be_answered(database):
    c = await cast()
    order = await order_in(S.REJECTED, c)
    with pytest.raises(DomainError) as refused:
        await appeals.answer(order.id, c.alice.id, text="too early")
    assert refused.value.code == "invalid_transition" and refused.value.details["status"] == "rejected"


# --- automatic rules, with the clock moved forward -----------------------------------------------------
async def lose_appeals(c, n: int, *, worker_wins: bool, worker=None):
    """n decided appeals of Alice's tasks (each a fresh task and order)."""
    worker = worker or c.bob
    for _ in range(n):
        order = await order_in(S.APPEALING, c, worker=worker)
        await orders.arbitrate(order.id, OPERATOR_ID, worker_wins=worker_wins, note="decided")


@pytest.mark.asyncio
async def test_a_publisher_who_loses_most_appeals_loses_an_unanswered_one_after_the_grace_period(database):
    c = await cast()
    await appeals.update_rule("publisher_loss_rate", enabled=True, operator_id=OPERATOR_ID,
                              params={"loss_rate_bp": 5_000, "window_days": 90, "min_appeals": 2, "grace_s": 3_600})
    await lose_appeals(c, 2, worker_wins=True)
    order = await order_in(S.APPEALING, c)
    stored = await Order.get(id=order.id)
    assert stored.answer_due_at is not None
    before = await balances(**c.people())

    advance_to(stored.answer_due_at, plus_s=-1)
    assert await appeals.sweep_unanswered() == 0
    advance_to(stored.answer_due_at)
    assert await appeals.sweep_unanswered() == 1
    done = await Order.get(id=order.id)
    assert (done.status, done.finished_by, done.decided_by) == (S.COMPLETED, "arbitrate_worker", None)
    assert done.decision_note == "自动规则：发单方未在期限内回应申诉"  # people read it: no rule code in it
    assert changes(before, await balances(**c.people()))["bob"] == 1_000
    [decision] = await AppealAutoDecision.filter(order_id=order.id)
    assert (decision.rule_kind, decision.outcome, decision.user_id, decision.rule_version) == (
        "publisher_loss_rate", "worker_wins", c.alice.id, 2)
    assert decision.rule_params["grace_s"] == 3_600
    [row] = await AuditLog.filter(action="order.arbitrate_worker", target_id=order.id)
    assert (row.actor_kind, row.data["rule"]) == ("system", "publisher_loss_rate")
    assert await appeals.sweep_unanswered() == 0  # decided once


@pytest.mark.asyncio
async def test_the_rule_version_that_set_the_deadline_decides_even_after_the_rule_changed(database):
    c = await cast()
    await appeals.update_rule("publisher_loss_rate", enabled=True, operator_id=OPERATOR_ID,
                              params={"loss_rate_bp": 0, "window_days": 90, "min_appeals": 1, "grace_s": 3_600})
    await lose_appeals(c, 1, worker_wins=True)
    order = await order_in(S.APPEALING, c)
    stored = await Order.get(id=order.id)
    assert (stored.answer_rule_version, stored.answer_rule_params["grace_s"]) == (2, 3_600)
    # The operator changes the rule (version 3) while the deadline runs: the deadline stands, and so
    # does the rule that set it — the publisher was told that deadline under that rule.
    await appeals.update_rule("publisher_loss_rate", enabled=True, operator_id=OPERATOR_ID,
                              params={"loss_rate_bp": 9_000, "window_days": 30, "min_appeals": 9, "grace_s": 7_200})
    advance_to(stored.answer_due_at)
    assert await appeals.sweep_unanswered() == 1
    [decision] = await AppealAutoDecision.filter(order_id=order.id)
    assert (decision.rule_version, decision.rule_params["grace_s"], decision.rule_params["min_appeals"]) == (2, 3_600, 1)
    [row] = await AuditLog.filter(action="order.arbitrate_worker", target_id=order.id)
    assert (row.data["rule_version"], row.data["params"]["grace_s"]) == (2, 3_600)


@pytest.mark.asyncio
async def test_an_answer_in_time_stops_the_rule_and_leaves_the_appeal_to_an_operator(database):
    c = await cast()
    await appeals.update_rule("publisher_loss_rate", enabled=True, operator_id=OPERATOR_ID,
                              params={"loss_rate_bp": 0, "window_days": 90, "min_appeals": 1, "grace_s": 600})
    await lose_appeals(c, 1, worker_wins=True)
    order = await order_in(S.APPEALING, c)
    await appeals.answer(order.id, c.alice.id, text="the account differs")
    clock.advance(86_400)
    assert await appeals.sweep_unanswered() == 0
    assert (await Order.get(id=order.id)).status == S.APPEALING
    assert await AppealAutoDecision.all().count() == 0


@pytest.mark.asyncio
async def test_a_publisher_below_the_loss_rate_gets_no_deadline_and_a_disabled_rule_does_nothing(database):
    c = await cast()
    await lose_appeals(c, 3, worker_wins=True)
    order = await order_in(S.APPEALING, c)  # rule disabled (shipped state)
    assert (await Order.get(id=order.id)).answer_due_at is None
    await appeals.update_rule("publisher_loss_rate", enabled=True, operator_id=OPERATOR_ID,
                              params={"loss_rate_bp": 9_000, "window_days": 90, "min_appeals": 1, "grace_s": 600})
    await lose_appeals(c, 1, worker_wins=False)  # 3 lost of 4 = 75 % < 90 %
    order = await order_in(S.APPEALING, c)
    assert (await Order.get(id=order.id)).answer_due_at is None


@pytest.mark.asyncio
async def test_a_worker_who_lost_n_appeals_in_a_row_cannot_appeal_until_the_cooldown_ends(database):
    c = await cast()
    await appeals.update_rule("worker_losing_streak", enabled=True, operator_id=OPERATOR_ID,
                              params={"streak": 2, "cooldown_s": 7_200})
    await lose_appeals(c, 2, worker_wins=False)
    order = await order_in(S.REJECTED, c)
    with pytest.raises(DomainError) as paused:
        await orders.appeal(order.id, c.bob.id, reason="please look again")
    assert paused.value.code == "appeals_paused" and paused.value.details["streak"] == 2
    assert (await Order.get(id=order.id)).status == S.REJECTED
    [decision] = await AppealAutoDecision.filter(order_id=order.id)
    assert (decision.rule_kind, decision.outcome, decision.user_id) == ("worker_losing_streak", "appeal_refused", c.bob.id)
    assert await AuditLog.filter(action="appeal_rule.refuse_appeal", target_id=order.id).count() == 1
    # Charlie has no losing streak: he may appeal.
    other = await order_in(S.REJECTED, c, worker=c.charlie)
    assert (await orders.appeal(other.id, c.charlie.id, reason="please look again")).status == S.APPEALING


@pytest.mark.asyncio
async def test_after_the_cooldown_the_worker_may_appeal_again(database):
    c = await cast()
    await appeals.update_rule("worker_losing_streak", enabled=True, operator_id=OPERATOR_ID,
                              params={"streak": 1, "cooldown_s": 600})
    await lose_appeals(c, 1, worker_wins=False)
    clock.advance(601)
    order = await order_in(S.REJECTED, c)
    assert (await orders.appeal(order.id, c.bob.id, reason="please look again")).status == S.APPEALING


@pytest.mark.asyncio
async def test_rule_changes_are_validated_versioned_and_audited(database):
    with pytest.raises(DomainError) as bad:
        await appeals.update_rule("worker_losing_streak", enabled=True, params={"streak": 0, "cooldown_s": 10}, operator_id=OPERATOR_ID)
    assert set(bad.value.details["fields"]) == {"streak", "cooldown_s"}
    rule = await appeals.update_rule("worker_losing_streak", enabled=True, params={"streak": 4, "cooldown_s": 3_600},
                                     operator_id=OPERATOR_ID)
    assert (rule.enabled, rule.version, rule.params) == (True, 2, {"streak": 4, "cooldown_s": 3_600})
    [row] = await AuditLog.filter(action="appeal_rule.update")
    assert row.data["old"] == {"enabled": False, "streak": 3, "cooldown_s": 604_800} and row.data["new"]["streak"] == 4
