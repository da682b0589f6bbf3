"""Orders: one taken slot of a task, from "one click" to its final state, and the money that follows.

The lifecycle is declared once as data (`TRANSITIONS`, SPEC §3); every event is one small function
around one conditional `UPDATE orders ... WHERE id = ? AND status = <expected> [AND guard]`.
Zero rows means somebody (a person or a timer) got there first: the transaction is rolled back and
the caller learns why. One row means we own the transition, and in the same transaction we write
its ledger entry (keyed `order:<id>:<outcome>`, so money can never move twice), its outbox rows and
its audit row.

Locks are always taken in the order: order row → user row → task row → accounts (by code), so
concurrent transitions cannot deadlock.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import audit, clock, db, ledger
from models.inputs import clean_text
from server import metrics
from models import settings as market_settings
from models.errors import (
    InvalidInput,
    AlreadyDecided,
    AlreadyTookTask,
    DeadlinePassed,
    DomainError,
    InvalidTransition,
    OrderNotFound,
    OwnTask,
    SessionRevoked,
    SlotTaken,
    TaskClosed,
    TaskNotFound,
    TooManyOrdersInProgress,
    UserBanned,
    UserNotFound,
    WrongEnd,
)
from models.ledger import AccountKind, EntryKind, Leg
from models.outbox import Pending, order_changed
from models.referrals import ReferralReward, Side
from models.settings import BP
from models.tasks import Task, TaskStatus, task_payload
from models.users import End, User


class OrderStatus(StrEnum):
    IN_PROGRESS = "in_progress"  # taken; the worker's countdown runs (submit_deadline_at)
    AWAITING_REVIEW = "awaiting_review"  # submitted or countdown over; review window runs (review_deadline_at)
    REJECTED = "rejected"  # publisher rejected; appeal window runs (appeal_deadline_at)
    APPEALING = "appealing"  # worker appealed; waits for an operator, no timer
    COMPLETED = "completed"  # final: P paid to the worker, F to fees (minus referral rewards)
    FAILED = "failed"  # final: P+F back to the publisher
    ABANDONED = "abandoned"  # final: slot back to the hall, or P+F back to the publisher


class OrderEvent(StrEnum):
    SUBMIT = "submit"  # worker, before the countdown ends
    COUNTDOWN_END = "countdown_end"  # timer at submit_deadline_at
    ABANDON = "abandon"  # worker gives up while in progress
    APPROVE = "approve"  # publisher, within the review window
    REVIEW_TIMEOUT = "review_timeout"  # timer at review_deadline_at: auto-approve
    REJECT = "reject"  # publisher, within the review window, reason required
    ACCEPT_REJECTION = "accept_rejection"  # worker gives up the appeal
    APPEAL = "appeal"  # worker, within the appeal window, reason required
    APPEAL_TIMEOUT = "appeal_timeout"  # timer at appeal_deadline_at: the order fails
    ARBITRATE_WORKER = "arbitrate_worker"  # operator decides the appeal for the worker
    ARBITRATE_PUBLISHER = "arbitrate_publisher"  # operator decides the appeal for the publisher
    # An operator ends a stuck order from any live state (models/order_overrides.py, not in TRANSITIONS).
    FORCE_COMPLETE = "force_complete"  # as if approved: flow 4
    FORCE_FAIL = "force_fail"  # as if failed: flow 5


S, E = OrderStatus, OrderEvent
TRANSITIONS: dict[tuple[OrderStatus, OrderEvent], OrderStatus] = {
    (S.IN_PROGRESS, E.SUBMIT): S.AWAITING_REVIEW,
    (S.IN_PROGRESS, E.COUNTDOWN_END): S.AWAITING_REVIEW,
    (S.IN_PROGRESS, E.ABANDON): S.ABANDONED,
    (S.AWAITING_REVIEW, E.APPROVE): S.COMPLETED,
    (S.AWAITING_REVIEW, E.REVIEW_TIMEOUT): S.COMPLETED,
    (S.AWAITING_REVIEW, E.REJECT): S.REJECTED,
    (S.REJECTED, E.ACCEPT_REJECTION): S.FAILED,
    (S.REJECTED, E.APPEAL): S.APPEALING,
    (S.REJECTED, E.APPEAL_TIMEOUT): S.FAILED,
    (S.APPEALING, E.ARBITRATE_WORKER): S.COMPLETED,
    (S.APPEALING, E.ARBITRATE_PUBLISHER): S.FAILED,
}
SOURCE: dict[OrderEvent, OrderStatus] = {event: src for (src, event) in TRANSITIONS}
# Operators' overrides leave from every live state (models/order_overrides.py): not in TRANSITIONS.
OVERRIDE_EVENTS = frozenset({E.FORCE_COMPLETE, E.FORCE_FAIL})
FINAL_STATES = frozenset({S.COMPLETED, S.FAILED, S.ABANDONED})
LIVE_STATES = tuple(s for s in OrderStatus if s not in FINAL_STATES)
# The timer event due in each state that has a deadline, and the column holding it.
TIMER_EVENTS: dict[OrderStatus, tuple[OrderEvent, str]] = {
    S.IN_PROGRESS: (E.COUNTDOWN_END, "submit_deadline_at"),
    S.AWAITING_REVIEW: (E.REVIEW_TIMEOUT, "review_deadline_at"),
    S.REJECTED: (E.APPEAL_TIMEOUT, "appeal_deadline_at"),
}
TEXT_MAX, REASON_MAX, IMAGE_REF_MAX = 2000, 500, 255


class Order(Model):
    id = fields.BigIntField(primary_key=True)
    task = fields.ForeignKeyField("models.Task", related_name="orders", on_delete=fields.RESTRICT)
    worker = fields.ForeignKeyField("models.User", related_name="orders", on_delete=fields.RESTRICT)
    publisher_id = fields.BigIntField(db_index=True)
    status = fields.CharEnumField(OrderStatus, max_length=16, default=OrderStatus.IN_PROGRESS)
    # Copied from the task / users at taking: everything settling this order needs, in one row.
    unit_price_fen = fields.BigIntField()
    fee_fen = fields.BigIntField()
    worker_invite_bp = fields.IntField()
    publisher_invite_bp = fields.IntField()
    worker_inviter_id = fields.BigIntField(null=True)
    publisher_inviter_id = fields.BigIntField(null=True)
    review_window_s = fields.IntField()
    appeal_window_s = fields.IntField()
    # Deadlines (UTC). `due_at` is the deadline of the current state, or null when none runs: the
    # sweep reads only this column (indexed; partial on PostgreSQL).
    taken_at = fields.DatetimeField()
    submit_deadline_at = fields.DatetimeField()
    review_deadline_at = fields.DatetimeField(null=True)
    appeal_deadline_at = fields.DatetimeField(null=True)
    due_at = fields.DatetimeField(null=True)
    submitted_at = fields.DatetimeField(null=True)
    rejected_at = fields.DatetimeField(null=True)
    appealed_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    proof_text = fields.TextField(null=True)
    proof_image = fields.CharField(max_length=IMAGE_REF_MAX, null=True)
    reject_reason = fields.CharField(max_length=REASON_MAX, null=True)
    reject_criterion = fields.CharField(max_length=100, null=True)  # the task's criterion the proof fails; null: "other"
    # The publisher's answer to an appeal (models/appeals.py), and the deadline an automatic rule set for it.
    answer_text = fields.CharField(max_length=REASON_MAX, null=True)
    answer_image = fields.CharField(max_length=IMAGE_REF_MAX, null=True)
    answered_at = fields.DatetimeField(null=True)
    answer_due_at = fields.DatetimeField(null=True)
    # The rule that set answer_due_at, as it stood then (migration 0018): it decides, not a later version.
    answer_rule_version = fields.IntField(null=True)
    answer_rule_params = fields.JSONField(null=True)
    appeal_reason = fields.CharField(max_length=REASON_MAX, null=True)
    appeal_evidence = fields.CharField(max_length=IMAGE_REF_MAX, null=True)
    decision_note = fields.CharField(max_length=REASON_MAX, null=True)
    decided_by = fields.BigIntField(null=True)  # operator id
    finished_by = fields.CharField(max_length=24, null=True)  # the event that made it final
    sweep_failures = fields.IntField(default=0)

    class Meta:
        table = "orders"
        unique_together = (("task_id", "worker_id"),)  # a worker takes a task at most once
        # The sweep's index on due_at (only rows with a running timer) is partial: migration 0002.
        indexes = (("worker_id", "status"), ("task_id", "status"), ("status", "id"))
        constraints = (CheckConstraint(check="unit_price_fen > 0 AND fee_fen >= 0", name="ck_orders_money"),)


class _Lost(Exception):
    """A conditional update matched nothing; raised inside the transaction to roll it back."""


# --- effects shared by several transitions ---------------------------------------------------------
async def _release_worker_slot(worker_id: int) -> None:
    """The worker has one order fewer in progress (the limit counter)."""
    await db.execute("UPDATE users SET orders_in_progress = orders_in_progress - 1 WHERE id = $1", worker_id)


async def _task_order_final(task_id: int) -> None:
    """One live order of the task became final; a full task whose last order ends is finished."""
    await db.execute(
        "UPDATE tasks SET orders_live = orders_live - 1, "
        "status = CASE WHEN status = 'full' AND orders_live = 1 AND slots_untaken = 0 THEN 'finished' ELSE status END "
        "WHERE id = $1",
        task_id,
    )


Earns = tuple[bool, bool]  # whether the worker's and the publisher's inviters earn from an order
EVERYONE_EARNS: Earns = (True, True)


def referral_split(o: "Order", earns: Earns = EVERYONE_EARNS) -> tuple[int, int]:
    """The referral rewards a completion of the order pays: (R_w from P, R_p from F), SPEC §4;
    `earns` is `invitees_qualify`'s answer (`referral_requires_first_order`)."""
    r_w = o.unit_price_fen * o.worker_invite_bp // BP if o.worker_inviter_id and earns[0] else 0
    r_p = o.fee_fen * o.publisher_invite_bp // BP if o.publisher_inviter_id and earns[1] else 0
    return r_w, r_p


def referral_rows(o: "Order", now: dt.datetime, earns: Earns = EVERYONE_EARNS) -> list[ReferralReward]:
    r_w, r_p = referral_split(o, earns)
    rows = []
    if r_w:
        rows.append(ReferralReward(inviter_id=o.worker_inviter_id, invitee_id=o.worker_id, order_id=o.id, side=Side.WORKER, amount_fen=r_w, created_at=now))
    if r_p:
        rows.append(ReferralReward(inviter_id=o.publisher_inviter_id, invitee_id=o.publisher_id, order_id=o.id, side=Side.PUBLISHER, amount_fen=r_p, created_at=now))
    return rows


def completion_entry(o: "Order", event: OrderEvent, earns: Earns = EVERYONE_EARNS) -> ledger.Entry:
    """Flow 4's journal entry: from escrow, P to the worker; F to fees minus the referral rewards."""
    price, fee = o.unit_price_fen, o.fee_fen
    r_w, r_p = referral_split(o, earns)
    legs = (
        Leg(ledger.platform_account(AccountKind.ESCROW, o.task_id), -(price + fee)),
        Leg(ledger.user_account(o.worker_id), price),
        Leg(ledger.platform_account(AccountKind.FEES, o.id), fee - r_w - r_p),
        Leg(ledger.platform_account(AccountKind.REFERRAL_PAYABLE, o.id), r_w + r_p),
    )
    return ledger.Entry(f"order:{o.id}:complete", EntryKind.ORDER_COMPLETE, legs, o.task_id, o.id, event.value)


def refund_entry(o: "Order", key: str, kind: EntryKind, memo: str) -> ledger.Entry:
    """P+F from escrow back to the publisher (flow 5, and a late abandon)."""
    amount = o.unit_price_fen + o.fee_fen
    legs = (
        Leg(ledger.platform_account(AccountKind.ESCROW, o.task_id), -amount),
        Leg(ledger.user_account(o.publisher_id), amount),
    )
    return ledger.Entry(key, kind, legs, o.task_id, o.id, memo)


def completion_summary(o: "Order", earns: Earns = EVERYONE_EARNS) -> dict[str, int]:
    r_w, r_p = referral_split(o, earns)
    return {"paid_fen": o.unit_price_fen, "fee_fen": o.fee_fen - r_w - r_p, "worker_referral_fen": r_w, "publisher_referral_fen": r_p}


async def _post(entry: ledger.Entry) -> None:
    await ledger.post(entry.key, entry.kind, entry.legs, task_id=entry.task_id, order_id=entry.order_id, memo=entry.memo)


async def _complete(o: "Order", event: OrderEvent, out: Pending):
    """Flow 4: from escrow, P to the worker; F to fees, minus the referral rewards (SPEC §2).

    Returns the amounts and the writes that lock shared rows (the task, the sharded platform
    accounts), which `_act` runs last so those locks are held only until the commit right after.
    """
    earns = await invitees_qualify(o)
    rewards = referral_rows(o, clock.now(), earns)
    if rewards:
        await ReferralReward.bulk_create(rewards)
    out.wallet_changed(o.worker_id, EntryKind.ORDER_COMPLETE, o.unit_price_fen, task_id=o.task_id, order_id=o.id)

    async def finish() -> None:
        await _task_order_final(o.task_id)
        await _post(completion_entry(o, event, earns))

    return completion_summary(o, earns), finish


async def invitees_qualify(o: "Order") -> Earns:
    """Whether the worker's and the publisher's inviters earn from this order. With the setting
    `referral_requires_first_order` (issue 14 §4), an invitee's first completed order earns their
    inviter nothing — rewards start once the invitee has completed a first order — so inviting
    empty accounts that each complete one token order earns nothing. (The fee the inviter would
    have had stays with the platform.) The batched review timeout applies the same rule:
    `invitees_qualify_many`."""
    if not o.worker_inviter_id and not o.publisher_inviter_id:
        return False, False
    if not (await market_settings.current()).referral_requires_first_order:
        return bool(o.worker_inviter_id), bool(o.publisher_inviter_id)
    done = Order.filter(status=S.COMPLETED).exclude(id=o.id)
    worker = bool(o.worker_inviter_id) and await done.filter(worker_id=o.worker_id).exists()
    publisher = bool(o.publisher_inviter_id) and await done.filter(publisher_id=o.publisher_id).exists()
    return worker, publisher


async def invitees_qualify_many(completing: list["Order"]) -> dict[int, Earns]:
    """`invitees_qualify` for orders completing together, in the order given (two queries, not two
    per order): as if they completed one after another, an invitee's first completion in the batch
    earns nothing unless they had completed an order before, and their later ones in it do."""
    invited = [o for o in completing if o.worker_inviter_id or o.publisher_inviter_id]
    if not invited or not (await market_settings.current()).referral_requires_first_order:
        return {o.id: (bool(o.worker_inviter_id), bool(o.publisher_inviter_id)) for o in completing}
    workers = sorted({o.worker_id for o in invited if o.worker_inviter_id})
    publishers = sorted({o.publisher_id for o in invited if o.publisher_inviter_id})
    if db.is_postgres():
        # One probe per person (indexes (worker_id, status) and orders_publisher_completed), in one
        # statement: never a scan of every completed order.
        rows = await db.fetch(
            "SELECT 'w' AS side, w AS id FROM unnest($1::bigint[]) AS w "
            "WHERE EXISTS (SELECT 1 FROM orders o WHERE o.worker_id = w AND o.status = 'completed') UNION ALL "
            "SELECT 'p', p FROM unnest($2::bigint[]) AS p "
            "WHERE EXISTS (SELECT 1 FROM orders o WHERE o.publisher_id = p AND o.status = 'completed')",
            workers, publishers,
        )
        done_w = {r["id"] for r in rows if r["side"] == "w"}
        done_p = {r["id"] for r in rows if r["side"] == "p"}
    else:
        done = Order.filter(status=S.COMPLETED)
        done_w = set(await done.filter(worker_id__in=workers).distinct().values_list("worker_id", flat=True)) if workers else set()
        done_p = set(await done.filter(publisher_id__in=publishers).distinct().values_list("publisher_id", flat=True)) if publishers else set()
    earns: dict[int, Earns] = {}
    for o in completing:
        earns[o.id] = (bool(o.worker_inviter_id) and o.worker_id in done_w, bool(o.publisher_inviter_id) and o.publisher_id in done_p)
        done_w.add(o.worker_id)
        done_p.add(o.publisher_id)
    return earns


async def _fail(o: "Order", event: OrderEvent, out: Pending):
    """Flow 5: P+F back to the publisher (shared rows locked last, as in `_complete`)."""
    oid, amount = o.id, o.unit_price_fen + o.fee_fen
    out.wallet_changed(o.publisher_id, EntryKind.ORDER_FAIL, amount, task_id=o.task_id, order_id=oid)

    async def finish() -> None:
        await _task_order_final(o.task_id)
        await _refund_to_publisher(o, f"order:{oid}:fail", EntryKind.ORDER_FAIL, event.value)

    return {"refund_fen": amount}, finish


async def _refund_to_publisher(o: "Order", key: str, kind: EntryKind, memo: str) -> None:
    await _post(refund_entry(o, key, kind, memo))


# --- take ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TakenTask:
    """What a taker sees of the task (the order view's `task`), as the take read it."""

    id: int
    title: str
    instructions: str
    attachment_kind: str | None
    attachment: str | None


# The order columns a take leaves empty (the rest come from the take's statement).
_UNSET_AT_TAKE = dict.fromkeys((
    "review_deadline_at", "appeal_deadline_at", "submitted_at", "rejected_at", "appealed_at", "finished_at",
    "proof_text", "proof_image", "reject_reason", "reject_criterion", "answer_text", "answer_image", "answered_at",
    "answer_due_at", "answer_rule_version", "answer_rule_params", "appeal_reason", "appeal_evidence", "decision_note",
    "decided_by", "finished_by",
))
_TAKE_SQL = "SELECT * FROM market_take($1, $2, $3, $4, $5)"  # migrations 0005, 0014, 0019
_TAKE_LOST = {"MKT01": "worker", "MKT02": "task"}


async def take(task_id: int, worker_id: int, *, token_version: int | None = None) -> Order:
    """One click: the worker takes one slot of the task. Exactly one winner per slot.

    With `token_version` (the session's), the take also checks, in the same statement, that the
    session is still valid, so the API needs no separate user lookup. The returned order carries
    the task as the take saw it in `order.taken_task`, and the ids of its push rows in
    `order.push_ids`.
    """
    s = await market_settings.current()
    now = clock.now()
    try:
        if db.is_postgres():
            row = await _take_postgres(task_id, worker_id, token_version, s.max_orders_in_progress, now)
        else:
            row = await _take_steps(task_id, worker_id, token_version, s.max_orders_in_progress, now)
    except _Lost as lost:
        await _why_take_lost(str(lost), task_id, worker_id, s.max_orders_in_progress, token_version)
        raise  # _why_take_lost always raises; this line is for type checkers
    except IntegrityError:  # unique (task, worker): this worker already holds an order of the task
        raise AlreadyTookTask() from None
    return _taken(row, task_id, worker_id, now)


def _taken(row, task_id: int, worker_id: int, now: dt.datetime) -> Order:
    """The order a take's row describes, as if read back: all columns, no ORM bookkeeping per attribute."""
    deadline = row["submit_deadline_at"]
    order = Order._init_from_db(
        **_UNSET_AT_TAKE, id=row["id"], task_id=task_id, worker_id=worker_id, publisher_id=row["publisher_id"],
        status=OrderStatus.IN_PROGRESS.value, unit_price_fen=row["unit_price_fen"], fee_fen=row["fee_fen"],
        worker_invite_bp=row["worker_invite_bp"], publisher_invite_bp=row["publisher_invite_bp"],
        worker_inviter_id=row["worker_inviter_id"], publisher_inviter_id=row["publisher_inviter_id"],
        review_window_s=row["review_window_s"], appeal_window_s=row["appeal_window_s"],
        taken_at=now, submit_deadline_at=deadline, due_at=deadline, sweep_failures=0,
    )
    order.taken_task = TakenTask(task_id, row["title"], row["instructions"], row["attachment_kind"], row["attachment"])
    order.push_ids = list(row["push_ids"])  # the outbox push rows the take wrote, for the relay
    # Slots left after this take, when the take's statement says (None: unknown), for the sold-out mark.
    order.slots_left = row["slots_untaken"] if "slots_untaken" in row.keys() else None
    return order


TAKE_BATCH_MAX = 48  # takes per batch: each is a subtransaction, and PostgreSQL tracks 64 per backend cheaply
_TAKE_BATCH_SQL = "SELECT * FROM market_take_batch($1, $2, $3, $4, $5)"  # migration 0019


async def take_batch(task_id: int, takers: list[tuple[int, int | None]]) -> list[Order | Exception]:
    """Several workers' takes of one task in one database call and one commit (server/takelanes.py):
    for each (worker_id, token_version), in order, its order or the DomainError its take lost with.
    An error of the call raises (PostgreSQL: nothing of the batch committed).

    PostgreSQL: `market_take_batch` runs `market_take` for each in its own subtransaction, after
    locking all the workers' rows in id order; what a take writes, and why it loses, are exactly
    those of `take`. SQLite (one writer at a time anyway): `take` for each, one after another, each
    its own transaction (so there an unexpected error is that take's answer alone).
    """
    if len(takers) > TAKE_BATCH_MAX:
        raise ValueError(f"at most {TAKE_BATCH_MAX} takes per batch")
    if not db.is_postgres():
        results: list[Order | Exception] = []
        for worker_id, token_version in takers:
            try:
                results.append(await take(task_id, worker_id, token_version=token_version))
            except Exception as failed:  # noqa: BLE001 - each its own transaction: the others stand
                results.append(failed)
        return results
    s = await market_settings.current()
    now = clock.now()
    rows = await db.fetch_postgres(_TAKE_BATCH_SQL, task_id, [w for w, _ in takers], [v for _, v in takers],
                                   s.max_orders_in_progress, now)
    results = []
    for (worker_id, token_version), row in zip(takers, rows, strict=True):
        lost = row["lost"]
        if lost is None:
            results.append(_taken(row, task_id, worker_id, now))
        elif lost == "full":  # every slot is gone: no need to ask why
            full = SlotTaken()
            full.sold_out = True
            results.append(full)
        elif lost == "already":
            results.append(AlreadyTookTask())
        else:
            try:
                await _why_take_lost(lost, task_id, worker_id, s.max_orders_in_progress, token_version)
            except Exception as why:  # noqa: BLE001 - the batch is committed: an error asking why is this loser's alone
                results.append(why)
    return results


async def _take_postgres(task_id: int, worker_id: int, token_version: int | None, limit: int, now: dt.datetime):
    """The whole take in one statement (the function of migration 0005), autocommitted."""
    import asyncpg

    try:
        return await db.fetch_row_postgres(_TAKE_SQL, task_id, worker_id, token_version, limit, now)
    except asyncpg.UniqueViolationError:
        raise AlreadyTookTask() from None
    except asyncpg.PostgresError as e:
        if e.sqlstate in _TAKE_LOST:
            raise _Lost(_TAKE_LOST[e.sqlstate]) from None
        raise


def take_events(out: Pending, task_id: int, worker_id: int, order_id: int, task: dict[str, Any],
                now: dt.datetime, deadline: dt.datetime) -> None:
    """The outbox rows of a take for its publisher and its worker (the PostgreSQL function writes
    the same rows and payloads); the hall's row follows the slot UPDATE (`take_hall_event`)."""
    info = {"order_id": order_id, "task_id": task_id, "title": task["title"], "taken_at": clock.iso_us(now)}
    out.push("order.taken", info, task["publisher_id"])
    out.subscribe("order_taken", info, task["publisher_id"])
    out.push("order.changed", order_changed(order_id, task_id, "in_progress", "take", deadline), worker_id)


def take_hall_event(out: Pending, task_id: int, slot: dict[str, Any]) -> None:
    """The hall's row of a take: the slots left after it, known once the slot UPDATE ran."""
    hall = {"task_id": task_id, "slots_untaken": slot["slots_untaken"], "status": slot["status"]}
    out.hall("hall.task_removed" if slot["slots_untaken"] == 0 else "hall.task_changed", hall)


# The task's columns a take copies (into the order, its events, the answer). The slot UPDATE
# repeats them in its WHERE: a task changed since the take read it loses instead of leaving a stale copy.
_TAKE_COPIES = ("publisher_id", "unit_price_fen", "fee_fen", "worker_invite_bp", "publisher_invite_bp",
                "publisher_inviter_id", "countdown_s", "review_window_s", "appeal_window_s",
                "title", "instructions", "attachment_kind", "attachment")


async def _take_steps(task_id: int, worker_id: int, token_version: int | None, limit: int, now: dt.datetime) -> dict[str, Any]:
    """The take as separate statements in one transaction (SQLite: no stored functions there), in
    the order of `market_take` (migration 0019): the task's row is written last."""
    async with in_transaction():
        # 1. The worker may take (right end, not banned, session still valid, under the limit of
        #    orders in progress, no automatic limit running: models/records.py).
        worker = await db.fetch_one(
            "UPDATE users SET orders_in_progress = orders_in_progress + 1 "
            "WHERE id = $1 AND \"end\" = 'worker' AND NOT banned AND ($3 IS NULL OR token_version = $3) "
            "AND orders_in_progress < $2 "
            "AND NOT EXISTS (SELECT 1 FROM user_records r WHERE r.user_id = $1 AND r.limited_until > $4) "
            "RETURNING inviter_id, unionid",
            worker_id, limit, token_version, now,
        )
        if worker is None:
            raise _Lost("worker")
        # 2. The task as last committed; a task nobody can take now is refused before any write.
        task = await db.fetch_one(
            f"SELECT {', '.join(_TAKE_COPIES)} FROM tasks "
            "WHERE id = $1 AND status = 'open' AND slots_untaken > 0 AND take_deadline_at > $2 "
            "AND (publisher_unionid IS NULL OR CAST($3 AS VARCHAR(64)) IS NULL OR publisher_unionid <> CAST($3 AS VARCHAR(64)))",
            task_id, now, worker["unionid"],
        )
        if task is None:
            raise _Lost("task")
        # 3. The order, and what the publisher and the worker are told.
        deadline = clock.after(now, task["countdown_s"])
        row = await db.fetch_one(
            "INSERT INTO orders (task_id, worker_id, publisher_id, status, unit_price_fen, fee_fen, "
            "worker_invite_bp, publisher_invite_bp, worker_inviter_id, publisher_inviter_id, "
            "review_window_s, appeal_window_s, taken_at, submit_deadline_at, due_at, sweep_failures) "
            "VALUES ($1, $2, $3, 'in_progress', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, 0) RETURNING id",
            task_id, worker_id, task["publisher_id"], task["unit_price_fen"], task["fee_fen"],
            task["worker_invite_bp"], task["publisher_invite_bp"], worker["inviter_id"], task["publisher_inviter_id"],
            task["review_window_s"], task["appeal_window_s"], now, deadline,
        )
        out = Pending()
        take_events(out, task_id, worker_id, row["id"], task, now, deadline)
        push_ids = await out.write(at=now)
        await audit.record("user", worker_id, "order.take", "order", row["id"], data={"task_id": task_id}, at=now)
        # 4. Last: one slot, one worker — the conditional decrement is the whole race. A block by
        #    the task's publisher and the task's minimums are part of it (models/blocks.py); every
        #    value copied above is repeated. Lost: _Lost rolls back steps 1-3.
        copied = " AND ".join(f"{c} IS ${i + 5}" for i, c in enumerate(_TAKE_COPIES))
        slot = await db.fetch_one(
            "UPDATE tasks SET slots_untaken = slots_untaken - 1, orders_live = orders_live + 1, "
            "status = CASE WHEN slots_untaken = 1 THEN 'full' ELSE 'open' END "
            "WHERE id = $1 AND status = 'open' AND slots_untaken > 0 AND take_deadline_at > $2 "
            "AND (publisher_unionid IS NULL OR CAST($3 AS VARCHAR(64)) IS NULL OR publisher_unionid <> CAST($3 AS VARCHAR(64))) "
            "AND NOT EXISTS (SELECT 1 FROM publisher_blocks b WHERE b.publisher_id = tasks.publisher_id AND b.worker_id = $4) "
            "AND ((min_approval_bp = 0 AND min_completed_orders = 0) OR EXISTS (SELECT 1 FROM user_records r "
            "WHERE r.user_id = $4 AND r.completed_n >= tasks.min_completed_orders "
            "AND (tasks.min_approval_bp = 0 OR r.approval_bp >= tasks.min_approval_bp))) "
            f"AND {copied} RETURNING slots_untaken, status",
            task_id, now, worker["unionid"], worker_id, *(task[c] for c in _TAKE_COPIES),
        )
        if slot is None:
            raise _Lost("task")
        take_hall_event(out, task_id, slot)
        push_ids += await out.write(at=now)
    return {**task, **slot, "id": row["id"], "submit_deadline_at": deadline, "worker_inviter_id": worker["inviter_id"],
            "push_ids": push_ids}


async def _why_take_lost(what: str, task_id: int, worker_id: int, limit: int, token_version: int | None) -> None:
    """Explain a lost take (the transaction is already rolled back)."""
    if what == "worker":
        user = await User.get_or_none(id=worker_id)
        if user is not None and user.banned:  # before the session check: a banned worker learns why
            raise UserBanned()
        if token_version is not None and (user is None or user.token_version != token_version):
            raise SessionRevoked()
        if user is None:
            raise UserNotFound()
        if user.end != End.WORKER:
            raise WrongEnd()
        from models import records

        record = await records.UserRecord.get_or_none(user_id=worker_id)
        if record is not None and record.limited_until is not None and record.limited_until > clock.now():
            raise records.limited_error(record, await market_settings.current())
        raise TooManyOrdersInProgress(limit=limit)
    from models.tasks import get_task

    task = await get_task(task_id)  # applies a due expiry first
    if await Order.exists(task_id=task_id, worker_id=worker_id):
        raise AlreadyTookTask()
    from models import blocks

    if await blocks.is_blocked(task.publisher_id, worker_id):
        raise blocks.BlockedByPublisher()
    if task.status == TaskStatus.OPEN and task.slots_untaken > 0:
        worker = await User.get(id=worker_id)
        if task.publisher_unionid and worker.unionid == task.publisher_unionid:
            raise OwnTask()
        if task.min_approval_bp or task.min_completed_orders:
            unqualified = await blocks.why_not_qualified(task, worker_id)
            if unqualified is not None:
                raise unqualified
        raise SlotTaken()  # it was full for an instant; a slot came back since
    if task.status == TaskStatus.FULL or (task.status == TaskStatus.FINISHED):
        lost = SlotTaken()
        lost.sold_out = True  # every slot is gone: the API marks the task sold out (server/soldout.py)
        raise lost
    raise TaskClosed(status=str(task.status))


# --- the transition runner -------------------------------------------------------------------------
Actor = tuple[str, "int | None"]  # ("user" | "operator" | "timer", id)


async def _act(
    order: Order,
    event: OrderEvent,
    actor: Actor,
    values: dict[str, Any],
    guard: dict[str, Any],
    effects=None,
    audit_data: dict[str, Any] | None = None,
) -> Order:
    """Run one transition: the conditional UPDATE, then (only if it won) its effects, outbox and
    audit rows, all in one transaction. A loser gets the reason, after any due timer is applied.

    `effects(order, out)` returns a summary for the audit row, or (summary, finish) where `finish`
    makes the writes on rows other transactions contend for; it runs last, just before the commit,
    so those row locks are held as briefly as possible (lock order stays order → task → accounts).
    """
    source, target = SOURCE[event], TRANSITIONS[(SOURCE[event], event)]
    async with in_transaction():
        won = await Order.filter(id=order.id, status=source, **guard).update(status=target, **values) == 1
        if won:
            for name, value in values.items():
                setattr(order, name, value)
            order.status = target
            out = Pending()
            result = await effects(order, out) if effects else None
            money, finish = result if isinstance(result, tuple) else (result, None)
            _notify(order, event, out)
            await out.write()
            await audit.record(
                actor[0], actor[1], f"order.{event.value}", "order", order.id,
                data={"from": source.value, "to": target.value, **(money or {}), **(audit_data or {})},
            )
            if finish is not None:  # the writes on shared rows (task, platform accounts) go last
                await finish()
    if not won:
        raise await _refusal(order.id, event, actor)
    return order


async def _refusal(order_id: int, event: OrderEvent, actor: Actor) -> DomainError:
    if actor[0] == "timer":  # a person or another sweeper got there first: nothing to explain
        return InvalidTransition("Nothing was due.", zh="没有到期的事项。")
    current = await settle_due(await Order.get(id=order_id))
    if current.status == SOURCE[event]:
        return DeadlinePassed(status=current.status.value)
    timer = TIMER_EVENTS.get(SOURCE[event])
    if timer is not None and (deadline := getattr(current, timer[1])) is not None and deadline <= clock.now():
        # Too late: the source state's deadline has passed (and its timer has been applied).
        return DeadlinePassed(
            "The time for '{event}' ran out at {deadline_at}.", zh="“{event}”的时限已于 {deadline_at} 截止。",
            status=current.status.value, event=event.value, deadline_at=clock.iso_us(deadline),
        )
    if event in (E.ARBITRATE_WORKER, E.ARBITRATE_PUBLISHER) and current.status in FINAL_STATES:
        return AlreadyDecided(status=current.status.value)
    return InvalidTransition(
        "The order is {status}; '{event}' is not possible now.", zh="订单当前为{status}，现在不能{event}。",
        status=current.status.value, event=event.value,
    )


def _notify(o: Order, event: OrderEvent, out: Pending) -> None:
    """The live events and subscription messages each transition produces (SPEC §5)."""
    changed = order_changed(o.id, o.task_id, o.status.value, event.value, o.due_at)
    out.push("order.changed", changed, o.worker_id)
    out.push("order.changed", changed, o.publisher_id)
    info = {"order_id": o.id, "task_id": o.task_id, "status": o.status.value, "event": event.value}
    if o.status == S.AWAITING_REVIEW:
        out.subscribe("order_awaiting_review", info | {"review_deadline_at": clock.iso_us(o.review_deadline_at)}, o.publisher_id)
    elif o.status == S.REJECTED:
        out.subscribe(
            "order_rejected",
            info | {"reason": o.reject_reason, "appeal_deadline_at": clock.iso_us(o.appeal_deadline_at)},
            o.worker_id,
        )
    elif event in (E.ARBITRATE_WORKER, E.ARBITRATE_PUBLISHER):
        out.subscribe("appeal_decided", info | {"worker_wins": event == E.ARBITRATE_WORKER, "note": o.decision_note}, o.worker_id)
    elif o.status == S.COMPLETED:
        out.subscribe("order_approved", info | {"amount_fen": o.unit_price_fen}, o.worker_id)


# --- reading, with due timers applied first ---------------------------------------------------------
async def get_order(order_id: int, *, worker_id: int | None = None, publisher_id: int | None = None) -> Order:
    """An order as its worker or its publisher may see it (anyone else: not found), never stale."""
    order = await Order.get_or_none(id=order_id)
    if order is None or (worker_id is not None and order.worker_id != worker_id) or (
        publisher_id is not None and order.publisher_id != publisher_id
    ):
        raise OrderNotFound()
    return await settle_due(order)


async def settle_due(order: Order) -> Order:
    """Apply the timer event of the order's state if its deadline has passed (lazy settlement)."""
    if order.status == S.APPEALING and order.answer_due_at is not None and order.answer_due_at <= clock.now():
        from models import appeals

        await appeals.decide_unanswered_one(order.id)  # an automatic rule's deadline (issue 14 §2)
        order = await Order.get(id=order.id)
    for _ in range(3):  # a timer can lead into a state whose deadline has passed as well
        if order.due_at is None or order.due_at > clock.now() or order.status not in TIMER_EVENTS:
            return order
        try:
            await apply_timer(order)
        except DomainError:
            pass  # the sweeper or a person got there first
        order = await Order.get(id=order.id)
    return order


# Transitions one read may apply before answering; a reader with more overdue than this (the
# scheduler down for long) sees the rest settled by the next read or by the scheduler.
SETTLE_ON_READ_MAX = 200
_log = logging.getLogger("market.timers")


async def settle_due_for(user_id: int, *, limit: int = SETTLE_ON_READ_MAX) -> int:
    """Apply every overdue timer whose outcome this user would see, before a read of their money or
    lists (SPEC §3: nobody sees a stale state, even while the scheduler is down):

    1. their open tasks whose take window has ended (the untaken slots come back to them);
    2. orders they work on, orders of their tasks, and orders of the people they invited (whose
       completion earns them a referral reward) — each order's timers until none is due, since a
       countdown's end can lead into a review window that has ended too;
    3. then their earned referral rewards are moved to their balance.

    The same transitions the sweeper applies, one transaction per row: racing the sweeper or a
    person loses quietly. Returns how many timers were applied (at most `limit`)."""
    now = clock.now()
    applied = 0
    for row in await db.fetch(
        "SELECT id FROM tasks WHERE publisher_id = $1 AND status = 'open' AND take_deadline_at <= $2 "
        "ORDER BY take_deadline_at LIMIT $3", user_id, now, limit,
    ):
        applied += await _settle_quietly(_expire_task, row["id"])
    # Read through the partial index on due_at: only overdue rows are scanned.
    applied += await _settle_orders(
        "SELECT id FROM orders WHERE due_at <= $1 AND (worker_id = $3 OR publisher_id = $3 "
        "OR worker_inviter_id = $3 OR publisher_inviter_id = $3) ORDER BY due_at LIMIT $2",
        limit - applied, user_id,
    )
    from models import referrals

    await referrals.settle(inviter_id=user_id)
    return applied


async def settle_due_tasks(task_ids: list[int], *, limit: int = SETTLE_ON_READ_MAX) -> int:
    """The same for the tasks a page shows (a publisher's task, an operator's task list): their
    expiries, then their orders' timers."""
    if not task_ids:
        return 0
    marks = ", ".join(f"${i + 3}" for i in range(len(task_ids)))
    applied = 0
    for row in await db.fetch(
        f"SELECT id FROM tasks WHERE status = 'open' AND take_deadline_at <= $1 AND id IN ({marks}) "
        "ORDER BY take_deadline_at LIMIT $2", clock.now(), limit, *task_ids,
    ):
        applied += await _settle_quietly(_expire_task, row["id"])
    return applied + await _settle_orders(
        f"SELECT id FROM orders WHERE due_at <= $1 AND task_id IN ({marks}) ORDER BY due_at LIMIT $2", limit - applied, *task_ids,
    )


async def settle_due_orders(order_ids: list[int]) -> int:
    """The same for the orders a list shows (an operator's order list)."""
    if not order_ids:
        return 0
    marks = ", ".join(f"${i + 3}" for i in range(len(order_ids)))
    return await _settle_orders(
        f"SELECT id FROM orders WHERE due_at <= $1 AND id IN ({marks}) ORDER BY due_at LIMIT $2", SETTLE_ON_READ_MAX, *order_ids,
    )


async def _settle_orders(sql: str, limit: int, *args) -> int:
    """Apply the timers of the orders `sql` finds due ($1: now, $2: how many more, then `args`)."""
    applied = 0
    for _ in range(len(TIMER_EVENTS)):  # a timer may lead into a state whose deadline has passed too
        if applied >= limit:
            break
        rows = await db.fetch(sql, clock.now(), limit - applied, *args)
        if not rows:
            break
        for row in rows:
            applied += await _settle_quietly(run_timer, row["id"])
    return applied


async def _expire_task(task_id: int) -> bool:
    from models.tasks import expire_if_due

    return await expire_if_due(task_id)


async def _settle_quietly(apply, row_id: int) -> int:
    """A row whose timer fails unexpectedly is left to the sweeper (which postpones and logs it):
    a read never fails because of it."""
    try:
        return 1 if await apply(row_id) else 0
    except Exception:  # noqa: BLE001
        _log.exception("lazy settlement of %s %s failed; the sweeper will retry it", apply.__name__, row_id)
        return 0


# A timer applied within this many seconds of its deadline opens the next window at the deadline
# (no drift); applied later, the window opens when it is applied, whole (SPEC §3, docs/timers.md).
LATE_TIMER_GRACE_S = 5


def review_deadline_after_countdown(order: "Order", now: dt.datetime) -> dt.datetime:
    """When the review window the countdown's end opens closes.

    Normally the window runs from the countdown's end (the deadline), so a sweep that is a moment
    late moves nothing. If the end is applied more than `LATE_TIMER_GRACE_S` after it (the
    schedulers were down and nobody read the order), the publisher has not had any of that window
    yet: it opens now, whole, and the publisher is never auto-approved without a review window.
    """
    deadline = order.submit_deadline_at
    if (now - deadline).total_seconds() <= LATE_TIMER_GRACE_S:
        return clock.after(deadline, order.review_window_s)
    return clock.after(now, order.review_window_s)


async def apply_timer(order: Order) -> Order:
    """The timer event due for the order's current state (sweeper and lazy reads)."""
    event, column = TIMER_EVENTS[order.status]
    deadline: dt.datetime = getattr(order, column)
    now = clock.now()
    guard = {"due_at__lte": now}
    actor: Actor = ("timer", None)
    if event == E.COUNTDOWN_END:
        review = review_deadline_after_countdown(order, now)
        done = await _act(
            order, event, actor, {"review_deadline_at": review, "due_at": review, "submitted_at": deadline},
            guard, _leave_in_progress,
        )
    elif event == E.REVIEW_TIMEOUT:
        done = await _act(order, event, actor, {"due_at": None, "finished_at": deadline, "finished_by": event.value}, guard, _completed(event))
    else:
        done = await _act(order, event, actor, {"due_at": None, "finished_at": deadline, "finished_by": event.value}, guard, _failed(event))
    metrics.timer_applied(f"order.{event.value}", deadline, now)
    return done


async def _leave_in_progress(o: Order, out: Pending) -> None:
    await _release_worker_slot(o.worker_id)


def _completed(event: OrderEvent):
    async def effects(o: Order, out: Pending):
        return await _complete(o, event, out)

    return effects


def _failed(event: OrderEvent):
    async def effects(o: Order, out: Pending):
        return await _fail(o, event, out)

    return effects


# --- worker actions --------------------------------------------------------------------------------
async def submit(order_id: int, worker_id: int, *, proof_text: str | None = None, proof_image: str | None = None) -> Order:
    """The worker hands in the work (optional proof) before the countdown ends."""
    proof_text = clean_text(proof_text, "proof_text", TEXT_MAX, required=False, multiline=True)
    proof_image = clean_text(proof_image, "proof_image", IMAGE_REF_MAX, required=False)
    order = await get_order(order_id, worker_id=worker_id)
    now = clock.now()
    review = clock.after(now, order.review_window_s)
    return await _act(
        order, E.SUBMIT, ("user", worker_id),
        {"proof_text": proof_text, "proof_image": proof_image, "submitted_at": now, "review_deadline_at": review, "due_at": review},
        {"submit_deadline_at__gt": now}, _leave_in_progress,
    )


async def abandon(order_id: int, worker_id: int) -> Order:
    """The worker gives up: the slot goes back to the hall if the take window is still open,
    otherwise its P+F goes back to the publisher (flow 3)."""
    order = await get_order(order_id, worker_id=worker_id)
    now = clock.now()

    async def effects(o: Order, out: Pending):
        await _release_worker_slot(o.worker_id)
        reopened = await db.fetch_one(
            "UPDATE tasks SET orders_live = orders_live - 1, slots_untaken = slots_untaken + 1, status = 'open' "
            "WHERE id = $1 AND status IN ('open', 'full') AND take_deadline_at > $2 "
            "RETURNING id, title, unit_price_fen, slots_untaken, status, take_deadline_at",
            o.task_id, now,
        )
        if reopened is not None:
            out.hall("hall.task_changed", {"task_id": o.task_id, "slots_untaken": reopened["slots_untaken"], "status": "open"})
            return {"slot_returned": True}
        await _task_order_final(o.task_id)
        await _refund_to_publisher(o, f"order:{o.id}:refund", EntryKind.SLOT_REFUND, "abandoned after the take window")
        out.wallet_changed(o.publisher_id, EntryKind.SLOT_REFUND, o.unit_price_fen + o.fee_fen, task_id=o.task_id, order_id=o.id)
        return {"slot_returned": False, "refund_fen": o.unit_price_fen + o.fee_fen}

    return await _act(
        order, E.ABANDON, ("user", worker_id),
        {"due_at": None, "finished_at": now, "finished_by": E.ABANDON.value}, {}, effects,
    )


async def accept_rejection(order_id: int, worker_id: int) -> Order:
    order = await get_order(order_id, worker_id=worker_id)
    now = clock.now()
    return await _act(
        order, E.ACCEPT_REJECTION, ("user", worker_id),
        {"due_at": None, "finished_at": now, "finished_by": E.ACCEPT_REJECTION.value},
        {"appeal_deadline_at__gt": now}, _failed(E.ACCEPT_REJECTION),
    )


async def appeal(order_id: int, worker_id: int, *, reason: str, evidence: str | None = None) -> Order:
    reason = clean_text(reason, "reason", REASON_MAX, required=True, multiline=True)
    evidence = clean_text(evidence, "evidence", IMAGE_REF_MAX, required=False)
    order = await get_order(order_id, worker_id=worker_id)
    from models import appeals

    if order.status == S.REJECTED:
        await appeals.check_may_appeal(order_id, worker_id)  # worker_losing_streak (recorded when it refuses)
    now = clock.now()

    async def effects(o: Order, out: Pending):
        rule = await appeals.answer_deadline(o.publisher_id, now)  # publisher_loss_rate
        if rule is None:
            return None
        due, r = rule
        o.answer_due_at, o.answer_rule_version, o.answer_rule_params = due, r.version, r.params
        await Order.filter(id=o.id).update(answer_due_at=due, answer_rule_version=r.version, answer_rule_params=r.params)
        return {"answer_due_at": clock.iso_us(due), "rule": r.kind, "rule_version": r.version}

    return await _act(
        order, E.APPEAL, ("user", worker_id),
        {"appeal_reason": reason, "appeal_evidence": evidence, "appealed_at": now, "due_at": None},
        {"appeal_deadline_at__gt": now}, effects,
    )


# --- publisher actions -----------------------------------------------------------------------------
async def approve(order_id: int, publisher_id: int) -> Order:
    order = await get_order(order_id, publisher_id=publisher_id)
    now = clock.now()
    return await _act(
        order, E.APPROVE, ("user", publisher_id),
        {"due_at": None, "finished_at": now, "finished_by": E.APPROVE.value},
        {"review_deadline_at__gt": now}, _completed(E.APPROVE),
    )


OTHER_REASON_MIN = 10  # "other" (no declared criterion fits) must say why in at least this many characters


async def reject(order_id: int, publisher_id: int, *, reason: str | None = None, criterion: int | None = None) -> Order:
    """Reject with a reason (issue 14 §2). A task that declared acceptance criteria must be rejected
    by one of them (`criterion`, its index; `reason` then adds detail) or as "other" (`criterion`
    None) with a reason of at least OTHER_REASON_MIN characters. A task without criteria needs a reason."""
    reason = clean_text(reason, "reason", REASON_MAX, required=False, multiline=True)
    order = await get_order(order_id, publisher_id=publisher_id)
    task = await Task.get(id=order.task_id)
    chosen = None
    if criterion is not None:
        if isinstance(criterion, bool) or not isinstance(criterion, int) or not task.criteria or not 0 <= criterion < len(task.criteria):
            raise InvalidInput("criterion must be the number of one of the task's criteria.", zh="请选择任务的一条验收标准。", field="criterion")
        chosen = task.criteria[criterion]
        reason = reason or chosen
    elif task.criteria and (reason is None or len(reason) < OTHER_REASON_MIN):
        raise InvalidInput("Choose the criterion the proof fails, or say why in at least {min} characters.",
                           zh="请选择未达到的验收标准，或用至少 {min} 个字说明原因。", field="reason", min=OTHER_REASON_MIN)
    elif reason is None:
        raise InvalidInput("{field} is required.", zh="{field} 不能为空。", field="reason")
    now = clock.now()
    appeal_by = clock.after(now, order.appeal_window_s)
    return await _act(
        order, E.REJECT, ("user", publisher_id),
        {"reject_reason": reason, "reject_criterion": chosen, "rejected_at": now, "appeal_deadline_at": appeal_by, "due_at": appeal_by},
        {"review_deadline_at__gt": now}, audit_data={"criterion": chosen},
    )


# --- operator --------------------------------------------------------------------------------------
async def arbitrate(order_id: int, operator_id: int, *, worker_wins: bool, note: str) -> Order:
    """Decide an appeal: the worker wins (flow 4) or the publisher wins (flow 5). Exactly once."""
    note = clean_text(note, "note", REASON_MAX, required=True, multiline=True)
    order = await Order.get_or_none(id=order_id)
    if order is None:
        raise OrderNotFound()
    event = E.ARBITRATE_WORKER if worker_wins else E.ARBITRATE_PUBLISHER
    now = clock.now()
    return await _act(
        order, event, ("operator", operator_id),
        {"decision_note": note, "decided_by": operator_id, "finished_at": now, "finished_by": event.value},
        {}, _completed(event) if worker_wins else _failed(event),
        audit_data={"note": note},
    )


# --- timers ----------------------------------------------------------------------------------------
async def run_timer(order_id: int) -> bool:
    """Apply the due timer of one order; False when nothing was due (or somebody got there first)."""
    order = await Order.get_or_none(id=order_id)
    if order is None or order.status not in TIMER_EVENTS or order.due_at is None or order.due_at > clock.now():
        return False
    try:
        await apply_timer(order)
        return True
    except DomainError:
        return False
