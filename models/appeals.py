"""Appeals beyond the operator's desk (issue 14 §2): the publisher's answer, and the rules that
decide appeals without an operator.

- The publisher may answer an appeal once (text and an optional image) while it waits for an
  operator; both sides and the operator see the whole exchange (reason, criterion, appeal, answer).
- Rules are rows of `appeal_rules`, one per kind, edited in the panel (audited, versioned):
  * `publisher_loss_rate`: a publisher who lost more than `loss_rate_bp` of their appeals decided
    in the last `window_days` (at least `min_appeals` of them) must answer a new appeal within
    `grace_s`, or the worker wins it automatically;
  * `worker_losing_streak`: a worker whose last `streak` decided appeals were all lost may not
    appeal for `cooldown_s` after the last loss.
- Every automatic decision is a row of `appeal_auto_decisions` naming the rule, its version and its
  parameters at the time, written in the same transaction as what it decided. An appeal's answer
  deadline is decided under the version that set it (kept on the order), whatever the rule became since.
"""

from __future__ import annotations

import datetime as dt
import logging
from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import audit, clock, db
from models.errors import Conflict, DomainError, InvalidInput, InvalidTransition, OrderNotFound
from models.inputs import clean_text
from models.outbox import Pending

log = logging.getLogger("market.appeals")


class RuleKind(StrEnum):
    PUBLISHER_LOSS_RATE = "publisher_loss_rate"  # a publisher who loses often must answer in time
    WORKER_LOSING_STREAK = "worker_losing_streak"  # a worker who lost N in a row pauses appealing


# Shipped parameters (disabled until an operator turns a rule on) and each one's allowed range.
RULE_DEFAULTS: dict[RuleKind, dict[str, int]] = {
    RuleKind.PUBLISHER_LOSS_RATE: {"loss_rate_bp": 5_000, "window_days": 90, "min_appeals": 5, "grace_s": 86_400},
    RuleKind.WORKER_LOSING_STREAK: {"streak": 3, "cooldown_s": 7 * 86_400},
}
PARAM_RANGES: dict[str, tuple[int, int]] = {
    "loss_rate_bp": (0, 10_000), "window_days": (1, 365), "min_appeals": (1, 10_000), "grace_s": (60, 30 * 86_400),
    "streak": (1, 100), "cooldown_s": (60, 365 * 86_400),
}


class AppealRule(Model):
    id = fields.IntField(primary_key=True)
    kind = fields.CharField(max_length=32, unique=True)
    enabled = fields.BooleanField(default=False)
    params = fields.JSONField()
    version = fields.IntField(default=1)
    updated_at = fields.DatetimeField()

    class Meta:
        table = "appeal_rules"


class AppealAutoDecision(Model):
    """One decision a rule made without an operator, and the rule as it stood then."""

    id = fields.BigIntField(primary_key=True)
    order_id = fields.BigIntField(db_index=True)
    user_id = fields.BigIntField(null=True)  # whom it went against
    rule_kind = fields.CharField(max_length=32)
    rule_version = fields.IntField()
    rule_params = fields.JSONField()
    outcome = fields.CharField(max_length=32)  # worker_wins | appeal_refused
    created_at = fields.DatetimeField()

    class Meta:
        table = "appeal_auto_decisions"


# --- the rules as configured ----------------------------------------------------------------------------
async def rules() -> dict[RuleKind, AppealRule]:
    """Both rules, created disabled with the shipped parameters the first time."""
    found = {r.kind: r for r in await AppealRule.all()}
    for i, kind in enumerate(RuleKind, start=1):
        if kind.value not in found:
            try:
                async with in_transaction():  # a savepoint inside a caller's transaction: losing the race keeps it usable
                    found[kind.value] = await AppealRule.create(id=i, kind=kind.value, enabled=False, params=dict(RULE_DEFAULTS[kind]),
                                                                updated_at=clock.now())
            except IntegrityError:  # another process created it first
                found[kind.value] = await AppealRule.get(kind=kind.value)
    return {RuleKind(k): v for k, v in found.items() if k in {x.value for x in RuleKind}}


async def update_rule(kind: str, *, enabled: bool, params: dict[str, Any], operator_id: int) -> AppealRule:
    """Change one rule (validated; versioned; the audit row keeps old and new)."""
    try:
        kind = RuleKind(kind)
    except ValueError:
        raise InvalidInput("Unknown rule.", zh="未知的规则。", field="kind") from None
    errors: dict[str, str] = {}
    clean: dict[str, int] = {}
    for name in RULE_DEFAULTS[kind]:
        value = params.get(name)
        low, high = PARAM_RANGES[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            errors[name] = f"must be a whole number from {low} to {high}"
        else:
            clean[name] = value
    if errors:
        raise InvalidInput("Some rule parameters are not valid.", zh="部分规则参数无效。", fields=errors)
    await rules()
    async with in_transaction():
        row = await AppealRule.get(kind=kind.value)
        n = await AppealRule.filter(id=row.id, version=row.version).update(
            enabled=enabled, params=clean, version=row.version + 1, updated_at=clock.now())
        if n != 1:
            raise Conflict("The rule was changed by someone else; reload and try again.", zh="规则已被他人修改，请刷新后重试。")
        await audit.record("operator", operator_id, "appeal_rule.update", "appeal_rule", row.id, data={
            "kind": kind.value, "old": {"enabled": row.enabled, **row.params}, "new": {"enabled": enabled, **clean},
            "version": row.version + 1})
    return await AppealRule.get(id=row.id)


def _record(rule: AppealRule, order_id: int, user_id: int | None, outcome: str):
    return AppealAutoDecision.create(order_id=order_id, user_id=user_id, rule_kind=rule.kind, rule_version=rule.version,
                                     rule_params=rule.params, outcome=outcome, created_at=clock.now())


# --- worker_losing_streak: checked when a worker appeals ----------------------------------------------
async def check_may_appeal(order_id: int, worker_id: int) -> None:
    """Raise AppealsPaused (after recording the decision) when the worker's last `streak` decided
    appeals were all lost and the cooldown since the last loss has not run out."""
    from models.errors import AppealsPaused

    rule = (await rules())[RuleKind.WORKER_LOSING_STREAK]
    if not rule.enabled:
        return
    streak, cooldown_s = rule.params["streak"], rule.params["cooldown_s"]
    last = await db.fetch(
        "SELECT finished_by, finished_at FROM orders WHERE worker_id = $1 AND appealed_at IS NOT NULL "
        "AND finished_by IN ('arbitrate_worker', 'arbitrate_publisher') ORDER BY finished_at DESC LIMIT $2",
        worker_id, streak,
    )
    if len(last) < streak or any(r["finished_by"] != "arbitrate_publisher" for r in last):
        return
    until = clock.after(_aware(last[0]["finished_at"]), cooldown_s)
    if until <= clock.now():
        return
    async with in_transaction():
        await _record(rule, order_id, worker_id, "appeal_refused")
        await audit.record("system", None, "appeal_rule.refuse_appeal", "order", order_id,
                           data={"rule": rule.kind, "version": rule.version, "params": rule.params, "until": clock.iso_us(until)})
    raise AppealsPaused(streak=streak, until=clock.iso_us(until))


def _aware(value) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


# --- publisher_loss_rate: sets the answer deadline of a new appeal --------------------------------------
async def answer_deadline(publisher_id: int, now: dt.datetime) -> tuple[dt.datetime, AppealRule] | None:
    """When the rule applies to this publisher: the moment a new appeal is decided for the worker
    unless the publisher answers, and the rule. Runs inside the appeal's transaction."""
    rule = (await rules())[RuleKind.PUBLISHER_LOSS_RATE]
    if not rule.enabled:
        return None
    p = rule.params
    since = now - dt.timedelta(days=p["window_days"])
    row = await db.fetch_one(
        "SELECT COUNT(*) AS n, SUM(CASE WHEN finished_by = 'arbitrate_worker' THEN 1 ELSE 0 END) AS lost FROM orders "
        "WHERE publisher_id = $1 AND appealed_at >= $2 AND finished_by IN ('arbitrate_worker', 'arbitrate_publisher')",
        publisher_id, since,
    )
    n, lost = int(row["n"] or 0), int(row["lost"] or 0)
    if n < p["min_appeals"] or lost * 10_000 <= p["loss_rate_bp"] * n:
        return None
    return clock.after(now, p["grace_s"]), rule


# --- the publisher's answer ----------------------------------------------------------------------------
async def answer(order_id: int, publisher_id: int, *, text: str, image: str | None = None):
    """The publisher answers an appeal, once, before it is decided (and before a rule's deadline)."""
    from models.orders import REASON_MAX, IMAGE_REF_MAX, Order, OrderStatus

    text = clean_text(text, "text", REASON_MAX, required=True, multiline=True)
    image = clean_text(image, "image", IMAGE_REF_MAX, required=False)
    now = clock.now()
    async with in_transaction():
        n = await Order.filter(id=order_id, publisher_id=publisher_id, status=OrderStatus.APPEALING, answered_at=None).filter(
            Q(answer_due_at=None) | Q(answer_due_at__gt=now)).update(
            answer_text=text, answer_image=image, answered_at=now, answer_due_at=None)
        if n == 1:
            await audit.record("user", publisher_id, "order.appeal_answer", "order", order_id,
                               data={"image": image is not None})
            # Both phones show the exchange live: the worker's, and the publisher's others.
            row = await Order.get(id=order_id)
            out = Pending()
            answered = {"order_id": order_id, "task_id": row.task_id, "answered_at": clock.iso_us(now)}
            out.push("order.answered", answered, row.worker_id)
            out.push("order.answered", answered, row.publisher_id)
            await out.write(now)
    order = await Order.get_or_none(id=order_id)
    if order is None or order.publisher_id != publisher_id:
        raise OrderNotFound()
    if n != 1:
        if order.status == OrderStatus.APPEALING and order.answered_at is None:
            await decide_unanswered_one(order_id)  # the rule's deadline passed: it decides now
            order = await Order.get(id=order_id)
        raise InvalidTransition("The order is {status}; the appeal can no longer be answered.", zh="订单当前为{status}，已不能回应申诉。",
                                status=order.status.value)
    return order


# --- the sweep: appeals whose answer deadline passed -------------------------------------------------
async def decide_unanswered_one(order_id: int) -> bool:
    """The worker wins an appeal the publisher did not answer by the rule's deadline (flow 4),
    decided and recorded under the rule's version that set the deadline (not a later one)."""
    from models import orders as O

    order = await O.Order.get_or_none(id=order_id)
    now = clock.now()
    if order is None or order.answer_due_at is None or order.answer_due_at > now or order.answered_at is not None:
        return False
    rule = (await rules())[RuleKind.PUBLISHER_LOSS_RATE]
    if order.answer_rule_version is not None:  # the rule as it stood when it set the deadline decides
        rule = AppealRule(kind=rule.kind, version=order.answer_rule_version, params=order.answer_rule_params)
    complete = O._completed(O.E.ARBITRATE_WORKER)

    async def effects(o, out):
        await _record(rule, o.id, o.publisher_id, "worker_wins")
        return await complete(o, out)

    note = "自动规则：发单方未在期限内回应申诉"  # people read it (apps, messages); the rule is in the audit data
    try:
        await O._act(order, O.E.ARBITRATE_WORKER, ("system", None),
                     {"decision_note": note, "finished_at": now, "finished_by": O.E.ARBITRATE_WORKER.value},
                     {"answer_due_at__lte": now, "answered_at": None}, effects,
                     audit_data={"rule": rule.kind, "rule_version": rule.version, "params": rule.params})
    except DomainError:  # an operator, the publisher's answer or another sweeper got there first
        return False
    except Exception:  # noqa: BLE001 - a fault, not a lost race: say it; the next sweep tries again
        log.exception("automatic appeal decision of order %s failed", order_id)
        return False
    return True


async def sweep_unanswered(batch: int = 100) -> int:
    """Decide the appeals whose answer deadline passed (partial index orders_answer_due)."""
    rows = await db.fetch(
        "SELECT id FROM orders WHERE status = 'appealing' AND answered_at IS NULL AND answer_due_at <= $1 "
        "ORDER BY answer_due_at LIMIT $2", clock.now(), batch,
    )
    return sum([1 for r in rows if await decide_unanswered_one(r["id"])])
