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

from models import db, ledger, ops_status, records, referrals
from models import settings as market_settings
from scheduler import failures, sweeper
from server import logs, metrics
from server.config import Config, _build, load_config

log = logging.getLogger("market.scheduler")

# On stop, running jobs get this long to finish their round (a sweep's rows, a batch of messages)
# before they are cancelled; then the database is closed. Closing it under a running job would let
# the job's next query open a new connection nobody closes (on SQLite, a thread that keeps the
# process from exiting).
STOP_GRACE_S = 3.0
UNWIND_S = 10.0  # after the grace: how long cancelled rounds may take to roll back and give back claims
_running: set[asyncio.Task] = set()  # the job rounds running now (one scheduler per process)


class Jobs:
    """The scheduler's jobs as plain coroutines (tests call them directly, one step at a time)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.last_audit: ledger.AuditReport | None = None

    async def sweep(self) -> int:
        sweeping = metrics.sweeping.set(True)  # timers applied here count as "timer", not "lazy_read"
        try:
            return await sweeper.sweep_all(self.config.scheduler.sweep_batch, lanes=self.config.scheduler.sweep_lanes)
        finally:
            metrics.sweeping.reset(sweeping)

    async def settle_referrals(self) -> int:
        total = 0
        for _ in range(20):
            n = await referrals.settle(500)
            total += n
            if n < 500:
                break
        return total

    async def prune_outbox(self) -> int:
        """Delete delivered outbox rows older than the retention, in bounded batches: the push log
        lowest seqs first, recording the highest pruned (server/push.py `prune`), then the
        subscription messages that are done."""
        import datetime as dt

        from models import clock
        from server import push

        before = clock.now() - dt.timedelta(seconds=self.config.scheduler.outbox_retention_s)
        total = await push.prune(before)
        for _ in range(100):
            n = await db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE channel = 'subscribe' "
                "AND status IN ('sent', 'refused') AND created_at < $1 ORDER BY id LIMIT 5000)",
                before,
            )
            total += n
            if n < 5000:
                break
        return total

    async def refresh_records(self) -> int:
        """The records of the users whose orders or tasks moved since the last round."""
        return await records.refresh_changed()

    async def refresh_all_records(self) -> int:
        return await records.refresh_all()

    async def audit_ledger(self) -> ledger.AuditReport:
        report = await ledger.audit()
        self.last_audit = report
        # Every node's /metrics reads the result from here (market_ledger_audit_ok / _age_seconds).
        await ops_status.put(ops_status.LEDGER_AUDIT, report.ok, {"problems": report.problems[:20]})
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
        (jobs.refresh_records, s.records_refresh_interval_s, "refresh_records"),
        (jobs.refresh_all_records, s.records_full_refresh_interval_s, "refresh_all_records"),
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
        task = asyncio.current_task()
        _running.add(task)
        try:
            await fn()
        except Exception as exc:  # a failing round must not kill the scheduler; the next tick retries
            log.exception("scheduler job %s failed", name)
            await failures.record_failure(name, exc)  # and the dashboard shows it (scheduler/failures.py)
        else:
            await failures.record_success(name)
        finally:
            _running.discard(task)

    run.__name__ = name
    return run


async def run(config: Config, *, stop: asyncio.Event | None = None) -> None:
    """Open the database, run the jobs until `stop` is set, then close. Without `stop` (the process
    entry points), until SIGINT or SIGTERM."""
    from scheduler import outbox as subscription_outbox

    market_settings.set_seed(config.market)
    subscription_outbox.allow_rounds()
    await db.init_db(config.db_url_with_pool, migrate=False)
    own_signals = stop is None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if own_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
    from scheduler import reconcile_job, wechat_jobs
    from server.observability import instrument_wechat
    from server.wechat_services import WeChatServices

    redis = None
    if config.redis_url:
        import redis.asyncio as aioredis

        redis = aioredis.from_url(config.redis_url)
    services = await WeChatServices.start(config, redis)
    instrument_wechat(services)  # every WeChat call timed, counted and logged (server/observability.py)
    extra = await wechat_jobs.jobs(config, services) if _is_async(wechat_jobs.jobs) else wechat_jobs.jobs(config, services)
    scheduler = build_scheduler(config, extra=extra + reconcile_job.jobs(config, services))
    _serve_metrics(config)
    scheduler.start()
    log.info("scheduler started: %s", ", ".join(job.id for job in scheduler.get_jobs()))
    try:
        await stop.wait()
    finally:
        if own_signals:
            _ignore_further_stop_signals(loop)
        scheduler.pause()  # no new rounds
        subscription_outbox.request_stop()  # a subscription round claims nothing more; it finishes what it holds
        await _let_running_jobs_finish(STOP_GRACE_S)
        scheduler.shutdown(wait=False)
        await db.close_db()
        log.info("scheduler stopped")


def _serve_metrics(config: Config) -> None:
    """A standalone scheduler serves its own metrics on metrics.scheduler_port (a port of its own,
    bound to a private address: nothing public reaches it). Embedded in the server, it writes into
    the server's multiprocess directory instead, and the server's /metrics includes it."""
    if metrics.multiprocess_dir() or not config.metrics.scheduler_port:
        return
    from prometheus_client import start_http_server

    start_http_server(config.metrics.scheduler_port, addr=config.metrics.scheduler_host)
    log.info("scheduler metrics on http://%s:%s/metrics", config.metrics.scheduler_host, config.metrics.scheduler_port)


def _setup_logging(config: Config) -> None:
    logs.setup(config, "scheduler")


def _ignore_further_stop_signals(loop: asyncio.AbstractEventLoop) -> None:
    """We are stopping already. Ctrl-C reaches this process twice (the terminal signals the whole
    process group; the server's main process then stops its managed processes): a second signal
    must not interrupt the shutdown, nor arrive at a loop that asyncio.run has just closed."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
        except (NotImplementedError, RuntimeError, ValueError):
            pass


async def _let_running_jobs_finish(grace_s: float) -> None:
    """Wait up to `grace_s` for the rounds in progress, then cancel the rest and wait for them to
    unwind (their transactions roll back) — all before the database is closed."""
    running = {t for t in _running if not t.done()}
    if not running:
        return
    _, late = await asyncio.wait(running, timeout=grace_s)
    for task in late:
        log.warning("stopping: job round %s cancelled after %.0f s", task.get_name(), grace_s)
        task.cancel()
    if late:  # a cancelled round gives back what it claimed (scheduler/outbox.py): let it, even when slow
        await asyncio.wait(late, timeout=UNWIND_S)


def _is_async(fn) -> bool:
    import inspect

    return inspect.iscoroutinefunction(fn)


def run_process(config: dict[str, Any]) -> None:
    """Entry point of the Sanic-managed scheduler process."""
    built = _build(config)
    _setup_logging(built)
    try:
        asyncio.run(run(built))
    except KeyboardInterrupt:  # Sanic stops managed processes with SIGINT
        pass


def main() -> None:
    import sys

    from server.config import ConfigError
    from server.wechat_services import wechat_config
    from wechat.config import WeChatConfigError

    try:
        config = load_config()
        wechat_config(config)  # the wechat section too, before anything starts
    except (ConfigError, WeChatConfigError) as exc:  # one line naming the key and its source, no traceback
        print(f"configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    _setup_logging(config)
    try:
        asyncio.run(run(config))
    except KeyboardInterrupt:
        pass
