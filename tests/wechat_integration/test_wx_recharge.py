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
