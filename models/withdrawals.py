"""Withdrawals (SPEC §2 flow 6): a user moves money out, an operator decides, a payout settles it.

Requesting moves A from `available` to `withdrawing` at once, so the money cannot be spent twice
while it waits. The withdrawal fee W = floor(A × withdraw_fee_bp) is taken only when the payout
succeeds; a rejection or a failed payout returns all of A.

A payout through WeChat ('paying') ends only on WeChat's word — the bill SUCCEEDED (paid) or FAILED /
was CANCELLED (A returned) — or on an operator's. While it is in flight the row carries what the
payout needs and what we know of WeChat's bill (`transfer_state`, `payout_check_at`, the last
transient trouble in `payout_error`). When WeChat refuses the transfer for a reason no retry can cure
(its IP allowlist, a scene not enabled, the day's quota...) and no bill exists, the payout is *held*
(`hold_reason`): the money stays in `withdrawing`, nothing retries, and an operator decides — retry
after fixing the account (`release_hold`), give the money back (`return_held`) or pay by hand
(`paid_by_hand`). The services that ask WeChat first live in server/wechat_payouts.py.

The payee's real name, which WeChat requires from ¥2 000 on, is taken with the request, kept only
while the payout may need it, never shown, logged or audited, and erased by the transition that
makes the withdrawal final.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from zoneinfo import ZoneInfo

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
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
    RealNameRequired,
    UserBanned,
    Conflict,
    UserNotFound,
    WithdrawalNotFound,
    WithdrawalOutOfRange,
)
from models.inputs import check_text
from models.ledger import AccountKind, EntryKind, Leg
from models.outbox import Pending
from models.settings import BP

# The day a daily cap counts in: the operators' and users' own calendar.
MARKET_TZ = ZoneInfo("Asia/Shanghai")
# WeChat's merchant transfer needs the payee's real name when it pays ¥2 000 or more (A − W).
REAL_NAME_REQUIRED_FEN = 200_000
REAL_NAME_MAX_CHARS = 32


class PayoutNotHeld(Conflict):
    """Operators' panel only: retry/return/pay-by-hand on a payout that is not held."""

    code = "payout_not_held"
    message, message_zh = "This payout is not waiting for an operator.", "这笔打款不在等待人工处理。"
    hint = "The payout is not held (details.status): WeChat is still working on it or it has ended."
    details_schema = {"status": {"type": "string"}}


class PayoutCheckUnderWay(Conflict):
    """Operators' panel only: a re-query while a payout round (the checker's) is asking WeChat."""

    code = "payout_check_under_way"
    message = "This payout is being checked with WeChat right now; try again in a moment."
    message_zh = "这笔打款正在向微信查询，请稍后再试。"
    hint = "A payout round holds the payout's lease (payout_lease_until); it ends with the round or when the lease runs out."
    details_schema: dict = {}


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
    RETURN_HELD = "return_held"  # operator, a held payout WeChat has no live bill for: A back to available
    PAID_BY_HAND = "paid_by_hand"  # operator, a held payout WeChat has no live bill for: paid outside, with a reference


W, WE = WithdrawalStatus, WithdrawalEvent
WITHDRAWAL_TRANSITIONS: dict[tuple[WithdrawalStatus, WithdrawalEvent], WithdrawalStatus] = {
    (W.PENDING, WE.APPROVE): W.PAYING,
    (W.PENDING, WE.MARK_PAID): W.PAID,
    (W.PENDING, WE.REJECT): W.REJECTED,
    (W.PAYING, WE.PAYOUT_SUCCEEDED): W.PAID,
    (W.PAYING, WE.PAYOUT_FAILED): W.FAILED,
    (W.PAYING, WE.RETURN_HELD): W.FAILED,
    (W.PAYING, WE.PAID_BY_HAND): W.PAID,
}
# Events allowed only while the payout is held for an operator (hold_reason set).
HELD_ONLY = frozenset({WE.RETURN_HELD, WE.PAID_BY_HAND})
FINAL = frozenset({W.PAID, W.REJECTED, W.FAILED})


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
    transfer_state = fields.CharField(max_length=32, null=True)  # WeChat's last known state of the bill
    payee_real_name = fields.CharField(max_length=REAL_NAME_MAX_CHARS, null=True)  # ≥ ¥2000 only; erased when final
    hold_reason = fields.CharField(max_length=255, null=True)  # set: the payout waits for an operator
    held_at = fields.DatetimeField(null=True)
    payout_error = fields.CharField(max_length=255, null=True)  # the last transient trouble while retrying
    payout_check_at = fields.DatetimeField(null=True)  # when the payout checker handles it next ('paying')
    payout_checks = fields.IntField(default=0)  # rounds so far (sets the backoff)
    # A payout round (the checker's, or an operator's re-query) holds the payout until then; null or
    # past: none runs (migration 0018). Only one round at a time asks WeChat and records its answer.
    payout_lease_until = fields.DatetimeField(null=True)
    reason = fields.CharField(max_length=255, null=True)  # rejection / failure reason
    operator_id = fields.BigIntField(null=True)
    created_at = fields.DatetimeField()
    decided_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)

    class Meta:
        table = "withdrawals"
        unique_together = (("user_id", "request_id"),)
        indexes = (("status", "id"),)  # + withdrawals_payout_due (migration 0010): the payout checker's partial index
        constraints = (
            CheckConstraint(check="amount_fen > 0 AND fee_fen >= 0 AND fee_fen < amount_fen", name="ck_withdrawals_money"),
        )


def market_day(at: dt.datetime) -> dt.date:
    return at.astimezone(MARKET_TZ).date()


async def request(user_id: int, amount_fen: int, *, request_id: str, real_name: str | None = None) -> Withdrawal:
    """Ask to withdraw A: min ≤ A ≤ available, within the daily cap. A repeat request_id returns
    the first withdrawal, marked `replayed = True` (a new one: False). `real_name` (the payee's, as
    on their WeChat account) is required when the payout A − W reaches ¥2000, and kept only then."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise InvalidInput("amount_fen must be a whole number of fen.", zh="金额必须是整数（分）。", field="amount_fen")
    if not isinstance(request_id, str) or not 1 <= len(request_id.strip()) <= 64:
        raise InvalidInput("request_id is required (1–64 characters).", zh="必须提供 request_id（1–64 个字符）。", field="request_id")
    request_id = check_text(request_id, "request_id").strip()
    earlier = await Withdrawal.get_or_none(user_id=user_id, request_id=request_id)
    if earlier is not None:
        return _same_request(earlier, amount_fen)
    s = await market_settings.current()
    if amount_fen < s.min_withdraw_fen or amount_fen > s.daily_withdraw_cap_fen:
        raise WithdrawalOutOfRange(min_fen=s.min_withdraw_fen, max_fen=s.daily_withdraw_cap_fen)
    fee_fen = amount_fen * s.withdraw_fee_bp // BP
    needs_name = amount_fen - fee_fen >= REAL_NAME_REQUIRED_FEN
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
                fee_fen=fee_fen, created_at=now,
            )
            await ledger.post(
                f"withdrawal:{w.id}:request",
                EntryKind.WITHDRAW_REQUEST,
                [
                    Leg(ledger.user_account(user_id, AccountKind.AVAILABLE), -amount_fen),
                    Leg(ledger.user_account(user_id, AccountKind.WITHDRAWING), amount_fen),
                ],
            )
            if needs_name:  # checked once the money is known to be there: "not enough" is the first answer
                w.payee_real_name = _real_name(real_name)
                await Withdrawal.filter(id=w.id).update(payee_real_name=w.payee_real_name)
            out = Pending()
            out.push("withdrawal.changed", _payload(w), user_id)
            out.wallet_changed(user_id, EntryKind.WITHDRAW_REQUEST, -amount_fen, withdrawal_id=w.id)
            await out.write()
            await audit.record("user", user_id, "withdrawal.request", "withdrawal", w.id, data={"amount_fen": amount_fen, "fee_fen": w.fee_fen})
        w.replayed = False
        return w
    except IntegrityError:  # the same request_id raced itself; the first one won
        return _same_request(await Withdrawal.get(user_id=user_id, request_id=request_id), amount_fen)


def _same_request(earlier: Withdrawal, amount_fen: int) -> Withdrawal:
    """A repeated request_id returns the first withdrawal (`replayed = True`) if it asked the same."""
    if earlier.amount_fen != amount_fen:
        raise IdempotencyConflict()
    earlier.replayed = True
    return earlier


def _real_name(real_name: str | None) -> str:
    """The payee's real name as WeChat compares it: 1–32 characters, no control characters (the
    control-character rule of every text field, models/inputs.py)."""
    if real_name is not None and not isinstance(real_name, str):
        raise InvalidInput("{field} must be text.", zh="{field} 必须是文字。", field="real_name")
    name = check_text(real_name, "real_name").strip() if real_name else ""
    if not name:
        raise RealNameRequired(threshold_fen=REAL_NAME_REQUIRED_FEN, field="real_name")
    if len(name) > REAL_NAME_MAX_CHARS:
        raise InvalidInput("real_name must be 1–{max_len} characters.", zh="real_name 须为 1–{max_len} 个字符。",
                           field="real_name", max_len=REAL_NAME_MAX_CHARS)
    return name


def _payload(w: Withdrawal) -> dict:
    return {"withdrawal_id": w.id, "status": w.status.value, "amount_fen": w.amount_fen, "fee_fen": w.fee_fen}


async def _act(wid: int, event: WithdrawalEvent, actor: tuple[str, int | None], values: dict, effects, *, reason: str | None = None) -> Withdrawal:
    source = next(src for (src, ev) in WITHDRAWAL_TRANSITIONS if ev == event)
    target = WITHDRAWAL_TRANSITIONS[(source, event)]
    guard = {"hold_reason__isnull": False} if event in HELD_ONLY else {}
    if target in FINAL:
        values = {**values, "payee_real_name": None}  # the payout no longer needs it: erase it in the same UPDATE
    async with in_transaction():
        won = await Withdrawal.filter(id=wid, status=source, **guard).update(status=target, **values) == 1
        if won:
            w = await Withdrawal.get(id=wid)
            out = Pending()
            if effects:
                await effects(w, out)
            out.push("withdrawal.changed", _payload(w), w.user_id)
            if target in (W.PAID, W.REJECTED, W.FAILED):
                out.subscribe(f"withdrawal_{target.value}", _payload(w) | {"reason": w.reason}, w.user_id)
            await out.write()
            await audit.record(actor[0], actor[1], f"withdrawal.{event.value}", "withdrawal", wid, data={"from": source.value, "to": target.value}, reason=reason)
    if not won:
        current = await Withdrawal.get_or_none(id=wid)
        if current is None:
            raise WithdrawalNotFound()
        if event in HELD_ONLY and current.status == source:
            raise PayoutNotHeld(status=current.status.value)
        raise AlreadyDecided("The withdrawal is already {status}.", zh="这笔提现已是{status}状态。", status=current.status.value)
    return w


async def _pay_out(w: Withdrawal, out: Pending) -> None:
    await ledger.post(
        f"withdrawal:{w.id}:paid",
        EntryKind.WITHDRAW_PAID,
        [
            Leg(ledger.user_account(w.user_id, AccountKind.WITHDRAWING), -w.amount_fen),
            Leg(ledger.platform_account(AccountKind.PAYOUTS, w.id), w.amount_fen - w.fee_fen),
            Leg(ledger.platform_account(AccountKind.FEES, w.id), w.fee_fen),
        ],
    )


async def _give_back(w: Withdrawal, out: Pending) -> None:
    out.wallet_changed(w.user_id, EntryKind.WITHDRAW_RETURNED, w.amount_fen, withdrawal_id=w.id)
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
    """Approve for payment through WeChat: the transfer itself is made after commit (wechat/).
    `out_bill_no` is letters and digits only, as WeChat's merchant transfer requires, and never
    changes: every retry of this payout asks for the same bill."""
    now = clock.now()
    return await _act(
        wid, WE.APPROVE, ("operator", operator_id),
        {"method": "wechat", "operator_id": operator_id, "decided_at": now, "out_bill_no": f"W{wid:012d}",
         "payout_check_at": now}, None,
    )


async def mark_paid(wid: int, operator_id: int, *, reference: str) -> Withdrawal:
    if not isinstance(reference, str) or not reference.strip() or len(reference.strip()) > 128:
        raise InvalidInput("A payment reference (1–128 characters) is required.", zh="必须填写打款凭证号（1–128 个字符）。", field="reference")
    check_text(reference, "reference")
    now = clock.now()
    return await _act(
        wid, WE.MARK_PAID, ("operator", operator_id),
        {"method": "manual", "reference": reference.strip(), "operator_id": operator_id, "decided_at": now, "finished_at": now},
        _pay_out,
    )


async def reject(wid: int, operator_id: int, *, reason: str) -> Withdrawal:
    if not isinstance(reason, str) or not reason.strip() or len(reason.strip()) > 255:
        raise InvalidInput("A reason (1–255 characters) is required.", zh="必须填写理由（1–255 个字符）。", field="reason")
    reason = check_text(reason, "reason", multiline=True)
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


# --- a payout in flight (status 'paying'): bookkeeping, holding for an operator, the operator's way out ---

async def note_payout(wid: int, *, lease: dt.datetime | None = None, **values) -> bool:
    """Record what we learnt of the payout at WeChat (transfer_bill_no, package_info, transfer_state,
    payout_error, payout_check_at, payout_checks). Only while it is still in flight: a late writer
    never touches a final row. With `lease` (the round's own, from its claim): only while that lease
    is still the payout's — a round that outlived its lease, whose payout another round has claimed
    since, writes nothing (it would end that round's lease and overwrite its findings). False when
    nothing was written."""
    allowed = {"transfer_bill_no", "package_info", "transfer_state", "payout_error", "payout_check_at", "payout_checks",
               "payout_lease_until"}
    if not values.keys() <= allowed:
        raise ValueError(f"not payout bookkeeping: {sorted(values.keys() - allowed)}")
    mine = {"payout_lease_until": lease} if lease is not None else {}
    return await Withdrawal.filter(id=wid, status=W.PAYING, **mine).update(**values) == 1


def _no_round_running(now: dt.datetime) -> Q:
    return Q(payout_lease_until__isnull=True) | Q(payout_lease_until__lte=now)


async def claim_payout_check(wid: int, due_at: dt.datetime, lease_s: int) -> dt.datetime | None:
    """Take this round of a due payout check: of two checkers that saw it due, one gets it, and
    never while another round holds the lease (the deadline and the lease move out by `lease_s`,
    so a checker that dies lets it come back). The round ends by clearing the lease (its own only:
    `note_payout(..., lease=)`). Returns the lease's end, or None."""
    now = clock.now()
    lease = now + dt.timedelta(seconds=lease_s)
    n = await Withdrawal.filter(_no_round_running(now), id=wid, status=W.PAYING, hold_reason__isnull=True,
                                payout_check_at=due_at).update(payout_check_at=lease, payout_lease_until=lease)
    return lease if n == 1 else None  # the round's lease (its end), or None: not this round's to take


async def claim_payout_round(wid: int, lease_s: int) -> dt.datetime | None:
    """An operator's "ask WeChat now": the next round, due or not, under the same lease. Returns
    the lease's end, or None while another round holds it (or the payout is not in flight, or is held)."""
    now = clock.now()
    lease = now + dt.timedelta(seconds=lease_s)
    n = await Withdrawal.filter(_no_round_running(now), id=wid, status=W.PAYING, hold_reason__isnull=True).update(
        payout_check_at=lease, payout_lease_until=lease)
    return lease if n == 1 else None


async def end_payout_round(wid: int, lease: dt.datetime, check_at: dt.datetime | None) -> None:
    """End a round claimed with `claim_payout_round` (only that lease, never a later round's): if
    it scheduled no next check, the next check is back at `check_at`, where it was before."""
    await Withdrawal.filter(id=wid, status=W.PAYING, payout_lease_until=lease, payout_check_at=lease).update(payout_check_at=check_at)
    await Withdrawal.filter(id=wid, status=W.PAYING, payout_lease_until=lease).update(payout_lease_until=None)


async def hold_payout(wid: int, reason: str) -> bool:
    """WeChat refused the transfer for a reason only a person can cure, and no bill exists: stop
    retrying and wait for an operator. The money stays in `withdrawing`. False if not in flight or
    already held."""
    reason = (reason or "held")[:255]
    async with in_transaction():
        held = await Withdrawal.filter(id=wid, status=W.PAYING, hold_reason__isnull=True).update(
            hold_reason=reason, held_at=clock.now(), payout_check_at=None, payout_lease_until=None) == 1
        if held:
            await audit.record("wechat", None, "withdrawal.payout_held", "withdrawal", wid, reason=reason)
    return held


async def release_hold(wid: int, operator_id: int) -> Withdrawal:
    """Operator: the cause is fixed (e.g. the server's IP is on the allowlist now): try the same bill again."""
    async with in_transaction():
        released = await Withdrawal.filter(id=wid, status=W.PAYING, hold_reason__isnull=False).update(
            hold_reason=None, held_at=None, payout_error=None, payout_checks=0, payout_check_at=clock.now(),
            payout_lease_until=None) == 1
        if released:
            await audit.record("operator", operator_id, "withdrawal.payout_retry", "withdrawal", wid)
    w = await Withdrawal.get_or_none(id=wid)
    if w is None:
        raise WithdrawalNotFound()
    if not released:
        raise PayoutNotHeld(status=w.status.value)
    return w


async def return_held(wid: int, operator_id: int, *, reason: str) -> Withdrawal:
    """Operator: give A back for a held payout. Call only once WeChat has said it holds no bill
    that could still pay (server/wechat_payouts.py asks first)."""
    if not isinstance(reason, str) or not reason.strip() or len(reason.strip()) > 255:
        raise InvalidInput("A reason (1–255 characters) is required.", zh="必须填写理由（1–255 个字符）。", field="reason")
    reason = check_text(reason, "reason", multiline=True)
    return await _act(wid, WE.RETURN_HELD, ("operator", operator_id),
                      {"reason": reason.strip(), "finished_at": clock.now()}, _give_back, reason=reason.strip())


async def paid_by_hand(wid: int, operator_id: int, *, reference: str) -> Withdrawal:
    """Operator: a held payout was paid outside WeChat's transfer (same rule: WeChat has no live bill)."""
    if not isinstance(reference, str) or not reference.strip() or len(reference.strip()) > 128:
        raise InvalidInput("A payment reference (1–128 characters) is required.", zh="必须填写打款凭证号（1–128 个字符）。", field="reference")
    check_text(reference, "reference")
    return await _act(wid, WE.PAID_BY_HAND, ("operator", operator_id),
                      {"method": "manual", "reference": reference.strip(), "finished_at": clock.now()}, _pay_out)


async def get_withdrawal(wid: int, *, user_id: int | None = None) -> Withdrawal:
    w = await Withdrawal.get_or_none(id=wid)
    if w is None or (user_id is not None and w.user_id != user_id):
        raise WithdrawalNotFound()
    return w
