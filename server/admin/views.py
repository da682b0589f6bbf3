"""The admin panel's pages and forms (SPEC §6, issue 5). Server-rendered, one blueprint at /admin.

Every handler follows the same shape: `@page(...)` checks the session (anonymous → the login page),
the role (an operator on an owner page → 403) and, for a POST, the CSRF token (missing or wrong →
403 before anything runs); the handler validates the form, calls ONE domain function (which owns
its transaction and its audit row), then redirects (POST → redirect → GET, so a reload never
repeats an action). Bad input re-renders the same page with the reason next to the field (400);
losing a race (somebody else decided first) re-renders it with the domain's answer (409). No
handler lets a domain error become a 500.
"""

from __future__ import annotations

import logging
import uuid
from functools import wraps
from urllib.parse import quote, urlencode

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json, raw, redirect
from sanic_ext import render
from tortoise.functions import Count, Sum

from models import audit, clock, ledger, orders, users, withdrawals
from models.audit import AuditLog
from models import settings as market_settings
from models.errors import DomainError, InvalidInput, InvalidSettings
from models.ledger import Posting
from models.operators import BadCredentials, LoginLocked, Operator, Role
from models import operators as operator_rules
from models.orders import Order, OrderStatus
from models.referrals import ReferralReward
from models.tasks import Task
from models.uploads import Upload
from models.users import End, User
from models.withdrawals import Withdrawal, WithdrawalStatus
from server.admin import adjustments, dashboard, filters, i18n, session, trends, units
from server.admin import settings_form as settings_form_module
from server.admin.settings_form import SETTINGS_FORM  # noqa: F401  (tests read it from here)
from server.admin.templating import ENV, STATIC
from server.admin import wording

# ledger memos, audit details, a stored setting in words: "8 秒", "30 分钟" (issue 13)
ENV.globals.update(memo=wording.memo, details=wording.details,
                   setting=lambda t, name, value: settings_form_module.describe(t.lang, name, value))
from server.ratelimit import client_address

log = logging.getLogger("market.admin")

bp = Blueprint("admin", url_prefix="/admin", strict_slashes=False)
bp.static("/static", str(STATIC), name="admin_static")
INVITEES_SHOWN = 100  # on a customer's page; the customers list filtered by inviter has them all
TASK_ORDERS_SHOWN = 500  # on a task's page (the first taken); the orders list filtered by task has them all

PAGE_SIZE = 50
LEDGER_ROWS = 50
QUEUE_LIMIT = 30

# --- plumbing --------------------------------------------------------------------------------------
def lang_of(request: Request) -> str:
    chosen = request.args.get("lang")
    if chosen in i18n.LANGS:
        return chosen
    cookie = request.cookies.get(i18n.LANG_COOKIE)
    return cookie if cookie in i18n.LANGS else i18n.DEFAULT


async def show(request: Request, template: str, status: int = 200, **context) -> HTTPResponse:
    lang = lang_of(request)
    op = getattr(request.ctx, "operator", None)
    done = request.args.get("done")
    context.update(
        t=i18n.translator(lang),
        lang=lang,
        op=op,
        csrf=session.csrf_token(request),
        path=request.path,
        done=i18n.DONE.get(done) if done else None,
        now=clock.now(),
        lang_switch=_lang_switch(request, "en" if lang == "zh" else "zh"),
    )
    context.setdefault("filter_errors", {})  # the list pages' bad filters (server/admin/filters.py)
    context.setdefault("filter_labels", filters.LABELS)
    return await render(template, status=status, context=context, app=request.app, environment=ENV)


def _lang_switch(request: Request, other: str) -> str:
    """The same page in the other language, with its filters (a form's answer to a POST: the page
    the form was on)."""
    path, args = request.path, [(k, v) for k, vs in request.args.items() if k not in ("lang", "done") for v in vs]
    if request.method != "GET":
        referer = request.headers.get("referer", "")
        host = request.headers.get("host", "")
        prefix = f"{request.scheme}://{host}" if host else ""
        target = referer[len(prefix):] if prefix and referer.startswith(prefix) else ""
        path, _, query = target.partition("?")
        if not path.startswith("/admin"):
            path, query = "/admin", ""
        from urllib.parse import parse_qsl

        args = [(k, v) for k, v in parse_qsl(query) if k not in ("lang", "done")]
    return f"{path}?{urlencode(args + [('lang', other)])}"


def page(owner_only: bool = False):
    """Session → role → CSRF, then the handler as `handler(request, op, ...)`."""

    def decorate(handler):
        @wraps(handler)
        async def wrapped(request: Request, *args, **kwargs):
            op = await session.current_operator(request)
            if op is None:
                if request.path.endswith(".json"):
                    return json({"error": {"code": "unauthorized", "message": "Log in first."}}, status=401)
                target = request.path + (f"?{request.query_string}" if request.query_string else "")
                return redirect(f"/admin/login?next={quote(target)}", status=303 if request.method == "POST" else 302)
            request.ctx.operator = op
            if owner_only and not op.is_owner:
                return await show(request, "error.html", status=403, title="Forbidden", message="Only the owner may do this.")
            if request.method == "POST" and not session.csrf_ok(request):
                return await show(
                    request, "error.html", status=403, title="Forbidden",
                    message="The form has expired or did not come from this panel (CSRF check failed). Reload the page and try again.",
                )
            try:
                return await handler(request, op, *args, **kwargs)
            except DomainError as exc:  # anything the handler did not expect to explain itself
                return await show(request, "error.html", status=exc.status, title="Not possible", message=i18n.domain_message(lang_of(request), exc))

        return wrapped

    return decorate


def form_value(request: Request, name: str, max_len: int = 2000) -> str:
    value = request.form.get(name) if request.form else None
    return (value or "").strip()[:max_len]


def back(path: str, done: str) -> HTTPResponse:
    sep = "&" if "?" in path else "?"
    return redirect(f"{path}{sep}done={done}", status=303)


def field_errors(lang: str, exc: DomainError) -> dict[str, str]:
    """{field: translated reason} from a domain error (InvalidInput names its fields)."""
    details = getattr(exc, "details", {}) or {}
    if isinstance(exc, InvalidSettings):
        return {k: i18n.reason(lang, v) for k, v in details.get("fields", {}).items()}
    if isinstance(exc, InvalidInput):
        fields = details["fields"]
        if len(fields) == 1:  # the domain's one-field raises: the message is the reason
            return {next(iter(fields)): i18n.domain_message(lang, exc)}
        return {k: i18n.reason(lang, v) for k, v in fields.items()}
    return {"_": i18n.domain_message(lang, exc)}


@bp.exception(InvalidInput)
async def refused_input(request: Request, exc: InvalidInput):
    """Input refused before any handler ran (server/inputs.py: a control character in a form field
    or a query parameter): the error page, or JSON for the dashboard's poll."""
    if request.path.endswith(".json"):
        return json({"error": exc.to_dict()}, status=400)
    return await show(request, "error.html", status=400, title="Not possible", message=i18n.domain_message(lang_of(request), exc),
                      code=exc.code)


@bp.on_response
async def headers(request: Request, response: HTTPResponse):
    """No caching of operator pages, no framing, scripts and styles only from /admin/static."""
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    chosen = request.args.get("lang")
    if chosen in i18n.LANGS:
        response.add_cookie(i18n.LANG_COOKIE, chosen, path=session.COOKIE_PATH, httponly=True, samesite="Strict",
                            secure=session.secure_cookies(request), max_age=365 * 86400)


# --- login / logout --------------------------------------------------------------------------------
def _safe_next(target: str | None) -> str:
    target = target or "/admin"
    if not target.startswith("/admin") or target.startswith("//") or "\\" in target:
        return "/admin"
    return target


async def _login_page(request: Request, status: int = 200, error: str | None = None, username: str = "") -> HTTPResponse:
    token = session.login_csrf(request)
    request.ctx.admin_sid = None
    target = form_value(request, "next", 500) if request.method == "POST" else request.args.get("next")
    response = await show(request, "login.html", status=status, login_csrf=token, error=error, username=username,
                          next=_safe_next(target))
    session.set_login_csrf_cookie(request, response, token)
    return response


@bp.get("/login")
async def login_form(request: Request):
    if await session.current_operator(request) is not None:
        return redirect(_safe_next(request.args.get("next")))
    return await _login_page(request)


@bp.post("/login")
async def login_submit(request: Request):
    lang = lang_of(request)
    t = i18n.translator(lang)
    if not session.login_csrf_ok(request):
        return await _login_page(request, 403, t("The form has expired; please try again."))
    username = form_value(request, "username", 64)
    ip = client_address(request)
    try:
        op = await operator_rules.login(username, form_value(request, "password", 300) if request.form else "", ip=ip)
    except LoginLocked as exc:
        minutes = max(1, (exc.retry_after_s + 59) // 60)
        response = await _login_page(request, 429, t("Too many failed logins. Try again in {m} minutes.", m=minutes), username)
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except BadCredentials:
        return await _login_page(request, 401, t("Wrong username or password."), username)
    response = redirect(_safe_next(form_value(request, "next", 500)), status=303)
    session.set_session_cookie(request, response, await session.issue(request, op, ip))
    session.clear_cookie(request, response, session.LOGIN_CSRF_COOKIE)
    return response


@bp.post("/logout")
@page()
async def logout(request: Request, op: Operator):
    await session.end(request)  # on the server: a copy of the cookie stops working too
    response = redirect("/admin/login", status=303)
    session.clear_session_cookie(request, response)
    return response


@bp.get("/password")
@page()
async def password_form(request: Request, op: Operator):
    return await show(request, "password.html", errors={})


@bp.post("/password")
@page()
async def password_submit(request: Request, op: Operator):
    """An operator changes their own password: the current one is checked (throttled like a
    login), the change is audited, and every other session of theirs ends; this one stays."""
    lang = lang_of(request)
    t = i18n.translator(lang)
    new = form_value(request, "new_password", 300)
    if new != form_value(request, "repeat_password", 300):
        return await show(request, "password.html", status=400, errors={"repeat_password": t("The two new passwords differ.")})
    try:
        await operator_rules.change_own_password(op.id, form_value(request, "current_password", 300), new,
                                                 keep_session=request.ctx.admin_sid, ip=client_address(request))
    except LoginLocked as exc:
        minutes = max(1, (exc.retry_after_s + 59) // 60)
        response = await show(request, "password.html", status=429,
                              errors={"current_password": t("Too many failed logins. Try again in {m} minutes.", m=minutes)})
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except BadCredentials:
        return await show(request, "password.html", status=400, errors={"current_password": t("The current password is wrong.")})
    except InvalidInput as exc:
        return await show(request, "password.html", status=400, errors={"new_password": i18n.domain_message(lang, exc)})
    return back("/admin/password", "own_password_changed")


# --- dashboard -------------------------------------------------------------------------------------
def _audit_cache(request: Request) -> dashboard.AuditCache:
    cache = getattr(request.app.ctx, "admin_audit", None)
    if cache is None:
        cache = request.app.ctx.admin_audit = dashboard.AuditCache()
    return cache


async def _trends(request: Request) -> dict:
    cache = getattr(request.app.ctx, "admin_trends", None)
    if cache is None:
        cache = request.app.ctx.admin_trends = trends.Cache()
    return await cache.get()


def _dashboard_values(lang: str, snap: dict) -> dict[str, str]:
    """Every figure as the text shown in its [data-k] element (so the poll needs no formatting)."""
    t = i18n.translator(lang)
    v: dict[str, str] = {f"orders.{k}": str(n) for k, n in snap["orders"].items()}
    for key in ("open_tasks", "open_slots", "completed_n", "appeals", "withdrawals_pending", "withdrawals_paying", "outbox_pending", "outbox_failed",
                "withdrawals_held", "payouts_not_recorded"):
        v[key] = str(snap[key])
    for key in ("published_fen", "completed_fen", "refunded_fen", "fees_today_fen", "fees_total_fen", "referral_today_fen",
                "referral_total_fen", "withdrawals_pending_fen"):
        v[key] = units.yuan(snap[key])
    v["timer_lag"] = i18n.duration(lang, snap["timer_lag_s"])
    v["oldest_appeal"] = i18n.duration(lang, snap["oldest_appeal_s"]) if snap["oldest_appeal_s"] is not None else "—"
    ok = snap["audit_ok"]
    v["audit"] = t("clean") if ok else (t("checking…") if ok is None else t("{n} problems", n=snap["audit_problems"] or 1))
    v["audit_detail"] = snap["audit_first_problem"] or ""
    v["audit_at"] = units.local(snap["audit_at"], "%H:%M:%S") if snap["audit_at"] else "—"
    v["updated_at"] = units.local(snap["now"], "%H:%M:%S")
    return v


@bp.get("/")
@page()
async def home(request: Request, op: Operator):
    snap = await dashboard.snapshot(_audit_cache(request))
    lang = lang_of(request)
    t, tr = i18n.translator(lang), await _trends(request)
    return await show(request, "dashboard.html", snap=snap, v=_dashboard_values(lang, snap) | trends.values(t, tr),
                      states=[s.value for s in OrderStatus], tr=tr, charts=trends.charts(t, tr), task_states=list(tr["tasks"]))


@bp.get("/dashboard.json")
@page()
async def dashboard_json(request: Request, op: Operator):
    snap = await dashboard.snapshot(_audit_cache(request))
    lang = lang_of(request)
    tr = await _trends(request)
    return json({"values": _dashboard_values(lang, snap) | trends.values(i18n.translator(lang), tr), "audit_ok": snap["audit_ok"],
                 "alerts": {"timer_lag": snap["timer_lag_s"] > 10, "outbox_failed": snap["outbox_failed"] > 0,
                            "audit": snap["audit_ok"] is False, "jobs": any(j["failing"] for j in tr["jobs"]),
                            "subscribe_failed": tr["subscribe_failed"] > 0, "withdrawals_held": snap["withdrawals_held"] > 0,
                            "payouts_not_recorded": snap["payouts_not_recorded"] > 0}})


# --- settings (server/admin/settings_form.py) -------------------------------------------------------
@bp.get("/settings")
@page(owner_only=True)
async def settings_form(request: Request, op: Operator):
    return await settings_form_module.settings_page(request)


@bp.post("/settings")
@page(owner_only=True)
async def settings_submit(request: Request, op: Operator):
    return await settings_form_module.submit(request, op)


# --- uploads (proofs, evidence, attachments) -------------------------------------------------------
@bp.get("/uploads/<ref:str>")
@page()
async def upload(request: Request, op: Operator, ref: str):
    row = await Upload.get_or_none(ref=ref[:40])
    if row is None:
        return empty(status=404)
    data = await request.app.ctx.storage.open_bytes(row.ref)
    if data is None:
        return empty(status=404)
    return raw(data, content_type=row.content_type, headers={"Cache-Control": "private, max-age=3600", "Content-Disposition": "inline"})


# --- appeals ---------------------------------------------------------------------------------------
async def _appeals_page(request: Request, **kw) -> HTTPResponse:
    """The queue with each side's track record (server/admin/appeal_records.py)."""
    from server.admin.appeal_records import appeals_page

    return await appeals_page(request, **kw)


@bp.get("/appeals")
@page()
async def appeals(request: Request, op: Operator):
    return await _appeals_page(request)


@bp.post("/appeals/<order_id:int>/decide", ctx_multiline=("note",))  # a textarea: newlines are text (server/inputs.py)
@page()
async def decide_appeal(request: Request, op: Operator, order_id: int):
    lang = lang_of(request)
    t = i18n.translator(lang)
    decision = form_value(request, "decision", 16)
    note = form_value(request, "note", 600)
    errors: dict[str, str] = {}
    if decision not in ("worker", "publisher"):
        errors["decision"] = t("Choose who wins.")
    if not note:
        errors["note"] = t("A note is required: it is sent to the worker and kept in the audit log.")
    elif len(note) > orders.REASON_MAX:
        errors["note"] = t("At most {n} characters.", n=orders.REASON_MAX)
    if errors:
        return await _appeals_page(request, errors={order_id: errors}, notes={order_id: note}, status=400)
    try:
        await orders.arbitrate(order_id, op.id, worker_wins=decision == "worker", note=note)
    except DomainError as exc:
        return await _appeals_page(request, errors={order_id: field_errors(lang, exc) if isinstance(exc, InvalidInput) else {"_": i18n.domain_message(lang, exc)}},
                                   notes={order_id: note}, status=exc.status)
    return back("/admin/appeals", "appeal_decided")


# --- withdrawals -----------------------------------------------------------------------------------
async def _ledger_rows(user_id: int, limit: int, before: int | None = None) -> list[dict]:
    qs = Posting.filter(account__user_id=user_id)
    if before:
        qs = qs.filter(id__lt=before)
    return await qs.order_by("-id").limit(limit).values(
        "id", "amount_fen", "balance_after_fen", "created_at", "related_user_id",
        kind="entry__kind", memo="entry__memo", task_id="entry__task_id", order_id="entry__order_id", account="account__kind",
    )


async def _users(ids: set[int]) -> dict[int, User]:
    ids = {i for i in ids if i}
    return {u.id: u for u in await User.filter(id__in=ids)} if ids else {}


async def _withdrawals_page(request: Request, **kw) -> HTTPResponse:
    """The queue (server/admin/withdrawal_queue.py), with a refused decision's reason beside its row."""
    from server.admin.withdrawal_queue import withdrawals_page

    return await withdrawals_page(request, **kw)


async def _withdrawal_failed(request: Request, wid: int, exc: DomainError, values: dict[str, str]) -> HTTPResponse:
    lang = lang_of(request)
    errs = field_errors(lang, exc) if isinstance(exc, InvalidInput) else {"_": i18n.domain_message(lang, exc)}
    return await _withdrawals_page(request, errors={wid: errs}, values={wid: values}, status=exc.status)


@bp.post("/withdrawals/<wid:int>/approve")
@page()
async def approve_withdrawal(request: Request, op: Operator, wid: int):
    """Approve, then pay through WeChat after the approval has committed (never inside it)."""
    try:
        w = await withdrawals.approve(wid, op.id)
    except DomainError as exc:
        return await _withdrawal_failed(request, wid, exc, {})
    services = getattr(request.app.ctx, "wechat", None)
    if services is None:
        log.error("withdrawal %s approved but no WeChat services in this process; the payout checker will retry", wid)
        return back("/admin/withdrawals", "approved_payout_later")
    try:
        w = await services.start_payout(w)
    except Exception:  # the bill may or may not exist: the payout checker queries and retries it
        log.exception("withdrawal %s: starting the payout failed; the checker will retry", wid)
        return back("/admin/withdrawals", "approved_payout_later")
    return back("/admin/withdrawals", {"paid": "payout_paid", "failed": "payout_failed"}.get(str(w.status.value), "payout_started"))


@bp.post("/withdrawals/<wid:int>/mark-paid")
@page()
async def mark_withdrawal_paid(request: Request, op: Operator, wid: int):
    reference = form_value(request, "reference", 200)
    if not reference:
        t = i18n.translator(lang_of(request))
        return await _withdrawals_page(request, errors={wid: {"reference": t("The payment reference is required.")}},
                                       values={wid: {"reference": reference}}, status=400)
    try:
        await withdrawals.mark_paid(wid, op.id, reference=reference)
    except DomainError as exc:
        return await _withdrawal_failed(request, wid, exc, {"reference": reference})
    return back("/admin/withdrawals", "marked_paid")


@bp.post("/withdrawals/<wid:int>/reject")
@page()
async def reject_withdrawal(request: Request, op: Operator, wid: int):
    reason = form_value(request, "reason", 300)
    if not reason:
        t = i18n.translator(lang_of(request))
        return await _withdrawals_page(request, errors={wid: {"reason": t("A reason is required: the user is told.")}}, status=400)
    try:
        await withdrawals.reject(wid, op.id, reason=reason)
    except DomainError as exc:
        return await _withdrawal_failed(request, wid, exc, {"reason": reason})
    return back("/admin/withdrawals", "withdrawal_rejected")


# --- customers -------------------------------------------------------------------------------------
async def _customer_page(request: Request, user_id: int, *, errors: dict[str, str] | None = None,
                         values: dict[str, str] | None = None, status: int = 200, request_id: str | None = None,
                         repeat_of: dict | None = None) -> HTTPResponse:
    user = await User.get_or_none(id=user_id)
    if user is None:
        return await show(request, "error.html", status=404, title="Not found", message="No such customer.")
    await orders.settle_due_for(user_id)  # their overdue timers first: balances, ledger, tasks, orders, referrals
    user = await User.get(id=user_id)  # (orders_in_progress may have changed)
    before = units.parse_id(request.args.get("before"))
    rows = await _ledger_rows(user_id, LEDGER_ROWS, before)
    tasks = await Task.filter(publisher_id=user_id).order_by("-id").limit(20)
    worker_orders = await Order.filter(worker_id=user_id).order_by("-id").limit(20)
    publisher_orders = await Order.filter(publisher_id=user_id).order_by("-id").limit(20)
    invitees = await User.filter(inviter_id=user_id).order_by("-id").limit(INVITEES_SHOWN)
    invitees_count = await User.filter(inviter_id=user_id).count()
    earned = {
        r["invitee_id"]: r for r in await ReferralReward.filter(inviter_id=user_id)
        .annotate(total=Sum("amount_fen"), n=Count("id")).group_by("invitee_id").values("invitee_id", "total", "n")
    }
    referral_total = sum(int(r["total"] or 0) for r in earned.values())
    unsettled = await ReferralReward.filter(inviter_id=user_id, settled_entry_id=None).annotate(s=Sum("amount_fen")).values("s")
    user_withdrawals = await Withdrawal.filter(user_id=user_id).order_by("-id").limit(20)
    inviter = await User.get_or_none(id=user.inviter_id) if user.inviter_id else None
    record = await _record_of(user)
    return await show(
        request, "customer.html", status=status, user=user, inviter=inviter, balances=await ledger.user_balances(user_id), record=record,
        ledger_rows=rows, tasks=tasks, worker_orders=worker_orders, publisher_orders=publisher_orders, invitees=invitees,
        invitees_count=invitees_count,
        earned=earned, referral_total=referral_total, referral_unsettled=int((unsettled[0]["s"] if unsettled else 0) or 0),
        withdrawals=user_withdrawals, errors=errors or {}, values=values or {}, request_id=request_id or uuid.uuid4().hex,
        repeat_of=repeat_of,
        more_before=rows[-1]["id"] if len(rows) == LEDGER_ROWS else None,
    )


async def _record_of(user: User) -> dict:
    """The customer's record as the apps show it (issue 14), and their blocks."""
    from models import blocks, records

    s = await market_settings.current()
    rec = (await records.get_records([user.id])).get(user.id)
    if user.end == End.PUBLISHER:
        view = records.publisher_record(rec, s) | {"blocks_made": await blocks.PublisherBlock.filter(publisher_id=user.id).count()}
    else:
        view = records.worker_record(rec, s) | {"blocked_by": await blocks.PublisherBlock.filter(worker_id=user.id).count()}
        view["limited_until"] = rec.limited_until if view["limited"] else None  # shown in Beijing time
    return view


@bp.get("/customers/<user_id:int>")
@page()
async def customer(request: Request, op: Operator, user_id: int):
    return await _customer_page(request, user_id)


@bp.post("/customers/<user_id:int>/ban")
@page()
async def ban(request: Request, op: Operator, user_id: int):
    reason = form_value(request, "reason", 255)
    if not reason:
        t = i18n.translator(lang_of(request))
        return await _customer_page(request, user_id, errors={"ban_reason": t("A reason is required.")}, status=400)
    await users.set_banned(user_id, True, operator_id=op.id, reason=reason)
    return back(f"/admin/customers/{user_id}", "banned")


@bp.post("/customers/<user_id:int>/unban")
@page()
async def unban(request: Request, op: Operator, user_id: int):
    await users.set_banned(user_id, False, operator_id=op.id, reason=form_value(request, "reason", 255))
    return back(f"/admin/customers/{user_id}", "unbanned")


@bp.post("/customers/<user_id:int>/adjust")
@page(owner_only=True)
async def adjust(request: Request, op: Operator, user_id: int):
    lang = lang_of(request)
    t = i18n.translator(lang)
    amount_text, reason, request_id = form_value(request, "amount", 40), form_value(request, "reason", 600), form_value(request, "request_id", 64)
    values = {"amount": amount_text, "reason": reason}
    errors: dict[str, str] = {}
    try:
        amount = units.parse_yuan(amount_text, signed=True)
        if amount == 0:
            errors["amount"] = t("Must not be zero.")
    except units.FieldError as exc:
        errors["amount"] = t(exc.message, **exc.params)
    if not reason:
        errors["reason"] = t("A reason is required.")
    if not request_id:
        errors["_"] = t("The form has expired; please try again.")
    if errors:  # the same form again, with the same request_id: it stays single-use
        return await _customer_page(request, user_id, errors=errors, values=values, status=400, request_id=request_id or None)
    if form_value(request, "confirm_repeat") != "1" and not await adjustments.already_done(request_id):
        earlier = await adjustments.recent_identical(user_id, amount)
        if earlier is not None:  # Back + submit, or two operators on one ticket: ask first
            who = (await _actor_names([earlier])).get(("operator", earlier.actor_id), "")
            return await _customer_page(request, user_id, values=values, status=409, request_id=request_id,
                                        repeat_of={"amount": units.yuan(amount), "at": units.local(earlier.created_at, "%H:%M:%S"),
                                                   "by": who, "reason": earlier.reason or ""})
    try:
        await ledger.adjust(user_id, amount, operator_id=op.id, reason=reason, request_id=f"admin:{request_id}")
    except DomainError as exc:
        errs = field_errors(lang, exc)
        if "amount_fen" in errs:
            errs["amount"] = errs.pop("amount_fen")
        return await _customer_page(request, user_id, errors=errs, values=values, status=exc.status, request_id=request_id)
    return back(f"/admin/customers/{user_id}", "adjusted")


# --- tasks and orders (the lists: server/admin/lists.py) ------------------------------------------
@bp.get("/tasks/<task_id:int>")
@page()
async def task_detail(request: Request, op: Operator, task_id: int):
    if not await Task.exists(id=task_id):
        return await show(request, "error.html", status=404, title="Not found", message="No such task.")
    await orders.settle_due_tasks([task_id])  # its expiry and its orders' timers first
    task = await Task.get(id=task_id)
    task_orders = await Order.filter(task_id=task_id).order_by("id").limit(TASK_ORDERS_SHOWN)
    history = await audit.history("task", task_id)
    actors = await _actor_names(history)
    return await show(request, "task.html", task=task, orders=task_orders, orders_shown=TASK_ORDERS_SHOWN, history=history, actors=actors,
                      people=await _users({task.publisher_id} | {o.worker_id for o in task_orders}))


# the order page (with its money and the operator's overrides): server/admin/order_actions.py


async def _actor_names(rows) -> dict[tuple[str, int], str]:
    op_ids = {r.actor_id for r in rows if r.actor_kind == "operator" and r.actor_id}
    names = {("operator", o.id): o.username for o in await Operator.filter(id__in=op_ids)} if op_ids else {}
    return names


# --- audit log: server/admin/lists.py (with the tasks, orders and customers lists) -----------------
# --- operators (owner) -----------------------------------------------------------------------------
async def _operators_page(request: Request, *, errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                          status: int = 200) -> HTTPResponse:
    return await show(request, "operators.html", status=status, operators=await Operator.all().order_by("id"),
                      errors=errors or {}, values=values or {}, roles=[r.value for r in Role])


@bp.get("/operators")
@page(owner_only=True)
async def operators_list(request: Request, op: Operator):
    return await _operators_page(request)


@bp.post("/operators")
@page(owner_only=True)
async def operators_create(request: Request, op: Operator):
    lang = lang_of(request)
    values = {"username": form_value(request, "username", 64), "role": form_value(request, "role", 16)}
    try:
        await operator_rules.create_operator(values["username"], form_value(request, "password", 300), values["role"], created_by=op.id)
    except InvalidInput as exc:
        return await _operators_page(request, errors=field_errors(lang, exc), values=values, status=400)
    return back("/admin/operators", "operator_created")


@bp.post("/operators/<oid:int>/active")
@page(owner_only=True)
async def operators_active(request: Request, op: Operator, oid: int):
    if oid == op.id:
        t = i18n.translator(lang_of(request))
        return await _operators_page(request, errors={"_": t("You cannot deactivate yourself.")}, status=400)
    await operator_rules.set_active(oid, form_value(request, "active") == "1", by=op.id)
    return back("/admin/operators", "operator_updated")


@bp.post("/operators/<oid:int>/password")
@page(owner_only=True)
async def operators_password(request: Request, op: Operator, oid: int):
    lang = lang_of(request)
    try:
        await operator_rules.set_password(oid, form_value(request, "password", 300), by=op.id)
    except InvalidInput as exc:
        return await _operators_page(request, errors={f"password_{oid}": i18n.domain_message(lang, exc)}, status=400)
    if oid == op.id:  # one's own sessions end too: log in again with the new password
        response = redirect("/admin/login", status=303)
        session.clear_session_cookie(request, response)
        return response
    return back("/admin/operators", "password_set")
