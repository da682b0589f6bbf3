"""Benchmark 3 — sweep: settling due order timers with `scheduler.sweeper.sweep_all` (issue 12).

Orders are seeded (in bulk, see `seed.bulk_take`) on tasks of 100 slots published through the
domain, half of them in progress with the countdown ending, half awaiting review with the review
window ending (the review timeout completes the order: ledger entry and both referral rewards).
Each order is settled by one timer transition, whose audit row's `created_at` is the moment it
was settled; its lag is that minus the deadline it was due at (`submit_deadline_at` for a countdown
end, `review_deadline_at` for a review timeout — `finished_at` is set to the deadline itself, so
it cannot tell the lag).

1. Backlog: N orders all fall due within the same two seconds; one scheduler process
   (`bench/sweep_proc.py`: `sweeper.sweep_all(100, lanes=2)` in a loop, batches growing while
   full) drains them — transitions/s, and the lag p50/p99 (which here only says how long the queue
   was). Baselines on their own backlogs of N/5: the same batches by hand on plain asyncpg
   (`raw.sweep_orders_batched`, same lanes and growth), and the old per-row one (`raw.sweep_orders`)
   for information. Each line also gives the scheduler processes' own CPU per transition and how
   busy the machine's cores were meanwhile (everyone's: PostgreSQL and other users included).
2. Scale-out: 1, 2 and 4 scheduler processes side by side, each on a backlog of N/5.
3. Steady state: 1 000 orders/s fall due over BENCH_STEADY_S (25) seconds, while the sweeper runs
   `sweep_all` every `sweep_interval_s` (0.25 s, the default) as the scheduler does (APScheduler:
   fixed ticks, a tick that finds the previous run still going is skipped) — lag p50/p99, target
   p99 ≤ 1 s. Informational: the same with a 1 s interval.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from typing import Awaitable, Callable

import asyncpg

from bench import raw, seed
from bench.harness import Bench, Report, fresh_database, percentiles, warm_up_tortoise
from models import clock
from models.users import End
from scheduler import sweeper

BATCH = 100  # config.yaml scheduler.sweep_batch
LANES = 2  # config.yaml scheduler.sweep_lanes
TARGET_RATE = 2_000  # transitions/s, one scheduler (issue 12 target 1)
STEADY_RATE = 1_000.0  # orders/s falling due steadily (issue 12 target 3)
QUANTITY = 100  # slots per task (the default max_quantity)
SWEEP_INTERVAL_S = 0.25  # config.yaml scheduler.sweep_interval_s
TARGET_P99_S = 1.0
TIMER_ACTIONS = ("order.countdown_end", "order.review_timeout")


BACKLOG = 100_000  # orders in the one-sweeper backlog of a full run (`--sweep-backlog` changes it)


async def run(report: Report, *, quick: bool, backlog: int | None = None) -> None:
    n = backlog or (600 if quick else BACKLOG)
    n_other = min(n, 300 if quick else max(2_000, n // 5))  # baseline / two-sweeper backlogs: enough for a steady rate
    window_s = 4.0 if quick else float(os.environ.get("BENCH_STEADY_S", "25"))  # steady-state length
    # A timer that fails (e.g. a deadlock between two sweepers) is logged with its traceback by the
    # sweeper and postponed; the benchmark counts those instead of printing every traceback.
    logging.getLogger("market.sweeper").setLevel(logging.CRITICAL)
    report.section(f"sweep — backlog of N = {n} due orders (half countdown end, half review timeout)")
    async with fresh_database() as bench:
        await _run(bench, report, n, n_other, window_s, quick)


async def _run(bench: Bench, report: Report, n: int, n_other: int, window_s: float, quick: bool) -> None:
    publishers = [p.id for p in await seed.publishers_with_inviters(64)]
    worker_inviters = [u.id for u in await seed.register(End.WORKER, 32)]
    # A worker holds at most max_orders_in_progress (100) orders: 60 orders each, half in progress.
    workers = await seed.bulk_users(bench.pool, End.WORKER, max(QUANTITY, n // 60), inviter_ids=worker_inviters)
    seeder = _Seeder(bench, publishers, workers)

    # 1. Backlogs, one scheduler process (its `sweep_lanes` lanes): ours, then the batched raw
    #    baseline (same writes, same batches, same lanes), then the old per-row raw baseline.
    ours = await seeder.backlog(n)
    _, t_ours, cpu_ours, busy_ours = await _processes(bench, "ours", 1)
    ours_stats = (await _settled(bench.pool, ours, t_ours)).with_cpu(cpu_ours, busy_ours)
    base = await seeder.backlog(n_other)
    _, t_base, cpu_base, busy_base = await _processes(bench, "raw", 1)
    base_stats = (await _settled(bench.pool, base, t_base)).with_cpu(cpu_base, busy_base)
    n_row = min(n_other, 300 if quick else 2_000)
    row_ids = await seeder.backlog(n_row)
    async with bench.baseline(1) as pool:
        t_row = await _drain(lambda: raw.sweep_orders(pool, BATCH), 1)
    row_stats = await _settled(bench.pool, row_ids, t_row)
    _print_backlog(report, f"ours: 1 scheduler process, sweep_all({BATCH}, lanes={LANES})", ours_stats)
    _print_backlog(report, f"baseline: raw asyncpg, batched, {LANES} lanes", base_stats)
    _print_backlog(report, "old baseline: raw asyncpg, one row per transaction (info)", row_stats)
    report.row("sweep backlog, 1 scheduler vs batched raw", ours_stats.rate, base_stats.rate, "transitions/s", target_ratio=0.5)
    report.row("sweep backlog, 1 scheduler vs per-row raw (info)", ours_stats.rate, row_stats.rate, "transitions/s")
    met = "yes" if ours_stats.rate >= TARGET_RATE else "NO"
    report.line(f"target >= {TARGET_RATE} transitions/s, one scheduler", met)
    report.figure("sweep backlog, 1 scheduler: transitions/s", f"{ours_stats.rate:.0f}/s", "-", "-", f">= {TARGET_RATE}/s", met)

    # 2. Scale-out: one, two and four scheduler processes on backlogs of the same size.
    one = await seeder.backlog(n_other)
    _, t_one, cpu_one, busy_one = await _processes(bench, "ours", 1)
    one_stats = (await _settled(bench.pool, one, t_one)).with_cpu(cpu_one, busy_one)
    two = await seeder.backlog(n_other)
    _, t_two, cpu_two, busy_two = await _processes(bench, "ours", 2)
    two_stats = (await _settled(bench.pool, two, t_two)).with_cpu(cpu_two, busy_two)
    four = await seeder.backlog(n_other)
    _, t_four, cpu_four, busy_four = await _processes(bench, "ours", 4)
    four_stats = (await _settled(bench.pool, four, t_four)).with_cpu(cpu_four, busy_four)
    _print_backlog(report, f"ours: 1 scheduler process ({n_other})", one_stats)
    _print_backlog(report, f"ours: 2 scheduler processes ({n_other})", two_stats)
    _print_backlog(report, f"ours: 4 scheduler processes ({n_other})", four_stats)
    report.row("sweep backlog, 2 schedulers vs 1 (same backlog)", two_stats.rate, one_stats.rate, "transitions/s", target_ratio=1.6,
               baseline_label="1 scheduler")
    report.row("sweep backlog, 4 schedulers vs 2", four_stats.rate, two_stats.rate, "transitions/s", target_ratio=1.0,
               baseline_label="2 schedulers")

    # 3. Steady state: 1 000 orders/s fall due (quick: 200/s), `sweep_all` on fixed ticks.
    await warm_up_tortoise(LANES + 1)
    rate = 200.0 if quick else STEADY_RATE
    report.section(f"sweep — steady state: {rate:.0f} orders/s fall due over {window_s:.0f} s")
    for interval, label, is_target in ((SWEEP_INTERVAL_S, "sweep_interval_s = 0.25 s", True), (1.0, "interval 1 s (info)", False)):
        steady = await seeder.steady(rate, window_s)
        stats = await _run_scheduler(bench.pool, steady, interval)
        p50, p99 = stats.p50, stats.p99
        met = "yes" if p99 <= TARGET_P99_S else "NO"
        report.line(f"ours: sweep_all every {interval:g} s, {LANES} lanes", f"lag p50 {p50 * 1000:7.0f} ms   p99 {p99 * 1000:7.0f} ms   max "
                    f"{stats.max * 1000:7.0f} ms   ({stats.settled}/{len(steady)} settled)")
        report.line("target p99 <= 1 s", met if is_target else f"{met} (info)")
        report.figure(f"sweep steady state {rate:.0f}/s, {label}", f"p50 {p50 * 1000:.0f} ms / p99 {p99 * 1000:.0f} ms", "-", "-",
                      "p99 <= 1 s" if is_target else "-", met if is_target else "-")
    postponed = await bench.pool.fetchval("SELECT count(*) FROM orders WHERE sweep_failures > 0")
    report.line("orders postponed after a failed timer (sweep_failures > 0)", str(postponed))
    report.line("ledger audit after the run", await seed.books_are_clean())


async def _processes(bench: Bench, kind: str, procs: int) -> tuple[int, float, float, float]:
    """Run `procs` scheduler processes (bench/sweep_proc.py) together until nothing is due;
    returns (rows claimed, wall seconds from the first start to the last end, the processes' own
    CPU seconds, the share of the machine's cores busy meanwhile — everyone's, PostgreSQL's and
    other users' included). Our own pool is closed meanwhile (the shared server's connections)."""
    import json
    import sys

    async with bench.baseline(1):
        start = time.monotonic() + 5.0  # every process has connected by then
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.sweep_proc", bench.url, str(LANES), str(BATCH), str(start), kind,
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(procs)
        ]
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        before = _cpu_ticks()
        outs = [json.loads((await c.communicate())[0].decode().strip().splitlines()[-1]) for c in children]
        after = _cpu_ticks()
    busy = (after[0] - before[0]) / max(1, after[1] - before[1])
    seconds = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    return sum(o["claimed"] for o in outs), seconds, sum(o["cpu"] for o in outs), busy


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot (/proc/stat; (0, 0) where there is none)."""
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


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
        await sweeper.sweep_all(BATCH, lanes=LANES)
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
        self.cpu_s: float | None = None  # the scheduler processes' own CPU seconds
        self.busy = 0.0  # share of the machine's cores busy meanwhile

    def with_cpu(self, cpu_s: float, busy: float) -> "_Stats":
        self.cpu_s, self.busy = cpu_s, busy
        return self

    @property
    def rate(self) -> float:
        return self.settled / self.seconds if self.seconds else 0.0


async def _settled(pool: asyncpg.Pool, ids: list[int], seconds: float) -> _Stats:
    """Lags (audit row created_at − the deadline that fell due) of the timer transitions of `ids`."""
    await pool.execute("ANALYZE orders, audit_log")  # fresh statistics: else a nested loop over all audit rows
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
    if s.cpu_s is not None and s.settled:
        report.line("  scheduler CPU per transition / machine cores busy",
                    f"{s.cpu_s / s.settled * 1e6:8.0f} us / {s.busy:.0%} of {os.cpu_count()} (everyone's)")
