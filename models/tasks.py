"""Tasks: a publisher's paid request for `quantity` slots of work, each slot becoming an order.

Publishing moves q·(P+F) from the publisher's available balance into escrow (the hold). Slots are a
counter (`slots_untaken`) decremented by one conditional UPDATE per take, so a thousand concurrent
takers of one slot produce exactly one order. Untaken slots are refunded when the take window ends
(timer `expire`) or the publisher cancels them.
"""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import audit, clock, db, ledger
from server import metrics
from models.inputs import clean_text, whole_number
from models import settings as market_settings
from models.settings import BP
from models.errors import (
    DeadlinePassed,
    Forbidden,
    InvalidInput,
    InvalidTransition,
    PriceOutOfRange,
    TaskNotFound,
    UserBanned,
    WrongEnd,
)
from models.ledger import AccountKind, EntryKind, Leg
from models.outbox import Pending, hall_task_removed
from models.users import End, User


class TaskStatus(StrEnum):
    OPEN = "open"  # slots left to take, take window open
    FULL = "full"  # every slot taken; orders still running (an abandon may reopen a slot)
    EXPIRED = "expired"  # take window over; untaken slots refunded
    CANCELLED = "cancelled"  # the publisher cancelled the untaken slots (refunded)
    FINISHED = "finished"  # every slot taken and every order final
    HELD = "held"  # stopped by the compliance gate: in escrow, not in the hall, waits for an operator
    REFUSED = "refused"  # an operator refused the held task; its escrow went back to the publisher


class TaskEvent(StrEnum):
    TAKE = "take"  # a worker takes a slot (the last one makes the task full)
    SLOT_RETURNED = "slot_returned"  # an order abandoned within the take window frees its slot
    CANCEL = "cancel"  # the publisher cancels every untaken slot
    EXPIRE = "expire"  # timer: the take window ended with slots untaken
    LAST_ORDER_FINAL = "last_order_final"  # the last live order of a full task became final


TASK_TRANSITIONS: dict[tuple[TaskStatus, TaskEvent], TaskStatus] = {
    (TaskStatus.OPEN, TaskEvent.TAKE): TaskStatus.OPEN,  # or FULL when it was the last slot
    (TaskStatus.OPEN, TaskEvent.SLOT_RETURNED): TaskStatus.OPEN,
    (TaskStatus.FULL, TaskEvent.SLOT_RETURNED): TaskStatus.OPEN,
    (TaskStatus.OPEN, TaskEvent.CANCEL): TaskStatus.CANCELLED,
    (TaskStatus.OPEN, TaskEvent.EXPIRE): TaskStatus.EXPIRED,
    (TaskStatus.FULL, TaskEvent.LAST_ORDER_FINAL): TaskStatus.FINISHED,
}

ATTACHMENT_KINDS = ("image", "link", "text")
TITLE_MAX, INSTRUCTIONS_MAX, ATTACHMENT_MAX = 64, 2000, 1024
MAX_MIN_COMPLETED = 100_000  # the highest "min completed orders" a task may ask for
# Acceptance criteria (issue 14 §2): a short list the publisher declares; a rejection names one.
CRITERIA_MAX, CRITERION_MAX = 10, 100


class Task(Model):
    id = fields.BigIntField(primary_key=True)
    publisher = fields.ForeignKeyField("models.User", related_name="tasks", on_delete=fields.RESTRICT)
    request_id = fields.CharField(max_length=64, null=True)  # the client's idempotency key
    title = fields.CharField(max_length=TITLE_MAX)
    instructions = fields.TextField()
    attachment_kind = fields.CharField(max_length=8, null=True)
    attachment = fields.CharField(max_length=ATTACHMENT_MAX, null=True)
    criteria = fields.JSONField(null=True)  # acceptance criteria: a list of short texts, or null (issue 14)
    # The compliance gate (models/compliance.py): why a task waits for an operator, and since when.
    hold_reason = fields.CharField(max_length=255, null=True)
    held_at = fields.DatetimeField(null=True)
    unit_price_fen = fields.BigIntField()  # P, paid to the worker per completed order
    fee_fen = fields.BigIntField()  # F per slot, the platform's publishing fee
    quantity = fields.IntField()
    status = fields.CharEnumField(TaskStatus, max_length=16, default=TaskStatus.OPEN)
    slots_untaken = fields.IntField()  # held in escrow, takeable while open
    orders_live = fields.IntField(default=0)  # orders not yet final
    slots_refunded = fields.IntField(default=0)  # untaken slots given back (expired / cancelled)
    last_refund_slots = fields.IntField(default=0)  # scratch: how many the last expire/cancel refunded
    # Copied from the settings in force at publishing (SPEC §3): a settings change never moves them.
    take_window_s = fields.IntField()
    countdown_s = fields.IntField()
    review_window_s = fields.IntField()
    appeal_window_s = fields.IntField()
    fee_bp = fields.IntField()
    worker_invite_bp = fields.IntField()
    publisher_invite_bp = fields.IntField()
    # Denormalised once at publishing; both are immutable facts about the publisher.
    publisher_inviter_id = fields.BigIntField(null=True)
    publisher_unionid = fields.CharField(max_length=64, null=True)
    # Who may take it (issue 14, migration 0014): the worker's record must reach both (0 = no minimum).
    min_approval_bp = fields.IntField(default=0, db_default=0)
    min_completed_orders = fields.IntField(default=0, db_default=0)
    take_deadline_at = fields.DatetimeField()
    created_at = fields.DatetimeField()
    closed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "tasks"
        unique_together = (("publisher_id", "request_id"),)
        # The hall and the expiry sweep use partial indexes on open tasks (migration 0002).
        indexes = (("publisher_id", "id"),)
        constraints = (  # added by migration 0002 (see models/ledger.py Account.Meta)
            CheckConstraint(
                check="slots_untaken >= 0 AND slots_untaken <= quantity AND orders_live >= 0 AND quantity > 0",
                name="ck_tasks_slots",
            ),
            CheckConstraint(check="unit_price_fen > 0 AND fee_fen >= 0", name="ck_tasks_money"),
        )

    @property
    def slot_value_fen(self) -> int:
        return self.unit_price_fen + self.fee_fen


def task_payload(t: Task) -> dict:
    return {
        "task_id": t.id,
        "title": t.title,
        "unit_price_fen": t.unit_price_fen,
        "slots_untaken": t.slots_untaken,
        "status": str(t.status),
        "take_deadline_at": clock.iso_us(t.take_deadline_at),
    }


async def publish(
    publisher_id: int,
    *,
    title: str,
    instructions: str,
    unit_price_fen: int,
    quantity: int = 1,
    attachment_kind: str | None = None,
    attachment: str | None = None,
    request_id: str | None = None,
    min_approval_bp: int = 0,
    min_completed_orders: int = 0,
    criteria: list[str] | None = None,
    verdicts: list[str] | None = None,
) -> Task:
    """Publish a task and hold q·(P+F) in escrow. A repeated `request_id` returns the first task,
    marked `task.replayed = True` (a new task has `replayed = False`). `min_approval_bp` and
    `min_completed_orders` restrict it to workers whose record reaches both (models/blocks.py).

    The compliance gate (models/compliance.py) screens it first: a prohibited term refuses it or
    holds it (setting), and `verdicts` (WeChat content security's, from the caller) hold it. A held
    task is `held`: in escrow, never in the hall, until an operator decides."""
    title = clean_text(title, "title", TITLE_MAX, required=True)
    instructions = clean_text(instructions, "instructions", INSTRUCTIONS_MAX, required=True, multiline=True)
    # Free text may run over lines; a link or an upload ref is one line.
    attachment = clean_text(attachment, "attachment", ATTACHMENT_MAX, required=False, multiline=attachment_kind == "text")
    if attachment is not None and attachment_kind not in ATTACHMENT_KINDS:
        raise InvalidInput("attachment_kind must be image, link or text.", zh="附件类型必须是 image、link 或 text。", field="attachment_kind")
    if attachment is None:
        attachment_kind = None
    unit_price_fen = whole_number(unit_price_fen, "unit_price_fen")
    quantity = whole_number(quantity, "quantity")
    request_id = clean_text(request_id, "request_id", 64, required=False)
    min_approval_bp = whole_number(min_approval_bp, "min_approval_bp")
    min_completed_orders = whole_number(min_completed_orders, "min_completed_orders")
    if not 0 <= min_approval_bp <= BP:
        raise InvalidInput("min_approval_bp must be between 0 and 10000.", zh="min_approval_bp 必须在 0 到 10000 之间。", field="min_approval_bp")
    if not 0 <= min_completed_orders <= MAX_MIN_COMPLETED:
        raise InvalidInput("min_completed_orders must be between 0 and {max}.", zh="min_completed_orders 必须在 0 到 {max} 之间。",
                           field="min_completed_orders", max=MAX_MIN_COMPLETED)
    criteria = clean_criteria(criteria)

    s = await market_settings.current()
    if unit_price_fen <= 0 or not s.min_unit_price_fen <= unit_price_fen <= s.max_unit_price_fen:
        raise PriceOutOfRange(min_fen=s.min_unit_price_fen, max_fen=s.max_unit_price_fen)
    if not 1 <= quantity <= s.max_quantity:
        raise InvalidInput("quantity must be between 1 and {max}.", zh="数量必须在 1 到 {max} 之间。", field="quantity", max=s.max_quantity)

    publisher = await User.get_or_none(id=publisher_id)
    if publisher is None:
        raise Forbidden()
    if publisher.end != End.PUBLISHER:
        raise WrongEnd()
    if publisher.banned:
        raise UserBanned()
    if request_id is not None:
        earlier = await Task.get_or_none(publisher_id=publisher_id, request_id=request_id)
        if earlier is not None:
            return _same_request(earlier, title, unit_price_fen, quantity)

    from models import compliance

    matches = await compliance.screen({"title": title, "instructions": instructions,
                                       "attachment": attachment if attachment_kind in ("text", "link") else None,
                                       "criteria": "\n".join(criteria or ())})
    if matches and not s.compliance_hold_on_match:
        raise compliance.refusal(matches[0])
    held = compliance.hold_reason(matches, list(verdicts or ()))
    fee_fen = s.fee_fen(unit_price_fen)
    try:
        task = await _publish(publisher, s, title, instructions, attachment_kind, attachment, unit_price_fen, fee_fen, quantity, request_id,
                              min_approval_bp, min_completed_orders, criteria, held)
    except IntegrityError:  # the same request_id raced itself: the first one won
        if request_id is None:
            raise
        return _same_request(await Task.get(publisher_id=publisher_id, request_id=request_id), title, unit_price_fen, quantity)
    task.replayed = False
    return task


def _same_request(earlier: Task, title: str, unit_price_fen: int, quantity: int) -> Task:
    """A repeated request_id returns the first task, if it really is the same request."""
    if (earlier.title, earlier.unit_price_fen, earlier.quantity) != (title, unit_price_fen, quantity):
        from models.errors import IdempotencyConflict

        raise IdempotencyConflict()
    earlier.replayed = True
    return earlier


def clean_criteria(criteria: list[str] | None) -> list[str] | None:
    """At most CRITERIA_MAX distinct one-line texts of at most CRITERION_MAX characters; None when empty."""
    if criteria is None:
        return None
    if not isinstance(criteria, list):
        raise InvalidInput("criteria must be a list of texts.", zh="验收标准必须是文字列表。", field="criteria")
    if len(criteria) > CRITERIA_MAX:
        raise InvalidInput("At most {max} criteria.", zh="验收标准最多 {max} 条。", field="criteria", max=CRITERIA_MAX)
    cleaned = [clean_text(c, "criteria", CRITERION_MAX, required=True) for c in criteria]
    if len(set(cleaned)) != len(cleaned):
        raise InvalidInput("Each criterion must be different.", zh="验收标准不能重复。", field="criteria")
    return cleaned or None


async def _publish(publisher, s, title, instructions, attachment_kind, attachment, unit_price_fen, fee_fen, quantity, request_id,
                   min_approval_bp=0, min_completed_orders=0, criteria=None, held: str | None = None) -> Task:
    publisher_id = publisher.id
    now = clock.now()
    async with in_transaction():
        task = await Task.create(
            publisher_id=publisher_id,
            request_id=request_id,
            title=title,
            instructions=instructions,
            attachment_kind=attachment_kind,
            attachment=attachment,
            criteria=criteria,
            unit_price_fen=unit_price_fen,
            fee_fen=fee_fen,
            quantity=quantity,
            slots_untaken=quantity,
            take_window_s=s.take_window_s,
            countdown_s=s.countdown_s,
            review_window_s=s.review_window_s,
            appeal_window_s=s.appeal_window_s,
            fee_bp=s.publish_fee_bp,
            worker_invite_bp=s.worker_invite_bp,
            publisher_invite_bp=s.publisher_invite_bp,
            publisher_inviter_id=publisher.inviter_id,
            publisher_unionid=publisher.unionid,
            min_approval_bp=min_approval_bp,
            min_completed_orders=min_completed_orders,
            take_deadline_at=clock.after(now, s.take_window_s),
            created_at=now,
            status=TaskStatus.HELD if held else TaskStatus.OPEN,
            hold_reason=held,
            held_at=now if held else None,
        )
        hold = quantity * (unit_price_fen + fee_fen)
        await ledger.post(
            f"task:{task.id}:publish",
            EntryKind.PUBLISH,
            [
                Leg(ledger.user_account(publisher_id), -hold),
                Leg(ledger.platform_account(AccountKind.ESCROW, task.id), hold),
            ],
            task_id=task.id,
        )
        out = Pending()
        if held:  # not in the hall until an operator approves it
            out.push("task.held", {"task_id": task.id, "title": title, "held_fen": hold}, publisher_id)
        else:
            out.hall("hall.task_published", task_payload(task))
            out.push("task.published", task_payload(task) | {"held_fen": hold}, publisher_id)
        out.wallet_changed(publisher_id, EntryKind.PUBLISH, -hold, task_id=task.id)
        await out.write()
        await audit.record(
            "user", publisher_id, "task.publish", "task", task.id,
            data={"unit_price_fen": unit_price_fen, "fee_fen": fee_fen, "quantity": quantity, "held_fen": hold,
                  "min_approval_bp": min_approval_bp, "min_completed_orders": min_completed_orders}
            | ({"compliance_hold": held} if held else {}),
        )
    return task


_CLOSE_SLOTS_SQL = (
    "UPDATE tasks SET status = $1, last_refund_slots = slots_untaken, "
    "slots_refunded = slots_refunded + slots_untaken, slots_untaken = 0, closed_at = $2 "
    "WHERE id = $3 AND status = 'open' AND {guard} "
    "RETURNING last_refund_slots, unit_price_fen, fee_fen, publisher_id, title, take_deadline_at"
)


async def _close_untaken(task_id: int, status: TaskStatus, guard: str, *args) -> dict | None:
    """One conditional UPDATE that closes an open task and says how many slots it took back."""
    return await db.fetch_one(_CLOSE_SLOTS_SQL.format(guard=guard), status.value, clock.now(), task_id, *args)


async def _refund_slots(row: dict, task_id: int, key: str, reason: str, out: Pending) -> int:
    slots = row["last_refund_slots"]
    amount = slots * (row["unit_price_fen"] + row["fee_fen"])
    if amount:
        out.wallet_changed(row["publisher_id"], EntryKind.SLOT_REFUND, amount, task_id=task_id)
        await ledger.post(
            key,
            EntryKind.SLOT_REFUND,
            [
                Leg(ledger.platform_account(AccountKind.ESCROW, task_id), -amount),
                Leg(ledger.user_account(row["publisher_id"]), amount),
            ],
            task_id=task_id,
            memo=reason,
        )
    return amount


async def expire_due(task_id: int) -> bool:
    """Timer: the take window ended. Must run inside a transaction. False if nothing was due."""
    now = clock.now()
    row = await _close_untaken(task_id, TaskStatus.EXPIRED, "take_deadline_at <= $4", now)
    if row is None:
        return False
    out = Pending()
    refunded = await _refund_slots(row, task_id, f"task:{task_id}:expire", "take window ended", out)
    out.hall("hall.task_removed", hall_task_removed(task_id, TaskStatus.EXPIRED.value))
    payload = {"task_id": task_id, "title": row["title"], "slots_refunded": row["last_refund_slots"], "refund_fen": refunded}
    out.push("task.expired", payload, row["publisher_id"])
    if refunded:
        out.subscribe("task_expired_refunded", payload, row["publisher_id"])
    await out.write()
    await audit.record("timer", None, "task.expire", "task", task_id, data=payload)
    metrics.timer_applied("task.expire", row["take_deadline_at"], now)
    return True


async def expire_if_due(task_id: int) -> bool:
    async with in_transaction():
        return await expire_due(task_id)


async def cancel(task_id: int, publisher_id: int) -> Task:
    """The publisher cancels every untaken slot: they are refunded; running orders carry on."""
    async with in_transaction():
        row = await _close_untaken(
            task_id, TaskStatus.CANCELLED, "publisher_id = $4 AND take_deadline_at > $5", publisher_id, clock.now()
        )
        if row is not None:
            out = Pending()
            refunded = await _refund_slots(row, task_id, f"task:{task_id}:cancel", "cancelled by the publisher", out)
            out.hall("hall.task_removed", hall_task_removed(task_id, TaskStatus.CANCELLED.value))
            out.push("task.cancelled", {"task_id": task_id, "title": row["title"], "slots_refunded": row["last_refund_slots"],
                                        "refund_fen": refunded}, publisher_id)
            await out.write()
            await audit.record(
                "user", publisher_id, "task.cancel", "task", task_id,
                data={"slots_refunded": row["last_refund_slots"], "refund_fen": refunded},
            )
    if row is None:
        task = await get_task(task_id, publisher_id=publisher_id)  # settles a due expiry first
        if task.status == TaskStatus.OPEN:
            raise DeadlinePassed("The take window has ended.", zh="接单时限已过。", status=task.status.value)
        raise InvalidTransition("The task is {status}; only an open task can be cancelled.", zh="任务当前为{status}，只有可接单的任务才能取消。", status=task.status.value)
    return await Task.get(id=task_id)


async def get_task(task_id: int, *, publisher_id: int | None = None) -> Task:
    """Read a task, applying a due expiry first so nobody sees a stale state.

    With `publisher_id`, a task of another publisher is reported as not found (never leak it).
    """
    task = await Task.get_or_none(id=task_id)
    if task is None or (publisher_id is not None and task.publisher_id != publisher_id):
        raise TaskNotFound()
    if task.status == TaskStatus.OPEN and task.take_deadline_at <= clock.now():
        await expire_if_due(task_id)
        task = await Task.get(id=task_id)
    return task
