"""Scheduler jobs that talk to WeChat.

- `drain_subscriptions` — the outbox's 'subscribe' rows → WeChat subscription messages
  (scheduler/outbox.py), every `outbox_interval_s`.
- `check_recharges` — pending recharges whose notification did not come: query, credit or close,
  every `recharge_check_interval_s`.
- `check_payouts` — approved withdrawals whose payout round is due (no bill yet, a bill WeChat has
  not finished, transient trouble to retry; held payouts wait for an operator), every
  `payout_check_interval_s`.

Each is safe beside other scheduler processes: the outbox claim uses SKIP LOCKED and conditional
updates; crediting and payout transitions are idempotent. The clients are built once per process;
tokens go through Redis when `redis_url` is set, so every process shares one access token.
In sandbox mode the Pay calls must be signed with the keys of the server that hosts the sandbox:
that holds for the embedded scheduler (it inherits them), not for a separately launched one.
"""

from __future__ import annotations

from typing import Any

from scheduler import outbox
from server.config import Config
from server.wechat_services import WeChatServices


async def jobs(config: Config, services: WeChatServices | None = None) -> list[tuple[Any, float, str]]:
    """(coroutine function, interval seconds, job id) for every WeChat job."""
    if services is None:
        redis = None
        if config.redis_url:
            import redis.asyncio as aioredis

            redis = aioredis.from_url(config.redis_url)
        services = await WeChatServices.start(config, redis)
    s = config.scheduler

    async def drain_subscriptions() -> int:
        total = 0
        for _ in range(10):  # bounded: at most 10 batches per tick
            n = await outbox.drain_subscriptions(services.mp, batch=s.outbox_batch, max_attempts=s.outbox_max_attempts)
            total += n
            if n < s.outbox_batch:
                break
        return total

    async def check_recharges() -> int:
        return await services.check_recharges()

    async def check_payouts() -> int:
        return await services.check_payouts()

    return [
        (drain_subscriptions, s.outbox_interval_s, "wechat_subscriptions"),
        (check_recharges, s.recharge_check_interval_s, "wechat_check_recharges"),
        (check_payouts, s.payout_check_interval_s, "wechat_check_payouts"),
    ]
