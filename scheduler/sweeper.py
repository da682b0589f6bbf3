"""Sweeps: apply the timers whose deadlines have passed (SPEC §3 timers; STYLE habit 7).

Deadlines live on the rows (`orders.due_at`, `tasks.take_deadline_at`); these functions find the
due rows and apply each row's timer event with the same rules a person's action meets, so a sweep
racing a person (or another sweeper) can only lose quietly.

1. Due rows are settled in batches, one transaction per batch (models/timer_batch.py): claimed
   with `FOR NO KEY UPDATE SKIP LOCKED` on PostgreSQL (several lanes and scheduler processes take
   disjoint rows and never wait for each other's claims), then written set-based with every lock
   taken in the one fixed order (orders → users → tasks by id → accounts by code), so a batch
   cannot deadlock with people or with another batch. One commit per batch, not per row.
2. A batch that fails as a whole rolls back and its rows are settled one per transaction (the
   per-row path below); a row whose transition raises there is rolled back alone and postponed
   with exponential backoff (orders: `due_at` moves out and `sweep_failures` counts; tasks: an
   in-process skip list, since their deadline column is the one people see), and the failure is
   logged: one poisoned row can never stop the sweep or make it spin.
3. A sweep stopped half-way (deploy, crash, cancellation) leaves only whole batches behind: the
   batch being settled rolls back and its rows are simply due again.
4. `sweep_all` runs `lanes` batches side by side on PostgreSQL, so the database groups their
   commits, and a lane's batches grow up to `BATCH_GROWTH` times `batch` while they come back full;
   SQLite has one writer, one lane of `batch` rows.

Each function settles at most `batch` rows and returns how many it claimed, so a caller can loop
while batches come back full; a row whose timer leads straight into another overdue timer is
claimed again by a later batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time

from tortoise.transactions import in_transaction

from models import clock, db, timer_batch
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
    """Apply due order timers (countdown end, review timeout, appeal timeout): one batch."""
    try:
        return await timer_batch.settle_orders(batch)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - the batch rolled back whole; settle its rows one by one
        log.exception("a batch of order timers failed; settling up to %s rows one per transaction", batch)
        return await sweep_orders_one_by_one(batch)


async def sweep_orders_one_by_one(batch: int = 100) -> int:
    """Apply due order timers one row per transaction (after a failed batch)."""
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
    """Expire open tasks whose take window has ended, refunding their untaken slots: one batch."""
    skip = [tid for tid, (_, until) in _task_backoff.items() if until > time.monotonic()]
    try:
        return await timer_batch.settle_tasks(batch, skip)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - the batch rolled back whole; settle its rows one by one
        log.exception("a batch of task expiries failed; settling up to %s rows one per transaction", batch)
        return await sweep_tasks_one_by_one(batch)


async def sweep_tasks_one_by_one(batch: int = 100) -> int:
    """Expire due tasks one per transaction (after a failed batch)."""
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


# On PostgreSQL a lane whose batch comes back full (a backlog) doubles its next batch, up to this many
# times `batch`: a batch's fixed costs (a dozen round trips, its commit) are shared by more rows.
# The rows a batch claims stay locked until its commit, so a person acting on one of them waits
# for that batch (at most `BATCH_GROWTH * batch` rows' worth); SQLite (one writer) keeps `batch`.
BATCH_GROWTH = 4


async def sweep_all(batch: int = 100, *, max_batches: int = 50, lanes: int = 1) -> int:
    """Run both sweeps until nothing is due (or `max_batches` batches each, per lane); returns rows
    claimed. On PostgreSQL `lanes` batches run side by side, each on its own connection, and a
    lane's batches grow while they come back full (`BATCH_GROWTH`)."""
    growth = BATCH_GROWTH if db.is_postgres() else 1
    if not db.is_postgres():
        lanes = 1
    total = 0
    for sweep in (sweep_tasks, sweep_orders):

        async def lane(sweep=sweep) -> int:
            done, size = 0, batch
            for _ in range(max_batches):
                n = await sweep(size)
                done += n
                if n < size:
                    break
                size = min(size * 2, batch * growth)
            return done

        total += sum(await asyncio.gather(*(lane() for _ in range(max(1, lanes)))))
    # Appeals a rule decides (issue 14 §2): few, one by one (each a conditional UPDATE), one lane.
    from models.appeals import sweep_unanswered

    for _ in range(max_batches):
        n = await sweep_unanswered(batch)
        total += n
        if n < batch:
            break
    return total
