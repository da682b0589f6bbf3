"""Redis failing never fails a request (the rate limiter answered 500 when Redis did not answer).
A server started with its Redis whose Redis then stops answering: people still log in, publish, take
and submit — each path that counts a rate limit or asks the sold-out mark — and the limits still
hold, counted in the process meanwhile."""

from __future__ import annotations

import uuid

import pytest

from tests.api import _support as S
from tests.api.conftest import start_live, stop_live

pytestmark = pytest.mark.asyncio


async def test_with_redis_unreachable_every_rate_limited_path_still_answers(database, tmp_path):
    from redis import asyncio as redis_asyncio

    from tests.conftest import TEST_REDIS_URL, connect_test_redis

    await (await connect_test_redis()).aclose()  # skips without a Redis to start with
    live, server = await start_live(database, tmp_path, redis_url=TEST_REDIS_URL, redis_namespace=f"down{uuid.uuid4().hex[:6]}")
    dead = redis_asyncio.from_url("redis://127.0.0.1:1/0")  # nothing listens there: Redis "goes down"
    live.app.ctx.ratelimiter._script = dead.register_script("return {}")
    live.app.ctx.soldout._redis = dead
    try:
        alice = await live.login("publisher", "alice")
        bob = await live.login("worker", "bob")
        await live.recharge(alice, 10_000)
        async with live.client(alice.token) as a, live.client(bob.token) as b:
            r = await a.post("/api/v1/publisher/tasks", json={"title": "Scan", "instructions": "Scan the code", "unit_price_fen": 1_000,
                                                              "quantity": 1, "request_id": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
            task = r.json()
            r = await b.post(f"/api/v1/worker/tasks/{task['id']}/take")
            assert r.status_code == 201, r.text
            r = await b.post(f"/api/v1/worker/orders/{r.json()['id']}/submit", json={"proof_text": "done"})
            assert r.status_code == 200, r.text
            # The task is full: the next taker loses with its code (no mark in Redis to ask).
            carl = await live.login("worker", "carl")
            async with live.client(carl.token) as c:
                S.assert_error(await c.post(f"/api/v1/worker/tasks/{task['id']}/take"), 409, "slot_taken")
                # The take limit (10 per 10 s) still holds, in this process.
                codes = [(await c.post(f"/api/v1/worker/tasks/{task['id']}/take")).status_code for _ in range(12)]
        assert 429 in codes and set(codes) <= {409, 429}, codes
    finally:
        await stop_live(server)
        await dead.aclose()
