"""The scheduler's jobs, called one step at a time, and their APScheduler wiring."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from models import clock, db, orders, tasks
from models.ledger import AccountKind
from models.orders import Order, OrderStatus
from scheduler.runner import Jobs, build_scheduler
from server.config import load_config
from tests import personas as p

pytestmark = pytest.mark.asyncio

PRICE, FEE = 1_000, 100
R_W, R_P = 50, 20  # floor(P × 5 %), floor(F × 20 %) with TEST_SETTINGS


def config(database_url: str, **scheduler):
    return load_config(env={}, overrides={"database_url": database_url, "scheduler": scheduler})


async def completed_orders(n: int):
    """n orders of Alice (invited by Carol) completed by workers invited by Dave."""
    carol = await p.publisher("carol")
    dave = await p.worker("dave")
    alice = await p.publisher("alice", balance_fen=n * (PRICE + FEE), inviter=carol)
    task = await tasks.publish(alice.id, title="Scan", instructions="Scan the code", unit_price_fen=PRICE, quantity=n)
    for i in range(n):
        w = await p.worker(f"w{i}", inviter=dave)
        o = await orders.take(task.id, w.id)
        await orders.submit(o.id, w.id)
        await orders.approve(o.id, alice.id)
    return carol, dave


async def test_settle_referrals_moves_every_earned_reward_to_its_inviter(database):
    carol, dave = await completed_orders(4)
    assert await p.platform(AccountKind.REFERRAL_PAYABLE) == 4 * (R_W + R_P)
    jobs = Jobs(config(database))

    assert await jobs.settle_referrals() == 8  # one worker and one publisher reward per order

    assert await p.available(dave) == 4 * R_W
    assert await p.available(carol) == 4 * R_P
    assert await p.platform(AccountKind.REFERRAL_PAYABLE) == 0
    assert await jobs.settle_referrals() == 0  # nothing twice
    assert await p.available(dave) == 4 * R_W
    await p.assert_books_clean()


async def test_the_audit_job_reports_clean_books_and_keeps_the_last_report(database, caplog):
    await completed_orders(2)
    jobs = Jobs(config(database))

    report = await jobs.audit_ledger()

    assert report.ok, report.text()
    assert jobs.last_audit is report
    assert report.figures["escrow_fen"] == report.figures["unresolved_holds_fen"] == 0
    assert "CLEAN" in report.text()


async def test_the_audit_job_catches_a_balance_that_differs_from_its_postings(database, caplog):
    carol, dave = await completed_orders(1)
    await db.execute("UPDATE accounts SET balance_fen = balance_fen + 1 WHERE code = $1", f"u:{carol.id}:available")
    jobs = Jobs(config(database))

    with caplog.at_level(logging.ERROR, logger="market.scheduler"):
        report = await jobs.audit_ledger()

    assert not report.ok
    assert report.checks["balance = sum of postings"] is False
    assert any(f"u:{carol.id}:available" in problem for problem in report.problems)
    assert "PROBLEMS FOUND" in caplog.text


async def test_the_sweep_job_drains_with_the_configured_batch(database):
    alice = await p.publisher("alice", balance_fen=5 * (PRICE + FEE))
    task = await tasks.publish(alice.id, title="Scan", instructions="Scan", unit_price_fen=PRICE, quantity=5)
    os = [await orders.take(task.id, (await p.worker(f"w{i}")).id) for i in range(5)]
    clock.advance(300 + 1)

    assert await Jobs(config(database, sweep_batch=2)).sweep() == 5

    assert await Order.filter(status=OrderStatus.AWAITING_REVIEW).count() == 5


async def test_build_scheduler_registers_every_job_with_its_interval(database):
    cfg = config(database, sweep_interval_s=0.25, referral_settle_interval_s=3.0, ledger_audit_interval_s=120.0)

    scheduler = build_scheduler(cfg)

    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"sweep", "settle_referrals", "ledger_audit", "prune_outbox", "refresh_records", "refresh_all_records"}
    assert jobs["refresh_records"].trigger.interval == dt.timedelta(seconds=10)
    assert jobs["sweep"].trigger.interval == dt.timedelta(seconds=0.25)
    assert jobs["settle_referrals"].trigger.interval == dt.timedelta(seconds=3)
    assert jobs["ledger_audit"].trigger.interval == dt.timedelta(seconds=120)
    for job in jobs.values():
        assert (job.max_instances, job.coalesce) == (1, True)  # a slow round never piles up copies


async def test_a_failing_job_round_is_logged_not_raised(database, caplog):
    async def broken():
        raise RuntimeError("boom")

    scheduler = build_scheduler(config(database), extra=[(broken, 5.0, "broken")])
    job = scheduler.get_job("broken")

    with caplog.at_level(logging.ERROR, logger="market.scheduler"):
        await job.func()  # what APScheduler calls at each tick

    assert "scheduler job broken failed" in caplog.text


async def test_pruning_deletes_only_delivered_outbox_rows_older_than_the_retention(database):
    from models import clock
    from models.outbox import Outbox, OutboxStatus
    from server import push

    jobs = Jobs(config(database))
    now = clock.now()
    old = now - dt.timedelta(seconds=jobs.config.scheduler.outbox_retention_s + 60)
    for status, created in [
        (OutboxStatus.SENT, old), (OutboxStatus.REFUSED, old), (OutboxStatus.FAILED, old),
        (OutboxStatus.PENDING, old), (OutboxStatus.SENT, now),
    ]:
        await Outbox.create(channel="subscribe", event="x", user_id=1, payload={}, status=status, next_attempt_at=created,
                            created_at=created)
    for created in (old, old, now):  # the push log: stamped rows, pruned by seq
        await Outbox.create(channel="push", event="y", payload={}, next_attempt_at=created, created_at=created)
    await push.stamp(10)

    assert await jobs.prune_outbox() == 4
    left = sorted((r.channel.value, r.status.value, r.created_at == now) for r in await Outbox.all())
    assert left == [("push", "pending", True), ("subscribe", "failed", False), ("subscribe", "pending", False),
                    ("subscribe", "sent", True)]
    assert await push.positions() == (3, 2)  # a resume from below seq 2 is told replay_truncated


async def test_stopping_lets_a_running_round_finish_before_the_database_closes(database, monkeypatch):
    """A round in progress when the scheduler is stopped completes (within STOP_GRACE_S) before
    the database is closed — cancelled or cut off, its next query would have opened a connection
    nobody closes, and on SQLite that connection's thread kept the process from exiting."""
    import asyncio
    import threading

    from scheduler import runner, wechat_jobs

    started, finished = asyncio.Event(), []

    async def slow_round():
        started.set()
        await asyncio.sleep(0.5)  # e.g. waiting for WeChat
        finished.append(await p.worker(f"late{len(finished)}"))  # then it writes

    async def only_the_slow_round(config, services=None):
        return [(slow_round, 0.05, "slow")]

    monkeypatch.setattr(wechat_jobs, "jobs", only_the_slow_round)
    stop = asyncio.Event()
    running = asyncio.create_task(runner.run(config(database), stop=stop))
    await asyncio.wait_for(started.wait(), 5)
    stop.set()
    await asyncio.wait_for(running, 10)

    assert len(finished) == 1  # the round in progress ran to its end; no new round started
    assert not [t for t in threading.enumerate() if "_connection_worker_thread" in t.name and t.is_alive()]
