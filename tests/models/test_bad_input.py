"""Bad input and forbidden actors: every refusal names its reason (`.code`, and the field where
there is one) and changes nothing — not a balance, not a row.

Cast: publisher Alice (100 000 fen), worker Bob, outsiders Charlie (worker) and Erin (publisher).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given, settings as hyp_settings, strategies as st

from models import clock, ledger, orders, recharges, tasks, withdrawals
from models import settings as market_settings
from models.errors import DomainError
from models.orders import OrderStatus
from models.settings import MarketSettings
from models.users import User, set_banned
from tests import personas as p
from tests.conftest import TEST_SETTINGS
from tests.models._support import OPERATOR_ID, assert_unchanged, cast, order_in, publish, snapshot

GOOD_TASK = dict(title="Scan the code", instructions="Scan the QR code and confirm", unit_price_fen=1_000, quantity=1)
HUGE = "字" * 1_000_000


async def refused(call, code: str, *, field: str | None = None) -> DomainError:
    """Run a call that must be refused: check its code (and field), and that nothing changed."""
    before = await snapshot()
    with pytest.raises(DomainError) as err:
        await call()
    assert err.value.code == code, err.value.to_dict()
    if field is not None:
        assert field in err.value.details["fields"], err.value.to_dict()
    await assert_unchanged(before)
    return err.value


# --- publishing -----------------------------------------------------------------------------------
PUBLISH_CASES = {
    "a negative price": (dict(unit_price_fen=-100), "price_out_of_range", None),
    "a zero price": (dict(unit_price_fen=0), "price_out_of_range", None),
    "a price one fen below the minimum": (dict(unit_price_fen=99), "price_out_of_range", None),
    "a price one fen above the maximum": (dict(unit_price_fen=100_001), "price_out_of_range", None),
    "an astronomical price": (dict(unit_price_fen=10**30), "price_out_of_range", None),
    "a price in yuan as a float": (dict(unit_price_fen=10.5), "invalid_input", "unit_price_fen"),
    "a whole float price": (dict(unit_price_fen=1000.0), "invalid_input", "unit_price_fen"),
    "a Decimal price": (dict(unit_price_fen=Decimal("1000")), "invalid_input", "unit_price_fen"),
    "a price as text": (dict(unit_price_fen="1000"), "invalid_input", "unit_price_fen"),
    "a price that is a bool": (dict(unit_price_fen=True), "invalid_input", "unit_price_fen"),
    "no price": (dict(unit_price_fen=None), "invalid_input", "unit_price_fen"),
    "quantity zero": (dict(quantity=0), "invalid_input", "quantity"),
    "a negative quantity": (dict(quantity=-3), "invalid_input", "quantity"),
    "a quantity over the maximum": (dict(quantity=1_001), "invalid_input", "quantity"),
    "an absurd quantity": (dict(quantity=10**12), "invalid_input", "quantity"),
    "a float quantity": (dict(quantity=2.0), "invalid_input", "quantity"),
    "a quantity as text": (dict(quantity="2"), "invalid_input", "quantity"),
    "quantity True": (dict(quantity=True), "invalid_input", "quantity"),
    "quantity False": (dict(quantity=False), "invalid_input", "quantity"),
    "no title": (dict(title=None), "invalid_input", "title"),
    "an empty title": (dict(title=""), "invalid_input", "title"),
    "a blank title": (dict(title=" \t\n "), "invalid_input", "title"),
    "a title one character too long": (dict(title="x" * 65), "invalid_input", "title"),
    "a huge title": (dict(title=HUGE), "invalid_input", "title"),
    "a title that is not text": (dict(title=12345), "invalid_input", "title"),
    "no instructions": (dict(instructions=None), "invalid_input", "instructions"),
    "blank instructions": (dict(instructions="   "), "invalid_input", "instructions"),
    "huge instructions": (dict(instructions=HUGE), "invalid_input", "instructions"),
    "an attachment of no kind": (dict(attachment="https://example.com/qr.png"), "invalid_input", "attachment_kind"),
    "an attachment of an unknown kind": (dict(attachment="x", attachment_kind="video"), "invalid_input", "attachment_kind"),
    "a huge attachment": (dict(attachment=HUGE, attachment_kind="link"), "invalid_input", "attachment"),
    "more than the balance": (dict(unit_price_fen=100_000, quantity=1), "insufficient_balance", None),
    "far more than the balance": (dict(unit_price_fen=100_000, quantity=1_000), "insufficient_balance", None),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(PUBLISH_CASES))
async def test_publishing_refuses(database, case):
    change, code, field = PUBLISH_CASES[case]
    c = await cast(alice_balance_fen=100_000)
    await refused(lambda: tasks.publish(c.alice.id, **(GOOD_TASK | change)), code, field=field)


@pytest.mark.asyncio
async def test_the_edges_of_the_price_range_are_allowed(database):
    c = await cast(alice_balance_fen=200_000)
    assert (await tasks.publish(c.alice.id, **(GOOD_TASK | dict(unit_price_fen=100)))).fee_fen == 10
    assert (await tasks.publish(c.alice.id, **(GOOD_TASK | dict(unit_price_fen=100_000)))).fee_fen == 10_000


@pytest.mark.asyncio
async def test_a_banned_publisher_cannot_publish(database):
    c = await cast()
    await set_banned(c.alice.id, True, operator_id=OPERATOR_ID, reason="fraud")
    await refused(lambda: tasks.publish(c.alice.id, **GOOD_TASK), "user_banned")


@pytest.mark.asyncio
async def test_a_worker_account_cannot_publish(database):
    c = await cast()
    await ledger.adjust(c.bob.id, 10_000, operator_id=OPERATOR_ID, reason="test money", request_id="adj")
    await refused(lambda: tasks.publish(c.bob.id, **GOOD_TASK), "wrong_end")


@pytest.mark.asyncio
async def test_an_unknown_publisher_cannot_publish(database):
    await refused(lambda: tasks.publish(424242, **GOOD_TASK), "forbidden")


# --- taking ---------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_banned_worker_cannot_take(database):
    c = await cast()
    task = await publish(c)
    await set_banned(c.bob.id, True, operator_id=OPERATOR_ID, reason="bots")
    await refused(lambda: orders.take(task.id, c.bob.id), "user_banned")


@pytest.mark.asyncio
async def test_a_worker_cannot_take_their_own_task(database):
    """The same person (one unionid) holds a publisher account and a worker account."""
    alice = await p.publisher("alice", balance_fen=10_000, unionid="union-alice")
    alice_as_worker = await p.worker("alice-worker", unionid="union-alice")
    task = await tasks.publish(alice.id, **GOOD_TASK)
    await refused(lambda: orders.take(task.id, alice_as_worker.id), "own_task")
    bob = await p.worker("bob", unionid="union-bob")  # anybody else may
    assert (await orders.take(task.id, bob.id)).status == OrderStatus.IN_PROGRESS


@pytest.mark.asyncio
async def test_people_without_a_unionid_are_not_mistaken_for_each_other(database):
    alice = await p.publisher("alice", balance_fen=10_000)
    bob = await p.worker("bob")
    task = await tasks.publish(alice.id, **GOOD_TASK)
    assert (await orders.take(task.id, bob.id)).status == OrderStatus.IN_PROGRESS


@pytest.mark.asyncio
async def test_a_worker_cannot_hold_more_orders_in_progress_than_the_limit(database):
    c = await cast()
    limit = TEST_SETTINGS["max_orders_in_progress"]
    taken = [await orders.take((await publish(c)).id, c.bob.id) for _ in range(limit)]
    one_more = await publish(c)
    err = await refused(lambda: orders.take(one_more.id, c.bob.id), "too_many_orders_in_progress")
    assert err.details["limit"] == limit
    await orders.submit(taken[0].id, c.bob.id)  # finishing one frees a place
    assert (await orders.take(one_more.id, c.bob.id)).status == OrderStatus.IN_PROGRESS


@pytest.mark.asyncio
async def test_a_worker_cannot_take_the_same_task_twice(database):
    c = await cast()
    task = await publish(c, quantity=5)
    await orders.take(task.id, c.bob.id)
    await refused(lambda: orders.take(task.id, c.bob.id), "already_took_task")


@pytest.mark.asyncio
async def test_a_publisher_account_cannot_take(database):
    c = await cast()
    task = await publish(c)
    await refused(lambda: orders.take(task.id, c.erin.id), "wrong_end")


@pytest.mark.asyncio
async def test_taking_a_task_that_does_not_exist(database):
    c = await cast()
    await refused(lambda: orders.take(987_654, c.bob.id), "task_not_found")


@pytest.mark.asyncio
async def test_a_take_with_a_revoked_session_is_refused_as_unauthorized_and_a_banned_worker_as_banned(database):
    """The API's take checks the session version inside the take itself (no separate user read).
    A banned worker learns why (`user_banned`), whatever the age of the token (issue 17, item 14)."""
    c = await cast()
    task = await publish(c)
    bob = await User.get(id=c.bob.id)
    await refused(lambda: orders.take(task.id, bob.id, token_version=bob.token_version + 1), "unauthorized")
    await set_banned(bob.id, True, operator_id=OPERATOR_ID, reason="bots")  # banning bumps the version
    await refused(lambda: orders.take(task.id, bob.id, token_version=bob.token_version), "user_banned")
    await refused(lambda: orders.take(task.id, bob.id, token_version=bob.token_version + 1), "user_banned")
    await refused(lambda: orders.take(task.id, 987_654, token_version=0), "unauthorized")


@pytest.mark.asyncio
async def test_a_take_with_the_current_session_version_wins(database):
    c = await cast()
    task = await publish(c)
    bob = await User.get(id=c.bob.id)
    assert (await orders.take(task.id, bob.id, token_version=bob.token_version)).status == OrderStatus.IN_PROGRESS


@pytest.mark.asyncio
async def test_taking_as_nobody(database):
    c = await cast()
    task = await publish(c)
    await refused(lambda: orders.take(task.id, 987_654), "user_not_found")


# --- order actions --------------------------------------------------------------------------------
ORDER_CASES = {
    "a rejection without a reason": (OrderStatus.AWAITING_REVIEW, lambda c, o: orders.reject(o, c.alice.id, reason=""), "reason"),
    "a rejection with a blank reason": (OrderStatus.AWAITING_REVIEW, lambda c, o: orders.reject(o, c.alice.id, reason="  "), "reason"),
    "a rejection with a huge reason": (OrderStatus.AWAITING_REVIEW, lambda c, o: orders.reject(o, c.alice.id, reason=HUGE), "reason"),
    "a rejection reason that is not text": (OrderStatus.AWAITING_REVIEW, lambda c, o: orders.reject(o, c.alice.id, reason=42), "reason"),
    "an appeal without a reason": (OrderStatus.REJECTED, lambda c, o: orders.appeal(o, c.bob.id, reason=None), "reason"),
    "an appeal with huge evidence": (OrderStatus.REJECTED, lambda c, o: orders.appeal(o, c.bob.id, reason="ok", evidence=HUGE), "evidence"),
    "a huge proof": (OrderStatus.IN_PROGRESS, lambda c, o: orders.submit(o, c.bob.id, proof_text=HUGE), "proof_text"),
    "a huge proof image": (OrderStatus.IN_PROGRESS, lambda c, o: orders.submit(o, c.bob.id, proof_image="i" * 256), "proof_image"),
    "a decision without a note": (
        OrderStatus.APPEALING, lambda c, o: orders.arbitrate(o, OPERATOR_ID, worker_wins=True, note=""), "note",
    ),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(ORDER_CASES))
async def test_order_actions_refuse(database, case):
    state, call, field = ORDER_CASES[case]
    c = await cast()
    order = await order_in(state, c)
    await refused(lambda: call(c, order.id), "invalid_input", field=field)


# --- withdrawals ----------------------------------------------------------------------------------
async def bob_with(amount: int):
    bob = await p.worker("bob")
    await ledger.adjust(bob.id, amount, operator_id=OPERATOR_ID, reason="earnings", request_id=f"seed-{bob.id}")
    return bob


WITHDRAW_CASES = {
    "below the minimum": (99, "withdrawal_out_of_range"),
    "zero": (0, "withdrawal_out_of_range"),
    "negative": (-500, "withdrawal_out_of_range"),
    "above the daily cap": (1_000_001, "withdrawal_out_of_range"),
    "absurd": (10**20, "withdrawal_out_of_range"),
    "a float": (500.0, "invalid_input"),
    "a bool": (True, "invalid_input"),
    "text": ("500", "invalid_input"),
    "more than available": (2_000_001, "withdrawal_out_of_range"),
    "more than available, under the cap": (900_000, "insufficient_balance"),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(WITHDRAW_CASES))
async def test_withdrawing_refuses(database, case):
    amount, code = WITHDRAW_CASES[case]
    bob = await bob_with(800_000)
    await refused(lambda: withdrawals.request(bob.id, amount, request_id="wd-1"), code)


@pytest.mark.asyncio
@pytest.mark.parametrize("request_id", ["", "   ", "x" * 65, None, 7])
async def test_a_withdrawal_needs_a_request_id(database, request_id):
    bob = await bob_with(5_000)
    await refused(lambda: withdrawals.request(bob.id, 1_000, request_id=request_id), "invalid_input", field="request_id")


@pytest.mark.asyncio
async def test_the_minimum_and_the_whole_cap_are_allowed(database):
    bob = await bob_with(2_000_000)
    await withdrawals.request(bob.id, 100, request_id="wd-min")
    await withdrawals.request(bob.id, 1_000_000 - 100, request_id="wd-rest", real_name="王小明")  # ≥ ¥2000: WeChat needs the name
    assert await p.withdrawing(bob) == 1_000_000


@pytest.mark.asyncio
async def test_the_daily_cap_counts_across_requests_and_resets_the_next_day(database):
    bob = await bob_with(2_000_000)
    name = "王小明"  # every payout here is ¥2000 or more: WeChat needs the payee's real name
    await withdrawals.request(bob.id, 600_000, request_id="wd-1", real_name=name)
    err = await refused(lambda: withdrawals.request(bob.id, 400_001, request_id="wd-2", real_name=name), "daily_withdrawal_cap")
    assert err.details["cap_fen"] == 1_000_000
    await withdrawals.request(bob.id, 400_000, request_id="wd-3", real_name=name)  # exactly up to the cap
    await refused(lambda: withdrawals.request(bob.id, 100, request_id="wd-4"), "daily_withdrawal_cap")
    clock.advance(86_400)  # tomorrow (Asia/Shanghai day)
    await withdrawals.request(bob.id, 900_000, request_id="wd-5", real_name=name)
    assert await p.withdrawing(bob) == 1_900_000


@pytest.mark.asyncio
async def test_a_banned_user_cannot_withdraw(database):
    bob = await bob_with(5_000)
    await set_banned(bob.id, True, operator_id=OPERATOR_ID, reason="fraud")
    await refused(lambda: withdrawals.request(bob.id, 1_000, request_id="wd-1"), "user_banned")


@pytest.mark.asyncio
async def test_a_banned_publisher_cannot_withdraw(database):
    alice = await p.publisher("alice", balance_fen=5_000)
    await set_banned(alice.id, True, operator_id=OPERATOR_ID, reason="chargebacks")
    await refused(lambda: withdrawals.request(alice.id, 1_000, request_id="wd-1"), "user_banned")


@pytest.mark.asyncio
async def test_a_withdrawal_decision_needs_a_reason_or_reference(database):
    bob = await bob_with(5_000)
    w = await withdrawals.request(bob.id, 1_000, request_id="wd-1")
    await refused(lambda: withdrawals.reject(w.id, OPERATOR_ID, reason=" "), "invalid_input", field="reason")
    await refused(lambda: withdrawals.mark_paid(w.id, OPERATOR_ID, reference=""), "invalid_input", field="reference")
    await refused(lambda: withdrawals.mark_paid(w.id + 99, OPERATOR_ID, reference="r"), "withdrawal_not_found")


# --- adjustments and recharges --------------------------------------------------------------------
ADJUST_CASES = {
    "zero": (dict(amount_fen=0), "amount_fen"),
    "a float": (dict(amount_fen=10.0), "amount_fen"),
    "a bool": (dict(amount_fen=True), "amount_fen"),
    "too large": (dict(amount_fen=100_000_001), "amount_fen"),
    "no reason": (dict(reason=""), "reason"),
    "a huge reason": (dict(reason=HUGE), "reason"),
    "no request id": (dict(request_id=""), "request_id"),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(ADJUST_CASES))
async def test_an_adjustment_refuses(database, case):
    change, field = ADJUST_CASES[case]
    bob = await p.worker("bob")
    args = dict(amount_fen=500, operator_id=OPERATOR_ID, reason="goodwill", request_id="adj-1") | change
    await refused(lambda: ledger.adjust(bob.id, **args), "invalid_input", field=field)


@pytest.mark.asyncio
async def test_an_adjustment_for_nobody(database):
    await refused(lambda: ledger.adjust(424242, 500, operator_id=OPERATOR_ID, reason="x", request_id="a"), "user_not_found")


@pytest.mark.asyncio
@pytest.mark.parametrize("amount", [0, -1, 10_000_001, 12.5, True, "100"])
async def test_a_recharge_amount_must_be_whole_fen_in_range(database, amount):
    alice = await p.publisher("alice")
    await refused(lambda: recharges.create(alice.id, amount, request_id="pay-1"), "invalid_input", field="amount_fen")


@pytest.mark.asyncio
async def test_a_worker_account_cannot_recharge(database):
    bob = await p.worker("bob")
    await refused(lambda: recharges.create(bob.id, 1_000, request_id="pay-1"), "wrong_end")


# --- settings -------------------------------------------------------------------------------------
SETTINGS_CASES = {
    "a negative fee": (dict(publish_fee_bp=-1), "publish_fee_bp"),
    "a fee over 100 %": (dict(publish_fee_bp=10_001), "publish_fee_bp"),
    "a negative worker invite ratio": (dict(worker_invite_bp=-1), "worker_invite_bp"),
    "a publisher invite ratio over 100 %": (dict(publisher_invite_bp=10_001), "publisher_invite_bp"),
    "a withdrawal fee over 100 %": (dict(withdraw_fee_bp=10_001), "withdraw_fee_bp"),
    "a withdrawal fee of 100 %": (dict(withdraw_fee_bp=10_000), "withdraw_fee_bp"),
    "a countdown over 10 minutes": (dict(countdown_s=601), "countdown_s"),
    "a zero countdown": (dict(countdown_s=0), "countdown_s"),
    "a zero take window": (dict(take_window_s=0), "take_window_s"),
    "a negative review window": (dict(review_window_s=-1), "review_window_s"),
    "a zero appeal window": (dict(appeal_window_s=0), "appeal_window_s"),
    "a take window of a year": (dict(take_window_s=365 * 86_400), "take_window_s"),
    "a maximum price below the minimum": (dict(min_unit_price_fen=500, max_unit_price_fen=499), "max_unit_price_fen"),
    "a zero minimum price": (dict(min_unit_price_fen=0), "min_unit_price_fen"),
    "a maximum price over the ceiling": (dict(max_unit_price_fen=1_000_001), "max_unit_price_fen"),
    "a zero quantity limit": (dict(max_quantity=0), "max_quantity"),
    "a zero in-progress limit": (dict(max_orders_in_progress=0), "max_orders_in_progress"),
    "a zero minimum withdrawal": (dict(min_withdraw_fen=0), "min_withdraw_fen"),
    "a daily cap below the minimum withdrawal": (dict(min_withdraw_fen=5_000, daily_withdraw_cap_fen=4_999), "daily_withdraw_cap_fen"),
    "a float ratio": (dict(publish_fee_bp=1_000.0), "publish_fee_bp"),
    "a bool timer": (dict(countdown_s=True), "countdown_s"),
    "text for a number": (dict(review_window_s="1200"), "review_window_s"),
    # Referral rewards above the fee: 2 % of P against a 1 % fee, at every price.
    "rewards above the fee everywhere": (dict(publish_fee_bp=100, worker_invite_bp=200), "worker_invite_bp"),
    # R_w = F = floor(P/10) always; R_p = floor(F × 0.01 %) becomes 1 only at F = 10 000, i.e. at the
    # top price of 100 000 fen: one price in the whole range breaks the rule.
    "rewards above the fee at the top price only": (
        dict(publish_fee_bp=1_000, worker_invite_bp=1_000, publisher_invite_bp=1), "worker_invite_bp",
    ),
}


def test_the_test_settings_are_valid():
    market_settings.validate(MarketSettings(**TEST_SETTINGS))


@pytest.mark.parametrize("case", list(SETTINGS_CASES))
def test_settings_validation_names_the_bad_field(case):
    change, field = SETTINGS_CASES[case]
    with pytest.raises(DomainError) as err:
        market_settings.validate(dataclasses.replace(MarketSettings(**TEST_SETTINGS), **change))
    assert err.value.code == "invalid_settings"
    assert field in err.value.details["fields"], err.value.to_dict()


def test_the_rounding_case_names_the_price_where_rewards_exceed_the_fee():
    s = dataclasses.replace(MarketSettings(**TEST_SETTINGS), publish_fee_bp=1_000, worker_invite_bp=1_000, publisher_invite_bp=1)
    assert market_settings.first_price_where_rewards_exceed_fee(s) == 100_000
    assert market_settings.first_price_where_rewards_exceed_fee(dataclasses.replace(s, max_unit_price_fen=99_999)) is None
    market_settings.validate(dataclasses.replace(s, max_unit_price_fen=99_999))


@pytest.mark.parametrize(
    "change",
    [dict(countdown_s=600), dict(publish_fee_bp=10_000), dict(publish_fee_bp=0, worker_invite_bp=0), dict(withdraw_fee_bp=0)],
    ids=["countdown of exactly 10 minutes", "a fee of 100 %", "no fee and no worker reward", "free withdrawals"],
)
def test_settings_at_the_edges_are_valid(change):
    market_settings.validate(dataclasses.replace(MarketSettings(**TEST_SETTINGS), **change))


@pytest.mark.asyncio
@pytest.mark.parametrize("case", list(SETTINGS_CASES))
async def test_an_invalid_settings_update_changes_nothing(database, case):
    change, field = SETTINGS_CASES[case]
    in_force = await market_settings.current()
    err = await refused(lambda: market_settings.update(change, operator_id=OPERATOR_ID), "invalid_settings")
    assert field in err.details["fields"]
    market_settings.invalidate_cache()
    assert await market_settings.current() == in_force


@pytest.mark.asyncio
async def test_an_unknown_setting_is_refused(database):
    err = await refused(lambda: market_settings.update({"free_money": 1}, operator_id=OPERATOR_ID), "invalid_settings")
    assert "free_money" in err.details["fields"]


# --- the referral rule, for any settings --------------------------------------------------------
@hyp_settings(max_examples=200, deadline=None)
@given(
    fee_bp=st.integers(0, 10_000),
    worker_bp=st.integers(0, 10_000),
    publisher_bp=st.integers(0, 10_000),
    low=st.integers(1, 2_000),
    span=st.integers(0, 3_000),
)
def test_valid_settings_never_let_referral_rewards_exceed_the_fee(fee_bp, worker_bp, publisher_bp, low, span):
    s = dataclasses.replace(
        MarketSettings(**TEST_SETTINGS), publish_fee_bp=fee_bp, worker_invite_bp=worker_bp, publisher_invite_bp=publisher_bp,
        min_unit_price_fen=low, max_unit_price_fen=low + span,
    )
    breaking = [
        price for price in range(low, low + span + 1)
        if sum(market_settings.referral_rewards(price, s.fee_fen(price), worker_bp, publisher_bp)) > s.fee_fen(price)
    ]
    try:
        market_settings.validate(s)
    except DomainError as err:
        assert breaking, f"refused settings that never break the rule: {err.to_dict()}"
        assert "worker_invite_bp" in err.details["fields"]
        assert f"at a unit price of {breaking[0]} fen" in err.details["fields"]["worker_invite_bp"]
    else:
        assert not breaking, f"accepted settings where rewards exceed the fee at {breaking[:3]}"


# --- idempotency keys reused for a different request, and a released daily cap ----------------------
@pytest.mark.asyncio
async def test_a_publish_request_id_reused_for_a_different_task_is_refused(database):
    from models import tasks
    from tests import personas as pp

    alice = await pp.publisher("alice", balance_fen=10_000)
    first = await tasks.publish(alice.id, title="Scan", instructions="x", unit_price_fen=1_000, request_id="r1")
    again = await tasks.publish(alice.id, title="Scan", instructions="x", unit_price_fen=1_000, request_id="r1")
    assert again.id == first.id and await pp.available(alice) == 10_000 - 1_100
    with pytest.raises(DomainError) as refused:
        await tasks.publish(alice.id, title="Scan", instructions="x", unit_price_fen=2_000, request_id="r1")
    assert refused.value.code == "idempotency_conflict"
    assert await pp.available(alice) == 10_000 - 1_100


@pytest.mark.asyncio
async def test_a_recharge_for_an_unknown_user_is_a_typed_error(database):
    from models import recharges

    with pytest.raises(DomainError) as refused:
        await recharges.create(999_999, 1_000, request_id="x")
    assert refused.value.code == "user_not_found"


@pytest.mark.asyncio
async def test_a_rejected_withdrawal_gives_its_amount_back_to_the_days_cap(database):
    from models import settings as market_settings
    from models import withdrawals
    from tests import personas as pp

    await market_settings.update({"daily_withdraw_cap_fen": 5_000}, operator_id=1)
    bob = await pp.worker("bob")
    from models import ledger

    await ledger.adjust(bob.id, 10_000, operator_id=1, reason="test money", request_id="seed-bob")
    w = await withdrawals.request(bob.id, 5_000, request_id="w1")
    with pytest.raises(DomainError) as capped:
        await withdrawals.request(bob.id, 100, request_id="w2")
    assert capped.value.code == "daily_withdrawal_cap"
    await withdrawals.reject(w.id, 1, reason="wrong account")
    again = await withdrawals.request(bob.id, 5_000, request_id="w3")
    assert again.status.value == "pending"


@pytest.mark.asyncio
async def test_an_adjustment_request_id_reused_for_another_amount_is_refused(database):
    from models import ledger
    from tests import personas as pp

    bob = await pp.worker("bob")
    first = await ledger.adjust(bob.id, 500, operator_id=1, reason="goodwill", request_id="adj-1")
    assert await ledger.adjust(bob.id, 500, operator_id=1, reason="goodwill", request_id="adj-1") == first
    with pytest.raises(DomainError) as refused:
        await ledger.adjust(bob.id, 900, operator_id=1, reason="goodwill", request_id="adj-1")
    assert refused.value.code == "idempotency_conflict" and await pp.available(bob) == 500


# --- control characters in text (issue 17 item 12) ------------------------------------------------
# Every text parameter of every domain function: the API checks first, but the admin panel, the
# scheduler and scripts call the domain directly, and PostgreSQL cannot store U+0000 at all.
# (name, state needed, call(c, order_id, text), field, multi-line)
TEXT_INPUTS = [
    ("task title", None, lambda c, o, t: tasks.publish(c.alice.id, **GOOD_TASK | {"title": t}), "title", False),
    ("task instructions", None, lambda c, o, t: tasks.publish(c.alice.id, **GOOD_TASK | {"instructions": t}), "instructions", True),
    ("text attachment", None, lambda c, o, t: tasks.publish(c.alice.id, **GOOD_TASK, attachment_kind="text", attachment=t), "attachment", True),
    ("link attachment", None, lambda c, o, t: tasks.publish(c.alice.id, **GOOD_TASK, attachment_kind="link", attachment=f"https://x.cn/{t}"), "attachment", False),
    ("publish request id", None, lambda c, o, t: tasks.publish(c.alice.id, **GOOD_TASK, request_id=t), "request_id", False),
    ("proof text", OrderStatus.IN_PROGRESS, lambda c, o, t: orders.submit(o, c.bob.id, proof_text=t), "proof_text", True),
    ("proof image", OrderStatus.IN_PROGRESS, lambda c, o, t: orders.submit(o, c.bob.id, proof_image=t), "proof_image", False),
    ("rejection reason", OrderStatus.AWAITING_REVIEW, lambda c, o, t: orders.reject(o, c.alice.id, reason=t), "reason", True),
    ("appeal reason", OrderStatus.REJECTED, lambda c, o, t: orders.appeal(o, c.bob.id, reason=t), "reason", True),
    ("appeal evidence", OrderStatus.REJECTED, lambda c, o, t: orders.appeal(o, c.bob.id, reason="r", evidence=t), "evidence", False),
    ("arbitration note", OrderStatus.APPEALING, lambda c, o, t: orders.arbitrate(o, OPERATOR_ID, worker_wins=True, note=t), "note", True),
    ("withdrawal request id", None, lambda c, o, t: withdrawals.request(c.bob.id, 1_000, request_id=t), "request_id", False),
    ("recharge request id", None, lambda c, o, t: recharges.create(c.alice.id, 1_000, request_id=t), "request_id", False),
    ("adjustment reason", None, lambda c, o, t: ledger.adjust(c.bob.id, 100, operator_id=OPERATOR_ID, reason=t, request_id="adj-1"), "reason", True),
    ("adjustment request id", None, lambda c, o, t: ledger.adjust(c.bob.id, 100, operator_id=OPERATOR_ID, reason="r", request_id=t), "request_id", False),
    ("ban reason", None, lambda c, o, t: set_banned(c.charlie.id, True, operator_id=OPERATOR_ID, reason=t), "reason", True),
    ("nickname", None, lambda c, o, t: p_login(nickname=t), "nickname", False),
    ("invite code", None, lambda c, o, t: p_login(invite_code=t), "invite_code", False),
    ("openid", None, lambda c, o, t: p_login(openid=f"o{t}"), "openid", False),
]
CONTROL_CHARACTERS = {"NUL": "\x00", "ESC": "\x1b", "DEL": "\x7f", "C1": "\x85", "lone surrogate": "\udc00"}
LINE_BREAKS = {"LF": "\n", "TAB": "\t", "CR": "\r"}


async def p_login(*, openid: str = "openid-newcomer", **kw):
    from models.users import End, login_or_register

    return await login_or_register(End.WORKER, openid, **kw)


@pytest.mark.asyncio
@pytest.mark.parametrize("name", [t[0] for t in TEXT_INPUTS])
async def test_text_inputs_refuse_control_characters(database, name):
    _, state, call, field, multiline = next(t for t in TEXT_INPUTS if t[0] == name)
    c = await cast()
    await ledger.adjust(c.bob.id, 5_000, operator_id=OPERATOR_ID, reason="funds", request_id="seed-bob")
    order_id = (await order_in(state, c)).id if state else None
    bad = CONTROL_CHARACTERS if multiline else CONTROL_CHARACTERS | LINE_BREAKS
    for label, char in bad.items():
        for text in (f"ok{char}ok", f"ok{char}"):  # also at the end, where strip() would hide some
            before = await snapshot()
            with pytest.raises(DomainError) as err:
                await call(c, order_id, text)
            assert (err.value.code, list(err.value.details["fields"])) == ("invalid_input", [field]), (label, err.value.to_dict())
            await assert_unchanged(before)


@pytest.mark.asyncio
async def test_multiline_domain_text_keeps_newlines_and_tabs(database):
    c = await cast()
    order = await order_in(OrderStatus.IN_PROGRESS, c)
    done = await orders.submit(order.id, c.bob.id, proof_text="step 1\r\n\tstep 2\rstep 3")
    assert done.proof_text == "step 1\n\tstep 2\nstep 3"
    task = await tasks.publish(c.alice.id, **GOOD_TASK | {"instructions": "one\ntwo\tthree"})
    assert task.instructions == "one\ntwo\tthree"
