"""A settings change made on one server process is in force on another within the stated bound
(`models.settings.CACHE_TTL_S`, 1 s), for every request (issue 17, item 7: two seconds after the
countdown was changed on one server, 7 of 8 concurrent publishes on another still got the old one)."""

from __future__ import annotations

import asyncio
import time
from html.parser import HTMLParser

import httpx
import pytest

from miniprogram_api.auth import issue_token
from tortoise.transactions import in_transaction

from models import db, operators
from models import settings as market_settings
from models.tasks import Task
from server.config import key_ring, load_config
from tests import personas as p
from tests.api.conftest import free_port
from tests.api.test_push_across_processes import start_server, stop, wait_healthy

PASSWORD = "correct horse battery"
PUBLISHES = 40  # at once, on server B, just after the bound


class _Form(HTMLParser):
    """The named inputs of a page's forms (so the test does not depend on the page's layout)."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("name"):
            self.values.setdefault(a["name"], a.get("value") or "")


def form_values(html: str) -> dict[str, str]:
    parser = _Form()
    parser.feed(html)
    return parser.values


async def change_countdown_on(base: str, username: str, minutes: str) -> None:
    """An owner changes the countdown on the admin panel of the server at `base`."""
    async with httpx.AsyncClient(base_url=base, timeout=20) as c:
        login = form_values((await c.get("/admin/login")).text)
        r = await c.post("/admin/login", data={"csrf": login["csrf"], "username": username, "password": PASSWORD, "next": "/admin"})
        assert r.status_code == 303, r.text
        values = form_values((await c.get("/admin/settings")).text)
        r = await c.post("/admin/settings", data=values | {"countdown_s_min": minutes, "countdown_s_sec": "0"})  # minutes and seconds
        assert r.status_code == 303 and "settings_saved" in r.headers["location"], r.text[-500:]


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_a_countdown_changed_on_one_server_is_used_by_every_publish_on_another_after_the_bound(database, tmp_path):
    from tests.conftest import connect_test_redis

    await (await connect_test_redis()).aclose()  # the two processes share Redis for their rate limits
    keys = key_ring(load_config(env={}))
    publishers = [await p.publisher(f"pub{i}", balance_fen=100_000) for i in range(PUBLISHES + 1)]
    tokens = [issue_token(keys, who)[0] for who in publishers]  # one each: the write limit is per user
    await operators.create_operator("boss", PASSWORD, operators.Role.OWNER)
    old = (await market_settings.current()).countdown_s
    port_a, port_b = free_port(), free_port()
    a, b = start_server(database, port_a, tmp_path), start_server(database, port_b, tmp_path)
    try:
        await asyncio.gather(wait_healthy(port_a, a), wait_healthy(port_b, b))
        limits = httpx.Limits(max_connections=PUBLISHES + 1)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_b}", timeout=20, limits=limits) as on_b:

            async def publish(n: int) -> int:
                r = await on_b.post("/api/v1/publisher/tasks", headers={"Authorization": f"Bearer {tokens[n]}"},
                                    json={"title": f"T{n}", "instructions": "x", "unit_price_fen": 500, "request_id": f"bound-{n}"})
                assert r.status_code == 201, r.text
                return r.json()["countdown_s"]

            assert await publish(0) == old  # B has read (and cached) the settings
            # Open the connections now, so that the publishes below reach B together (as under load).
            await asyncio.gather(*(on_b.get("/healthz") for _ in range(PUBLISHES)))
            await change_countdown_on(f"http://127.0.0.1:{port_a}", "boss", "4")
            changed_at = time.monotonic()
            await asyncio.sleep(market_settings.CACHE_TTL_S + 0.05 - (time.monotonic() - changed_at))
            # A slow moment of the database: B's next read of the settings waits 0.3 s. Requests
            # that arrive meanwhile must wait for it too, not be served the value from before.
            async with in_transaction():
                await db.execute("LOCK TABLE market_settings IN ACCESS EXCLUSIVE MODE")
                publishes = asyncio.gather(*(publish(n) for n in range(1, PUBLISHES + 1)))
                await asyncio.sleep(0.3)
            seen = await publishes
        assert seen == [240] * PUBLISHES, seen
        assert await Task.filter(countdown_s=240).count() == PUBLISHES
    finally:
        stop(a)
        stop(b)
