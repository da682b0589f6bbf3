"""Sweeps: apply the timers whose deadlines have passed (SPEC §3 timers; STYLE habit 7).

Deadlines live on the rows (`orders.due_at`, `tasks.take_deadline_at`); these functions claim the
due rows in bounded batches and apply each row's timer event through the same transition code a
person's action uses, so a sweep racing a person (or another sweeper) can only lose quietly.

1. Claim up to `batch` due rows, oldest deadline first, inside one transaction. On PostgreSQL the
   claim is `FOR UPDATE SKIP LOCKED`, so several scheduler processes take disjoint rows and never
   wait for each other.
2. Apply each row's transition in its own savepoint. A row whose transition raises unexpectedly is
   rolled back alone, its `due_at` pushed out with backoff and the failure logged, so one poisoned
   row can never stop the sweep or make it spin.
3. Commit. A sweep cancelled half-way (deploy, crash) rolls the whole batch back: every transition
   is all-or-nothing and the rows are simply due again.

Each function returns how many rows it claimed, so a caller can loop while batches come back full.
"""

from __future__ import annotations

import datetime as dt
import logging

from tortoise.transactions import in_transaction

from models import clock, db
from models.errors import DomainError
from models.orders import Order, apply_timer
from models.tasks import expire_due

log = logging.getLogger("market.sweeper")

MAX_BACKOFF_S = 300


async def sweep_orders(batch: int = 100) -> int:
    """Apply due order timers (countdown end, review timeout, appeal timeout)."""
    async with in_transaction():
        query = Order.filter(due_at__lte=clock.now()).order_by("due_at").limit(batch)
        if db.is_postgres():
            query = query.select_for_update(skip_locked=True)
        due = await query
        for order in due:
            try:
                async with in_transaction():
                    await apply_timer(order)
            except DomainError:
                pass  # somebody got there first; the row is no longer due
            except Exception:
                await _postpone_order(order)
    return len(due)


async def _postpone_order(order: Order) -> None:
    failures = order.sweep_failures + 1
    delay = min(MAX_BACKOFF_S, 2**failures)
    log.exception("order %s: timer failed (%s times); retrying in %s s", order.id, failures, delay)
    await Order.filter(id=order.id).update(
        due_at=clock.now() + dt.timedelta(seconds=delay), sweep_failures=failures
    )


async def sweep_tasks(batch: int = 100) -> int:
    """Expire open tasks whose take window has ended, refunding their untaken slots."""
    async with in_transaction():
        sql = "SELECT id FROM tasks WHERE status = 'open' AND take_deadline_at <= $1 ORDER BY take_deadline_at LIMIT $2"
        if db.is_postgres():
            sql += " FOR UPDATE SKIP LOCKED"
        due = await db.fetch(sql, clock.now(), batch)
        for row in due:
            try:
                async with in_transaction():
                    await expire_due(row["id"])
            except Exception:
                # An expiry has no person racing it except a cancel; a failure here is a bug to log.
                log.exception("task %s: expiry failed; will retry on the next sweep", row["id"])
    return len(due)


async def sweep_all(batch: int = 100, *, max_batches: int = 50) -> int:
    """Run both sweeps until nothing is due (or `max_batches` each); returns rows claimed."""
    total = 0
    for sweep in (sweep_tasks, sweep_orders):
        for _ in range(max_batches):
            n = await sweep(batch)
            total += n
            if n < batch:
                break
    return total
