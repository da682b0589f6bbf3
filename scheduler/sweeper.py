"""Sweeps: apply the timers whose deadlines have passed (SPEC §3 timers; STYLE habit 7).

Deadlines live on the rows (`orders.due_at`, `tasks.take_deadline_at`); these functions find the
due rows and apply each row's timer event through the same transition code a person's action uses,
so a sweep racing a person (or another sweeper) can only lose quietly.

1. Each due row is claimed and settled in its own short transaction: `SELECT ... ORDER BY deadline
   LIMIT 1 FOR UPDATE SKIP LOCKED` on PostgreSQL, so several scheduler processes take disjoint rows
   and never wait for each other. A transaction never holds more than one row's locks, so a sweep
   cannot deadlock with people or with another sweeper (a batch-wide transaction could: its
   transitions lock task and account rows in different orders one after the other).
2. A row whose transition raises unexpectedly is rolled back alone and postponed with exponential
   backoff (orders: `due_at` moves out and `sweep_failures` counts; tasks: an in-process skip list,
   since their deadline column is the one people see), and the failure is logged: one poisoned row
   can never stop the sweep or make it spin.
3. A sweep stopped half-way (deploy, crash, cancellation) leaves only whole transitions behind:
   the row being settled rolls back and is simply due again.

Each function settles at most `batch` rows and returns how many it claimed, so a caller can loop
while batches come back full; a row whose timer leads straight into another overdue timer is
claimed again in the same sweep.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from tortoise.transactions import in_transaction

from models import clock, db
from models.errors import DomainError
from models.orders import Order, apply_timer
from models.tasks import expire_due

log = logging.getLogger("market.sweeper")

MAX_BACKOFF_S = 300
# Tasks whose expiry failed: id -> (failures, monotonic time before which they are not retried).
_task_backoff: dict[int, tuple[int, float]] = {}


def _backoff_s(failures: int) -> int:
    return min(MAX_BACKOFF_S, 2**failures)


async def _claim_order() -> Order | None:
    query = Order.filter(due_at__lte=clock.now()).order_by("due_at").limit(1)
    if db.is_postgres():
        query = query.select_for_update(skip_locked=True)
    return await query.first()


async def sweep_orders(batch: int = 100) -> int:
    """Apply due order timers (countdown end, review timeout, appeal timeout), one row per transaction."""
    claimed = 0
    while claimed < batch:
        async with in_transaction():
            order = await _claim_order()
            if order is None:
                break
            claimed += 1
            try:
                async with in_transaction():  # a savepoint: a failure undoes this transition only
                    await apply_timer(order)
            except DomainError:
                pass  # somebody got there first; the row is no longer due
            except Exception:
                await _postpone_order(order)
    return claimed


async def _postpone_order(order: Order) -> None:
    failures = order.sweep_failures + 1
    delay = _backoff_s(failures)
    log.exception("order %s: timer failed (%s times); retrying in %s s", order.id, failures, delay)
    await Order.filter(id=order.id).update(due_at=clock.now() + dt.timedelta(seconds=delay), sweep_failures=failures)


async def _claim_task() -> int | None:
    skip = [tid for tid, (_, until) in _task_backoff.items() if until > time.monotonic()]
    sql = "SELECT id FROM tasks WHERE status = 'open' AND take_deadline_at <= $1"
    if skip:
        sql += " AND id NOT IN (" + ", ".join(str(int(t)) for t in skip[:1000]) + ")"
    sql += " ORDER BY take_deadline_at LIMIT 1"
    if db.is_postgres():
        sql += " FOR UPDATE SKIP LOCKED"
    row = await db.fetch_one(sql, clock.now())
    return row["id"] if row else None


async def sweep_tasks(batch: int = 100) -> int:
    """Expire open tasks whose take window has ended, refunding their untaken slots."""
    claimed = 0
    while claimed < batch:
        async with in_transaction():
            task_id = await _claim_task()
            if task_id is None:
                break
            claimed += 1
            try:
                async with in_transaction():
                    await expire_due(task_id)
                _task_backoff.pop(task_id, None)
            except Exception:
                failures = _task_backoff.get(task_id, (0, 0.0))[0] + 1
                delay = _backoff_s(failures)
                _task_backoff[task_id] = (failures, time.monotonic() + delay)
                log.exception("task %s: expiry failed (%s times); retrying in %s s", task_id, failures, delay)
    return claimed


async def sweep_all(batch: int = 100, *, max_batches: int = 50) -> int:
    """Run both sweeps until nothing is due (or `max_batches` batches each); returns rows claimed."""
    total = 0
    for sweep in (sweep_tasks, sweep_orders):
        for _ in range(max_batches):
            n = await sweep(batch)
            total += n
            if n < batch:
                break
    return total
