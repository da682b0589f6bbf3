"""Recharges (SPEC §2 flow 1): a publisher pays through WeChat Pay; the verified notification
credits `available` exactly once per payment, however often WeChat repeats it.

This module only knows our side: the recharge row (its `out_trade_no` is what WeChat Pay is told)
and the crediting rule. Creating the prepayment and verifying notifications live in `wechat/`.
"""

from __future__ import annotations

import secrets
from enum import StrEnum

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import audit, clock, ledger
from models.errors import Conflict, IdempotencyConflict, InvalidInput, RechargeNotFound, UserBanned, WrongEnd
from models.inputs import check_text
from models.ledger import AccountKind, EntryKind, Leg
from models.outbox import Pending
from models.users import End, User

MIN_RECHARGE_FEN, MAX_RECHARGE_FEN = 1, 10_000_000  # up to ¥100 000 per payment


class RechargeStatus(StrEnum):
    PENDING = "pending"  # prepayment created; waiting for WeChat Pay's notification
    PAID = "paid"  # final: credited
    CLOSED = "closed"  # final unless WeChat later proves it was paid: expired / closed unpaid


class AmountMismatch(Conflict):
    code = "amount_mismatch"
    message, message_zh = "The paid amount does not match the recharge.", "支付金额与充值金额不符。"
    hint = "WeChat Pay notification handling only; never sent to the Mini Programs."
    details_schema = {"expected_fen": {"type": "integer"}, "paid_fen": {"type": "integer"}}


class TransactionIdReused(Conflict):
    code = "transaction_id_reused"
    message = "This WeChat Pay transaction already credited another recharge."
    message_zh = "这笔微信支付交易已为另一笔充值入账。"
    hint = "WeChat Pay notification handling only (answered 204 and audited); never sent to the Mini Programs."
    details_schema = {"recharge_id": {"type": "integer"}, "credited_recharge_id": {"type": "integer"}}


class Recharge(Model):
    id = fields.BigIntField(primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="recharges", on_delete=fields.RESTRICT)
    request_id = fields.CharField(max_length=64)
    out_trade_no = fields.CharField(max_length=32, unique=True)
    amount_fen = fields.BigIntField()
    status = fields.CharEnumField(RechargeStatus, max_length=16, default=RechargeStatus.PENDING)
    prepay_id = fields.CharField(max_length=64, null=True)
    transaction_id = fields.CharField(max_length=64, null=True, unique=True)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    paid_at = fields.DatetimeField(null=True)

    class Meta:
        table = "recharges"
        unique_together = (("user_id", "request_id"),)
        indexes = (("status", "expires_at"),)


async def create(user_id: int, amount_fen: int, *, request_id: str, ttl_s: int = 1800) -> Recharge:
    """A pending recharge for a publisher; a repeated request_id returns the first one, marked
    `replayed = True` (a new one: False)."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or not MIN_RECHARGE_FEN <= amount_fen <= MAX_RECHARGE_FEN:
        raise InvalidInput("amount_fen must be a whole number of fen from {min_fen} to {max_fen}.", zh="充值金额必须在 {min_fen} 到 {max_fen} 之间（整数分）。", field="amount_fen", min_fen=MIN_RECHARGE_FEN, max_fen=MAX_RECHARGE_FEN)
    if not isinstance(request_id, str) or not 1 <= len(request_id.strip()) <= 64:
        raise InvalidInput("request_id is required (1–64 characters).", zh="必须提供 request_id（1–64 个字符）。", field="request_id")
    check_text(request_id, "request_id")
    user = await User.get_or_none(id=user_id)
    if user is None:
        from models.errors import UserNotFound

        raise UserNotFound()
    if user.end != End.PUBLISHER:
        raise WrongEnd()
    if user.banned:
        raise UserBanned()
    earlier = await Recharge.get_or_none(user_id=user_id, request_id=request_id.strip())
    if earlier is not None:
        return _same_request(earlier, amount_fen)
    now = clock.now()
    try:
        recharge = await Recharge.create(
            user_id=user_id, request_id=request_id.strip(), amount_fen=amount_fen,
            out_trade_no=f"R{now:%Y%m%d}{secrets.token_hex(8).upper()}",
            created_at=now, expires_at=clock.after(now, ttl_s),
        )
    except IntegrityError:  # the same request_id raced itself; the first one won
        return _same_request(await Recharge.get(user_id=user_id, request_id=request_id.strip()), amount_fen)
    recharge.replayed = False
    return recharge


def _same_request(earlier: Recharge, amount_fen: int) -> Recharge:
    """A repeated request_id returns the first recharge (`replayed = True`) if it asked the same."""
    if earlier.amount_fen != amount_fen:
        raise IdempotencyConflict()
    earlier.replayed = True
    return earlier


async def credit(out_trade_no: str, *, transaction_id: str, amount_fen: int) -> tuple[Recharge, bool]:
    """Credit a verified payment. Returns (recharge, credited_now); a repeat returns False.

    A payment WeChat confirms is credited even if we had closed the recharge locally: the money
    did arrive. A different amount is refused and nothing is credited (an operator must look).
    """
    recharge = await Recharge.get_or_none(out_trade_no=out_trade_no)
    if recharge is None:
        raise RechargeNotFound()
    if recharge.amount_fen != amount_fen:
        await audit.record("wechat", None, "recharge.amount_mismatch", "recharge", recharge.id, data={"paid_fen": amount_fen, "expected_fen": recharge.amount_fen, "transaction_id": transaction_id})
        raise AmountMismatch(expected_fen=recharge.amount_fen, paid_fen=amount_fen)
    holder = await Recharge.filter(transaction_id=transaction_id).exclude(id=recharge.id).first()
    if holder is None:
        now = clock.now()
        try:
            async with in_transaction():
                won = await _credit_once(recharge, transaction_id, amount_fen, now)
            return await Recharge.get(id=recharge.id), won
        except IntegrityError:
            # recharges.transaction_id is unique: a concurrent credit of another recharge with
            # the same transaction_id won; whatever this one wrote was rolled back.
            holder = await Recharge.filter(transaction_id=transaction_id).exclude(id=recharge.id).first()
            if holder is None:
                raise
    # One WeChat payment can pay one recharge only. A signed notification (or query answer) naming
    # a transaction_id that already credited another recharge cannot be right: credit nothing and
    # leave it to an operator.
    await audit.record("wechat", None, "recharge.transaction_id_reused", "recharge", recharge.id,
                       data={"transaction_id": transaction_id, "credited_recharge_id": holder.id, "amount_fen": amount_fen})
    raise TransactionIdReused(recharge_id=recharge.id, credited_recharge_id=holder.id)


async def _credit_once(recharge: Recharge, transaction_id: str, amount_fen: int, now) -> bool:
    """Inside the caller's transaction: the conditional UPDATE, then the entry, outbox and audit."""
    won = await Recharge.filter(
        id=recharge.id, status__in=(RechargeStatus.PENDING, RechargeStatus.CLOSED)
    ).update(status=RechargeStatus.PAID, transaction_id=transaction_id, paid_at=now) == 1
    if not won:
        return False
    await ledger.post(
        f"wechatpay:{transaction_id}",
        EntryKind.RECHARGE,
        [
            Leg(ledger.platform_account(AccountKind.WECHATPAY, recharge.id), -amount_fen),
            Leg(ledger.user_account(recharge.user_id), amount_fen),
        ],
        memo=recharge.out_trade_no,
    )
    out = Pending()
    out.wallet_changed(recharge.user_id, EntryKind.RECHARGE, amount_fen, recharge_id=recharge.id)
    await out.write()
    await audit.record("wechat", None, "recharge.credit", "recharge", recharge.id, data={"amount_fen": amount_fen, "transaction_id": transaction_id})
    return True


async def close(out_trade_no: str) -> bool:
    """Mark an unpaid recharge closed (after closing it at WeChat Pay)."""
    return await Recharge.filter(out_trade_no=out_trade_no, status=RechargeStatus.PENDING).update(status=RechargeStatus.CLOSED) == 1
