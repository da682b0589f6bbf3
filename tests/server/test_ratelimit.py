"""The rate limiters on their own: in memory, and shared through Redis (when one answers)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import pytest_asyncio

from server.ratelimit import MemoryLimiter, RateLimited, RedisLimiter, Rule
from tests.conftest import connect_test_redis


@pytest_asyncio.fixture(params=["memory", "redis"])
async def limiter(request):
    if request.param == "memory":
        yield MemoryLimiter(), None
        return
    r = await connect_test_redis()
    yield RedisLimiter(r), r
    keys = await r.keys("ratelimit:test-*")
    if keys:
        await r.delete(*keys)
    await r.aclose()


@pytest.mark.asyncio
async def test_the_hit_over_the_limit_is_refused_with_retry_after_and_others_keep_their_allowance(limiter):
    lim, _ = limiter
    rule = Rule(limit=5, window_s=3600)  # long: the hits never straddle a window boundary
    me, other = f"test-{uuid.uuid4().hex}", f"test-{uuid.uuid4().hex}"
    await asyncio.gather(*(lim.hit(me, rule) for _ in range(5)))  # concurrent hits all count
    with pytest.raises(RateLimited) as refused:
        await lim.hit(me, rule)
    assert 1 <= refused.value.details["retry_after_s"] <= 3600
    assert refused.value.headers == {"Retry-After": str(refused.value.details["retry_after_s"])}
    await lim.hit(other, rule)  # another key is untouched


@pytest.mark.asyncio
async def test_redis_counters_expire_after_their_window(limiter):
    lim, redis = limiter
    if redis is None:
        pytest.skip("Redis only")
    key = f"test-{uuid.uuid4().hex}"
    await lim.hit(key, Rule(limit=3, window_s=10))
    await lim.hit(key, Rule(limit=3, window_s=10))
    [name] = await redis.keys(f"ratelimit:{key}:*")
    assert int(await redis.get(name)) == 2
    assert 0 < await redis.ttl(name) <= 11  # set by the first hit, not pushed back by later ones


@pytest.mark.asyncio
async def test_redis_limiter_survives_a_flushed_script_cache(limiter):
    lim, redis = limiter
    if redis is None:
        pytest.skip("Redis only")
    key = f"test-{uuid.uuid4().hex}"
    await lim.hit(key, Rule(limit=3, window_s=10))
    await redis.script_flush()  # e.g. Redis restarted: EVALSHA answers NOSCRIPT
    await lim.hit(key, Rule(limit=3, window_s=10))
    [name] = await redis.keys(f"ratelimit:{key}:*")
    assert int(await redis.get(name)) == 2


@pytest.mark.asyncio
async def test_redis_hits_made_together_share_one_call_and_each_key_counts_its_own(limiter):
    lim, redis = limiter
    if redis is None:
        pytest.skip("Redis only")
    calls = []
    script = lim._script

    async def counted(**kw):
        calls.append(len(kw["keys"]))
        return await script(**kw)

    lim._script = counted
    keys = [f"test-{uuid.uuid4().hex}" for _ in range(20)]
    rule = Rule(limit=3, window_s=3600)
    await asyncio.gather(*(lim.hit(k, rule) for k in keys for _ in range(3)))
    assert calls == [60]  # one round trip for the sixty hits
    results = await asyncio.gather(*(lim.hit(k, rule) for k in keys), return_exceptions=True)
    assert all(isinstance(r, RateLimited) for r in results)  # the fourth hit of every key is refused
    assert calls == [60, 20]


@pytest.mark.asyncio
async def test_an_unreachable_redis_never_fails_a_request_the_process_counts_meanwhile(caplog):
    """Redis down: every waiting hit is answered (no error reaches the request, so no 500), the
    limits still hold in this process, and the log says it once, not once per request."""
    redis_asyncio = pytest.importorskip("redis.asyncio")

    r = redis_asyncio.from_url("redis://127.0.0.1:1/0")  # nothing listens there
    lim = RedisLimiter(r)
    rule = Rule(3, 3600)
    results = await asyncio.gather(*(lim.hit(f"test-{i}", rule) for i in range(5)), return_exceptions=True)
    assert results == [None] * 5, results
    await asyncio.gather(*(lim.hit("test-me", rule) for _ in range(3)))
    with pytest.raises(RateLimited):
        await lim.hit("test-me", rule)
    warnings = [rec for rec in caplog.records if rec.name == "market.ratelimit"]
    assert len(warnings) == 1 and "counting in this process" in warnings[0].getMessage()
    await r.aclose()
