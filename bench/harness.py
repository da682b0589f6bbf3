"""What every benchmark shares: a fresh migrated database, the concurrent-caller loop, and the report.

A benchmark runs inside `fresh_database()`: a new PostgreSQL database `bench_<random>` created on
the server of `BENCH_DATABASE_URL`, migrated by the real migrations (`models.db.migrate_db`), opened
for the domain code through Tortoise (`models.db.init_db`, so the platform accounts and the settings
row exist exactly as in production) and, for the raw-SQL baselines, through a plain asyncpg pool on
the same database. The database is dropped at the end, whatever happens.

Figures are printed, never asserted: `Report.row()` prints "ours / baseline / ratio" with the target
next to it, and keeps the row for the summary table `python -m bench all` prints at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable

import asyncpg
from tortoise.transactions import in_transaction

from models import clock, db
from models import settings as market_settings

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
CALLERS = 32  # concurrent callers in the take / approve benchmarks
# One connection per caller. The server is shared (max_connections = 100 here, and other engineers'
# test suites hold ~40), so the Tortoise pool and a baseline's pool are never open at the same time:
# see `Bench.baseline()`.
TORTOISE_POOL_MAX = CALLERS

# The market's settings for every benchmark: the production defaults (config.yaml), except the
# limits a benchmark has to lift (one worker may hold many orders; tasks may have many slots) and a
# take window long enough that no task expires during a run.
BENCH_SETTINGS: dict[str, int] = dict(
    min_unit_price_fen=100,
    max_unit_price_fen=10_000,
    max_quantity=10_000,
    publish_fee_bp=1_000,
    worker_invite_bp=200,
    publisher_invite_bp=1_000,
    withdraw_fee_bp=100,
    min_withdraw_fen=1_000,
    daily_withdraw_cap_fen=500_000,
    max_orders_in_progress=100,
    take_window_s=3_600,
    countdown_s=300,
    review_window_s=1_200,
    appeal_window_s=600,
)


@dataclasses.dataclass
class Bench:
    """An open benchmark database: its URL, and a small asyncpg pool for bulk seeding and queries."""

    url: str
    pool: asyncpg.Pool

    @contextlib.asynccontextmanager
    async def baseline(self, size: int = CALLERS) -> AsyncIterator[asyncpg.Pool]:
        """An asyncpg pool of `size` open connections for a raw-SQL baseline.

        Tortoise's pool is closed first (it reopens by itself at the next ORM call), so ours and
        the baseline each get the same number of connections and never compete for the server's.
        """
        await db.conn().close()
        for attempt in range(10):  # the server is shared: wait for other clients to free connections
            try:
                pool = await asyncpg.create_pool(self.url, min_size=size, max_size=size)
                break
            except asyncpg.TooManyConnectionsError:
                if attempt == 9:
                    raise
                await asyncio.sleep(2)
        try:
            yield pool
        finally:
            await pool.close()


def _server_and_name(url: str) -> tuple[str, str]:
    base, _, name = url.rpartition("/")
    return base, name.split("?")[0]


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[Bench]:
    """Create, migrate and open a new database; drop it on the way out."""
    server, _ = _server_and_name(ADMIN_URL)
    name = f"bench_{secrets.token_hex(4)}"
    url = f"{server}/{name}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    pool: asyncpg.Pool | None = None
    try:
        await db.migrate_db(url)
        clock.reset()
        market_settings.set_seed(BENCH_SETTINGS)
        market_settings.invalidate_cache()
        await db.init_db(f"{url}?maxsize={TORTOISE_POOL_MAX}", migrate=False)
        pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
        yield Bench(url=url, pool=pool)
    finally:
        if pool is not None:
            await pool.close()
        await db.close_db()
        market_settings.invalidate_cache()
        clock.reset()
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def warm_up_tortoise(connections: int = CALLERS) -> None:
    """Open the Tortoise pool's connections before anything is timed (asyncpg pools open lazily)."""

    async def hold() -> None:
        async with in_transaction():
            await db.fetch("SELECT pg_sleep(0.02)")

    await asyncio.gather(*(hold() for _ in range(connections)))


@dataclasses.dataclass
class Run:
    """The outcome of one timed run: how many calls succeeded, failed, and how long it took."""

    done: int
    failed: int
    seconds: float
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


async def run_concurrently(
    items: Iterable[Any], call: Callable[[Any], Awaitable[Any]], *, callers: int = CALLERS
) -> Run:
    """`callers` coroutines pull items from one shared iterator and `call` each; wall time.

    A failing call is counted (and the first error kept for the report), never retried: the
    benchmarks seed exactly the work they time, so a failure is a finding, not noise.
    """
    it = iter(items)
    done = failed = 0
    first_error: str | None = None

    async def caller() -> None:
        nonlocal done, failed, first_error
        for item in it:  # one iterator shared by every caller: each item is taken once
            try:
                await call(item)
                done += 1
            except Exception as exc:  # noqa: BLE001 - counted and reported
                failed += 1
                if first_error is None:
                    first_error = f"{type(exc).__name__}: {exc}"

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return Run(done=done, failed=failed, seconds=time.perf_counter() - started, first_error=first_error)


# --- reporting -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Row:
    benchmark: str
    ours: str
    baseline: str
    ratio: str
    target: str
    met: str


class Report:
    """Prints each figure as it is measured and keeps the rows for the final summary table."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    @staticmethod
    def section(title: str) -> None:
        print(f"\n=== {title}", flush=True)

    @staticmethod
    def line(label: str, value: str) -> None:
        print(f"  {label:<52} {value}", flush=True)

    def run(self, label: str, run: Run, unit: str) -> None:
        failed = f"   ({run.failed} failed: {run.first_error})" if run.failed else ""
        self.line(label, f"{run.rate:10.1f} {unit}   ({run.done} in {run.seconds:.2f} s){failed}")

    def row(
        self,
        benchmark: str,
        ours: float,
        baseline: float,
        unit: str,
        *,
        target_ratio: float | None = None,
        target_text: str | None = None,
        baseline_label: str = "baseline",
    ) -> None:
        """Print ours / baseline = ratio against a target ratio, and keep it for the summary."""
        ratio = ours / baseline if baseline else 0.0
        met = "-" if target_ratio is None else ("yes" if ratio >= target_ratio else "NO")
        target = target_text or (f">= {target_ratio:.0%}" if target_ratio is not None else "-")
        self.line(f"ratio ours / {baseline_label}", f"{ratio:10.1%}   target {target}: {met}")
        self.rows.append(Row(benchmark, f"{ours:.1f} {unit}", f"{baseline:.1f} {unit}", f"{ratio:.1%}", target, met))

    def figure(self, benchmark: str, ours: str, baseline: str, ratio: str, target: str, met: str) -> None:
        """A summary row whose figures are not a simple rate ratio (latencies)."""
        self.rows.append(Row(benchmark, ours, baseline, ratio, target, met))

    def summary(self) -> None:
        if not self.rows:
            return
        headers = ("benchmark", "ours", "baseline", "ratio", "target", "met?")
        table = [headers] + [dataclasses.astuple(r) for r in self.rows]
        widths = [max(len(str(r[i])) for r in table) for i in range(len(headers))]
        print("\n=== summary")
        for n, r in enumerate(table):
            print("  " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)))
            if n == 0:
                print("  " + "-+-".join("-" * w for w in widths))


def percentiles(values: list[float], *qs: float) -> list[float]:
    """Nearest-rank percentiles of `values` (seconds); NaN when there are none."""
    if not values:
        return [float("nan")] * len(qs)
    ordered = sorted(values)
    return [ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered))) - 1))] for q in qs]
