"""Referral rewards (SPEC §4): what each inviter earned from each invitee's orders.

Completing an order credits the rewards to the platform's sharded `referral_payable` account and
records one row here per reward; `settle()` (a scheduler job, and lazily when an inviter reads
their wallet) moves the unsettled rows to each inviter's available balance, one journal entry per
inviter per batch. This keeps order completion free of any hot row: a popular inviter whose
invitees complete many orders at once would otherwise be one balance row that all those orders
wait on.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import audit, db, ledger
from models.ledger import AccountKind, EntryKind, Leg
from models.outbox import Pending


class Side(StrEnum):
    WORKER = "worker"  # R_w = floor(P × worker_invite_bp), from a worker invitee's completed order
    PUBLISHER = "publisher"  # R_p = floor(F × publisher_invite_bp), from a publisher invitee's order


class ReferralReward(Model):
    id = fields.BigIntField(primary_key=True)
    inviter = fields.ForeignKeyField("models.User", related_name="referral_rewards", on_delete=fields.RESTRICT)
    invitee = fields.ForeignKeyField("models.User", related_name="rewards_given", on_delete=fields.RESTRICT)
    order = fields.ForeignKeyField("models.Order", related_name="referral_rewards", on_delete=fields.RESTRICT)
    side = fields.CharEnumField(Side, max_length=16)
    amount_fen = fields.BigIntField()
    settled_entry_id = fields.BigIntField(null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "referral_rewards"
        unique_together = (("order_id", "side"),)
        indexes = (("inviter_id", "invitee_id"),)  # + partial index on unsettled rows (migration 0002)
        constraints = (CheckConstraint(check="amount_fen > 0", name="ck_referral_rewards_positive"),)


async def settle(batch: int = 500, inviter_id: int | None = None) -> int:
    """Move up to `batch` unsettled rewards to their inviters. Returns how many were settled.

    Each inviter is settled in its own transaction, so one transaction touches only the payable
    shards of that inviter's rewards and the inviter's account, locked in code order by
    `ledger.post` — the same order an order completion uses (platform shards, then user accounts).
    Settling several inviters in one transaction would lock one inviter's account before another
    inviter's shards and deadlock with completions and with a concurrent settle.

    Each reward leaves the payable shard it was credited to (picked by its order id). The rewards
    are claimed with FOR UPDATE SKIP LOCKED on PostgreSQL, so several settlers never take the same
    rows; the entry key names the first reward of the group, so a group can only be paid once.
    """
    sql = "SELECT DISTINCT inviter_id FROM referral_rewards WHERE settled_entry_id IS NULL"
    args: list = []
    if inviter_id is not None:
        sql += " AND inviter_id = $1"
        args.append(inviter_id)
    inviters = [r["inviter_id"] for r in await db.fetch(sql + f" LIMIT {int(batch)}", *args)]
    settled = 0
    for inviter in sorted(inviters):
        if settled >= batch:
            break
        settled += await _settle_inviter(inviter, batch - settled)
    return settled


async def _settle_inviter(inviter: int, limit: int) -> int:
    async with in_transaction():
        sql = (
            "SELECT id, order_id, amount_fen FROM referral_rewards WHERE settled_entry_id IS NULL AND inviter_id = $1 "
            f"ORDER BY id LIMIT {int(limit)}"
        )
        if db.is_postgres():
            sql += " FOR UPDATE SKIP LOCKED"
        rewards = await db.fetch(sql, inviter)
        if not rewards:
            return 0
        ids = [r["id"] for r in rewards]
        total = sum(r["amount_fen"] for r in rewards)
        entry = await ledger.post(
            f"referral:{inviter}:{ids[0]}",
            EntryKind.REFERRAL_SETTLE,
            [Leg(ledger.platform_account(AccountKind.REFERRAL_PAYABLE, r["order_id"]), -r["amount_fen"]) for r in rewards]
            + [Leg(ledger.user_account(inviter), total)],
            memo=f"{len(ids)} referral rewards",
        )
        await ReferralReward.filter(id__in=ids).update(settled_entry_id=entry)
        out = Pending()
        out.wallet_changed(inviter, EntryKind.REFERRAL_SETTLE, total)
        await out.write()
        await audit.record("system", None, "referral.settle", "user", inviter, data={"rewards": len(ids), "amount_fen": total})
    return len(ids)
