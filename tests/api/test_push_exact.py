"""The push path is exact (issue 9), tried from outside: two server processes on one PostgreSQL and
one Redis, clients on both.

- a client that resumes after 1 000, 10 000 and 50 000 missed events gets each exactly once, in seq
  order, and then the live ones;
- a relay that dies between the stamp and the publish, or between the publish and the mark, loses
  no event for any socket on any process, and repeats none on a socket;
- a server process killed (SIGKILL) while it writes events loses none for the sockets of the other;
- an event that commits after a newer one (out of id order) reaches a client that reconnected at
  that moment.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid

import httpx
import pytest
import websockets

from miniprogram_api.auth import issue_token
from models import db
from server import push
from server.config import default_redis_namespace, key_ring, load_config
from tests import personas as p
from tests.api.conftest import free_port
from tests.api.test_push_across_processes import REDIS_URL, start_server, stop, wait_healthy

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]


async def _redis_or_skip():
    redis = pytest.importorskip("redis.asyncio")
    r = redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await r.ping()
    except Exception:  # noqa: BLE001
        await r.aclose()
        pytest.skip("needs Redis at TEST_REDIS_URL")
    return r


class Servers:
    def __init__(self, database: str, tmp_path) -> None:
        self.database, self.tmp_path = database, tmp_path
        self.ports = [free_port(), free_port()]
        self.procs = [start_server(database, port, tmp_path) for port in self.ports]

    async def __aenter__(self) -> "Servers":
        await asyncio.gather(*(wait_healthy(port, proc) for port, proc in zip(self.ports, self.procs)))
        return self

    async def __aexit__(self, *exc) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                stop(proc)


class Client:
    """A socket that records every event it receives."""

    def __init__(self, port: int, token: str, after_seq: int | None = None) -> None:
        self.url = f"ws://127.0.0.1:{port}/api/v1/ws?token={token}" + (f"&after_seq={after_seq}" if after_seq is not None else "")
        self.events: list[dict] = []
        self.controls: list[dict] = []
        self.welcome: dict | None = None

    async def __aenter__(self) -> "Client":
        self.ws = await websockets.connect(self.url, max_queue=None)
        self.welcome = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert self.welcome["type"] == "welcome"
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        with_seq = self.events
        async for raw in self.ws:
            message = json.loads(raw)
            (with_seq if "seq" in message else self.controls).append(message)

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        await self.ws.close()

    async def until(self, predicate, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, f"timed out with {len(self.events)} events, controls {self.controls[-3:]}"
            await asyncio.sleep(0.05)


async def expected_for(user_id: int, after_seq: int) -> list[int]:
    """The ids of the events this worker is entitled to after `after_seq`, in seq order."""
    rows = await db.fetch("SELECT id FROM outbox WHERE seq > $1 AND (user_id = $2 OR user_id IS NULL) ORDER BY seq",
                          after_seq, user_id)
    return [r["id"] for r in rows]


async def insert_events(n: int, users: list[int | None]) -> None:
    """n committed push rows (as transitions write them), spread over these audiences."""
    cases = " ".join(f"WHEN {i} THEN {'NULL' if u is None else int(u)}" for i, u in enumerate(users))
    await db.execute(
        "INSERT INTO outbox (channel, event, user_id, payload, status, attempts, next_attempt_at, created_at) "
        f"SELECT 'push', 'test.missed', (CASE g % {len(users)} {cases} END)::bigint, json_build_object('n', g), 'pending', 0, now(), now() "
        "FROM generate_series(1, $1) AS g", n)


async def stamped_up_to(n: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (await push.last_seq()) < n or await db.fetch_one(
            "SELECT 1 AS x FROM outbox WHERE channel = 'push' AND seq IS NULL LIMIT 1"):
        assert time.monotonic() < deadline, "the relays did not stamp the rows"
        await asyncio.sleep(0.1)


def assert_exactly_once_in_order(client: Client, expected: list[int]) -> None:
    ids = [e["id"] for e in client.events]
    seqs = [e["seq"] for e in client.events]
    assert len(ids) == len(set(ids)), "an event came twice on one socket"
    assert seqs == sorted(seqs), "seqs went backwards on a socket"
    assert ids == expected


async def test_a_client_resumes_after_1000_10000_and_50000_missed_events_exactly_once(database, tmp_path):
    r = await _redis_or_skip()
    await r.aclose()
    keys = key_ring(load_config(env={}))
    alice, bob = await p.publisher("alice"), await p.worker("bob")
    token = issue_token(keys, bob)[0]
    async with Servers(database, tmp_path) as servers:
        async with Client(servers.ports[0], token) as first:
            position = first.welcome["last_seq"]
        for missed in (1_000, 10_000, 50_000):
            await insert_events(missed, [bob.id, alice.id, None, bob.id])  # 3 of 4 are bob's to see
            await stamped_up_to(position + missed)
            expected_missed = await expected_for(bob.id, position)
            assert len(expected_missed) == missed * 3 // 4
            async with Client(servers.ports[1], token, after_seq=position) as back:
                await insert_events(200, [bob.id, None])  # live ones while the replay runs
                await stamped_up_to(position + missed + 200)
                expected = await expected_for(bob.id, position)
                await back.until(lambda: len(back.events) >= len(expected), timeout_s=120)
                await asyncio.sleep(0.3)  # nothing more may come
                assert_exactly_once_in_order(back, expected)
                resumed = [c for c in back.controls if c["type"] == "resumed"]
                assert len(resumed) == 1 and not [c for c in back.controls if c["type"] == "replay_truncated"]
                position = back.events[-1]["seq"]


async def _clients_on_both(servers: Servers, token: str):
    a = Client(servers.ports[0], token)
    b = Client(servers.ports[1], token)
    await a.__aenter__()
    await b.__aenter__()
    return a, b


async def test_a_relay_dying_after_the_stamp_or_after_the_publish_loses_and_repeats_nothing(database, tmp_path):
    """The test process plays a relay that dies at each point: it stamps rows and never publishes
    (died between commit and publish), then stamps and publishes rows and never marks them (died
    between publish and mark). Sockets on both server processes get every event once."""
    from tortoise.transactions import in_transaction

    r = await _redis_or_skip()
    keys = key_ring(load_config(env={}))
    bob = await p.worker("bob")
    token = issue_token(keys, bob)[0]
    channel = push.channel_name(default_redis_namespace(database))
    async with Servers(database, tmp_path) as servers:
        a, b = await _clients_on_both(servers, token)
        try:
            start = a.welcome["last_seq"]
            # Committed and stamped in one go (so the servers' relays, scanning every 0.2 s, cannot
            # take the rows first), then nothing: the relay died before publishing.
            async with in_transaction():
                await insert_events(20, [bob.id, None])
                died_before_publish = await push.stamp(100)
            assert len(died_before_publish) == 20
            async with in_transaction():
                await insert_events(20, [bob.id, None])
                died_after_publish = await push.stamp(100)
            assert len(died_after_publish) == 20
            await r.publish(channel, push.wire_message(died_after_publish))  # … and before marking
            expected = await expected_for(bob.id, start)
            assert len(expected) == 40
            for client in (a, b):
                await client.until(lambda c=client: len(c.events) >= 40, timeout_s=15)
            # The leases run out and the surviving relays republish both groups: hubs drop them.
            deadline = time.monotonic() + 15
            while await db.fetch_one("SELECT 1 AS x FROM outbox WHERE channel = 'push' AND status = 'pending' LIMIT 1"):
                assert time.monotonic() < deadline, "the stamped rows were never republished and marked"
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            for client in (a, b):
                assert_exactly_once_in_order(client, expected)
        finally:
            await a.__aexit__()
            await b.__aexit__()
    await r.aclose()


async def test_a_server_killed_while_writing_events_loses_none_for_the_sockets_of_the_other(database, tmp_path):
    r = await _redis_or_skip()
    await r.aclose()
    keys = key_ring(load_config(env={}))
    alice, bob = await p.publisher("alice", balance_fen=10_000_000), await p.worker("bob")
    async with Servers(database, tmp_path) as servers:
        async with Client(servers.ports[1], issue_token(keys, bob)[0]) as survivor:
            start = survivor.welcome["last_seq"]
            headers = {"Authorization": f"Bearer {issue_token(keys, alice)[0]}"}

            async def publish_forever(c: httpx.AsyncClient) -> None:
                while True:
                    await c.post("/api/v1/publisher/tasks", json={"title": "Kill", "instructions": "x", "unit_price_fen": 500,
                                                                  "request_id": uuid.uuid4().hex})

            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{servers.ports[0]}", headers=headers) as c:
                writers = [asyncio.create_task(publish_forever(c)) for _ in range(8)]
                await asyncio.sleep(1.5)
                os.killpg(servers.procs[0].pid, signal.SIGKILL)  # mid-write, mid-stamp, mid-publish: wherever it is
                results = await asyncio.gather(*writers, return_exceptions=True)
                assert all(isinstance(x, httpx.HTTPError) for x in results)
            await stamped_up_to(0)  # the survivor's relay stamps whatever the dead one left
            expected = await expected_for(bob.id, start)
            assert len(expected) >= 5
            await survivor.until(lambda: len(survivor.events) >= len(expected), timeout_s=20)
            await asyncio.sleep(LEASE_WAIT_S)  # republishes after the dead relay's leases: dropped
            assert_exactly_once_in_order(survivor, expected)


LEASE_WAIT_S = push.LEASE_S + 1.0


async def test_an_event_committing_out_of_id_order_reaches_a_client_that_reconnected_at_that_moment(database, tmp_path):
    """Transaction T inserts first (smaller id) and commits last. A client sees the newer event,
    disconnects, and resumes from its seq just before T commits: it gets T's event, live and on
    the resume, once."""
    from tortoise.transactions import in_transaction

    r = await _redis_or_skip()
    await r.aclose()
    keys = key_ring(load_config(env={}))
    bob = await p.worker("bob")
    token = issue_token(keys, bob)[0]
    async with Servers(database, tmp_path) as servers:
        async with Client(servers.ports[0], token) as watcher:
            start = watcher.welcome["last_seq"]
            committed = asyncio.Event()
            release = asyncio.Event()

            async def slow_transaction() -> None:
                async with in_transaction():
                    await insert_events(1, [bob.id])
                    committed.set()  # inserted (its id is taken), not yet committed
                    await release.wait()

            slow = asyncio.create_task(slow_transaction())
            await committed.wait()
            await insert_events(1, [None])  # a larger id, committed first
            await watcher.until(lambda: len(watcher.events) == 1)
            seen = watcher.events[-1]["seq"]
        async with Client(servers.ports[1], token, after_seq=seen) as back:
            release.set()
            await slow
            await back.until(lambda: len(back.events) == 1)
            await asyncio.sleep(0.5)
            late = await expected_for(bob.id, seen)
            assert len(late) == 1 and [e["id"] for e in back.events] == late
            ids = await db.fetch("SELECT id, seq FROM outbox WHERE seq > $1 ORDER BY seq", start)
            assert ids[0]["id"] > ids[1]["id"]  # the log holds them in commit order, not id order
