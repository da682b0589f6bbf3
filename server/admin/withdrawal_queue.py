"""Withdrawals as a work queue (issue 13): one table, sortable, filterable (state, amount, waiting
time, end, customer, dates), paginated, over the whole history; one customer's requests grouped on
demand; risk columns beside each request (account age, total earned, rejection and appeal rates,
recent manual adjustments); a batch approval with one confirmation; and the payouts waiting for the
user's confirmation in WeChat (WAIT_USER_CONFIRM) with their age and a way to re-query or cancel.

The decisions on one request (approve, mark paid, reject) stay views.py's; a refused one comes back
here through `withdrawals_page`. Registered on the panel's blueprint by `server/admin/__init__.py`.
"""

from __future__ import annotations

import datetime as dt
import logging

from sanic import Request
from tortoise.expressions import Q
from tortoise.functions import Count, Sum

from models import audit, clock, ledger, orders
from models import withdrawals as withdrawal_rules
from models.errors import DomainError
from models.ledger import EntryKind, Posting
from models.operators import Operator
from models.orders import Order, OrderStatus
from models.reconciliation import Difference, DifferenceKind, DifferenceStatus
from models.users import End, User
from models.withdrawals import Withdrawal, WithdrawalStatus
from server.admin import export, i18n, units
from server.admin.lists import Filters, base_query, name_of, page_no, people
from server.admin.views import back, bp, form_value, lang_of, page, show

log = logging.getLogger("market.admin")

PAGE_SIZE = 50
RECENT_LEDGER = 8
ADJUSTMENT_DAYS = 30
BATCH_MAX = 100
WAITING_STATES = ("ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM")  # the user has not confirmed yet
# sort key → ORDER BY (the first is the default: the queue's oldest first)
SORTS = {
    "oldest": ("created_at", "id"), "newest": ("-created_at", "-id"),
    "amount": ("-amount_fen", "id"), "amount_asc": ("amount_fen", "id"), "customer": ("user_id", "created_at", "id"),
}
STATES = [s.value for s in WithdrawalStatus]


async def risk(user_ids) -> dict[int, dict]:
    """Per customer: account age, what they earned (completed orders), how often their work was
    rejected and how often they appealed, and the manual adjustments of the last 30 days."""
    ids = list({i for i in user_ids if i})
    if not ids:
        return {}
    now = clock.now()
    out: dict[int, dict] = {}
    for u in await User.filter(id__in=ids).only("id", "created_at"):
        out[u.id] = {"age_s": int((now - u.created_at).total_seconds()), "earned_fen": 0, "orders": 0, "rejected": 0,
                     "appealed": 0, "adjust_n": 0, "adjust_fen": 0}

    async def counts(**cond) -> dict[int, int]:
        rows = await Order.filter(worker_id__in=ids, **cond).annotate(n=Count("id")).group_by("worker_id").values("worker_id", "n")
        return {r["worker_id"]: r["n"] for r in rows}

    for r in await Order.filter(worker_id__in=ids, status=OrderStatus.COMPLETED).annotate(
            s=Sum("unit_price_fen")).group_by("worker_id").values("worker_id", "s"):
        out[r["worker_id"]]["earned_fen"] = int(r["s"] or 0)
    for key, cond in (("orders", {"submitted_at__isnull": False}), ("rejected", {"rejected_at__isnull": False}),
                      ("appealed", {"appealed_at__isnull": False})):
        for uid, n in (await counts(**cond)).items():
            out[uid][key] = n
    since = now - dt.timedelta(days=ADJUSTMENT_DAYS)
    for r in await Posting.filter(account__user_id__in=ids, entry__kind=EntryKind.ADJUSTMENT, created_at__gte=since).annotate(
            s=Sum("amount_fen"), n=Count("id")).group_by("account__user_id").values("account__user_id", "s", "n"):
        out[r["account__user_id"]]["adjust_n"] = r["n"]
        out[r["account__user_id"]]["adjust_fen"] = int(r["s"] or 0)
    for r in out.values():
        r["reject_rate"] = r["rejected"] / r["orders"] if r["orders"] else None
        r["appeal_rate"] = r["appealed"] / r["orders"] if r["orders"] else None
    return out


def rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


async def _recent_ledger(user_ids) -> dict[int, list[dict]]:
    from server.admin.views import _ledger_rows

    return {uid: await _ledger_rows(uid, RECENT_LEDGER) for uid in user_ids}


async def _query(f: Filters):
    qs = Withdrawal.all()
    state = f.text("state") or "pending"
    if state != "all":
        if state not in STATES:
            f.errors["state"] = f.t("“{v}” is not one of: {choices}.", v=state[:40], choices="、".join(f.t(c) for c in [*STATES, "all"]))
        else:
            qs = qs.filter(status=state)
    if (low := f.yuan("min")) is not None:
        qs = qs.filter(amount_fen__gte=low)
    if (high := f.yuan("max")) is not None:
        qs = qs.filter(amount_fen__lte=high)
    if (hours := f.number("older")) is not None:
        qs = qs.filter(created_at__lte=clock.now() - dt.timedelta(hours=hours))
    if end := f.choice("end", {e.value for e in End}):
        qs = qs.filter(user__end=end)
    if (who := await f.person("user")) is not None:
        qs = qs.filter(user_id__in=who)
    qs = f.range(qs, "created_at")
    sort = f.text("sort") or "oldest"
    if sort not in SORTS:
        f.errors["sort"] = f.t("“{v}” is not one of: {choices}.", v=sort[:40], choices="、".join(SORTS))
        sort = "oldest"
    order = SORTS["customer"] if f.text("group") == "user" else SORTS[sort]
    return qs, state, sort, order


async def withdrawals_page(request: Request, *, errors: dict[int, dict[str, str]] | None = None,
                           values: dict[int, dict[str, str]] | None = None, status: int = 200, confirm: dict | None = None):
    f = Filters(request)
    qs, state, sort, order = await _query(f)
    t = i18n.translator(lang_of(request))
    if f.errors:
        rows, more, n, total, total_fen = [], False, 1, 0, 0
    elif export.wants_csv(request):
        rows, more, n = await qs.order_by(*order).limit(export.MAX_ROWS), False, 1
    else:
        n = page_no(request)
        rows = await qs.order_by(*order).offset((n - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
        rows, more = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
    if not f.errors:
        sums = await qs.annotate(n=Count("id"), s=Sum("amount_fen")).values("n", "s")
        total, total_fen = (sums[0]["n"], int(sums[0]["s"] or 0)) if sums else (0, 0)
    uids = {w.user_id for w in rows}
    who = await people(uids)
    risks = await risk(uids)
    operators = {o.id: o.username for o in await Operator.all()}
    if export.wants_csv(request) and not f.errors:
        columns = [
            ("Withdrawal #", lambda w: w.id), ("Customer", lambda w: name_of(who, w.user_id)),
            ("End", lambda w: t(who[w.user_id].end.value) if w.user_id in who else ""),
            ("Amount", lambda w: units.yuan_plain(w.amount_fen)), ("fee", lambda w: units.yuan_plain(w.fee_fen)),
            ("to pay", lambda w: units.yuan_plain(w.amount_fen - w.fee_fen)), ("State", lambda w: t(w.status.value)),
            ("requested", lambda w: units.local(w.created_at)), ("Finished", lambda w: units.local(w.finished_at)),
            ("How", lambda w: " ".join(x for x in (t(w.method) if w.method else "", w.reference or "", w.reason or "") if x)),
            ("By", lambda w: operators.get(w.operator_id, "")),
            ("Account age", lambda w: i18n.duration(lang_of(request), risks.get(w.user_id, {}).get("age_s"))),
            ("Earned", lambda w: units.yuan_plain(risks.get(w.user_id, {}).get("earned_fen", 0))),
            ("Rejected", lambda w: rate(risks.get(w.user_id, {}).get("reject_rate"))),
            ("Appealed", lambda w: rate(risks.get(w.user_id, {}).get("appeal_rate"))),
            ("Adjustments (30 days)", lambda w: units.yuan_plain(risks.get(w.user_id, {}).get("adjust_fen", 0))),
        ]
        return await export.csv_response(request, "withdrawals", columns, rows, t, clock.now(), matching=total)
    # WeChat paid these, though our books do not show them paid (after their money was returned:
    # models/reconciliation.paid_after_return): each line points at its difference to recover it.
    unrecorded = {d.ref_id: d for d in await Difference.filter(
        status=DifferenceStatus.OPEN, kind=DifferenceKind.PAYOUT_NOT_RECORDED, ref_kind="withdrawal",
        ref_id__in=[w.id for w in rows])} if rows else {}
    pending_uids = {w.user_id for w in rows if w.status == WithdrawalStatus.PENDING}
    for uid in pending_uids:  # the balances beside each request are never stale
        await orders.settle_due_for(uid)
    balances = {uid: await ledger.user_balances(uid) for uid in pending_uids}
    waiting = await Withdrawal.filter(status=WithdrawalStatus.PAYING).filter(
        Q(transfer_state__in=WAITING_STATES) | Q(hold_reason__isnull=False) | Q(transfer_state__isnull=True)).order_by("decided_at", "id").limit(100)
    who.update(await people({w.user_id for w in waiting} - set(who)))
    now = clock.now()
    return await show(
        request, "withdrawals.html", status=400 if f.errors and status == 200 else status, rows=rows, more=more, page_no=n,
        total=total, total_fen=total_fen, state=state, sort=sort, states=STATES, ends=[e.value for e in End], args=request.args,
        base_query=base_query(request), sort_query=_without(request, "sort", "page"), people=who, risks=risks, rate=rate,
        balances=balances, unrecorded=unrecorded, ledger_rows=await _recent_ledger(pending_uids), operators=operators, errors=errors or {},
        values=values or {}, filter_errors=f.errors, named=f.named, grouped=f.text("group") == "user", waiting=waiting,
        age=lambda at: i18n.duration(lang_of(request), int((now - at).total_seconds())) if at else "—", confirm=confirm,
    )


def _without(request: Request, *names: str) -> str:
    from urllib.parse import urlencode

    return urlencode([(k, v) for k, vs in request.args.items() if k not in (*names, "done", "format") for v in vs])


@bp.get("/withdrawals")
@page()
async def withdrawals_queue(request: Request, op: Operator):
    return await withdrawals_page(request)


# --- batch approval ------------------------------------------------------------------------------
def _ids(request: Request) -> list[int]:
    raw = request.form.getlist("id") if request.form else []
    out: list[int] = []
    for value in raw[:BATCH_MAX]:
        wid = units.parse_id(value)
        if wid is not None and wid not in out:
            out.append(wid)
    return out


@bp.post("/withdrawals/batch-approve")
@page()
async def batch_approve(request: Request, op: Operator):
    """First POST: the selected requests and their total, with one button to confirm. Second POST
    (confirmed=1): each approved — one conditional UPDATE each, so a request somebody else decided
    meanwhile is skipped and named — then paid through WeChat after its approval committed."""
    t = i18n.translator(lang_of(request))
    ids = _ids(request)
    if not ids:
        return await withdrawals_page(request, errors={0: {"_": t("Select the withdrawals to approve first.")}}, status=400)
    chosen = await Withdrawal.filter(id__in=ids).order_by("id")
    if form_value(request, "confirmed") != "1":
        pending = [w for w in chosen if w.status == WithdrawalStatus.PENDING]
        who = await people({w.user_id for w in pending})
        return await show(request, "withdrawals_confirm.html", rows=pending, people=who,
                          skipped=[w for w in chosen if w.status != WithdrawalStatus.PENDING],
                          total_fen=sum(w.amount_fen - w.fee_fen for w in pending))
    approved, refused = [], {}
    for w in chosen:
        try:
            approved.append(await withdrawal_rules.approve(w.id, op.id))
        except DomainError as exc:
            refused[w.id] = {"_": i18n.domain_message(lang_of(request), exc)}
    services = getattr(request.app.ctx, "wechat", None)
    for w in approved:
        if services is None:
            log.error("withdrawal %s approved but no WeChat services in this process; the payout checker will retry", w.id)
            continue
        try:
            await services.start_payout(w)
        except Exception:  # the bill may or may not exist: the payout checker queries and retries it
            log.exception("withdrawal %s: starting the payout failed; the checker will retry", w.id)
    if refused:
        return await withdrawals_page(request, errors=refused, status=409)
    return back("/admin/withdrawals", "batch_approved")


# --- payouts waiting for the user's confirmation -------------------------------------------------
@bp.post("/withdrawals/<wid:int>/requery")
@page()
async def requery_payout(request: Request, op: Operator, wid: int):
    """Ask WeChat now and apply what it says: one payout round, taken under the payout checker's
    lease (server/wechat_payouts.py), so it never acts beside a checker's round in flight."""
    services = getattr(request.app.ctx, "wechat", None)
    w = await Withdrawal.get_or_none(id=wid)
    t = i18n.translator(lang_of(request))
    if w is None or services is None or w.status != WithdrawalStatus.PAYING or not w.out_bill_no or w.hold_reason:
        return await withdrawals_page(request, errors={wid: {"_": t("This payout is not in flight.")}}, status=409)
    try:
        w = await services.requery_payout(wid)
    except DomainError as exc:  # a checker's round is asking WeChat right now
        return await withdrawals_page(request, errors={wid: {"_": i18n.domain_message(lang_of(request), exc)}}, status=exc.status)
    if w.status == WithdrawalStatus.PAYING and w.payout_error:  # WeChat unreachable: the checker keeps trying
        log.warning("withdrawal %s: operator re-query failed: %s", wid, w.payout_error)
        return await withdrawals_page(request, errors={wid: {"_": t("WeChat did not answer; try again in a minute.")}}, status=503)
    await audit.record("operator", op.id, "withdrawal.payout_requery", "withdrawal", wid,
                       data={"state": w.transfer_state if w.status == WithdrawalStatus.PAYING else w.status.value})
    return back("/admin/withdrawals", "payout_requeried")


@bp.post("/withdrawals/<wid:int>/cancel-transfer")
@page()
async def cancel_transfer(request: Request, op: Operator, wid: int):
    """Cancel a bill the user has not confirmed (the transfer-deadline job's own step, now, under the
    payout checker's lease): WeChat answers CANCELING; the money returns to the user only when
    WeChat says CANCELLED."""
    from server import reconciliation as payout_deadlines

    t = i18n.translator(lang_of(request))
    reason = form_value(request, "reason", 255)
    w = await Withdrawal.get_or_none(id=wid)
    services = getattr(request.app.ctx, "wechat", None)
    if not reason:
        return await withdrawals_page(request, errors={wid: {"reason": t("A reason is required.")}}, status=400)
    if w is None or services is None or w.status != WithdrawalStatus.PAYING or not w.transfer_bill_no or w.hold_reason:
        return await withdrawals_page(request, errors={wid: {"_": t("This payout is not in flight.")}}, status=409)
    if w.transfer_state not in WAITING_STATES:
        return await withdrawals_page(request, errors={wid: {"_": t("The user has already confirmed; it cannot be cancelled.")}}, status=409)
    if not await payout_deadlines._cancel_one(services, w):  # a checker's round is asking WeChat right now
        exc = withdrawal_rules.PayoutCheckUnderWay()
        return await withdrawals_page(request, errors={wid: {"_": i18n.domain_message(lang_of(request), exc)}}, status=exc.status)
    await audit.record("operator", op.id, "withdrawal.payout_cancel", "withdrawal", wid, reason=reason)
    return back("/admin/withdrawals", "transfer_cancel_asked")


# --- payouts held for an operator (server/wechat_payouts.py, docs/wechat.md §5) --------------------
async def _held_action(request: Request, wid: int, call, done: str, field: str | None = None):
    t = i18n.translator(lang_of(request))
    services = getattr(request.app.ctx, "wechat", None)
    text = form_value(request, field, 255) if field else None
    if field and not text:
        return await withdrawals_page(request, errors={wid: {field: t("A reason is required.") if field == "reason" else
                                                           t("The payment reference is required.")}}, status=400)
    if services is None:
        return await withdrawals_page(request, errors={wid: {"_": t("This payout is not in flight.")}}, status=409)
    try:
        await call(services, text)
    except DomainError as exc:
        return await withdrawals_page(request, errors={wid: {"_": i18n.domain_message(lang_of(request), exc)}}, status=exc.status)
    return back("/admin/withdrawals", done)


@bp.post("/withdrawals/<wid:int>/retry-held")
@page()
async def retry_held(request: Request, op: Operator, wid: int):
    """The cause is fixed (IP allowlisted, scene enabled, quota raised): the same bill is asked again."""
    return await _held_action(request, wid, lambda s, _: s.retry_held_payout(wid, op.id), "held_retried")


@bp.post("/withdrawals/<wid:int>/return-held")
@page()
async def return_held(request: Request, op: Operator, wid: int):
    return await _held_action(request, wid, lambda s, reason: s.return_held_payout(wid, op.id, reason=reason),
                              "held_returned", "reason")


@bp.post("/withdrawals/<wid:int>/paid-held")
@page()
async def paid_held(request: Request, op: Operator, wid: int):
    return await _held_action(request, wid, lambda s, ref: s.paid_held_payout_by_hand(wid, op.id, reference=ref),
                              "marked_paid", "reference")


i18n.ZH.update({  # the withdrawals queue (issue 13)
    "Withdrawal #": "提现单号", "Account age": "账号年龄", "Rejected": "被驳回率", "Appealed": "申诉率",
    "Adjustments (30 days)": "近 30 天调账", "Waiting": "已等待", "Min amount (¥)": "最低金额（元）", "Max amount (¥)": "最高金额（元）",
    "Waiting at least (hours)": "至少已等待（小时）", "Customer (name or #)": "客户（昵称或编号）", "all": "全部",
    "Group by customer": "按客户分组", "Sort": "排序", "oldest first": "最早在前", "newest first": "最新在前",
    "largest first": "金额从大到小", "smallest first": "金额从小到大", "by customer": "按客户",
    "{n} withdrawals, {a} in total": "共 {n} 笔，合计 {a}", "Approve the selected": "批准所选并通过微信打款",
    "Select the withdrawals to approve first.": "请先勾选要批准的提现。", "Approve these withdrawals?": "批准这些提现？",
    "{n} withdrawals, {a} to pay through WeChat in total.": "共 {n} 笔，将通过微信合计打款 {a}。",
    "Confirm: approve {n} and pay {a}": "确认：批准 {n} 笔并打款 {a}", "Cancel": "取消",
    "Already decided, skipped:": "已被处理，将跳过：",
    "The selected withdrawals are approved; their WeChat transfers are under way.": "所选提现已批准，正在通过微信打款。",
    "Waiting for the user to confirm in WeChat": "等待用户在微信中确认收款",
    "Approved {ago} ago; the transfer is cancelled automatically 24 hours after approval.": "批准后已过 {ago}；批准 24 小时后仍未确认的转账会自动撤销。",
    "WeChat state": "微信状态", "Re-query WeChat": "向微信重新查询", "Cancel the transfer": "撤销转账",
    "Cancel this transfer at WeChat? The money returns to the balance of the user when WeChat confirms the cancellation.":
    "在微信撤销这笔转账？微信确认撤销后，金额退回用户余额。",
    "This payout is not in flight.": "这笔打款不在进行中。", "WeChat did not answer; try again in a minute.": "微信没有响应，请稍后再试。",
    "The user has already confirmed; it cannot be cancelled.": "用户已确认收款，无法撤销。",
    "WeChat was asked again; the payout shows its answer.": "已向微信重新查询并更新状态。",
    "WeChat was asked to cancel the transfer; the money returns to the user when WeChat confirms.":
        "已向微信申请撤销转账，微信确认后金额退回用户余额。",
    "action.withdrawal.payout_requery": "重新查询微信打款", "action.withdrawal.payout_cancel": "撤销微信转账",
    "held for an operator": "等待人工处理", "Select": "选择", "Details and decision": "详情与处理",
    "None waiting.": "没有等待中的打款。", "Retry the same bill": "重新发起同一笔转账", "Return the money": "退回余额",
    "The payout is asked from WeChat again.": "已向微信重新发起同一笔转账。",
    "Returned: the money goes back to the balance of the user (once WeChat holds no live bill).": "已退回：金额退回用户余额（微信无在途转账单时）。",
    "Return this payout to the balance of the user?": "把这笔打款退回用户余额？", "Customer's requests": "该客户的申请",
    "WeChat paid this payout after its money was returned: the user holds it twice.": "微信在款项退回余额后又完成了这笔转账：用户收到了两次。",
    "WeChat paid this payout; our books do not show it paid.": "微信已完成这笔转账，但账上未记为已打款。",
    "Recover it (difference #{id})": "去追回（差异 #{id}）",
    "Payouts held for an operator": "等待人工处理的打款",
    "Payouts WeChat paid that our books do not show paid (recover the money)": "微信已打款但账上未记为已打款（需追回）",
})
i18n.DONE.update({
    "held_retried": "The payout is asked from WeChat again.",
    "held_returned": "Returned: the money goes back to the balance of the user (once WeChat holds no live bill).",
    "batch_approved": "The selected withdrawals are approved; their WeChat transfers are under way.",
    "payout_requeried": "WeChat was asked again; the payout shows its answer.",
    "transfer_cancel_asked": "WeChat was asked to cancel the transfer; the money returns to the user when WeChat confirms.",
})
getattr(i18n, "EN", {}).update({  # English for the code-like keys, where the panel has such a table (defect 6)
    "action.withdrawal.payout_requery": "withdrawal: WeChat re-queried", "action.withdrawal.payout_cancel": "withdrawal: transfer cancelled",
})
