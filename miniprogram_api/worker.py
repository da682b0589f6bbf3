"""Worker Mini Program: the task hall, one-click take, and the worker's own orders."""

from __future__ import annotations

from sanic import Blueprint
from sanic.request import Request
from sanic.response import json

from miniprogram_api import schemas as S
from miniprogram_api.auth import Session, require
from miniprogram_api.common import image_links, now_iso, order_view, page, page_args, parse, poke_relay, query_enum, query_int, task_view
from miniprogram_api.docs import PAGE_QUERY, Query, doc, q_status
from models import blocks, clock, orders, records, uploads
from models import settings as market_settings
from models.errors import AlreadyDecided, AppealsPaused, SlotsBeingTaken, SlotTaken, TaskNotFound, UserNotFound
from models.orders import Order, OrderStatus
from models.tasks import Task, TaskStatus
from models.users import End
from server import metrics, soldout, takelanes
from server.ratelimit import limit

bp = Blueprint("mp_worker", url_prefix="/api/v1/worker")
TAG = "worker"
PRICE = {"type": "integer", "minimum": 0, "maximum": 10**9}


@bp.get("/hall")
@doc(
    "The task hall: open tasks, newest first", tag=TAG, ok=S.TaskPage,
    query=(*PAGE_QUERY, Query("min_price_fen", PRICE, "lowest unit price (fen)"), Query("max_price_fen", PRICE, "highest unit price (fen)")),
    description="""
    Open tasks whose take window is still running, newest first, each with its publisher's record
    (`publisher_record`: outcomes over the last `window_days`, rates null while the publisher is
    `new`) and the task's minimums (`min_approval_bp`, `min_completed_orders`). Tasks of
    publishers who blocked me are not listed. Live changes arrive on the WebSocket
    (`hall.task_published`, `hall.task_changed`, `hall.task_removed`; these are not filtered by
    blocks: a take of such a task answers `blocked_by_publisher`); reload this list after
    reconnecting.
    """,
)
@require(End.WORKER)
async def hall(request: Request, session: Session):
    cursor, n = page_args(request)
    low = query_int(request, "min_price_fen", None, low=0, high=10**9)
    high = query_int(request, "max_price_fen", None, low=0, high=10**9)
    # Tasks of publishers who blocked me are left out (through the blocks' worker_id index).
    q = Task.filter(status=TaskStatus.OPEN, take_deadline_at__gt=clock.now(),
                    publisher_id__not_in=blocks.blocking_publishers(session.user.id))
    if cursor:
        q = q.filter(id__lt=cursor)
    if low is not None:
        q = q.filter(unit_price_fen__gte=low)
    if high is not None:
        q = q.filter(unit_price_fen__lte=high)
    tasks = await q.order_by("-id").limit(n)
    links = image_links(request)
    return json(page(await hall_views(tasks, links), n))


async def hall_views(tasks: list[Task], links) -> list[dict]:
    """Tasks with their publishers' records: one primary-key read of the summary for the page."""
    s = await market_settings.current()
    recs = await records.get_records(t.publisher_id for t in tasks)
    return [task_view(t, links) | {"publisher_record": records.publisher_record(recs.get(t.publisher_id), s)} for t in tasks]


@bp.get("/tasks/<task_id:int>")
@doc(
    "One task of the hall, with its publisher's record", tag=TAG, ok=S.HallTaskOut,
    description="""
    Any task by id (also one that has left the hall: its `status` says so), except one the
    compliance gate holds or refused (`task_not_found`). A due expiry is applied first.
    `blocked_by_publisher` (403): the task's publisher blocked me.
    """,
)
@require(End.WORKER)
async def task_detail(request: Request, session: Session, task_id: int):
    from models.tasks import get_task

    task = await get_task(task_id)
    if task.status in (TaskStatus.HELD, TaskStatus.REFUSED):  # stopped by the compliance gate: never shown to workers
        raise TaskNotFound()
    if await blocks.is_blocked(task.publisher_id, session.user.id):
        raise blocks.BlockedByPublisher()
    return json((await hall_views([task], image_links(request)))[0])


@bp.get("/record")
@doc(
    "My record, as publishers and operators see it, and any limit on my takes", tag=TAG, ok=S.MyRecordOut,
    description="""
    The record the scheduler keeps (`computed_at`): orders taken in the last `window_days`, how
    they ended, my approval rate (what a task's `min_approval_bp` compares; null while the record
    is `new`), abandons and appeals. `limited` is the automatic limit running on me (too many
    abandons or lost appeals recently): takes answer `worker_limited` until `limited.until`.
    """,
)
@require(End.WORKER)
async def my_record(request: Request, session: Session):
    s = await market_settings.current()
    rec = (await records.get_records([session.user.id])).get(session.user.id)
    return json({"record": records.worker_record(rec, s), "now": now_iso()})


@bp.post("/tasks/<task_id:int>/take")
@doc(
    "Take one slot of a task (one click)", tag=TAG, ok=S.OrderOut, ok_status=201,
    unreachable=(UserNotFound,),  # the session names an existing worker: require() checked the token
    errors=(SlotsBeingTaken,),  # raised by the server's take lane (server/takelanes.py)
    description="""
    Exactly one worker wins each slot. Losers get 409 `slot_taken` (every slot is gone) or
    `task_closed` (expired, cancelled, finished). In a flash crowd, 409 `slots_being_taken`
    (header Retry-After: 1): as many workers as there are slots left clicked before me and their
    takes are under way; retrying may still win if one of them fails. `already_took_task`: this worker took this task
    before — also after abandoning it, a worker never takes the same task again.
    `too_many_orders_in_progress`: at most `max_orders_in_progress` (GET /config) at once.
    403 `own_task`: the worker is the same WeChat user as the publisher; `blocked_by_publisher`:
    the task's publisher blocked me; `not_qualified`: my record is below the task's
    `min_approval_bp` / `min_completed_orders` (details say both); `worker_limited`: an automatic
    limit runs on me (details: reason, until). The new order's countdown runs until
    `submit_deadline_at`.
    """,
)
@require(End.WORKER, lookup=False)  # orders.take checks the user row (ban, session version) itself
async def take(request: Request, session: Session, task_id: int):
    await limit(request, "take", str(session.user_id))
    marks = soldout.marks_of(request.app)
    if marks is not None and await marks.is_marked(task_id):  # the last slot is gone: no database call
        metrics.take_lost_early(SlotTaken.code)
        raise SlotTaken()
    lanes = takelanes.lanes_of(request.app)
    try:
        # Through the task's lane: this process's takes of one task go one database call at a
        # time, grouped when several wait (server/takelanes.py).
        order = await metrics.count_take(lanes.take(task_id, session.user_id, session.token_version) if lanes is not None
                                         else orders.take(task_id, session.user_id, token_version=session.token_version))
    except SlotTaken as lost:
        if marks is not None and getattr(lost, "sold_out", False) and not getattr(lost, "in_lane", False):
            await marks.mark(task_id)
        raise
    if marks is not None and order.slots_left == 0:  # this take emptied the task
        await marks.mark(task_id)
    poke_relay(request, order.push_ids)
    return json(order_view(order, image_links(request), order.taken_task), status=201)


@bp.get("/orders")
@doc(
    "My orders, newest first", tag=TAG, ok=S.OrderPage, query=(q_status(OrderStatus), *PAGE_QUERY),
    description="My orders, each with its task and deadlines; due timers are applied before answering.",
)
@require(End.WORKER)
async def my_orders(request: Request, session: Session):
    cursor, n = page_args(request)
    await orders.settle_due_for(session.user.id)  # before filtering by state: never a stale state
    q = Order.filter(worker_id=session.user.id)
    status = query_enum(request, "status", OrderStatus)
    if status:
        q = q.filter(status=status)
    if cursor:
        q = q.filter(id__lt=cursor)
    rows = await q.order_by("-id").limit(n)
    tasks = {t.id: t for t in await Task.filter(id__in={o.task_id for o in rows})}
    links = image_links(request)
    return json(page([order_view(o, links, tasks.get(o.task_id)) for o in rows], n))


@bp.get("/orders/<order_id:int>")
@doc(
    "One of my orders, with its task and deadlines", tag=TAG, ok=S.OrderOut,
    description="`deadline_at` is the deadline running now; render countdowns against `now`.",
)
@require(End.WORKER)
async def order_detail(request: Request, session: Session, order_id: int):
    order = await orders.get_order(order_id, worker_id=session.user.id)
    return json(order_view(order, image_links(request), await Task.get(id=order.task_id)))


async def _respond(request: Request, order) -> object:
    poke_relay(request)
    return json(order_view(order, image_links(request), await Task.get(id=order.task_id)))


@bp.post("/orders/<order_id:int>/submit")
@doc(
    "Hand in the work before the countdown ends (optional proof)", tag=TAG, body=S.SubmitIn, ok=S.OrderOut,
    unreachable=(AlreadyDecided,),  # only an operator's arbitration answers it
    description="""
    `in_progress` → `awaiting_review`, before `submit_deadline_at` (afterwards: `deadline_passed`;
    the countdown has already moved the order to review without proof). `proof_image` is an upload
    ref of mine (POST /uploads). The review window starts: `review_deadline_at`.
    """,
)
@require(End.WORKER)
async def submit(request: Request, session: Session, order_id: int):
    body = parse(S.SubmitIn, request)
    await limit(request, "submit", str(session.user.id))
    image = await uploads.owned_ref(body.proof_image, session.user.id, "proof_image")
    return await _respond(request, await orders.submit(order_id, session.user.id, proof_text=body.proof_text, proof_image=image))


@bp.post("/orders/<order_id:int>/abandon")
@doc(
    "Give up an order in progress", tag=TAG, ok=S.OrderOut,
    unreachable=(AlreadyDecided,),  # only an operator's arbitration answers it
    description="""
    `in_progress` → `abandoned`. The slot returns to the hall while the task's take window is open
    (another worker may take it), else its money goes back to the publisher. The worker who
    abandoned can never take this task again (`already_took_task`).
    """,
)
@require(End.WORKER)
async def abandon(request: Request, session: Session, order_id: int):
    await limit(request, "write", str(session.user.id))
    order = await orders.abandon(order_id, session.user.id)
    marks, lanes = soldout.marks_of(request.app), takelanes.lanes_of(request.app)
    if lanes is not None:  # the slot may have come back to the hall
        lanes.slot_returned(order.task_id)
    if marks is not None:
        await marks.clear(order.task_id)
    return await _respond(request, order)


@bp.post("/orders/<order_id:int>/accept-rejection")
@doc(
    "Accept the publisher's rejection (the order fails)", tag=TAG, ok=S.OrderOut,
    unreachable=(AlreadyDecided,),  # only an operator's arbitration answers it
    description="`rejected` → `failed` at once, instead of appealing; the publisher gets the money back.",
)
@require(End.WORKER)
async def accept_rejection(request: Request, session: Session, order_id: int):
    await limit(request, "write", str(session.user.id))
    return await _respond(request, await orders.accept_rejection(order_id, session.user.id))


@bp.post("/orders/<order_id:int>/appeal")
@doc(
    "Appeal a rejection within the appeal window", tag=TAG, body=S.AppealIn, ok=S.OrderOut,
    unreachable=(AlreadyDecided,),  # only an operator's arbitration answers it
    errors=(AppealsPaused,),
    description="""
    `rejected` → `appealing`, before `appeal_deadline_at` (afterwards the order has failed:
    `deadline_passed`). An operator decides; the result arrives as `order.changed` and a
    subscription message. The publisher may answer first (`answer_text`, `answer_image_url`);
    when an automatic rule applies to the publisher, `answer_due_at` says when the appeal is
    decided for me unless they answer. After a run of lost appeals an automatic rule may pause
    appealing (`appeals_paused`, with `until`).
    """,
)
@require(End.WORKER)
async def appeal(request: Request, session: Session, order_id: int):
    body = parse(S.AppealIn, request)
    await limit(request, "write", str(session.user.id))
    evidence = await uploads.owned_ref(body.evidence, session.user.id, "evidence")
    return await _respond(request, await orders.appeal(order_id, session.user.id, reason=body.reason, evidence=evidence))
