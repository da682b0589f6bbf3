"""The seven money flows of SPEC §2, each with every balance it touches before and after.

TEST_SETTINGS: fee 10 %, worker invite 5 % of P, publisher invite 20 % of F, withdrawal fee 1 %.
Cast: publisher Alice (invited by Carol), worker Bob (invited by Dave), Charlie and Erin outsiders.
After every test the ledger audit must be clean (fixture below).
"""

from __future__ import annotations

import pytest

from models import ledger, orders, recharges, referrals, tasks, withdrawals
from models.audit import AuditLog
from models.errors import DomainError
from models.ledger import EntryKind
from models.orders import OrderStatus
from models.withdrawals import WithdrawalStatus
from tests import personas as p
from tests.models._support import (
    OPERATOR_ID,
    advance_to,
    assert_unchanged,
    balances,
    books_stay_clean,  # noqa: F401
    cast,
    changes,
    journal_count,
    order_in,
    publish,
    running_balances_hold,
    snapshot,
)


@pytest.fixture(autouse=True)
def _audit_after_each_test(books_stay_clean):  # noqa: F811
    yield


async def completed_order(c, *, price: int, worker=None) -> orders.Order:
    task = await publish(c, price=price)
    worker = worker or c.bob
    order = await orders.take(task.id, worker.id)
    await orders.submit(order.id, worker.id)
    return await orders.approve(order.id, c.alice.id)


# --- 1. recharge ----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_recharge_is_credited_once_however_often_wechat_repeats_the_notification(database):
    alice = await p.publisher("alice")
    recharge = await recharges.create(alice.id, 5_000, request_id="pay-1")
    before = await balances(alice=alice)
    results = [await recharges.credit(recharge.out_trade_no, transaction_id="4200000001", amount_fen=5_000) for _ in range(10)]
    assert [credited for _, credited in results] == [True] + [False] * 9
    assert results[-1][0].status == recharges.RechargeStatus.PAID
    assert changes(before, await balances(alice=alice)) == {"alice": 5_000, "wechatpay": -5_000}
    assert await journal_count(EntryKind.RECHARGE) == 1
    # Even a repeat carrying a different transaction id does not pay the same recharge twice.
    _, credited = await recharges.credit(recharge.out_trade_no, transaction_id="4200000002", amount_fen=5_000)
    assert credited is False
    assert await p.available(alice) == 5_000
    await running_balances_hold(alice)


@pytest.mark.asyncio
async def test_a_notification_for_another_amount_credits_nothing(database):
    alice = await p.publisher("alice")
    recharge = await recharges.create(alice.id, 5_000, request_id="pay-1")
    before = await balances(alice=alice)
    with pytest.raises(DomainError) as refused:
        await recharges.credit(recharge.out_trade_no, transaction_id="4200000001", amount_fen=50_000)
    assert refused.value.code == "amount_mismatch"
    assert changes(before, await balances(alice=alice)) == {}
    assert (await recharges.Recharge.get(id=recharge.id)).status == recharges.RechargeStatus.PENDING
    assert await AuditLog.filter(action="recharge.amount_mismatch").count() == 1  # an operator must look


@pytest.mark.asyncio
async def test_a_payment_for_a_recharge_we_had_closed_is_still_credited(database):
    alice = await p.publisher("alice")
    recharge = await recharges.create(alice.id, 2_000, request_id="pay-1")
    assert await recharges.close(recharge.out_trade_no) is True
    _, credited = await recharges.credit(recharge.out_trade_no, transaction_id="4200000009", amount_fen=2_000)
    assert credited is True
    assert await p.available(alice) == 2_000


# --- 2. publish -----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_publishing_holds_quantity_times_price_plus_fee_in_escrow(database):
    c = await cast(alice_balance_fen=10_000)
    before = await balances(alice=c.alice)
    task = await publish(c, price=1_000, quantity=3)
    assert (task.unit_price_fen, task.fee_fen, task.quantity, task.slots_untaken) == (1_000, 100, 3, 3)
    assert changes(before, await balances(alice=c.alice)) == {"alice": -3_300, "escrow": 3_300}
    await running_balances_hold(c.alice)


@pytest.mark.asyncio
async def test_publishing_without_enough_balance_changes_nothing(database):
    c = await cast(alice_balance_fen=3_299)
    before = await snapshot()
    with pytest.raises(DomainError) as refused:
        await publish(c, price=1_000, quantity=3)
    assert refused.value.code == "insufficient_balance"
    await assert_unchanged(before)
    task = await publish(c, price=1_000, quantity=2)  # what she can afford still works
    assert task.quantity == 2 and await p.available(c.alice) == 3_299 - 2_200


@pytest.mark.asyncio
async def test_the_exact_balance_is_enough(database):
    c = await cast(alice_balance_fen=1_100)
    await publish(c, price=1_000)
    assert await p.available(c.alice) == 0


# --- 3. untaken slots -----------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["expiry", "cancel"])
async def test_untaken_slots_go_back_to_the_publisher(database, how):
    c = await cast()
    task = await publish(c, price=1_000, quantity=4)
    await orders.take(task.id, c.bob.id)
    before = await balances(alice=c.alice, bob=c.bob)
    if how == "expiry":
        advance_to(task.take_deadline_at)
        assert await tasks.expire_if_due(task.id) is True
    else:
        await tasks.cancel(task.id, c.alice.id)
    assert changes(before, await balances(alice=c.alice, bob=c.bob)) == {"alice": 3 * 1_100, "escrow": -3 * 1_100}
    assert await journal_count(EntryKind.SLOT_REFUND) == 1
    await running_balances_hold(c.alice)


@pytest.mark.asyncio
async def test_a_task_with_every_slot_taken_refunds_nothing_when_its_window_ends(database):
    c = await cast()
    task = await publish(c, price=1_000, quantity=1)
    await orders.take(task.id, c.bob.id)
    before = await balances(alice=c.alice)
    advance_to(task.take_deadline_at)
    await tasks.get_task(task.id)
    assert changes(before, await balances(alice=c.alice)) == {}


# --- 4. completion, with and without inviters -----------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize(
    "worker_invited,publisher_invited",
    [(True, True), (True, False), (False, True), (False, False)],
    ids=["both-invited", "worker-invited", "publisher-invited", "nobody-invited"],
)
async def test_completion_pays_the_worker_the_fees_and_the_inviters(database, worker_invited, publisher_invited):
    carol = await p.publisher("carol")
    dave = await p.worker("dave")
    alice = await p.publisher("alice", balance_fen=10_000, inviter=carol if publisher_invited else None)
    bob = await p.worker("bob", inviter=dave if worker_invited else None)
    people = dict(alice=alice, bob=bob, carol=carol, dave=dave)
    task = await tasks.publish(alice.id, title="Scan", instructions="Scan it", unit_price_fen=2_000)
    order = await orders.take(task.id, bob.id)
    await orders.submit(order.id, bob.id)
    before = await balances(**people)
    await orders.approve(order.id, alice.id)
    r_w = 2_000 * 500 // 10_000 if worker_invited else 0  # 100
    r_p = 200 * 2_000 // 10_000 if publisher_invited else 0  # 40
    expected = {"bob": 2_000, "escrow": -2_200, "fees": 200 - r_w - r_p}
    if r_w + r_p:
        expected["referral_payable"] = r_w + r_p
    assert changes(before, await balances(**people)) == expected
    before_settle = await balances(**people)
    await referrals.settle()
    settled = {k: v for k, v in {"dave": r_w, "carol": r_p, "referral_payable": -(r_w + r_p)}.items() if v}
    assert changes(before_settle, await balances(**people)) == settled
    assert await referrals.settle() == 0  # nothing is paid twice
    for person in people.values():
        await running_balances_hold(person)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "price,fee,r_w,r_p",
    [
        (100, 10, 5, 2),  # the minimum price: every floor is exact
        (101, 10, 5, 2),  # F = floor(10.1), R_w = floor(5.05)
        (109, 10, 5, 2),  # F = floor(10.9), R_w = floor(5.45)
        (199, 19, 9, 3),  # F = floor(19.9), R_w = floor(9.95), R_p = floor(3.8)
        (1_999, 199, 99, 39),  # F = floor(199.9), R_w = floor(99.95), R_p = floor(39.8)
    ],
)
async def test_rounding_floors_each_component_and_the_leftover_stays_with_the_platform(database, price, fee, r_w, r_p):
    c = await cast()
    before = await balances(**c.people())
    await completed_order(c, price=price)
    await referrals.settle()
    moved = changes(before, await balances(**c.people()))
    assert moved == {"alice": -(price + fee), "bob": price, "fees": fee - r_w - r_p, "dave": r_w, "carol": r_p}
    assert sum(moved.values()) == 0  # the hold splits exactly; nothing is created or lost


@pytest.mark.asyncio
async def test_rewards_use_the_ratios_copied_onto_the_order_not_the_current_settings(database):
    from models import settings

    c = await cast()
    order = await order_in(OrderStatus.AWAITING_REVIEW, c)
    await settings.update({"worker_invite_bp": 0, "publisher_invite_bp": 0, "publish_fee_bp": 5_000}, operator_id=OPERATOR_ID)
    before = await balances(**c.people())
    await orders.approve(order.id, c.alice.id)
    assert changes(before, await balances(**c.people())) == {"bob": 1_000, "escrow": -1_100, "fees": 30, "referral_payable": 70}


# --- 5. failure -----------------------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["accepts the rejection", "lets the appeal window pass", "loses the appeal"])
async def test_a_failed_order_gives_price_and_fee_back_to_the_publisher(database, how):
    c = await cast()
    order = await order_in(OrderStatus.APPEALING if how == "loses the appeal" else OrderStatus.REJECTED, c)
    before = await balances(**c.people())
    if how == "accepts the rejection":
        await orders.accept_rejection(order.id, c.bob.id)
    elif how == "lets the appeal window pass":
        advance_to(order.appeal_deadline_at)
        assert await orders.run_timer(order.id) is True
    else:
        await orders.arbitrate(order.id, OPERATOR_ID, worker_wins=False, note="blurry")
    assert changes(before, await balances(**c.people())) == {"alice": 1_100, "escrow": -1_100}
    assert await journal_count(EntryKind.ORDER_FAIL) == 1
    assert await referrals.settle() == 0  # a failed order earns no inviter anything


# --- 6. withdrawal --------------------------------------------------------------------------------
async def bob_with_earnings(amount: int):
    c = await cast(alice_balance_fen=100_000)
    await completed_order(c, price=amount)
    assert await p.available(c.bob) == amount
    return c


@pytest.mark.asyncio
async def test_a_withdrawal_approved_and_paid_through_wechat(database):
    c = await bob_with_earnings(5_000)
    before = await balances(bob=c.bob)
    w = await withdrawals.request(c.bob.id, 5_000, request_id="wd-1")
    assert (w.amount_fen, w.fee_fen, w.status) == (5_000, 50, WithdrawalStatus.PENDING)
    assert changes(before, await balances(bob=c.bob)) == {"bob": -5_000, "bob.withdrawing": 5_000}
    mid = await balances(bob=c.bob)
    w = await withdrawals.approve(w.id, OPERATOR_ID)
    assert w.status == WithdrawalStatus.PAYING and w.out_bill_no
    assert changes(mid, await balances(bob=c.bob)) == {}  # the transfer is still in flight
    w = await withdrawals.payout_succeeded(w.id, transfer_bill_no="TB1")
    assert w.status == WithdrawalStatus.PAID
    assert changes(mid, await balances(bob=c.bob)) == {"bob.withdrawing": -5_000, "payouts": 4_950, "fees": 50}
    await running_balances_hold(c.bob)


@pytest.mark.asyncio
async def test_a_withdrawal_marked_paid_by_hand(database):
    c = await bob_with_earnings(5_000)
    w = await withdrawals.request(c.bob.id, 3_000, request_id="wd-1")
    before = await balances(bob=c.bob)
    w = await withdrawals.mark_paid(w.id, OPERATOR_ID, reference="bank 0042")
    assert (w.status, w.method, w.reference) == (WithdrawalStatus.PAID, "manual", "bank 0042")
    assert changes(before, await balances(bob=c.bob)) == {"bob.withdrawing": -3_000, "payouts": 2_970, "fees": 30}
    assert await p.available(c.bob) == 2_000


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["rejected", "payout_failed"])
async def test_a_rejected_or_failed_withdrawal_returns_all_of_it(database, how):
    c = await bob_with_earnings(5_000)
    w = await withdrawals.request(c.bob.id, 5_000, request_id="wd-1")
    before = await balances(bob=c.bob)
    if how == "rejected":
        w = await withdrawals.reject(w.id, OPERATOR_ID, reason="name mismatch")
        assert w.status == WithdrawalStatus.REJECTED
    else:
        await withdrawals.approve(w.id, OPERATOR_ID)
        w = await withdrawals.payout_failed(w.id, reason="account frozen")
        assert w.status == WithdrawalStatus.FAILED
    assert changes(before, await balances(bob=c.bob)) == {"bob": 5_000, "bob.withdrawing": -5_000}
    await running_balances_hold(c.bob)


@pytest.mark.asyncio
async def test_a_decided_withdrawal_cannot_be_decided_again(database):
    c = await bob_with_earnings(5_000)
    w = await withdrawals.request(c.bob.id, 5_000, request_id="wd-1")
    await withdrawals.reject(w.id, OPERATOR_ID, reason="no")
    before = await snapshot()
    for decide in (
        lambda: withdrawals.mark_paid(w.id, OPERATOR_ID, reference="x"),
        lambda: withdrawals.approve(w.id, OPERATOR_ID),
        lambda: withdrawals.reject(w.id, OPERATOR_ID, reason="again"),
        lambda: withdrawals.payout_succeeded(w.id),
    ):
        with pytest.raises(DomainError) as refused:
            await decide()
        assert refused.value.code == "already_decided"
    await assert_unchanged(before)


@pytest.mark.asyncio
async def test_a_repeated_withdrawal_request_id_moves_money_once(database):
    c = await bob_with_earnings(5_000)
    first = await withdrawals.request(c.bob.id, 2_000, request_id="wd-1")
    again = await withdrawals.request(c.bob.id, 2_000, request_id="wd-1")
    assert again.id == first.id
    assert await p.available(c.bob) == 3_000
    before = await snapshot()
    with pytest.raises(DomainError) as refused:
        await withdrawals.request(c.bob.id, 2_500, request_id="wd-1")
    assert refused.value.code == "idempotency_conflict"
    await assert_unchanged(before)


@pytest.mark.asyncio
async def test_the_withdrawal_fee_is_floored(database):
    c = await bob_with_earnings(1_000)
    w = await withdrawals.request(c.bob.id, 199, request_id="wd-1")  # 1 % of 199 = 1.99 → 1
    assert w.fee_fen == 1
    before = await balances(bob=c.bob)
    await withdrawals.mark_paid(w.id, OPERATOR_ID, reference="r")
    assert changes(before, await balances(bob=c.bob)) == {"bob.withdrawing": -199, "payouts": 198, "fees": 1}


@pytest.mark.asyncio
async def test_a_publisher_may_withdraw_unused_balance(database):
    c = await cast(alice_balance_fen=10_000)
    await publish(c, price=1_000, quantity=2)
    before = await balances(alice=c.alice)
    w = await withdrawals.request(c.alice.id, 7_800, request_id="wd-a")
    assert changes(before, await balances(alice=c.alice)) == {"alice": -7_800, "alice.withdrawing": 7_800}
    with pytest.raises(DomainError) as refused:
        await withdrawals.request(c.alice.id, 100, request_id="wd-b")
    assert refused.value.code == "insufficient_balance"
    await withdrawals.mark_paid(w.id, OPERATOR_ID, reference="r")
    assert await p.withdrawing(c.alice) == 0


# --- 7. manual adjustment -------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_an_operator_credits_and_debits_by_hand_with_a_reason(database):
    bob = await p.worker("bob")
    before = await balances(bob=bob)
    await ledger.adjust(bob.id, 500, operator_id=OPERATOR_ID, reason="goodwill for the outage", request_id="adj-1")
    assert changes(before, await balances(bob=bob)) == {"bob": 500, "adjustments": -500}
    mid = await balances(bob=bob)
    await ledger.adjust(bob.id, -200, operator_id=OPERATOR_ID, reason="double payment reversed", request_id="adj-2")
    assert changes(mid, await balances(bob=bob)) == {"bob": -200, "adjustments": 200}
    rows = await AuditLog.filter(action="ledger.adjust").order_by("id")
    assert [(r.actor_kind, r.actor_id, r.target_id, r.reason) for r in rows] == [
        ("operator", OPERATOR_ID, bob.id, "goodwill for the outage"),
        ("operator", OPERATOR_ID, bob.id, "double payment reversed"),
    ]
    await running_balances_hold(bob)


@pytest.mark.asyncio
async def test_a_debit_beyond_the_balance_is_refused(database):
    bob = await p.worker("bob")
    await ledger.adjust(bob.id, 500, operator_id=OPERATOR_ID, reason="start", request_id="adj-1")
    before = await snapshot()
    with pytest.raises(DomainError) as refused:
        await ledger.adjust(bob.id, -501, operator_id=OPERATOR_ID, reason="too much", request_id="adj-2")
    assert refused.value.code == "insufficient_balance"
    await assert_unchanged(before)


@pytest.mark.asyncio
async def test_a_repeated_adjustment_request_moves_money_once(database):
    bob = await p.worker("bob")
    first = await ledger.adjust(bob.id, 500, operator_id=OPERATOR_ID, reason="once", request_id="adj-1")
    again = await ledger.adjust(bob.id, 500, operator_id=OPERATOR_ID, reason="once", request_id="adj-1")
    assert again == first
    assert await p.available(bob) == 500


# --- the account details every user sees ----------------------------------------------------------
@pytest.mark.asyncio
async def test_every_posting_shows_the_balance_right_after_it(database):
    c = await cast(alice_balance_fen=20_000)
    for _ in range(3):
        worker = await p.worker("worker")
        await completed_order(c, price=1_234, worker=worker)
        await withdrawals.request(worker.id, 1_000, request_id="wd")
    await completed_order(c, price=2_000)
    await referrals.settle()
    w = await withdrawals.request(c.bob.id, 1_500, request_id="wd-bob")
    await withdrawals.reject(w.id, OPERATOR_ID, reason="try again")
    await withdrawals.request(c.bob.id, 1_500, request_id="wd-bob-2")
    await ledger.adjust(c.alice.id, -100, operator_id=OPERATOR_ID, reason="fix", request_id="adj-a")
    for person in c.people().values():
        await running_balances_hold(person)
