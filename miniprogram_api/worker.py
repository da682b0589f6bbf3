"""Worker Mini Program: the task hall, one-click take, and the worker's own orders."""

from __future__ import annotations

from sanic import Blueprint
from sanic.request import Request
from sanic.response import json

from miniprogram_api import views as V
from miniprogram_api.auth import Session, require
from miniprogram_api.common import poke_relay, order_view, page, page_args, parse, query_int, task_view
from miniprogram_api.docs import doc
from miniprogram_api.schemas import AppealIn, SubmitIn
from models import clock, orders, uploads
from models.errors import InvalidInput
from models.orders import Order, OrderStatus
from models.tasks import Task, TaskStatus
from models.users import End
from server.ratelimit import limit

bp = Blueprint("mp_worker", url_prefix="/api/v1/worker")
TAG = "worker"


@bp.get("/hall")
@doc(
    "The task hall: open tasks, newest first", tag=TAG, ok=V.PAGE_TASKS, errors=(400, 401, 403),
    params=(("cursor", "integer", "id of the last task of the previous page"), ("limit", "integer", "1–50, default 20"),
            ("min_price_fen", "integer", "lowest unit price"), ("max_price_fen", "integer", "highest unit price")),
)
@require(End.WORKER)
async def hall(request: Request, session: Session):
    cursor, n = page_args(request)
    low = query_int(request, "min_price_fen", None, low=0, high=10**9)
    high = query_int(request, "max_price_fen", None, low=0, high=10**9)
    q = Task.filter(status=TaskStatus.OPEN, take_deadline_at__gt=clock.now())
    if cursor:
        q = q.filter(id__lt=cursor)
    if low is not None:
        q = q.filter(unit_price_fen__gte=low)
    if high is not None:
        q = q.filter(unit_price_fen__lte=high)
    tasks = await q.order_by("-id").limit(n)
    return json(page([task_view(t) for t in tasks], n))


@bp.get("/tasks/<task_id:int>")
@doc("One task of the hall", tag=TAG, ok=V.TASK, errors=(401, 403, 404))
@require(End.WORKER)
async def task_detail(request: Request, session: Session, task_id: int):
    from models.tasks import get_task

    task = await get_task(task_id)
    return json(task_view(task))


@bp.post("/tasks/<task_id:int>/take")
@doc(
    "Take one slot of a task (one click)", tag=TAG, ok=V.ORDER, ok_status=201,
    description="Exactly one worker wins each slot. Losers get 409 slot_taken / task_closed; "
    "already_took_task if this worker took the task before; too_many_orders_in_progress over the limit.",
)
@require(End.WORKER, lookup=False)  # orders.take checks the user row (ban, session version) itself
async def take(request: Request, session: Session, task_id: int):
    await limit(request, "take", str(session.user_id))
    order = await orders.take(task_id, session.user_id, token_version=session.token_version)
    poke_relay(request, order.push_ids)
    return json(order_view(order, order.taken_task), status=201)


@bp.get("/orders")
@doc(
    "My orders, newest first", tag=TAG, ok=V.PAGE_ORDERS, errors=(400, 401, 403),
    params=(("status", "string", "filter by state"), ("cursor", "integer", "id of the last order of the previous page"), ("limit", "integer", "1–50")),
)
@require(End.WORKER)
async def my_orders(request: Request, session: Session):
    cursor, n = page_args(request)
    q = Order.filter(worker_id=session.user.id)
    status = request.args.get("status")
    if status:
        if status not in OrderStatus.__members__.values():
            raise InvalidInput("Unknown status.", field="status")
        q = q.filter(status=status)
    if cursor:
        q = q.filter(id__lt=cursor)
    rows = await q.order_by("-id").limit(n)
    rows = [await orders.settle_due(o) for o in rows]  # never show a stale state
    tasks = {t.id: t for t in await Task.filter(id__in={o.task_id for o in rows})}
    return json(page([order_view(o, tasks.get(o.task_id)) for o in rows], n))


@bp.get("/orders/<order_id:int>")
@doc("One of my orders, with its task and deadlines", tag=TAG, ok=V.ORDER, errors=(401, 403, 404))
@require(End.WORKER)
async def order_detail(request: Request, session: Session, order_id: int):
    order = await orders.get_order(order_id, worker_id=session.user.id)
    return json(order_view(order, await Task.get(id=order.task_id)))


async def _respond(request: Request, order) -> object:
    poke_relay(request)
    return json(order_view(order, await Task.get(id=order.task_id)))


@bp.post("/orders/<order_id:int>/submit")
@doc("Hand in the work before the countdown ends (optional proof)", tag=TAG, body=SubmitIn, ok=V.ORDER)
@require(End.WORKER)
async def submit(request: Request, session: Session, order_id: int):
    body = parse(SubmitIn, request)
    await limit(request, "submit", str(session.user.id))
    image = await uploads.owned_ref(body.proof_image, session.user.id)
    return await _respond(request, await orders.submit(order_id, session.user.id, proof_text=body.proof_text, proof_image=image))


@bp.post("/orders/<order_id:int>/abandon")
@doc("Give up an order in progress", tag=TAG, ok=V.ORDER)
@require(End.WORKER)
async def abandon(request: Request, session: Session, order_id: int):
    await limit(request, "write", str(session.user.id))
    return await _respond(request, await orders.abandon(order_id, session.user.id))


@bp.post("/orders/<order_id:int>/accept-rejection")
@doc("Accept the publisher's rejection (the order fails)", tag=TAG, ok=V.ORDER)
@require(End.WORKER)
async def accept_rejection(request: Request, session: Session, order_id: int):
    await limit(request, "write", str(session.user.id))
    return await _respond(request, await orders.accept_rejection(order_id, session.user.id))


@bp.post("/orders/<order_id:int>/appeal")
@doc("Appeal a rejection within the appeal window", tag=TAG, body=AppealIn, ok=V.ORDER)
@require(End.WORKER)
async def appeal(request: Request, session: Session, order_id: int):
    body = parse(AppealIn, request)
    await limit(request, "write", str(session.user.id))
    evidence = await uploads.owned_ref(body.evidence, session.user.id)
    return await _respond(request, await orders.appeal(order_id, session.user.id, reason=body.reason, evidence=evidence))
