"""Publisher Mini Program: recharge, publish, my tasks with their funnel, review orders."""

from __future__ import annotations

from enum import StrEnum

from sanic import Blueprint
from sanic.request import Request
from sanic.response import empty, json
from tortoise.expressions import Q

from miniprogram_api import schemas as S
from miniprogram_api.auth import Session, require
from miniprogram_api.common import created, image_links, iso, order_view, page, page_args, parse, poke_relay, query_enum, task_view
from miniprogram_api.docs import PAGE_QUERY, Query, doc, q_status
from models import appeals, blocks, clock, orders, records, tasks, uploads
from models import settings as market_settings
from models.errors import AlreadyDecided, Forbidden, InsufficientBalance, InvalidInput, ProhibitedContent, RechargeNotFound, TaskNotFound, Text, UserNotFound
from models.orders import Order, OrderStatus
from models.recharges import Recharge, RechargeStatus
from models.tasks import Task, TaskStatus
from models.users import End
from server.ratelimit import limit

bp = Blueprint("mp_publisher", url_prefix="/api/v1/publisher")
TAG = "publisher"


class _Need(StrEnum):
    REVIEW = "review"
    ANSWER = "answer"


DETAIL_ORDERS = 200  # the orders GET /tasks/{id} lists; the rest are paged (GET /tasks/{id}/orders)
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


async def _worker_records(worker_ids) -> dict[int, dict]:
    """worker id → {worker_id, worker_record}: one primary-key read of the records summary."""
    ids = set(worker_ids)
    s = await market_settings.current()
    recs = await records.get_records(ids)
    return {w: {"worker_id": w, "worker_record": records.worker_record(recs.get(w), s)} for w in ids}


async def _order_out(request: Request, order) -> dict:
    view = order_view(order, image_links(request), await Task.get(id=order.task_id))
    return view | (await _worker_records([order.worker_id]))[order.worker_id]


@bp.post("/recharges")
@doc(
    "Start a recharge: returns the wx.requestPayment parameters", tag=TAG, body=S.MoneyRequestIn, ok=S.CreatedRechargeOut,
    ok_status=201, replay=True, unreachable=(UserNotFound,),
    description="""
    Creates a recharge and its WeChat Pay prepayment; call `wx.requestPayment(payment)`. The balance
    changes only when WeChat Pay's verified notification arrives: wait for `wallet.changed`
    (reason `recharge`) on the WebSocket, or poll GET /recharges/{id} until `status` is `paid`. A
    repeated `request_id` answers 200 with the same recharge and `replayed: true`
    (`idempotency_conflict` if the amount differs). It can be paid until `expires_at`.
    """,
)
@require(End.PUBLISHER)
async def start_recharge(request: Request, session: Session):
    body = parse(S.MoneyRequestIn, request)
    await limit(request, "write", str(session.user.id))
    result = await request.app.ctx.wechat.start_recharge(session.user, body.amount_fen, body.request_id)
    recharge = await Recharge.get(id=result["recharge_id"])
    replayed = result.pop("replayed")
    view, status = created(result | {"status": recharge.status.value}, replayed)
    return json(view, status=status)


@bp.get("/recharges/<recharge_id:int>")
@doc(
    "A recharge and whether it has been credited", tag=TAG, ok=S.RechargeOut,
    description="""
    `status`: `pending` (waiting for payment: `payment` holds the wx.requestPayment arguments again,
    e.g. after the app was closed), `paid` (credited), `closed` (expired unpaid). `payment` is null
    unless the recharge can still be paid.
    """,
)
@require(End.PUBLISHER)
async def recharge_detail(request: Request, session: Session, recharge_id: int):
    r = await Recharge.get_or_none(id=recharge_id, user_id=session.user.id)
    if r is None:
        raise RechargeNotFound()
    payment = None
    if r.status == RechargeStatus.PENDING and r.prepay_id and r.expires_at > clock.now():
        wechat = request.app.ctx.wechat
        payment = wechat.pay.request_payment_params(wechat.cfg.app(End.PUBLISHER.value).appid, r.prepay_id)
    return json({"recharge_id": r.id, "out_trade_no": r.out_trade_no, "amount_fen": r.amount_fen, "status": r.status.value,
                 "expires_at": iso(r.expires_at), "payment": payment})


@bp.post("/tasks")
@doc(
    "Publish a task: q·(P+F) moves from available into escrow", tag=TAG, body=S.PublishIn, ok=S.PublishedTaskOut,
    ok_status=201, replay=True, errors=(InsufficientBalance, ProhibitedContent),
    unreachable=(Forbidden,),  # require() found the publisher
    description="""
    Holds `quantity × (unit_price_fen + fee)` in escrow, F = floor(P × publish_fee_bp / 10000) (GET
    /config). `insufficient_balance`: recharge first; `price_out_of_range`: outside the market's
    range. `request_id` is required: a client that retries after a network error with the same
    `request_id` gets the first task back (200, `replayed: true`) instead of holding money twice;
    a different task under a used `request_id` is `idempotency_conflict`. An image attachment is
    an upload ref of mine; a link must be http(s). `min_approval_bp` / `min_completed_orders`
    restrict the task to workers whose record reaches them (others get `not_qualified`).

    The compliance gate: a prohibited term in the title, instructions, criteria or attachment text
    answers `prohibited_content` (422, nothing charged), or, when the market holds matches
    (GET /config `compliance_hold_on_match` = 1), publishes the task as `held`: its money in
    escrow, not in the hall, until an operator approves it (`open`, the take window starting
    then) or refuses it (`refused`, money back: `task.refused`). WeChat's content security
    (msgSecCheck) flagging the text holds it the same way; an image flagged later by
    mediaCheckAsync takes the task out of the hall (`held`).
    """,
)
@require(End.PUBLISHER)
async def publish(request: Request, session: Session):
    body = parse(S.PublishIn, request)
    await limit(request, "write", str(session.user.id))
    attachment = body.attachment
    if body.attachment_kind == "image":
        attachment = await uploads.owned_ref(attachment, session.user.id, "attachment")
    elif body.attachment_kind == "link" and attachment and not attachment.startswith(("https://", "http://")):
        raise InvalidInput("A link attachment must be an http(s) URL.", zh="链接附件必须是 http(s) 网址。", field="attachment")
    wechat = request.app.ctx.wechat
    verdicts = await wechat.screen_text(session.user, {  # WeChat content security (server/wechat_content.py)
        "title": body.title, "instructions": body.instructions,
        "attachment": attachment if body.attachment_kind in ("text", "link") else None, "criteria": "\n".join(body.criteria or ())})
    task = await tasks.publish(
        session.user.id, title=body.title, instructions=body.instructions, unit_price_fen=body.unit_price_fen,
        quantity=body.quantity, attachment_kind=body.attachment_kind, attachment=attachment, request_id=body.request_id,
        min_approval_bp=body.min_approval_bp, min_completed_orders=body.min_completed_orders,
        criteria=body.criteria, verdicts=verdicts,
    )
    if body.attachment_kind == "image" and not task.replayed:
        await wechat.check_image(session.user, task.id, image_links(request).url(attachment))
        replayed, task = task.replayed, await Task.get(id=task.id)
        task.replayed = replayed
    poke_relay(request)
    view = task_view(task, image_links(request), for_publisher=True) | {"funnel": (await _funnels([task]))[task.id]}
    view, status = created(view, task.replayed)
    return json(view, status=status)


@bp.get("/overview")
@doc(
    "My home's figures: money in escrow, tasks running, what waits for me", tag=TAG, ok=S.PublisherOverviewOut,
    description="Counted over all my tasks (the lists are paged; these totals are not). Due timers are applied first.",
)
@require(End.PUBLISHER)
async def overview(request: Request, session: Session):
    from models import db

    uid = session.user.id
    await orders.settle_due_for(uid)
    tasks_row = await db.fetch_one(
        "SELECT COALESCE(SUM((slots_untaken + orders_live) * (unit_price_fen + fee_fen)), 0) AS held, "
        "COALESCE(SUM(CASE WHEN status IN ('open', 'full') THEN 1 ELSE 0 END), 0) AS running "
        "FROM tasks WHERE publisher_id = $1", uid,
    )
    orders_row = await db.fetch_one(
        "SELECT COALESCE(SUM(CASE WHEN status = 'awaiting_review' THEN 1 ELSE 0 END), 0) AS review, "
        "COALESCE(SUM(CASE WHEN status = 'appealing' AND answered_at IS NULL THEN 1 ELSE 0 END), 0) AS answer "
        "FROM orders WHERE publisher_id = $1 AND status IN ('awaiting_review', 'appealing')", uid,
    )
    return json({"held_fen": int(tasks_row["held"]), "running_tasks": int(tasks_row["running"]),
                 "awaiting_review": int(orders_row["review"]), "appeals_to_answer": int(orders_row["answer"])})


@bp.get("/tasks")
@doc(
    "My tasks, newest first, each with its funnel", tag=TAG, ok=S.PublisherTaskPage, query=(q_status(TaskStatus), *PAGE_QUERY),
    description="Each task with its `funnel`: orders per state, slots taken and refunded. Due expiries are applied first.",
)
@require(End.PUBLISHER)
async def my_tasks(request: Request, session: Session):
    cursor, n = page_args(request)
    await orders.settle_due_for(session.user.id)  # expiries and order timers, before filtering by state
    q = Task.filter(publisher_id=session.user.id)
    status = query_enum(request, "status", TaskStatus)
    if status:
        q = q.filter(status=status)
    if cursor:
        q = q.filter(id__lt=cursor)
    rows = await q.order_by("-id").limit(n)
    funnels = await _funnels(rows)
    links = image_links(request)
    return json(page([task_view(t, links, for_publisher=True) | {"funnel": funnels[t.id]} for t in rows], n))


@bp.get("/tasks/<task_id:int>")
@doc(
    "One of my tasks with its orders and proofs", tag=TAG, ok=S.TaskDetailOut,
    description="The task (with its funnel) and its orders, newest first (at most 200; `orders_next_cursor` pages the rest), "
                "each with its proof and image links.",
)
@require(End.PUBLISHER)
async def task_detail(request: Request, session: Session, task_id: int):
    await tasks.get_task(task_id, publisher_id=session.user.id)  # not found unless it is mine
    await orders.settle_due_tasks([task_id])  # its orders first: the task's counters follow them
    task = await Task.get(id=task_id)
    order_rows = await Order.filter(task_id=task_id).order_by("-id").limit(DETAIL_ORDERS + 1)
    more = len(order_rows) > DETAIL_ORDERS
    order_rows = order_rows[:DETAIL_ORDERS]
    funnel = (await _funnels([task]))[task.id]
    links = image_links(request)
    workers = await _worker_records(o.worker_id for o in order_rows)
    return json({"task": task_view(task, links, for_publisher=True) | {"funnel": funnel},
                 "orders": [order_view(o, links, with_task=False) | workers[o.worker_id] for o in order_rows],
                 "orders_next_cursor": str(order_rows[-1].id) if more else None})


@bp.get("/tasks/<task_id:int>/orders")
@doc(
    "The orders of one of my tasks, newest first, a page at a time", tag=TAG, ok=S.TaskOrderPage,
    query=(q_status(OrderStatus), *PAGE_QUERY),
    description="Each with its proof, image links and worker's record, as in GET /publisher/tasks/{id} (which lists "
                "the newest 200 and gives `orders_next_cursor` for the rest). Due timers of the task's orders are applied first.",
)
@require(End.PUBLISHER)
async def task_orders(request: Request, session: Session, task_id: int):
    cursor, n = page_args(request)
    status = query_enum(request, "status", OrderStatus)
    await tasks.get_task(task_id, publisher_id=session.user.id)  # not found unless it is mine
    await orders.settle_due_tasks([task_id])
    q = Order.filter(task_id=task_id)
    if status:
        q = q.filter(status=status)
    if cursor:
        q = q.filter(id__lt=cursor)
    rows = await q.order_by("-id").limit(n)
    links = image_links(request)
    workers = await _worker_records(o.worker_id for o in rows)
    return json(page([order_view(o, links, with_task=False) | workers[o.worker_id] for o in rows], n))


@bp.post("/tasks/<task_id:int>/cancel")
@doc(
    "Cancel every untaken slot (refunded); running orders carry on", tag=TAG, ok=S.PublisherTaskOut,
    description="""
    `open` → `cancelled`: every untaken slot's P+F goes back to my available balance at once
    (`wallet.changed`, reason `slot_refund`). Orders already taken carry on. After the take window:
    `deadline_passed` (the slots were refunded by the expiry); a task not open: `invalid_transition`.
    """,
)
@require(End.PUBLISHER)
async def cancel(request: Request, session: Session, task_id: int):
    await limit(request, "write", str(session.user.id))
    task = await tasks.cancel(task_id, session.user.id)
    poke_relay(request)
    return json(task_view(task, image_links(request), for_publisher=True) | {"funnel": (await _funnels([task]))[task.id]})


WAITING = {
    # need → (status, sort column): what waits for the publisher, the soonest first.
    "review": ("awaiting_review", "review_deadline_at"),  # approved automatically at the deadline
    "answer": ("appealing", "appealed_at"),  # unanswered appeals (an answer deadline runs from the appeal)
}
Q_NEED = Query("need", {"type": "string", "enum": list(WAITING), "default": "review"},
               "`review`: orders awaiting my review, the soonest review deadline first; "
               "`answer`: appeals I have not answered yet, the oldest appeal first")


@bp.get("/orders")
@doc(
    "What waits for me across all my tasks: orders to review, or appeals to answer", tag=TAG, ok=S.PublisherOrderPage,
    query=(Q_NEED, *PAGE_QUERY),
    description="""
    Every order of every one of my tasks that waits for me (however old the task, however many
    orders it has), each with its task and its worker's record. `need=review` (the default): orders
    in `awaiting_review`, the soonest `review_deadline_at` first (an order not reviewed by then is
    approved automatically). `need=answer`: orders in `appealing` that I have not answered, the
    oldest appeal first (`answer_due_at`, when set, is the answer's deadline). Due timers are applied
    first. Pass `next_cursor` back as `cursor` for the next page.
    """,
)
@require(End.PUBLISHER)
async def waiting_orders(request: Request, session: Session):
    cursor, n = page_args(request)
    status, column = WAITING[query_enum(request, "need", _Need) or "review"]
    await orders.settle_due_for(session.user.id)  # automatic approvals first: what is listed still waits
    q = Order.filter(publisher_id=session.user.id, status=status)
    if status == "appealing":
        q = q.filter(answered_at__isnull=True)
    if cursor:
        # Keyset: after the cursor's order in (column, id) order; its column keeps its value once set.
        after = await Order.filter(id=cursor, publisher_id=session.user.id).values_list(column, flat=True)
        if not after or after[0] is None:
            raise InvalidInput("cursor must be a next_cursor this server returned.", zh="cursor 必须是服务器返回的 next_cursor。",
                               field="cursor")
        q = q.filter(Q(**{f"{column}__gt": after[0]}) | Q(**{column: after[0], "id__gt": cursor}))
    rows = await q.order_by(column, "id").limit(n)
    overdue = [o.id for o in rows if o.due_at is not None and o.due_at <= clock.now()]
    if overdue and await orders.settle_due_orders(overdue):  # more overdue than one read settles
        rows = await q.order_by(column, "id").limit(n)
    task_rows = {t.id: t for t in await Task.filter(id__in={o.task_id for o in rows})}
    workers = await _worker_records(o.worker_id for o in rows)
    links = image_links(request)
    return json(page([order_view(o, links, task_rows[o.task_id]) | workers[o.worker_id] for o in rows], n))


@bp.get("/orders/<order_id:int>")
@doc(
    "An order of one of my tasks", tag=TAG, ok=S.PublisherOrderOut,
    description="With the proof (`proof_text`, `proof_image_url`), the deadlines and the worker's record; due timers are applied first.",
)
@require(End.PUBLISHER)
async def order_detail(request: Request, session: Session, order_id: int):
    order = await orders.get_order(order_id, publisher_id=session.user.id)
    return json(await _order_out(request, order))


@bp.post("/orders/<order_id:int>/approve")
@doc(
    "Approve: P to the worker, F to the platform", tag=TAG, ok=S.PublisherOrderOut,
    unreachable=(AlreadyDecided,),  # only an operator's arbitration answers it
    description="`awaiting_review` → `completed`, before `review_deadline_at` (afterwards it was approved automatically: `deadline_passed`).",
)
@require(End.PUBLISHER)
async def approve(request: Request, session: Session, order_id: int):
    await limit(request, "write", str(session.user.id))
    order = await orders.approve(order_id, session.user.id)
    poke_relay(request)
    return json(await _order_out(request, order))


@bp.post("/orders/<order_id:int>/reject")
@doc(
    "Reject with a reason; the worker may appeal within the appeal window", tag=TAG, body=S.RejectIn, ok=S.PublisherOrderOut,
    unreachable=(AlreadyDecided,),  # only an operator's arbitration answers it
    description="""
    `awaiting_review` → `rejected`, before `review_deadline_at`. The worker may accept or appeal until
    `appeal_deadline_at`. Say why: `criterion` is the index of the task's acceptance criterion the
    proof fails (`reason` then adds detail), or, with no criterion ("other"), `reason` is required and,
    for a task that declared criteria, at least 10 characters (`invalid_input` naming `reason` or
    `criterion`). The worker sees `reject_criterion` and `reject_reason` with the appeal countdown.
    """,
)
@require(End.PUBLISHER)
async def reject(request: Request, session: Session, order_id: int):
    body = parse(S.RejectIn, request)
    await limit(request, "write", str(session.user.id))
    order = await orders.reject(order_id, session.user.id, reason=body.reason, criterion=body.criterion)
    poke_relay(request)
    return json(await _order_out(request, order))


# --- blocks (issue 14, part 3) ---------------------------------------------------------------------
def _block_view(b, user, record: dict) -> dict:
    return {"id": b.id, "worker_id": b.worker_id, "nickname": user.nickname if user else "", "reason": b.reason,
            "created_at": iso(b.created_at), "worker_record": record}


@bp.post("/blocks")
@doc(
    "Block a worker: my tasks leave their hall and their takes are refused", tag=TAG, body=S.BlockIn, ok=S.CreatedBlockOut,
    ok_status=201, replay=True,
    description="""
    Name the worker by one of my orders (`order_id`) or by `worker_id` (as my orders show it); a
    worker who never took one of my tasks is `worker_not_found`. From then on my tasks are not in
    their hall and their takes answer 403 `blocked_by_publisher`; orders already taken carry on.
    Blocking a worker again answers 200 with the first block (`replayed: true`, the first reason
    stays). The reason is mine: the worker is not shown it.
    """,
)
@require(End.PUBLISHER)
async def block_worker(request: Request, session: Session):
    body = parse(S.BlockIn, request)
    if (body.order_id is None) == (body.worker_id is None):
        raise InvalidInput("Name the worker by order_id or by worker_id (one of them).", zh="请通过 order_id 或 worker_id（二选一）指定接单者。",
                           fields={"order_id": Text("give order_id or worker_id", "order_id 与 worker_id 二选一")})
    await limit(request, "write", str(session.user.id))
    row, new = await blocks.block(session.user.id, worker_id=body.worker_id, order_id=body.order_id, reason=body.reason)
    workers = await blocks.workers_of([row])
    record = (await _worker_records([row.worker_id]))[row.worker_id]["worker_record"]
    view, status = created(_block_view(row, workers.get(row.worker_id), record), not new)
    return json(view, status=status)


@bp.get("/blocks")
@doc(
    "The workers I blocked, newest first", tag=TAG, ok=S.BlockPage, query=PAGE_QUERY,
    description="Each block with its reason, the worker's nickname and record. Pages of at most 50 (any number of blocks).",
)
@require(End.PUBLISHER)
async def my_blocks(request: Request, session: Session):
    cursor, n = page_args(request)
    rows = await blocks.page_of_blocks(session.user.id, cursor, n)
    workers = await blocks.workers_of(rows)
    recs = await _worker_records(b.worker_id for b in rows)
    return json(page([_block_view(b, workers.get(b.worker_id), recs[b.worker_id]["worker_record"]) for b in rows], n))


@bp.delete("/blocks/<worker_id:int>")
@doc(
    "Unblock a worker", tag=TAG, ok_status=204, ok_content={},
    description="The worker sees and may take my tasks again. `block_not_found` (404) if they were not blocked.",
)
@require(End.PUBLISHER)
async def unblock_worker(request: Request, session: Session, worker_id: int):
    await limit(request, "write", str(session.user.id))
    await blocks.unblock(session.user.id, worker_id)
    return empty()


@bp.post("/orders/<order_id:int>/answer")
@doc(
    "Answer the worker's appeal (text and an optional image), once, before it is decided", tag=TAG, body=S.AnswerIn, ok=S.PublisherOrderOut,
    description="""
    While the order is `appealing` and not yet answered: the worker and the operator see my answer
    (`answer_text`, `answer_image_url`, `answered_at`) beside the appeal; the worker's and my
    sockets get `order.answered`. When an automatic rule set
    `answer_due_at`, an answer after it is too late: the appeal was decided for the worker
    (`invalid_transition` with the order's status). A second answer: `invalid_transition`.
    """,
)
@require(End.PUBLISHER)
async def answer_appeal(request: Request, session: Session, order_id: int):
    body = parse(S.AnswerIn, request)
    await limit(request, "write", str(session.user.id))
    image = await uploads.owned_ref(body.image, session.user.id, "image")
    order = await appeals.answer(order_id, session.user.id, text=body.text, image=image)
    poke_relay(request)  # order.answered to the worker and the publisher
    return json(await _order_out(request, order))
