"""Benchmark 3 — sweep: settling due order timers with `scheduler.sweeper.sweep_orders`.

Orders are seeded (in bulk, see `seed.bulk_take`) on tasks of 100 slots published through the
domain, half of them in progress with the countdown ending, half awaiting review with the review
window ending (the review timeout completes the order: ledger entry and both referral rewards).
Each order is settled by one timer transition, whose audit row's `created_at` is the moment it
was settled; its lag is that minus the deadline it was due at (`submit_deadline_at` for a countdown
end, `review_deadline_at` for a review timeout — `finished_at` is set to the deadline itself, so
it cannot tell the lag).

1. Backlog: N orders all fall due within the same two seconds; the sweeper runs
   `sweep_orders(100)` back to back (as `sweep_all` loops while batches come back full) until
   nothing is due — transitions/s, and the lag p50/p99 (which here only says how long the queue
   was). Baseline: the same statements on plain asyncpg (`raw.sweep_orders`: SKIP LOCKED claim,
   one savepoint per order) on its own backlog. Then both again with two sweepers side by side.
2. Steady state: orders fall due over the next ~25 s at half the capacity measured in 1, while the
   sweeper runs `sweep_all` every `sweep_interval_s` (0.25 s, the default) as the scheduler does
   (APScheduler: fixed ticks, a tick that finds the previous run still going is skipped) — lag
   p50/p99, target p99 ≤ 1 s. Informational: the same with a 1 s interval.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Awaitable, Callable

import asyncpg

from bench import raw, seed
from bench.harness import Bench, Report, fresh_database, percentiles, warm_up_tortoise
from models import clock
from models.users import End
from scheduler import sweeper

BATCH = 100  # config.yaml scheduler.sweep_batch
QUANTITY = 100  # slots per task (the default max_quantity)
SWEEP_INTERVAL_S = 0.25  # config.yaml scheduler.sweep_interval_s
TARGET_P99_S = 1.0
TIMER_ACTIONS = ("order.countdown_end", "order.review_timeout")


BACKLOG = 100_000  # orders in the one-sweeper backlog of a full run (`--sweep-backlog` changes it)


async def run(report: Report, *, quick: bool, backlog: int | None = None) -> None:
    n = backlog or (600 if quick else BACKLOG)
    n_other = min(n, 300 if quick else max(2_000, n // 5))  # baseline / two-sweeper backlogs: enough for a steady rate
    window_s = 4.0 if quick else 25.0
    # A timer that fails (e.g. a deadlock between two sweepers) is logged with its traceback by the
    # sweeper and postponed; the benchmark counts those instead of printing every traceback.
    logging.getLogger("market.sweeper").setLevel(logging.CRITICAL)
    report.section(f"sweep — backlog of N = {n} due orders (half countdown end, half review timeout)")
    async with fresh_database() as bench:
        await _run(bench, report, n, n_other, window_s)


async def _run(bench: Bench, report: Report, n: int, n_other: int, window_s: float) -> None:
    publishers = [p.id for p in await seed.publishers_with_inviters(64)]
    worker_inviters = [u.id for u in await seed.register(End.WORKER, 32)]
    # A worker holds at most max_orders_in_progress (100) orders: 60 orders each, half in progress.
    workers = await seed.bulk_users(bench.pool, End.WORKER, max(QUANTITY, n // 60), inviter_ids=worker_inviters)
    seeder = _Seeder(bench, publishers, workers)

    # 1. Backlogs, one sweeper: ours, then the raw baseline.
    await warm_up_tortoise(2)
    ours = await seeder.backlog(n)
    t_ours = await _drain(lambda: sweeper.sweep_orders(BATCH), 1)
    ours_stats = await _settled(bench.pool, ours, t_ours)
    base = await seeder.backlog(n_other)
    async with bench.baseline(1) as pool:
        t_base = await _drain(lambda: raw.sweep_orders(pool, BATCH), 1)
    base_stats = await _settled(bench.pool, base, t_base)
    _print_backlog(report, "ours: sweep_orders, 1 sweeper", ours_stats)
    _print_backlog(report, "baseline: raw asyncpg, 1 sweeper", base_stats)
    report.row("sweep backlog, 1 sweeper", ours_stats.rate, base_stats.rate, "transitions/s")

    # 1b. Two sweepers side by side (as two scheduler processes would run; here in one process).
    ours2 = await seeder.backlog(n_other)
    t_ours2 = await _drain(lambda: sweeper.sweep_orders(BATCH), 2)
    ours2_stats = await _settled(bench.pool, ours2, t_ours2)
    base2 = await seeder.backlog(n_other)
    async with bench.baseline(2) as pool:
        t_base2 = await _drain(lambda: raw.sweep_orders(pool, BATCH), 2)
    base2_stats = await _settled(bench.pool, base2, t_base2)
    _print_backlog(report, "ours: sweep_orders, 2 sweepers", ours2_stats)
    _print_backlog(report, "baseline: raw asyncpg, 2 sweepers", base2_stats)
    report.row("sweep backlog, 2 sweepers", ours2_stats.rate, base2_stats.rate, "transitions/s")

    # 2. Steady state at half the measured one-sweeper capacity.
    rate = max(5.0, ours_stats.rate / 2)
    report.section(f"sweep — steady state: {rate:.0f} orders/s fall due over {window_s:.0f} s (half the capacity)")
    for interval, label, is_target in ((SWEEP_INTERVAL_S, "sweep_interval_s = 0.25 s", True), (1.0, "interval 1 s (info)", False)):
        steady = await seeder.steady(rate, window_s)
        stats = await _run_scheduler(bench.pool, steady, interval)
        p50, p99 = stats.p50, stats.p99
        met = "yes" if p99 <= TARGET_P99_S else "NO"
        report.line(f"ours: sweep_all every {interval:g} s", f"lag p50 {p50 * 1000:7.0f} ms   p99 {p99 * 1000:7.0f} ms   max "
                    f"{stats.max * 1000:7.0f} ms   ({stats.settled}/{len(steady)} settled)")
        report.line("target p99 <= 1 s", met if is_target else f"{met} (info)")
        report.figure(f"sweep steady state, {label}", f"p50 {p50 * 1000:.0f} ms / p99 {p99 * 1000:.0f} ms", "-", "-",
                      "p99 <= 1 s" if is_target else "-", met if is_target else "-")
    postponed = await bench.pool.fetchval("SELECT count(*) FROM orders WHERE sweep_failures > 0")
    report.line("orders postponed after a failed timer (sweep_failures > 0)", str(postponed))
    report.line("ledger audit after the run", await seed.books_are_clean())


# --- seeding ---------------------------------------------------------------------------------------
class _Seeder:
    """Publishes tasks through the domain and fills them with orders due when asked."""

    def __init__(self, bench: Bench, publishers: list[int], workers: list[int]) -> None:
        self.bench, self.publishers, self.workers = bench, publishers, workers

    async def _orders(self, deadlines: list[dt.datetime]) -> list[int]:
        count = len(deadlines)
        task_ids = await seed.publish_tasks(self.publishers, -(-count // QUANTITY), quantity=QUANTITY)
        pairs = [(task_ids[i // QUANTITY], self.workers[i % len(self.workers)]) for i in range(count)]
        submitted = [i % 2 == 1 for i in range(count)]  # interleaved: every batch mixes both timers
        return await seed.bulk_take(self.bench.pool, pairs, deadlines, submitted)

    async def backlog(self, count: int) -> list[int]:
        """`count` orders whose deadlines all passed within the last two seconds."""
        now = clock.now()
        return await self._orders([now - dt.timedelta(seconds=2 * (1 - i / count)) for i in range(count)])

    async def steady(self, rate: float, window_s: float) -> list[int]:
        """Orders falling due at `rate` per second over `window_s`, starting 2 s after this returns."""
        count = int(rate * window_s)
        anchor = clock.now() + dt.timedelta(seconds=3_600)  # far enough that nothing is due while seeding
        ids = await self._orders([anchor + dt.timedelta(seconds=i / rate) for i in range(count)])
        shift = (clock.now() + dt.timedelta(seconds=2)) - anchor  # move every deadline together
        await self.bench.pool.execute(
            "UPDATE orders SET taken_at = taken_at + $2, submit_deadline_at = submit_deadline_at + $2, "
            "submitted_at = submitted_at + $2, review_deadline_at = review_deadline_at + $2, due_at = due_at + $2 "
            "WHERE id = ANY($1)",
            ids, shift,
        )
        return ids


# --- running the sweepers --------------------------------------------------------------------------
async def _drain(sweep: Callable[[], Awaitable[int]], sweepers: int) -> float:
    """Run `sweepers` loops of `sweep()` until none claims anything; returns the wall time."""

    async def loop() -> None:
        while await sweep() > 0:
            pass

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(sweepers)))
    return time.perf_counter() - started


async def _run_scheduler(pool: asyncpg.Pool, ids: list[int], interval: float) -> "_Stats":
    """`sweep_all` on fixed ticks of `interval` (a tick missed while running is skipped, as
    APScheduler's max_instances=1 + coalesce), until every order in `ids` is settled or 15 s after
    the last deadline."""
    last_due = await pool.fetchval("SELECT max(due_at) FROM orders WHERE id = ANY($1)", ids)
    give_up = last_due + dt.timedelta(seconds=15)
    started = time.perf_counter()
    tick = time.monotonic()
    while clock.now() < give_up:
        await sweeper.sweep_all(BATCH)
        if await pool.fetchval("SELECT count(*) FROM orders WHERE id = ANY($1) AND due_at <= $2", ids, last_due) == 0:
            break
        while tick <= time.monotonic():
            tick += interval
        await asyncio.sleep(tick - time.monotonic())
    return await _settled(pool, ids, time.perf_counter() - started)


# --- measuring -------------------------------------------------------------------------------------
class _Stats:
    def __init__(self, lags: list[float], seconds: float, expected: int, postponed: int) -> None:
        self.settled, self.seconds, self.expected, self.postponed = len(lags), seconds, expected, postponed
        self.p50, self.p99, self.max = percentiles(lags, 0.50, 0.99, 1.0)

    @property
    def rate(self) -> float:
        return self.settled / self.seconds if self.seconds else 0.0


async def _settled(pool: asyncpg.Pool, ids: list[int], seconds: float) -> _Stats:
    """Lags (audit row created_at − the deadline that fell due) of the timer transitions of `ids`."""
    rows = await pool.fetch(
        "SELECT EXTRACT(EPOCH FROM a.created_at - CASE a.action WHEN 'order.countdown_end' "
        "THEN o.submit_deadline_at ELSE o.review_deadline_at END)::float8 AS lag "
        "FROM orders o JOIN audit_log a ON a.target_kind = 'order' AND a.target_id = o.id AND a.action = ANY($2) "
        "WHERE o.id = ANY($1)",
        ids, list(TIMER_ACTIONS),
    )
    postponed = await pool.fetchval("SELECT count(*) FROM orders WHERE id = ANY($1) AND sweep_failures > 0", ids)
    return _Stats([r["lag"] for r in rows], seconds, len(ids), postponed)


def _print_backlog(report: Report, label: str, s: _Stats) -> None:
    extra = f", {s.postponed} postponed after a failure" if s.postponed else ""
    missing = f", {s.expected - s.settled} NOT settled" if s.settled != s.expected else ""
    report.line(label, f"{s.rate:10.1f} transitions/s   ({s.settled} in {s.seconds:.1f} s{missing}{extra})")
    report.line("  lag from deadline (queue position) p50 / p99", f"{s.p50:8.1f} s / {s.p99:.1f} s")
