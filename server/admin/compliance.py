"""The compliance room of the admin panel (issue 14 §2, §4): tasks held by the compliance gate
(approve into the hall, or refuse with a reason: the escrow goes back), the prohibited terms
(add, disable, enable) and the automatic appeal rules (on/off and their parameters). The held tasks
are every operator's queue; the terms, the rules and the two switches are policy: the owner's.

Every action is one domain call that writes its own audit row. Registered on the panel's blueprint
by `server/admin/__init__.py`.
"""

from __future__ import annotations

from sanic import Request

from models import appeals, clock, compliance
from models import settings as market_settings
from models.appeals import PARAM_RANGES, RULE_DEFAULTS, AppealAutoDecision, RuleKind
from models.compliance import Category, ComplianceTerm
from models.errors import DomainError, InvalidInput, NotFound
from models.operators import Operator
from models.tasks import Task, TaskStatus
from server.admin import export, i18n, units
from server.admin.lists import name_of, people
from server.admin.wording import held_because
from server.admin.views import back, bp, field_errors, form_value, lang_of, page, show

QUEUE_LIMIT = 100


async def _page(request: Request, *, errors: dict | None = None, status: int = 200):
    held = await compliance.held_queue(export.MAX_ROWS if export.wants_csv(request) else QUEUE_LIMIT)
    total = await Task.filter(status=TaskStatus.HELD).count()
    if export.wants_csv(request):
        return await _csv(request, held, total)
    await compliance.ensure_default_terms()
    terms = await ComplianceTerm.all().order_by("category", "id")
    rules = await appeals.rules()
    decisions = await AppealAutoDecision.all().order_by("-id").limit(30)
    settings = await market_settings.current()
    return await show(request, "compliance.html", status=status, held=held, total=total, terms=terms, rules=rules,
                      settings=settings,
                      rule_defaults=RULE_DEFAULTS, ranges=PARAM_RANGES, categories=[c.value for c in Category],
                      decisions=decisions, errors=errors or {}, held_because=held_because)


async def _csv(request: Request, held: list, total: int):
    """The held-task queue: each task, why it was held (in words), its money in escrow."""
    t = i18n.translator(lang_of(request))
    who = await people({task.publisher_id for task in held})
    columns = [
        ("Task #", lambda x: x.id), ("Title", lambda x: x.title), ("Publisher", lambda x: name_of(who, x.publisher_id)),
        ("Why it was held", lambda x: "; ".join(held_because(t, x.hold_reason))), ("held", lambda x: units.local(x.held_at)),
        ("Price", lambda x: units.yuan_plain(x.unit_price_fen)), ("Fee", lambda x: units.yuan_plain(x.fee_fen)),
        ("Slots", lambda x: x.quantity), ("Held", lambda x: units.yuan_plain(x.slots_untaken * (x.unit_price_fen + x.fee_fen))),
        ("Instructions", lambda x: x.instructions),
    ]
    return await export.csv_response(request, "held_tasks", columns, held, t, clock.now(), matching=total)


@bp.get("/compliance")
@page()
async def compliance_room(request: Request, op: Operator):
    return await _page(request)


@bp.post("/compliance/tasks/<task_id:int>/approve")
@page()
async def approve_held(request: Request, op: Operator, task_id: int):
    try:
        await compliance.approve_held(task_id, operator_id=op.id, note=form_value(request, "note", 500) or None)
    except DomainError as exc:
        return await _page(request, errors={f"task-{task_id}": {"_": i18n.domain_message(lang_of(request), exc)}}, status=exc.status)
    return back("/admin/compliance", "held_task_approved")


@bp.post("/compliance/tasks/<task_id:int>/refuse")
@page()
async def refuse_held(request: Request, op: Operator, task_id: int):
    reason = form_value(request, "reason", 600)
    try:
        if not reason:
            raise InvalidInput("A reason is required.", zh="必须填写原因。", field="reason")
        await compliance.refuse_held(task_id, operator_id=op.id, reason=reason)
    except DomainError as exc:
        lang = lang_of(request)
        e = field_errors(lang, exc) if isinstance(exc, InvalidInput) else {"_": i18n.domain_message(lang, exc)}
        return await _page(request, errors={f"task-{task_id}": e}, status=exc.status)
    return back("/admin/compliance", "held_task_refused")


@bp.post("/compliance/terms")
@page(owner_only=True)
async def add_term(request: Request, op: Operator):
    try:
        await compliance.add_term(form_value(request, "term", 100), form_value(request, "category", 32), operator_id=op.id)
    except DomainError as exc:
        return await _page(request, errors={"term": field_errors(lang_of(request), exc)}, status=exc.status)
    return back("/admin/compliance", "term_added")


@bp.post("/compliance/terms/toggle")
@page(owner_only=True)
async def toggle_term(request: Request, op: Operator):
    term_id = units.parse_id(form_value(request, "term_id", 20))
    if term_id is None:
        raise InvalidInput("Not a term.", zh="不是有效的禁止词编号。", field="term_id")
    if not await compliance.set_term_enabled(term_id, form_value(request, "enabled", 2) == "1", operator_id=op.id):
        raise NotFound()  # no such term: nothing changed, and the page does not say it did
    return back("/admin/compliance", "term_changed")


@bp.post("/compliance/rules")
@page(owner_only=True)
async def save_rule(request: Request, op: Operator):
    kind = form_value(request, "kind", 32)
    params: dict[str, object] = {}
    if kind in {k.value for k in RuleKind}:
        for name in RULE_DEFAULTS[RuleKind(kind)]:
            raw = form_value(request, name, 20)
            digits = raw[1:] if raw.startswith("-") else raw
            params[name] = int(raw) if digits.isascii() and digits.isdigit() else raw
    try:
        await appeals.update_rule(kind, enabled=form_value(request, "enabled", 8) == "1", params=params, operator_id=op.id)
    except DomainError as exc:
        return await _page(request, errors={f"rule-{kind}": field_errors(lang_of(request), exc)}, status=exc.status)
    return back("/admin/compliance", "rule_saved")


@bp.post("/compliance/settings")
@page(owner_only=True)
async def save_switches(request: Request, op: Operator):
    """The two market settings of this room (owner): written through the settings' own validated,
    audited update (`settings.update`), like the Settings page."""
    changes = {name: int(form_value(request, name, 2) == "1") for name in ("compliance_hold_on_match", "referral_requires_first_order")}
    await market_settings.update(changes, operator_id=op.id)
    return back("/admin/compliance", "settings_saved")
