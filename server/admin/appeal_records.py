"""The appeals queue with each side's track record (issue 13): the worker's past appeals and how
they ended, the publisher's rejection rate and how often their rejections were overturned. And the
`linkify` filter: links in task instructions, proofs and reasons become clickable — the text is
escaped first and only http(s) addresses become links, so nothing a customer typed can inject
markup or a `javascript:` link.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape
from tortoise.functions import Count

from models import clock
from models.orders import Order, OrderStatus
from server.admin import export, i18n, units
from server.admin.templating import ENV

QUEUE_LIMIT = 30
# An address runs until a space, a quote, an angle bracket or a full-width (Chinese) character.
_URL = re.compile(r"(https?://[^\s<>\"'\u3000-\u303f\uff00-\uffef\u4e00-\u9fff]+)", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'"


def linkify(text) -> Markup:
    if text is None:
        return Markup("")
    out: list[str] = []
    for i, part in enumerate(_URL.split(str(text))):
        if i % 2 == 0:
            out.append(str(escape(part)))
            continue
        url, tail = part, ""
        while url and url[-1] in _TRAILING:
            url, tail = url[:-1], url[-1] + tail
        href = escape(url)
        out.append(f'<a href="{href}" target="_blank" rel="noopener noreferrer nofollow" class="ext">{href}</a>{escape(tail)}')
    return Markup("".join(out))


ENV.filters["linkify"] = linkify


async def _counts(column: str, ids: set[int], **cond) -> dict[int, int]:
    if not ids:
        return {}
    rows = await Order.filter(**{f"{column}__in": list(ids)}, **cond).annotate(n=Count("id")).group_by(column).values(column, "n")
    return {r[column]: r["n"] for r in rows}


async def track_records(queue: list[Order]) -> dict[str, dict[int, dict]]:
    """{"worker": {id: record}, "publisher": {id: record}} for the people of the queue."""
    workers = {o.worker_id for o in queue}
    publishers = {o.publisher_id for o in queue}
    appealed = {"appealed_at__isnull": False}
    w_total = await _counts("worker_id", workers, **appealed)
    w_won = await _counts("worker_id", workers, finished_by="arbitrate_worker")
    w_lost = await _counts("worker_id", workers, finished_by="arbitrate_publisher")
    w_orders = await _counts("worker_id", workers, submitted_at__isnull=False)
    p_submitted = await _counts("publisher_id", publishers, submitted_at__isnull=False)
    p_rejected = await _counts("publisher_id", publishers, rejected_at__isnull=False)
    p_appealed = await _counts("publisher_id", publishers, **appealed)
    p_lost = await _counts("publisher_id", publishers, finished_by="arbitrate_worker")
    p_won = await _counts("publisher_id", publishers, finished_by="arbitrate_publisher")

    def rate(n: int, d: int) -> str:
        return f"{n * 100 // d}%" if d else "—"

    worker = {}
    for w in workers:
        total, won, lost = w_total.get(w, 0), w_won.get(w, 0), w_lost.get(w, 0)
        worker[w] = {"orders": w_orders.get(w, 0), "appeals": total, "won": won, "lost": lost,
                     "open": total - won - lost, "appeal_rate": rate(total, w_orders.get(w, 0))}
    publisher = {}
    for p in publishers:
        decided = p_lost.get(p, 0) + p_won.get(p, 0)
        publisher[p] = {"submitted": p_submitted.get(p, 0), "rejected": p_rejected.get(p, 0), "appealed": p_appealed.get(p, 0),
                        "lost": p_lost.get(p, 0), "won": p_won.get(p, 0),
                        "reject_rate": rate(p_rejected.get(p, 0), p_submitted.get(p, 0)),
                        "loss_rate": rate(p_lost.get(p, 0), decided)}
    return {"worker": worker, "publisher": publisher}


async def appeals_page(request, *, errors=None, notes=None, status: int = 200):
    from server.admin.views import _users, lang_of, show

    waiting = Order.filter(status=OrderStatus.APPEALING)
    limit = export.MAX_ROWS if export.wants_csv(request) else QUEUE_LIMIT
    queue = await waiting.order_by("appealed_at", "id").limit(limit).prefetch_related("task")
    total = await waiting.count()
    people = await _users({o.worker_id for o in queue} | {o.publisher_id for o in queue})
    if export.wants_csv(request):
        return await _csv(request, queue, total, people, lang_of(request))
    return await show(request, "appeals.html", status=status, queue=queue, total=total, people=people,
                      errors=errors or {}, notes=notes or {}, records=await track_records(queue))


async def _csv(request, queue: list[Order], total: int, people: dict, lang: str):
    """The whole queue as the cards show it: the order, both sides, the rejection and the appeal,
    the publisher's answer, and each side's track record."""
    from server.admin.lists import name_of

    t = i18n.translator(lang)
    records = await track_records(queue)

    def worker(o):
        r = records["worker"][o.worker_id]
        return t("Worker: {n} orders handed in; {a} appeals before ({r}): won {w}, lost {l}, open {o}", n=r["orders"],
                 a=r["appeals"], r=r["appeal_rate"], w=r["won"], l=r["lost"], o=r["open"])

    def publisher(o):
        r = records["publisher"][o.publisher_id]
        return t("Publisher: rejected {x} of {n} orders handed in ({r}); appeals against them: {a}, overturned {l} ({lr})",
                 x=r["rejected"], n=r["submitted"], r=r["reject_rate"], a=r["appealed"], l=r["lost"], lr=r["loss_rate"])

    columns = [
        ("Order #", lambda o: o.id), ("Task #", lambda o: o.task_id), ("Title", lambda o: o.task.title),
        ("Worker", lambda o: name_of(people, o.worker_id)), ("Publisher", lambda o: name_of(people, o.publisher_id)),
        ("Price", lambda o: units.yuan_plain(o.unit_price_fen)), ("Fee", lambda o: units.yuan_plain(o.fee_fen)),
        ("Criterion not met", lambda o: o.reject_criterion or (t("Other (no declared criterion)") if o.task.criteria else "")),
        ("Rejection reason", lambda o: o.reject_reason), ("appealed", lambda o: units.local(o.appealed_at)),
        ("Appeal", lambda o: o.appeal_reason), ("Answer of the publisher", lambda o: o.answer_text or ""),
        ("An automatic rule decides for the worker at", lambda o: units.local(o.answer_due_at) if not o.answered_at else ""),
        ("Worker's track record", worker), ("Publisher's track record", publisher),
    ]
    return await export.csv_response(request, "appeals", columns, queue, t, clock.now(), matching=total)


i18n.ZH.update({  # the appeals' track records (issue 13)
    "Track record": "过往记录",
    "Worker: {n} orders handed in; {a} appeals before ({r}): won {w}, lost {l}, open {o}":
        "接单方：已提交 {n} 单；此前申诉 {a} 次（{r}）：胜 {w}，败 {l}，未决 {o}",
    "Publisher: rejected {x} of {n} orders handed in ({r}); appeals against them: {a}, overturned {l} ({lr})":
        "发单方：已收到提交 {n} 单，驳回 {x} 单（{r}）；被申诉 {a} 次，被改判 {l} 次（{lr}）",
    "Their orders": "其订单", "Worker's track record": "接单方过往记录", "Publisher's track record": "发单方过往记录",
})
