"""The dashboard's slower figures (issue 13 "Dashboard"): tasks per state; recharges, withdrawals
paid and new users today against yesterday; the last 7 days; the oldest pending withdrawal; failing
scheduler jobs and subscription messages given up.

Days are Asia/Shanghai days. The 7-day series read ranges of `recharges.paid_at`,
`withdrawals.finished_at`, `users.created_at` and `orders.finished_at` (indexed by migration
0011_admin_a), and the figures are computed at most once per CACHE_S per server; the page and its poll share them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from tortoise.functions import Count, Sum

from models import clock
from models.orders import Order, OrderStatus
from models.outbox import Channel, Outbox, OutboxStatus
from models.recharges import Recharge, RechargeStatus
from models.tasks import Task, TaskStatus
from models.users import User
from models.withdrawals import Withdrawal, WithdrawalStatus
from scheduler import failures
from server.admin import units

CACHE_S = 30.0
DAYS = 7


async def _sum_count(qs, field: str) -> tuple[int, int]:
    rows = await qs.annotate(s=Sum(field), n=Count("id")).values("s", "n")
    return (int(rows[0]["s"] or 0), int(rows[0]["n"] or 0)) if rows else (0, 0)


async def _day(start: dt.datetime, end: dt.datetime) -> dict[str, int]:
    recharge_fen, recharges = await _sum_count(Recharge.filter(status=RechargeStatus.PAID, paid_at__gte=start, paid_at__lt=end), "amount_fen")
    paid_fen, paid = await _sum_count(Withdrawal.filter(status=WithdrawalStatus.PAID, finished_at__gte=start, finished_at__lt=end), "amount_fen")
    return {
        "recharge_fen": recharge_fen, "recharges": recharges, "withdrawn_fen": paid_fen, "withdrawals_paid": paid,
        "new_users": await User.filter(created_at__gte=start, created_at__lt=end).count(),
        "completed": await Order.filter(status=OrderStatus.COMPLETED, finished_at__gte=start, finished_at__lt=end).count(),
    }


async def compute() -> dict:
    now = clock.now()
    today = units.today_local(now)
    days = [today - dt.timedelta(days=i) for i in range(DAYS - 1, -1, -1)]
    series = []
    for day in days:
        start = units.day_start_utc(day)
        series.append(await _day(start, min(now, units.day_start_utc(day + dt.timedelta(days=1)))))
    # yesterday up to this time of day, so "today vs yesterday" compares like with like
    y_start = units.day_start_utc(today - dt.timedelta(days=1))
    yesterday_so_far = await _day(y_start, y_start + (now - units.day_start_utc(today)))

    tasks = {s.value: 0 for s in TaskStatus}
    for row in await Task.annotate(n=Count("id")).group_by("status").values("status", "n"):
        tasks[str(getattr(row["status"], "value", row["status"]))] = int(row["n"])
    oldest = await Withdrawal.filter(status=WithdrawalStatus.PENDING).order_by("id").first()
    subscribe_failed = await Outbox.filter(status=OutboxStatus.FAILED, channel=Channel.SUBSCRIBE).count()
    recent_failed = await Outbox.filter(status=OutboxStatus.FAILED, channel=Channel.SUBSCRIBE).order_by("-id").limit(5)
    return {
        "days": [d.strftime("%m-%d") for d in days],
        "series": series,
        "today": series[-1],
        "yesterday": series[-2] if len(series) > 1 else {},
        "yesterday_so_far": yesterday_so_far,
        "tasks": tasks,
        "oldest_withdrawal_id": oldest.id if oldest else None,
        "oldest_withdrawal_s": int((now - oldest.created_at).total_seconds()) if oldest else None,
        "jobs": await failures.summary(),
        "subscribe_failed": subscribe_failed,
        "subscribe_recent": [{"id": o.id, "event": o.event, "user_id": o.user_id, "error": o.last_error or "", "at": o.created_at}
                             for o in recent_failed],
    }


class Cache:
    """The last figures of one app (kept on app.ctx, so each server, and each test's, has its own)."""

    def __init__(self) -> None:
        self.at = -1e9
        self.value: dict | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> dict:
        """The figures, at most CACHE_S old (one computation at a time)."""
        if self.value is not None and time.monotonic() - self.at < CACHE_S:
            return self.value
        async with self._lock:
            if self.value is None or time.monotonic() - self.at >= CACHE_S:
                self.value, self.at = await compute(), time.monotonic()
            return self.value


def _change(today: int, before: int) -> str:
    if before == today:
        return "±0"
    if before == 0:
        return "+∞" if today > 0 else "±0"
    pct = round((today - before) * 100 / before)
    return f"{pct:+d}%"


def values(t, tr: dict) -> dict[str, str]:
    """Every figure as the text of its [data-k] element on the dashboard (the poll replaces them)."""
    from server.admin import i18n

    today, before = tr["today"], tr["yesterday_so_far"]
    v: dict[str, str] = {f"tasks.{k}": str(n) for k, n in tr["tasks"].items()}
    money = {"recharge_fen", "withdrawn_fen"}
    for key in ("recharge_fen", "recharges", "withdrawn_fen", "withdrawals_paid", "new_users"):
        show = units.yuan if key in money else str
        v[f"today.{key}"] = show(today[key])
        v[f"yesterday.{key}"] = t("yesterday by now {v} ({c})", v=show(before[key]), c=_change(today[key], before[key]))
    v["oldest_withdrawal"] = i18n.duration(t.lang, tr["oldest_withdrawal_s"]) if tr["oldest_withdrawal_s"] is not None else "—"
    v["jobs_failing"] = str(sum(1 for j in tr["jobs"] if j["failing"]))
    v["job_failures"] = str(sum(j["failures"] for j in tr["jobs"]))
    v["subscribe_failed"] = str(tr["subscribe_failed"])
    return v


def charts(t, tr: dict):
    from server.admin import chart

    money = chart.bars(tr["days"], [(t("Recharges"), "#1a66d6", [d["recharge_fen"] for d in tr["series"]]),
                                    (t("Withdrawals paid"), "#b4421e", [d["withdrawn_fen"] for d in tr["series"]])],
                       fmt=units.yuan, title=t("Last 7 days") + " · " + t("Money in and out"))
    people = chart.bars(tr["days"], [(t("New users"), "#187a3c", [d["new_users"] for d in tr["series"]]),
                                     (t("Orders completed"), "#8a5a00", [d["completed"] for d in tr["series"]])],
                        title=t("Last 7 days") + " · " + t("New users and completed orders"))
    return money, people
