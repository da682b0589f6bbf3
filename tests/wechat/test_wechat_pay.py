"""WeChat Pay v3 client ↔ sandbox over real HTTP: prepay, pay, notify, query, close, transfers."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from wechat import crypto
from wechat.errors import PayApiError, PayConnectionError, PayTimeout
from wechat.pay import PayClient


async def _login(sandbox, name="alice", end="worker"):
    openid, _ = await sandbox.mp.code2session(end, f"{name}-{len(sandbox.state.used_codes)}")
    return openid


@pytest.mark.asyncio
async def test_a_recharge_is_prepaid_paid_notified_once_verified_and_queryable(sandbox):
    pay, appid = sandbox.pay, sandbox.cfg.publisher.appid
    openid = await _login(sandbox, "alice", "publisher")

    prepay_id = await pay.jsapi_prepay(appid, "RC20260001", "余额充值", 1234, openid)
    assert prepay_id.startswith("wx")
    # Same order asked again (client retry): same prepay_id, no second order.
    assert await pay.jsapi_prepay(appid, "RC20260001", "余额充值", 1234, openid) == prepay_id
    assert (await pay.query_by_out_trade_no("RC20260001"))["trade_state"] == "NOTPAY"

    params = pay.request_payment_params(appid, prepay_id)
    assert params["package"] == f"prepay_id={prepay_id}" and params["signType"] == "RSA"
    signed = f"{appid}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    merchant_pub = crypto.public_key_pem_of(sandbox.cfg.pay.private_key_pem)
    assert crypto.rsa_verify(merchant_pub, signed, params["paySign"])

    async with httpx.AsyncClient() as c:
        r = await c.post(sandbox.base + "/sandbox/pay/_simulate/pay", json={"out_trade_no": "RC20260001", "wait": True})
    assert r.status_code == 200, r.text
    assert r.json()["notification"]["status"] == 204
    assert r.headers["X-WeChat-Sandbox"] == "1"

    [note] = sandbox.received
    assert note["event_type"] == "TRANSACTION.SUCCESS"
    tx = note["resource"]
    assert (tx["out_trade_no"], tx["trade_state"], tx["amount"]["total"], tx["payer"]["openid"]) == (
        "RC20260001", "SUCCESS", 1234, openid)
    queried = await pay.query_by_out_trade_no("RC20260001")
    assert queried["trade_state"] == "SUCCESS" and queried["transaction_id"] == tx["transaction_id"]

    with pytest.raises(PayApiError) as err:
        await pay.close("RC20260001")
    assert (err.value.status, err.value.code, err.value.retryable) == (400, "ORDERPAID", False)


@pytest.mark.asyncio
async def test_an_unpaid_order_can_be_closed_and_an_unknown_one_is_404(sandbox):
    openid = await _login(sandbox)
    await sandbox.pay.jsapi_prepay(sandbox.cfg.worker.appid, "RC20260002", "充值", 100, openid)
    await sandbox.pay.close("RC20260002")
    assert (await sandbox.pay.query_by_out_trade_no("RC20260002"))["trade_state"] == "CLOSED"
    with pytest.raises(PayApiError) as err:
        await sandbox.pay.query_by_out_trade_no("NOPE000001")
    assert (err.value.status, err.value.code) == (404, "ORDER_NOT_EXIST")


@pytest.mark.asyncio
async def test_the_sandbox_rejects_a_merchant_signature_made_with_another_key(sandbox):
    import dataclasses
    impostor = PayClient(dataclasses.replace(sandbox.cfg.pay, private_key_pem=crypto.generate_private_key_pem()),
                         sandbox.cfg.pay_base)
    try:
        with pytest.raises(PayApiError) as err:
            await impostor.jsapi_prepay(sandbox.cfg.worker.appid, "RC20260003", "充值", 100, "oX")
        assert (err.value.status, err.value.code) == (401, "SIGN_ERROR")
    finally:
        await impostor.aclose()
    assert "RC20260003" not in sandbox.state.orders


@pytest.mark.asyncio
async def test_a_tampered_response_is_not_believed(sandbox):
    """Every 2xx answer is verified: a body changed in transit fails BadSignature."""
    from wechat.errors import BadSignature

    async def tamper(request: httpx.Request) -> httpx.Response:
        async with httpx.AsyncClient() as real:
            resp = await real.send(request)
        body = resp.content.replace(b'"prepay_id":"wx', b'"prepay_id":"xx')
        return httpx.Response(resp.status_code, headers=resp.headers, content=body)

    http = httpx.AsyncClient(transport=httpx.MockTransport(tamper))
    client = PayClient(sandbox.cfg.pay, sandbox.cfg.pay_base, http)
    openid = await _login(sandbox)
    with pytest.raises(BadSignature):
        await client.jsapi_prepay(sandbox.cfg.worker.appid, "RC20260004", "充值", 100, openid)
    await http.aclose()


@pytest.mark.asyncio
async def test_timeouts_and_connection_failures_are_retryable_errors(cfg):
    def timeout(request):
        raise httpx.ReadTimeout("slow", request=request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(timeout))
    with pytest.raises(PayTimeout) as err:
        await PayClient(cfg.pay, "http://wechat.invalid", http).query_by_out_trade_no("RC20260005")
    assert err.value.retryable
    await http.aclose()

    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(refused))
    with pytest.raises(PayConnectionError):
        await PayClient(cfg.pay, "http://wechat.invalid", http).close("RC20260005")
    await http.aclose()


@pytest.mark.asyncio
async def test_error_bodies_map_to_pay_api_error_and_5xx_is_retryable(cfg):
    http = httpx.AsyncClient(transport=httpx.MockTransport(
        lambda req: httpx.Response(500, json={"code": "SYSTEM_ERROR", "message": "系统繁忙"})))
    with pytest.raises(PayApiError) as err:
        await PayClient(cfg.pay, "http://wechat.invalid", http).query_transfer_bill("TB20260001")
    assert (err.value.status, err.value.code, err.value.message, err.value.retryable) == (
        500, "SYSTEM_ERROR", "系统繁忙", True)
    await http.aclose()


@pytest.mark.asyncio
async def test_a_payout_waits_for_the_user_then_notifies_success(sandbox):
    pay, appid = sandbox.pay, sandbox.cfg.worker.appid
    openid = await _login(sandbox, "bob")
    bill = await pay.create_transfer_bill(appid, "WD20260001", openid, 990, "提现", scene_id=None,
                                          scene_report_infos=None)
    assert bill["state"] == "WAIT_USER_CONFIRM" and bill["package_info"]
    # Retrying the same bill is idempotent.
    again = await pay.create_transfer_bill(appid, "WD20260001", openid, 990, "提现")
    assert again["transfer_bill_no"] == bill["transfer_bill_no"]

    async with httpx.AsyncClient() as c:
        r = await c.post(sandbox.base + "/sandbox/pay/_simulate/confirm_transfer",
                         json={"out_bill_no": "WD20260001", "result": "SUCCESS", "wait": True})
    assert r.json()["state"] == "SUCCESS" and r.json()["notification"]["status"] == 204
    [note] = sandbox.received
    assert note["event_type"] == "MCHTRANSFER.BILL.FINISHED"
    assert (note["resource"]["out_bill_no"], note["resource"]["state"], note["resource"]["transfer_amount"]) == (
        "WD20260001", "SUCCESS", 990)
    assert (await pay.query_transfer_bill("WD20260001"))["state"] == "SUCCESS"
    with pytest.raises(PayApiError):
        await pay.cancel_transfer_bill("WD20260001")


@pytest.mark.asyncio
async def test_a_cancel_has_no_body_and_is_final_only_when_wechat_says_cancelled(sandbox):
    openid = await _login(sandbox, "bob")
    await sandbox.pay.create_transfer_bill(sandbox.cfg.worker.appid, "WD20260002", openid, 500, "提现")
    sandbox.state.cancel_delay_s = None  # WeChat takes its time
    assert (await sandbox.pay.cancel_transfer_bill("WD20260002"))["state"] == "CANCELING"
    assert (await sandbox.pay.query_transfer_bill("WD20260002"))["state"] == "CANCELING"  # not final yet
    assert (await sandbox.pay.cancel_transfer_bill("WD20260002"))["state"] == "CANCELING"  # asking again is harmless
    await sandbox.state.drain()
    assert sandbox.received == []  # nothing final to notify
    sandbox.state.finish_cancel("WD20260002")
    await sandbox.state.drain()
    assert [n["resource"]["state"] for n in sandbox.received] == ["CANCELLED"]
    assert (await sandbox.pay.query_transfer_bill("WD20260002"))["state"] == "CANCELLED"


@pytest.mark.asyncio
async def test_the_sandbox_refuses_a_cancel_with_a_body_as_the_old_client_sent_it(sandbox):
    openid = await _login(sandbox, "bob")
    await sandbox.pay.create_transfer_bill(sandbox.cfg.worker.appid, "WD20260012", openid, 500, "提现")
    with pytest.raises(PayApiError) as err:
        await sandbox.pay._request("POST", "/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/WD20260012/cancel", body={})
    assert (err.value.status, err.value.code) == (400, "PARAM_ERROR")
    assert sandbox.state.transfers["WD20260012"]["state"] == "WAIT_USER_CONFIRM"


@pytest.mark.asyncio
async def test_accepted_and_processing_bills_move_on_when_the_same_bill_is_requested_again(sandbox):
    openid = await _login(sandbox, "bob")
    sandbox.state.transfer_script = ["ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM"]
    args = (sandbox.cfg.worker.appid, "WD20260013", openid, 500, "提现")
    first = await sandbox.pay.create_transfer_bill(*args)
    assert first["state"] == "ACCEPTED" and "package_info" not in first
    assert (await sandbox.pay.create_transfer_bill(*args))["state"] == "PROCESSING"
    third = await sandbox.pay.create_transfer_bill(*args)
    assert third["state"] == "WAIT_USER_CONFIRM" and third["package_info"]
    assert third["transfer_bill_no"] == first["transfer_bill_no"]
    with pytest.raises(PayApiError) as err:  # 原单重试 means identical parameters
        await sandbox.pay.create_transfer_bill(sandbox.cfg.worker.appid, "WD20260013", openid, 500, "提现（改）")
    assert err.value.code == "INVALID_REQUEST"


@pytest.mark.asyncio
@pytest.mark.parametrize("out_bill_no", ["W-000001", "W_000001", "单号000001", "W" * 33])
async def test_the_sandbox_refuses_out_bill_no_with_anything_but_letters_and_digits(sandbox, out_bill_no):
    openid = await _login(sandbox, "bob")
    with pytest.raises(PayApiError) as err:
        await sandbox.pay.create_transfer_bill(sandbox.cfg.worker.appid, out_bill_no, openid, 500, "提现")
    assert (err.value.code, "out_bill_no" in err.value.message) == ("PARAM_ERROR", True)


@pytest.mark.asyncio
async def test_the_sandbox_refuses_transfers_from_an_address_off_the_allowlist(sandbox):
    openid = await _login(sandbox, "bob")
    sandbox.state.refuse_transfers_from_this_ip()
    with pytest.raises(PayApiError) as err:
        await sandbox.pay.create_transfer_bill(sandbox.cfg.worker.appid, "WD20260014", openid, 500, "提现")
    assert (err.value.status, err.value.code, err.value.retryable) == (400, "INVALID_REQUEST", False)
    assert "IP" in err.value.message and "WD20260014" not in sandbox.state.transfers


@pytest.mark.asyncio
@pytest.mark.parametrize("url", ["http://merchant.example.com/notify", "https://merchant.example.com/notify?x=1",
                                 "ftp://merchant.example.com/notify"])
async def test_the_sandbox_refuses_notify_urls_wechat_refuses(sandbox, url):
    openid = await _login(sandbox, "bob")
    with pytest.raises(PayApiError) as err:
        await sandbox.pay.jsapi_prepay(sandbox.cfg.worker.appid, "RC20260020", "充值", 100, openid, notify_url=url)
    assert (err.value.code, "notify_url" in err.value.message) == ("PARAM_ERROR", True)
    with pytest.raises(PayApiError) as err:
        await sandbox.pay.create_transfer_bill(sandbox.cfg.worker.appid, "WD20260020", openid, 500, "提现", notify_url=url)
    assert (err.value.code, "notify_url" in err.value.message) == ("PARAM_ERROR", True)


@pytest.mark.asyncio
async def test_the_sandbox_refuses_a_time_expire_without_its_zone(sandbox):
    openid = await _login(sandbox, "bob")
    body = {"appid": sandbox.cfg.worker.appid, "mchid": sandbox.cfg.pay.mchid, "description": "充值",
            "out_trade_no": "RC20260021", "notify_url": sandbox.cfg.pay.notify_url, "amount": {"total": 100},
            "payer": {"openid": openid}, "time_expire": "2030-01-01T10:00:00"}
    with pytest.raises(PayApiError) as err:
        await sandbox.pay._request("POST", "/v3/pay/transactions/jsapi", body=body)
    assert err.value.code == "PARAM_ERROR" and "time_expire" in err.value.message
    # What our client sends always carries the zone (Beijing time).
    from datetime import datetime, timedelta, timezone

    await sandbox.pay.jsapi_prepay(sandbox.cfg.worker.appid, "RC20260021", "充值", 100, openid,
                                   time_expire=datetime.now(timezone.utc) + timedelta(minutes=30))
    assert sandbox.state.orders["RC20260021"]["expires_at"] > 0
    with pytest.raises(ValueError):
        await sandbox.pay.jsapi_prepay(sandbox.cfg.worker.appid, "RC20260022", "充值", 100, openid,
                                       time_expire=datetime(2030, 1, 1, 10, 0))


@pytest.mark.asyncio
async def test_big_payouts_carry_the_encrypted_real_name(sandbox):
    openid = await _login(sandbox, "bob")
    with pytest.raises(ValueError):
        await sandbox.pay.create_transfer_bill(sandbox.cfg.worker.appid, "WD20260003", openid, 200_000, "提现")
    bill = await sandbox.pay.create_transfer_bill(sandbox.cfg.worker.appid, "WD20260003", openid, 200_000, "提现",
                                                  user_name="张三")
    assert bill["state"] == "WAIT_USER_CONFIRM"


@pytest.mark.asyncio
async def test_notifications_are_repeated_until_the_merchant_answers_2xx(sandbox):
    sandbox.fail_next = 2
    openid = await _login(sandbox)
    await sandbox.pay.jsapi_prepay(sandbox.cfg.worker.appid, "RC20260006", "充值", 100, openid)
    _, delivery = await sandbox.state.simulate_pay("RC20260006")
    await sandbox.state.drain()
    assert [a.get("status") for a in delivery.attempts] == [500, 500, 204]
    assert delivery.delivered and len(sandbox.received) == 1


@pytest.mark.asyncio
async def test_the_developer_page_lists_pending_orders_and_pays_them_by_form(sandbox):
    openid = await _login(sandbox)
    await sandbox.pay.jsapi_prepay(sandbox.cfg.worker.appid, "RC20260007", "<b>充值</b>", 100, openid)
    async with httpx.AsyncClient() as c:
        page = await c.get(sandbox.base + "/sandbox/")
        assert "SANDBOX" in page.text and "RC20260007" in page.text
        assert "<b>充值</b>" not in page.text  # escaped
        r = await c.post(sandbox.base + "/sandbox/pay/_simulate/pay", data={"out_trade_no": "RC20260007"})
        assert r.status_code == 302
    await sandbox.state.drain()
    assert sandbox.received[0]["resource"]["out_trade_no"] == "RC20260007"
