"""The compliance gate at publish (issue 14 §4): prohibited words, WeChat's content security, and
the operator's queue of held tasks.

WeChat bans Mini Programs for the tasks they carry (paid registration or unblocking assistance,
paid votes, induced sharing or following, gambling, adult content, investment schemes). A task is
screened before it reaches the hall:

1. the prohibited terms (`compliance_terms`, edited in the panel; shipped defaults below) are
   matched on its title, instructions and attachment text, after normalising (NFKC, lower case,
   no spaces or punctuation: "辅 助-注册" matches 辅助注册). A match refuses the publish
   (`prohibited_content`) or, with the setting `compliance_hold_on_match` = 1, holds the task;
2. WeChat's verdicts (msgSecCheck on the text, mediaCheckAsync on an image) come from the WeChat
   layer; anything but "pass" holds the task, and an image holds it until its verdict arrives.

A held task has its money in escrow but is never in the hall and cannot be taken (the take only
takes `open` tasks). An operator approves it (it opens, its take window starting then) or refuses
it with a reason (its escrow goes back to the publisher). Each is one conditional UPDATE, with its
ledger entry, outbox and audit rows in the same transaction.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import db
from models.errors import InvalidInput, ProhibitedContent, TaskNotHeld


class Category(StrEnum):
    ASSISTED_REGISTRATION = "assisted_registration"  # paid registration / unblocking / scan verification
    PAID_VOTES = "paid_votes"  # paid votes, likes and rankings
    INDUCED_SHARING = "induced_sharing"  # induced sharing or following
    GAMBLING = "gambling"
    ADULT = "adult"
    INVESTMENT = "investment"  # investment schemes, pyramid selling
    OTHER = "other"  # added by an operator


CATEGORY_ZH = {
    "assisted_registration": "辅助注册/解封/扫码验证", "paid_votes": "有偿投票/刷票", "induced_sharing": "诱导分享/关注",
    "gambling": "赌博", "adult": "色情低俗", "investment": "投资理财/传销", "other": "其他",
}

# Shipped defaults, from WeChat's published operating rules for Mini Programs (《微信小程序平台运营规范》:
# 诱导分享/诱导关注, 辅助注册/解封, 投票, 赌博, 色情, 金融/传销). Phrases, not single common words,
# so ordinary tasks are not caught; operators add or disable terms in the panel.
DEFAULT_TERMS: dict[Category, tuple[str, ...]] = {
    Category.ASSISTED_REGISTRATION: (
        "辅助注册", "协助注册", "代注册", "帮忙注册", "辅助解封", "协助解封", "帮忙解封", "解封微信", "微信解封",
        "辅助验证", "好友辅助", "扫码验证", "扫脸验证", "接码", "代实名", "辅助实名", "租号", "买号", "卖号",
    ),
    Category.PAID_VOTES: ("刷票", "拉票", "有偿投票", "帮忙投票", "投票助力", "点赞投票", "刷赞", "刷榜", "刷单"),
    Category.INDUCED_SHARING: (
        "诱导分享", "分享到朋友圈", "转发朋友圈", "转发到朋友圈", "分享到微信群", "转发到群", "集赞", "集齐点赞",
        "关注领红包", "关注送", "砍价助力", "助力砍价",
    ),
    Category.GAMBLING: ("赌博", "博彩", "赌场", "百家乐", "六合彩", "时时彩", "老虎机", "下注", "网赌"),
    Category.ADULT: ("色情", "裸聊", "约炮", "黄片", "成人视频", "援交", "一夜情"),
    Category.INVESTMENT: ("传销", "资金盘", "拉人头", "高额回报", "保本理财", "稳赚不赔", "日息", "虚拟币投资", "炒币带单"),
}
TERM_MAX = 64
# Dropped before matching: spaces, punctuation and symbols, zero-width characters.
_DROP = {"Z", "P", "S", "C"}


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in _DROP)


class ComplianceTerm(Model):
    id = fields.BigIntField(primary_key=True)
    category = fields.CharField(max_length=32)
    term = fields.CharField(max_length=TERM_MAX, unique=True)
    enabled = fields.BooleanField(default=True)
    shipped = fields.BooleanField(default=False)  # one of DEFAULT_TERMS
    updated_at = fields.DatetimeField()

    class Meta:
        table = "compliance_terms"


class ContentCheck(Model):
    """One WeChat content security check of a task (mediaCheckAsync answers later, by trace_id)."""

    id = fields.BigIntField(primary_key=True)
    task_id = fields.BigIntField(db_index=True)
    kind = fields.CharField(max_length=8)  # text | image
    trace_id = fields.CharField(max_length=64, null=True, unique=True)
    suggest = fields.CharField(max_length=16)  # pending | pass | review | risky | error
    label = fields.IntField(null=True)
    created_at = fields.DatetimeField()
    decided_at = fields.DatetimeField(null=True)

    class Meta:
        table = "content_checks"


@dataclass(frozen=True)
class Match:
    field: str
    term: str
    category: str


# --- the prohibited terms ----------------------------------------------------------------------------
async def ensure_default_terms() -> None:
    """Insert the shipped terms the first time (an operator disables a term; nothing is deleted)."""
    from models import clock

    if await ComplianceTerm.exists():
        return
    now = clock.now()
    rows = [ComplianceTerm(category=cat.value, term=t, shipped=True, updated_at=now) for cat, terms in DEFAULT_TERMS.items() for t in terms]
    try:
        await ComplianceTerm.bulk_create(rows)
    except IntegrityError:
        pass  # another process seeded them first


async def enabled_terms() -> list[tuple[str, str, str]]:
    """(normalised term, term, category) of every enabled term."""
    await ensure_default_terms()
    rows = await ComplianceTerm.filter(enabled=True).order_by("id").values_list("term", "category")
    return [(normalize(term), term, category) for term, category in rows if normalize(term)]


async def screen(texts: dict[str, str | None]) -> list[Match]:
    """Every enabled term found in the texts ({field: text}), in field order."""
    terms = await enabled_terms()
    found: list[Match] = []
    for field_name, text in texts.items():
        if not text:
            continue
        flat = normalize(text)
        found += [Match(field_name, term, category) for key, term, category in terms if key in flat]
    return found


def refusal(match: Match) -> ProhibitedContent:
    return ProhibitedContent(field=match.field, term=match.term, category=match.category,
                             category_zh=CATEGORY_ZH.get(match.category, match.category))


def hold_reason(matches: list[Match], verdicts: list[str]) -> str | None:
    """Why a task must wait for an operator (shown to operators), or None."""
    parts = [f"term:{m.term}({m.category})@{m.field}" for m in matches[:5]] + list(verdicts)
    return "; ".join(parts)[:255] if parts else None


async def add_term(term: str, category: str, *, operator_id: int) -> ComplianceTerm:
    from models import audit, clock
    from models.inputs import clean_text

    term = clean_text(term, "term", TERM_MAX, required=True)
    if not normalize(term):
        raise InvalidInput("The term must contain letters or characters.", zh="禁用词必须包含文字。", field="term")
    if category not in {c.value for c in Category}:
        raise InvalidInput("Unknown category.", zh="未知的类别。", field="category")
    await ensure_default_terms()
    async with in_transaction():
        existing = await ComplianceTerm.get_or_none(term=term)
        if existing is not None:
            raise InvalidInput("This term is already on the list.", zh="该词已在列表中。", field="term")
        row = await ComplianceTerm.create(term=term, category=category, updated_at=clock.now())
        await audit.record("operator", operator_id, "compliance.term_add", "compliance_term", row.id,
                           data={"term": term, "category": category})
    return row


async def set_term_enabled(term_id: int, enabled: bool, *, operator_id: int) -> bool:
    """Switch a term on or off (audited when it changed); False when there is no such term."""
    from models import audit, clock

    if not await ComplianceTerm.exists(id=term_id):
        return False
    async with in_transaction():
        n = await ComplianceTerm.filter(id=term_id, enabled=not enabled).update(enabled=enabled, updated_at=clock.now())
        if n == 1:
            await audit.record("operator", operator_id, "compliance.term_enable" if enabled else "compliance.term_disable",
                               "compliance_term", term_id)
    return True


# --- held tasks ----------------------------------------------------------------------------------------
class HeldEvent(StrEnum):
    APPROVE = "approve"  # an operator (or WeChat's passing image verdict) lets the task into the hall
    REFUSE = "refuse"  # an operator refuses it: its escrow goes back to the publisher


# The task's states before the hall (models/tasks.py TASK_TRANSITIONS holds the rest): publishing
# makes a task `held` instead of `open` when the gate stops it.
HELD_TRANSITIONS: dict[tuple[str, HeldEvent], str] = {
    ("held", HeldEvent.APPROVE): "open",
    ("held", HeldEvent.REFUSE): "refused",
}
REFUSE_REASON_MAX = 500


async def approve_held(task_id: int, *, operator_id: int | None, actor_kind: str = "operator", note: str | None = None):
    """held → open: the take window starts now (the task never was in the hall)."""
    from models import audit, clock
    from models.outbox import Pending
    from models.tasks import Task, task_payload

    now = clock.now()
    async with in_transaction():
        task = await Task.get_or_none(id=task_id)  # take_window_s never changes
        n = 0 if task is None else await Task.filter(id=task_id, status="held").update(
            status="open", hold_reason=None, take_deadline_at=clock.after(now, task.take_window_s))
        if n != 1:
            raise await _not_held(task_id)
        task = await Task.get(id=task_id)
        out = Pending()
        out.hall("hall.task_published", task_payload(task))
        out.push("task.published", task_payload(task) | {"held_fen": task.quantity * task.slot_value_fen}, task.publisher_id)
        await out.write()
        await audit.record(actor_kind, operator_id, "task.compliance_approve", "task", task_id,
                           data={"from": "held", "to": "open"}, reason=note)
    return task


async def refuse_held(task_id: int, *, operator_id: int, reason: str):
    """held → refused: every slot's P+F goes back to the publisher, in the same transaction."""
    from models import audit, clock, ledger
    from models.inputs import clean_text
    from models.ledger import AccountKind, EntryKind, Leg
    from models.outbox import Pending
    from models.tasks import Task

    reason = clean_text(reason, "reason", REFUSE_REASON_MAX, required=True, multiline=True)
    now = clock.now()
    async with in_transaction():
        n = await Task.filter(id=task_id, status="held").update(
            status="refused", closed_at=now, slots_refunded=F("slots_refunded") + F("slots_untaken"),
            last_refund_slots=F("slots_untaken"), slots_untaken=0, hold_reason=reason[:255])
        if n != 1:
            raise await _not_held(task_id)
        task = await Task.get(id=task_id)
        amount = task.last_refund_slots * task.slot_value_fen  # the slots this refusal took back
        await ledger.post(
            f"task:{task_id}:refuse", EntryKind.SLOT_REFUND,
            [Leg(ledger.platform_account(AccountKind.ESCROW, task_id), -amount), Leg(ledger.user_account(task.publisher_id), amount)],
            task_id=task_id, memo="refused by the compliance review",
        )
        out = Pending()
        out.wallet_changed(task.publisher_id, EntryKind.SLOT_REFUND, amount, task_id=task_id)
        out.push("task.refused", {"task_id": task_id, "title": task.title, "reason": reason, "refund_fen": amount}, task.publisher_id)
        await out.write()
        await audit.record("operator", operator_id, "task.compliance_refuse", "task", task_id,
                           data={"from": "held", "to": "refused", "refund_fen": amount}, reason=reason)
    return task


async def _not_held(task_id: int):
    from models.errors import TaskNotFound
    from models.tasks import Task

    task = await Task.get_or_none(id=task_id)
    if task is None:
        return TaskNotFound()
    return TaskNotHeld(status=task.status.value)


async def held_queue(limit: int = 100):
    from models.tasks import Task

    return await Task.filter(status="held").order_by("held_at", "id").limit(limit)


async def hold_open(task_id: int, reason: str, *, actor_kind: str = "wechat") -> bool:
    """open → held: WeChat flagged an open task (an image verdict arrives after publishing). It
    leaves the hall at once; orders already taken carry on. False when it was not open any more."""
    from models import audit, clock
    from models.outbox import Pending, hall_task_removed
    from models.tasks import Task

    async with in_transaction():
        n = await Task.filter(id=task_id, status="open").update(status="held", hold_reason=reason[:255], held_at=clock.now())
        if n != 1:
            return False
        task = await Task.get(id=task_id)
        out = Pending()
        out.hall("hall.task_removed", hall_task_removed(task_id, "held"))
        out.push("task.held", {"task_id": task_id, "title": task.title,
                               "held_fen": (task.slots_untaken + task.orders_live) * task.slot_value_fen}, task.publisher_id)
        await out.write()
        await audit.record(actor_kind, None, "task.compliance_hold", "task", task_id, data={"from": "open", "to": "held"}, reason=reason)
    return True


async def record_check(task_id: int, kind: str, suggest: str, *, trace_id: str | None = None, label: int | None = None) -> ContentCheck:
    from models import clock

    now = clock.now()
    return await ContentCheck.create(task_id=task_id, kind=kind, trace_id=trace_id or None, suggest=suggest, label=label,
                                     created_at=now, decided_at=None if suggest == "pending" else now)


async def media_verdict(trace_id: str, suggest: str, label: int | None) -> ContentCheck | None:
    """WeChat's verdict on an image: recorded once (a repeated push changes nothing); a flagged image
    holds its task. None for an unknown trace_id."""
    from models import clock

    check = await ContentCheck.get_or_none(trace_id=trace_id)
    if check is None:
        return None
    async with in_transaction():  # the verdict and the hold it makes, or neither (a repeat finds it pending)
        n = await ContentCheck.filter(id=check.id, suggest="pending").update(suggest=suggest, label=label, decided_at=clock.now())
        if n == 1 and suggest != "pass":
            await hold_open(check.task_id, f"wechat:image:{suggest}:{label}")
    return await ContentCheck.get(id=check.id)
