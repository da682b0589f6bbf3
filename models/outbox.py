"""The outbox: side effects written in the same transaction as the change that causes them.

A transition calls `emit()`; the rows become visible only if its transaction commits. After commit a
drainer (scheduler/outbox job) claims pending rows and delivers them: `push` rows to the live
WebSocket fan-out, `subscribe` rows as WeChat subscription messages. Nothing here talks to WeChat.

Each row has a stable id, which doubles as the event id a reconnecting client uses to ask for what
it missed; delivery is at-least-once from the drainer's side and deduplicated by that id.
"""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from models import clock


class Channel(StrEnum):
    PUSH = "push"  # live WebSocket event (hall when user_id is null, else that user's)
    SUBSCRIBE = "subscribe"  # WeChat subscription message to user_id


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for (another) delivery attempt at next_attempt_at
    SENT = "sent"  # delivered
    REFUSED = "refused"  # the user has not subscribed to the template (WeChat 43101): not retried
    FAILED = "failed"  # gave up after the retry cap; visible to operators


class Outbox(Model):
    id = fields.BigIntField(primary_key=True)
    channel = fields.CharEnumField(Channel, max_length=16)
    event = fields.CharField(max_length=48)
    user_id = fields.BigIntField(null=True)  # recipient; null = everyone in the task hall
    payload = fields.JSONField()
    status = fields.CharEnumField(OutboxStatus, max_length=16, default=OutboxStatus.PENDING)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField()
    last_error = fields.CharField(max_length=255, null=True)
    created_at = fields.DatetimeField()
    sent_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox"
        indexes = (("user_id", "id"),)  # + partial index on pending rows (migration 0002)


class Pending:
    """Outbox rows collected during one transition, written by a single INSERT at its end.

    Plain tuples and one hand-written multi-row INSERT: building a Tortoise model object per row cost
    more CPU than the rest of a take (measured with cProfile on the HTTP take path).
    """

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, int | None, dict[str, Any]]] = []

    def push(self, event: str, payload: dict[str, Any], user_id: int | None = None) -> None:
        self.rows.append((Channel.PUSH.value, event, user_id, payload))

    def hall(self, event: str, payload: dict[str, Any]) -> None:
        self.rows.append((Channel.PUSH.value, event, None, payload))

    def subscribe(self, event: str, payload: dict[str, Any], user_id: int) -> None:
        self.rows.append((Channel.SUBSCRIBE.value, event, user_id, payload))

    async def write(self, at: dt.datetime | None = None) -> list[int]:
        """Insert the rows, created (and first due) `at` (default: now). Returns the ids of the push
        rows, which the caller may hand to the relay (`server.push.Relay.poke`)."""
        if not self.rows:
            return []
        from models import db

        now = at or clock.now()
        values: list[Any] = []
        marks: list[str] = []
        for channel, event, user_id, payload in self.rows:
            n = len(values)
            marks.append(f"(${n + 1}, ${n + 2}, ${n + 3}, ${n + 4}, 'pending', 0, ${n + 5}, ${n + 5})")
            values += [channel, event, user_id, json.dumps(payload, separators=(",", ":"), ensure_ascii=False), now]
        rows = await db.fetch(
            "INSERT INTO outbox (channel, event, user_id, payload, status, attempts, next_attempt_at, created_at) VALUES "
            + ", ".join(marks) + " RETURNING id, channel",
            *values,
        )
        self.rows = []
        return sorted(r["id"] for r in rows if r["channel"] == Channel.PUSH.value)
