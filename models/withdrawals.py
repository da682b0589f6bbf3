"""Withdrawals (SPEC §2 flow 6): a user moves money out, an operator decides, a payout settles it.

Requesting moves A from `available` to `withdrawing` at once, so the money cannot be spent twice
while it waits. The withdrawal fee W = floor(A × withdraw_fee_bp) is taken only when the payout
succeeds; a rejection or a failed payout returns all of A.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from zoneinfo import ZoneInfo

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import audit, clock, db, ledger
from models import settings as market_settings
from models.errors import (
    AlreadyDecided,
    DailyWithdrawalCapReached,
    IdempotencyConflict,
    InvalidInput,
    UserBanned,
    UserNotFound,
    WithdrawalNotFound,
    WithdrawalOutOfRange,
)
from models.ledger import AccountKind, EntryKind, Leg
from models.outbox import Pending
from models.settings import BP

# The day a daily cap counts in: the operators' and users' own calendar.
MARKET_TZ = ZoneInfo("Asia/Shanghai")


class WithdrawalStatus(StrEnum):
    PENDING = "pending"  # waiting for an operator; A sits in `withdrawing`
    PAYING = "paying"  # approved; the WeChat transfer is in flight
    PAID = "paid"  # final: A − W paid out, W to fees
    REJECTED = "rejected"  # final: an operator refused; A back to available
    FAILED = "failed"  # final: the payout failed or was cancelled; A back to available


class WithdrawalEvent(StrEnum):
    APPROVE = "approve"  # operator: pay through WeChat's merchant transfer
    MARK_PAID = "mark_paid"  # operator: paid by hand outside the system, with a reference
    REJECT = "reject"  # operator, with a reason
    PAYOUT_SUCCEEDED = "payout_succeeded"  # WeChat: the transfer reached the user
    PAYOUT_FAILED = "payout_failed"  # WeChat: the transfer failed / was cancelled / expired


W, WE = WithdrawalStatus, WithdrawalEvent
WITHDRAWAL_TRANSITIONS: dict[tuple[WithdrawalStatus, WithdrawalEvent], WithdrawalStatus] = {
    (W.PENDING, WE.APPROVE): W.PAYING,
    (W.PENDING, WE.MARK_PAID): W.PAID,
    (W.PENDING, WE.REJECT): W.REJECTED,
    (W.PAYING, WE.PAYOUT_SUCCEEDED): W.PAID,
    (W.PAYING, WE.PAYOUT_FAILED): W.FAILED,
}


class Withdrawal(Model):
    id = fields.BigIntField(primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="withdrawals", on_delete=fields.RESTRICT)
    request_id = fields.CharField(max_length=64)
    amount_fen = fields.BigIntField()  # A
    fee_fen = fields.BigIntField()  # W, fixed at request time
    status = fields.CharEnumField(WithdrawalStatus, max_length=16, default=WithdrawalStatus.PENDING)
    method = fields.CharField(max_length=16, null=True)  # wechat | manual
    reference = fields.CharField(max_length=128, null=True)  # manual payment reference
    out_bill_no = fields.CharField(max_length=64, null=True, unique=True)  # WeChat transfer bill
    transfer_bill_no = fields.CharField(max_length=64, null=True)
    package_info = fields.TextField(null=True)  # for wx.requestMerchantTransfer (user confirmation)
    reason = fields.CharField(max_length=255, null=True)  # rejection / failure reason
    operator_id = fields.BigIntField(null=True)
    created_at = fields.DatetimeField()
    decided_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "withdrawals"
        unique_together = (("user_id", "request_id"),)
        indexes = (("status", "id"),)
        constraints = (
            CheckConstraint(check="amount_fen > 0 AND fee_fen >= 0 AND fee_fen < amount_fen", name="ck_withdrawals_money"),
        )


def market_day(at: dt.datetime) -> dt.date:
    return at.astimezone(MARKET_TZ).date()


async def request(user_id: int, amount_fen: int, *, request_id: str) -> Withdrawal:
    """Ask to withdraw A: min ≤ A ≤ available, within the daily cap. A repeat request_id returns
    the first withdrawal."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise InvalidInput("amount_fen must be a whole number of fen.", field="amount_fen")
    if not isinstance(request_id, str) or not 1 <= len(request_id.strip()) <= 64:
        raise InvalidInput("request_id is required (1–64 characters).", field="request_id")
    request_id = request_id.strip()
    earlier = await Withdrawal.get_or_none(user_id=user_id, request_id=request_id)
    if earlier is not None:
        if earlier.amount_fen != amount_fen:
            raise IdempotencyConflict()
        return earlier
    s = await market_settings.current()
    if amount_fen < s.min_withdraw_fen or amount_fen > s.daily_withdraw_cap_fen:
        raise WithdrawalOutOfRange(
            f"A withdrawal must be between {s.min_withdraw_fen} and {s.daily_withdraw_cap_fen} fen.",
            min_fen=s.min_withdraw_fen, max_fen=s.daily_withdraw_cap_fen,
        )
    now = clock.now()
    today = market_day(now)
    try:
        async with in_transaction():
            # The daily cap, as one conditional UPDATE (concurrent requests cannot both slip under it).
            user = await db.fetch_one(
                "UPDATE users SET withdrawn_today_fen = CASE WHEN withdraw_day = $1 THEN withdrawn_today_fen + $2 ELSE $2 END, "
                "withdraw_day = $1 WHERE id = $3 AND NOT banned "
                "AND (withdraw_day IS NULL OR withdraw_day <> $1 OR withdrawn_today_fen + $2 <= $4) RETURNING id",
                today, amount_fen, user_id, s.daily_withdraw_cap_fen,
            )
            if user is None:
                found = await db.fetch_one("SELECT banned FROM users WHERE id = $1", user_id)
                if found is None:
                    raise UserNotFound()
                if found["banned"]:
                    raise UserBanned()
                raise DailyWithdrawalCapReached(cap_fen=s.daily_withdraw_cap_fen)
            w = await Withdrawal.create(
                user_id=user_id, request_id=request_id, amount_fen=amount_fen,
                fee_fen=amount_fen * s.withdraw_fee_bp // BP, created_at=now,
            )
            await ledger.post(
                f"withdrawal:{w.id}:request",
                EntryKind.WITHDRAW_REQUEST,
                [
                    Leg(ledger.user_account(user_id, AccountKind.AVAILABLE), -amount_fen),
                    Leg(ledger.user_account(user_id, AccountKind.WITHDRAWING), amount_fen),
                ],
            )
            out = Pending()
            out.push("withdrawal.changed", _payload(w), user_id)
            out.push("wallet.changed", {"reason": "withdrawal_requested", "amount_fen": -amount_fen}, user_id)
            await out.write()
            await audit.record("user", user_id, "withdrawal.request", "withdrawal", w.id, data={"amount_fen": amount_fen, "fee_fen": w.fee_fen})
        return w
    except IntegrityError:  # the same request_id raced itself; the first one won
        return await Withdrawal.get(user_id=user_id, request_id=request_id)


def _payload(w: Withdrawal) -> dict:
    return {"withdrawal_id": w.id, "status": w.status.value, "amount_fen": w.amount_fen, "fee_fen": w.fee_fen}


async def _act(wid: int, event: WithdrawalEvent, actor: tuple[str, int | None], values: dict, effects, *, reason: str | None = None) -> Withdrawal:
    source = next(src for (src, ev) in WITHDRAWAL_TRANSITIONS if ev == event)
    target = WITHDRAWAL_TRANSITIONS[(source, event)]
    async with in_transaction():
        won = await Withdrawal.filter(id=wid, status=source).update(status=target, **values) == 1
        if won:
            w = await Withdrawal.get(id=wid)
            out = Pending()
            if effects:
                await effects(w)
            out.push("withdrawal.changed", _payload(w), w.user_id)
            if target in (W.PAID, W.REJECTED, W.FAILED):
                out.subscribe(f"withdrawal_{target.value}", _payload(w) | {"reason": w.reason}, w.user_id)
            await out.write()
            await audit.record(actor[0], actor[1], f"withdrawal.{event.value}", "withdrawal", wid, data={"from": source.value, "to": target.value}, reason=reason)
    if not won:
        current = await Withdrawal.get_or_none(id=wid)
        if current is None:
            raise WithdrawalNotFound()
        raise AlreadyDecided(f"The withdrawal is already {current.status.value}.", status=current.status.value)
    return w


async def _pay_out(w: Withdrawal) -> None:
    await ledger.post(
        f"withdrawal:{w.id}:paid",
        EntryKind.WITHDRAW_PAID,
        [
            Leg(ledger.user_account(w.user_id, AccountKind.WITHDRAWING), -w.amount_fen),
            Leg(ledger.platform_account(AccountKind.PAYOUTS, w.id), w.amount_fen - w.fee_fen),
            Leg(ledger.platform_account(AccountKind.FEES, w.id), w.fee_fen),
        ],
    )


async def _give_back(w: Withdrawal) -> None:
    # Money that never left does not count against the day's cap (if it is still that day).
    await db.execute(
        "UPDATE users SET withdrawn_today_fen = withdrawn_today_fen - $1 "
        "WHERE id = $2 AND withdraw_day = $3 AND withdrawn_today_fen >= $1",
        w.amount_fen, w.user_id, market_day(w.created_at),
    )
    await ledger.post(
        f"withdrawal:{w.id}:return",
        EntryKind.WITHDRAW_RETURNED,
        [
            Leg(ledger.user_account(w.user_id, AccountKind.WITHDRAWING), -w.amount_fen),
            Leg(ledger.user_account(w.user_id, AccountKind.AVAILABLE), w.amount_fen),
        ],
    )


async def approve(wid: int, operator_id: int) -> Withdrawal:
    """Approve for payment through WeChat: the transfer itself is made after commit (wechat/)."""
    now = clock.now()
    return await _act(
        wid, WE.APPROVE, ("operator", operator_id),
        {"method": "wechat", "operator_id": operator_id, "decided_at": now, "out_bill_no": f"W{wid:012d}"}, None,
    )


async def mark_paid(wid: int, operator_id: int, *, reference: str) -> Withdrawal:
    if not isinstance(reference, str) or not reference.strip() or len(reference.strip()) > 128:
        raise InvalidInput("A payment reference (1–128 characters) is required.", field="reference")
    now = clock.now()
    return await _act(
        wid, WE.MARK_PAID, ("operator", operator_id),
        {"method": "manual", "reference": reference.strip(), "operator_id": operator_id, "decided_at": now, "finished_at": now},
        _pay_out,
    )


async def reject(wid: int, operator_id: int, *, reason: str) -> Withdrawal:
    if not isinstance(reason, str) or not reason.strip() or len(reason.strip()) > 255:
        raise InvalidInput("A reason (1–255 characters) is required.", field="reason")
    now = clock.now()
    return await _act(
        wid, WE.REJECT, ("operator", operator_id),
        {"reason": reason.strip(), "operator_id": operator_id, "decided_at": now, "finished_at": now},
        _give_back, reason=reason.strip(),
    )


async def payout_succeeded(wid: int, *, transfer_bill_no: str | None = None) -> Withdrawal:
    return await _act(
        wid, WE.PAYOUT_SUCCEEDED, ("wechat", None),
        {"transfer_bill_no": transfer_bill_no, "finished_at": clock.now()}, _pay_out,
    )


async def payout_failed(wid: int, *, reason: str) -> Withdrawal:
    return await _act(
        wid, WE.PAYOUT_FAILED, ("wechat", None),
        {"reason": (reason or "payout failed")[:255], "finished_at": clock.now()}, _give_back, reason=reason,
    )


async def get_withdrawal(wid: int, *, user_id: int | None = None) -> Withdrawal:
    w = await Withdrawal.get_or_none(id=wid)
    if w is None or (user_id is not None and w.user_id != user_id):
        raise WithdrawalNotFound()
    return w
