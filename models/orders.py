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
from models import settings as market_settings
from models.errors import (
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
from models.outbox import Pending
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


async def _complete(o: "Order", event: OrderEvent, out: Pending):
    """Flow 4: from escrow, P to the worker; F to fees, minus the referral rewards (SPEC §2).

    Returns the amounts and the writes that lock shared rows (the task, the sharded platform
    accounts), which `_act` runs last so those locks are held only until the commit right after.
    """
    oid, price, fee = o.id, o.unit_price_fen, o.fee_fen
    r_w = price * o.worker_invite_bp // BP if o.worker_inviter_id else 0
    r_p = fee * o.publisher_invite_bp // BP if o.publisher_inviter_id else 0
    rewards = []
    now = clock.now()
    if r_w:
        rewards.append(ReferralReward(inviter_id=o.worker_inviter_id, invitee_id=o.worker_id, order_id=oid, side=Side.WORKER, amount_fen=r_w, created_at=now))
    if r_p:
        rewards.append(ReferralReward(inviter_id=o.publisher_inviter_id, invitee_id=o.publisher_id, order_id=oid, side=Side.PUBLISHER, amount_fen=r_p, created_at=now))
    if rewards:
        await ReferralReward.bulk_create(rewards)
    out.push("wallet.changed", {"reason": "order_completed", "order_id": oid, "amount_fen": price}, o.worker_id)

    async def finish() -> None:
        await _task_order_final(o.task_id)
        await ledger.post(
            f"order:{oid}:complete",
            EntryKind.ORDER_COMPLETE,
            [
                Leg(ledger.platform_account(AccountKind.ESCROW, o.task_id), -(price + fee)),
                Leg(ledger.user_account(o.worker_id), price),
                Leg(ledger.platform_account(AccountKind.FEES, oid), fee - r_w - r_p),
                Leg(ledger.platform_account(AccountKind.REFERRAL_PAYABLE, oid), r_w + r_p),
            ],
            task_id=o.task_id,
            order_id=oid,
            memo=event.value,
        )

    return {"paid_fen": price, "fee_fen": fee - r_w - r_p, "worker_referral_fen": r_w, "publisher_referral_fen": r_p}, finish


async def _fail(o: "Order", event: OrderEvent, out: Pending):
    """Flow 5: P+F back to the publisher (shared rows locked last, as in `_complete`)."""
    oid, amount = o.id, o.unit_price_fen + o.fee_fen
    out.push("wallet.changed", {"reason": "order_failed", "order_id": oid, "amount_fen": amount}, o.publisher_id)

    async def finish() -> None:
        await _task_order_final(o.task_id)
        await _refund_to_publisher(o, f"order:{oid}:fail", EntryKind.ORDER_FAIL, event.value)

    return {"refund_fen": amount}, finish


async def _refund_to_publisher(o: "Order", key: str, kind: EntryKind, memo: str) -> None:
    amount = o.unit_price_fen + o.fee_fen
    await ledger.post(
        key,
        kind,
        [
            Leg(ledger.platform_account(AccountKind.ESCROW, o.task_id), -amount),
            Leg(ledger.user_account(o.publisher_id), amount),
        ],
        task_id=o.task_id,
        order_id=o.id,
        memo=memo,
    )


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
    "proof_text", "proof_image", "reject_reason", "appeal_reason", "appeal_evidence", "decision_note",
    "decided_by", "finished_by",
))
_TAKE_SQL = "SELECT * FROM market_take($1, $2, $3, $4, $5)"  # migration 0005
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
    deadline = row["submit_deadline_at"]
    order = Order._init_from_db(  # as if read back: all columns, no ORM bookkeeping per attribute
        **_UNSET_AT_TAKE, id=row["id"], task_id=task_id, worker_id=worker_id, publisher_id=row["publisher_id"],
        status=OrderStatus.IN_PROGRESS.value, unit_price_fen=row["unit_price_fen"], fee_fen=row["fee_fen"],
        worker_invite_bp=row["worker_invite_bp"], publisher_invite_bp=row["publisher_invite_bp"],
        worker_inviter_id=row["worker_inviter_id"], publisher_inviter_id=row["publisher_inviter_id"],
        review_window_s=row["review_window_s"], appeal_window_s=row["appeal_window_s"],
        taken_at=now, submit_deadline_at=deadline, due_at=deadline, sweep_failures=0,
    )
    order.taken_task = TakenTask(task_id, row["title"], row["instructions"], row["attachment_kind"], row["attachment"])
    order.push_ids = list(row["push_ids"])  # the outbox push rows the take wrote, for the relay
    return order


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
    """The outbox rows of a take (the PostgreSQL function writes the same rows and payloads)."""
    hall = {"task_id": task_id, "slots_untaken": task["slots_untaken"], "status": task["status"]}
    out.hall("hall.task_removed" if task["slots_untaken"] == 0 else "hall.task_changed", hall)
    info = {"order_id": order_id, "task_id": task_id, "title": task["title"], "taken_at": clock.iso_us(now)}
    out.push("order.taken", info, task["publisher_id"])
    out.subscribe("order_taken", info, task["publisher_id"])
    out.push("order.changed", {"order_id": order_id, "task_id": task_id, "status": "in_progress",
                               "submit_deadline_at": clock.iso_us(deadline)}, worker_id)


async def _take_steps(task_id: int, worker_id: int, token_version: int | None, limit: int, now: dt.datetime) -> dict[str, Any]:
    """The take as separate statements in one transaction (SQLite: no stored functions there)."""
    async with in_transaction():
        # 1. The worker may take (right end, not banned, session still valid, under the limit).
        worker = await db.fetch_one(
            "UPDATE users SET orders_in_progress = orders_in_progress + 1 "
            "WHERE id = $1 AND \"end\" = 'worker' AND NOT banned AND ($3 IS NULL OR token_version = $3) "
            "AND orders_in_progress < $2 RETURNING inviter_id, unionid",
            worker_id, limit, token_version,
        )
        if worker is None:
            raise _Lost("worker")
        # 2. One slot, one worker: the conditional decrement is the whole race.
        task = await db.fetch_one(
            "UPDATE tasks SET slots_untaken = slots_untaken - 1, orders_live = orders_live + 1, "
            "status = CASE WHEN slots_untaken = 1 THEN 'full' ELSE 'open' END "
            "WHERE id = $1 AND status = 'open' AND slots_untaken > 0 AND take_deadline_at > $2 "
            "AND (publisher_unionid IS NULL OR CAST($3 AS VARCHAR(64)) IS NULL OR publisher_unionid <> CAST($3 AS VARCHAR(64))) "
            "RETURNING publisher_id, unit_price_fen, fee_fen, worker_invite_bp, publisher_invite_bp, "
            "publisher_inviter_id, countdown_s, review_window_s, appeal_window_s, slots_untaken, status, "
            "title, instructions, attachment_kind, attachment",
            task_id, now, worker["unionid"],
        )
        if task is None:
            raise _Lost("task")
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
    return {**task, "id": row["id"], "submit_deadline_at": deadline, "worker_inviter_id": worker["inviter_id"], "push_ids": push_ids}


async def _why_take_lost(what: str, task_id: int, worker_id: int, limit: int, token_version: int | None) -> None:
    """Explain a lost take (the transaction is already rolled back)."""
    if what == "worker":
        user = await User.get_or_none(id=worker_id)
        if token_version is not None and (user is None or user.token_version != token_version):
            raise SessionRevoked()
        if user is None:
            raise UserNotFound()
        if user.end != End.WORKER:
            raise WrongEnd()
        if user.banned:
            raise UserBanned()
        raise TooManyOrdersInProgress(limit=limit)
    from models.tasks import get_task

    task = await get_task(task_id)  # applies a due expiry first
    if await Order.exists(task_id=task_id, worker_id=worker_id):
        raise AlreadyTookTask()
    if task.status == TaskStatus.OPEN and task.slots_untaken > 0:
        worker = await User.get(id=worker_id)
        if task.publisher_unionid and worker.unionid == task.publisher_unionid:
            raise OwnTask()
        raise SlotTaken()  # it was full for an instant; a slot came back since
    if task.status == TaskStatus.FULL or (task.status == TaskStatus.FINISHED):
        raise SlotTaken()
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
        return InvalidTransition("Nothing was due.")
    current = await settle_due(await Order.get(id=order_id))
    if current.status == SOURCE[event]:
        return DeadlinePassed(status=current.status.value)
    timer = TIMER_EVENTS.get(SOURCE[event])
    if timer is not None and (deadline := getattr(current, timer[1])) is not None and deadline <= clock.now():
        # Too late: the source state's deadline has passed (and its timer has been applied).
        return DeadlinePassed(f"The time for '{event.value}' ran out at {deadline.isoformat()}.", status=current.status.value)
    if event in (E.ARBITRATE_WORKER, E.ARBITRATE_PUBLISHER) and current.status in FINAL_STATES:
        return AlreadyDecided(status=current.status.value)
    return InvalidTransition(
        f"The order is {current.status.value}; '{event.value}' is not possible now.", status=current.status.value
    )


def _notify(o: Order, event: OrderEvent, out: Pending) -> None:
    """The live events and subscription messages each transition produces (SPEC §5)."""
    info = {"order_id": o.id, "task_id": o.task_id, "status": o.status.value, "event": event.value}
    out.push("order.changed", info, o.worker_id)
    out.push("order.changed", info, o.publisher_id)
    if o.status == S.AWAITING_REVIEW:
        out.subscribe("order_awaiting_review", info | {"review_deadline_at": o.review_deadline_at.isoformat()}, o.publisher_id)
    elif o.status == S.REJECTED:
        out.subscribe(
            "order_rejected",
            info | {"reason": o.reject_reason, "appeal_deadline_at": o.appeal_deadline_at.isoformat()},
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
    for _ in range(3):  # a timer can lead into a state whose deadline has passed as well
        if order.due_at is None or order.due_at > clock.now() or order.status not in TIMER_EVENTS:
            return order
        try:
            await apply_timer(order)
        except DomainError:
            pass  # the sweeper or a person got there first
        order = await Order.get(id=order.id)
    return order


async def apply_timer(order: Order) -> Order:
    """The timer event due for the order's current state (sweeper and lazy reads)."""
    event, column = TIMER_EVENTS[order.status]
    deadline: dt.datetime = getattr(order, column)
    guard = {"due_at__lte": clock.now()}
    actor: Actor = ("timer", None)
    if event == E.COUNTDOWN_END:
        review = clock.after(deadline, order.review_window_s)  # from the countdown's end: no drift
        return await _act(
            order, event, actor, {"review_deadline_at": review, "due_at": review, "submitted_at": deadline},
            guard, _leave_in_progress,
        )
    if event == E.REVIEW_TIMEOUT:
        return await _act(order, event, actor, {"due_at": None, "finished_at": deadline, "finished_by": event.value}, guard, _completed(event))
    return await _act(order, event, actor, {"due_at": None, "finished_at": deadline, "finished_by": event.value}, guard, _failed(event))


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
    proof_text = clean_text(proof_text, "proof_text", TEXT_MAX, required=False)
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
        out.push("wallet.changed", {"reason": "order_abandoned", "order_id": o.id, "amount_fen": o.unit_price_fen + o.fee_fen}, o.publisher_id)
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
    reason = clean_text(reason, "reason", REASON_MAX, required=True)
    evidence = clean_text(evidence, "evidence", IMAGE_REF_MAX, required=False)
    order = await get_order(order_id, worker_id=worker_id)
    now = clock.now()
    return await _act(
        order, E.APPEAL, ("user", worker_id),
        {"appeal_reason": reason, "appeal_evidence": evidence, "appealed_at": now, "due_at": None},
        {"appeal_deadline_at__gt": now},
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


async def reject(order_id: int, publisher_id: int, *, reason: str) -> Order:
    reason = clean_text(reason, "reason", REASON_MAX, required=True)
    order = await get_order(order_id, publisher_id=publisher_id)
    now = clock.now()
    appeal_by = clock.after(now, order.appeal_window_s)
    return await _act(
        order, E.REJECT, ("user", publisher_id),
        {"reject_reason": reason, "rejected_at": now, "appeal_deadline_at": appeal_by, "due_at": appeal_by},
        {"review_deadline_at__gt": now},
    )


# --- operator --------------------------------------------------------------------------------------
async def arbitrate(order_id: int, operator_id: int, *, worker_wins: bool, note: str) -> Order:
    """Decide an appeal: the worker wins (flow 4) or the publisher wins (flow 5). Exactly once."""
    note = clean_text(note, "note", REASON_MAX, required=True)
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
