"""The compliance gate at publish (issue 14 §4): prohibited terms refuse or hold; a held task is never
in the hall, cannot be taken, and an operator approves it or refuses it (its escrow back).

Cast: publisher Alice, worker Bob (tests/models/_support.py)."""

from __future__ import annotations

import pytest

from models import compliance, orders, settings as market_settings, tasks
from models.audit import AuditLog
from models.compliance import HELD_TRANSITIONS, ComplianceTerm, HeldEvent
from models.errors import DomainError
from models.outbox import Outbox
from models.tasks import Task, TaskStatus
from tests import personas as p
from tests.models._support import FEE, OPERATOR_ID, PRICE, balances, books_stay_clean, cast, changes  # noqa: F401

HOLD = PRICE + FEE


@pytest.fixture(autouse=True)
def _books(books_stay_clean):  # noqa: F811
    yield


async def hold_on_match(on: bool) -> None:
    await market_settings.update({"compliance_hold_on_match": int(on)}, operator_id=OPERATOR_ID)


async def prohibited(c, **extra):
    return await tasks.publish(c.alice.id, title="Join the group", instructions="进群后 辅 助-注册 一个新号，截图", unit_price_fen=PRICE, **extra)


def test_every_held_transition_is_tested():
    assert set(HELD_TRANSITIONS) == {("held", HeldEvent.APPROVE), ("held", HeldEvent.REFUSE)}


def test_terms_match_through_spaces_punctuation_and_width():
    assert compliance.normalize("辅 助-注册") == compliance.normalize("辅助注册")
    assert compliance.normalize("ＢＡＩ　ＪＩＡ．ＬＥ") == "baijiale"


@pytest.mark.asyncio
async def test_the_shipped_terms_cover_each_of_wechats_prohibited_kinds(database):
    await compliance.ensure_default_terms()
    kinds = set(await ComplianceTerm.filter(shipped=True).values_list("category", flat=True))
    assert kinds == {"assisted_registration", "paid_votes", "induced_sharing", "gambling", "adult", "investment"}


@pytest.mark.asyncio
async def test_a_prohibited_term_refuses_the_publish_and_charges_nothing(database):
    c = await cast()
    before = await balances(alice=c.alice)
    with pytest.raises(DomainError) as refused:
        await prohibited(c)
    assert refused.value.code == "prohibited_content" and refused.value.status == 422
    assert refused.value.details["field"] == "instructions" and refused.value.details["term"] == "辅助注册"
    assert changes(before, await balances(alice=c.alice)) == {}
    assert await Task.all().count() == 0


@pytest.mark.asyncio
async def test_attachment_text_is_screened_too(database):
    c = await cast()
    with pytest.raises(DomainError) as refused:
        await tasks.publish(c.alice.id, title="Read", instructions="Read the note", unit_price_fen=PRICE,
                            attachment_kind="text", attachment="加群下注，百家乐")
    assert refused.value.details["field"] == "attachment"


@pytest.mark.asyncio
async def test_with_the_hold_setting_a_match_is_held_out_of_the_hall_and_cannot_be_taken(database):
    c = await cast()
    await hold_on_match(True)
    before = await balances(alice=c.alice)
    task = await prohibited(c)
    assert (task.status, task.held_at is not None) == (TaskStatus.HELD, True)
    assert "辅助注册" in task.hold_reason
    assert changes(before, await balances(alice=c.alice)) == {"alice": -HOLD, "escrow": HOLD}
    events = [r.event for r in await Outbox.filter(payload__contains={"task_id": task.id})] if False else [
        r.event for r in await Outbox.all()]
    assert "hall.task_published" not in events and "task.held" in events
    with pytest.raises(DomainError) as refused:
        await orders.take(task.id, c.bob.id)
    assert refused.value.code == "task_closed"
    assert task.id not in [t.id for t in await Task.filter(status=TaskStatus.OPEN)]


@pytest.mark.asyncio
async def test_an_operator_approves_a_held_task_into_the_hall_with_a_fresh_take_window(database):
    c = await cast()
    await hold_on_match(True)
    task = await prohibited(c)
    from models import clock

    clock.advance(3_600)  # longer than the take window: the window starts at the approval
    opened = await compliance.approve_held(task.id, operator_id=OPERATOR_ID, note="投票为内部评选，已核实")
    assert opened.status == TaskStatus.OPEN
    assert 0 <= (clock.after(clock.now(), task.take_window_s) - opened.take_deadline_at).total_seconds() < 5
    assert (await orders.take(task.id, c.bob.id)).task_id == task.id
    [row] = await AuditLog.filter(action="task.compliance_approve", target_id=task.id)
    assert (row.actor_kind, row.actor_id, row.reason) == ("operator", OPERATOR_ID, "投票为内部评选，已核实")
    with pytest.raises(DomainError) as again:
        await compliance.refuse_held(task.id, operator_id=OPERATOR_ID, reason="too late")
    assert again.value.code == "task_not_held"


@pytest.mark.asyncio
async def test_an_operator_refuses_a_held_task_and_its_escrow_goes_back(database):
    c = await cast()
    await hold_on_match(True)
    task = await tasks.publish(c.alice.id, title="刷票", instructions="x", unit_price_fen=PRICE, quantity=3)
    before = await balances(alice=c.alice)
    refused = await compliance.refuse_held(task.id, operator_id=OPERATOR_ID, reason="有偿投票违反微信规则")
    assert (refused.status, refused.slots_untaken, refused.slots_refunded) == (TaskStatus.REFUSED, 0, 3)
    assert changes(before, await balances(alice=c.alice)) == {"alice": 3 * HOLD, "escrow": -3 * HOLD}
    [row] = await AuditLog.filter(action="task.compliance_refuse", target_id=task.id)
    assert row.reason == "有偿投票违反微信规则"
    with pytest.raises(DomainError) as again:
        await compliance.approve_held(task.id, operator_id=OPERATOR_ID)
    assert again.value.code == "task_not_held"
    assert (await balances(alice=c.alice))["alice"] == before["alice"] + 3 * HOLD  # refunded once


@pytest.mark.asyncio
async def test_a_refusal_adds_the_untaken_slots_to_those_already_refunded_and_refunds_only_them(database):
    """slots_refunded counts every slot ever given back (expire and cancel add to it); a refusal
    adds its own, and its refund is for the slots it took back, not for the running count."""
    c = await cast()
    await hold_on_match(True)
    task = await tasks.publish(c.alice.id, title="刷票", instructions="x", unit_price_fen=PRICE, quantity=3)
    # A task that already gave one slot back: its money left escrow then (here: by hand, as a refund would).
    await Task.filter(id=task.id).update(slots_untaken=2, slots_refunded=1)
    from models import ledger
    from models.ledger import AccountKind, EntryKind, Leg
    from tortoise.transactions import in_transaction

    async with in_transaction():
        await ledger.post(f"task:{task.id}:earlier", EntryKind.SLOT_REFUND,
                          [Leg(ledger.platform_account(AccountKind.ESCROW, task.id), -HOLD), Leg(ledger.user_account(c.alice.id), HOLD)],
                          task_id=task.id)
    before = await balances(alice=c.alice)
    refused = await compliance.refuse_held(task.id, operator_id=OPERATOR_ID, reason="有偿投票违反微信规则")
    assert (refused.status, refused.slots_untaken, refused.slots_refunded, refused.last_refund_slots) == (TaskStatus.REFUSED, 0, 3, 2)
    assert changes(before, await balances(alice=c.alice)) == {"alice": 2 * HOLD, "escrow": -2 * HOLD}
    [row] = await AuditLog.filter(action="task.compliance_refuse", target_id=task.id)
    assert row.data["refund_fen"] == 2 * HOLD
    [pushed] = await Outbox.filter(event="task.refused")
    assert pushed.payload["refund_fen"] == 2 * HOLD


@pytest.mark.asyncio
async def test_a_disabled_term_no_longer_matches_and_a_new_term_does(database):
    c = await cast()
    await compliance.ensure_default_terms()
    term = await ComplianceTerm.get(term="刷票")
    await compliance.set_term_enabled(term.id, False, operator_id=OPERATOR_ID)
    assert (await tasks.publish(c.alice.id, title="刷票", instructions="x", unit_price_fen=PRICE)).status == TaskStatus.OPEN
    await compliance.add_term("代打卡", "other", operator_id=OPERATOR_ID)
    with pytest.raises(DomainError):
        await tasks.publish(c.alice.id, title="代 打 卡", instructions="x", unit_price_fen=PRICE)
    actions = set(await AuditLog.filter(target_kind="compliance_term").values_list("action", flat=True))
    assert actions == {"compliance.term_disable", "compliance.term_add"}


# --- referral rewards only after the invitee's first completed order ------------------------------------
@pytest.mark.asyncio
async def test_with_the_setting_an_invitees_first_order_earns_the_inviter_nothing_and_later_ones_do(database):
    from models import referrals
    from models.orders import OrderStatus
    from models.referrals import ReferralReward
    from tests.models._support import R_P, R_W, order_in

    c = await cast()
    await market_settings.update({"referral_requires_first_order": 1}, operator_id=OPERATOR_ID)
    first = await order_in(OrderStatus.COMPLETED, c)
    assert await ReferralReward.filter(order_id=first.id).count() == 0
    before = await balances(**c.people())
    second = await order_in(OrderStatus.COMPLETED, c)
    await referrals.settle()
    moved = changes(before, await balances(**c.people()))
    assert (moved["dave"], moved["carol"]) == (R_W, R_P)
    assert await ReferralReward.filter(order_id=second.id).count() == 2


@pytest.mark.asyncio
async def test_review_timeouts_in_one_batched_sweep_obey_the_setting_like_one_by_one(database, books_stay_clean):
    """The scheduler's batched sweep (models/timer_batch.py, ledger.post_many) auto-approves several
    of an invitee's orders at once: the first of them earns the inviters nothing, the later ones
    earn (as if approved one after another), and the fee account keeps the difference."""
    from models import referrals
    from models.orders import Order, OrderStatus
    from models.referrals import ReferralReward
    from scheduler import sweeper
    from tests.models._support import R_P, R_W, advance_to, order_in

    c = await cast()
    await market_settings.update({"referral_requires_first_order": 1}, operator_id=OPERATOR_ID)
    waiting = [await order_in(OrderStatus.AWAITING_REVIEW, c) for _ in range(3)]
    advance_to(max(o.review_deadline_at for o in waiting), plus_s=1)
    before = await balances(**c.people())
    assert await sweeper.sweep_orders() == 3
    assert {(await Order.get(id=o.id)).status for o in waiting} == {OrderStatus.COMPLETED}
    first, *later = sorted(waiting, key=lambda o: (o.task_id, o.id))
    assert await ReferralReward.filter(order_id=first.id).count() == 0
    for o in later:
        assert await ReferralReward.filter(order_id=o.id).count() == 2
    await referrals.settle()
    moved = changes(before, await balances(**c.people()))
    assert (moved["dave"], moved["carol"]) == (2 * R_W, 2 * R_P)


@pytest.mark.asyncio
async def test_a_batched_review_timeout_after_an_earlier_completion_earns(database, books_stay_clean):
    from models.orders import OrderStatus
    from models.referrals import ReferralReward
    from scheduler import sweeper
    from tests.models._support import advance_to, order_in

    c = await cast()
    await market_settings.update({"referral_requires_first_order": 1}, operator_id=OPERATOR_ID)
    await order_in(OrderStatus.COMPLETED, c)  # approved in person: the first, earns nothing
    o = await order_in(OrderStatus.AWAITING_REVIEW, c)
    advance_to(o.review_deadline_at, plus_s=1)
    assert await sweeper.sweep_orders() == 1
    assert await ReferralReward.filter(order_id=o.id).count() == 2


@pytest.mark.asyncio
async def test_without_the_setting_a_batched_review_timeout_earns_from_the_first_order(database, books_stay_clean):
    from models.orders import OrderStatus
    from models.referrals import ReferralReward
    from scheduler import sweeper
    from tests.models._support import advance_to, order_in

    c = await cast()
    o = await order_in(OrderStatus.AWAITING_REVIEW, c)
    advance_to(o.review_deadline_at, plus_s=1)
    assert await sweeper.sweep_orders() == 1
    assert await ReferralReward.filter(order_id=o.id).count() == 2


@pytest.mark.asyncio
async def test_without_the_setting_the_first_order_earns_as_before(database):
    from models.orders import OrderStatus
    from models.referrals import ReferralReward
    from tests.models._support import order_in

    c = await cast()
    first = await order_in(OrderStatus.COMPLETED, c)
    assert await ReferralReward.filter(order_id=first.id).count() == 2


@pytest.mark.asyncio
async def test_two_operators_deciding_a_held_task_at_once_one_wins_and_money_moves_once(database):
    import asyncio

    c = await cast()
    await hold_on_match(True)
    task = await tasks.publish(c.alice.id, title="刷票", instructions="x", unit_price_fen=PRICE, quantity=2)
    before = await balances(alice=c.alice)
    results = await asyncio.gather(
        compliance.approve_held(task.id, operator_id=OPERATOR_ID),
        compliance.refuse_held(task.id, operator_id=OPERATOR_ID + 1, reason="有偿投票"),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and errors[0].code == "task_not_held"
    final = await Task.get(id=task.id)
    moved = changes(before, await balances(alice=c.alice))
    if final.status == TaskStatus.REFUSED:
        assert moved == {"alice": 2 * HOLD, "escrow": -2 * HOLD}
    else:
        assert final.status == TaskStatus.OPEN and moved == {}
