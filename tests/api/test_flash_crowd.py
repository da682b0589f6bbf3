"""A flash crowd: many workers clicking one task's last slots through two server processes
(issue 12 item 5). Exactly one order per slot; every loser is answered 409 with a code; once the
slots are gone the losers are answered from the sold-out mark in Redis, without PostgreSQL; a slot
that comes back clears the mark.

Runs on PostgreSQL with Redis (two real `python -m server` processes sharing both).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from miniprogram_api.auth import issue_token
from models import db, tasks
from models.orders import Order
from models.tasks import Task, TaskStatus
from server import soldout
from server.config import key_ring, load_config
from tests import personas as p
from tests.api.conftest import free_port
from tests.api.test_push_across_processes import start_server, stop, wait_healthy

SLOTS, CROWD = 20, 300


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_a_flash_crowd_on_two_servers_makes_exactly_one_order_per_slot_and_losers_never_reach_the_database(database, tmp_path):
    from tests.conftest import connect_test_redis

    redis = await connect_test_redis()
    keys = key_ring(load_config(env={}))
    alice = await p.publisher("alice", balance_fen=SLOTS * 1_100 + 1_100)
    task = await tasks.publish(alice.id, title="Flash", instructions="Scan the code", unit_price_fen=1_000, quantity=SLOTS)
    crowd = [await p.worker(f"w{i}") for i in range(CROWD + 10)]
    tokens = [issue_token(keys, w)[0] for w in crowd]
    namespace = load_config(env={"DATABASE_URL": database}).redis_namespace  # the servers' own
    mark_key = soldout.KEY.format(namespace=namespace, task_id=task.id)
    ports = [free_port(), free_port()]
    servers = [start_server(database, port, tmp_path) for port in ports]
    try:
        await asyncio.gather(*(wait_healthy(port, s) for port, s in zip(ports, servers)))
        limits = httpx.Limits(max_connections=64)
        clients = [httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits) for port in ports]
        try:
            await asyncio.gather(*(c.get("/healthz") for c in clients for _ in range(32)))  # open the connections

            async def take(n: int) -> httpx.Response:
                return await clients[n % 2].post(f"/api/v1/worker/tasks/{task.id}/take", headers={"Authorization": f"Bearer {tokens[n]}"})

            answers = await asyncio.gather(*(take(n) for n in range(CROWD)))

            statuses = Counter(r.status_code for r in answers)
            assert statuses == Counter({201: SLOTS, 409: CROWD - SLOTS}), statuses
            codes = Counter(r.json()["error"]["code"] for r in answers if r.status_code == 409)
            # slot_taken: the task was full; slots_being_taken: as many takes as slots were ahead (server/takelanes.py).
            assert set(codes) <= {"slot_taken", "slots_being_taken"} and codes["slot_taken"], codes
            assert all(r.headers.get("retry-after") == "1" for r in answers if r.status_code == 409
                       and r.json()["error"]["code"] == "slots_being_taken")
            assert await Order.filter(task_id=task.id).count() == SLOTS
            assert (await Task.get(id=task.id)).status == TaskStatus.FULL
            assert await redis.get(mark_key) == b"1"  # set by a take (winner or refused loser)

            # Once sold out, losers are answered without PostgreSQL: the task's row is locked by
            # another transaction, yet each server answers 409 at once.
            await redis.set(mark_key, "1", ex=soldout.TTL_S)
            from tortoise.transactions import in_transaction

            async with in_transaction():
                await db.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
                late = await asyncio.wait_for(asyncio.gather(*(take(n) for n in range(CROWD, CROWD + 4))), 5)
            assert [r.status_code for r in late] == [409] * 4
            assert {r.json()["error"]["code"] for r in late} == {"slot_taken"}

            # A slot that comes back clears the mark: the next worker gets it.
            winner = next(r.json() for r in answers if r.status_code == 201)
            winner_n = next(n for n, r in enumerate(answers) if r.status_code == 201)
            r = await clients[0].post(f"/api/v1/worker/orders/{winner['id']}/abandon",
                                      headers={"Authorization": f"Bearer {tokens[winner_n]}"})
            assert r.status_code == 200, r.text
            assert await redis.get(mark_key) is None
            r = await take(CROWD + 5)
            assert r.status_code == 201, r.text
        finally:
            for c in clients:
                await c.aclose()
    finally:
        for s in servers:
            stop(s)
        await redis.aclose()
    await p.assert_books_clean()
