"""Which key verifies WeChat Pay's answers and notifications: the one its Wechatpay-Serial names —
the 微信支付公钥, or a platform certificate downloaded from /v3/certificates — as wechatpayv3 does
(issue 16.1). Both modes and WeChat's 7-day switch between them, against the sandbox; answers are
believed only within ±5 minutes of their timestamp (issue 16.8)."""

from __future__ import annotations

import dataclasses
import json
import time

import httpx
import pytest

from tests.wechat.conftest import make_config, running_sandbox
from wechat import crypto
from wechat.errors import BadSignature, StaleResponse
from wechat.pay import CERTIFICATE_REFRESH_S, PayClient
from wechat.sandbox import make_payment_notification, make_transfer_notification

TX = {"mchid": "1900000001", "appid": "wxsandbox0publisher", "out_trade_no": "RC1", "transaction_id": "4200001",
      "trade_state": "SUCCESS", "amount": {"total": 1234, "currency": "CNY"}}
MODE_OPTIONS = {"refused_users": ["rita"], "notify_retry_schedule_s": [0, 0.05, 0.1, 0.2]}


@pytest.fixture(params=["public_key", "certificate", "switching"])
def cfg(request):
    return make_config(sandbox_options={**MODE_OPTIONS, "platform_key": request.param})


async def _openid(sandbox, name="bob"):
    return (await sandbox.mp.code2session("worker", f"{name}-{len(sandbox.state.used_codes)}"))[0]


@pytest.mark.asyncio
async def test_every_answer_and_notification_verifies_in_each_mode(sandbox):
    """Certificate mode: the client has no public key and downloads the certificate once; switching:
    messages come signed either way and all verify; public key: nothing is downloaded."""
    mode = sandbox.cfg.sandbox_options.platform_key
    assert (sandbox.cfg.pay.key_mode == "certificate") == (mode == "certificate")
    openid = await _openid(sandbox)
    serials = set()
    for n in range(12):
        await sandbox.pay.jsapi_prepay(sandbox.cfg.worker.appid, f"RC3000{n:04d}", "充值", 100, openid)
        await sandbox.pay.query_by_out_trade_no(f"RC3000{n:04d}")
    for n in range(12):
        headers, body = make_payment_notification(sandbox.state.keys, dict(TX, out_trade_no=f"RC3000{n:04d}"))
        serials.add(headers["Wechatpay-Serial"])
        assert (await sandbox.pay.parse_notification(headers, body))["resource"]["out_trade_no"] == f"RC3000{n:04d}"
    cert_serial = sandbox.state.keys.platform_cert_serial
    expected = {"public_key": {sandbox.state.keys.public_key_id}, "certificate": {cert_serial},
                "switching": {sandbox.state.keys.public_key_id, cert_serial}}[mode]
    assert serials <= expected and (mode != "certificate" or serials == expected)
    assert sandbox.pay.certificate_downloads == (0 if mode == "public_key" else 1)


@pytest.mark.asyncio
async def test_a_big_payout_encrypts_the_real_name_with_the_key_wechat_uses(sandbox):
    openid = await _openid(sandbox)
    bill = await sandbox.pay.create_transfer_bill(sandbox.cfg.worker.appid, "WD30000001", openid, 200_000, "提现",
                                                  user_name="张三")
    assert bill["state"] == "WAIT_USER_CONFIRM"
    assert sandbox.state.transfers["WD30000001"]["real_name"] == "张三"  # WeChat could read it


@pytest.mark.asyncio
async def test_wechatpayv3_agrees_with_the_sandboxs_certificates_and_signatures(sandbox):
    """The independent oracle: without a public key it downloads /v3/certificates itself."""
    from wechatpayv3.async_ import AsyncWeChatPay, WeChatPayType

    cfg = sandbox.cfg
    keys = {"public_key": cfg.pay.public_key_pem, "public_key_id": cfg.pay.public_key_id} if cfg.pay.public_key_id else {}
    wp = AsyncWeChatPay(wechatpay_type=WeChatPayType.MINIPROG, mchid=cfg.pay.mchid, private_key=cfg.pay.private_key_pem,
                        cert_serial_no=cfg.pay.merchant_serial_no, appid=cfg.worker.appid, apiv3_key=cfg.pay.apiv3_key,
                        notify_url=cfg.pay.notify_url, **keys)
    wp._core._gate_way = cfg.pay_base  # no public override (STACK-NOTES §5)
    openid = await _openid(sandbox)
    async with wp:  # without a public key, this downloads the sandbox's /v3/certificates
        if not keys:
            assert wp._core._certificates, "wechatpayv3 could not read the sandbox's certificates"
        code, text = await wp.pay(description="充值", out_trade_no="RC30009999", amount={"total": 500},
                                  payer={"openid": openid}, pay_type=WeChatPayType.MINIPROG)
        assert code == 200, text
        for _ in range(6):
            code, text = await wp.query(out_trade_no="RC30009999")  # raises unless the answer verifies
            assert code == 200
        headers, body = make_transfer_notification(sandbox.state.keys, {"out_bill_no": "WD1", "state": "SUCCESS"},
                                                   key="public_key" if keys else "certificate")
        assert wp.callback({k.lower(): v for k, v in headers.items()}, body)["resource"]["state"] == "SUCCESS"


@pytest.mark.asyncio
async def test_wechats_seven_day_switch_from_certificates_to_the_public_key_loses_nothing():
    """A merchant ready for the switch (public key configured, certificates still known): WeChat
    signs with the certificate, then with either (0.1 % → 100 %), then with the public key only."""
    cfg = make_config(sandbox_options={**MODE_OPTIONS, "platform_key": "public_key"})
    async with running_sandbox(cfg) as sandbox:
        openid = await _openid(sandbox)
        for step, (mode, share) in enumerate([("certificate", 0), ("switching", 0.001), ("switching", 0.5),
                                              ("switching", 1.0), ("public_key", 1.0)]):
            sandbox.state.keys = dataclasses.replace(sandbox.state.keys, platform_key=mode, switch_public_key_share=share)
            for n in range(8):
                no = f"RC4{step}{n:06d}"
                await sandbox.pay.jsapi_prepay(sandbox.cfg.worker.appid, no, "充值", 100, openid)
                headers, body = make_payment_notification(sandbox.state.keys, dict(TX, out_trade_no=no))
                assert (await sandbox.pay.parse_notification(headers, body))["resource"]["out_trade_no"] == no
        assert sandbox.pay.certificate_downloads == 1


@pytest.mark.asyncio
async def test_platform_certificates_are_refreshed_twice_a_day(sandbox):
    if sandbox.cfg.pay.key_mode != "certificate":
        pytest.skip("certificate mode only")
    now = [time.time()]
    client = PayClient(sandbox.cfg.pay, sandbox.cfg.pay_base, clock=lambda: now[0])
    try:
        openid = await _openid(sandbox)
        await client.jsapi_prepay(sandbox.cfg.worker.appid, "RC50000001", "充值", 100, openid)
        assert client.certificate_downloads == 1
        now[0] += CERTIFICATE_REFRESH_S - 60
        headers, body = make_payment_notification(sandbox.state.keys, TX, timestamp=int(now[0]))
        await client.parse_notification(headers, body)
        assert client.certificate_downloads == 1
        now[0] += 120  # half a day since the download: look again (WeChat adds the next certificate early)
        headers, body = make_payment_notification(sandbox.state.keys, TX, timestamp=int(now[0]))
        await client.parse_notification(headers, body)
        assert client.certificate_downloads == 2
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_a_message_signed_by_a_certificate_wechat_does_not_have_is_refused(sandbox):
    impostor_key = crypto.generate_private_key_pem()
    impostor_cert = crypto.self_signed_certificate_pem(impostor_key, "not WeChat")
    forged = dataclasses.replace(sandbox.state.keys, platform_key="certificate", platform_cert_private_key_pem=impostor_key,
                                 platform_cert_pem=impostor_cert)
    headers, body = make_payment_notification(forged, TX)
    with pytest.raises(BadSignature, match="unknown Wechatpay-Serial"):
        await sandbox.pay.parse_notification(headers, body)
    # the certificate's serial with the real key's signature replaced: does not verify either
    genuine = dataclasses.replace(sandbox.state.keys, platform_key="certificate")
    headers, body = make_payment_notification(genuine, TX)
    if sandbox.cfg.sandbox_options.platform_key == "public_key":
        with pytest.raises(BadSignature):  # a public-key merchant's WeChat has no certificates to offer
            await sandbox.pay.parse_notification(headers, body)
    else:
        headers["Wechatpay-Signature"] = crypto.rsa_sign(impostor_key, b"x")
        with pytest.raises(BadSignature, match="does not verify"):
            await sandbox.pay.parse_notification(headers, body)


@pytest.mark.asyncio
async def test_an_answer_outside_the_five_minute_window_is_not_believed(sandbox):
    """A genuine but old answer (a replay) is refused like a stale notification."""
    keys = sandbox.state.keys

    async def replay(request: httpx.Request) -> httpx.Response:
        async with httpx.AsyncClient() as real:
            resp = await real.send(request)
        from wechat.sandbox import sign_notification

        headers = httpx.Headers(resp.headers)
        for name, value in sign_notification(keys, resp.content, timestamp=int(time.time()) - 360).items():
            headers[name] = value
        return httpx.Response(resp.status_code, headers=headers, content=resp.content)

    http = httpx.AsyncClient(transport=httpx.MockTransport(replay))
    client = PayClient(sandbox.cfg.pay, sandbox.cfg.pay_base, http)
    openid = await _openid(sandbox)
    try:
        # Signed by the public key: StaleResponse. By a certificate: the certificate list itself came
        # back stale, was not believed, so the answer's key is unknown: BadSignature.
        with pytest.raises((StaleResponse, BadSignature)) as err:
            await client.jsapi_prepay(sandbox.cfg.worker.appid, "RC60000001", "充值", 100, openid)
        if isinstance(err.value, StaleResponse):
            assert err.value.retryable  # the request may have taken effect: repeat it later, same number
        if sandbox.cfg.sandbox_options.platform_key == "certificate":
            assert isinstance(err.value, BadSignature) and client._certs == {} and client.certificate_downloads == 1
    finally:
        await http.aclose()
    assert json.loads(json.dumps(sandbox.state.orders["RC60000001"]["out_trade_no"])) == "RC60000001"
