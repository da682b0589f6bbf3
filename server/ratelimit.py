"""Per-user (or per-address) rate limits with `429 Too Many Requests` and `Retry-After`.

A limit per address is keyed on `client_address(request)`: the client's own address as Sanic
reads it from the proxy headers it trusts (`PROXIES_COUNT` / `REAL_IP_HEADER`, env
SANIC_PROXIES_COUNT), else the socket peer. Behind a load balancer the peer is the balancer, so
keying on it would give the whole platform one allowance.

Fixed windows: at most `limit` hits per `window_s` seconds for a key. In-process by default; with
Redis configured the counters are shared by every process and node (a Lua INCR + EXPIRE; the hits
of one event-loop turn share one round trip), so a client cannot multiply its allowance by spreading
requests over workers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from models.errors import DomainError

log = logging.getLogger("market.ratelimit")


class RateLimited(DomainError):
    code, status = "rate_limited", 429
    message, message_zh = "Too many requests; try again in {retry_after_s} s.", "请求过于频繁，请 {retry_after_s} 秒后再试。"
    hint = "Wait the Retry-After header's seconds (details.retry_after_s), then retry."
    details_schema = {"retry_after_s": {"type": "integer", "minimum": 1}}

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(retry_after_s=retry_after_s)
        self.headers = {"Retry-After": str(retry_after_s)}


@dataclass(frozen=True)
class Rule:
    limit: int
    window_s: int


# The limits the API applies (per user unless said otherwise).
RULES = {
    "login": Rule(20, 60),  # per client address
    "refresh": Rule(10, 60),  # per session
    "take": Rule(10, 10),
    "submit": Rule(10, 60),
    "write": Rule(60, 60),  # other state-changing calls
    "upload": Rule(20, 60),
}


class MemoryLimiter:
    def __init__(self, max_keys: int = 100_000) -> None:
        self._hits: dict[str, tuple[int, int]] = {}
        self._max_keys = max_keys

    async def hit(self, key: str, rule: Rule) -> None:
        now = time.time()
        window = int(now // rule.window_s)
        if len(self._hits) >= self._max_keys:  # bounded memory: forget stale windows
            self._hits = {k: v for k, v in self._hits.items() if v[0] >= window}
        start, count = self._hits.get(key, (window, 0))
        if start != window:
            start, count = window, 0
        count += 1
        self._hits[key] = (start, count)
        if count > rule.limit:
            raise RateLimited(max(1, math.ceil((window + 1) * rule.window_s - now)))


# For each key: INCR its window's counter, and give the counter its expiry on the first hit.
_HIT = """
local counts = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('EXPIRE', key, ARGV[i]) end
  counts[i] = count
end
return counts
"""


class RedisLimiter:
    """Counters in Redis. The hits made during one turn of the event loop (under load, many
    requests at once) go to Redis together: one script call, one round trip, whatever their number.
    (The keys of one call must live on one Redis node: a single Redis, not a cluster.)

    Redis failing never fails a request: while it does, this process counts in memory (the same
    limits, per process instead of shared) and says so in the log, at most once a minute."""

    def __init__(self, redis, prefix: str = "ratelimit:") -> None:
        self._prefix = prefix  # "<redis_namespace>:ratelimit:" in the server (server/listeners.py)
        self._script = redis.register_script(_HIT)  # EVALSHA, reloaded by redis-py after a NOSCRIPT
        self._waiting: list[tuple[str, int, asyncio.Future]] = []
        self._fallback = MemoryLimiter()
        self._warned_at = -math.inf

    async def hit(self, key: str, rule: Rule) -> None:
        now = time.time()
        window = int(now // rule.window_s)
        try:
            count = await self._count(f"{self._prefix}{key}:{window}", rule.window_s + 1)
        except Exception:  # noqa: BLE001 - Redis unreachable or failing: count here meanwhile
            if time.monotonic() - self._warned_at >= 60:
                self._warned_at = time.monotonic()
                log.warning("rate limits: Redis failed; counting in this process until it answers", exc_info=True)
            await self._fallback.hit(key, rule)
            return
        if count > rule.limit:
            raise RateLimited(max(1, math.ceil((window + 1) * rule.window_s - now)))

    def _count(self, name: str, ttl_s: int) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((name, ttl_s, future))
        if len(self._waiting) == 1:
            loop.call_soon(self._send)  # after the other callbacks of this turn have added theirs
        return future

    def _send(self) -> None:
        batch, self._waiting = self._waiting, []
        asyncio.ensure_future(self._call(batch))

    async def _call(self, batch: list[tuple[str, int, asyncio.Future]]) -> None:
        try:
            counts = await self._script(keys=[name for name, _, _ in batch], args=[ttl for _, ttl, _ in batch])
        except BaseException as e:  # noqa: BLE001 (each waiting request gets the error, the batch task ends)
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(e if isinstance(e, Exception) else RuntimeError("rate limit call cancelled"))
            return
        for (_, _, future), count in zip(batch, counts):
            if not future.done():
                future.set_result(int(count))


def client_address(request) -> str:
    """The address a per-address limit counts: the forwarded client address when Sanic is told to
    trust the proxy headers, else the socket peer. Every limit or throttle per address uses this."""
    return request.remote_addr or request.ip or "unknown"


async def limit(request, rule_name: str, who: str) -> None:
    limiter = getattr(request.app.ctx, "ratelimiter", None)
    if limiter is not None:
        await limiter.hit(f"{rule_name}:{who}", RULES[rule_name])
