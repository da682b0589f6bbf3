"""APScheduler wiring: the jobs, and the two ways to run them.

- Inside the server: `server/app.py` starts `run_process` as one Sanic-managed process.
- Standalone (production): `python -m scheduler`, on as many nodes as wanted. Every job is safe
  to run in several processes at once: sweeps and the outbox claim rows with SKIP LOCKED on
  PostgreSQL and every transition is a conditional UPDATE, so a second runner only shares the work.

Each job is bounded (batch sizes, `max_instances=1`, `coalesce=True`): a slow round never piles
up copies of itself, and a round that fails is logged and tried again at the next tick.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from models import db, ledger, referrals
from models import settings as market_settings
from scheduler import sweeper
from server.config import Config, _build, load_config

log = logging.getLogger("market.scheduler")


class Jobs:
    """The scheduler's jobs as plain coroutines (tests call them directly, one step at a time)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.last_audit: ledger.AuditReport | None = None

    async def sweep(self) -> int:
        return await sweeper.sweep_all(self.config.scheduler.sweep_batch)

    async def settle_referrals(self) -> int:
        total = 0
        for _ in range(20):
            n = await referrals.settle(500)
            total += n
            if n < 500:
                break
        return total

    async def prune_outbox(self) -> int:
        """Delete delivered outbox rows older than the retention, in bounded batches."""
        import datetime as dt

        from models import clock

        before = clock.now() - dt.timedelta(seconds=self.config.scheduler.outbox_retention_s)
        total = 0
        for _ in range(100):
            n = await db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE status IN ('sent', 'refused') "
                "AND created_at < $1 ORDER BY id LIMIT 5000)",
                before,
            )
            total += n
            if n < 5000:
                break
        return total

    async def audit_ledger(self) -> ledger.AuditReport:
        report = await ledger.audit()
        self.last_audit = report
        (log.info if report.ok else log.error)("%s", report.text())
        return report


def build_scheduler(config: Config, jobs: Jobs | None = None, extra: list[tuple[Any, float, str]] | None = None) -> AsyncIOScheduler:
    jobs = jobs or Jobs(config)
    s = config.scheduler
    scheduler = AsyncIOScheduler(timezone="UTC")
    plan = [
        (jobs.sweep, s.sweep_interval_s, "sweep"),
        (jobs.settle_referrals, s.referral_settle_interval_s, "settle_referrals"),
        (jobs.audit_ledger, s.ledger_audit_interval_s, "ledger_audit"),
        (jobs.prune_outbox, 3600.0, "prune_outbox"),
        *(extra or []),
    ]
    for fn, seconds, job_id in plan:
        scheduler.add_job(
            _logged(fn, job_id), "interval", seconds=seconds, id=job_id, name=job_id,
            max_instances=1, coalesce=True, replace_existing=True, misfire_grace_time=max(1, int(seconds * 2)),
        )
    return scheduler


def _logged(fn, name: str):
    async def run() -> None:
        try:
            await fn()
        except Exception:  # a failing round must not kill the scheduler; the next tick retries
            log.exception("scheduler job %s failed", name)

    run.__name__ = name
    return run


async def run(config: Config, *, stop: asyncio.Event | None = None) -> None:
    """Open the database, run the jobs until `stop` is set (or SIGINT/SIGTERM), then close."""
    market_settings.set_seed(config.market)
    await db.init_db(config.db_url_with_pool, migrate=False)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    from scheduler import wechat_jobs

    scheduler = build_scheduler(config, extra=await wechat_jobs.jobs(config) if _is_async(wechat_jobs.jobs) else wechat_jobs.jobs(config))
    scheduler.start()
    log.info("scheduler started: %s", ", ".join(job.id for job in scheduler.get_jobs()))
    try:
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)
        await db.close_db()
        log.info("scheduler stopped")


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not a line per job run


def _is_async(fn) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


def run_process(config: dict[str, Any]) -> None:
    """Entry point of the Sanic-managed scheduler process."""
    _setup_logging()
    try:
        asyncio.run(run(_build(config)))
    except KeyboardInterrupt:  # Sanic stops managed processes with SIGINT
        pass


def main() -> None:
    _setup_logging()
    config = load_config()
    try:
        asyncio.run(run(config))
    except KeyboardInterrupt:
        pass
