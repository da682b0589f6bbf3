"""An order's page with its money, and an operator's way out for a stuck order (issue 13).

`/admin/orders/<id>` shows every ledger posting of the order (who got how much) in its "资金"
section. A live order can be forced to completed or failed: the operator first sees the money it
will move and the state it is in, then confirms with a reason; the confirmation carries the state
seen, so a person or a timer who moved the order meanwhile wins and the operator is told
(models/order_overrides.py). Registered on the panel's blueprint by `server/admin/__init__.py`.
"""

from __future__ import annotations

from sanic import Request

from models import audit, ledger, order_overrides, orders
from models.errors import DomainError, InvalidInput
from models.ledger import Posting
from models.operators import Operator
from models.orders import LIVE_STATES, Order, OrderEvent
from server.admin import i18n
from server.admin.lists import people
from server.admin.templating import ENV
from server.admin.views import _actor_names, back, bp, form_value, lang_of, page, show

ACTIONS = {"complete": OrderEvent.FORCE_COMPLETE, "fail": OrderEvent.FORCE_FAIL}


async def _postings(entry_ids: list[int]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {i: [] for i in entry_ids}
    if entry_ids:
        for p in await Posting.filter(entry_id__in=entry_ids).order_by("id").values(
                "entry_id", "amount_fen", user_id="account__user_id", kind="account__kind"):
            out[p["entry_id"]].append(p)
    return out


async def task_money(task_id: int) -> dict:
    """A task's money for its page: every entry (publishing, refunds, each order's outcome) with its
    postings and the names of the customers in them, and what escrow still holds for it."""
    entries = await ledger.JournalEntry.filter(task_id=task_id).order_by("id").limit(2_000)
    postings = await _postings([e.id for e in entries])
    held = sum(p["amount_fen"] for ps in postings.values() for p in ps if getattr(p["kind"], "value", p["kind"]) == "escrow")
    who = await people({p["user_id"] for ps in postings.values() for p in ps})
    return {"entries": entries, "postings": postings, "people": who, "escrow_fen": held}


ENV.globals["task_money"] = task_money  # the task page is views.py's: the template fetches its money


async def _order_page(request: Request, order_id: int, *, action: str | None = None, errors: dict | None = None,
                      reason: str = "", status: int = 200):
    if not await Order.exists(id=order_id):
        return await show(request, "error.html", status=404, title="Not found", message="No such order.")
    await orders.settle_due_orders([order_id])  # its overdue timers first
    order = await Order.get(id=order_id).prefetch_related("task")
    history = await audit.history("order", order_id)
    entries = await ledger.JournalEntry.filter(order_id=order_id).order_by("id")
    postings = await _postings([e.id for e in entries])
    who = await people({order.worker_id, order.publisher_id, order.worker_inviter_id, order.publisher_inviter_id}
                       | {p["user_id"] for ps in postings.values() for p in ps})
    live = order.status in LIVE_STATES
    event = ACTIONS.get(action or "") if live else None
    return await show(request, "order.html", status=status, order=order, history=history, actors=await _actor_names(history),
                      entries=entries, postings=postings, people=who, live=live, action=action if event else None,
                      moves=await order_overrides.money(order, event) if event else None, errors=errors or {}, reason=reason)


@bp.get("/orders/<order_id:int>")
@page()
async def order_detail(request: Request, op: Operator, order_id: int):
    """The order; `?force=complete|fail` opens the confirmation with the money it moves."""
    return await _order_page(request, order_id, action=request.args.get("force"))


@bp.post("/orders/<order_id:int>/force", ctx_multiline=("reason",))
@page()
async def force_order(request: Request, op: Operator, order_id: int):
    lang = lang_of(request)
    t = i18n.translator(lang)
    action = form_value(request, "action", 16)
    reason = form_value(request, "reason", 600)
    if action not in ACTIONS:
        return await _order_page(request, order_id, errors={"_": t("Choose complete or fail.")}, status=400)
    if not reason:
        return await _order_page(request, order_id, action=action, reason=reason, status=400,
                                 errors={"reason": t("A reason is required: it is kept in the audit log.")})
    try:
        await order_overrides.force(order_id, op.id, complete=action == "complete", reason=reason,
                                    expected=form_value(request, "expected", 20))
    except InvalidInput as exc:
        return await _order_page(request, order_id, action=action, reason=reason, status=400,
                                 errors={"reason": i18n.domain_message(lang, exc)})
    except DomainError as exc:  # moved meanwhile by a person or a timer, or already forced
        return await _order_page(request, order_id, status=exc.status, reason=reason,
                                 errors={"_": t("The order changed meanwhile (now: {status}); nothing was done. Check it and decide again.",
                                                status=t((exc.details or {}).get("status", "—")))})
    return back(f"/admin/orders/{order_id}", "order_forced")


i18n.ZH.update({  # the order page's money and overrides (issue 13)
    "event.force_complete": "运营强制完成", "event.force_fail": "运营强制失败",
    "action.order.force_complete": "运营强制完成", "action.order.force_fail": "运营强制失败",
    "Operator actions": "运营处理", "Force complete": "强制完成", "Force fail": "强制失败",
    "For an order stuck in its current state. The money moves as the rules say; the parties are notified.":
        "用于卡在当前状态的订单。资金按规则结算，双方会收到通知。",
    "Confirm: force complete": "确认：强制完成", "Confirm: force fail": "确认：强制失败",
    "This will move:": "将发生以下资金变动：", "to the worker": "付给接单方", "to the platform fees": "计入平台手续费",
    "referral reward to the inviter of the worker": "接单方邀请人奖励", "referral reward to the inviter of the publisher": "发单方邀请人奖励",
    "back to the publisher": "退还发单方", "from escrow": "从托管中支出",
    "Reason (kept in the audit log)": "理由（记入审计日志）", "Choose complete or fail.": "请选择强制完成或强制失败。",
    "A reason is required: it is kept in the audit log.": "必须填写理由：将记入审计日志。",
    "The order changed meanwhile (now: {status}); nothing was done. Check it and decide again.":
        "订单已有变化（当前：{status}），未做任何操作。请核对后重新决定。",
    "The order is {status}: the money moves only after confirming.": "订单当前为{status}：确认后才会移动资金。",
    "Still held in escrow for this task": "该任务仍托管的金额",
    "escrow": "托管", "fees": "平台手续费", "referral_payable": "待结算邀请奖励", "wechatpay": "微信支付",
    "payouts": "提现打款", "adjustments": "人工调账",
})
i18n.DONE.update({"order_forced": "Done: the order is final and the money has moved."})
i18n.ZH["Done: the order is final and the money has moved."] = "已完成：订单已结束，资金已结算。"
# English for the code-like keys, where the panel has such a table (issue 13, defect 6).
getattr(i18n, "EN", {}).update({
    "event.force_complete": "forced to complete by an operator", "event.force_fail": "forced to fail by an operator",
    "action.order.force_complete": "order: forced to complete", "action.order.force_fail": "order: forced to fail",
})
