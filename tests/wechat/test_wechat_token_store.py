"""AccessTokenCache policy over both stores (Redis only when one answers on localhost)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import pytest_asyncio

from tests.conftest import connect_test_redis
from wechat.token_store import REFRESH_MARGIN_S, AccessTokenCache, MemoryTokenStore, RedisTokenStore


class FakeStableToken:
    """Counts fetches; hands out the same token until forced or told to rotate."""

    def __init__(self):
        self.calls: list[bool] = []
        self.current = "T1"

    async def __call__(self, force: bool):
        self.calls.append(force)
        await asyncio.sleep(0.01)  # give concurrent callers a chance to pile up
        if force:
            self.current = f"T{len(self.calls) + 1}"
        return self.current, 7200


@pytest_asyncio.fixture(params=["memory", "redis"])
async def store(request):
    if request.param == "memory":
        yield MemoryTokenStore()
        return
    r = await connect_test_redis()
    prefix = f"test:wechat:{uuid.uuid4().hex}:"
    yield RedisTokenStore(r, prefix=prefix)
    keys = await r.keys(prefix + "*")
    if keys:
        await r.delete(*keys)
    await r.aclose()


@pytest.mark.asyncio
async def test_fifty_callers_cause_one_fetch_and_the_token_is_kept_shorter_than_wechat_says(store):
    fetch = FakeStableToken()
    cache = AccessTokenCache(store, "stable:wx1", fetch)
    assert set(await asyncio.gather(*(cache.get() for _ in range(50)))) == {"T1"}
    assert fetch.calls == [False]
    if isinstance(store, MemoryTokenStore):
        left = store._data["stable:wx1"][1] - store._clock()
        assert 7200 - REFRESH_MARGIN_S - 5 < left <= 7200 - REFRESH_MARGIN_S


@pytest.mark.asyncio
async def test_a_rejected_token_is_replaced_once_for_all_who_saw_it(store):
    fetch = FakeStableToken()
    cache = AccessTokenCache(store, "stable:wx1", fetch)
    bad = await cache.get()
    new = await asyncio.gather(*(cache.refresh_after_rejection(bad) for _ in range(10)))
    # The stable endpoint returned the same (rejected) token, so exactly one forced refresh followed.
    assert fetch.calls == [False, False, True]
    assert set(new) == {fetch.current} != {"T1"} and await cache.get() == fetch.current


@pytest.mark.asyncio
async def test_delete_if_equal_leaves_a_newer_token_alone(store):
    await store.set("k", "new", 60)
    assert await store.delete_if_equal("k", "old") is False
    assert await store.get("k") == "new"
    assert await store.delete_if_equal("k", "new") is True
    assert await store.get("k") is None
