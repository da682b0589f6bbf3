"""Payouts: approve → transfer bill at the sandbox → the user confirms → paid (or failed → returned).

A payout ends only on WeChat's word or an operator's (issue 16.4–16.7): transient trouble repeats
the same bill, ACCEPTED / PROCESSING are asked for again until the user can confirm, a refusal only a
person can cure holds the payout for an operator, a cancel is final only at CANCELLED, and ¥2000 or
more carries the payee's real name. Every test ends with the books audited."""

from __future__ import annotations

import pytest

from models import clock
from models import withdrawals as w_rules
from models.audit import AuditLog
from models.errors import InvalidInput
from models.ledger import AccountKind
from models.users import End
from models.withdrawals import RealNameRequired, Withdrawal, WithdrawalStatus
from server.wechat_services import PayoutStillAtWeChat
from tests import personas as p
from wechat.errors import PayApiError, PayTimeout
from wechat.sandbox import make_transfer_notification, sign_notification

OPERATOR = 9_001
NOTIFY = "/api/wechat/transfer/notify"


async def approved_withdrawal(live, amount_fen=10_000, *, real_name=None, fund_fen=20_000):
    """Publisher Alice (publishers may withdraw unused balance) asks for A, an operator approves."""
    alice, _ = await live.services.login(End.PUBLISHER, "alice-1")
    await p.fund(alice, fund_fen)
    w = await w_rules.request(alice.id, amount_fen, request_id="w-1", real_name=real_name)
    w = await w_rules.approve(w.id, OPERATOR)
    return alice, w


async def row(w) -> Withdrawal:
    return await Withdrawal.get(id=w.id)


async def next_round(live) -> int:
    """The checker's next round, however long its backoff (no test waits: the clock moves)."""
    clock.advance(3_601)
    return await live.services.check_payouts()


async def confirm(live, out_bill_no, result="SUCCESS", **more):
    r = await live.http.post("/sandbox/pay/_simulate/confirm_transfer",
                             json={"out_bill_no": out_bill_no, "result": result, "wait": True, **more})
    assert r.status_code == 200, r.text
    return r.json()


# --- the plain path ---------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_a_confirmed_transfer_pays_the_withdrawal_and_books_the_fee(live):
    alice, w = await approved_withdrawal(live)
    payouts, fees = await p.platform(AccountKind.PAYOUTS), await p.platform(AccountKind.FEES)
    w = await live.services.start_payout(w)
    assert w.status == WithdrawalStatus.PAYING and w.transfer_state == "WAIT_USER_CONFIRM"
    assert w.transfer_bill_no and w.package_info  # for wx.requestMerchantTransfer
    await live.services.start_payout(w)  # twice: still one bill
    assert len(live.state.transfers) == 1
    bill = live.state.transfers[w.out_bill_no]
    assert bill["transfer_amount"] == 10_000 - 100 and bill["openid"] == alice.openid
    assert bill["appid"] == live.services.cfg.publisher.appid

    assert (await confirm(live, w.out_bill_no))["notification"]["status"] == 204
    assert (await row(w)).status == WithdrawalStatus.PAID
    assert await p.withdrawing(alice) == 0
    assert await p.available(alice) == 10_000
    assert await p.platform(AccountKind.PAYOUTS) - payouts == 9_900
    assert await p.platform(AccountKind.FEES) - fees == 100
    await live.state.drain()
    delivery = live.state.deliveries[-1]  # the notification again (WeChat repeats): harmless
    again = await live.http.post(NOTIFY, content=delivery.body, headers=sign_notification(live.keys, delivery.body))
    assert again.status_code == 204
    assert await p.platform(AccountKind.PAYOUTS) - payouts == 9_900
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_a_failed_transfer_returns_the_whole_amount_and_tells_the_user_why(live):
    alice, w = await approved_withdrawal(live)
    w = await live.services.start_payout(w)
    await confirm(live, w.out_bill_no, "FAIL", fail_reason="ACCOUNT_FROZEN")
    w = await row(w)
    assert w.status == WithdrawalStatus.FAILED and w.reason == "微信转账失败：微信账户已冻结（ACCOUNT_FROZEN）"
    assert await p.available(alice) == 20_000 and await p.withdrawing(alice) == 0
    await p.assert_books_clean()


# --- transient trouble: the same bill, later ----------------------------------------------------------

@pytest.mark.asyncio
async def test_a_merchant_account_short_of_money_retries_the_same_bill_after_a_top_up(live):
    alice, w = await approved_withdrawal(live)
    live.state.merchant_balance_fen = 0  # NOT_ENOUGH: "请充值后原单重试"
    w = await live.services.start_payout(w)
    assert w.status == WithdrawalStatus.PAYING and not live.state.transfers and w.hold_reason is None
    assert w.payout_error.startswith("NOT_ENOUGH")  # shown in the panel while it waits
    assert await live.services.check_payouts() == 0  # backing off, not hammering
    live.state.merchant_balance_fen = None
    assert await next_round(live) == 1
    w = await row(w)
    assert list(live.state.transfers) == [w.out_bill_no] and w.transfer_state == "WAIT_USER_CONFIRM"
    assert w.payout_error is None
    await p.assert_books_clean()


@pytest.mark.asyncio
@pytest.mark.parametrize("error", [PayApiError(500, "SYSTEM_ERROR", "系统繁忙"), PayApiError(400, "BANK_ERROR", "银行系统异常"),
                                   PayApiError(429, "FREQUENCY_LIMITED", "频率超限"), PayTimeout("read timed out")])
async def test_transient_errors_and_timeouts_never_fail_a_payout_they_repeat_the_same_bill(live, monkeypatch, error):
    alice, w = await approved_withdrawal(live)
    real, calls = live.services.pay.create_transfer_bill, []

    async def flaky(appid, out_bill_no, *args, **kw):
        calls.append(out_bill_no)
        if len(calls) <= 2:
            raise error
        return await real(appid, out_bill_no, *args, **kw)

    monkeypatch.setattr(live.services.pay, "create_transfer_bill", flaky)
    await live.services.start_payout(w)
    await next_round(live)
    assert (await row(w)).status == WithdrawalStatus.PAYING and not live.state.transfers
    await next_round(live)
    assert calls == [w.out_bill_no] * 3  # never another number
    assert (await row(w)).transfer_state == "WAIT_USER_CONFIRM"
    assert await p.withdrawing(alice) == 10_000


# --- WeChat's own states -----------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_accepted_and_processing_bills_are_asked_for_again_until_the_user_can_confirm(live):
    alice, w = await approved_withdrawal(live)
    live.state.transfer_script = ["ACCEPTED", "PROCESSING", "PROCESSING", "WAIT_USER_CONFIRM"]
    w = await live.services.start_payout(w)
    assert w.transfer_state == "ACCEPTED" and w.package_info is None
    r = await live.http.post("/api/v1/publisher/login", json={"code": "alice-9"})
    token = r.json()["token"]
    view = (await live.http.get(f"/api/v1/publisher/withdrawals/{w.id}", headers={"Authorization": f"Bearer {token}"})).json()
    assert view["status"] == "paying" and view["transfer"] is None  # nothing to confirm yet
    for expected in ("PROCESSING", "PROCESSING", "WAIT_USER_CONFIRM"):
        await next_round(live)
        assert (await row(w)).transfer_state == expected
    w = await row(w)
    assert w.package_info and len(live.state.transfers) == 1
    view = (await live.http.get(f"/api/v1/publisher/withdrawals/{w.id}", headers={"Authorization": f"Bearer {token}"})).json()
    assert view["transfer"]["package"] == w.package_info  # now the app can call wx.requestMerchantTransfer
    await confirm(live, w.out_bill_no)
    assert (await row(w)).status == WithdrawalStatus.PAID
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_a_bill_the_user_never_confirms_fails_at_wechat_and_the_checker_returns_the_money(live):
    alice, w = await approved_withdrawal(live)
    w = await live.services.start_payout(w)
    live.state.set_bill_state(w.out_bill_no, "FAIL", fail_reason="OVERDUE_CLOSE")  # 24 h, notification lost
    await next_round(live)
    w = await row(w)
    assert w.status == WithdrawalStatus.FAILED and "超过24小时未确认收款" in w.reason
    assert await p.available(alice) == 20_000
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_a_transferring_bill_is_followed_until_it_succeeds(live):
    alice, w = await approved_withdrawal(live)
    w = await live.services.start_payout(w)
    live.state.set_bill_state(w.out_bill_no, "TRANSFERING")
    await next_round(live)
    assert (await row(w)).transfer_state == "TRANSFERING" and (await row(w)).status == WithdrawalStatus.PAYING
    live.state.set_bill_state(w.out_bill_no, "SUCCESS")
    await next_round(live)
    assert (await row(w)).status == WithdrawalStatus.PAID
    await p.assert_books_clean()


# --- refusals only a person can cure: held for an operator ---------------------------------------------

REFUSALS = [
    ((400, "INVALID_REQUEST", "此IP地址不允许调用该接口"), "IP"),
    ((400, "INVALID_REQUEST", "超出商户单日转账额度"), "额度"),
    ((403, "NO_AUTH", "当前转账场景不可用"), "场景"),
    ((400, "PARAM_ERROR", "该转账场景不支持此用户收款感知"), "感知"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("refusal, hint", REFUSALS)
async def test_a_configuration_refusal_holds_the_payout_for_an_operator_with_the_reason(live, refusal, hint):
    alice, w = await approved_withdrawal(live)
    live.state.transfer_refusal = refusal
    w = await live.services.start_payout(w)
    assert w.status == WithdrawalStatus.PAYING  # never failed locally: the money is not returned...
    assert w.hold_reason and refusal[2] in w.hold_reason and hint in w.hold_reason
    assert await p.withdrawing(alice) == 10_000 and await p.available(alice) == 10_000  # ...nor paid
    assert await AuditLog.filter(action="withdrawal.payout_held", target_id=w.id).count() == 1
    from server.admin.dashboard import AuditCache, snapshot  # the panel's figures count it

    assert (await snapshot(AuditCache()))["withdrawals_held"] == 1
    from server.observability import database_facts  # ...and so do the metrics, where the alert reads it

    facts = {f.name: f.samples[0].value for f in await database_facts() if f.name.startswith("market_withdrawals_held")}
    assert facts["market_withdrawals_held"] == 1 and facts["market_withdrawals_held_fen"] == 10_000 - 100
    clock.advance(600)
    oldest = [f.samples[0].value for f in await database_facts() if f.name == "market_withdrawals_held_oldest_seconds"]
    assert 600 <= oldest[0] < 660
    for _ in range(3):
        await next_round(live)  # held: the checker leaves it alone
    assert not live.state.transfers and (await row(w)).hold_reason == w.hold_reason
    live.state.transfer_refusal = None  # the operator fixed the account
    w = await live.services.retry_held_payout(w.id, OPERATOR)
    assert w.hold_reason is None and w.transfer_state == "WAIT_USER_CONFIRM"
    assert [f.samples[0].value for f in await database_facts() if f.name == "market_withdrawals_held"] == [0]
    await confirm(live, w.out_bill_no)
    assert (await row(w)).status == WithdrawalStatus.PAID
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_a_refusal_while_a_bill_already_exists_follows_the_bill(live):
    """The answer to the first request was lost (a timeout); the repeat is refused: the query finds
    the bill the first one created, and the payout follows it instead of stopping."""
    alice, w = await approved_withdrawal(live)
    w = await live.services.start_payout(w)
    await w_rules.note_payout(w.id, transfer_bill_no=None, transfer_state=None, package_info=None)  # answer lost
    live.state.transfer_refusal = (400, "INVALID_REQUEST", "商户单号重复")
    await next_round(live)
    w = await row(w)
    assert w.hold_reason is None and w.transfer_bill_no == live.state.transfers[w.out_bill_no]["transfer_bill_no"]
    await confirm(live, w.out_bill_no)
    assert (await row(w)).status == WithdrawalStatus.PAID


@pytest.mark.asyncio
async def test_an_operator_returns_a_held_payout_only_once_wechat_has_no_live_bill(live):
    alice, w = await approved_withdrawal(live)
    live.state.refuse_transfers_from_this_ip()
    w = await live.services.start_payout(w)
    assert w.hold_reason
    w = await live.services.return_held_payout(w.id, OPERATOR, reason="服务器 IP 未加入白名单，已退回")
    assert w.status == WithdrawalStatus.FAILED and await p.available(alice) == 20_000
    with pytest.raises(w_rules.PayoutNotHeld):
        await live.services.return_held_payout(w.id, OPERATOR, reason="again")
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_an_operators_reason_and_reference_for_a_held_payout_follow_the_text_rule(live):
    alice, w = await approved_withdrawal(live)
    live.state.refuse_transfers_from_this_ip()
    w = await live.services.start_payout(w)
    with pytest.raises(InvalidInput, match="control") as refused:
        await live.services.return_held_payout(w.id, OPERATOR, reason="退回\x00")
    assert set(refused.value.details["fields"]) == {"reason"}
    with pytest.raises(InvalidInput, match="control") as refused:
        await live.services.paid_held_payout_by_hand(w.id, OPERATOR, reference="BANK-\x1b1")
    assert set(refused.value.details["fields"]) == {"reference"}
    w = await row(w)
    assert w.status == WithdrawalStatus.PAYING and w.hold_reason and await p.withdrawing(alice) == w.amount_fen


@pytest.mark.asyncio
async def test_returning_a_held_payout_with_a_live_bill_cancels_it_first_and_waits_for_cancelled(live):
    alice, w = await approved_withdrawal(live)
    w = await live.services.start_payout(w)  # a bill waits for Alice's confirmation
    await w_rules.hold_payout(w.id, "operator stopped it")
    live.state.cancel_delay_s = None
    w = await live.services.return_held_payout(w.id, OPERATOR, reason="用户要求撤回")
    assert w.status == WithdrawalStatus.PAYING and w.transfer_state == "CANCELING"  # not final yet
    assert await p.withdrawing(alice) == 10_000
    await next_round(live)
    assert (await row(w)).status == WithdrawalStatus.PAYING  # still CANCELING at WeChat
    live.state.finish_cancel(w.out_bill_no)  # CANCELLED, notified
    await live.state.drain()
    w = await row(w)
    assert w.status == WithdrawalStatus.FAILED and w.reason == "转账已撤销，金额已退回余额"
    assert await p.available(alice) == 20_000
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_wechat_paying_after_the_money_was_returned_is_counted_and_queued_for_an_operator_once(live):
    """WeChat's query found no bill (its records lagged behind a request whose answer was lost), so
    the operator's return gave A back; then the bill pays. The user holds the money twice: the books
    keep what we decided (exact and clean), and the payout becomes a difference to recover, counted
    once however often WeChat repeats the notification — the day's fund bill finds the same one."""
    import datetime as dt

    from models import reconciliation as recon
    from prometheus_client import REGISTRY
    from wechat.bills import FundRow

    alice, w = await approved_withdrawal(live)
    w = await live.services.start_payout(w)  # a bill waits for Alice's confirmation
    await w_rules.hold_payout(w.id, "operator stopped it")
    bill = live.state.transfers.pop(w.out_bill_no)  # WeChat's query does not see it (yet)
    w = await live.services.return_held_payout(w.id, OPERATOR, reason="用户要求撤回")
    assert w.status == WithdrawalStatus.FAILED and await p.available(alice) == 20_000
    payouts = await p.platform(AccountKind.PAYOUTS)
    counted = REGISTRY.get_sample_value("market_payouts_paid_after_return_total") or 0.0

    live.state.transfers[w.out_bill_no] = bill  # ...and Alice confirms the transfer in WeChat
    assert (await confirm(live, w.out_bill_no))["notification"]["status"] == 204
    w = await row(w)
    assert w.status == WithdrawalStatus.FAILED  # nothing moved: the books say what we decided
    assert await p.available(alice) == 20_000 and await p.withdrawing(alice) == 0
    assert await p.platform(AccountKind.PAYOUTS) == payouts
    assert await AuditLog.filter(action="withdrawal.paid_after_return", target_id=w.id).count() == 1
    assert REGISTRY.get_sample_value("market_payouts_paid_after_return_total") == counted + 1
    (difference,) = await recon.Difference.filter(status=recon.DifferenceStatus.OPEN)
    assert (difference.kind, difference.ref_kind, difference.ref_id) == (recon.DifferenceKind.PAYOUT_NOT_RECORDED, "withdrawal", w.id)
    assert difference.key == f"payout_not_recorded:{bill['transfer_bill_no']}" and difference.wechat_ref == bill["transfer_bill_no"]
    assert (difference.our_amount_fen, difference.wechat_amount_fen) == (9_900, 9_900)
    assert difference.details["what"] == "paid_after_return" and difference.details["our_status"] == "failed"

    await live.state.drain()
    delivery = live.state.deliveries[-1]  # WeChat repeats the notification: nothing more is counted
    again = await live.http.post(NOTIFY, content=delivery.body, headers=sign_notification(live.keys, delivery.body))
    assert again.status_code == 204
    assert REGISTRY.get_sample_value("market_payouts_paid_after_return_total") == counted + 1
    assert await recon.Difference.all().count() == 1
    # The day's fund bill shows the transfer: the reconciliation finds the same difference, not a second.
    line = FundRow(clock.now(), bill["transfer_bill_no"], "F1", "商家转账", "商家转账到零钱", "支出", 9_900, 0,
                   voucher_no=w.out_bill_no)
    found = [f for f in await recon.compare(difference.bill_date, [], [line], stuck_after_s=86_400)
             if f.kind == recon.DifferenceKind.PAYOUT_NOT_RECORDED]  # (Alice's test recharge is in no bill)
    assert [f.key for f in found] == [difference.key]
    assert await recon.record(difference.bill_date, found) == []
    assert difference.bill_date == clock.now().astimezone(dt.timezone(dt.timedelta(hours=8))).date()
    assert await p.available(alice) == 20_000
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_a_held_payout_is_marked_paid_by_hand_only_when_wechat_cannot_pay_it_too(live):
    alice, w = await approved_withdrawal(live)
    w = await live.services.start_payout(w)
    await w_rules.hold_payout(w.id, "checking")
    with pytest.raises(PayoutStillAtWeChat):
        await live.services.paid_held_payout_by_hand(w.id, OPERATOR, reference="bank 123")
    live.state.set_bill_state(w.out_bill_no, "FAIL", fail_reason="TRANSFER_RISK")
    w = await live.services.paid_held_payout_by_hand(w.id, OPERATOR, reference="bank 123")
    assert (w.status, w.method, w.reference) == (WithdrawalStatus.PAID, "manual", "bank 123")
    assert await p.withdrawing(alice) == 0
    await p.assert_books_clean()


# --- ¥2000 and more: the payee's real name -------------------------------------------------------------

@pytest.mark.asyncio
async def test_a_big_payout_carries_the_real_name_given_with_the_request_and_then_forgets_it(live, caplog):
    alice, w = await approved_withdrawal(live, 300_000, real_name=" 王小明 ", fund_fen=300_000)
    assert (await row(w)).payee_real_name == "王小明"
    w = await live.services.start_payout(w)
    assert live.state.transfers[w.out_bill_no]["real_name"] == "王小明"  # what WeChat decrypted
    assert w.transfer_state == "WAIT_USER_CONFIRM"
    await confirm(live, w.out_bill_no)
    w = await row(w)
    assert w.status == WithdrawalStatus.PAID and w.payee_real_name is None  # erased with the final transition
    assert "王小明" not in caplog.text
    assert "王小明" not in str([a.data for a in await AuditLog.all()])
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_a_big_withdrawal_without_a_real_name_is_refused_at_request(live):
    alice, _ = await live.services.login(End.PUBLISHER, "alice-1")
    await p.fund(alice, 300_000)
    with pytest.raises(RealNameRequired):
        await w_rules.request(alice.id, 202_021, request_id="w-big")  # pays 200 001 fen after the fee
    with pytest.raises(RealNameRequired):
        await w_rules.request(alice.id, 202_020, request_id="w-exact", real_name="  ")  # pays exactly 200 000
    w = await w_rules.request(alice.id, 202_019, request_id="w-just-below", real_name="王小明")  # pays 199 999
    assert w.payee_real_name is None  # not needed: not kept
    assert await p.available(alice) == 300_000 - 202_019


@pytest.mark.asyncio
@pytest.mark.parametrize("name, why", [("王\x00小明", "control"), ("王\u0085小明", "control"), ("王\ud800", "control"),
                                       ("王\n小明", "control"), ("王" * 33, "32")])
async def test_a_real_name_follows_the_text_rule_and_a_bad_one_moves_nothing(live, name, why):
    alice, _ = await live.services.login(End.PUBLISHER, "alice-1")
    await p.fund(alice, 300_000)
    with pytest.raises(InvalidInput, match=why) as refused:
        await w_rules.request(alice.id, 250_000, request_id="w-bad-name", real_name=name)
    assert set(refused.value.details["fields"]) == {"real_name"}
    assert await p.available(alice) == 300_000 and not await Withdrawal.filter(user_id=alice.id).exists()


@pytest.mark.asyncio
async def test_a_big_payout_approved_without_a_name_is_held_not_failed(live):
    alice, w = await approved_withdrawal(live, 300_000, real_name="王小明", fund_fen=300_000)
    await Withdrawal.filter(id=w.id).update(payee_real_name=None)  # asked before names were collected
    w = await live.services.start_payout(w)
    assert w.status == WithdrawalStatus.PAYING and "实名" in w.hold_reason and not live.state.transfers
    assert await p.withdrawing(alice) == 300_000


@pytest.mark.asyncio
async def test_the_api_takes_the_real_name_and_never_shows_it(live):
    r = await live.http.post("/api/v1/publisher/login", json={"code": "alice-1"})
    token, uid = r.json()["token"], r.json()["user"]["id"]
    from models.users import User

    await p.fund(await User.get(id=uid), 300_000)
    auth = {"Authorization": f"Bearer {token}"}
    r = await live.http.post("/api/v1/publisher/withdrawals", json={"amount_fen": 250_000, "request_id": "big-1"}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "real_name_required"
    r = await live.http.post("/api/v1/publisher/withdrawals", headers=auth,
                             json={"amount_fen": 250_000, "request_id": "big-1", "real_name": "王小明"})
    assert r.status_code == 201 and "王小明" not in r.text
    assert "王小明" not in (await live.http.get("/api/v1/publisher/withdrawals", headers=auth)).text


# --- notifications must fit the withdrawal (issue 17.10) --------------------------------------------

def finished_bill(live, w, **changes) -> dict:
    bill = live.state.transfers[w.out_bill_no]
    view = {"mch_id": live.services.cfg.pay.mchid, "out_bill_no": w.out_bill_no, "transfer_bill_no": bill["transfer_bill_no"],
            "appid": bill["appid"], "state": "SUCCESS", "transfer_amount": bill["transfer_amount"], "openid": bill["openid"],
            "create_time": bill["create_time"], "update_time": bill["update_time"]}
    view.update(changes)
    return {k: v for k, v in view.items() if v is not None}


@pytest.mark.asyncio
@pytest.mark.parametrize("changes, problem", [
    ({"mch_id": "1900000099"}, "mchid"), ({"mch_id": None, "mchid": "1900000099"}, "mchid"), ({"mch_id": None}, "mchid"),
    ({"appid": "wxsomeoneelse00001"}, "appid"), ({"openid": "oSomeoneElse000000000000000"}, "openid"),
    ({"openid": None}, "openid"), ({"transfer_amount": None}, "transfer_amount"), ({"transfer_amount": 1}, "transfer_amount"),
    ({"transfer_amount": 9_900.0}, "transfer_amount"), ({"transfer_bill_no": "1330000999999999999"}, "transfer_bill_no"),
    ({"transfer_bill_no": None}, "transfer_bill_no missing"),
])
async def test_a_transfer_notification_that_does_not_fit_moves_nothing_and_is_audited(live, changes, problem):
    alice, w = await approved_withdrawal(live)
    w = await live.services.start_payout(w)
    headers, body = make_transfer_notification(live.keys, finished_bill(live, w, **changes))
    r = await live.http.post(NOTIFY, content=body, headers=headers)
    assert r.status_code == 204  # a retry would repeat the same facts
    assert (await row(w)).status == WithdrawalStatus.PAYING and await p.withdrawing(alice) == 10_000
    (entry,) = await AuditLog.filter(action="withdrawal.notification_mismatch", target_id=w.id)
    assert problem in entry.data["problems"]
    assert alice.openid not in str(entry.data)


@pytest.mark.asyncio
async def test_a_transfer_notification_with_mchid_spelled_either_way_is_accepted(live):
    alice, w = await approved_withdrawal(live)
    w = await live.services.start_payout(w)
    live.state.set_bill_state(w.out_bill_no, "SUCCESS")
    headers, body = make_transfer_notification(live.keys, finished_bill(live, w, mch_id=None, mchid=live.services.cfg.pay.mchid))
    assert (await live.http.post(NOTIFY, content=body, headers=headers)).status_code == 204
    assert (await row(w)).status == WithdrawalStatus.PAID
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_a_notification_before_our_create_answer_was_recorded_still_settles(live):
    alice, w = await approved_withdrawal(live)
    w = await live.services.start_payout(w)
    bill = finished_bill(live, w)
    await w_rules.note_payout(w.id, transfer_bill_no=None)  # as if the create answer had not been stored yet
    headers, body = make_transfer_notification(live.keys, bill)
    assert (await live.http.post(NOTIFY, content=body, headers=headers)).status_code == 204
    w = await row(w)
    assert w.status == WithdrawalStatus.PAID and w.transfer_bill_no == bill["transfer_bill_no"]


def test_the_domain_asks_for_a_real_name_exactly_where_wechat_requires_one():
    from wechat.pay import TRANSFER_USER_NAME_REQUIRED_FEN

    assert w_rules.REAL_NAME_REQUIRED_FEN == TRANSFER_USER_NAME_REQUIRED_FEN == 200_000


@pytest.mark.asyncio
async def test_a_round_that_outlived_its_lease_writes_nothing_over_the_round_that_took_the_payout_since(live):
    """A round's findings are written under its own lease only: one that ran past its lease (the
    payout claimed by another round since) neither ends that round's lease nor overwrites what it
    learns; a notification (no round) never ends a round's lease either."""
    from server.wechat_payouts import PAYOUT_LEASE_S

    alice, w = await approved_withdrawal(live)
    first = await row(w)
    old_lease = await w_rules.claim_payout_check(first.id, first.payout_check_at, PAYOUT_LEASE_S)
    assert old_lease is not None
    first.round_lease = old_lease
    clock.advance(PAYOUT_LEASE_S + 1)  # the first round hangs past its lease; another claims the payout
    new_lease = await w_rules.claim_payout_round(first.id, PAYOUT_LEASE_S)
    assert new_lease is not None and new_lease != old_lease
    before = await row(w)
    await live.services._retry_later(first, PayTimeout("late"))  # the late round's outcome
    await live.services._apply_bill(first, alice, {"state": "WAIT_USER_CONFIRM", "out_bill_no": first.out_bill_no,
                                                    "transfer_amount": first.amount_fen - first.fee_fen}, source="query")
    after = await row(w)
    assert after.payout_lease_until == new_lease  # the new round still holds the payout
    assert (after.payout_error, after.payout_checks, after.payout_check_at, after.transfer_state) == (
        before.payout_error, before.payout_checks, before.payout_check_at, before.transfer_state)
    # Outside any round (a notification's path): findings are written, the round's lease stays.
    fresh = await row(w)
    await live.services._retry_later(fresh, PayTimeout("notification path"))
    assert (await row(w)).payout_lease_until == new_lease
    # The round that holds the lease ends it.
    fresh.round_lease = new_lease
    await live.services._retry_later(fresh, PayTimeout("its own round"))
    assert (await row(w)).payout_lease_until is None
    await p.assert_books_clean()
