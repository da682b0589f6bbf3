"""Payouts: approve → transfer bill at the sandbox → the user confirms → paid (or failed → returned)."""

from __future__ import annotations

import pytest

from models import clock
from models import withdrawals as w_rules
from models.ledger import AccountKind
from models.users import End
from models.withdrawals import Withdrawal, WithdrawalStatus
from tests import personas as p

OPERATOR = 9_001


async def approved_withdrawal(live, amount_fen=10_000):
    """Publisher Alice (publishers may withdraw unused balance) asks for A, an operator approves."""
    alice, _ = await live.services.login(End.PUBLISHER, "alice-1")
    await p.fund(alice, 20_000)
    w = await w_rules.request(alice.id, amount_fen, request_id="w-1")
    w = await w_rules.approve(w.id, OPERATOR)
    return alice, w


@pytest.mark.asyncio
async def test_a_confirmed_transfer_pays_the_withdrawal_and_books_the_fee(live):
    alice, w = await approved_withdrawal(live)
    payouts, fees = await p.platform(AccountKind.PAYOUTS), await p.platform(AccountKind.FEES)
    w = await live.services.start_payout(w)
    assert w.status == WithdrawalStatus.PAYING
    row = await Withdrawal.get(id=w.id)
    assert row.transfer_bill_no and row.package_info  # for wx.requestMerchantTransfer
    await live.services.start_payout(row)  # twice: still one bill
    assert len(live.state.transfers) == 1
    bill = live.state.transfers[row.out_bill_no]
    assert bill["transfer_amount"] == 10_000 - 100 and bill["openid"] == alice.openid
    assert bill["appid"] == live.services.cfg.publisher.appid

    r = await live.http.post("/sandbox/pay/_simulate/confirm_transfer",
                             json={"out_bill_no": row.out_bill_no, "result": "SUCCESS", "wait": True})
    assert r.json()["notification"]["status"] == 204
    assert (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.PAID
    assert await p.withdrawing(alice) == 0
    assert await p.available(alice) == 10_000
    assert await p.platform(AccountKind.PAYOUTS) - payouts == 9_900
    assert await p.platform(AccountKind.FEES) - fees == 100
    await live.state.drain()
    # the notification again (WeChat repeats): harmless
    delivery = live.state.deliveries[-1]
    from wechat.sandbox import sign_notification

    again = await live.http.post("/api/wechat/transfer/notify", content=delivery.body,
                                 headers=sign_notification(live.keys, delivery.body))
    assert again.status_code == 204
    assert await p.platform(AccountKind.PAYOUTS) - payouts == 9_900
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_a_failed_transfer_returns_the_whole_amount(live):
    alice, w = await approved_withdrawal(live)
    await live.services.start_payout(w)
    row = await Withdrawal.get(id=w.id)
    r = await live.http.post("/sandbox/pay/_simulate/confirm_transfer",
                             json={"out_bill_no": row.out_bill_no, "result": "FAIL", "wait": True})
    assert r.json()["notification"]["status"] == 204
    row = await Withdrawal.get(id=w.id)
    assert row.status == WithdrawalStatus.FAILED
    assert await p.available(alice) == 20_000 and await p.withdrawing(alice) == 0
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_a_transfer_refused_outright_fails_at_once(live):
    alice, w = await approved_withdrawal(live)
    live.state.merchant_balance_fen = 0  # NOT_ENOUGH: stays paying, retried later
    w = await live.services.start_payout(w)
    assert w.status == WithdrawalStatus.PAYING and not live.state.transfers
    live.state.merchant_balance_fen = None
    assert await live.services.check_payouts() == 1  # the checker creates the missing bill
    assert len(live.state.transfers) == 1


@pytest.mark.asyncio
async def test_a_stuck_payout_is_settled_by_the_checker(live):
    alice, w = await approved_withdrawal(live)
    assert await live.services.check_payouts() == 1  # approve happened, start_payout never did
    row = await Withdrawal.get(id=w.id)
    assert row.transfer_bill_no
    live.state.transfers[row.out_bill_no]["state"] = "SUCCESS"  # confirmed, notification lost
    await live.services.check_payouts()
    assert (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.PAYING  # not stale yet
    clock.advance(301)
    await live.services.check_payouts()
    assert (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.PAID
    assert await p.withdrawing(alice) == 0
    await p.assert_books_clean()
