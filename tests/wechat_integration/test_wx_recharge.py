"""Recharges: prepay → the sandbox "user" pays → WeChat Pay's notification credits exactly once."""

from __future__ import annotations

import asyncio
import json

import pytest

from models import clock
from models.audit import AuditLog
from models.recharges import Recharge, RechargeStatus
from models.users import End
from tests import personas as p
from wechat import crypto
from wechat.sandbox import make_payment_notification, sign_notification

NOTIFY = "/api/wechat/pay/notify"


async def alice(live):
    user, _ = await live.services.login(End.PUBLISHER, "alice-1")
    return user


def paid_tx(live, no: str, **changes) -> dict:
    """What WeChat says about a paid order (the sandbox order marked paid, without a notification)."""
    order = live.state.orders[no]
    order.update(trade_state="SUCCESS", trade_state_desc="支付成功", bank_type="OTHERS",
                 transaction_id=f"4200000000{order['out_trade_no'][-8:]}", success_time="2026-01-01T10:00:00+08:00")
    from wechat.sandbox import _transaction_view

    tx = _transaction_view(order)
    tx.update(changes)
    return tx


@pytest.mark.asyncio
async def test_alice_pays_and_her_balance_is_credited_once(live):
    a = await alice(live)
    started = await live.services.start_recharge(a, 5_000, "r-1")
    assert started["amount_fen"] == 5_000 and started["payment"]["signType"] == "RSA"
    assert started["payment"]["package"].startswith("prepay_id=wx")
    again = await live.services.start_recharge(a, 5_000, "r-1")  # the same request_id: the same prepayment
    assert again["out_trade_no"] == started["out_trade_no"]
    assert again["payment"]["package"] == started["payment"]["package"]
    assert len(live.state.orders) == 1

    r = await live.http.post("/sandbox/pay/_simulate/pay", json={"out_trade_no": started["out_trade_no"], "wait": True})
    assert r.json()["notification"]["status"] == 204
    assert await p.available(a) == 5_000
    rec = await Recharge.get(id=started["recharge_id"])
    assert rec.status == RechargeStatus.PAID and rec.transaction_id == r.json()["transaction_id"]
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_the_same_notification_delivered_ten_times_credits_once(live):
    a = await alice(live)
    started = await live.services.start_recharge(a, 1_234, "r-10")
    headers, body = make_payment_notification(live.keys, paid_tx(live, started["out_trade_no"]))
    answers = await asyncio.gather(*(live.http.post(NOTIFY, content=body, headers=headers) for _ in range(10)))
    assert [x.status_code for x in answers] == [204] * 10
    assert await p.available(a) == 1_234
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_a_notification_after_the_checker_credited_changes_nothing(live):
    a = await alice(live)
    started = await live.services.start_recharge(a, 700, "r-ooo")
    tx = paid_tx(live, started["out_trade_no"])
    clock.advance(61)
    assert await live.services.check_recharges() == 1  # the query finds it paid first
    assert await p.available(a) == 700
    headers, body = make_payment_notification(live.keys, tx)
    assert (await live.http.post(NOTIFY, content=body, headers=headers)).status_code == 204
    assert await p.available(a) == 700


@pytest.mark.asyncio
async def test_a_late_notification_for_a_locally_closed_recharge_still_credits(live):
    a = await alice(live)
    started = await live.services.start_recharge(a, 900, "r-late")
    tx = paid_tx(live, started["out_trade_no"])
    from models import recharges

    assert await recharges.close(started["out_trade_no"])
    headers, body = make_payment_notification(live.keys, tx)
    assert (await live.http.post(NOTIFY, content=body, headers=headers)).status_code == 204
    assert await p.available(a) == 900  # the money did arrive


@pytest.mark.asyncio
async def test_when_the_notification_never_comes_the_checker_credits(live):
    a = await alice(live)
    started = await live.services.start_recharge(a, 2_500, "r-quiet")
    paid_tx(live, started["out_trade_no"])
    assert await live.services.check_recharges() == 0  # too young to ask about
    clock.advance(61)
    await live.services.check_recharges()
    assert await p.available(a) == 2_500
    await live.services.check_recharges()  # again: nothing more
    assert await p.available(a) == 2_500


@pytest.mark.asyncio
async def test_an_expired_unpaid_recharge_is_closed_at_wechat_and_here(live):
    a = await alice(live)
    started = await live.services.start_recharge(a, 300, "r-expire")
    clock.advance(1_801)
    await live.services.check_recharges()
    assert live.state.orders[started["out_trade_no"]]["trade_state"] == "CLOSED"
    assert (await Recharge.get(id=started["recharge_id"])).status == RechargeStatus.CLOSED
    assert await p.available(a) == 0


async def _hostile(live, headers, body, status, amount=0, a=None):
    r = await live.http.post(NOTIFY, content=body, headers=headers)
    assert r.status_code == status, r.text
    if status >= 400:
        assert r.json()["code"] == "FAIL"
    if a is not None:
        assert await p.available(a) == amount


@pytest.mark.asyncio
async def test_a_wrong_signature_is_answered_401_and_credits_nothing(live):
    a = await alice(live)
    started = await live.services.start_recharge(a, 1_000, "r-sig")
    headers, body = make_payment_notification(live.keys, paid_tx(live, started["out_trade_no"]))
    forged = dict(headers, **{"Wechatpay-Signature": crypto.rsa_sign(crypto.generate_private_key_pem(), "x")})
    await _hostile(live, forged, body, 401, 0, a)


@pytest.mark.asyncio
async def test_a_signtest_probe_is_answered_401(live):
    a = await alice(live)
    started = await live.services.start_recharge(a, 1_000, "r-probe")
    headers, body = make_payment_notification(live.keys, paid_tx(live, started["out_trade_no"]))
    probe = dict(headers, **{"Wechatpay-Signature": "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]})
    await _hostile(live, probe, body, 401, 0, a)


@pytest.mark.asyncio
async def test_a_tampered_ciphertext_is_refused_and_credits_nothing(live):
    a = await alice(live)
    started = await live.services.start_recharge(a, 1_000, "r-tamper")
    _, body = make_payment_notification(live.keys, paid_tx(live, started["out_trade_no"]))
    envelope = json.loads(body)
    ct = envelope["resource"]["ciphertext"]
    envelope["resource"]["ciphertext"] = ("A" if ct[0] != "A" else "B") + ct[1:]
    tampered = json.dumps(envelope).encode()
    await _hostile(live, sign_notification(live.keys, tampered), tampered, 400, 0, a)  # signed, but not decryptable


@pytest.mark.asyncio
async def test_a_stale_timestamp_is_refused(live):
    a = await alice(live)
    started = await live.services.start_recharge(a, 1_000, "r-stale")
    import time

    headers, body = make_payment_notification(live.keys, paid_tx(live, started["out_trade_no"]), timestamp=int(time.time()) - 600)
    await _hostile(live, headers, body, 400, 0, a)


@pytest.mark.asyncio
async def test_a_wrong_amount_credits_nothing_and_is_audited(live):
    """Answered 204: WeChat would repeat the same facts, so a retry cannot help; an operator must look."""
    a = await alice(live)
    started = await live.services.start_recharge(a, 1_000, "r-amount")
    tx = paid_tx(live, started["out_trade_no"])
    tx["amount"] = dict(tx["amount"], total=100_000, payer_total=100_000)
    headers, body = make_payment_notification(live.keys, tx)
    await _hostile(live, headers, body, 204, 0, a)
    assert (await Recharge.get(id=started["recharge_id"])).status == RechargeStatus.PENDING
    assert await AuditLog.filter(action="recharge.amount_mismatch").count() == 1


@pytest.mark.asyncio
async def test_an_unknown_order_credits_nothing(live):
    a = await alice(live)
    started = await live.services.start_recharge(a, 1_000, "r-unknown")
    tx = paid_tx(live, started["out_trade_no"], out_trade_no="RNOTOURS0000001")
    headers, body = make_payment_notification(live.keys, tx)
    await _hostile(live, headers, body, 204, 0, a)
    assert await Recharge.filter(status=RechargeStatus.PAID).count() == 0


@pytest.mark.asyncio
async def test_a_notification_reusing_another_recharges_transaction_id_credits_nothing_and_is_audited(live):
    """Answered 204 like every verified notification that does not fit our records (docs/wechat.md):
    a 500 would make WeChat repeat it for a day, and it can never fit."""
    a = await alice(live)
    first = await live.services.start_recharge(a, 1_000, "r-first")
    second = await live.services.start_recharge(a, 2_000, "r-second")
    tx1 = paid_tx(live, first["out_trade_no"])
    headers, body = make_payment_notification(live.keys, tx1)
    assert (await live.http.post(NOTIFY, content=body, headers=headers)).status_code == 204
    reused = paid_tx(live, second["out_trade_no"], transaction_id=tx1["transaction_id"])
    headers, body = make_payment_notification(live.keys, reused)
    await _hostile(live, headers, body, 204, 1_000, a)
    assert (await Recharge.get(id=second["recharge_id"])).status == RechargeStatus.PENDING
    assert await AuditLog.filter(action="recharge.transaction_id_reused").count() == 1
    live.state.orders[second["out_trade_no"]]["transaction_id"] = tx1["transaction_id"]
    clock.advance(61)
    await live.services.check_recharges()  # the query path says the same: still nothing credited
    assert await p.available(a) == 1_000
    assert await AuditLog.filter(action="recharge.transaction_id_reused").count() == 2
    await p.assert_books_clean()


@pytest.mark.asyncio
@pytest.mark.postgres
async def test_two_recharges_claiming_one_transaction_id_at_once_credit_one(live):
    a = await alice(live)
    first = await live.services.start_recharge(a, 1_500, "r-race-1")
    second = await live.services.start_recharge(a, 1_500, "r-race-2")
    tx1 = paid_tx(live, first["out_trade_no"])
    tx2 = paid_tx(live, second["out_trade_no"], transaction_id=tx1["transaction_id"])
    notes = [make_payment_notification(live.keys, tx) for tx in (tx1, tx2)]
    answers = await asyncio.gather(*(live.http.post(NOTIFY, content=b, headers=h) for h, b in notes * 3))
    assert [r.status_code for r in answers] == [204] * 6
    assert await p.available(a) == 1_500
    assert await Recharge.filter(status=RechargeStatus.PAID).count() == 1
    assert await AuditLog.filter(action="recharge.transaction_id_reused").count() >= 1
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_a_notification_that_could_not_be_recorded_comes_again_and_credits_once(live, monkeypatch):
    """WeChat repeats a notification until it is acknowledged (15 s, 15 s, 30 s, 3 min ... over 24 h;
    the tests' schedule is shorter): a database failure answers 500 and the next delivery credits."""
    from models import recharges as recharge_rules
    from wechat.config import WECHAT_NOTIFY_RETRY_SCHEDULE_S, WECHAT_TRANSFER_NOTIFY_RETRY_SCHEDULE_S, WeChatConfig

    assert WeChatConfig.from_dict({}, env={}).sandbox_options.notify_retry_schedule_s == ()  # = WeChat's, per kind
    assert WECHAT_NOTIFY_RETRY_SCHEDULE_S[:5] == (0, 15, 15, 30, 180) and sum(WECHAT_NOTIFY_RETRY_SCHEDULE_S) == 24 * 3600 + 240
    assert len(WECHAT_TRANSFER_NOTIFY_RETRY_SCHEDULE_S) == 65 and sum(WECHAT_TRANSFER_NOTIFY_RETRY_SCHEDULE_S) == 150 + 3000 + 79200
    a = await alice(live)
    started = await live.services.start_recharge(a, 4_321, "r-flaky")
    real_credit, calls = recharge_rules.credit, []

    async def database_down_once(*args, **kw):
        calls.append(args)
        if len(calls) == 1:
            raise ConnectionError("database unreachable")
        return await real_credit(*args, **kw)

    monkeypatch.setattr(recharge_rules, "credit", database_down_once)
    r = await live.http.post("/sandbox/pay/_simulate/pay", json={"out_trade_no": started["out_trade_no"], "wait": True})
    assert r.json()["notification"]["status"] == 500
    assert await p.available(a) == 0
    await live.state.drain()
    assert [attempt["status"] for attempt in live.state.deliveries[-1].attempts] == [500, 204]
    assert await p.available(a) == 4_321
    await p.assert_books_clean()


@pytest.mark.asyncio
@pytest.mark.parametrize("code, closed", [("ORDER_NOT_EXIST", True), ("ORDERNOTEXIST", True), ("HTTP_404", False),
                                          ("SYSTEM_ERROR", False)])
async def test_an_expired_recharge_is_closed_when_wechat_says_no_such_order_in_either_spelling(live, monkeypatch, code, closed):
    """A bare 404 (a wrong pay_base, a proxy) is not "no such order": believing it would close recharges
    that were paid. Only WeChat's codes are."""
    from wechat.errors import PayApiError

    a = await alice(live)
    started = await live.services.start_recharge(a, 300, "r-gone")

    async def not_there(no):
        raise PayApiError(404 if code != "SYSTEM_ERROR" else 500, code, "订单不存在")

    monkeypatch.setattr(live.services.pay, "query_by_out_trade_no", not_there)
    clock.advance(1_801)
    await live.services.check_recharges()
    expected = RechargeStatus.CLOSED if closed else RechargeStatus.PENDING
    assert (await Recharge.get(id=started["recharge_id"])).status == expected


@pytest.mark.asyncio
@pytest.mark.parametrize("close_error", ["ORDERPAID", "SYSTEM_ERROR", "ORDER_CLOSED", "timeout"])
async def test_whatever_the_close_answers_a_query_decides(live, monkeypatch, close_error):
    """The user paid just as the recharge expired: the close fails in some way, and only a query
    says what the order is — here paid, so it is credited, never closed."""
    from wechat.errors import PayApiError, PayTimeout

    a = await alice(live)
    started = await live.services.start_recharge(a, 800, "r-race")
    order = live.state.orders[started["out_trade_no"]]
    real_query = live.services.pay.query_by_out_trade_no
    queries = []

    async def query(no):
        queries.append(no)
        if len(queries) > 1:  # paid between the first query and the close
            paid_tx(live, no)
        return await real_query(no)

    async def close(no):
        raise PayTimeout("read timed out") if close_error == "timeout" else PayApiError(400, close_error, "x")

    monkeypatch.setattr(live.services.pay, "query_by_out_trade_no", query)
    monkeypatch.setattr(live.services.pay, "close", close)
    clock.advance(1_801)
    await live.services.check_recharges()
    assert len(queries) == 2 and order["trade_state"] == "SUCCESS"
    assert (await Recharge.get(id=started["recharge_id"])).status == RechargeStatus.PAID
    assert await p.available(a) == 800


@pytest.mark.asyncio
async def test_a_close_that_fails_on_an_order_still_open_leaves_the_recharge_for_the_next_round(live, monkeypatch):
    from wechat.errors import PayApiError

    a = await alice(live)
    started = await live.services.start_recharge(a, 800, "r-open")

    async def close(no):
        raise PayApiError(500, "SYSTEM_ERROR", "busy")

    monkeypatch.setattr(live.services.pay, "close", close)
    clock.advance(1_801)
    await live.services.check_recharges()
    assert (await Recharge.get(id=started["recharge_id"])).status == RechargeStatus.PENDING
    monkeypatch.undo()
    await live.services.check_recharges()
    assert (await Recharge.get(id=started["recharge_id"])).status == RechargeStatus.CLOSED
