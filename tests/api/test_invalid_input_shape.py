"""`invalid_input` has one shape everywhere (issue 17, item 13):
`{"error": {"code": "invalid_input", "message": ..., "details": {"fields": {<field>: <reason>}}}}`.
It used to be `details.field` from some raises and `details.fields` from others. Checked on the
error class itself (every raise goes through it), on every raise site reachable over HTTP, and on
the WebSocket's own error message."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
import websockets

from models.errors import InvalidInput
from server.config import ROOT
from tests.api import _support as S


def assert_shape(r, *fields: str) -> dict:
    err = S.assert_error(r, 400, "invalid_input")
    assert set(err) == {"code", "message", "details"}, err
    assert set(err["details"]) == {"fields"}, err
    named = err["details"]["fields"]
    assert isinstance(named, dict) and named and all(isinstance(k, str) and isinstance(v, str) and v for k, v in named.items()), err
    for f in fields:
        assert f in named, (f, err)
    return named


def test_the_error_class_always_gives_details_fields():
    one = InvalidInput("{field} is required.", zh="{field} 不能为空。", field="title")
    assert one.to_dict() == {"code": "invalid_input", "message": "title 不能为空。", "details": {"fields": {"title": "title 不能为空。"}}}
    assert one.to_dict("en") == {"code": "invalid_input", "message": "title is required.", "details": {"fields": {"title": "title is required."}}}
    # values of the message's template stay in the message: the details keep their one shape
    long = InvalidInput("{field} must be at most {max_len} characters.", zh="{field} 最多 {max_len} 个字符。", field="title", max_len=64)
    assert long.to_dict("en")["details"] == {"fields": {"title": "title must be at most 64 characters."}}
    assert InvalidInput("The body must be JSON.", zh="请求内容必须是 JSON。").to_dict()["details"] == {"fields": {"body": "请求内容必须是 JSON。"}}
    assert InvalidInput("Some fields are not valid.", zh="部分字段无效。", fields={"a": "x", "b": "y"}).to_dict()["details"] == {"fields": {"a": "x", "b": "y"}}
    assert InvalidInput().to_dict("en")["details"] == {"fields": {"body": "The input is not valid."}}


def test_the_catalog_describes_the_one_shape():
    from miniprogram_api.error_catalog import catalog

    entry = next(e for e in catalog()["errors"] if e["code"] == "invalid_input")
    assert set(entry["details"]["properties"]) == {"fields"} and entry["details"]["additionalProperties"] is False
    assert "details.field " not in entry["meaning"] and "details.fields" in entry["meaning"]


def test_no_code_builds_an_invalid_input_error_by_hand():
    """Every invalid_input comes from the class (so it cannot take another shape)."""
    offenders = []
    for folder in ("server", "miniprogram_api", "models", "wechat"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            if path == ROOT / "models" / "errors.py":
                continue
            if re.search(r"""["']invalid_input["']""", text):
                offenders.append(str(path.relative_to(ROOT)))
            if re.search(r"""details\s*\[\s*["']field["']\s*\]|details\.get\(\s*["']field["']""", text):
                offenders.append(f"{path.relative_to(ROOT)} (reads details.field)")
    assert offenders == []


@pytest.mark.asyncio
async def test_every_raise_site_reachable_over_http_gives_the_one_shape(live):
    w = await S.build_world(live)
    async with live.client(w.p1.token) as p, live.client(w.w1.token) as k, live.client() as anon:
        # the body itself (miniprogram_api/common.py parse)
        assert_shape(await p.post("/api/v1/publisher/tasks", content=b"{not json", headers={"content-type": "application/json"}), "body")
        assert_shape(await p.post("/api/v1/publisher/tasks", json=[1, 2]), "body")
        # schema errors (pydantic), several at once
        assert_shape(await p.post("/api/v1/publisher/tasks", json={"unit_price_fen": "12"}), "title", "instructions", "unit_price_fen")
        assert_shape(await anon.post("/api/v1/worker/login", json={}), "code")
        assert_shape(await anon.post("/api/v1/worker/refresh", json={"refresh_token": 1}), "refresh_token")
        # query parameters (common.query_int)
        assert_shape(await k.get("/api/v1/worker/hall", params={"cursor": "x"}), "cursor")
        assert_shape(await k.get("/api/v1/worker/hall", params={"limit": "500"}), "limit")
        assert_shape(await k.get("/api/v1/worker/hall", params={"min_price_fen": "-1"}), "min_price_fen")
        # handlers' own checks
        assert_shape(await k.get("/api/v1/worker/orders", params={"status": "nope"}), "status")
        assert_shape(await p.get("/api/v1/publisher/tasks", params={"status": "nope"}), "status")
        assert_shape(await p.post("/api/v1/publisher/tasks", json={"title": "t", "instructions": "i", "unit_price_fen": 500, "request_id": "shape",
                                                                   "attachment_kind": "link", "attachment": "ftp://x"}), "attachment")
        assert_shape(await k.post("/api/v1/worker/uploads", files={"other": ("a.png", S.png_bytes(), "image/png")}), "file")
        # the domain's checks (models/inputs.py, tasks, uploads, recharges, withdrawals)
        assert_shape(await p.post("/api/v1/publisher/tasks", json={"title": "   ", "instructions": "i", "unit_price_fen": 500, "request_id": "shape"}), "title")
        assert_shape(await p.post("/api/v1/publisher/tasks", json={"title": "t", "instructions": "i", "unit_price_fen": 500, "request_id": "shape",
                                                                   "quantity": 5000}), "quantity")
        assert_shape(await p.post("/api/v1/publisher/tasks", json={"title": "t", "instructions": "i", "unit_price_fen": 500, "request_id": "shape",
                                                                   "attachment_kind": "image", "attachment": w.proof_ref}), "attachment")
        assert_shape(await k.post(f"/api/v1/worker/orders/{w.orders['in_progress']}/submit", json={"proof_image": w.p1_ref}), "proof_image")
        assert_shape(await k.post(f"/api/v1/worker/orders/{w.orders['rejected']}/appeal",
                                  json={"reason": "look", "evidence": "up_" + "x" * 20}), "evidence")
        assert_shape(await p.post("/api/v1/publisher/recharges", json={"amount_fen": 100, "request_id": "   "}), "request_id")
        assert_shape(await k.post("/api/v1/worker/withdrawals", json={"amount_fen": 100, "request_id": "   "}), "request_id")


@pytest.mark.asyncio
async def test_the_websocket_gives_the_one_shape_too(live):
    bob = await live.login("worker", "bob")
    async with websockets.connect(f"ws://127.0.0.1:{live.port}/api/v1/ws?token={bob.token}") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
        for message, field in (({"type": "resume", "after_seq": -1}, "after_seq"), ({"type": "dance"}, "type"), ("not json", "type")):
            await ws.send(json.dumps(message) if isinstance(message, dict) else message)
            got = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert got["type"] == "error" and got["code"] == "invalid_input" and isinstance(got["message"], str)
            assert set(got["details"]) == {"fields"} and field in got["details"]["fields"], got


def test_the_api_docs_describe_the_one_shape():
    text = (ROOT / "docs" / "api.md").read_text()
    assert '"details": {"fields": {' in text
