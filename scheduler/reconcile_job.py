"""Scheduler jobs of operations (issue 15), beside the WeChat jobs of scheduler/wechat_jobs.py:

- `reconcile` — every `reconciliation.check_interval_s`: once it is past `reconciliation.run_after`
  (Beijing time; WeChat's bills of yesterday are ready from about 10:00), reconcile yesterday unless
  that day is done. Several schedulers may run it: the day is claimed in the database
  (`models.reconciliation.claim_run`), so one of them does the work; a day whose bills were not
  ready, or whose run failed, is claimed again at the next check.
- `overdue_transfers` — every `payout_check_interval_s`: payouts the user has not confirmed before
  `reconciliation.transfer_confirm_deadline_s` are cancelled at WeChat and refunded.
- `heartbeat` — every 10 s: "a scheduler is alive" for the metrics (market_scheduler_heartbeat_age_seconds).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import Any

from models import clock, ops_status
from server.config import Config
from wechat.config import CHINA_TZ

HEARTBEAT_S = 10.0


def due_day(config: Config, now: dt.datetime | None = None) -> dt.date | None:
    """Yesterday (Beijing), once today's local time is past run_after; else None."""
    local = (now or clock.now()).astimezone(CHINA_TZ)
    hour, minute = (int(x) for x in config.reconciliation.run_after.split(":"))
    if (local.hour, local.minute) < (hour, minute):
        return None
    return (local - dt.timedelta(days=1)).date()


def jobs(config: Config, services) -> list[tuple[Any, float, str]]:
    from server.reconciliation import cancel_overdue_transfers, reconcile_day

    r = config.reconciliation

    async def reconcile() -> None:
        day = due_day(config)
        if r.enabled and day is not None:
            await reconcile_day(services, config, day)

    async def overdue_transfers() -> int:
        return await cancel_overdue_transfers(services, r.transfer_confirm_deadline_s)

    async def heartbeat() -> None:
        await ops_status.put(ops_status.SCHEDULER_HEARTBEAT, True, {"node": socket.gethostname(), "pid": os.getpid()})

    return [
        (reconcile, r.check_interval_s, "reconcile"),
        (overdue_transfers, config.scheduler.payout_check_interval_s, "overdue_transfers"),
        (heartbeat, HEARTBEAT_S, "heartbeat"),
    ]
