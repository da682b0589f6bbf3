"""Control characters in any text the Mini Program API reads: 400 invalid_input, on SQLite and on
PostgreSQL (which cannot store U+0000 at all and answered 500), and nothing changes.

Driven by the served OpenAPI document and the router: every string field of every documented JSON
body, every documented query parameter (and an undocumented one), the string path parameter and
the WebSocket's messages. A new field or route is probed without anyone adding it here; only the
multi-line fields (where a newline and a tab are text) are named, and a new field defaults to the
stricter single-line rule.
"""

from __future__ import annotations

import json

import pytest
import pytest_asyncio

from tests.api import _support as S
from tests.api.test_bad_input import owner_of, valid_target

pytestmark = pytest.mark.asyncio

# Refused everywhere: C0 controls, DEL, C1 controls, and lone surrogates (not storable either).
ALWAYS_BAD = {"NUL": "\x00", "BEL": "\x07", "BS": "\x08", "VT": "\x0b", "ESC": "\x1b", "US": "\x1f", "DEL": "\x7f",
              "C1 NEL": "\x85", "C1 CSI": "\x9b", "lone surrogate": "\ud800"}
# Text only where the text is multi-line; refused in single-line fields.
LINE_BREAKS = {"LF": "\n", "TAB": "\t", "CR": "\r", "CRLF": "\r\n"}

# (method, path) -> the body fields that are multi-line text.
MULTILINE = {
    ("POST", "/api/v1/publisher/tasks"): {"instructions", "attachment"},
    ("POST", "/api/v1/worker/orders/{order_id}/submit"): {"proof_text"},
    ("POST", "/api/v1/worker/orders/{order_id}/appeal"): {"reason"},
    ("POST", "/api/v1/publisher/orders/{order_id}/reject"): {"reason"},
    ("POST", "/api/v1/publisher/orders/{order_id}/answer"): {"text"},
}


@pytest_asyncio.fixture
async def world(live):
    return await S.build_world(live)


async def openapi(live) -> dict:
    async with live.client() as c:
        r = await c.get("/docs/openapi.json")
    assert r.status_code == 200
    return r.json()


def router_path(doc_path: str) -> str:
    """/api/v1/worker/orders/{order_id}/submit → the router's /api/v1/worker/orders/<order_id:int>/submit."""
    return doc_path.replace("{ref}", "<ref:str>").replace("{", "<").replace("}", ":int>")


def resolve(doc: dict, schema: dict) -> dict:
    """A schema with its `$ref` followed (request bodies are named components)."""
    while "$ref" in schema:
        node = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def is_string(doc: dict, prop: dict) -> bool:
    prop = resolve(doc, prop)
    if prop.get("type") == "string" and "enum" not in prop:
        return True
    return any(is_string(doc, alt) for alt in [*prop.get("anyOf", ()), *prop.get("oneOf", ())])


def string_fields(doc: dict, schema: dict) -> dict[str, dict]:
    schema = resolve(doc, schema)
    return {name: prop for name, prop in (schema.get("properties") or {}).items() if is_string(doc, prop)}


def body_for(world, path: str, good: dict, field: str, value: str) -> dict:
    body = dict(good)
    if path.endswith("/publisher/tasks") and field == "attachment":
        body["attachment_kind"] = "text"  # a text attachment: the field is free text
    body[field] = value
    return body


async def test_every_json_text_field_refuses_control_characters_and_changes_nothing(live, world):
    doc = await openapi(live)
    before = await S.snapshot()
    failures, probed = [], set()
    async with live.client() as c:
        for path, ops in doc["paths"].items():
            for method, op in ops.items():
                schema = (op.get("requestBody") or {}).get("content", {}).get("application/json", {}).get("schema")
                if not path.startswith("/api/v1/") or not schema:
                    continue
                url, good = valid_target(world, method.upper(), router_path(path))
                headers = {} if path.endswith("/login") else {"Authorization": f"Bearer {owner_of(world, path).token}"}
                multiline = MULTILINE.get((method.upper(), path), set())
                for field in string_fields(doc, schema):
                    probed.add((path, field))
                    bad = dict(ALWAYS_BAD) if field in multiline else ALWAYS_BAD | LINE_BREAKS
                    for label, char in bad.items():
                        body = body_for(world, path, good, field, f"ok{char}ok")
                        # json.dumps escapes as \uXXXX (a lone surrogate cannot be sent as UTF-8)
                        r = await c.request(method.upper(), url, content=json.dumps(body).encode(),
                                            headers=headers | {"Content-Type": "application/json"})
                        try:
                            S.assert_error(r, 400, "invalid_input")
                        except AssertionError as exc:
                            failures.append(f"[{path} {field} {label}] {exc}")
    assert not failures, "\n".join(failures)
    assert await S.snapshot() == before
    # The probe really covered the text inputs the issue names (title … reasons, login code, scene).
    assert {("/api/v1/publisher/tasks", f) for f in ("title", "instructions", "attachment", "request_id")} <= probed
    assert {("/api/v1/worker/login", f) for f in ("code", "invite_code", "scene", "nickname")} <= probed
    assert {("/api/v1/worker/withdrawals", "request_id"), ("/api/v1/publisher/recharges", "request_id"),
            ("/api/v1/worker/orders/{order_id}/submit", "proof_text"), ("/api/v1/worker/orders/{order_id}/appeal", "reason"),
            ("/api/v1/publisher/orders/{order_id}/reject", "reason")} <= probed
    stale = {(m, p, f) for (m, p), fs in MULTILINE.items() for f in fs} - {("POST", p, f) for p, f in probed}
    assert not stale, f"MULTILINE names fields the document does not have: {stale}"


async def test_every_query_and_path_parameter_refuses_control_characters(live, world):
    doc = await openapi(live)
    failures, probed = [], 0
    async with live.client() as c:
        for path, ops in doc["paths"].items():
            if not path.startswith("/api/v1/"):
                continue
            for method, op in ops.items():
                if method != "get":
                    continue
                url, _ = valid_target(world, "GET", router_path(path))
                h = {"Authorization": f"Bearer {owner_of(world, path).token}"}
                names = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"] + ["undocumented"]
                for name in names:
                    for label, char in (ALWAYS_BAD | LINE_BREAKS).items():
                        if label == "lone surrogate":  # a URL carries UTF-8: see the raw bytes below
                            continue
                        probed += 1
                        r = await c.get(url, params={name: f"1{char}"}, headers=h)
                        try:
                            S.assert_error(r, 400, "invalid_input")
                        except AssertionError as exc:
                            failures.append(f"[{path} ?{name} {label}] {exc}")
        # String path parameters reach handlers percent-encoded (Sanic does not unquote them): an
        # upload ref with %00 in it is an unknown ref, never a database error.
        for end, who in (("worker", world.w1), ("publisher", world.p1)):
            for raw in ("up_%00", "up_a%00b", "%1B", "up_%7F", "up_%C2%85"):
                r = await c.get(f"/api/v1/{end}/uploads/{raw}", headers={"Authorization": f"Bearer {who.token}"})
                try:
                    S.assert_error(r, 404, "not_found")
                except AssertionError as exc:
                    failures.append(f"[path ref {raw}] {exc}")
        # The WebSocket's token in the query string.
        r = await c.get("/api/v1/ws", params={"token": world.w1.token + "\x00"})
        try:
            S.assert_error(r, 400, "invalid_input")
        except AssertionError as exc:
            failures.append(f"[ws token] {exc}")
    assert probed > 100, probed
    assert not failures, "\n".join(failures)


async def test_multiline_fields_keep_newlines_and_tabs(live):
    """Where text is multi-line, a newline and a tab are text: stored as sent (CRLF as LF)."""
    pub = await live.login("publisher", "pubml")
    wrk = await live.login("worker", "wrkml")
    await live.recharge(pub, 10_000)
    text = "line one\r\n\tline two\nline three"
    stored = "line one\n\tline two\nline three"
    async with live.client(pub.token) as p, live.client(wrk.token) as k:
        r = await p.post("/api/v1/publisher/tasks", json={"title": "t", "instructions": text, "unit_price_fen": 1000,
                                                        "quantity": 2, "attachment_kind": "text", "attachment": text,
                                                        "request_id": "multiline-1"})
        assert r.status_code == 201, r.text
        task = r.json()
        assert task["instructions"] == stored and task["attachment"] == stored
        oid = (await k.post(f"/api/v1/worker/tasks/{task['id']}/take")).json()["id"]
        r = await k.post(f"/api/v1/worker/orders/{oid}/submit", json={"proof_text": text})
        assert r.status_code == 200 and r.json()["proof_text"] == stored, r.text
        r = await p.post(f"/api/v1/publisher/orders/{oid}/reject", json={"reason": text})
        assert r.status_code == 200 and r.json()["reject_reason"] == stored, r.text
        r = await k.post(f"/api/v1/worker/orders/{oid}/appeal", json={"reason": text})
        assert r.status_code == 200 and r.json()["appeal_reason"] == stored, r.text
        # A single-line field keeps refusing a line break however it is written.
        for title in ("a\nb", "a\rb", "a\tb"):
            S.assert_error(await p.post("/api/v1/publisher/tasks", json={"title": title, "instructions": "i", "unit_price_fen": 1000}),
                           400, "invalid_input")


async def test_websocket_messages_with_control_characters_get_invalid_input(live, world):
    import websockets

    url = live.base.replace("http://", "ws://") + f"/api/v1/ws?token={world.w1.token}"
    async with websockets.connect(url, open_timeout=5) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        for message in ({"type": "ping\u0000"}, {"type": "resume", "last_event_id": 0, "note": "a\u0000b"},
                        {"type": "ping", "x": ["\u001b"]}, {"type": "resume\ud800", "last_event_id": 0}):
            await ws.send(json.dumps(message))
            answer = json.loads(await ws.recv())
            assert answer["type"] == "error" and answer["code"] == "invalid_input", (message, answer)
        await ws.send(json.dumps({"type": "ping"}))  # the socket still works
        assert json.loads(await ws.recv())["type"] == "pong"
