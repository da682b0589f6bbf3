"""Shared helpers of the API robustness tests: a small world of real resources, the router-driven
list of API routes, and a snapshot of everything a request could change."""

from __future__ import annotations

import uuid

import re
import struct
import zlib
from types import SimpleNamespace

from models import db

API_PREFIX = "/api/v1/"

# Routes that are outside the Mini Program API on purpose (sandbox, WeChat's server callbacks, docs).
# /admin is the operators' web panel: its own cookie session + CSRF, tested in tests/admin.
NON_API_PREFIXES = ("/sandbox", "/api/wechat/", "/docs", "/admin")
NON_API_EXACT = {"/healthz", "/metrics"}  # /metrics: operators only, behind its token (server/observability.py)

# Mini Program routes that need no access token: the logins and refreshes (a refresh carries its
# refresh token in the body), the error catalog, and the images behind signed links (the signature
# is the permission: tests/api/test_contract.py).
PUBLIC = {("POST", "/api/v1/worker/login"), ("POST", "/api/v1/publisher/login"),
          ("POST", "/api/v1/worker/refresh"), ("POST", "/api/v1/publisher/refresh"), ("GET", "/api/v1/errors"),
          ("GET", "/api/v1/images/<ref:str>")}

# Routes open to a session of either end (no wrong_end check).
ANY_END = {("GET", "/api/v1/ws")}

# Routes whose path names something every user of the end may see/act on (the task hall):
# another user's id there is not a 404.
SHARED_RESOURCES = {
    ("GET", "/api/v1/worker/tasks/<task_id:int>"),
    ("POST", "/api/v1/worker/tasks/<task_id:int>/take"),
}

TABLES = ("users", "tasks", "orders", "withdrawals", "recharges", "uploads", "journal_entries", "postings",
          "referral_rewards", "outbox", "audit_log")


def png_bytes(width: int = 1, height: int = 1) -> bytes:
    """A valid (tiny) PNG image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def api_routes(app) -> list[tuple[str, str, object]]:
    """(method, path, route) of every route of the app under /api/v1, from the router itself."""
    out = []
    for route in app.router.routes:
        path = "/" + route.path
        if not path.startswith(API_PREFIX):
            continue
        for method in sorted(route.methods):
            if method in ("HEAD", "OPTIONS"):
                continue
            out.append((method, path, route))
    return sorted(out, key=lambda t: (t[1], t[0]))


def other_routes(app) -> list[str]:
    """Paths of routes that are neither /api/v1 nor on the allow-list of non-API routes."""
    bad = []
    for route in app.router.routes:
        path = "/" + route.path
        if path.startswith(API_PREFIX) or path in NON_API_EXACT or path.startswith(NON_API_PREFIXES):
            continue
        bad.append(path)
    return bad


def route_end(path: str) -> str | None:
    m = re.match(r"^/api/v1/(worker|publisher)/", path)
    return m.group(1) if m else None


PARAM = re.compile(r"<([a-z_]+)(?::[a-z]+)?>")


def fill(path: str, values: dict[str, object]) -> str:
    def sub(m):
        name = m.group(1)
        if name not in values:
            raise AssertionError(f"route {path}: no test value for path parameter {name!r}; add one")
        return str(values[name])

    return PARAM.sub(sub, path)


def params_of(path: str) -> list[str]:
    return PARAM.findall(path)


async def snapshot() -> dict:
    """Row counts, every account balance and every order's/task's/withdrawal's state."""
    snap: dict = {}
    for t in TABLES:
        snap[t] = int((await db.fetch_one(f"SELECT COUNT(*) AS n FROM {t}"))["n"])
    snap["balances"] = {r["code"]: int(r["balance_fen"]) for r in await db.fetch("SELECT code, balance_fen FROM accounts")}
    snap["orders_state"] = {r["id"]: str(r["status"]) for r in await db.fetch("SELECT id, status FROM orders")}
    snap["tasks_state"] = {r["id"]: (str(r["status"]), int(r["slots_untaken"])) for r in await db.fetch("SELECT id, status, slots_untaken FROM tasks")}
    snap["withdrawals_state"] = {r["id"]: str(r["status"]) for r in await db.fetch("SELECT id, status FROM withdrawals")}
    snap["users_state"] = {r["id"]: (bool(r["banned"]), int(r["orders_in_progress"])) for r in await db.fetch("SELECT id, banned, orders_in_progress FROM users")}
    return snap


def assert_error(r, status: int, *codes: str) -> dict:
    assert r.status_code == status, f"{r.request.method} {r.request.url}: expected {status}, got {r.status_code} {r.text[:300]}"
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), r.text[:300]
    assert isinstance(body["error"].get("code"), str) and isinstance(body["error"].get("message"), str), r.text[:300]
    if codes:
        assert body["error"]["code"] in codes, f"{r.request.method} {r.request.url}: code {body['error']['code']!r} not in {codes}"
    return body["error"]


async def publish(live, who, *, price: int = 1000, quantity: int = 1, title: str = "Scan the code", **extra) -> dict:
    async with live.client(who.token) as c:
        r = await c.post("/api/v1/publisher/tasks", json={"title": title, "instructions": "Scan it, then submit", "unit_price_fen": price, "quantity": quantity, "request_id": uuid.uuid4().hex, **extra})
    assert r.status_code == 201, r.text
    return r.json()


async def upload(live, who, data: bytes | None = None, name: str = "proof.png") -> str:
    async with live.client(who.token) as c:
        r = await c.post(f"/api/v1/{who.end}/uploads", files={"file": (name, data or png_bytes(), "image/png")})
    assert r.status_code == 201, r.text
    return r.json()["ref"]


async def build_world(live) -> SimpleNamespace:
    """Two publishers and two workers; publisher p1's tasks with worker w1's orders in each state
    (in_progress, awaiting_review, rejected, appealing, completed), an untaken open task, uploads, a
    recharge and withdrawals of both ends. p2 / w2 own nothing of p1 / w1."""
    w = SimpleNamespace()
    w.p1 = await live.login("publisher", "pubone")
    w.p2 = await live.login("publisher", "pubtwo")
    w.w1 = await live.login("worker", "wrkone")
    w.w2 = await live.login("worker", "wrktwo")
    assert len({w.p1.id, w.p2.id, w.w1.id, w.w2.id}) == 4
    w.recharge = await live.recharge(w.p1, 100_000)
    await live.recharge(w.p2, 10_000)

    states = ("in_progress", "awaiting_review", "rejected", "appealing", "completed")
    w.tasks, w.orders = {}, {}
    w.proof_ref = await upload(live, w.w1)
    w.w1_private_ref = await upload(live, w.w1)  # used nowhere
    async with live.client(w.p1.token) as p, live.client(w.w1.token) as k:
        for state in states:
            task = await publish(live, w.p1, quantity=2, title=f"task {state}")
            w.tasks[state] = task["id"]
            r = await k.post(f"/api/v1/worker/tasks/{task['id']}/take")
            assert r.status_code == 201, r.text
            oid = r.json()["id"]
            w.orders[state] = oid
            if state == "in_progress":
                continue
            body = {"proof_text": "done"}
            if state == "awaiting_review":
                body["proof_image"] = w.proof_ref
            r = await k.post(f"/api/v1/worker/orders/{oid}/submit", json=body)
            assert r.status_code == 200, r.text
            if state == "awaiting_review":
                continue
            if state == "completed":
                r = await p.post(f"/api/v1/publisher/orders/{oid}/approve")
                assert r.json()["status"] == "completed", r.text
                continue
            r = await p.post(f"/api/v1/publisher/orders/{oid}/reject", json={"reason": "blurry"})
            assert r.json()["status"] == "rejected", r.text
            if state == "appealing":
                r = await k.post(f"/api/v1/worker/orders/{oid}/appeal", json={"reason": "it was sharp"})
                assert r.json()["status"] == "appealing", r.text
        w.open_task = (await publish(live, w.p1, quantity=3, title="untaken"))["id"]
        r = await k.post("/api/v1/worker/withdrawals", json={"amount_fen": 200, "request_id": "w1-first"})
        assert r.status_code == 201, r.text
        w.w1_withdrawal = r.json()["id"]
        r = await p.post("/api/v1/publisher/withdrawals", json={"amount_fen": 500, "request_id": "p1-first"})
        assert r.status_code == 201, r.text
        w.p1_withdrawal = r.json()["id"]
    w.p1_ref = await upload(live, w.p1)
    return w
