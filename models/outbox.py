"""The outbox: side effects written in the same transaction as the change that causes them.

A transition calls `emit()`; the rows become visible only if its transaction commits. After commit a
drainer (scheduler/outbox job) claims pending rows and delivers them: `push` rows to the live
WebSocket fan-out, `subscribe` rows as WeChat subscription messages. Nothing here talks to WeChat.

The types and payloads of the live events are declared in `models/events.py`.

Each row has a stable id, the event id clients deduplicate by. A push row also gets a `seq` after it
commits: its place in the delivery log, which is what a reconnecting client resumes from
(server/push.py, docs/push.md). Delivery to the bus is at least once.
"""

from __future__ import annotations

import datetime as dt
import json
from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.models import Model

from models import clock

# One encoder for every payload: `json.dumps` with options builds a new JSONEncoder per call, which
# cost more than the encoding itself for our small payloads (a sweep batch encodes over a thousand).
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


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
    request_id = fields.CharField(max_length=64, null=True)  # the HTTP request that wrote it (server/logs.py)
    # A push row's place in the delivery log, stamped after commit in commit order (server/push.py;
    # migration 0013). Null until stamped, and always for subscription rows.
    seq = fields.BigIntField(null=True)

    class Meta:
        table = "outbox"
        indexes = (("user_id", "id"),)  # + partial index on pending rows (migration 0002)


def order_changed(order_id: int, task_id: int, status: str, event: str, deadline_at: dt.datetime | None) -> dict[str, Any]:
    """The `order.changed` payload (models/events.py OrderChanged)."""
    return {"order_id": order_id, "task_id": task_id, "status": status, "event": event,
            "deadline_at": clock.iso_us(deadline_at) if deadline_at else None}


def hall_task_removed(task_id: int, status: str) -> dict[str, Any]:
    """The `hall.task_removed` payload: `status` says why it left the hall (full, expired, cancelled)."""
    return {"task_id": task_id, "slots_untaken": 0, "status": status}


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

    def wallet_changed(self, user_id: int, reason: StrEnum, amount_fen: int, *, task_id: int | None = None,
                       order_id: int | None = None, recharge_id: int | None = None, withdrawal_id: int | None = None) -> None:
        """The user's available balance moved by `amount_fen` through a ledger entry of kind `reason`."""
        self.push("wallet.changed", {
            "reason": reason.value, "amount_fen": amount_fen, "task_id": task_id, "order_id": order_id,
            "recharge_id": recharge_id, "withdrawal_id": withdrawal_id,
        }, user_id)

    def _payloads(self) -> list[str]:
        """The rows' payloads as JSON, each payload object encoded once (a transition often sends
        the same `order.changed` to its worker and its publisher)."""
        seen: dict[int, str] = {}
        out = []
        for row in self.rows:
            payload = row[3]
            text = seen.get(id(payload))
            if text is None:
                text = seen[id(payload)] = _encode(payload)
            out.append(text)
        return out

    async def write(self, at: dt.datetime | None = None, *, ids: bool = True) -> list[int]:
        """Insert the rows, created (and first due) `at` (default: now). Returns the ids of the push
        rows, which the caller may hand to the relay (`server.push.Relay.poke`); with `ids=False`
        (a sweep batch: nobody to poke, and a thousand rows) it returns nothing (PostgreSQL)."""
        if not self.rows:
            return []
        from models import db
        from server.logs import request_id

        now = at or clock.now()
        rid = request_id.get()
        if db.is_postgres():
            # Arrays, one statement text for any number of rows: prepared once per connection (a
            # multi-row VALUES list is a new statement for every row count, parsed and planned again;
            # a sweep batch writes hundreds of rows).
            sql = ("INSERT INTO outbox (channel, event, user_id, payload, status, attempts, next_attempt_at, created_at, request_id) "
                   "SELECT c, e, u, p::jsonb, 'pending', 0, $5, $5, $6 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) "
                   "AS x(c, e, u, p)")
            args = ([r[0] for r in self.rows], [r[1] for r in self.rows], [r[2] for r in self.rows], self._payloads(), now, rid)
            if not ids:
                await db.execute(sql, *args)
                self.rows = []
                return []
            rows = await db.fetch(sql + " RETURNING id, channel", *args)
            self.rows = []
            return sorted(r["id"] for r in rows if r["channel"] == Channel.PUSH.value)
        values: list[Any] = []
        marks: list[str] = []
        for channel, event, user_id, payload in self.rows:
            n = len(values)
            marks.append(f"(${n + 1}, ${n + 2}, ${n + 3}, ${n + 4}, 'pending', 0, ${n + 5}, ${n + 5}, ${n + 6})")
            values += [channel, event, user_id, _encode(payload), now, rid]
        rows = await db.fetch(
            "INSERT INTO outbox (channel, event, user_id, payload, status, attempts, next_attempt_at, created_at, request_id) VALUES "
            + ", ".join(marks) + " RETURNING id, channel",
            *values,
        )
        self.rows = []
        return sorted(r["id"] for r in rows if r["channel"] == Channel.PUSH.value)
