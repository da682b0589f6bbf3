"""Bad input for every Mini Program endpoint: a clear 4xx with a stable code, never a 500, and
nothing changed. Driven by the router where it can be (every POST route must be classified below)."""

from __future__ import annotations

import uuid

import typing

import pytest
import pytest_asyncio

from miniprogram_api.schemas import AnswerIn, AppealIn, BlockIn, LoginIn, MoneyRequestIn, PublishIn, RefreshIn, RejectIn, SubmitIn
from tests.api import _support as S

pytestmark = pytest.mark.asyncio

# POST routes (by their last path segment) that read a JSON body, and those that read none.
BODY_MODELS = {"login": LoginIn, "refresh": RefreshIn, "tasks": PublishIn, "recharges": MoneyRequestIn, "withdrawals": MoneyRequestIn,
                "submit": SubmitIn, "appeal": AppealIn, "reject": RejectIn, "blocks": BlockIn, "answer": AnswerIn}
NO_BODY = {"take", "abandon", "accept-rejection", "approve", "cancel", "uploads", "logout"}
MONEY_FIELDS = {"amount_fen", "unit_price_fen"}
NOT_FOUND_CODES = {"order_id": "order_not_found", "task_id": "task_not_found", "withdrawal_id": "withdrawal_not_found",
                   "recharge_id": "recharge_not_found", "ref": "not_found", "worker_id": "block_not_found"}


def action(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


@pytest_asyncio.fixture
async def world(live):
    return await S.build_world(live)


def owner_of(world, path: str):
    if path.startswith("/api/v1/worker/"):
        return world.w1
    return world.p1


def valid_target(world, method: str, path: str) -> tuple[str, dict]:
    """URL (owner's ids, in the state where the action succeeds) and a valid body."""
    a = action(path)
    end = "worker" if path.startswith("/api/v1/worker/") else "publisher"
    state = {"submit": "in_progress", "abandon": "in_progress", "accept-rejection": "rejected", "appeal": "rejected"}.get(a, "awaiting_review")
    values = {"order_id": world.orders[state], "task_id": world.open_task,
              "withdrawal_id": world.w1_withdrawal if end == "worker" else world.p1_withdrawal,
              "recharge_id": world.recharge["recharge_id"], "ref": world.proof_ref if end == "worker" else world.p1_ref,
              "worker_id": world.w1.id}
    body = {"login": {"code": "fresh-1"}, "refresh": {"refresh_token": "1.not-a-real-one"}, "tasks": {"title": "t", "instructions": "i", "unit_price_fen": 1000, "request_id": "bad-input"},
            "recharges": {"amount_fen": 100, "request_id": "bad-input"}, "withdrawals": {"amount_fen": 100, "request_id": "bad-input"},
            "submit": {"proof_text": "x"}, "appeal": {"reason": "r"}, "reject": {"reason": "r"},
            "blocks": {"worker_id": world.w1.id, "reason": "r"}, "answer": {"text": "t"}}.get(a, {})
    return S.fill(path, values), body


def field_mutations(model) -> list[tuple[str, str, object]]:
    """(field, label, bad value) for every field of a request model."""
    out = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        args = typing.get_args(ann)
        nullable = type(None) in args
        base = next((a for a in args if a is not type(None)), ann)
        if typing.get_origin(base) is typing.Annotated:  # Optional[Line]: the text types of schemas.py
            base = typing.get_args(base)[0]
        bad: list[tuple[str, object]] = [("list", [1]), ("object", {"a": 1})]
        if not nullable:
            bad.append(("null", None))
        if base is int:
            bad += [("string", "100"), ("float", 10.5), ("float-integral", 100.0), ("bool", True), ("huge", 10**30), ("2^63", 2**63)]
            if name in MONEY_FIELDS:
                bad += [("zero", 0), ("negative", -100)]
        elif base is str:
            bad += [("int", 123), ("bool", False), ("1MB", "x" * 1_000_000)]
            if any(getattr(m, "min_length", None) for m in f.metadata):
                bad.append(("empty", ""))
        else:  # Literal
            bad += [("int", 1), ("unknown-choice", "video")]
        out += [(name, label, value) for label, value in bad]
    return out


def post_routes(live):
    out = []
    for method, path, _ in S.api_routes(live.app):
        if method != "POST":
            continue
        a = action(path)
        assert a in BODY_MODELS or a in NO_BODY, f"POST {path}: unclassified; add its body model to BODY_MODELS or NO_BODY"
        out.append((path, a))
    return out


async def test_json_bodies_refuse_every_bad_shape_and_change_nothing(live, world):
    before = await S.snapshot()
    failures = []
    async with live.client() as c:
        for path, a in post_routes(live):
            if a not in BODY_MODELS:
                continue
            model = BODY_MODELS[a]
            url, good = valid_target(world, "POST", path)
            owner = owner_of(world, path)
            headers = {} if a in ("login", "refresh") else {"Authorization": f"Bearer {owner.token}"}
            cases: list[tuple[str, dict]] = [
                ("non-JSON", {"content": b"title=x&amount_fen=1", "headers": headers | {"Content-Type": "application/x-www-form-urlencoded"}}),
                ("broken JSON", {"content": b'{"amount_fen": ', "headers": headers | {"Content-Type": "application/json"}}),
                ("non-UTF-8", {"content": b'{"code": "\xff\xfe"}', "headers": headers | {"Content-Type": "application/json"}}),
                ("JSON array", {"json": [good], "headers": headers}),
                ("JSON string", {"json": "hello", "headers": headers}),
                ("JSON number", {"json": 7, "headers": headers}),
                ("deep nesting", {"content": b"[" * 100_000 + b"]" * 100_000, "headers": headers | {"Content-Type": "application/json"}}),
                ("NaN", {"content": b'{"amount_fen": NaN, "unit_price_fen": NaN, "code": NaN, "reason": NaN, "proof_text": NaN}', "headers": headers | {"Content-Type": "application/json"}}),
                ("5000-digit int", {"content": b'{"amount_fen": ' + b"9" * 5000 + b"}", "headers": headers | {"Content-Type": "application/json"}}),
                ("unknown field", {"json": good | {"is_admin": True}, "headers": headers}),
            ]
            if any(f.is_required() for f in model.model_fields.values()):
                cases.append(("empty object", {"json": {}, "headers": headers}))
                cases.append(("empty body", {"content": b"", "headers": headers}))
            for name in [n for n, f in model.model_fields.items() if f.is_required()]:
                cases.append((f"missing {name}", {"json": {k: v for k, v in good.items() if k != name}, "headers": headers}))
            for name, label, value in field_mutations(model):
                cases.append((f"{name}={label}", {"json": good | {name: value}, "headers": headers}))
            for label, kwargs in cases:
                r = await c.post(url, **kwargs)
                try:
                    S.assert_error(r, 400, "invalid_input")
                except AssertionError as exc:
                    failures.append(f"[{a}: {label}] {exc}")
    assert not failures, "\n".join(failures)
    assert await S.snapshot() == before


async def test_bad_query_params_are_400_and_good_ones_page(live, world):
    from miniprogram_api.docs import build_document

    document = build_document(live.app)
    failures = []
    paginated = []
    async with live.client() as c:
        for method, path, _ in S.api_routes(live.app):
            if method != "GET" or S.params_of(path) or (method, path) in S.ANY_END:
                continue
            h = {"Authorization": f"Bearer {owner_of(world, path).token}"}
            r = await c.get(path, headers=h)
            assert r.status_code == 200, f"{path}: {r.text[:200]}"
            if not r.headers["content-type"].startswith("application/json") or not (isinstance(r.json(), dict) and "items" in r.json()):
                continue
            paginated.append(path)
            bad = [{"limit": v} for v in ("0", "-1", "51", "1000", "abc", "1.5", "1e3", "9" * 40)]
            bad += [{"cursor": v} for v in ("abc", "0", "-5", "1.0", "9" * 40, str(2**63))]
            declared = {q["name"] for q in document["paths"][path]["get"].get("parameters", [])}
            for enum_param in sorted({"status", "need"} & declared):  # the filters of a fixed set of values
                bad += [{enum_param: "nonsense"}, {enum_param: "OPEN"}, {enum_param: "' OR 1=1 --"}]
            assert declared <= {"limit", "cursor", "status", "need", "min_price_fen", "max_price_fen"}, (path, declared)
            if path.endswith("/hall"):
                bad += [{"min_price_fen": "-1"}, {"max_price_fen": "x"}, {"min_price_fen": str(10**12)}]
            for params in bad:
                r = await c.get(path, params=params, headers=h)
                try:
                    S.assert_error(r, 400, "invalid_input")
                except AssertionError as exc:
                    failures.append(f"[{params}] {exc}")
            r = await c.get(path, params={"limit": "1"}, headers=h)
            body = r.json()
            assert r.status_code == 200 and len(body["items"]) <= 1, r.text[:200]
            if body["items"]:
                assert body["next_cursor"] == str(body["items"][0]["id"])
                r2 = await c.get(path, params={"limit": "50", "cursor": body["next_cursor"]}, headers=h)
                assert r2.status_code == 200 and body["items"][0]["id"] not in {i["id"] for i in r2.json()["items"]}
                if path != "/api/v1/publisher/orders":  # that one is soonest deadline first (tests/api/test_publisher_waiting.py)
                    assert all(i["id"] < body["items"][0]["id"] for i in r2.json()["items"])
    assert set(paginated) >= {"/api/v1/worker/hall", "/api/v1/worker/orders", "/api/v1/worker/ledger", "/api/v1/worker/withdrawals",
                              "/api/v1/publisher/tasks", "/api/v1/publisher/ledger", "/api/v1/publisher/withdrawals"}, paginated
    assert not failures, "\n".join(failures)


async def test_unknown_ids_are_404_with_their_code(live, world):
    before = await S.snapshot()
    failures = []
    async with live.client() as c:
        for method, path, _ in S.api_routes(live.app):
            names = S.params_of(path)
            if not names or (method, path) in S.PUBLIC:  # signed image links: tests/api/test_contract.py
                continue
            url_ok, body = valid_target(world, method, path)
            h = {"Authorization": f"Bearer {owner_of(world, path).token}"}
            for unknown in ("999999", "-1", "0"):
                values = {n: (unknown if n != "ref" else f"up_{unknown}") for n in names}
                r = await c.request(method, S.fill(path, values), headers=h, **({"json": body} if method == "POST" and body else {}))
                try:
                    S.assert_error(r, 404, *(NOT_FOUND_CODES[n] for n in names))
                except AssertionError as exc:
                    failures.append(f"[{unknown}] {exc}")
    assert not failures, "\n".join(failures)
    assert await S.snapshot() == before


async def test_ids_beyond_bigint_are_404_not_500(live, world):
    failures = []
    async with live.client() as c:
        for method, path, _ in S.api_routes(live.app):
            names = [n for n in S.params_of(path) if n != "ref"]
            if not names:
                continue
            _, body = valid_target(world, method, path)
            h = {"Authorization": f"Bearer {owner_of(world, path).token}"}
            for huge in (str(2**63), "9" * 30):
                r = await c.request(method, S.fill(path, {n: huge for n in names}), headers=h, **({"json": body} if method == "POST" and body else {}))
                if r.status_code != 404:
                    failures.append(f"{method} {path} [{huge}]: {r.status_code} {r.text[:120]}")
    assert not failures, "\n".join(failures)


async def test_wrong_state_is_409_with_its_code_and_changes_nothing(live, world):
    w = world
    async with live.client(w.w1.token) as k, live.client(w.p1.token) as p, live.client(w.w2.token) as k2:
        await p.post(f"/api/v1/publisher/tasks/{w.open_task}/cancel")  # now cancelled
        before = await S.snapshot()
        cases = [
            (k, f"/api/v1/worker/orders/{w.orders['awaiting_review']}/submit", {"proof_text": "again"}, "invalid_transition"),
            (k, f"/api/v1/worker/orders/{w.orders['completed']}/abandon", None, "invalid_transition"),
            (k, f"/api/v1/worker/orders/{w.orders['in_progress']}/appeal", {"reason": "r"}, "invalid_transition"),
            (k, f"/api/v1/worker/orders/{w.orders['appealing']}/appeal", {"reason": "r"}, "invalid_transition"),
            (k, f"/api/v1/worker/orders/{w.orders['completed']}/accept-rejection", None, "invalid_transition"),
            (p, f"/api/v1/publisher/orders/{w.orders['completed']}/approve", None, "invalid_transition"),
            (p, f"/api/v1/publisher/orders/{w.orders['in_progress']}/approve", None, "invalid_transition"),
            (p, f"/api/v1/publisher/orders/{w.orders['rejected']}/reject", {"reason": "again"}, "invalid_transition"),
            (p, f"/api/v1/publisher/tasks/{w.open_task}/cancel", None, "invalid_transition"),
            (k, f"/api/v1/worker/tasks/{w.tasks['completed']}/take", None, "already_took_task"),
            (k2, f"/api/v1/worker/tasks/{w.open_task}/take", None, "task_closed"),
        ]
        failures = []
        for client, url, body, code in cases:
            r = await client.post(url, json=body) if body is not None else await client.post(url)
            try:
                S.assert_error(r, 409, code)
            except AssertionError as exc:
                failures.append(str(exc))
        assert not failures, "\n".join(failures)
        assert await S.snapshot() == before
        # A full task: the second slot of 'appealing' goes to w2, then nobody else can take it.
        r = await k2.post(f"/api/v1/worker/tasks/{w.tasks['appealing']}/take")
        assert r.status_code == 201, r.text
        w3 = await live.login("worker", "wrkthree")
        async with live.client(w3.token) as k3:
            S.assert_error(await k3.post(f"/api/v1/worker/tasks/{w.tasks['appealing']}/take"), 409, "slot_taken", "task_closed")


async def test_business_rules_are_clear_400s_and_change_nothing(live):
    pub = await live.login("publisher", "pubbiz")
    wrk = await live.login("worker", "wrkbiz")
    await live.recharge(pub, 1_500)
    other_ref = await S.upload(live, wrk)
    before = await S.snapshot()
    async with live.client(pub.token) as p, live.client(wrk.token) as k:
        task = {"title": "t", "instructions": "i", "unit_price_fen": 1000, "request_id": "bad-publish"}
        cases = [
            (p, "/api/v1/publisher/tasks", task | {"unit_price_fen": 99}, "price_out_of_range"),
            (p, "/api/v1/publisher/tasks", task | {"unit_price_fen": 100_001}, "price_out_of_range"),
            (p, "/api/v1/publisher/tasks", task | {"quantity": 1_001}, "invalid_input"),
            (p, "/api/v1/publisher/tasks", task | {"quantity": 2}, "insufficient_balance"),  # 2 × 1100 > 1500
            (p, "/api/v1/publisher/tasks", task | {"attachment_kind": "image", "attachment": other_ref}, "invalid_input"),
            (p, "/api/v1/publisher/tasks", task | {"attachment_kind": "image", "attachment": "up_nope"}, "invalid_input"),
            (p, "/api/v1/publisher/tasks", task | {"attachment_kind": "link", "attachment": "javascript:alert(1)"}, "invalid_input"),
            (p, "/api/v1/publisher/withdrawals", {"amount_fen": 99, "request_id": "a"}, "withdrawal_out_of_range"),
            (p, "/api/v1/publisher/withdrawals", {"amount_fen": 1_501, "request_id": "b"}, "insufficient_balance"),
            (k, "/api/v1/worker/withdrawals", {"amount_fen": 100, "request_id": "c"}, "insufficient_balance"),
            (p, "/api/v1/publisher/recharges", {"amount_fen": 10**8 + 1, "request_id": "d"}, "invalid_input"),
            (p, "/api/v1/publisher/tasks", task | {"title": "   "}, "invalid_input"),
        ]
        failures = []
        for client, url, body, code in cases:
            r = await client.post(url, json=body)
            try:
                S.assert_error(r, 400, code)
            except AssertionError as exc:
                failures.append(f"[{body}] {exc}")
        assert not failures, "\n".join(failures)
        assert await S.snapshot() == before
        # Idempotency: the same request_id with another amount is a 409; with the same amount, the same row.
        r1 = await p.post("/api/v1/publisher/withdrawals", json={"amount_fen": 100, "request_id": "same"})
        r2 = await p.post("/api/v1/publisher/withdrawals", json={"amount_fen": 100, "request_id": "same"})
        assert (r1.status_code, r1.json()["replayed"]) == (201, False) and (r2.status_code, r2.json()["replayed"]) == (200, True)
        assert r1.json()["id"] == r2.json()["id"]
        S.assert_error(await p.post("/api/v1/publisher/withdrawals", json={"amount_fen": 200, "request_id": "same"}), 409, "idempotency_conflict")


async def raw_request(live, method: str, path: str, token: str, *, content_length: int) -> tuple[int, bytes, bytes]:
    """Announce a body larger than the server accepts and send none of it: Sanic answers 413 at
    once from the headers and closes (an HTTP client still streaming the body would see a reset)."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                 f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {content_length}\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


async def test_uploads(live):
    pub = await live.login("publisher", "pubup")
    wrk = await live.login("worker", "wrkup")
    stranger = await live.login("worker", "wrkstranger")
    other_pub = await live.login("publisher", "pubother")
    png = S.png_bytes(4, 4)
    before = await S.snapshot()
    async with live.client(wrk.token) as k:
        url = "/api/v1/worker/uploads"
        S.assert_error(await k.post(url, files={"file": ("x.png", b"this is not an image at all", "image/png")}), 400, "upload_rejected")
        S.assert_error(await k.post(url, files={"file": ("x.png", b"", "image/png")}), 400, "upload_rejected", "invalid_input")
        S.assert_error(await k.post(url, files={"file": ("x.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")}), 400, "upload_rejected")
        S.assert_error(await k.post(url, files={"file": ("big.png", png[:16] + b"\0" * (5 * 1024 * 1024), "image/png")}), 413, "upload_too_large")
        status, head, body = await raw_request(live, "POST", url, wrk.token, content_length=13 * 1024 * 1024)
        assert status == 413 and b'"payload_too_large"' in body, (status, head, body[:200])
        S.assert_error(await k.post(url), 400, "invalid_input")
        S.assert_error(await k.post(url, files={"image": ("x.png", png, "image/png")}), 400, "invalid_input")
        S.assert_error(await k.post(url, json={"file": "iVBORw0KGgo="}), 400, "invalid_input")
        assert await S.snapshot() == before
        # Exactly 5 MB is allowed (the limit is inclusive).
        r = await k.post(url, files={"file": ("max.png", png + b"\0" * (5 * 1024 * 1024 - len(png)), "image/png")})
        assert r.status_code == 201, r.text[:200]
        r = await k.post(url, files={"file": ("proof.png", png, "image/png")})
        assert r.status_code == 201, r.text
        up = r.json()
        assert up["content_type"] == "image/png" and up["size_bytes"] == len(png) and up["ref"].startswith("up_")
        d = await k.get(f"/api/v1/worker/uploads/{up['ref']}")
        assert d.status_code == 200 and d.content == png and d.headers["content-type"] == "image/png"
        assert d.headers.get("x-content-type-options") == "nosniff"
        ref = up["ref"]
    # Unrelated users (either end) cannot see it, nor can the publisher before it is a proof of their order.
    for who in (stranger, other_pub, pub):
        async with live.client(who.token) as c:
            S.assert_error(await c.get(f"/api/v1/{who.end}/uploads/{ref}"), 404, "not_found")
    # Used as proof of pub's order: pub may see it; other publishers and workers still may not.
    await live.recharge(pub, 5_000)
    task = await S.publish(live, pub)
    async with live.client(wrk.token) as k:
        oid = (await k.post(f"/api/v1/worker/tasks/{task['id']}/take")).json()["id"]
        r = await k.post(f"/api/v1/worker/orders/{oid}/submit", json={"proof_image": ref})
        assert r.status_code == 200 and r.json()["proof_image"] == ref, r.text
    async with live.client(pub.token) as c:
        d = await c.get(f"/api/v1/publisher/uploads/{ref}")
        assert d.status_code == 200 and d.content == png
    for who in (stranger, other_pub):
        async with live.client(who.token) as c:
            S.assert_error(await c.get(f"/api/v1/{who.end}/uploads/{ref}"), 404, "not_found")
    # Someone else's upload cannot be used as my proof / evidence / attachment.
    async with live.client(stranger.token) as s:
        task2 = await S.publish(live, pub)
        oid2 = (await s.post(f"/api/v1/worker/tasks/{task2['id']}/take")).json()["id"]
        S.assert_error(await s.post(f"/api/v1/worker/orders/{oid2}/submit", json={"proof_image": ref}), 400, "invalid_input")
        for weird in ("..%2F..%2Fetc%2Fpasswd", "up_%00", "up_" + "a" * 37):
            r = await s.get(f"/api/v1/worker/uploads/{weird}")
            assert r.status_code == 404, (weird, r.status_code, r.text[:200])


async def test_rate_limits_answer_429_with_retry_after(live):
    pub = await live.login("publisher", "pubrl")
    wrk = await live.login("worker", "wrkrl")
    await live.recharge(pub, 5_000)
    task = await S.publish(live, pub)
    statuses = []
    async with live.client(wrk.token) as k:
        # 10 takes per fixed 10 s window: 21 hits within two windows must overflow one of them,
        # wherever the window boundary falls among them (they take well under 10 s).
        for _ in range(21):
            r = await k.post(f"/api/v1/worker/tasks/{task['id']}/take")
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
        err = S.assert_error(r, 429, "rate_limited")
        assert 1 <= int(r.headers["Retry-After"]) <= 10
        assert err["details"]["retry_after_s"] == int(r.headers["Retry-After"])
    assert statuses[0] == 201 and set(statuses[1:-1]) == {409} and len(statuses) >= 11, statuses
    async with live.client() as c:
        last = None
        for i in range(41):  # 20 per 60 s window: 41 hits in two windows overflow one
            last = await c.post("/api/v1/worker/login", json={"code": f"hammer{i}-{i}"})
            if last.status_code == 429:
                break
        S.assert_error(last, 429, "rate_limited")
        assert 1 <= int(last.headers["Retry-After"]) <= 60
        # Malformed logins are refused before the limiter and never reach WeChat.
        S.assert_error(await c.post("/api/v1/worker/login", json={"code": ""}), 400, "invalid_input")


async def test_overlong_upload_refs_are_4xx_not_500(live):
    pub = await live.login("publisher", "publong")
    wrk = await live.login("worker", "wrklong")
    await live.recharge(pub, 5_000)
    task = await S.publish(live, pub, quantity=1)
    long_ref = "up_" + "a" * 60  # within the request models' max_length (64), beyond the column's 40
    failures = []
    async with live.client(wrk.token) as k, live.client(pub.token) as p:
        oid = (await k.post(f"/api/v1/worker/tasks/{task['id']}/take")).json()["id"]
        calls = [
            ("download", await k.get(f"/api/v1/worker/uploads/{long_ref}"), 404),
            ("download 500 chars", await k.get(f"/api/v1/worker/uploads/{'a' * 500}"), 404),
            ("proof_image", await k.post(f"/api/v1/worker/orders/{oid}/submit", json={"proof_image": long_ref}), 400),
            ("attachment", await p.post("/api/v1/publisher/tasks", json={"title": "t", "instructions": "i", "unit_price_fen": 1000,
                                                                          "attachment_kind": "image", "attachment": long_ref, "request_id": uuid.uuid4().hex}), 400),
        ]
        for name, r, status in calls:
            if r.status_code != status:
                failures.append(f"{name}: {r.status_code} {r.text[:120]}")
    assert not failures, "\n".join(failures)
