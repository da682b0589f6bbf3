"""Reconciliation with WeChat Pay: our books against WeChat's daily bills (issue 15).

Every day the scheduler (or `python -m server reconcile --date`) downloads WeChat Pay's trade bill
and fund-flow bill of one Beijing day and hands their rows to `compare`, which matches them against
our ledger, recharges and withdrawals. What does not agree becomes a `Difference` for an operator's
queue in the admin panel (and the metrics). **Nothing is ever changed automatically**: a difference
is evidence for a person, who fixes the money (if it needs fixing) with the panel's usual tools —
a manual adjustment with a reason — and then marks the difference resolved with a note.

The kinds of difference (`DifferenceKind`):

| kind | WeChat's bill says | our books say |
|---|---|---|
| payment_not_credited | a payment succeeded | no recharge credited for it (pending, closed, unknown) |
| credit_not_in_bill | nothing (that day) | a recharge credited as paid through WeChat |
| amount_mismatch | an amount | another amount for the same payment or transfer |
| refund_not_recorded | a refund | nothing: we never refund through WeChat Pay |
| payout_not_recorded | a transfer paid out | the withdrawal is not paid (or unknown) |
| payout_not_in_bill | nothing (that day) | a withdrawal paid through WeChat |
| transfer_stuck | — | a payout still in flight long after approval |

Each difference has a unique `key` (kind + WeChat's or our reference), so running a day again —
or two schedulers running it at once — records each difference once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from enum import StrEnum
from typing import Any, Iterable, Protocol

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.models import Model

from models import audit, clock, db
from models.errors import AlreadyDecided, InvalidInput, NotFound

CHINA_TZ = dt.timezone(dt.timedelta(hours=8))


class DifferenceKind(StrEnum):
    PAYMENT_NOT_CREDITED = "payment_not_credited"  # WeChat has money we did not credit
    CREDIT_NOT_IN_BILL = "credit_not_in_bill"  # we credited money WeChat does not show
    AMOUNT_MISMATCH = "amount_mismatch"  # both know it; the amounts differ
    REFUND_NOT_RECORDED = "refund_not_recorded"  # WeChat refunded; our books have no refund
    PAYOUT_NOT_RECORDED = "payout_not_recorded"  # WeChat paid a transfer we do not show as paid
    PAYOUT_NOT_IN_BILL = "payout_not_in_bill"  # we show a WeChat payout the fund bill does not
    TRANSFER_STUCK = "transfer_stuck"  # a payout in flight (paying) far too long


class DifferenceStatus(StrEnum):
    OPEN = "open"  # waiting for an operator
    RESOLVED = "resolved"  # an operator looked, acted outside this queue if needed, and wrote why


class RunStatus(StrEnum):
    RUNNING = "running"  # claimed by a scheduler or the command
    CLEAN = "clean"  # done: no new difference
    DIFFERENCES = "differences"  # done: differences recorded
    WAITING = "waiting"  # WeChat's bill was not ready yet; tried again later
    FAILED = "failed"  # an error; tried again later


class ReconciliationRun(Model):
    id = fields.BigIntField(primary_key=True)
    bill_date = fields.DateField(unique=True)  # the Beijing day reconciled
    status = fields.CharEnumField(RunStatus, max_length=16)
    attempts = fields.IntField(default=1)
    trade_rows = fields.IntField(default=0)
    fund_rows = fields.IntField(default=0)
    differences = fields.IntField(default=0)  # new differences found by the last attempt
    error = fields.CharField(max_length=255, null=True)
    started_at = fields.DatetimeField()
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "reconciliation_runs"


class Difference(Model):
    id = fields.BigIntField(primary_key=True)
    key = fields.CharField(max_length=128, unique=True)
    bill_date = fields.DateField()
    kind = fields.CharEnumField(DifferenceKind, max_length=24)
    ref_kind = fields.CharField(max_length=16, null=True)  # recharge | withdrawal
    ref_id = fields.BigIntField(null=True)
    wechat_ref = fields.CharField(max_length=64, null=True)  # transaction_id, refund or transfer bill number
    our_amount_fen = fields.BigIntField(null=True)
    wechat_amount_fen = fields.BigIntField(null=True)
    details = fields.JSONField(null=True)
    status = fields.CharEnumField(DifferenceStatus, max_length=16, default=DifferenceStatus.OPEN)
    created_at = fields.DatetimeField()
    resolved_at = fields.DatetimeField(null=True)
    resolved_by = fields.BigIntField(null=True)  # operator id
    note = fields.CharField(max_length=500, null=True)

    class Meta:
        table = "reconciliation_differences"
        indexes = (("status", "id"),)


# --- the bill rows, as wechat/bills.py reads them ----------------------------------------------------
class TradeLine(Protocol):
    traded_at: dt.datetime
    transaction_id: str
    out_trade_no: str
    state: str
    amount_fen: int
    refund_id: str
    out_refund_no: str
    refund_fen: int


class FundLine(Protocol):
    booked_at: dt.datetime
    wechat_no: str
    business_name: str
    business_type: str
    amount_fen: int
    voucher_no: str

    @property
    def is_out(self) -> bool: ...


@dataclasses.dataclass
class Found:
    """A difference before it is recorded."""

    kind: DifferenceKind
    ref: str  # makes the key unique together with the kind
    ref_kind: str | None = None
    ref_id: int | None = None
    wechat_ref: str | None = None
    our_amount_fen: int | None = None
    wechat_amount_fen: int | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.kind.value}:{self.ref}"[:128]


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The Beijing day as UTC instants [start, end)."""
    start = dt.datetime.combine(day, dt.time(), CHINA_TZ).astimezone(dt.timezone.utc)
    return start, start + dt.timedelta(days=1)


def _is_transfer(row: FundLine) -> bool:
    return row.is_out and ("转账" in row.business_name or "转账" in row.business_type)


async def compare(day: dt.date, trade: Iterable[TradeLine], fund: Iterable[FundLine], *,
                  stuck_after_s: float) -> list[Found]:
    """Match one day's bills against our books; return the differences (nothing is written).

    1. Trade bill payments: each SUCCESS row must have been credited once, for its amount — the
       ledger entry `wechatpay:<transaction_id>` (what the recharge rule writes).
    2. Our recharge credits booked that day must appear among those payments.
    3. Trade bill refunds: we never refund through WeChat Pay, so every refund is a difference.
    4. Fund bill transfers out: each must be a withdrawal we show as paid, for A − W.
    5. Our WeChat payouts finished that day must appear among those transfers.
    6. Payouts still 'paying' `stuck_after_s` after approval, whatever the day.
    Candidates of 2 and 5 can be false alarms at midnight (WeChat booked it the day before, we
    learned it after 00:00): the caller double-checks those with WeChat's query APIs.
    """
    from models.withdrawals import Withdrawal, WithdrawalStatus

    start, end = day_bounds(day)
    trade, fund = list(trade), list(fund)
    found: list[Found] = []

    # 1 + 3
    payments = {r.transaction_id: r for r in trade if r.state == "SUCCESS" and r.transaction_id}
    credits = await _credits([f"wechatpay:{tid}" for tid in payments])
    recharges = await _recharges([r.out_trade_no for r in payments.values()])
    for tid, r in payments.items():
        credited = credits.get(f"wechatpay:{tid}")
        recharge = recharges.get(r.out_trade_no)
        ref = {"ref_kind": "recharge" if recharge else None, "ref_id": recharge["id"] if recharge else None}
        details = {"out_trade_no": r.out_trade_no, "traded_at": r.traded_at.isoformat()}
        if credited is None:
            details["our_status"] = recharge["status"] if recharge else "no such recharge"
            found.append(Found(DifferenceKind.PAYMENT_NOT_CREDITED, tid, wechat_ref=tid, wechat_amount_fen=r.amount_fen,
                               our_amount_fen=recharge["amount_fen"] if recharge else None, details=details, **ref))
        elif credited != r.amount_fen:
            found.append(Found(DifferenceKind.AMOUNT_MISMATCH, tid, wechat_ref=tid, wechat_amount_fen=r.amount_fen,
                               our_amount_fen=credited, details=details | {"what": "payment"}, **ref))
    for r in trade:
        if r.state == "REFUND" or r.refund_id:
            ref = r.refund_id or r.out_refund_no or f"{r.transaction_id}:{r.traded_at.isoformat()}"
            found.append(Found(DifferenceKind.REFUND_NOT_RECORDED, ref, wechat_ref=r.refund_id or None,
                               wechat_amount_fen=r.refund_fen, details={"out_trade_no": r.out_trade_no,
                                                                         "transaction_id": r.transaction_id,
                                                                         "out_refund_no": r.out_refund_no,
                                                                         "refunded_at": r.traded_at.isoformat()}))
    # 2
    booked = await db.fetch(
        "SELECT e.key, e.memo, p.amount_fen FROM journal_entries e JOIN postings p ON p.entry_id = e.id "
        "JOIN accounts a ON a.id = p.account_id WHERE e.kind = 'recharge' AND e.key LIKE 'wechatpay:%' AND a.user_id IS NOT NULL "
        "AND e.created_at >= $1 AND e.created_at < $2", start, end)
    recharges.update(await _recharges([b["memo"] for b in booked if b["memo"] not in recharges]))
    for b in booked:
        tid = b["key"].removeprefix("wechatpay:")
        if tid not in payments:
            recharge = recharges.get(b["memo"])
            found.append(Found(DifferenceKind.CREDIT_NOT_IN_BILL, tid, ref_kind="recharge",
                               ref_id=recharge["id"] if recharge else None, wechat_ref=tid, our_amount_fen=b["amount_fen"],
                               details={"out_trade_no": b["memo"]}))
    # 4
    transfers = [r for r in fund if _is_transfer(r)]
    refs = {r.voucher_no for r in transfers if r.voucher_no} | {r.wechat_no for r in transfers if r.wechat_no}
    by_bill = {}
    if refs:
        for w in await Withdrawal.filter(out_bill_no__in=list(refs)):
            by_bill[w.out_bill_no] = w
        for w in await Withdrawal.filter(transfer_bill_no__in=list(refs)):
            by_bill[w.transfer_bill_no] = w
    seen: set[int] = set()
    for r in transfers:
        w = by_bill.get(r.voucher_no) or by_bill.get(r.wechat_no)
        ref = r.wechat_no or r.voucher_no
        details = {"out_bill_no": r.voucher_no, "transfer_bill_no": r.wechat_no, "booked_at": r.booked_at.isoformat()}
        if w is None:
            found.append(Found(DifferenceKind.PAYOUT_NOT_RECORDED, ref, wechat_ref=ref, wechat_amount_fen=r.amount_fen,
                               details=details | {"our_status": "no such withdrawal"}))
            continue
        seen.add(w.id)
        paid = w.amount_fen - w.fee_fen
        if w.status != WithdrawalStatus.PAID:
            found.append(Found(DifferenceKind.PAYOUT_NOT_RECORDED, ref, "withdrawal", w.id, ref, paid, r.amount_fen,
                               details | {"our_status": w.status.value}))
        elif paid != r.amount_fen:
            found.append(Found(DifferenceKind.AMOUNT_MISMATCH, ref, "withdrawal", w.id, ref, paid, r.amount_fen,
                               details | {"what": "transfer"}))
    # 5
    for w in await Withdrawal.filter(status=WithdrawalStatus.PAID, method="wechat", finished_at__gte=start,
                                     finished_at__lt=end):
        if w.id not in seen:
            found.append(Found(DifferenceKind.PAYOUT_NOT_IN_BILL, f"w{w.id}", "withdrawal", w.id,
                               w.transfer_bill_no or w.out_bill_no, w.amount_fen - w.fee_fen, None,
                               {"out_bill_no": w.out_bill_no, "transfer_bill_no": w.transfer_bill_no,
                                "finished_at": w.finished_at.isoformat()}))
    # 6
    stuck_before = clock.now() - dt.timedelta(seconds=stuck_after_s)
    for w in await Withdrawal.filter(status=WithdrawalStatus.PAYING, decided_at__lte=stuck_before):
        found.append(Found(DifferenceKind.TRANSFER_STUCK, f"w{w.id}", "withdrawal", w.id, w.transfer_bill_no or w.out_bill_no,
                           w.amount_fen - w.fee_fen, None,
                           {"out_bill_no": w.out_bill_no, "approved_at": w.decided_at.isoformat() if w.decided_at else None}))
    return found


async def _credits(keys: list[str]) -> dict[str, int]:
    """Entry key → the amount credited to the user (the positive user-side posting)."""
    out: dict[str, int] = {}
    for chunk in _chunks(keys, 500):
        marks = ", ".join(f"${i + 1}" for i in range(len(chunk)))
        for row in await db.fetch(
                "SELECT e.key, p.amount_fen FROM journal_entries e JOIN postings p ON p.entry_id = e.id "
                f"JOIN accounts a ON a.id = p.account_id WHERE a.user_id IS NOT NULL AND e.key IN ({marks})", *chunk):
            out[row["key"]] = out.get(row["key"], 0) + int(row["amount_fen"])
    return out


async def _recharges(out_trade_nos: list[str]) -> dict[str, dict[str, Any]]:
    from models.recharges import Recharge

    out: dict[str, dict[str, Any]] = {}
    for chunk in _chunks([n for n in out_trade_nos if n], 500):
        for r in await Recharge.filter(out_trade_no__in=chunk).values("id", "out_trade_no", "status", "amount_fen"):
            out[r["out_trade_no"]] = {**r, "status": str(getattr(r["status"], "value", r["status"]))}
    return out


def _chunks(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i:i + n]


async def record(day: dt.date, found: Iterable[Found]) -> list[Difference]:
    """Record the differences not recorded before (by key). Returns the new ones."""
    new = []
    now = clock.now()
    for f in found:
        try:
            d = await Difference.create(key=f.key, bill_date=day, kind=f.kind, ref_kind=f.ref_kind, ref_id=f.ref_id,
                                        wechat_ref=(f.wechat_ref or None) and f.wechat_ref[:64],
                                        our_amount_fen=f.our_amount_fen, wechat_amount_fen=f.wechat_amount_fen,
                                        details=f.details or None, created_at=now)
        except IntegrityError:
            continue  # found by an earlier run (or another scheduler at the same moment)
        new.append(d)
    return new


# --- runs ---------------------------------------------------------------------------------------------
async def claim_run(day: dt.date, *, force: bool = False, stale_after_s: float = 3600) -> ReconciliationRun | None:
    """Claim the reconciliation of `day`; None when it is done or another process is on it.

    A day whose run is clean or has differences is done; waiting/failed runs are claimed again;
    a run left 'running' longer than `stale_after_s` (its process died) is claimed again; `force`
    (the command) claims any run that is not running right now."""
    now = clock.now()
    try:
        return await ReconciliationRun.create(bill_date=day, status=RunStatus.RUNNING, started_at=now)
    except IntegrityError:
        pass
    retry = [RunStatus.WAITING, RunStatus.FAILED] + ([RunStatus.CLEAN, RunStatus.DIFFERENCES] if force else [])
    stale = now - dt.timedelta(seconds=stale_after_s)
    won = await db.execute(
        "UPDATE reconciliation_runs SET status = 'running', started_at = $1, finished_at = NULL, error = NULL, "
        "attempts = attempts + 1 WHERE bill_date = $2 AND (status IN (" + ", ".join(f"'{s.value}'" for s in retry) + ") "
        "OR (status = 'running' AND started_at < $3))", now, day, stale)
    return await ReconciliationRun.get(bill_date=day) if won == 1 else None


async def finish_run(run: ReconciliationRun, status: RunStatus, *, trade_rows: int = 0, fund_rows: int = 0,
                     differences: int = 0, error: str | None = None) -> None:
    await ReconciliationRun.filter(id=run.id, status=RunStatus.RUNNING).update(
        status=status, trade_rows=trade_rows, fund_rows=fund_rows, differences=differences,
        error=(error or None) and error[:255], finished_at=clock.now())
    await audit.record("system", None, f"reconciliation.{status.value}", "reconciliation", run.id,
                       data={"bill_date": run.bill_date.isoformat(), "differences": differences, "error": error})


async def paid_after_return(withdrawal, transfer_bill_no: str | None, wechat_amount_fen: Any) -> Difference | None:
    """WeChat says a payout SUCCEEDED whose money was already returned to the user's balance (an
    operator returned it while WeChat's query found no bill): the user holds it twice. Recorded at
    once as the difference the day's fund bill will show (`payout_not_recorded`, the same key, so the
    reconciliation run does not record it again) for an operator to recover — the books are right
    about what we decided and are not changed here. Returns the new difference, None if known."""
    ref = transfer_bill_no or withdrawal.out_bill_no
    amount = wechat_amount_fen if isinstance(wechat_amount_fen, int) and not isinstance(wechat_amount_fen, bool) else None
    found = Found(DifferenceKind.PAYOUT_NOT_RECORDED, ref, "withdrawal", withdrawal.id, ref,
                  withdrawal.amount_fen - withdrawal.fee_fen, amount,
                  {"out_bill_no": withdrawal.out_bill_no, "transfer_bill_no": transfer_bill_no,
                   "our_status": withdrawal.status.value, "what": "paid_after_return"})
    new = await record(clock.now().astimezone(CHINA_TZ).date(), [found])
    return new[0] if new else None


async def resolve(difference_id: int, operator_id: int, *, note: str) -> Difference:
    """An operator closes a difference with a note (what they checked, what they did). Money is
    never moved here: a correction is a manual adjustment, made and audited on its own."""
    from models.inputs import clean_text

    note = clean_text(note, "note", 500, required=True)
    from tortoise.transactions import in_transaction

    now = clock.now()
    async with in_transaction():
        won = await Difference.filter(id=difference_id, status=DifferenceStatus.OPEN).update(
            status=DifferenceStatus.RESOLVED, resolved_at=now, resolved_by=operator_id, note=note) == 1
        if won:
            d = await Difference.get(id=difference_id)
            await audit.record("operator", operator_id, "reconciliation.resolve", "reconciliation_difference", d.id,
                               data={"kind": d.kind.value, "key": d.key}, reason=note)
    d = await Difference.get_or_none(id=difference_id)
    if d is None:
        raise NotFound()
    if not won:
        raise AlreadyDecided("This difference is already resolved.", zh="这条差异已经处理过了。", status=d.status.value)
    return d


__all__ = ["Difference", "DifferenceKind", "DifferenceStatus", "Found", "InvalidInput", "ReconciliationRun",
           "RunStatus", "claim_run", "compare", "day_bounds", "finish_run", "paid_after_return", "record", "resolve"]
