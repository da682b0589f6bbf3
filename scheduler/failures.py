"""Scheduler job failures, where the dashboard can see them (issue 13: "the server log shows them;
the dashboard never does").

One `ops_status` row per job (`job:<name>`), overwritten in place: whether its last round failed,
the last error, and the times of its recent failures (at most RECENT). A successful round writes
only when the row says the job was failing, so a healthy scheduler writes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging

from models import clock, ops_status

log = logging.getLogger("market.scheduler")

PREFIX = "job:"
RECENT = 50
_failing: dict[str, bool] = {}  # this process's last known state per job (None: not read yet)


async def record_failure(name: str, exc: BaseException) -> None:
    try:
        row = await ops_status.get(PREFIX + name)
        recent = list(((row.detail or {}).get("recent") or []) if row else [])[-(RECENT - 1):]
        now = clock.now()
        recent.append(now.isoformat())
        await ops_status.put(PREFIX + name, False, {"error": f"{type(exc).__name__}: {exc}"[:300], "failed_at": now.isoformat(),
                                                    "recent": recent}, at=now)
        _failing[name] = True
    except Exception:  # the database itself may be what failed; the log line is already written
        log.warning("could not record the failure of scheduler job %s", name, exc_info=True)


async def record_success(name: str) -> None:
    if _failing.get(name) is False:
        return
    try:
        row = await ops_status.get(PREFIX + name)
        if row is not None and row.ok is False:
            await ops_status.put(PREFIX + name, True, row.detail)  # keeps the last error and the recent failures
        _failing[name] = False
    except Exception:
        log.warning("could not record the recovery of scheduler job %s", name, exc_info=True)


async def summary(window_s: int = 86_400) -> list[dict]:
    """Every job that failed in the last `window_s` or whose last round failed, newest first."""
    from models.ops_status import OpsStatus

    since = clock.now() - dt.timedelta(seconds=window_s)
    out = []
    for row in await OpsStatus.filter(key__startswith=PREFIX):
        detail = row.detail or {}
        recent = [dt.datetime.fromisoformat(t) for t in detail.get("recent") or []]
        n = sum(1 for t in recent if t >= since)
        if n or row.ok is False:
            out.append({"job": row.key[len(PREFIX):], "failing": row.ok is False, "failures": n, "error": detail.get("error", ""),
                        "failed_at": dt.datetime.fromisoformat(detail["failed_at"]) if detail.get("failed_at") else None})
    return sorted(out, key=lambda r: r["failed_at"] or since, reverse=True)
