"""The panel's lists as work queues (issue 13, "Work queues and lists"): tasks, orders, the audit log
and customers, with names next to every id, filters that take a nickname (or task title) as well as
an id and say what was wrong with a value they cannot use, pagination, and a CSV export of the same
rows (`?format=csv`, server/admin/export.py).

Registered on the panel's blueprint by `server/admin/__init__.py`; the shared plumbing (`page`,
`show`) is views.py's.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from sanic import Request
from tortoise.expressions import Q, Subquery

from models import clock, orders
from models.audit import AuditLog
from models.ledger import Account, AccountKind
from models.operators import Operator
from models.orders import Order, OrderStatus
from models.tasks import Task, TaskStatus
from models.users import End, User
from server.admin import export, i18n, search, units, wording
from server.admin.templating import ENV
from server.admin.views import bp, lang_of, page, show

PAGE_SIZE = 50
AUDIT_PAGE = 100
MATCH_MAX = 500  # ids a name filter may stand for


# --- filters -------------------------------------------------------------------------------------
class Filters:
    """The query string of a list, read once: each bad value is remembered with its reason (shown
    above the list, which then shows nothing rather than everything)."""

    def __init__(self, request: Request) -> None:
        self.args = request.args
        self.t = i18n.translator(lang_of(request))
        self.errors: dict[str, str] = {}
        self.named: dict[str, str] = {}  # what a name-or-id filter stands for, shown under it

    def text(self, name: str, max_len: int = 64) -> str:
        return (self.args.get(name) or "").strip()[:max_len]

    def choice(self, name: str, allowed) -> str | None:
        value = self.text(name)
        if not value:
            return None
        if value not in allowed:
            self.errors[name] = self.t("“{v}” is not one of: {choices}.", v=value[:40], choices="、".join(self.t(c) for c in sorted(allowed)))
            return None
        return value

    def day(self, name: str) -> dt.date | None:
        value = self.text(name, 20)
        if not value:
            return None
        day = units.parse_day(value)
        if day is None:
            self.errors[name] = self.t("“{v}” is not a date (YYYY-MM-DD, e.g. 2026-03-31).", v=value)
        return day

    def number(self, name: str) -> int | None:
        value = self.text(name, 20)
        if not value:
            return None
        n = units.parse_id(value)
        if n is None:
            self.errors[name] = self.t("“{v}” is not an ID (a whole number such as 123).", v=value)
        return n

    def yuan(self, name: str) -> int | None:
        value = self.text(name, 20)
        if not value:
            return None
        try:
            return units.parse_yuan(value)
        except units.FieldError:
            self.errors[name] = self.t("“{v}” is not an amount in yuan.", v=value)
            return None

    async def person(self, name: str) -> list[int] | None:
        """A customer by id (`12`, `#12`), invite code or any part of the nickname: their ids, or
        None when the filter is empty."""
        value = self.text(name)
        if not value:
            return None
        uid = units.parse_id(value)
        if uid is not None:
            user = await User.get_or_none(id=uid)
            self.named[name] = name_of({uid: user}, uid) if user else self.t("No such customer.")
            return [uid]
        match = Q(nickname__icontains=value)
        if len(value) <= search.INVITE_CODE_MAX:  # a longer text is no invite code (and the ORM refuses to compare it)
            match |= Q(invite_code=value.upper())
        found = await User.filter(match).order_by("id").limit(MATCH_MAX)
        if not found:
            self.errors[name] = self.t("No customer is called “{v}”.", v=value)
        self._named(name, [(u.id, name_of({u.id: u}, u.id)) for u in found])
        return [u.id for u in found]

    def _named(self, name: str, found: list[tuple[int, str]]) -> None:
        if len(found) == 1:
            self.named[name] = found[0][1]
        elif found:
            self.named[name] = self.t("{n} matches: {names}", n=len(found), names=", ".join(x for _, x in found[:5])
                                      + (" …" if len(found) > 5 else ""))

    async def task(self, name: str) -> list[int] | None:
        value = self.text(name)
        if not value:
            return None
        tid = units.parse_id(value)
        if tid is not None:
            title = await Task.filter(id=tid).values_list("title", flat=True)
            self.named[name] = f"#{tid} {title[0]}" if title else self.t("No such task.")
            return [tid]
        found = await Task.filter(title__icontains=value).order_by("-id").limit(MATCH_MAX).values_list("id", "title")
        if not found:
            self.errors[name] = self.t("No task title contains “{v}”.", v=value)
        self._named(name, [(i, f"#{i} {title}") for i, title in found])
        return [i for i, _ in found]

    def range(self, qs, column: str):
        start, end = self.day("from"), self.day("to")
        if start and end and start > end:
            self.errors["to"] = self.t("“To” is before “From”.")
        if start:
            qs = qs.filter(**{f"{column}__gte": units.day_start_utc(start)})
        if end:
            qs = qs.filter(**{f"{column}__lt": units.day_start_utc(end + dt.timedelta(days=1))})
        return qs


def page_no(request: Request) -> int:
    n = units.parse_id(request.args.get("page")) or 1
    return max(1, min(n, 10_000))


def base_query(request: Request) -> str:
    return urlencode([(k, v) for k, vs in request.args.items() if k not in ("page", "done", "format") for v in vs])


# --- names ---------------------------------------------------------------------------------------
async def people(ids) -> dict[int, User]:
    ids = {i for i in ids if i}
    return {u.id: u for u in await User.filter(id__in=ids)} if ids else {}


async def titles(ids) -> dict[int, str]:
    ids = {i for i in ids if i}
    return dict(await Task.filter(id__in=ids).values_list("id", "title")) if ids else {}


def name_of(people_: dict[int, User], uid: int | None) -> str:
    if not uid:
        return ""
    u = people_.get(uid)
    return f"#{uid} {u.nickname or u.openid[:10]}" if u else f"#{uid}"


async def _rows(qs, request: Request, size: int, order: tuple[str, ...] = ("-id",)):
    """One page (and whether there is a next), or every row for a CSV export."""
    if export.wants_csv(request):
        return await qs.order_by(*order).limit(export.MAX_ROWS), False, 1
    n = page_no(request)
    rows = await qs.order_by(*order).offset((n - 1) * size).limit(size + 1)
    return rows[:size], len(rows) > size, n


SETTLE_CHUNK = 500  # ids per settling statement (an export's 20 000 would not fit in one)
SETTLE_ROUNDS = 20  # per chunk: each round applies at most orders.SETTLE_ON_READ_MAX timers


async def _settled(model, rows: list, settle) -> list:
    """The rows a page shows or an export writes, their overdue timers applied first (SPEC §3: nobody
    reads a stale state, even while the scheduler is down), in the same order; only rows that
    changed are read again."""
    ids = [r.id for r in rows]
    changed = False
    for i in range(0, len(ids), SETTLE_CHUNK):
        for _ in range(SETTLE_ROUNDS):
            applied = await settle(ids[i:i + SETTLE_CHUNK])
            changed = changed or applied > 0
            if applied < orders.SETTLE_ON_READ_MAX:
                break
    if not changed:
        return rows
    fresh: dict = {}
    for i in range(0, len(ids), SETTLE_CHUNK):
        fresh.update({r.id: r for r in await model.filter(id__in=ids[i:i + SETTLE_CHUNK])})
    return [fresh.get(r.id, r) for r in rows]


# --- tasks ---------------------------------------------------------------------------------------
@bp.get("/tasks")
@page()
async def tasks_list(request: Request, op):
    f = Filters(request)
    qs = Task.all()
    if state := f.choice("state", {s.value for s in TaskStatus}):
        qs = qs.filter(status=state)
    if (who := await f.person("publisher")) is not None:
        qs = qs.filter(publisher_id__in=who)
    if (which := await f.task("q")) is not None:
        qs = qs.filter(id__in=which)
    qs = f.range(qs, "created_at")
    rows, more, n = ([], False, 1) if f.errors else await _rows(qs, request, PAGE_SIZE)
    rows = await _settled(Task, rows, orders.settle_due_tasks)  # shown or exported: never stale
    who_ = await people({t.publisher_id for t in rows})
    if export.wants_csv(request) and not f.errors:
        t = i18n.translator(lang_of(request))
        columns = [
            ("Task #", lambda x: x.id), ("Title", lambda x: x.title), ("Publisher", lambda x: name_of(who_, x.publisher_id)),
            ("State", lambda x: t(x.status.value)), ("Price", lambda x: units.yuan_plain(x.unit_price_fen)),
            ("Fee", lambda x: units.yuan_plain(x.fee_fen)), ("Slots", lambda x: f"{x.quantity - x.slots_untaken - x.slots_refunded}/{x.quantity}"),
            ("Published", lambda x: units.local(x.created_at)), ("Take deadline", lambda x: units.local(x.take_deadline_at)),
        ]
        return await export.csv_response(request, "tasks", columns, rows, t, clock.now(),
                                         matching=await export.matching(qs, rows))
    return await show(request, "tasks.html", status=400 if f.errors else 200, rows=rows, more=more, page_no=n,
                      states=[s.value for s in TaskStatus], args=request.args, base_query=base_query(request),
                      people=who_, filter_errors=f.errors, named=f.named)


# --- orders --------------------------------------------------------------------------------------
@bp.get("/orders")
@page()
async def orders_list(request: Request, op):
    f = Filters(request)
    qs = Order.all()
    if state := f.choice("state", {s.value for s in OrderStatus}):
        qs = qs.filter(status=state)
    for name, column in (("publisher", "publisher_id"), ("worker", "worker_id")):
        if (who := await f.person(name)) is not None:
            qs = qs.filter(**{f"{column}__in": who})
    if (which := await f.task("task")) is not None:
        qs = qs.filter(task_id__in=which)
    qs = f.range(qs, "taken_at")
    rows, more, n = ([], False, 1) if f.errors else await _rows(qs, request, PAGE_SIZE)
    rows = await _settled(Order, rows, orders.settle_due_orders)
    who_ = await people({o.worker_id for o in rows} | {o.publisher_id for o in rows})
    names = await titles({o.task_id for o in rows})
    if export.wants_csv(request) and not f.errors:
        t = i18n.translator(lang_of(request))
        columns = [
            ("Order #", lambda o: o.id), ("Task #", lambda o: o.task_id), ("Title", lambda o: names.get(o.task_id, "")),
            ("Worker", lambda o: name_of(who_, o.worker_id)), ("Publisher", lambda o: name_of(who_, o.publisher_id)),
            ("State", lambda o: t(o.status.value)), ("Price", lambda o: units.yuan_plain(o.unit_price_fen)),
            ("Fee", lambda o: units.yuan_plain(o.fee_fen)), ("Taken", lambda o: units.local(o.taken_at)),
            ("Next deadline", lambda o: units.local(o.due_at)), ("Finished", lambda o: units.local(o.finished_at)),
            ("How", lambda o: t("event." + o.finished_by) if o.finished_by else ""),
        ]
        return await export.csv_response(request, "orders", columns, rows, t, clock.now(),
                                         matching=await export.matching(qs, rows))
    return await show(request, "orders.html", status=400 if f.errors else 200, rows=rows, more=more, page_no=n,
                      states=[s.value for s in OrderStatus], args=request.args, base_query=base_query(request),
                      people=who_, titles=names, filter_errors=f.errors, named=f.named)


# --- audit log -----------------------------------------------------------------------------------
ACTOR_KINDS = ("user", "operator", "timer", "wechat", "system")
TARGET_KINDS = ("order", "task", "user", "withdrawal", "settings", "operator", "recharge")


async def _actor_filter(f: Filters, kind: str | None) -> Q | None:
    """`actor` is an id, a customer's nickname or an operator's username."""
    name = "actor" if f.text("actor") else "actor_id"  # actor_id: the older links
    value = f.text(name)
    if not value:
        return None
    uid = units.parse_id(value)
    if uid is not None:
        return Q(actor_id=uid)
    cond = Q(id__in=[])
    ops = await Operator.filter(username__icontains=value).values_list("id", flat=True) if kind in (None, "operator") else []
    users = await User.filter(nickname__icontains=value).limit(MATCH_MAX).values_list("id", flat=True) if kind in (None, "user") else []
    if ops:
        cond |= Q(actor_kind="operator", actor_id__in=list(ops))
    if users:
        cond |= Q(actor_kind="user", actor_id__in=list(users))
    if not ops and not users:
        f.errors[name] = f.t("Nobody is called “{v}”.", v=value)
    return cond


async def audit_names(rows) -> dict:
    """Names for the ids of audit rows: operators, customers, tasks (and each order's task)."""
    op_ids = {r.actor_id for r in rows if r.actor_kind == "operator" and r.actor_id} | {
        r.target_id for r in rows if r.target_kind == "operator" and r.target_id}
    user_ids = {r.actor_id for r in rows if r.actor_kind == "user"} | {r.target_id for r in rows if r.target_kind == "user"}
    order_ids = {r.target_id for r in rows if r.target_kind == "order" and r.target_id}
    wd_ids = {r.target_id for r in rows if r.target_kind == "withdrawal" and r.target_id}
    from models.withdrawals import Withdrawal

    order_task = dict(await Order.filter(id__in=order_ids).values_list("id", "task_id")) if order_ids else {}
    wd_user = dict(await Withdrawal.filter(id__in=wd_ids).values_list("id", "user_id")) if wd_ids else {}
    task_ids = {r.target_id for r in rows if r.target_kind == "task" and r.target_id} | set(order_task.values())
    return {
        "operators": {o.id: o.username for o in await Operator.filter(id__in=op_ids)} if op_ids else {},
        "people": await people(user_ids | set(wd_user.values())),
        "titles": await titles(task_ids),
        "order_task": order_task,
        "wd_user": wd_user,
    }


def audit_who(r, names: dict, t) -> str:
    if r.actor_kind == "operator":
        return f"{t('operator')} {names['operators'].get(r.actor_id, '#' + str(r.actor_id) if r.actor_id else '')}"
    if r.actor_kind == "user":
        return f"{t('user')} {name_of(names['people'], r.actor_id)}"
    return t(r.actor_kind)


def audit_target(r, names: dict, t) -> str:
    tid = r.target_id
    if r.target_kind == "user":
        return f"{t('user')} {name_of(names['people'], tid)}"
    if r.target_kind == "task":
        return f"{t('task')} #{tid} {names['titles'].get(tid, '')}".rstrip()
    if r.target_kind == "order":
        task = names["order_task"].get(tid)
        return f"{t('order')} #{tid} {names['titles'].get(task, '')}".rstrip()
    if r.target_kind == "withdrawal":
        return f"{t('withdrawal')} #{tid} {name_of(names['people'], names['wd_user'].get(tid))}".rstrip()
    if r.target_kind == "operator":
        return f"{t('operator')} {names['operators'].get(tid, '#' + str(tid) if tid else '')}"
    return f"{t(r.target_kind)}{' #' + str(tid) if tid else ''}"


@bp.get("/audit")
@page()
async def audit_log(request: Request, op):
    f = Filters(request)
    qs = AuditLog.all()
    kind = f.choice("actor_kind", ACTOR_KINDS)
    if kind:
        qs = qs.filter(actor_kind=kind)
    if (actors := await _actor_filter(f, kind)) is not None:
        qs = qs.filter(actors)
    if action := f.text("action"):
        qs = qs.filter(action__startswith=action)
    target = f.choice("target_kind", TARGET_KINDS)
    if target:
        qs = qs.filter(target_kind=target)
    target_text = f.text("target_id")
    if target_text:
        if (tid := units.parse_id(target_text)) is not None:
            qs = qs.filter(target_id=tid)
        elif target in (None, "user") and (who := await f.person("target_id")) is not None:  # a nickname: that customer
            qs = qs.filter(target_kind="user", target_id__in=who)
        elif target == "task" and (which := await f.task("target_id")) is not None:
            qs = qs.filter(target_id__in=which)
        else:
            f.errors["target_id"] = f.t("“{v}” is not a number.", v=target_text)
    qs = f.range(qs, "created_at")
    rows, more, n = ([], False, 1) if f.errors else await _rows(qs, request, AUDIT_PAGE)
    names = await audit_names(rows)
    t = i18n.translator(lang_of(request))
    if export.wants_csv(request) and not f.errors:
        columns = [
            ("#", lambda r: r.id), ("Time", lambda r: units.local(r.created_at)), ("Who", lambda r: audit_who(r, names, t)),
            ("What", lambda r: t("action." + r.action)), ("Target", lambda r: audit_target(r, names, t)),
            ("Reason", lambda r: r.reason or ""), ("Details", lambda r: " · ".join(wording.details(t, r.action, r.data))),
        ]
        return await export.csv_response(request, "audit", columns, rows, t, clock.now(),
                                         matching=await export.matching(qs, rows))
    return await show(request, "audit.html", status=400 if f.errors else 200, rows=rows, more=more, page_no=n, args=request.args,
                      names=names, who=lambda r: audit_who(r, names, t), target=lambda r: audit_target(r, names, t),
                      actor_kinds=ACTOR_KINDS, target_kinds=TARGET_KINDS, base_query=base_query(request), filter_errors=f.errors, named=f.named)


# --- customers -----------------------------------------------------------------------------------
async def balances_of(ids) -> dict[int, dict[str, int]]:
    """{user: {account kind: balance}} for many customers in one query."""
    ids = list({i for i in ids if i})
    out: dict[int, dict[str, int]] = {i: {"available": 0, "withdrawing": 0} for i in ids}
    if ids:
        for row in await Account.filter(user_id__in=ids).values("user_id", "kind", "balance_fen"):
            out[row["user_id"]][getattr(row["kind"], "value", row["kind"])] = row["balance_fen"]
    return out


async def twins(users_: list[User]) -> dict[int, User]:
    """The same person's account on the other end (the same WeChat unionid), by user id."""
    unionids = {u.unionid for u in users_ if u.unionid}
    if not unionids:
        return {}
    others = await User.filter(unionid__in=unionids)
    out: dict[int, User] = {}
    for u in users_:
        for o in others:
            if u.unionid and o.unionid == u.unionid and o.id != u.id:
                out[u.id] = o
    return out


async def _other_end(user: User) -> User | None:
    return (await twins([user])).get(user.id)


# For pages whose handlers are views.py's (the customer page): names fetched by the template itself.
ENV.globals["other_end"] = _other_end
ENV.globals["task_titles"] = titles


@bp.get("/customers")
@page()
async def customers(request: Request, op):
    f = Filters(request)
    q = f.text("q")
    qs = User.all()
    if q:  # any part of a nickname, an ID, invite code, openid (server/admin/search.py) or the unionid
        qs = qs.filter(search.customer_condition(q) | Q(unionid=q))
    if end := f.choice("end", {e.value for e in End}):
        qs = qs.filter(end=end)
    if banned := f.choice("banned", {"yes", "no"}):
        qs = qs.filter(banned=banned == "yes")
    if (inviters_of := await f.person("inviter")) is not None:  # the people they invited
        qs = qs.filter(inviter_id__in=inviters_of)
    if f.choice("balance", {"yes"}):
        holders = Account.filter(kind__in=[AccountKind.AVAILABLE, AccountKind.WITHDRAWING], balance_fen__gt=0, user_id__not_isnull=True)
        qs = qs.filter(id__in=Subquery(holders.values("user_id")))
    qs = f.range(qs, "created_at")
    rows, more, n = ([], False, 1) if f.errors else await _rows(qs, request, PAGE_SIZE)
    balances = await balances_of([u.id for u in rows])
    inviters = await people({u.inviter_id for u in rows})
    twin = await twins(rows)
    t = i18n.translator(lang_of(request))
    if export.wants_csv(request) and not f.errors:
        columns = [
            ("Customer #", lambda u: u.id), ("End", lambda u: t(u.end.value)), ("Nickname", lambda u: u.nickname),
            ("openid", lambda u: u.openid), ("Invite code", lambda u: u.invite_code),
            ("Inviter", lambda u: name_of(inviters, u.inviter_id)),
            ("Other end", lambda u: name_of({twin[u.id].id: twin[u.id]}, twin[u.id].id) if u.id in twin else ""),
            ("available", lambda u: units.yuan_plain(balances[u.id]["available"])),
            ("withdrawing", lambda u: units.yuan_plain(balances[u.id]["withdrawing"])),
            ("Joined", lambda u: units.local(u.created_at)), ("State", lambda u: t("banned") if u.banned else t("active")),
        ]
        return await export.csv_response(request, "customers", columns, rows, t, clock.now(),
                                         matching=await export.matching(qs, rows))
    return await show(request, "customers.html", status=400 if f.errors else 200, q=q, results=rows, more=more, page_no=n,
                      args=request.args, base_query=base_query(request), balances=balances, inviters=inviters, twins=twin,
                      ends=[e.value for e in End], filter_errors=f.errors, named=f.named)


i18n.ZH.update({  # the lists (issue 13)
    "Unknown value “{v}”.": "未知的取值“{v}”。", "“{v}” is not a date (YYYY-MM-DD).": "“{v}”不是日期（格式：年-月-日）。",
    "“{v}” is not a number.": "“{v}”不是数字。", "“{v}” is not an amount in yuan.": "“{v}”不是以元为单位的金额。",
    "No customer is called “{v}”.": "没有昵称包含“{v}”的客户。", "No task title contains “{v}”.": "没有标题包含“{v}”的任务。",
    "Nobody is called “{v}”.": "没有名为“{v}”的人。", "The filter was not applied:": "筛选条件有误，未执行：",
    "Export CSV": "导出 CSV", "Publisher (name or #)": "发单方（昵称或编号）", "Worker (name or #)": "接单方（昵称或编号）",
    "Task (title or #)": "任务（标题或编号）", "Title contains or #": "标题关键词或编号", "Who (name or #)": "操作人（名称或编号）",
    "Target (name or #)": "对象（名称或编号）", "Order #": "订单号", "Customer #": "客户号",
    "Other end": "另一端账号", "Balance": "余额", "Has a balance": "有余额", "yes": "是", "no": "否", "Banned": "封禁", "Previous": "上一页", "Next": "下一页",
    "{n} matches: {names}": "匹配 {n} 个：{names}",
    "Search by id, invite code, openid, unionid or nickname": "按编号、邀请码、openid、unionid 或昵称搜索",
})
