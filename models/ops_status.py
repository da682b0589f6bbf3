"""Small facts about the platform's background work that every node's /metrics must agree on:
when the ledger audit last ran and whether it was clean, when a scheduler last swept.

One row per key, overwritten in place (`INSERT ... ON CONFLICT DO UPDATE` on both PostgreSQL and
SQLite), so it never grows. A scheduler writes it; `server/observability.py` reads it at scrape time.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from tortoise import fields
from tortoise.models import Model

from models import clock, db

LEDGER_AUDIT = "ledger_audit"
SCHEDULER_HEARTBEAT = "scheduler_heartbeat"


class OpsStatus(Model):
    key = fields.CharField(max_length=64, primary_key=True)
    ok = fields.BooleanField(null=True)
    at = fields.DatetimeField()
    detail = fields.JSONField(null=True)

    class Meta:
        table = "ops_status"


async def put(key: str, ok: bool | None, detail: dict[str, Any] | None = None, at: dt.datetime | None = None) -> None:
    await db.execute(
        "INSERT INTO ops_status (key, ok, at, detail) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (key) DO UPDATE SET ok = excluded.ok, at = excluded.at, detail = excluded.detail",
        key, ok, at or clock.now(), None if detail is None else json.dumps(detail, ensure_ascii=False, default=str))


async def get(key: str) -> OpsStatus | None:
    return await OpsStatus.get_or_none(key=key)
