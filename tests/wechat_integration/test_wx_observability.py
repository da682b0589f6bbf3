"""Metrics and logs over a full flow (issue 15): GET /metrics behind its token; requests, takes,
transitions by who, timer lag, overdue rows, WeChat calls counted; one JSON object per log line with
the request id following a request into its transition, its outbox rows and the WeChat calls made
for it; and no secret, token or full openid anywhere in the logs (DEBUG level, SDKs included)."""

from __future__ import annotations

import dataclasses
import io
import json
import logging

import pytest
from prometheus_client import REGISTRY

from models import clock
from models.audit import AuditLog
from models.orders import Order
from models.outbox import Outbox
from models.users import User
from scheduler import outbox as drainer
from scheduler.runner import Jobs
from server import logs
from server.observability import database_facts, pay_endpoint

TOKEN = "m" * 32


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def captured(live):
    """Every log record of the test, as the production handler writes it (JSON), at DEBUG."""
    stream = io.StringIO()
    handler = logs.setup(live.config, "test", stream=stream)
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)


async def login(live, end: str, code: str) -> tuple[str, dict]:
    r = await live.http.post(f"/api/v1/{end}/login", json={"code": code})
    assert r.status_code == 200, r.text
    body = r.json()
    return body["token"], {"Authorization": f"Bearer {body['token']}"}


async def full_flow(live) -> dict:
    """Alice recharges and publishes, Bob takes and submits, Alice approves, Bob withdraws, the
    payout is approved and confirmed, the subscription messages are sent."""
    a_token, alice = await login(live, "publisher", "alice-1")
    r = await live.http.post("/api/v1/worker/login", json={"code": "bob-1"})
    assert r.status_code == 200, r.text
    b_token, bob = r.json()["token"], {"Authorization": f"Bearer {r.json()['token']}"}
    # A refresh: the refresh tokens (the old one and the new) must not reach a log either.
    first = r.json()["refresh_token"]
    renewed = await live.http.post("/api/v1/worker/refresh", json={"refresh_token": first})
    assert renewed.status_code == 200, renewed.text
    r = await live.http.post("/api/v1/publisher/recharges", json={"amount_fen": 50_000, "request_id": "r1"}, headers=alice)
    assert r.status_code in (200, 201), r.text
    paid = await live.http.post("/sandbox/pay/_simulate/pay", json={"out_trade_no": r.json()["out_trade_no"], "wait": True})
    assert paid.status_code == 200
    await live.state.drain()
    r = await live.http.post("/api/v1/publisher/tasks", json={"title": "扫码", "instructions": "x", "unit_price_fen": 20_000, "request_id": "obs-1"},
                             headers=alice)
    assert r.status_code == 201, r.text
    take = await live.http.post(f"/api/v1/worker/tasks/{r.json()['id']}/take", headers=bob | {"X-Request-ID": "take-request-0001"})
    assert take.status_code == 201, take.text
    assert take.headers["X-Request-ID"] == "take-request-0001"
    order_id = take.json()["id"]
    r = await live.http.post(f"/api/v1/worker/orders/{order_id}/submit", json={"proof_text": "done"}, headers=bob)
    assert r.status_code == 200, r.text
    approve = await live.http.post(f"/api/v1/publisher/orders/{order_id}/approve", headers=alice)
    assert approve.status_code == 200, approve.text
    r = await live.http.post("/api/v1/worker/withdrawals", json={"amount_fen": 10_000, "request_id": "w1"}, headers=bob)
    assert r.status_code in (200, 201), r.text
    from models import withdrawals

    w = await withdrawals.approve(r.json()["id"], 9_001)
    w = await live.services.start_payout(w)
    await live.http.post("/sandbox/pay/_simulate/confirm_transfer", json={"out_bill_no": w.out_bill_no, "wait": True})
    await live.state.drain()
    for _ in range(3):
        await drainer.drain_subscriptions(live.services.mp)
    return {"tokens": [a_token, b_token, first, renewed.json()["refresh_token"], renewed.json()["token"]], "order_id": order_id, "approve_rid": approve.headers["X-Request-ID"]}


@pytest.mark.asyncio
async def test_a_full_flow_logs_json_lines_with_request_ids_and_no_secret(live, captured):
    flow = await full_flow(live)
    text = captured.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)

    # The request id follows the approve into its transition, its outbox rows and the WeChat call
    # that later sends the subscription message (from the drainer, outside the request).
    rid = flow["approve_rid"]
    assert any(line.get("request_id") == rid and line["msg"].startswith("order.approve order") for line in lines)
    assert (await AuditLog.get(action="order.approve")).request_id == rid
    rows = await Outbox.filter(request_id=rid)
    assert {r.event for r in rows} >= {"order.changed", "order_approved"}
    sends = [line for line in lines if line.get("request_id") == rid and "subscribe" in line["msg"]]
    assert sends, "the subscription send for the approval is logged under the approval's request id"

    # Nothing secret: keys, app secrets, the API v3 key, session tokens, access tokens, openids.
    cfg = live.services.cfg
    from server.keys import DEVELOPMENT_KEY

    forbidden = {"MARKET secret key": live.app.ctx.config.secret_key or DEVELOPMENT_KEY, "worker secret": cfg.worker.secret,
                 "publisher secret": cfg.publisher.secret, "API v3 key": cfg.pay.apiv3_key,
                 "private key": cfg.pay.private_key_pem.splitlines()[1]}
    forbidden |= {f"session token {i}": t for i, t in enumerate(flow["tokens"])}
    forbidden |= {f"access token {i}": t for i, t in enumerate(live.state.tokens)}
    forbidden |= {f"openid of {u.id}": u.openid for u in await User.all()}
    forbidden |= {f"unionid of {u.id}": u.unionid for u in await User.all() if u.unionid}
    assert live.state.tokens and len([k for k in forbidden if k.startswith("openid")]) == 2
    leaked = [what for what, value in forbidden.items() if value and value in text]
    assert leaked == []
    assert "access_token=" in text or "jscode2session" in text  # the SDK's URLs were logged (and scrubbed)


def test_redaction_catches_what_a_careless_line_could_carry():
    logs.add_secrets(["s3cr3t-value-xyz"])
    line = logs.redact("GET /sns/jscode2session?appid=wx1&secret=abc&js_code=xyz&access_token=tok "
                       "Authorization: Bearer eyJhbGciOi.abcdefghijklmnopqrstuvwxyz0123 key s3cr3t-value-xyz "
                       "openid oUpF8uMuAJO_M2pxb1Q9zNjWeS6o -----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----")
    for bad in ("abc", "xyz&", "=tok", "eyJhbGciOi", "s3cr3t-value-xyz", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "MIIE"):
        assert bad not in line, bad
    assert "oUpF8u…" in line and "[secret]" in line and "[pem]" in line


@pytest.mark.asyncio
async def test_metrics_answer_only_their_token_and_read_the_database(database):
    from server.app import create_app
    from tests.wechat_integration.conftest import make_config

    off = create_app(make_config(), manage_db=False)
    _, r = await off.asgi_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 404  # no token configured: /metrics is off, never open

    app = create_app(make_config(metrics={"token": TOKEN}), manage_db=False)
    _, r = await app.asgi_client.get("/metrics")
    assert r.status == 401
    _, r = await app.asgi_client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 32})
    assert r.status == 401
    _, r = await app.asgi_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
    for name in ("market_http_requests_total", "market_outbox_depth", "market_overdue_rows", "market_withdrawals_waiting",
                 "market_ledger_audit_age_seconds", "market_reconciliation_open_differences", "market_takes_total"):
        assert name in r.text, name
    assert "market_ledger_audit_ok -1.0" in r.text  # no audit ran yet
    await Jobs(make_config()).audit_ledger()
    _, r = await app.asgi_client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert "market_ledger_audit_ok 1.0" in r.text


@pytest.mark.asyncio
async def test_the_metrics_count_requests_takes_transitions_timers_and_wechat_calls(live, captured):
    before = {
        "approve": sample("market_transitions_total", action="order.approve", by="person"),
        "won": sample("market_takes_total", result="won", reason=""),
        "lost": sample("market_takes_total", result="lost", reason="already_took_task"),
        "lazy": sample("market_transitions_total", action="order.review_timeout", by="lazy_read"),
        "timer": sample("market_transitions_total", action="order.review_timeout", by="timer"),
        "lag": sample("market_timer_lag_seconds_sum", kind="order.review_timeout", by="timer"),
        "prepay": sample("market_wechat_call_duration_seconds_count", api="pay", endpoint="POST /v3/pay/transactions/jsapi"),
        "sends": sample("market_subscription_sends_total", result="sent", errcode=""),
    }
    flow = await full_flow(live)
    assert sample("market_transitions_total", action="order.approve", by="person") == before["approve"] + 1
    assert sample("market_takes_total", result="won", reason="") == before["won"] + 1
    assert sample("market_wechat_call_duration_seconds_count", api="pay",
                  endpoint="POST /v3/pay/transactions/jsapi") == before["prepay"] + 1
    assert sample("market_subscription_sends_total", result="sent", errcode="") > before["sends"]
    assert sample("market_http_requests_total", route="/api/v1/worker/tasks/<task_id:int>/take", method="POST", status="201") >= 1

    # A second take of the same task by Bob loses, and says why.
    task_id = (await Order.get(id=flow["order_id"])).task_id
    _, bob = await login(live, "worker", "bob-2")
    assert (await live.http.post(f"/api/v1/worker/tasks/{task_id}/take", headers=bob)).status_code == 409
    assert sample("market_takes_total", result="lost", reason="already_took_task") == before["lost"] + 1
    # Latency by route, method and status class: the quick refusal is timed apart from the won take.
    take = "/api/v1/worker/tasks/<task_id:int>/take"
    assert sample("market_http_request_duration_seconds_count", route=take, method="POST", status="2xx") >= 1
    assert sample("market_http_request_duration_seconds_count", route=take, method="POST", status="4xx") >= 1
    assert sample("market_http_request_duration_seconds_count", route=take, method="POST") == 0  # no series without it


@pytest.mark.asyncio
async def test_timers_are_counted_by_who_applied_them_with_their_lag(live):
    from models import orders, tasks
    from tests import personas as p

    alice = await p.publisher("alice", balance_fen=100_000)
    bob = await p.worker("bob")
    before_lag = sample("market_timer_lag_seconds_sum", kind="order.countdown_end", by="timer")
    before_lazy = sample("market_transitions_total", action="order.review_timeout", by="lazy_read")
    task = await tasks.publish(alice.id, title="t", instructions="i", unit_price_fen=1_000, quantity=2)
    first = await orders.take(task.id, bob.id)
    clock.advance(300 + 100)  # 100 s past the countdown
    facts = {f.name: {tuple(s.labels.values()): s.value for s in f.samples} for f in await database_facts()}
    assert facts["market_overdue_rows"][("order",)] == 1  # the alert "the scheduler is not keeping up"
    assert facts["market_overdue_oldest_seconds"][("order",)] >= 100

    await Jobs(live.config).sweep()  # the scheduler applies it: "timer", ~100 s late
    lag = sample("market_timer_lag_seconds_sum", kind="order.countdown_end", by="timer") - before_lag
    assert 100 <= lag < 160
    clock.advance(1_200 + 5)  # the review window passes; Alice reads the order before any sweep
    await orders.get_order(first.id, publisher_id=alice.id)
    assert sample("market_transitions_total", action="order.review_timeout", by="lazy_read") == before_lazy + 1


def test_the_latency_status_label_is_a_class_with_few_values():
    from server.metrics import status_class

    assert [status_class(c) for c in (200, 201, 304, 409, 429, 500, 503)] == ["2xx", "2xx", "3xx", "4xx", "4xx", "5xx", "5xx"]
    assert {status_class(c) for c in (0, 99, 600, 999)} == {"other"}


def test_pay_endpoints_are_labelled_without_ids():
    assert pay_endpoint("GET", "http://h/sandbox/pay/v3/pay/transactions/out-trade-no/R2024ABC?mchid=1") == \
        "GET /v3/pay/transactions/out-trade-no/{no}"
    assert pay_endpoint("POST", "https://api.mch.weixin.qq.com/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/W1/cancel") == \
        "POST /v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{no}/cancel"
