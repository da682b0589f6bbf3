"""The reconciliation room of the admin panel (issue 15): differences between our books and WeChat
Pay's daily bills, waiting for an operator, and the recent reconciliation runs.

Nothing here moves money. An operator reads a difference, does what it needs elsewhere (a manual
adjustment on the customer's page, a call to WeChat Pay support, a payout marked paid by hand) and
closes it here with a note saying what was checked and done; the note goes to the audit log.
Registered on the panel's blueprint by `server/admin/__init__.py`.
"""

from __future__ import annotations

from sanic import Request

from models import clock
from models import reconciliation as recon
from models.errors import DomainError
from models.operators import Operator
from server.admin import export, i18n, units
from server.admin.views import back, bp, form_value, lang_of, page, show

QUEUE_LIMIT = 100
# A run's status as operators read it (the i18n keys of the run states).
RUN_LABELS = {"clean": "run_clean", "differences": "run_differences", "waiting": "run_waiting",
              "running": "run_running", "failed": "run_failed"}


async def _page(request: Request, *, errors: dict | None = None, values: dict | None = None, status: int = 200):
    waiting = recon.Difference.filter(status=recon.DifferenceStatus.OPEN)
    limit = export.MAX_ROWS if export.wants_csv(request) else QUEUE_LIMIT
    open_ = await waiting.order_by("bill_date", "id").limit(limit)
    total = await waiting.count()
    if export.wants_csv(request):
        return await _csv(request, open_, total)
    resolved = await recon.Difference.filter(status=recon.DifferenceStatus.RESOLVED).order_by("-resolved_at").limit(20)
    runs = await recon.ReconciliationRun.all().order_by("-bill_date").limit(14)
    operators = {o.id: o.username for o in await Operator.all()}
    return await show(request, "reconciliation.html", status=status, differences=open_, total=total, resolved=resolved,
                      runs=runs, run_labels=RUN_LABELS, operators=operators, errors=errors or {}, values=values or {})


async def _csv(request: Request, differences: list, total: int):
    """The differences waiting, as the room's cards show them."""
    t = i18n.translator(lang_of(request))

    def amount(fen):
        return units.yuan_plain(fen) if fen is not None else ""

    columns = [
        ("#", lambda d: d.id), ("Kind", lambda d: t(d.kind.value)), ("Bill day", lambda d: d.bill_date.isoformat()),
        ("found", lambda d: units.local(d.created_at)),
        ("Ours", lambda d: f"{t(d.ref_kind)} #{d.ref_id}" if d.ref_kind else ""), ("WeChat reference", lambda d: d.wechat_ref or ""),
        ("Our books", lambda d: amount(d.our_amount_fen)), ("WeChat Pay", lambda d: amount(d.wechat_amount_fen)),
        ("Details", lambda d: " · ".join(f"{k}: {v}" for k, v in (d.details or {}).items())),
    ]
    return await export.csv_response(request, "reconciliation", columns, differences, t, clock.now(), matching=total)


@bp.get("/reconciliation")
@page()
async def reconciliation_queue(request: Request, op: Operator):
    return await _page(request)


@bp.post("/reconciliation/<did:int>/resolve")
@page()
async def resolve_difference(request: Request, op: Operator, did: int):
    note = form_value(request, "note", 500)
    try:
        await recon.resolve(did, op.id, note=note)
    except DomainError as exc:
        lang = lang_of(request)
        return await _page(request, errors={did: {"note": i18n.domain_message(lang, exc)}}, values={did: {"note": note}},
                           status=exc.status)
    return back("/admin/reconciliation", "difference_resolved")
