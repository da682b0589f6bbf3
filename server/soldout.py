"""The sold-out mark: once a task's last slot is taken, losers are answered without PostgreSQL.

A flash crowd — thousands of workers clicking one task's last slots (issue 12 item 5) — would
otherwise send every click to PostgreSQL, where all but a few lose on the task row. The mark is a
Redis key shared by every server process (`<redis_namespace>:soldout:task:<id>`, value "1", TTL
`TTL_S`; under the deployment's namespace like every key, so deployments sharing a Redis never
turn away each other's takes):

1. Before the take's database call, the handler asks whether the task is marked; a marked task is
   answered `slot_taken` (409) at once. The asks of one event-loop turn go to Redis as one MGET.
2. The mark is set by the take that emptied the task (when the take's result says how many slots
   are left: SQLite's steps do, and PostgreSQL's `market_take` once it returns `slots_untaken`) and
   by any take PostgreSQL refused because the task was full (`SlotTaken.sold_out`), so a crowd
   reaches the database at most once per TTL after the last slot went.
3. The mark is cleared when a slot comes back (an order abandoned within the take window). A
   clear that is lost (Redis down, or a late set racing it) is bounded by the short TTL: for at most
   `TTL_S` seconds a slot that came back is refused as taken, never the other way round — the
   database decides every winner, the mark only ever turns away clicks early.

Redis errors never fail a take: the check then says "not marked" and the database answers.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("market.soldout")

KEY = "{namespace}:soldout:task:{task_id}"
TTL_S = 3


class SoldOutMarks:
    def __init__(self, redis, namespace: str) -> None:
        self._redis = redis
        self._namespace = namespace
        self._waiting: list[tuple[str, asyncio.Future]] = []
        self._marking: set[int] = set()  # tasks whose mark is being set

    def key(self, task_id: int) -> str:
        return KEY.format(namespace=self._namespace, task_id=int(task_id))

    def is_marked(self, task_id: int) -> asyncio.Future:
        """True if the task's last slot is gone (as far as Redis knows)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((self.key(task_id), future))
        if len(self._waiting) == 1:
            loop.call_soon(self._send)  # after the other requests of this turn have asked too
        return future

    def _send(self) -> None:
        batch, self._waiting = self._waiting, []
        asyncio.ensure_future(self._ask(batch))

    async def _ask(self, batch: list[tuple[str, asyncio.Future]]) -> None:
        try:
            values = await self._redis.mget([key for key, _ in batch])
        except Exception:  # noqa: BLE001 - the database decides without the mark
            log.warning("sold-out marks unavailable; asking the database", exc_info=True)
            values = [None] * len(batch)
        for (_, future), value in zip(batch, values):
            if not future.done():
                future.set_result(value is not None)

    async def mark(self, task_id: int) -> None:
        # One SET per task at a time: a batch of takes (server/takelanes.py) can learn "full" for
        # dozens of requests at once, and a SET each would crowd the Redis connection pool.
        if task_id in self._marking:
            return
        self._marking.add(task_id)
        try:
            await self._redis.set(self.key(task_id), "1", ex=TTL_S)
        except Exception:  # noqa: BLE001
            log.warning("could not mark task %s sold out", task_id, exc_info=True)
        finally:
            self._marking.discard(task_id)

    async def clear(self, task_id: int) -> None:
        try:
            await self._redis.delete(self.key(task_id))
        except Exception:  # noqa: BLE001 - bounded by the TTL
            log.warning("could not clear the sold-out mark of task %s", task_id, exc_info=True)


def marks_of(app) -> SoldOutMarks | None:
    """The worker process's marks (None without Redis: one process, the database answers); made
    with the process's other Redis services (server/listeners.py)."""
    return getattr(app.ctx, "soldout", None)
