"""parse_notification against hostile input, and wechatpayv3 as an independent oracle for our
sandbox's wire format (signatures both ways, notification encryption)."""

from __future__ import annotations

import base64
import dataclasses
import json
import time

import httpx
import pytest

from wechat import crypto
from wechat.errors import BadPayload, BadSignature, StaleNotification
from wechat.pay import PayClient
from wechat.sandbox import SandboxKeys, make_payment_notification, make_transfer_notification, sign_notification

TX = {"mchid": "1900000001", "appid": "wxsandbox0publisher", "out_trade_no": "RC1", "transaction_id": "4200001",
      "trade_type": "JSAPI", "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS",
      "success_time": "2026-01-01T10:00:00+08:00", "payer": {"openid": "oAlice"},
      "amount": {"total": 1234, "payer_total": 1234, "currency": "CNY", "payer_currency": "CNY"}}


@pytest.fixture
def keys(cfg):
    return SandboxKeys.from_config(cfg)


@pytest.fixture
def client(cfg):
    # No WeChat behind it: a certificate download (for an unknown serial) answers 404.
    http = httpx.AsyncClient(transport=httpx.MockTransport(
        lambda request: httpx.Response(404, json={"code": "NOT_FOUND", "message": "no certificates"})))
    return PayClient(cfg.pay, "http://wechat.test", http)


@pytest.mark.asyncio
async def test_a_genuine_notification_is_verified_and_decrypted(client, keys):
    headers, body = make_payment_notification(keys, TX, notification_id="EV-1")
    note = await client.parse_notification({k.lower(): v for k, v in headers.items()}, body)
    assert note["id"] == "EV-1" and note["event_type"] == "TRANSACTION.SUCCESS" and note["resource"] == TX


@pytest.mark.asyncio
async def test_a_notification_signed_with_another_key_is_bad_signature(client, keys):
    forged = dataclasses.replace(keys, platform_private_key_pem=crypto.generate_private_key_pem())
    headers, body = make_payment_notification(forged, TX)
    with pytest.raises(BadSignature):
        await client.parse_notification(headers, body)


@pytest.mark.asyncio
async def test_tampered_ciphertext_fails_the_signature_and_a_resigned_one_fails_decryption(client, keys):
    headers, body = make_payment_notification(keys, TX)
    env = json.loads(body)
    ct = bytearray(base64.b64decode(env["resource"]["ciphertext"]))
    ct[5] ^= 0x01
    env["resource"]["ciphertext"] = base64.b64encode(bytes(ct)).decode()
    tampered = json.dumps(env).encode()
    with pytest.raises(BadSignature):  # the body no longer matches WeChat's signature
        await client.parse_notification(headers, tampered)
    # Even correctly signed (i.e. the platform key leaked), AES-GCM's tag catches the change.
    with pytest.raises(BadPayload):
        await client.parse_notification(sign_notification(keys, tampered), tampered)


@pytest.mark.asyncio
async def test_a_notification_encrypted_with_another_apiv3_key_is_bad_payload(client, keys):
    other = dataclasses.replace(keys, apiv3_key="B" * 32)
    headers, body = make_transfer_notification(other, {"out_bill_no": "WD1", "state": "SUCCESS"})
    with pytest.raises(BadPayload):
        await client.parse_notification(headers, body)


@pytest.mark.asyncio
async def test_signtest_probes_never_verify(client, keys):
    headers, body = make_payment_notification(keys, TX)
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
    with pytest.raises(BadSignature, match="probe"):
        await client.parse_notification(headers, body)


@pytest.mark.asyncio
async def test_a_stale_or_future_notification_is_refused_even_with_a_valid_signature(client, keys):
    now = time.time()
    headers, body = make_payment_notification(keys, TX, timestamp=int(now) - 301)
    with pytest.raises(StaleNotification):
        await client.parse_notification(headers, body, now=now)
    headers, body = make_payment_notification(keys, TX, timestamp=int(now) + 301)
    with pytest.raises(StaleNotification):
        await client.parse_notification(headers, body, now=now)
    headers, body = make_payment_notification(keys, TX, timestamp=int(now) - 299)
    assert (await client.parse_notification(headers, body, now=now))["resource"]["out_trade_no"] == "RC1"


@pytest.mark.asyncio
async def test_missing_headers_or_unknown_serial_are_bad_signature(client, keys):
    headers, body = make_payment_notification(keys, TX)
    with pytest.raises(BadSignature):
        await client.parse_notification({k: v for k, v in headers.items() if k != "Wechatpay-Nonce"}, body)
    with pytest.raises(BadSignature, match="Serial"):
        await client.parse_notification({**headers, "Wechatpay-Serial": "PUB_KEY_ID_OTHER"}, body)
    assert client.certificate_downloads == 1  # it looked for a platform certificate of that serial...
    with pytest.raises(BadSignature, match="Serial"):
        await client.parse_notification({**headers, "Wechatpay-Serial": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"}, body)
    assert client.certificate_downloads == 1  # ...at most once a minute, whatever serials forgers send


@pytest.mark.asyncio
async def test_garbage_that_verifies_is_bad_payload(client, keys):
    body = b"not json"
    with pytest.raises(BadPayload):
        await client.parse_notification(sign_notification(keys, body), body)


# ---- wechatpayv3 as the oracle -------------------------------------------------------------------

def _oracle(cfg, gateway: str | None = None):
    from wechatpayv3.async_ import AsyncWeChatPay, WeChatPayType

    wp = AsyncWeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG, mchid=cfg.pay.mchid, private_key=cfg.pay.private_key_pem,
        cert_serial_no=cfg.pay.merchant_serial_no, appid=cfg.worker.appid, apiv3_key=cfg.pay.apiv3_key,
        notify_url=cfg.pay.notify_url or "http://127.0.0.1/notify", public_key=cfg.pay.public_key_pem,
        public_key_id=cfg.pay.public_key_id)
    if gateway:
        wp._core._gate_way = gateway  # no public override (STACK-NOTES §5)
    return wp


def test_wechatpayv3_verifies_and_decrypts_the_sandbox_notifications(cfg, keys):
    wp = _oracle(cfg)
    for make, resource in ((make_payment_notification, TX),
                           (make_transfer_notification, {"out_bill_no": "WD1", "state": "SUCCESS",
                                                         "transfer_amount": 990})):
        headers, body = make(keys, resource)
        result = wp.callback({k.lower(): v for k, v in headers.items()}, body)
        assert result is not None, "wechatpayv3 rejected the sandbox's signature"
        assert result["resource"] == resource
    forged = dataclasses.replace(keys, platform_private_key_pem=crypto.generate_private_key_pem())
    headers, body = make_payment_notification(forged, TX)
    assert wp.callback({k.lower(): v for k, v in headers.items()}, body) is None


@pytest.mark.asyncio
async def test_the_sandbox_accepts_wechatpayv3_signed_requests_and_wechatpayv3_accepts_its_answers(sandbox):
    from wechatpayv3.async_ import WeChatPayType

    openid = (await sandbox.mp.code2session("worker", "carol-1"))[0]
    async with _oracle(sandbox.cfg, sandbox.cfg.pay_base) as wp:
        code, text = await wp.pay(description="充值", out_trade_no="RC30000001", amount={"total": 500},
                                  payer={"openid": openid}, pay_type=WeChatPayType.MINIPROG)
        assert code == 200, text
        prepay_id = json.loads(text)["prepay_id"]
        code, text = await wp.query(out_trade_no="RC30000001")  # verifies the sandbox's response signature
        assert code == 200 and json.loads(text)["trade_state"] == "NOTPAY"
        code, text = await wp.mch_transfer_bills(
            out_bill_no="WD30000001", transfer_scene_id="1005", openid=openid, transfer_amount=100,
            transfer_remark="提现", transfer_scene_report_infos=[{"info_type": "岗位类型", "info_content": "推广"}],
            notify_url=sandbox.cfg.pay.transfer_notify_url)
        assert code == 200 and json.loads(text)["state"] == "WAIT_USER_CONFIRM", text
    assert sandbox.state.orders["RC30000001"]["prepay_id"] == prepay_id
    # wechatpayv3's paySign and ours are the same construction; both verify with the merchant key.
    ours = sandbox.pay.request_payment_params(sandbox.cfg.worker.appid, prepay_id)
    theirs = _oracle(sandbox.cfg).sign([sandbox.cfg.worker.appid, ours["timeStamp"], ours["nonceStr"], ours["package"]])
    assert theirs == ours["paySign"]  # PKCS#1 v1.5 is deterministic
