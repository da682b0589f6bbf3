"""Blocks and task restrictions (issue 14, part 3): who may take a publisher's tasks.

- A publisher blocks a worker who has worked for them (with a reason): the worker no longer sees
  that publisher's tasks in the hall and a take answers `blocked_by_publisher`. Orders already
  taken carry on. The take checks the block inside its own conditional UPDATE (migration 0014), so
  once a block is committed no take that starts afterwards can win a slot.
- A task may require a minimum approval rate and a minimum of completed orders (the worker's
  record, models/records.py); a take by anybody below answers `not_qualified`.

Sized for 100 000 blocks per publisher: the take probes the unique (publisher_id, worker_id)
index; the hall drops the blocking publishers found through (worker_id); a publisher's list pages
through (publisher_id, id). Nothing ever scans a publisher's blocks.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import audit, clock
from models.errors import DomainError, NotFound
from models.inputs import clean_text
from models.users import End, User

REASON_MAX = 200


class PublisherBlock(Model):
    id = fields.BigIntField(primary_key=True)
    publisher = fields.ForeignKeyField("models.User", related_name="blocks_made", on_delete=fields.CASCADE)
    worker = fields.ForeignKeyField("models.User", related_name="blocks_received", on_delete=fields.CASCADE)
    reason = fields.CharField(max_length=REASON_MAX)
    created_at = fields.DatetimeField()

    class Meta:
        table = "publisher_blocks"
        unique_together = (("publisher_id", "worker_id"),)  # the take's probe
        indexes = (("worker_id",), ("publisher_id", "id"))  # the hall's anti-join; the publisher's pages


class BlockedByPublisher(DomainError):
    code, status = "blocked_by_publisher", 403
    message, message_zh = "The publisher of this task does not accept your work.", "该任务的发布者已将你屏蔽，无法领取其任务。"
    hint = "The task's publisher blocked this worker: their tasks are hidden from the hall and cannot be taken."


class NotQualified(DomainError):
    code, status = "not_qualified", 403
    message = "This task is for workers with an approval rate of at least {min_approval_percent} and at least {min_completed_orders} completed orders."
    message_zh = "该任务要求通过率不低于 {min_approval_percent}、已完成订单不少于 {min_completed_orders} 单。"
    hint = ("The task's publisher restricted it (details: the task's minimums and my record's values, null below the "
            "record's minimum sample); GET /worker/record shows my record.")
    details_schema = {
        "min_approval_bp": {"type": "integer"}, "min_approval_percent": {"type": "string", "description": "e.g. 90%"},
        "min_completed_orders": {"type": "integer"},
        "approval_bp": {"type": ["integer", "null"], "description": "my approval rate, null while my record is new"},
        "completed_orders": {"type": "integer", "description": "my completed orders in the record window"},
    }


class BlockNotFound(NotFound):
    code, message, message_zh = "block_not_found", "This worker is not blocked.", "未屏蔽该接单者。"
    hint = "No block of this worker by me."


class NotMyWorker(NotFound):
    code, message, message_zh = "worker_not_found", "No worker of yours has this id.", "没有为你做过任务的这个接单者。"
    hint = "A publisher can block only a worker who took one of their tasks (name the order or the worker id)."


def percent(bp: int) -> str:
    return f"{bp / 100:g}%"


async def block(publisher_id: int, *, worker_id: int | None = None, order_id: int | None = None, reason: str) -> tuple[PublisherBlock, bool]:
    """Block the worker of one of my orders (or a worker who took one of my tasks). Returns the
    block and whether it is new; blocking again keeps the first block and its reason."""
    from models.orders import Order

    reason = clean_text(reason, "reason", REASON_MAX, required=True)
    if order_id is not None:
        order = await Order.get_or_none(id=order_id, publisher_id=publisher_id)
        if order is None:
            from models.errors import OrderNotFound

            raise OrderNotFound()
        worker_id = order.worker_id
    elif worker_id is None or not await Order.exists(publisher_id=publisher_id, worker_id=worker_id):
        raise NotMyWorker()
    existing = await PublisherBlock.get_or_none(publisher_id=publisher_id, worker_id=worker_id)
    if existing is not None:
        return existing, False
    try:
        async with in_transaction():
            row = await PublisherBlock.create(publisher_id=publisher_id, worker_id=worker_id, reason=reason, created_at=clock.now())
            await audit.record("user", publisher_id, "worker.block", "user", worker_id, data={"reason": reason})
    except IntegrityError:  # the same block raced itself: the first one stands
        return await PublisherBlock.get(publisher_id=publisher_id, worker_id=worker_id), False
    return row, True


async def unblock(publisher_id: int, worker_id: int) -> None:
    async with in_transaction():
        n = await PublisherBlock.filter(publisher_id=publisher_id, worker_id=worker_id).delete()
        if n:
            await audit.record("user", publisher_id, "worker.unblock", "user", worker_id)
    if not n:
        raise BlockNotFound()


async def is_blocked(publisher_id: int, worker_id: int) -> bool:
    return await PublisherBlock.exists(publisher_id=publisher_id, worker_id=worker_id)


async def page_of_blocks(publisher_id: int, cursor: int | None, limit: int) -> list[PublisherBlock]:
    q = PublisherBlock.filter(publisher_id=publisher_id)
    if cursor:
        q = q.filter(id__lt=cursor)
    return await q.order_by("-id").limit(limit)


async def workers_of(blocks: list[PublisherBlock]) -> dict[int, User]:
    ids = {b.worker_id for b in blocks}
    return {u.id: u for u in await User.filter(id__in=ids, end=End.WORKER)} if ids else {}


def blocking_publishers(worker_id: int):
    """The subquery of publishers who blocked this worker (the hall leaves their tasks out)."""
    from tortoise.expressions import Subquery

    return Subquery(PublisherBlock.filter(worker_id=worker_id).values("publisher_id"))


async def why_not_qualified(task, worker_id: int) -> NotQualified | None:
    """NotQualified with the task's minimums and the worker's values, or None if the worker
    qualifies (the same test the take makes in SQL)."""
    from models.records import UserRecord

    rec = await UserRecord.get_or_none(user_id=worker_id)
    completed = rec.completed_n if rec else 0
    approval = rec.approval_bp if rec else None
    ok = completed >= task.min_completed_orders and (
        task.min_approval_bp == 0 or (approval is not None and approval >= task.min_approval_bp))
    if ok:
        return None
    return NotQualified(min_approval_bp=task.min_approval_bp, min_approval_percent=percent(task.min_approval_bp),
                        min_completed_orders=task.min_completed_orders, approval_bp=approval, completed_orders=completed)
