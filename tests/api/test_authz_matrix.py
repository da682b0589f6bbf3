"""Authorization matrix, driven by the app's router: every /api/v1 route is called anonymously, with
the other end's token, with broken tokens, with a banned user's tokens, and (resource routes) with
another same-end user's ids. A new route without the auth check fails here without anyone
having to add it to a list; only the explicit allow-lists in _support may exempt one."""

from __future__ import annotations

import base64
import json
import time

import pytest
import pytest_asyncio

from miniprogram_api.auth import issue_token
from models.users import User, set_banned
from server.keys import KeyRing, new_secret
from tests.api import _support as S

pytestmark = pytest.mark.asyncio


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(keys, claims, purpose: str = "api.access") -> str:
    return keys.sign(purpose, _b64(json.dumps(claims).encode()))


def _action(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def owner_params(world, end: str, path: str) -> dict:
    """Path parameters naming resources of p1 / w1, chosen so that the call would succeed for the
    owner (so a missing check shows up as a success or a state change, not as a lucky 409)."""
    action = _action(path)
    if end == "worker":
        order_state = {"submit": "in_progress", "abandon": "in_progress", "accept-rejection": "rejected", "appeal": "rejected"}.get(action, "awaiting_review")
        return {"order_id": world.orders[order_state], "task_id": world.open_task, "withdrawal_id": world.w1_withdrawal, "ref": world.proof_ref}
    return {
        "order_id": world.orders["awaiting_review"], "task_id": world.open_task, "withdrawal_id": world.p1_withdrawal,
        "recharge_id": world.recharge["recharge_id"], "ref": world.p1_ref, "worker_id": world.w1.id,
    }


def request_kwargs(method: str, path: str) -> dict:
    """A valid body for the route (a route that forgot its auth check would then succeed)."""
    if method != "POST":
        return {}
    action = _action(path)
    if action == "uploads":
        return {"files": {"file": ("p.png", S.png_bytes(), "image/png")}}
    body = {
        "submit": {"proof_text": "done"},
        "appeal": {"reason": "look again"},
        "reject": {"reason": "wrong"},
        "answer": {"text": "the account differs"},
        "withdrawals": {"amount_fen": 100, "request_id": "authz-probe"},
        "recharges": {"amount_fen": 100, "request_id": "authz-probe"},
        "tasks": {"title": "t", "instructions": "i", "unit_price_fen": 1000, "request_id": "bad-input"},
        "login": {"code": "mallory-1"},
    }.get(action, {})
    return {"json": body}


async def send(client, method: str, url: str, path: str, token: str | None = None, header: str | None = None):
    """One request on a shared connection; the token (or a raw Authorization value) per request."""
    headers = {}
    if header is not None:
        headers["Authorization"] = header
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await client.request(method, url, headers=headers, **request_kwargs(method, path))


@pytest_asyncio.fixture
async def world(live):
    return await S.build_world(live)


def protected_routes(live):
    routes = [(m, p, r) for m, p, r in S.api_routes(live.app) if (m, p) not in S.PUBLIC]
    assert len(routes) >= 30, "the router lists fewer API routes than expected: is the app built?"
    return routes


async def test_every_route_is_classified(live):
    """Every route is under /api/v1 (and so covered below) or on the explicit non-API allow-list;
    every /api/v1 route belongs to an end or to the ANY_END allow-list; allow-lists are not stale."""
    assert S.other_routes(live.app) == [], "new non-API routes: put them under /api/v1 or allow-list them in _support"
    keys = {(m, p) for m, p, _ in S.api_routes(live.app)}
    for m, p in keys:
        assert S.route_end(p) or (m, p) in S.ANY_END | S.PUBLIC, f"{m} {p}: which end is it for?"
    for allow in (S.PUBLIC, S.ANY_END, S.SHARED_RESOURCES):
        assert allow <= keys, f"stale allow-list entries: {allow - keys}"


async def test_public_routes_answer_without_a_token(live):
    async with live.client() as c:
        for end in ("worker", "publisher"):
            r = await c.post(f"/api/v1/{end}/login", json={"code": f"newbie-{end}-1"})
            assert r.status_code == 200, r.text
            refreshed = await c.post(f"/api/v1/{end}/refresh", json={"refresh_token": r.json()["refresh_token"]})
            assert refreshed.status_code == 200, refreshed.text
            S.assert_error(await c.post(f"/api/v1/{end}/refresh", json={"refresh_token": "1.forged"}), 401, "refresh_token_invalid")
        assert (await c.get("/api/v1/errors")).status_code == 200
        S.assert_error(await c.get("/api/v1/images/up_abc"), 403, "image_link_invalid")  # no signature, no image


async def check_anonymous(live, world, c, failures):
    """(a) No token, an empty header, a bare 'Bearer': 401 unauthorized."""
    for method, path, _ in protected_routes(live):
        url = S.fill(path, owner_params(world, S.route_end(path) or "worker", path))
        for header in (None, "", "Bearer"):
            r = await send(c, method, url, path, header=header)
            try:
                S.assert_error(r, 401, "unauthorized")
            except AssertionError as exc:
                failures.append(f"[anonymous {header!r}] {exc}")


async def check_wrong_end(live, world, c, failures):
    """(b) The other end's valid token: 403 wrong_end (except the ANY_END routes)."""
    for method, path, _ in protected_routes(live):
        if (method, path) in S.ANY_END:
            continue
        end = S.route_end(path)
        intruder = world.p1 if end == "worker" else world.w1
        r = await send(c, method, S.fill(path, owner_params(world, end, path)), path, token=intruder.token)
        try:
            S.assert_error(r, 403, "wrong_end")
        except AssertionError as exc:
            failures.append(f"[wrong end] {exc}")


async def check_bad_tokens(live, world, c, failures):
    """(c) Malformed, tampered, foreign-signed, stale and expired tokens: 401."""
    keys = live.app.ctx.keys
    good = world.w1.token
    kid, payload, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    user = await User.get(id=world.w1.id)
    pub = await User.get(id=world.p1.id)
    expired = {"worker": issue_token(keys, user, ttl_s=-60)[0], "publisher": issue_token(keys, pub, ttl_s=-60)[0]}
    forged_uid = _b64(json.dumps(claims | {"uid": world.w2.id}, separators=(",", ":")).encode())
    bad = {
        "garbage": "Bearer not-a-token",
        "empty-parts": "Bearer ..",
        "four-parts": f"Bearer {good}.x",
        "bad-signature": f"Bearer {kid}.{payload}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BB'}",
        "forged-uid": f"Bearer {kid}.{forged_uid}.{sig}",
        "unknown-key-id": f"Bearer AAAAAAAA.{payload}.{sig}",
        "other-secret": f"Bearer {issue_token(KeyRing(new_secret()), user)[0]}",
        "other-purpose": f"Bearer {_sign(keys, claims, 'admin.session')}",  # e.g. an admin cookie's key
        "not-base64": "Bearer x.%%%%.@@@@",
        "signed-list": f"Bearer {_sign(keys, ['uid'])}",
        "signed-missing-claims": f"Bearer {_sign(keys, {'uid': world.w1.id})}",
        "unknown-user": f"Bearer {_sign(keys, {'uid': 10**9, 'end': 'worker', 'ver': 0, 'exp': time.time() + 60})}",
        "stale-version": f"Bearer {_sign(keys, claims | {'ver': claims['ver'] + 7})}",
        "basic-scheme": f"Basic {good}",
        "token-twice": f"Bearer {good} {good}",
    }
    for method, path, _ in protected_routes(live):
        end = S.route_end(path) or "worker"
        url = S.fill(path, owner_params(world, end, path))
        cases = {name: (header, "unauthorized") for name, header in bad.items()}
        cases["expired"] = (f"Bearer {expired[end]}", "token_expired")
        for name, (header, code) in cases.items():
            r = await send(c, method, url, path, header=header)
            try:
                S.assert_error(r, 401, code)
            except AssertionError as exc:
                failures.append(f"[{name}] {exc}")
    r = await c.get("/api/v1/worker/me", params={"token": good})  # a query token: the WebSocket only
    try:
        S.assert_error(r, 401, "unauthorized")
    except AssertionError as exc:
        failures.append(f"[query token] {exc}")


NOT_FOUND_CODES = {
    "order_id": ("order_not_found",),
    "task_id": ("task_not_found",),
    "withdrawal_id": ("withdrawal_not_found",),
    "recharge_id": ("recharge_not_found",),
    "worker_id": ("block_not_found",),  # a block is the publisher's own: another publisher has none of it
    "ref": ("not_found",),
}


async def check_other_users_ids(live, world, c, failures):
    """Every route with a path parameter (except the shared task hall) called by the other user of
    the same end with the owner's ids: 404 with the resource's own code."""
    checked = 0
    for method, path, _ in protected_routes(live):
        names = S.params_of(path)
        if not names or (method, path) in S.SHARED_RESOURCES:
            continue
        end = S.route_end(path)
        if end is None:
            failures.append(f"{method} {path}: resource route outside both ends; classify it")
            continue
        stranger = world.w2 if end == "worker" else world.p2
        codes = tuple(code for n in names for code in NOT_FOUND_CODES.get(n, ("not_found",)))
        r = await send(c, method, S.fill(path, owner_params(world, end, path)), path, token=stranger.token)
        checked += 1
        try:
            S.assert_error(r, 404, *codes)
        except AssertionError as exc:
            failures.append(f"[other user] {exc}")
    assert checked >= 15, checked


async def check_owner_control(live, world, c, failures):
    """Control: the ids used above are real and readable by their owners (so the 404s mean 'not yours')."""
    for method, path, _ in protected_routes(live):
        if method != "GET" or not S.params_of(path):
            continue
        end = S.route_end(path)
        owner = world.w1 if end == "worker" else world.p1
        r = await c.get(S.fill(path, owner_params(world, end, path)), headers={"Authorization": f"Bearer {owner.token}"})
        if r.status_code != 200:
            failures.append(f"[owner control] {path}: {r.status_code} {r.text[:200]}")


async def test_authz_matrix(live, world):
    """(a) anonymous, (b) other end, (c) broken tokens, and another user's ids, over every route;
    then nothing at all has changed (rows, balances, states)."""
    before = await S.snapshot()
    failures: list[str] = []
    async with live.client() as c:
        await check_anonymous(live, world, c, failures)
        await check_wrong_end(live, world, c, failures)
        await check_bad_tokens(live, world, c, failures)
        await check_other_users_ids(live, world, c, failures)
        await check_owner_control(live, world, c, failures)
    assert not failures, "\n".join(failures)
    assert await S.snapshot() == before
    await check_websocket(live, world)


async def check_websocket(live, world):
    """The WebSocket handshake is refused (401) before the upgrade for a bad session."""
    import websockets

    url = live.base.replace("http://", "ws://") + "/api/v1/ws"
    for token in (None, "garbage", world.w1.token + "x"):
        target = url if token is None else f"{url}?token={token}"
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            async with websockets.connect(target, open_timeout=5):
                pass
        assert info.value.response.status_code == 401
    async with websockets.connect(f"{url}?token={world.p1.token}", open_timeout=5) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome" and welcome["end"] == "publisher"


async def test_banned_users_are_refused_everywhere_and_nothing_changes(live, world):
    """(d) A banned user is told `user_banned` (403) on every route, with the token they held before
    the ban (issue 17, item 14: it used to be 401 unauthorized) and with a token of the current
    version; logging in and refreshing are 403 user_banned too. Nothing changes. After an unban the
    sessions from before the ban stay ended (401); a new login works."""
    world.w1_refresh = await _refresh_token_of(live, world.w1)
    await set_banned(world.w1.id, True, operator_id=1, reason="fraud")
    await set_banned(world.p1.id, True, operator_id=1, reason="fraud")
    keys = live.app.ctx.keys
    fresh = {
        "worker": issue_token(keys, await User.get(id=world.w1.id))[0],
        "publisher": issue_token(keys, await User.get(id=world.p1.id))[0],
    }
    old = {"worker": world.w1.token, "publisher": world.p1.token}
    before = await S.snapshot()
    failures = []
    checked = 0
    async with live.client() as c:
        for method, path, _ in protected_routes(live):
            end = S.route_end(path) or "worker"
            url = S.fill(path, owner_params(world, end, path))
            for kind, token in (("pre-ban token", old[end]), ("current token", fresh[end])):
                r = await send(c, method, url, path, token=token)
                checked += 1
                try:
                    S.assert_error(r, 403, "user_banned")
                except AssertionError as exc:
                    failures.append(f"[{kind}] {exc}")
        for who in (world.w1, world.p1):
            r = await c.post(f"/api/v1/{who.end}/login", json={"code": f"{who.name}-901"})
            try:
                S.assert_error(r, 403, "user_banned")
            except AssertionError as exc:
                failures.append(f"[login] {exc}")
        r = await c.post("/api/v1/worker/refresh", json={"refresh_token": world.w1_refresh})
        try:
            S.assert_error(r, 403, "user_banned")
        except AssertionError as exc:
            failures.append(f"[refresh] {exc}")
    assert checked >= 60
    assert not failures, "\n".join(failures)
    assert await S.snapshot() == before
    # Unbanning lets the person log in again; sessions from before the ban stay ended.
    await set_banned(world.w1.id, False, operator_id=1)
    async with live.client(world.w1.token) as c:
        S.assert_error(await c.get("/api/v1/worker/me"), 401, "unauthorized")
        S.assert_error(await c.post("/api/v1/worker/refresh", json={"refresh_token": world.w1_refresh}), 401, "refresh_token_invalid")
    again = await live.login("worker", world.w1.name)
    assert again.id == world.w1.id
    async with live.client(again.token) as c:
        assert (await c.get("/api/v1/worker/me")).status_code == 200


async def _refresh_token_of(live, who) -> str:
    async with live.client() as c:
        r = await c.post(f"/api/v1/{who.end}/login", json={"code": f"{who.name}-777"})
    assert r.status_code == 200, r.text
    return r.json()["refresh_token"]
