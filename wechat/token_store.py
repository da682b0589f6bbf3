"""Where access tokens live, shared by every process that calls WeChat.

WeChat's stable token is per AppID and rate-limited (and force refreshes are limited to 20 a day),
so all processes and nodes must share one cached token and only one of them may fetch at a time.
``TokenStore`` is that seam: ``MemoryTokenStore`` for the single-process default and tests,
``RedisTokenStore`` for production. ``AccessTokenCache`` puts the policy on top (expire early,
single fetcher, refresh once on rejection).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import AsyncIterator, Awaitable, Callable, Protocol

REFRESH_MARGIN_S = 300  # treat a token as expired 5 min early (WeChat overlaps old/new for 5 min)
LOCK_TIMEOUT_S = 15  # a fetcher that dies releases the lock after this long


class TokenStore(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl_s: int) -> None: ...

    async def delete_if_equal(self, key: str, value: str) -> bool:
        """Drop the token only if it is still ``value`` (so N callers seeing one bad token cause one refresh)."""

    def lock(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Mutual exclusion for fetching the token named ``key`` (across processes for Redis)."""


class MemoryTokenStore:
    """Per-process store: fine for one process, tests and the sandbox."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._data: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._clock = clock

    async def get(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None or item[1] <= self._clock():
            return None
        return item[0]

    async def set(self, key: str, value: str, ttl_s: int) -> None:
        self._data[key] = (value, self._clock() + ttl_s)

    async def delete_if_equal(self, key: str, value: str) -> bool:
        if key in self._data and self._data[key][0] == value:
            del self._data[key]
            return True
        return False

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        async with self._locks.setdefault(key, asyncio.Lock()):
            yield


_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end
"""


class RedisTokenStore:
    """Shared store on ``redis.asyncio``: the key expires by itself; fetching is guarded by a Redis lock
    (plus a local asyncio lock so one process does not queue dozens of waiters on Redis)."""

    def __init__(self, redis, prefix: str = "wechat:token:"):
        self._r = redis
        self._prefix = prefix
        self._local = MemoryTokenStore()

    async def get(self, key: str) -> str | None:
        v = await self._r.get(self._prefix + key)
        return v.decode() if isinstance(v, bytes) else v

    async def set(self, key: str, value: str, ttl_s: int) -> None:
        await self._r.set(self._prefix + key, value, ex=max(1, int(ttl_s)))

    async def delete_if_equal(self, key: str, value: str) -> bool:
        return bool(await self._r.eval(_DELETE_IF_EQUAL, 1, self._prefix + key, value))

    @contextlib.asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        async with self._local.lock(key):
            async with self._r.lock(self._prefix + key + ":lock", timeout=LOCK_TIMEOUT_S,
                                    blocking_timeout=LOCK_TIMEOUT_S):
                yield


class AccessTokenCache:
    """Get-or-fetch with one fetcher at a time.

    ``fetch(force_refresh)`` returns ``(token, expires_in_s)``. Tokens are stored for
    ``expires_in - REFRESH_MARGIN_S`` so nobody uses one in its last minutes.
    """

    def __init__(self, store: TokenStore, key: str, fetch: Callable[[bool], Awaitable[tuple[str, int]]]):
        self._store = store
        self._key = key
        self._fetch = fetch

    async def get(self) -> str:
        token = await self._store.get(self._key)
        if token:
            return token
        async with self._store.lock(self._key):
            token = await self._store.get(self._key)  # someone else may have fetched while we waited
            if token:
                return token
            return await self._fetch_and_store(force=False)

    async def refresh_after_rejection(self, bad_token: str) -> str:
        """WeChat said ``bad_token`` is invalid/expired: get a different one, fetching at most once
        across all the callers that saw the same rejection."""
        await self._store.delete_if_equal(self._key, bad_token)
        async with self._store.lock(self._key):
            token = await self._store.get(self._key)
            if token and token != bad_token:
                return token
            token = await self._fetch_and_store(force=False)
            if token == bad_token:
                # The stable token endpoint still hands out the rejected token: force a new one
                # (limited by WeChat to 20 a day, hence only here).
                token = await self._fetch_and_store(force=True)
            return token

    async def _fetch_and_store(self, force: bool) -> str:
        token, expires_in = await self._fetch(force)
        await self._store.set(self._key, token, max(30, int(expires_in) - REFRESH_MARGIN_S))
        return token
