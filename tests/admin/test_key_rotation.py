"""Rotating MARKET_SECRET_KEY (issue 17, item 2; the procedure is in docs/operations.md): a server
restarted with a new key and the old one in MARKET_PREVIOUS_SECRET_KEYS keeps every session
(Mini Program access tokens, admin cookies and their CSRF tokens) and signs new ones with the new
key; once the old key is removed, what it signed stops working."""

from __future__ import annotations

import pytest

from server import keys
from server.admin import session
from server.keys import new_secret
from tests.admin.conftest import CSRF_RE, Panel, make_operator
from tests.api.conftest import start_live, stop_live

pytestmark = pytest.mark.asyncio


async def test_a_rotated_key_keeps_sessions_until_the_old_key_is_removed(database, tmp_path):
    old, new = new_secret(), new_secret()
    op = await make_operator()

    live, server = await start_live(database, tmp_path, secret_key=old)
    try:
        bob = await live.login("worker", "bob")
        panel = Panel(live.base)
        assert (await panel.login(op.username)).status_code == 303
        page = await panel.get("/admin")
        csrf = CSRF_RE.search(page.text).group(1)
        cookie = panel.http.cookies.get(session.SESSION_COOKIE)
        await panel.aclose()
    finally:
        await stop_live(server)
    assert bob.token.split(".")[0] == keys.kid_of(old) == cookie.split(".")[0] == csrf.split(".")[0]

    async def admin_status(base: str) -> int:
        p = Panel(base)
        try:
            return (await p.http.get("/admin", headers={"cookie": f"{session.SESSION_COOKIE}={cookie}"})).status_code
        finally:
            await p.aclose()

    # 1. The new key signs; the old one still verifies.
    live, server = await start_live(database, tmp_path, secret_key=new, previous_secret_keys=[old])
    try:
        async with live.client(bob.token) as c:
            assert (await c.get("/api/v1/worker/me")).status_code == 200
        assert await admin_status(live.base) == 200
        carol = await live.login("worker", "carol")
        assert carol.token.split(".")[0] == keys.kid_of(new)
    finally:
        await stop_live(server)

    # 2. The old key removed: what it signed is refused; what the new key signed still works.
    live, server = await start_live(database, tmp_path, secret_key=new)
    try:
        async with live.client(bob.token) as c:
            r = await c.get("/api/v1/worker/me")
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert await admin_status(live.base) == 302
        async with live.client(carol.token) as c:
            assert (await c.get("/api/v1/worker/me")).status_code == 200
    finally:
        await stop_live(server)


async def test_a_csrf_token_of_the_old_key_is_accepted_while_the_old_key_verifies(database, tmp_path):
    """A form loaded before the restart can still be sent after it."""
    old, new = new_secret(), new_secret()
    op = await make_operator()
    live, server = await start_live(database, tmp_path, secret_key=old)
    try:
        panel = Panel(live.base)
        await panel.login(op.username)
        await panel.get("/admin")
        cookies = dict(panel.http.cookies)
        token = panel.token
        await panel.aclose()
    finally:
        await stop_live(server)
    live, server = await start_live(database, tmp_path, secret_key=new, previous_secret_keys=[old])
    try:
        panel = Panel(live.base)
        panel.http.cookies.update(cookies)
        r = await panel.post("/admin/logout", csrf=token)
        assert r.status_code == 303 and r.headers["location"] == "/admin/login"
        await panel.aclose()
    finally:
        await stop_live(server)
