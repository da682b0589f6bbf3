"""The outbox: side effects written in the same transaction as the change that causes them.

A transition calls `emit()`; the rows become visible only if its transaction commits. After commit a
drainer (scheduler/outbox job) claims pending rows and delivers them: `push` rows to the live
WebSocket fan-out, `subscribe` rows as WeChat subscription messages. Nothing here talks to WeChat.

Each row has a stable id, which doubles as the event id a reconnecting client uses to ask for what
it missed; delivery is at-least-once from the drainer's side and deduplicated by that id.
"""

from __future__ import annotations

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
    """Outbox rows collected during one transition, written by a single INSERT at its end."""

    def __init__(self) -> None:
        self.rows: list[Outbox] = []

    def push(self, event: str, payload: dict[str, Any], user_id: int | None = None) -> None:
        self._add(Channel.PUSH, event, payload, user_id)

    def hall(self, event: str, payload: dict[str, Any]) -> None:
        self._add(Channel.PUSH, event, payload, None)

    def subscribe(self, event: str, payload: dict[str, Any], user_id: int) -> None:
        self._add(Channel.SUBSCRIBE, event, payload, user_id)

    def _add(self, channel: Channel, event: str, payload: dict[str, Any], user_id: int | None) -> None:
        now = clock.now()
        self.rows.append(
            Outbox(channel=channel, event=event, user_id=user_id, payload=payload, next_attempt_at=now, created_at=now)
        )

    async def write(self) -> None:
        if self.rows:
            await Outbox.bulk_create(self.rows)
            self.rows = []
