"""Reconciliation with WeChat Pay and the payouts nobody confirmed: the services that call WeChat
and hand the results to the domain (models/reconciliation.py, models/withdrawals.py).

- `reconcile_day(services, config, day)`: download the day's trade bill and fund-flow bill, compare,
  double-check the midnight candidates with WeChat's query APIs, record the differences for the
  admin panel's queue. Never changes money. Used by the daily scheduler job
  (scheduler/reconcile_job.py) and by `python -m server reconcile --date YYYY-MM-DD`.
- `cancel_overdue_transfers(services, deadline_s)`: a payout still waiting for the user's
  confirmation (`wx.requestMerchantTransfer`) after the deadline is re-queried and, if still
  unconfirmed, cancelled at WeChat; once WeChat says CANCELLED (the notification, or the payout
  checker's query) the withdrawal fails and the whole amount goes back to the user's available
  balance (the domain's `payout_failed`) — never before.

As everywhere in the WeChat wiring, WeChat is never called inside a database transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from models import clock
from models import reconciliation as recon
from models.reconciliation import DifferenceKind, RunStatus
from server import metrics
from wechat import bills
from wechat.config import CHINA_TZ
from wechat.errors import PayApiError

log = logging.getLogger("market.reconciliation")

OVERDUE_BATCH = 50
CANCELLABLE = ("ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM")
OVERDUE_RECHECK_S = 30  # a cancel WeChat answered CANCELING is queried again after this


def yesterday(now: dt.datetime | None = None) -> dt.date:
    return ((now or clock.now()).astimezone(CHINA_TZ) - dt.timedelta(days=1)).date()


async def reconcile_day(services, config, day: dt.date, *, force: bool = False) -> tuple[RunStatus | None, list]:
    """Reconcile one Beijing day. Returns (status, new differences); status None = another process
    has it, or it is done already (and `force` is not set)."""
    run = await recon.claim_run(day, force=force)
    if run is None:
        return None, []
    try:
        trade = await bills.trade_bill(services.pay, day)
        fund = await bills.fund_bill(services.pay, day, config.reconciliation.fund_account_type)
    except PayApiError as exc:
        status = RunStatus.WAITING if exc.code in bills.BILL_NOT_READY else RunStatus.FAILED
        await recon.finish_run(run, status, error=f"{exc.code}: {exc.message}")
        metrics.RECONCILIATION_RUNS.labels(status.value).inc()
        (log.info if status == RunStatus.WAITING else log.error)("reconciliation %s: bills not had: %s", day, exc)
        return status, []
    except Exception as exc:  # noqa: BLE001 - a garbled bill or a network failure: try again later
        await recon.finish_run(run, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        metrics.RECONCILIATION_RUNS.labels(RunStatus.FAILED.value).inc()
        log.exception("reconciliation %s failed", day)
        return RunStatus.FAILED, []
    found = await recon.compare(day, trade.rows, fund.rows, stuck_after_s=config.reconciliation.stuck_transfer_s)
    found = [f for f in found if await _still_different(services, day, f)]
    new = await recon.record(day, found)
    status = RunStatus.DIFFERENCES if found else RunStatus.CLEAN
    await recon.finish_run(run, status, trade_rows=len(trade.rows), fund_rows=len(fund.rows), differences=len(new))
    metrics.RECONCILIATION_RUNS.labels(status.value).inc()
    for d in new:
        log.warning("reconciliation %s: %s %s (ours %s fen, WeChat %s fen)", day, d.kind.value, d.key,
                    d.our_amount_fen, d.wechat_amount_fen)
    log.info("reconciliation %s: %s, %s trade rows, %s fund rows, %s new differences", day, status.value,
             len(trade.rows), len(fund.rows), len(new))
    return status, new


async def _still_different(services, day: dt.date, f: recon.Found) -> bool:
    """Ask WeChat about what its bill of `day` lacks: a payment or transfer WeChat booked on another
    day (we credited it just after midnight, say) is that day's business, not a difference."""
    try:
        if f.kind == DifferenceKind.CREDIT_NOT_IN_BILL and f.details.get("out_trade_no"):
            tx = await services.pay.query_by_out_trade_no(f.details["out_trade_no"])
            when = tx.get("success_time") if tx.get("trade_state") in ("SUCCESS", "REFUND") else None
        elif f.kind == DifferenceKind.PAYOUT_NOT_IN_BILL and f.details.get("out_bill_no"):
            bill = await services.pay.query_transfer_bill(f.details["out_bill_no"])
            when = bill.get("update_time") if bill.get("state") == "SUCCESS" else None
        else:
            return True
    except Exception as exc:  # noqa: BLE001 - WeChat does not know it, or did not answer: keep it
        f.details["wechat_query"] = f"{type(exc).__name__}: {getattr(exc, 'code', '')}".strip(": ")
        return True
    f.details["wechat_time"] = when
    if when:
        try:
            return dt.datetime.fromisoformat(when).astimezone(CHINA_TZ).date() == day
        except ValueError:
            return True
    return True


async def run_command(config, date_text: str | None) -> int:
    """`python -m server reconcile --date YYYY-MM-DD` (default: yesterday in Beijing)."""
    from models import db
    from server.wechat_services import WeChatServices
    from server.observability import instrument_wechat

    try:
        day = dt.date.fromisoformat(date_text) if date_text else yesterday()
    except ValueError:
        print(f"reconcile: --date must be YYYY-MM-DD, not {date_text!r}")
        return 2
    await db.init_db(config.db_url_with_pool, migrate=True)
    services = await WeChatServices.start(config)
    instrument_wechat(services)
    try:
        status, new = await reconcile_day(services, config, day, force=True)
        run = await recon.ReconciliationRun.get_or_none(bill_date=day)
        open_count = await recon.Difference.filter(bill_date=day, status=recon.DifferenceStatus.OPEN).count()
    finally:
        await services.aclose()
        await db.close_db()
    if status is None:
        print(f"reconcile {day}: another process is reconciling this day right now; try again shortly")
        return 2
    print(f"reconcile {day}: {status.value}; trade rows {run.trade_rows}, fund rows {run.fund_rows}; "
          f"{len(new)} new differences, {open_count} open for this day")
    for d in new:
        print(f"  {d.kind.value}: {d.key} ours={d.our_amount_fen} wechat={d.wechat_amount_fen}")
    if status in (RunStatus.WAITING, RunStatus.FAILED):
        print(f"  {run.error}")
        return 2
    return 1 if status == RunStatus.DIFFERENCES else 0


async def cancel_overdue_transfers(services, deadline_s: float, batch: int = OVERDUE_BATCH) -> int:
    """Payouts approved more than `deadline_s` ago, still not final and not held for an operator.

    1. Query the bill: a final state the notification did not bring is applied as usual.
    2. Still waiting for the user (ACCEPTED / PROCESSING / WAIT_USER_CONFIRM): cancel it at WeChat.
       WeChat answers CANCELING, which is not final: the withdrawal stays 'paying' (the money in
       `withdrawing`) and fails — A back to available — only when WeChat says CANCELLED, through
       its notification or the payout checker's next query (server/wechat_payouts.py).
    3. TRANSFERING (the user confirmed; the money is moving) or CANCELING: wait.
    Each is a payout round under the checker's lease: one whose round is in flight waits for the next pass.
    Returns how many withdrawals it looked at."""
    from models.withdrawals import Withdrawal, WithdrawalStatus

    cutoff = clock.now() - dt.timedelta(seconds=deadline_s)
    due = await Withdrawal.filter(status=WithdrawalStatus.PAYING, transfer_bill_no__isnull=False,
                                  hold_reason__isnull=True, decided_at__lte=cutoff).order_by("decided_at").limit(batch)
    for w in due:
        try:
            await _cancel_one(services, w)
        except Exception:  # noqa: BLE001 - one bad row must not stop the round
            log.exception("withdrawal %s: overdue transfer check failed; will retry next round", w.id)
    return len(due)


async def _cancel_one(services, w) -> bool:
    """Query, then cancel, one payout's bill — as a payout round, under the payout checker's lease
    (server/wechat_payouts.py), so a checker's round in flight never writes back over the cancel
    what it read before it. False when a round holds the payout (nothing asked: try again later)."""
    from models import withdrawals as withdrawal_rules
    from server.wechat_payouts import PAYOUT_LEASE_S

    lease = await withdrawal_rules.claim_payout_round(w.id, PAYOUT_LEASE_S)
    if lease is None:
        return False
    w.round_lease = lease  # what the pass learns is written under this lease only
    try:
        await _cancel_claimed(services, w)
    finally:  # the round is over; a pass that found nothing to do leaves the checker's schedule as it was
        await withdrawal_rules.end_payout_round(w.id, lease, w.payout_check_at)
    return True


async def _cancel_claimed(services, w) -> None:
    from models import withdrawals as withdrawal_rules
    from models.users import User

    try:
        bill: dict[str, Any] = await services.pay.query_transfer_bill(w.out_bill_no)
    except PayApiError as exc:
        if not exc.not_found:
            log.warning("withdrawal %s: overdue transfer not queried (%s); next round", w.id, exc.code)
        return  # no bill at WeChat: the payout checker asks for it again
    state = bill.get("state")
    user = await User.get(id=w.user_id)
    if state in ("SUCCESS", "FAIL", "CANCELLED"):
        await services._apply_bill(w, user, bill, source="overdue check")
        return
    if state not in CANCELLABLE:
        return
    try:
        answer = await services.pay.cancel_transfer_bill(w.out_bill_no)
    except PayApiError as exc:
        log.warning("withdrawal %s: cancelling the overdue transfer failed (%s); will re-query", w.id, exc.code)
        return
    log.warning("withdrawal %s: transfer not confirmed by the user before the deadline: cancel asked (%s)",
                w.id, answer.get("state"))
    metrics.OVERDUE_TRANSFERS.inc()
    if answer.get("state") in ("SUCCESS", "FAIL", "CANCELLED"):
        await services._apply_bill(w, user, {**bill, **answer}, source="overdue cancel")
        return
    # CANCELING: the checker queries it soon; the money returns when WeChat says CANCELLED.
    await withdrawal_rules.note_payout(w.id, lease=w.round_lease, transfer_state=answer.get("state") or "CANCELING", package_info=None,
                                       payout_check_at=clock.now() + dt.timedelta(seconds=OVERDUE_RECHECK_S))
