"""Publisher Mini Program: recharge, publish, my tasks with their funnel, review orders."""

from __future__ import annotations

from sanic import Blueprint
from sanic.request import Request
from sanic.response import json

from miniprogram_api import views as V
from miniprogram_api.auth import Session, require
from miniprogram_api.common import poke_relay, order_view, page, page_args, parse, task_view
from miniprogram_api.docs import doc
from miniprogram_api.schemas import MoneyRequestIn, PublishIn, RejectIn
from models import orders, tasks, uploads
from models.errors import InvalidInput, RechargeNotFound
from models.orders import Order
from models.recharges import Recharge
from models.tasks import Task, TaskStatus
from models.users import End
from server.ratelimit import limit

bp = Blueprint("mp_publisher", url_prefix="/api/v1/publisher")
TAG = "publisher"
FUNNEL_STATES = ("in_progress", "awaiting_review", "completed", "rejected", "appealing", "failed", "abandoned")


async def _funnels(task_list: list[Task]) -> dict[int, dict[str, int]]:
    """Per task: orders per state, slots taken, slots refunded."""
    if not task_list:
        return {}
    from models import db

    ids = [t.id for t in task_list]
    marks = ", ".join(f"${i + 1}" for i in range(len(ids)))
    rows = await db.fetch(f"SELECT task_id, status, COUNT(*) AS n FROM orders WHERE task_id IN ({marks}) GROUP BY task_id, status", *ids)
    out = {t.id: {s: 0 for s in FUNNEL_STATES} | {"taken": 0, "refunded_slots": t.slots_refunded} for t in task_list}
    for r in rows:
        out[r["task_id"]][r["status"]] = int(r["n"])
        out[r["task_id"]]["taken"] += int(r["n"])
    return out


@bp.post("/recharges")
@doc(
    "Start a recharge: returns the wx.requestPayment parameters", tag=TAG, body=MoneyRequestIn, ok=V.RECHARGE, ok_status=201,
    errors=(400, 401, 403, 409, 429, 503),
    description="The balance changes only when WeChat Pay's verified notification arrives (watch wallet.changed "
    "on the WebSocket, or GET /recharges/{id}). A repeated request_id returns the same payment.",
)
@require(End.PUBLISHER)
async def start_recharge(request: Request, session: Session):
    body = parse(MoneyRequestIn, request)
    await limit(request, "write", str(session.user.id))
    result = await request.app.ctx.wechat.start_recharge(session.user, body.amount_fen, body.request_id)
    recharge = await Recharge.get(id=result["recharge_id"])
    return json(result | {"status": recharge.status.value}, status=201)


@bp.get("/recharges/<recharge_id:int>")
@doc("A recharge and whether it has been credited", tag=TAG, ok=V.RECHARGE, errors=(401, 403, 404))
@require(End.PUBLISHER)
async def recharge_detail(request: Request, session: Session, recharge_id: int):
    r = await Recharge.get_or_none(id=recharge_id, user_id=session.user.id)
    if r is None:
        raise RechargeNotFound()
    return json({"recharge_id": r.id, "out_trade_no": r.out_trade_no, "amount_fen": r.amount_fen, "status": r.status.value})


@bp.post("/tasks")
@doc(
    "Publish a task: q·(P+F) moves from available into escrow", tag=TAG, body=PublishIn, ok=V.PUBLISHER_TASK, ok_status=201,
    description="Errors: insufficient_balance, price_out_of_range, invalid_input. A repeated request_id returns the first task.",
)
@require(End.PUBLISHER)
async def publish(request: Request, session: Session):
    body = parse(PublishIn, request)
    await limit(request, "write", str(session.user.id))
    attachment = body.attachment
    if body.attachment_kind == "image":
        attachment = await uploads.owned_ref(attachment, session.user.id)
    elif body.attachment_kind == "link" and attachment and not attachment.startswith(("https://", "http://")):
        raise InvalidInput("A link attachment must be an http(s) URL.", field="attachment")
    task = await tasks.publish(
        session.user.id, title=body.title, instructions=body.instructions, unit_price_fen=body.unit_price_fen,
        quantity=body.quantity, attachment_kind=body.attachment_kind, attachment=attachment, request_id=body.request_id,
    )
    poke_relay(request)
    view = task_view(task, for_publisher=True) | {"funnel": (await _funnels([task]))[task.id]}
    return json(view, status=201)


@bp.get("/tasks")
@doc(
    "My tasks, newest first, each with its funnel", tag=TAG, ok=V.PAGE_PUBLISHER_TASKS, errors=(400, 401, 403),
    params=(("status", "string", "open|full|expired|cancelled|finished"), ("cursor", "integer", "id of the last task of the previous page"), ("limit", "integer", "1–50")),
)
@require(End.PUBLISHER)
async def my_tasks(request: Request, session: Session):
    cursor, n = page_args(request)
    q = Task.filter(publisher_id=session.user.id)
    status = request.args.get("status")
    if status:
        if status not in TaskStatus.__members__.values():
            raise InvalidInput("Unknown status.", field="status")
        q = q.filter(status=status)
    if cursor:
        q = q.filter(id__lt=cursor)
    rows = await q.order_by("-id").limit(n)
    rows = [await tasks.get_task(t.id) if t.status == TaskStatus.OPEN else t for t in rows]  # settle due expiries
    funnels = await _funnels(rows)
    return json(page([task_view(t, for_publisher=True) | {"funnel": funnels[t.id]} for t in rows], n))


@bp.get("/tasks/<task_id:int>")
@doc("One of my tasks with its orders and proofs", tag=TAG, ok=V.TASK_DETAIL, errors=(401, 403, 404))
@require(End.PUBLISHER)
async def task_detail(request: Request, session: Session, task_id: int):
    task = await tasks.get_task(task_id, publisher_id=session.user.id)
    order_rows = await Order.filter(task_id=task_id).order_by("-id").limit(200)
    order_rows = [await orders.settle_due(o) for o in order_rows]
    funnel = (await _funnels([task]))[task.id]
    return json({"task": task_view(task, for_publisher=True) | {"funnel": funnel}, "orders": [order_view(o) for o in order_rows]})


@bp.post("/tasks/<task_id:int>/cancel")
@doc("Cancel every untaken slot (refunded); running orders carry on", tag=TAG, ok=V.PUBLISHER_TASK)
@require(End.PUBLISHER)
async def cancel(request: Request, session: Session, task_id: int):
    await limit(request, "write", str(session.user.id))
    task = await tasks.cancel(task_id, session.user.id)
    poke_relay(request)
    return json(task_view(task, for_publisher=True) | {"funnel": (await _funnels([task]))[task.id]})


@bp.get("/orders/<order_id:int>")
@doc("An order of one of my tasks", tag=TAG, ok=V.ORDER, errors=(401, 403, 404))
@require(End.PUBLISHER)
async def order_detail(request: Request, session: Session, order_id: int):
    order = await orders.get_order(order_id, publisher_id=session.user.id)
    return json(order_view(order, await Task.get(id=order.task_id)))


@bp.post("/orders/<order_id:int>/approve")
@doc("Approve: P to the worker, F to the platform", tag=TAG, ok=V.ORDER)
@require(End.PUBLISHER)
async def approve(request: Request, session: Session, order_id: int):
    await limit(request, "write", str(session.user.id))
    order = await orders.approve(order_id, session.user.id)
    poke_relay(request)
    return json(order_view(order, await Task.get(id=order.task_id)))


@bp.post("/orders/<order_id:int>/reject")
@doc("Reject with a reason; the worker may appeal within the appeal window", tag=TAG, body=RejectIn, ok=V.ORDER)
@require(End.PUBLISHER)
async def reject(request: Request, session: Session, order_id: int):
    body = parse(RejectIn, request)
    await limit(request, "write", str(session.user.id))
    order = await orders.reject(order_id, session.user.id, reason=body.reason)
    poke_relay(request)
    return json(order_view(order, await Task.get(id=order.task_id)))
