"""The contract, checked on everything the API tests make the server do.

Every live server the API tests start records each response it sends (`Recorder`); when the test
ends, `check(...)` verifies against the published contract:

1. every /api/v1 response: its status is documented for its operation, its body validates against
   the documented schema (so an error code a test provokes must be listed for that operation, with
   the right status), and an error's `details` fit the error catalog;
2. every live event the test made the server emit validates against its schema (models/events.py);
3. the wallet rule: every ledger entry that moved a user's available balance produced one
   `wallet.changed` for that user, with the entry's kind as `reason` and the amount moved.

So each flow, bad-input, authorization and fuzz test is also a contract test.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from jsonschema import Draft202012Validator

from models import db


class Recorder:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def install(self, app) -> None:
        @app.on_response
        async def record(request, response):
            route = getattr(request, "route", None)
            if not request.path.startswith("/api/v1/") or route is None or request.path == "/api/v1/ws":
                return
            self.seen.append({
                "method": request.method, "route": route.path, "url": request.path, "status": response.status,
                "content_type": (response.content_type or "").split(";")[0], "body": bytes(response.body or b""),
            })


def _validator(schema: dict[str, Any], document: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": document["components"]})


def check_responses(app, recorder: Recorder) -> list[str]:
    from miniprogram_api.docs import _openapi_path, build_document
    from miniprogram_api.error_catalog import catalog

    document = build_document(app)
    details = {e["code"]: e["details"] for e in catalog()["errors"]}
    problems: list[str] = []
    validators: dict[tuple[str, str, str], Draft202012Validator] = {}
    for r in recorder.seen:
        path, _ = _openapi_path(r["route"])
        op = document["paths"].get(path, {}).get(r["method"].lower())
        where = f"{r['method']} {r['url']} → {r['status']}"
        if op is None:
            problems.append(f"{where}: no such operation in the document")
            continue
        response = op["responses"].get(str(r["status"]))
        body_text = r["body"][:300].decode("utf-8", "replace")
        if response is None:
            problems.append(f"{where}: status not documented for {r['method']} {path} {body_text}")
            continue
        if "content" not in response:  # documented without a body (204)
            if r["body"]:
                problems.append(f"{where}: a body where the document says there is none: {body_text}")
            continue
        content = response["content"]
        if r["content_type"] not in content:
            problems.append(f"{where}: content type {r['content_type']!r} not documented ({sorted(content)})")
            continue
        if r["content_type"] != "application/json":
            continue
        body = json.loads(r["body"])
        key = (r["method"], path, str(r["status"]))
        if key not in validators:
            validators[key] = _validator(content["application/json"]["schema"], document)
        errors = sorted(validators[key].iter_errors(body), key=lambda e: list(e.path))
        if errors:
            problems.append(f"{where}: body does not fit the document: {errors[0].message[:300]} at {list(errors[0].path)} {body_text}")
        if r["status"] >= 400 and isinstance(body, dict) and isinstance(body.get("error"), dict):
            code = body["error"].get("code")
            if code not in details:
                problems.append(f"{where}: error code {code!r} is not in the catalog")
            elif "details" in body["error"]:
                bad = list(Draft202012Validator(details[code]).iter_errors(body["error"]["details"]))
                if bad:
                    problems.append(f"{where}: details of {code} do not fit the catalog: {bad[0].message[:200]}")
    return problems


async def check_events() -> list[str]:
    from pydantic import ValidationError

    from models.events import EVENTS, validate

    problems = []
    rows = await db.fetch("SELECT id, event, user_id, payload FROM outbox WHERE channel = 'push' ORDER BY id")
    for row in rows:
        payload = row["payload"]
        if isinstance(payload, (str, bytes)):
            payload = json.loads(payload)
        if row["event"] not in EVENTS:
            problems.append(f"event {row['id']} {row['event']}: not a declared event type")
            continue
        if EVENTS[row["event"]].hall != (row["user_id"] is None):
            problems.append(f"event {row['id']} {row['event']}: sent to the wrong audience (user_id {row['user_id']})")
        try:
            validate(row["event"], payload)
        except ValidationError as exc:
            problems.append(f"event {row['id']} {row['event']} {payload}: {exc.errors()[0]}")
    return problems


async def check_wallet_rule() -> list[str]:
    moved = await db.fetch(
        "SELECT a.user_id, e.kind, SUM(p.amount_fen) AS amount FROM postings p JOIN accounts a ON a.id = p.account_id "
        "JOIN journal_entries e ON e.id = p.entry_id WHERE a.user_id IS NOT NULL AND a.kind = 'available' "
        "GROUP BY e.id, a.user_id, e.kind"
    )
    expected = Counter((int(r["user_id"]), str(r["kind"]), int(r["amount"])) for r in moved if int(r["amount"]) != 0)
    told = Counter()
    for row in await db.fetch("SELECT user_id, payload FROM outbox WHERE channel = 'push' AND event = 'wallet.changed'"):
        payload = row["payload"]
        if isinstance(payload, (str, bytes)):
            payload = json.loads(payload)
        told[(int(row["user_id"]), payload.get("reason"), payload.get("amount_fen"))] += 1
    problems = []
    if expected - told:
        problems.append(f"balance moves without wallet.changed: {sorted((expected - told).elements())[:10]}")
    if told - expected:
        problems.append(f"wallet.changed without a balance move: {sorted((told - expected).elements())[:10]}")
    return problems


async def check(app, recorder: Recorder) -> list[str]:
    return check_responses(app, recorder) + await check_events() + await check_wallet_rule()
