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

import datetime as dt
import logging
import uuid
from functools import wraps
from urllib.parse import quote, urlencode

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json, raw, redirect
from sanic_ext import render
from tortoise.expressions import Q
from tortoise.functions import Count, Sum

from models import audit, clock, ledger, orders, users, withdrawals
from models import settings as market_settings
from models.audit import AuditLog
from models.errors import DomainError, InvalidInput, InvalidSettings
from models.ledger import Posting
from models.operators import BadCredentials, LoginLocked, Operator, Role
from models import operators as operator_rules
from models.orders import Order, OrderStatus
from models.referrals import ReferralReward
from models.tasks import Task, TaskStatus
from models.uploads import Upload
from models.users import User
from models.withdrawals import Withdrawal, WithdrawalStatus
from server.admin import dashboard, i18n, session, units
from server.admin.templating import ENV, STATIC

log = logging.getLogger("market.admin")

bp = Blueprint("admin", url_prefix="/admin", strict_slashes=False)
bp.static("/static", str(STATIC), name="admin_static")

PAGE_SIZE = 50
LEDGER_ROWS = 50
QUEUE_LIMIT = 30
RECENT_LEDGER = 8

# Every market setting as people see it: (field, unit, label). Units: yuan ↔ fen, percent ↔ bp,
# minutes ↔ seconds, count as is. The order is the order of the form.
SETTINGS_FORM = (
    ("min_unit_price_fen", "yuan", "Minimum unit price"),
    ("max_unit_price_fen", "yuan", "Maximum unit price"),
    ("max_quantity", "count", "Maximum slots per task"),
    ("publish_fee_bp", "percent", "Publishing fee"),
    ("worker_invite_bp", "percent", "Worker inviter reward (of the unit price)"),
    ("publisher_invite_bp", "percent", "Publisher inviter reward (of the fee)"),
    ("withdraw_fee_bp", "percent", "Withdrawal fee"),
    ("min_withdraw_fen", "yuan", "Minimum withdrawal"),
    ("daily_withdraw_cap_fen", "yuan", "Daily withdrawal cap per user"),
    ("max_orders_in_progress", "count", "Orders in progress per worker"),
    ("take_window_s", "minutes", "Take window"),
    ("countdown_s", "minutes", "Task countdown (at most 10 minutes)"),
    ("review_window_s", "minutes", "Review window"),
    ("appeal_window_s", "minutes", "Appeal window"),
)
_PARSE = {"yuan": units.parse_yuan, "percent": units.parse_percent, "minutes": units.parse_minutes, "count": units.parse_count}
_SHOW = {"yuan": units.yuan_plain, "percent": units.percent_plain, "minutes": units.minutes_plain, "count": str}
UNIT_LABEL = {"yuan": "¥", "percent": "%", "minutes": "min", "count": ""}


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
    )
    return await render(template, status=status, context=context, app=request.app, environment=ENV)


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
    """{field: translated reason} from a domain error (InvalidInput names its field)."""
    details = getattr(exc, "details", {}) or {}
    if "fields" in details:
        return {k: i18n.reason(lang, v) for k, v in details["fields"].items()}
    if "field" in details:
        return {details["field"]: i18n.domain_message(lang, exc)}
    return {"_": i18n.domain_message(lang, exc)}


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
    ip = request.remote_addr or request.ip or "unknown"
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
    session.set_session_cookie(request, response, session.issue(request, op))
    response.delete_cookie(session.LOGIN_CSRF_COOKIE, path=session.COOKIE_PATH)
    return response


@bp.post("/logout")
@page()
async def logout(request: Request, op: Operator):
    response = redirect("/admin/login", status=303)
    session.clear_session_cookie(response)
    return response


# --- dashboard -------------------------------------------------------------------------------------
def _audit_cache(request: Request) -> dashboard.AuditCache:
    cache = getattr(request.app.ctx, "admin_audit", None)
    if cache is None:
        cache = request.app.ctx.admin_audit = dashboard.AuditCache()
    return cache


def _dashboard_values(lang: str, snap: dict) -> dict[str, str]:
    """Every figure as the text shown in its [data-k] element (so the poll needs no formatting)."""
    t = i18n.translator(lang)
    v: dict[str, str] = {f"orders.{k}": str(n) for k, n in snap["orders"].items()}
    for key in ("open_tasks", "open_slots", "completed_n", "appeals", "withdrawals_pending", "withdrawals_paying", "outbox_pending", "outbox_failed"):
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
    return await show(request, "dashboard.html", snap=snap, v=_dashboard_values(lang, snap), states=[s.value for s in OrderStatus])


@bp.get("/dashboard.json")
@page()
async def dashboard_json(request: Request, op: Operator):
    snap = await dashboard.snapshot(_audit_cache(request))
    lang = lang_of(request)
    return json({"values": _dashboard_values(lang, snap), "audit_ok": snap["audit_ok"],
                 "alerts": {"timer_lag": snap["timer_lag_s"] > 10, "outbox_failed": snap["outbox_failed"] > 0,
                            "audit": snap["audit_ok"] is False}})


# --- settings --------------------------------------------------------------------------------------
async def _settings_page(request: Request, *, values: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                         status: int = 200, version: int | None = None) -> HTTPResponse:
    current = await market_settings.current()
    row = await market_settings.SettingsRow.get(id=1)
    shown = {name: _SHOW[unit](getattr(current, name)) for name, unit, _ in SETTINGS_FORM}
    if values:
        shown.update(values)
    return await show(
        request, "settings.html", status=status, fields=SETTINGS_FORM, shown=shown, errors=errors or {},
        unit_label=UNIT_LABEL, version=version if version is not None else row.version, updated_at=row.updated_at,
        stored={name: getattr(current, name) for name, _, _ in SETTINGS_FORM},
    )


@bp.get("/settings")
@page(owner_only=True)
async def settings_form(request: Request, op: Operator):
    market_settings.invalidate_cache()
    return await _settings_page(request)


@bp.post("/settings")
@page(owner_only=True)
async def settings_submit(request: Request, op: Operator):
    lang = lang_of(request)
    t = i18n.translator(lang)
    market_settings.invalidate_cache()
    current = await market_settings.current()
    submitted = {name: form_value(request, name, 40) for name, _, _ in SETTINGS_FORM}
    errors: dict[str, str] = {}
    changes: dict[str, int] = {}
    for name, unit, _ in SETTINGS_FORM:
        try:
            value = _PARSE[unit](submitted[name])
        except units.FieldError as exc:
            errors[name] = t(exc.message, **exc.params)
            continue
        if value != getattr(current, name):
            changes[name] = value
    row = await market_settings.SettingsRow.get(id=1)
    if form_value(request, "version") != str(row.version):
        return await _settings_page(request, values=submitted, status=409,
                                    errors={"_": t("Someone else changed the settings meanwhile. The form now shows their values; check and save again.")} | errors)
    if errors:
        return await _settings_page(request, values=submitted, errors=errors, status=400)
    if not changes:
        return back("/admin/settings", "nothing_changed")
    try:
        await market_settings.update(changes, operator_id=op.id)
    except InvalidSettings as exc:
        return await _settings_page(request, values=submitted, errors=field_errors(lang, exc), status=400)
    except DomainError as exc:  # Conflict: changed by someone else between our read and write
        return await _settings_page(request, errors={"_": i18n.domain_message(lang, exc)}, status=409)
    return back("/admin/settings", "settings_saved")


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
async def _appeals_page(request: Request, *, errors: dict[int, dict[str, str]] | None = None,
                        notes: dict[int, str] | None = None, status: int = 200) -> HTTPResponse:
    queue = await Order.filter(status=OrderStatus.APPEALING).order_by("appealed_at", "id").limit(QUEUE_LIMIT).prefetch_related("task")
    total = await Order.filter(status=OrderStatus.APPEALING).count()
    people = await _users({o.worker_id for o in queue} | {o.publisher_id for o in queue})
    return await show(request, "appeals.html", status=status, queue=queue, total=total, people=people,
                      errors=errors or {}, notes=notes or {})


@bp.get("/appeals")
@page()
async def appeals(request: Request, op: Operator):
    return await _appeals_page(request)


@bp.post("/appeals/<order_id:int>/decide")
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
async def _recent_ledger(user_ids: set[int], per_user: int = RECENT_LEDGER) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for uid in user_ids:
        out[uid] = await _ledger_rows(uid, per_user)
    return out


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


async def _withdrawals_page(request: Request, *, errors: dict[int, dict[str, str]] | None = None,
                            values: dict[int, dict[str, str]] | None = None, status: int = 200) -> HTTPResponse:
    pending = await Withdrawal.filter(status=WithdrawalStatus.PENDING).order_by("id").limit(QUEUE_LIMIT)
    total = await Withdrawal.filter(status=WithdrawalStatus.PENDING).count()
    paying = await Withdrawal.filter(status=WithdrawalStatus.PAYING).order_by("id").limit(QUEUE_LIMIT)
    recent = await Withdrawal.filter(status__in=[WithdrawalStatus.PAID, WithdrawalStatus.REJECTED, WithdrawalStatus.FAILED]).order_by("-finished_at", "-id").limit(20)
    ids = {w.user_id for w in [*pending, *paying, *recent]}
    people = await _users(ids)
    balances = {uid: await ledger.user_balances(uid) for uid in {w.user_id for w in pending}}
    recent_ledger = await _recent_ledger({w.user_id for w in pending})
    operators = {o.id: o.username for o in await Operator.all()}
    return await show(request, "withdrawals.html", status=status, pending=pending, total=total, paying=paying, recent=recent,
                      people=people, balances=balances, ledger_rows=recent_ledger, errors=errors or {}, values=values or {},
                      operators=operators)


@bp.get("/withdrawals")
@page()
async def withdrawals_queue(request: Request, op: Operator):
    return await _withdrawals_page(request)


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
@bp.get("/customers")
@page()
async def customers(request: Request, op: Operator):
    q = (request.args.get("q") or "").strip()[:64]
    results: list[User] = []
    if q:
        cond = Q(invite_code=q.upper())
        if len(q) >= 3:
            cond |= Q(openid__icontains=q) | Q(nickname__icontains=q)
        uid = units.parse_id(q)
        if uid is not None:
            cond |= Q(id=uid)
        results = await User.filter(cond).order_by("-id").limit(PAGE_SIZE)
    else:
        results = await User.all().order_by("-id").limit(20)
    return await show(request, "customers.html", q=q, results=results)


async def _customer_page(request: Request, user_id: int, *, errors: dict[str, str] | None = None,
                         values: dict[str, str] | None = None, status: int = 200) -> HTTPResponse:
    user = await User.get_or_none(id=user_id)
    if user is None:
        return await show(request, "error.html", status=404, title="Not found", message="No such customer.")
    before = units.parse_id(request.args.get("before"))
    rows = await _ledger_rows(user_id, LEDGER_ROWS, before)
    tasks = await Task.filter(publisher_id=user_id).order_by("-id").limit(20)
    worker_orders = await Order.filter(worker_id=user_id).order_by("-id").limit(20)
    publisher_orders = await Order.filter(publisher_id=user_id).order_by("-id").limit(20)
    invitees = await User.filter(inviter_id=user_id).order_by("-id").limit(100)
    earned = {
        r["invitee_id"]: r for r in await ReferralReward.filter(inviter_id=user_id)
        .annotate(total=Sum("amount_fen"), n=Count("id")).group_by("invitee_id").values("invitee_id", "total", "n")
    }
    referral_total = sum(int(r["total"] or 0) for r in earned.values())
    unsettled = await ReferralReward.filter(inviter_id=user_id, settled_entry_id=None).annotate(s=Sum("amount_fen")).values("s")
    user_withdrawals = await Withdrawal.filter(user_id=user_id).order_by("-id").limit(20)
    inviter = await User.get_or_none(id=user.inviter_id) if user.inviter_id else None
    return await show(
        request, "customer.html", status=status, user=user, inviter=inviter, balances=await ledger.user_balances(user_id),
        ledger_rows=rows, tasks=tasks, worker_orders=worker_orders, publisher_orders=publisher_orders, invitees=invitees,
        earned=earned, referral_total=referral_total, referral_unsettled=int((unsettled[0]["s"] if unsettled else 0) or 0),
        withdrawals=user_withdrawals, errors=errors or {}, values=values or {}, request_id=uuid.uuid4().hex,
        more_before=rows[-1]["id"] if len(rows) == LEDGER_ROWS else None,
    )


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
    if errors:
        return await _customer_page(request, user_id, errors=errors, values=values, status=400)
    try:
        await ledger.adjust(user_id, amount, operator_id=op.id, reason=reason, request_id=f"admin:{request_id}")
    except DomainError as exc:
        errs = field_errors(lang, exc)
        if "amount_fen" in errs:
            errs["amount"] = errs.pop("amount_fen")
        return await _customer_page(request, user_id, errors=errs, values=values, status=exc.status)
    return back(f"/admin/customers/{user_id}", "adjusted")


# --- tasks and orders ------------------------------------------------------------------------------
def _range_filters(request: Request, qs, column: str):
    start, end = units.parse_day(request.args.get("from")), units.parse_day(request.args.get("to"))
    if start:
        qs = qs.filter(**{f"{column}__gte": units.day_start_utc(start)})
    if end:
        qs = qs.filter(**{f"{column}__lt": units.day_start_utc(end + dt.timedelta(days=1))})
    return qs


def _page_no(request: Request) -> int:
    n = units.parse_id(request.args.get("page")) or 1
    return max(1, min(n, 10_000))


def _query_without_page(request: Request) -> str:
    return urlencode([(k, v) for k, vs in request.args.items() if k not in ("page", "done") for v in vs])


@bp.get("/tasks")
@page()
async def tasks_list(request: Request, op: Operator):
    qs = Task.all()
    state = request.args.get("state") or ""
    if state in {s.value for s in TaskStatus}:
        qs = qs.filter(status=state)
    publisher = units.parse_id(request.args.get("publisher"))
    if publisher:
        qs = qs.filter(publisher_id=publisher)
    qs = _range_filters(request, qs, "created_at")
    n = _page_no(request)
    rows = await qs.order_by("-id").offset((n - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
    return await show(request, "tasks.html", rows=rows[:PAGE_SIZE], more=len(rows) > PAGE_SIZE, page_no=n,
                      states=[s.value for s in TaskStatus], args=request.args, base_query=_query_without_page(request))


@bp.get("/tasks/<task_id:int>")
@page()
async def task_detail(request: Request, op: Operator, task_id: int):
    task = await Task.get_or_none(id=task_id)
    if task is None:
        return await show(request, "error.html", status=404, title="Not found", message="No such task.")
    task_orders = await Order.filter(task_id=task_id).order_by("id").limit(500)
    history = await audit.history("task", task_id)
    actors = await _actor_names(history)
    return await show(request, "task.html", task=task, orders=task_orders, history=history, actors=actors,
                      people=await _users({task.publisher_id} | {o.worker_id for o in task_orders}))


@bp.get("/orders")
@page()
async def orders_list(request: Request, op: Operator):
    qs = Order.all()
    state = request.args.get("state") or ""
    if state in {s.value for s in OrderStatus}:
        qs = qs.filter(status=state)
    for name, column in (("publisher", "publisher_id"), ("worker", "worker_id"), ("task", "task_id")):
        value = units.parse_id(request.args.get(name))
        if value:
            qs = qs.filter(**{column: value})
    qs = _range_filters(request, qs, "taken_at")
    n = _page_no(request)
    rows = await qs.order_by("-id").offset((n - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
    return await show(request, "orders.html", rows=rows[:PAGE_SIZE], more=len(rows) > PAGE_SIZE, page_no=n,
                      states=[s.value for s in OrderStatus], args=request.args, base_query=_query_without_page(request))


@bp.get("/orders/<order_id:int>")
@page()
async def order_detail(request: Request, op: Operator, order_id: int):
    order = await Order.get_or_none(id=order_id).prefetch_related("task")
    if order is None:
        return await show(request, "error.html", status=404, title="Not found", message="No such order.")
    history = await audit.history("order", order_id)
    entries = await ledger.JournalEntry.filter(order_id=order_id).order_by("id")
    return await show(request, "order.html", order=order, history=history, actors=await _actor_names(history), entries=entries,
                      people=await _users({order.worker_id, order.publisher_id}))


async def _actor_names(rows) -> dict[tuple[str, int], str]:
    op_ids = {r.actor_id for r in rows if r.actor_kind == "operator" and r.actor_id}
    names = {("operator", o.id): o.username for o in await Operator.filter(id__in=op_ids)} if op_ids else {}
    return names


# --- audit log -------------------------------------------------------------------------------------
@bp.get("/audit")
@page()
async def audit_log(request: Request, op: Operator):
    qs = AuditLog.all()
    args = request.args
    if (kind := args.get("actor_kind")) in ("user", "operator", "timer", "wechat", "system"):
        qs = qs.filter(actor_kind=kind)
    if (actor := units.parse_id(args.get("actor_id"))) is not None:
        qs = qs.filter(actor_id=actor)
    if action := (args.get("action") or "").strip()[:64]:
        qs = qs.filter(action__startswith=action)
    if target := (args.get("target_kind") or "").strip()[:32]:
        qs = qs.filter(target_kind=target)
    if (target_id := units.parse_id(args.get("target_id"))) is not None:
        qs = qs.filter(target_id=target_id)
    qs = _range_filters(request, qs, "created_at")
    n = _page_no(request)
    rows = await qs.order_by("-id").offset((n - 1) * 100).limit(101)
    return await show(request, "audit.html", rows=rows[:100], more=len(rows) > 100, page_no=n, args=args,
                      actors=await _actor_names(rows), base_query=_query_without_page(request))


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
        session.clear_session_cookie(response)
        return response
    return back("/admin/operators", "password_set")
