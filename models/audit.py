"""The audit log: who (a user, an operator, a timer, WeChat, the system) did what to which row.

Every transition and every operator action writes one row in the same transaction as the change it
describes, so the log never claims something that did not happen. An order's history is its audit
rows read in order.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from tortoise import fields
from tortoise.models import Model

from models import clock

ACTOR_KINDS = ("user", "operator", "timer", "wechat", "system")
# Rows about these are state transitions: counted in the metrics by action and by who (issue 15).
TRANSITION_TARGETS = frozenset({"order", "task", "withdrawal", "recharge"})

log = logging.getLogger("market.transitions")


class AuditLog(Model):
    id = fields.BigIntField(primary_key=True)
    actor_kind = fields.CharField(max_length=16)
    actor_id = fields.BigIntField(null=True)
    action = fields.CharField(max_length=64)
    target_kind = fields.CharField(max_length=32)
    target_id = fields.BigIntField(null=True)
    data = fields.JSONField(null=True)
    reason = fields.TextField(null=True)
    created_at = fields.DatetimeField()
    request_id = fields.CharField(max_length=64, null=True)  # the HTTP request that caused it (server/logs.py)

    class Meta:
        table = "audit_log"
        indexes = (("target_kind", "target_id"), ("actor_kind", "actor_id"))


async def record(
    actor_kind: str,
    actor_id: int | None,
    action: str,
    target_kind: str,
    target_id: int | None,
    *,
    data: dict[str, Any] | None = None,
    reason: str | None = None,
    at: dt.datetime | None = None,
) -> None:
    # One hand-written INSERT: every transition writes a row, and a model object costs more CPU.
    from models import db
    from server import metrics
    from server.logs import request_id

    await db.execute(
        "INSERT INTO audit_log (actor_kind, actor_id, action, target_kind, target_id, data, reason, created_at, request_id) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        actor_kind, actor_id, action, target_kind, target_id,
        None if data is None else json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str),
        reason, at or clock.now(), request_id.get(),
    )
    # Every transition passes here, so this is where the metrics count them and the log shows them
    # (under the request id of whoever caused it). Inside the caller's transaction: a rollback after
    # this point (an error, logged as such) leaves one count and one line too many.
    if target_kind in TRANSITION_TARGETS:
        metrics.transition(action, actor_kind)
        log.info("%s %s %s by %s %s", action, target_kind, target_id, actor_kind, actor_id if actor_id is not None else "")


async def history(target_kind: str, target_id: int) -> list[AuditLog]:
    return await AuditLog.filter(target_kind=target_kind, target_id=target_id).order_by("id")
