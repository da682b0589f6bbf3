"""Mini Program sessions (issue 17, item 4): a short access token, a rotating refresh token, and a
logout that ends every session of the account on the server at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
import websockets

from miniprogram_api import auth
from models import audit, clock, sessions
from tests.api import _support as S



async def login(live, end: str, name: str) -> dict:
    async with live.client() as c:
        r = await c.post(f"/api/v1/{end}/login", json={"code": f"{name}-{time.monotonic_ns()}"})
    assert r.status_code == 200, r.text
    return r.json()


async def refresh(live, end: str, token: str):
    async with live.client() as c:
        return await c.post(f"/api/v1/{end}/refresh", json={"refresh_token": token})


async def me(live, end: str, token: str):
    async with live.client(token) as c:
        return await c.get(f"/api/v1/{end}/me")


def parse(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))


@pytest.mark.asyncio
async def test_a_login_gives_a_15_minute_access_token_and_a_30_day_refresh_token(live):
    body = await login(live, "worker", "bob")
    now = dt.datetime.now(dt.timezone.utc)
    assert abs((parse(body["expires_at"]) - now).total_seconds() - auth.ACCESS_TTL_S) < 5
    assert abs((parse(body["refresh_expires_at"]) - now).total_seconds() - sessions.REFRESH_IDLE_S) < 5
    assert body["token"].count(".") == 2 and body["refresh_token"] != body["token"]
    assert (await me(live, "worker", body["token"])).status_code == 200


@pytest.mark.asyncio
async def test_an_expired_access_token_is_token_expired_and_the_refresh_token_gets_a_new_pair(live, monkeypatch):
    body = await login(live, "worker", "bob")
    later = time.time() + auth.ACCESS_TTL_S + 1
    monkeypatch.setattr(auth.time, "time", lambda: later)
    S.assert_error(await me(live, "worker", body["token"]), 401, "token_expired")
    r = await refresh(live, "worker", body["refresh_token"])
    assert r.status_code == 200, r.text
    fresh = r.json()
    assert fresh["user"]["id"] == body["user"]["id"] and fresh["refresh_token"] != body["refresh_token"]
    assert (await me(live, "worker", fresh["token"])).status_code == 200
    # The next refresh uses the new refresh token; the exchanged one is spent.
    r = await refresh(live, "worker", fresh["refresh_token"])
    assert r.status_code == 200, r.text


@pytest.mark.asyncio
async def test_a_refresh_token_used_twice_ends_every_session_for_both_holders(live):
    """An exchanged refresh token presented again (after the grace time) means a copy exists:
    every session of the account ends — refresh and access tokens, the thief's and the phone's
    alike — and the audit log says so (once, however often the copy is replayed)."""
    body = await login(live, "publisher", "alice")
    spent = body["refresh_token"]
    current = (await refresh(live, "publisher", spent)).json()
    assert (await me(live, "publisher", current["token"])).status_code == 200
    clock.advance(sessions.REUSE_GRACE_S + 1)
    for _ in range(2):
        S.assert_error(await refresh(live, "publisher", spent), 401, "refresh_token_invalid")
    S.assert_error(await refresh(live, "publisher", current["refresh_token"]), 401, "refresh_token_invalid")
    S.assert_error(await me(live, "publisher", current["token"]), 401, "unauthorized")
    assert await audit.AuditLog.filter(action="session.refresh_reused", target_id=body["user"]["id"]).count() == 1


@pytest.mark.asyncio
async def test_two_refreshes_racing_on_one_phone_leave_exactly_one_winner_and_the_session_alive(live):
    body = await login(live, "worker", "bob")
    results = await asyncio.gather(*(refresh(live, "worker", body["refresh_token"]) for _ in range(4)))
    won = [r for r in results if r.status_code == 200]
    assert len(won) == 1, [r.text for r in results]
    for r in results:
        if r.status_code != 200:
            S.assert_error(r, 401, "refresh_token_invalid")
    assert (await refresh(live, "worker", won[0].json()["refresh_token"])).status_code == 200  # within the grace


@pytest.mark.asyncio
async def test_a_refresh_token_works_only_on_its_own_end_and_only_in_its_own_form(live):
    body = await login(live, "worker", "bob")
    S.assert_error(await refresh(live, "publisher", body["refresh_token"]), 401, "refresh_token_invalid")
    sid = body["refresh_token"].split(".")[0]
    for bad in (f"{sid}.guess", "1.x", "x.y", "." * 3, body["token"], "9" * 30 + ".x"):
        S.assert_error(await refresh(live, "worker", bad), 401, "refresh_token_invalid")
    async with live.client() as c:
        S.assert_error(await c.post("/api/v1/worker/refresh", json={}), 400, "invalid_input")
        S.assert_error(await c.post("/api/v1/worker/refresh", json={"refresh_token": 5}), 400, "invalid_input")
    assert (await refresh(live, "worker", body["refresh_token"])).status_code == 200  # the guesses ended nothing


@pytest.mark.asyncio
async def test_a_session_ends_after_30_days_unused_and_90_days_after_the_login(live):
    idle = await login(live, "worker", "idle")
    clock.advance(sessions.REFRESH_IDLE_S + 1)
    S.assert_error(await refresh(live, "worker", idle["refresh_token"]), 401, "refresh_token_invalid")
    clock.reset()
    body = await login(live, "worker", "busy")
    token = body["refresh_token"]
    for _ in range(3):  # used every 29 days, it lives on …
        clock.advance(29 * 86_400)
        r = await refresh(live, "worker", token)
        assert r.status_code == 200, r.text
        token = r.json()["refresh_token"]
        assert parse(r.json()["refresh_expires_at"]) <= parse(body["refresh_expires_at"]) + dt.timedelta(days=61)
    clock.advance(4 * 86_400)  # … until 90 days after the login
    S.assert_error(await refresh(live, "worker", token), 401, "refresh_token_invalid")


@pytest.mark.asyncio
async def test_logout_ends_every_session_of_the_account_on_the_server(live):
    """Two phones of one account; one logs out: every access and refresh token of the account stops
    at once, on the lookup-free take too and at the WebSocket handshake. The other end's account
    of the same person is untouched. A new login works."""
    alice = await live.login("publisher", "alice")
    await live.recharge(alice, 10_000)
    task = await S.publish(live, alice, price=500)
    phone1, phone2 = await login(live, "worker", "bob"), await login(live, "worker", "bob")
    assert phone1["user"]["id"] == phone2["user"]["id"]
    other_end = await login(live, "publisher", "bob")
    async with live.client(phone1["token"]) as c:
        r = await c.post("/api/v1/worker/logout")
    assert r.status_code == 204 and r.content == b""
    for who in (phone1, phone2):
        S.assert_error(await me(live, "worker", who["token"]), 401, "unauthorized")
        S.assert_error(await refresh(live, "worker", who["refresh_token"]), 401, "refresh_token_invalid")
        async with live.client(who["token"]) as c:
            S.assert_error(await c.post(f"/api/v1/worker/tasks/{task['id']}/take"), 401, "unauthorized")
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(f"ws://127.0.0.1:{live.port}/api/v1/ws?token={who['token']}", open_timeout=5):
                pass
        assert refused.value.response.status_code == 401
    assert (await me(live, "publisher", other_end["token"])).status_code == 200
    assert await audit.AuditLog.filter(action="user.logout", target_id=phone1["user"]["id"]).exists()
    again = await login(live, "worker", "bob")
    async with live.client(again["token"]) as c:
        assert (await c.post(f"/api/v1/worker/tasks/{task['id']}/take")).status_code == 201


@pytest.mark.asyncio
async def test_logout_needs_a_valid_token(live):
    async with live.client() as c:
        S.assert_error(await c.post("/api/v1/worker/logout"), 401, "unauthorized")


@pytest.mark.asyncio
async def test_an_account_keeps_at_most_ten_live_sessions(live):
    first = await login(live, "worker", "many")
    for _ in range(sessions.MAX_LIVE_SESSIONS):
        last = await login(live, "worker", "many")
    S.assert_error(await refresh(live, "worker", first["refresh_token"]), 401, "refresh_token_invalid")
    assert (await refresh(live, "worker", last["refresh_token"])).status_code == 200
    assert await sessions.ApiSession.filter(user_id=first["user"]["id"]).count() == sessions.MAX_LIVE_SESSIONS


def schema_of(spec: dict, part: dict) -> dict:
    schema = part["content"]["application/json"]["schema"]
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.mark.asyncio
async def test_refresh_and_logout_are_in_the_openapi_document_with_their_errors(live):
    async with live.client() as c:
        spec = (await c.get("/docs/openapi.json")).json()
    for end in ("worker", "publisher"):
        refresh_doc = spec["paths"][f"/api/v1/{end}/refresh"]["post"]
        assert {"200", "400", "401", "403", "429"} <= set(refresh_doc["responses"])
        props = schema_of(spec, refresh_doc["responses"]["200"])["properties"]
        assert {"token", "expires_at", "refresh_token", "refresh_expires_at", "user"} <= set(props)
        assert "refresh_token_invalid" in refresh_doc["description"]
        body = schema_of(spec, refresh_doc["requestBody"])
        assert body["required"] == ["refresh_token"]
        logout_doc = spec["paths"][f"/api/v1/{end}/logout"]["post"]
        assert "204" in logout_doc["responses"] and "401" in logout_doc["responses"]
        assert "content" not in logout_doc["responses"]["204"]
        login_props = schema_of(spec, spec["paths"][f"/api/v1/{end}/login"]["post"]["responses"]["200"])["properties"]
        assert "refresh_token" in login_props
        assert "token_expired" in logout_doc["responses"]["401"]["description"]


def test_docs_api_argues_the_token_lifetime_and_documents_refresh_and_logout():
    from server.config import ROOT

    text = (ROOT / "docs" / "api.md").read_text()
    for needed in ("/refresh", "/logout", "refresh_token_invalid", "token_expired", "15 minutes", "30 days"):
        assert needed in text, needed


@pytest.mark.asyncio
async def test_a_refresh_token_with_other_scripts_digits_is_refused_not_a_500(live):
    """"²" and "١٢" are digits to str.isdigit() but not to int(): every id parser takes ASCII only."""
    for token in ("².x", "١٢.secret", "12\u0663.secret"):
        r = await refresh(live, "worker", token)
        assert r.status_code == 401, (token, r.status_code, r.text)
