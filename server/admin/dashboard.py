"""The dashboard's figures: one snapshot, read by the page and by its JSON poll.

Every figure is one indexed query (counts by state, today's sums since 00:00 Asia/Shanghai). The
ledger audit reads every posting, so it runs at most once per AUDIT_EVERY_S per process: the first
request waits for it, later ones get the cached report while a fresh one runs in the background.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time

from tortoise.functions import Count, Min, Sum

from models import clock, ledger
from models.ledger import AccountKind, EntryKind, Posting
from models.orders import Order, OrderStatus
from models.outbox import Channel, Outbox, OutboxStatus
from models.reconciliation import Difference, DifferenceKind, DifferenceStatus
from models.referrals import ReferralReward
from models.tasks import Task, TaskStatus
from models.withdrawals import Withdrawal, WithdrawalStatus
from server.admin import units

AUDIT_EVERY_S = 60.0


class AuditCache:
    """The last ledger audit of this process and when it ran."""

    def __init__(self) -> None:
        self.report: ledger.AuditReport | None = None
        self.at: float = 0.0
        self.at_utc = None
        self.error: str | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        async with self._lock:
            if self.report is not None and time.monotonic() - self.at < AUDIT_EVERY_S:
                return
            try:
                self.report = await ledger.audit()
                self.error = None
            except Exception as exc:  # a broken audit is shown, never a broken dashboard
                self.error = type(exc).__name__
            self.at, self.at_utc = time.monotonic(), clock.now()

    async def get(self) -> "AuditCache":
        if self.report is None and self.error is None:
            await self._run()
        elif time.monotonic() - self.at >= AUDIT_EVERY_S and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self


async def _sum(qs, field: str, group_by: str | None = None) -> int:
    """SUM(field) over the query. With a filter on a related table Tortoise groups by every column
    unless told otherwise, so such queries name one column that the filter fixes (`group_by`)."""
    qs = qs.annotate(s=Sum(field))
    if group_by:
        qs = qs.group_by(group_by)
    rows = await qs.values("s")
    return sum(int(r["s"] or 0) for r in rows)


async def snapshot(audit_cache: AuditCache) -> dict:
    now = clock.now()
    start = units.day_start_utc(units.today_local(now))

    by_state = {s.value: 0 for s in OrderStatus}
    for row in await Order.annotate(n=Count("id")).group_by("status").values("status", "n"):
        by_state[str(getattr(row["status"], "value", row["status"]))] = int(row["n"])

    open_tasks = await Task.filter(status=TaskStatus.OPEN).count()
    open_slots = await _sum(Task.filter(status=TaskStatus.OPEN), "slots_untaken")

    published = await _sum(
        Posting.filter(created_at__gte=start, entry__kind=EntryKind.PUBLISH, account__kind=AccountKind.ESCROW), "amount_fen", "account__kind"
    )
    completed_q = Order.filter(status=OrderStatus.COMPLETED, finished_at__gte=start)
    completed_n = await completed_q.count()
    completed = await _sum(completed_q, "unit_price_fen")
    refunded = await _sum(
        Posting.filter(
            created_at__gte=start, entry__kind__in=[EntryKind.SLOT_REFUND, EntryKind.ORDER_FAIL], account__kind=AccountKind.AVAILABLE
        ),
        "amount_fen",
        "account__kind",
    )
    fees_today = await _sum(Posting.filter(created_at__gte=start, account__kind=AccountKind.FEES), "amount_fen", "account__kind")
    fees_total = await ledger.platform_balance(AccountKind.FEES)
    referral_today = await _sum(ReferralReward.filter(created_at__gte=start), "amount_fen")
    referral_total = await _sum(ReferralReward.all(), "amount_fen")

    appeals = await Order.filter(status=OrderStatus.APPEALING).count()
    oldest_appeal = await Order.filter(status=OrderStatus.APPEALING).annotate(m=Min("appealed_at")).values("m")
    w_pending = await Withdrawal.filter(status=WithdrawalStatus.PENDING).count()
    w_pending_sum = await _sum(Withdrawal.filter(status=WithdrawalStatus.PENDING), "amount_fen")
    w_paying = await Withdrawal.filter(status=WithdrawalStatus.PAYING).count()
    w_held = await Withdrawal.filter(status=WithdrawalStatus.PAYING, hold_reason__isnull=False).count()  # waiting for an operator
    # WeChat paid a payout our books do not show as paid (the worst: after its money was returned,
    # models/reconciliation.paid_after_return): money to recover, in the reconciliation room.
    unrecorded_payouts = await Difference.filter(status=DifferenceStatus.OPEN, kind=DifferenceKind.PAYOUT_NOT_RECORDED).count()

    oldest_due = await Order.filter(due_at__lte=now).order_by("due_at").first().values_list("due_at", flat=True)
    oldest_task = await Task.filter(status=TaskStatus.OPEN, take_deadline_at__lte=now).order_by("take_deadline_at").first().values_list(
        "take_deadline_at", flat=True
    )
    overdue = [d for d in (oldest_due, oldest_task) if d is not None]
    lag_s = int((now - min(overdue)).total_seconds()) if overdue else 0
    # Per channel, so each count reads its own partial index (outbox_subscribe_due, outbox_push_pending).
    outbox_pending = sum([await Outbox.filter(status=OutboxStatus.PENDING, channel=channel).count() for channel in Channel])
    outbox_failed = await Outbox.filter(status=OutboxStatus.FAILED).count()

    cache = await audit_cache.get()
    report = cache.report
    appeal_age = None
    if oldest_appeal and oldest_appeal[0]["m"] is not None:
        m = oldest_appeal[0]["m"]
        m = dt.datetime.fromisoformat(m) if isinstance(m, str) else m
        appeal_age = int((now - (m if m.tzinfo else m.replace(tzinfo=dt.timezone.utc))).total_seconds())
    return {
        "now": now,
        "orders": by_state,
        "open_tasks": open_tasks,
        "open_slots": open_slots,
        "published_fen": published,
        "completed_n": completed_n,
        "completed_fen": completed,
        "refunded_fen": refunded,
        "fees_today_fen": fees_today,
        "fees_total_fen": fees_total,
        "referral_today_fen": referral_today,
        "referral_total_fen": referral_total,
        "appeals": appeals,
        "oldest_appeal_s": appeal_age,
        "withdrawals_pending": w_pending,
        "withdrawals_pending_fen": w_pending_sum,
        "withdrawals_paying": w_paying,
        "withdrawals_held": w_held,
        "payouts_not_recorded": unrecorded_payouts,
        "timer_lag_s": lag_s,
        "outbox_pending": outbox_pending,
        "outbox_failed": outbox_failed,
        "audit_ok": (report.ok if report is not None else None) if cache.error is None else False,
        "audit_problems": (len(report.problems) if report is not None else 0),
        "audit_first_problem": (report.problems[0] if report is not None and report.problems else (cache.error or "")),
        "audit_at": cache.at_utc,
    }
