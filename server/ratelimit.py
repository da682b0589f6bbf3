"""Per-user (or per-IP) rate limits with `429 Too Many Requests` and `Retry-After`.

Fixed windows: at most `limit` hits per `window_s` seconds for a key. In-process by default; with
Redis configured the counters are shared by every process and node (INCR + EXPIRE, one round trip
per hit), so a client cannot multiply its allowance by spreading requests over workers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from models.errors import DomainError


class RateLimited(DomainError):
    code, status, message = "rate_limited", 429, "Too many requests; slow down."

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(retry_after_s=retry_after_s)
        self.headers = {"Retry-After": str(retry_after_s)}


@dataclass(frozen=True)
class Rule:
    limit: int
    window_s: int


# The limits the API applies (per user unless said otherwise).
RULES = {
    "login": Rule(20, 60),  # per client IP
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


class RedisLimiter:
    def __init__(self, redis) -> None:
        self._redis = redis

    async def hit(self, key: str, rule: Rule) -> None:
        now = time.time()
        window = int(now // rule.window_s)
        name = f"ratelimit:{key}:{window}"
        pipe = self._redis.pipeline(transaction=False)
        pipe.incr(name)
        pipe.expire(name, rule.window_s + 1)
        count, _ = await pipe.execute()
        if count > rule.limit:
            raise RateLimited(max(1, math.ceil((window + 1) * rule.window_s - now)))


async def limit(request, rule_name: str, who: str) -> None:
    limiter = getattr(request.app.ctx, "ratelimiter", None)
    if limiter is not None:
        await limiter.hit(f"{rule_name}:{who}", RULES[rule_name])
