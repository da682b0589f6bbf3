"""Deployments sharing one Redis see nothing of each other (issue 9, item 4): every key and channel
is under `redis_namespace`, by default derived from the deployment's database."""

from __future__ import annotations

import asyncio
import json

import pytest

from server import push
from server.config import ConfigError, default_redis_namespace, load_config
from server.ratelimit import RedisLimiter, Rule
from tests.conftest import connect_test_redis


def test_the_default_namespace_names_the_database_not_its_credentials():
    a = default_redis_namespace("postgres://market:pw1@db.internal:5432/market")
    assert a == default_redis_namespace("postgres://other:pw2@DB.internal/market?maxsize=20")  # same database
    assert a != default_redis_namespace("postgres://market:pw1@db.internal:5432/market_staging")
    assert a != default_redis_namespace("postgres://market:pw1@db2.internal:5432/market")
    assert default_redis_namespace("sqlite://var/a.sqlite3") != default_redis_namespace("sqlite://var/b.sqlite3")
    assert a.startswith("market:") and "pw1" not in a


def test_an_explicit_namespace_wins_and_a_bad_one_is_refused():
    assert load_config(env={"MARKET__REDIS_NAMESPACE": "shop-a"}).redis_namespace == "shop-a"
    assert load_config(env={"DATABASE_URL": "postgres://u@h/x"}).redis_namespace == default_redis_namespace("postgres://u@h/x")
    with pytest.raises(ConfigError, match="redis_namespace"):
        load_config(env={"MARKET__REDIS_NAMESPACE": "two words"})


class _Sink:
    def __init__(self, user_id: int) -> None:
        self.user_id, self.wants_hall, self.position, self.got = user_id, True, 0, []

    def live(self, seq: int, text: str, frame: bytes | None = None) -> None:
        self.got.append(json.loads(text))


@pytest.mark.asyncio
async def test_two_deployments_on_one_redis_see_nothing_of_each_other(database):
    """User 7 of deployment A and user 7 of deployment B: each hub hears only its own deployment's
    channel; rate-limit counters are apart too."""
    redis = await connect_test_redis()
    ns_a = default_redis_namespace("postgres://db-a/market")
    ns_b = default_redis_namespace("postgres://db-b/market")
    hubs, buses = [], []
    try:
        for ns in (ns_a, ns_b):
            hub = push.Hub(tick_s=60)
            await hub.start()
            hub.add(_Sink(7))
            bus = push.RedisBus(hub, redis, push.channel_name(ns))
            await bus.start()
            hubs.append(hub)
            buses.append(bus)
        seq = hubs[0].position + 1
        event = {"id": 1, "seq": seq, "wire": json.dumps({"id": 1, "seq": seq, "type": "wallet.changed", "user_id": 7,
                                                          "data": {"amount_fen": 100}, "at": "2026-11-30T00:00:00Z"})}
        await buses[0].publish([event])  # deployment A's private event for its user 7
        for _ in range(100):
            if hubs[0].by_user[7].copy().pop().got:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        (a_sink,), (b_sink,) = hubs[0].by_user[7], hubs[1].by_user[7]
        assert [m["data"] for m in a_sink.got] == [{"amount_fen": 100}]
        assert b_sink.got == []  # deployment B's user 7 got nothing

        rule = Rule(limit=1, window_s=60)
        await RedisLimiter(redis, prefix=f"{ns_a}:ratelimit:").hit("login:1.2.3.4", rule)
        await RedisLimiter(redis, prefix=f"{ns_b}:ratelimit:").hit("login:1.2.3.4", rule)  # not A's counter
    finally:
        for bus in buses:
            await bus.stop()
        for hub in hubs:
            await hub.stop()
        keys = [k async for k in redis.scan_iter(match="market:*:ratelimit:login:1.2.3.4:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


@pytest.mark.asyncio
async def test_a_sold_out_mark_of_one_deployment_turns_away_nothing_of_another():
    """Task 5 of deployment A sold out; task 5 of deployment B still takes (server/soldout.py)."""
    from server.soldout import SoldOutMarks

    redis = await connect_test_redis()
    try:
        a = SoldOutMarks(redis, default_redis_namespace("postgres://db-a/market"))
        b = SoldOutMarks(redis, default_redis_namespace("postgres://db-b/market"))
        await a.mark(5)
        assert await a.is_marked(5) is True
        assert await b.is_marked(5) is False
        await b.mark(5)
        await a.clear(5)
        assert (await a.is_marked(5), await b.is_marked(5)) == (False, True)
        await b.clear(5)
    finally:
        await redis.aclose()
