"""The audit log: who (a user, an operator, a timer, WeChat, the system) did what to which row.

Every transition and every operator action writes one row in the same transaction as the change it
describes, so the log never claims something that did not happen. An order's history is its audit
rows read in order.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from tortoise import fields
from tortoise.models import Model

from models import clock

ACTOR_KINDS = ("user", "operator", "timer", "wechat", "system")


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

    await db.execute(
        "INSERT INTO audit_log (actor_kind, actor_id, action, target_kind, target_id, data, reason, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        actor_kind, actor_id, action, target_kind, target_id,
        None if data is None else json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str),
        reason, at or clock.now(),
    )


async def history(target_kind: str, target_id: int) -> list[AuditLog]:
    return await AuditLog.filter(target_kind=target_kind, target_id=target_id).order_by("id")
