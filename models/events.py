"""Every live event the server pushes on the WebSocket: its type, who receives it, and its payload,
declared once here.

From these declarations come `docs/events.json` (a JSON Schema of the event envelope and each
payload, `python -m server events`), the event table in docs/api.md and the Mini Programs' types.
The tests validate every event the server emits against them, so the payloads cannot drift from
what is documented. Emitters build payloads with the small helpers at the bottom where one event has
several emitters (`models/outbox.py`: `Pending.wallet_changed`, `order_changed`, `hall_task_removed`),
so they agree.

Conventions of every payload: money is integer fen (`*_fen`), times are UTC with a `Z`
(`2026-11-25T18:52:42.162808Z`), every key is always present (null when it does not apply).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from models.ledger import EntryKind
from models.orders import OrderEvent, OrderStatus
from models.withdrawals import WithdrawalStatus

TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"  # UTC, with a Z
Timestamp = Annotated[str, Field(pattern=TIME_PATTERN, json_schema_extra={"format": "date-time"},
                                 examples=["2026-11-25T10:52:42.162808Z"])]
Fen = Annotated[int, Field(description="integer fen (1 yuan = 100 fen)")]
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, use_enum_values=True)


# --- the task hall (every worker-end socket) ------------------------------------------------------
class HallTaskPublished(Payload):
    """A new task in the hall."""

    task_id: Id
    title: str
    unit_price_fen: Fen
    slots_untaken: int
    status: Literal["open"]
    take_deadline_at: Timestamp


class HallTaskChanged(Payload):
    """A task's untaken slots changed and it is still open (a slot taken, or one given back by an abandon)."""

    task_id: Id
    slots_untaken: int
    status: Literal["open"]


class HallTaskRemoved(Payload):
    """The task left the hall: `status` says why (full: the last slot was taken; expired; cancelled;
    held: WeChat's content security flagged it for an operator)."""

    task_id: Id
    slots_untaken: int
    status: Literal["full", "expired", "cancelled", "held"]


# --- the publisher's tasks ------------------------------------------------------------------------
class TaskPublished(HallTaskPublished):
    """My task was published; `held_fen` = quantity × (unit price + fee) moved into escrow."""

    held_fen: Fen


class TaskClosedSlots(Payload):
    """My task's untaken slots were closed and refunded (`refund_fen` back to my available balance)."""

    task_id: Id
    title: str
    slots_refunded: int
    refund_fen: Fen


class TaskHeld(Payload):
    """My task was stopped by the compliance gate: its money stays in escrow, it is not in the hall
    until an operator approves it (task.published) or refuses it (task.refused, money back)."""

    task_id: Id
    title: str
    held_fen: Fen


class TaskRefused(Payload):
    """An operator refused my held task: `refund_fen` is back in my available balance."""

    task_id: Id
    title: str
    reason: str
    refund_fen: Fen


# --- orders ----------------------------------------------------------------------------------------
class OrderTaken(Payload):
    """A worker took a slot of my task."""

    order_id: Id
    task_id: Id
    title: str
    taken_at: Timestamp


class OrderChanged(Payload):
    """An order moved to `status` through `event` (`take` for a new order). `deadline_at` is the
    deadline now running for it (submit, review or appeal), null when none runs."""

    order_id: Id
    task_id: Id
    status: OrderStatus
    event: Literal[tuple(["take", *[e.value for e in OrderEvent]])]  # type: ignore[valid-type]
    deadline_at: Optional[Timestamp]


class OrderAnswered(Payload):
    """The publisher answered the worker's appeal; the order is still `appealing`. Read the order
    for the answer (`answer_text`, `answer_image_url`)."""

    order_id: Id
    task_id: Id
    answered_at: Timestamp


# --- money -----------------------------------------------------------------------------------------
class WalletChanged(Payload):
    """My available balance changed by `amount_fen` (negative: money out). `reason` is the ledger
    kind of the entry (the same `kind` GET /ledger shows); the ids say what it belongs to."""

    reason: EntryKind
    amount_fen: Fen
    task_id: Optional[Id]
    order_id: Optional[Id]
    recharge_id: Optional[Id]
    withdrawal_id: Optional[Id]


class WithdrawalChanged(Payload):
    """One of my withdrawals changed state."""

    withdrawal_id: Id
    status: WithdrawalStatus
    amount_fen: Fen
    fee_fen: Fen


@dataclasses.dataclass(frozen=True)
class EventType:
    name: str
    payload: type[Payload]
    audience: str  # who receives it, for people
    hall: bool = False  # sent to every worker-end socket (the outbox row has no user)


EVENTS: dict[str, EventType] = {e.name: e for e in (
    EventType("hall.task_published", HallTaskPublished, "every worker", hall=True),
    EventType("hall.task_changed", HallTaskChanged, "every worker", hall=True),
    EventType("hall.task_removed", HallTaskRemoved, "every worker", hall=True),
    EventType("task.published", TaskPublished, "the task's publisher"),
    EventType("task.expired", TaskClosedSlots, "the task's publisher"),
    EventType("task.cancelled", TaskClosedSlots, "the task's publisher"),
    EventType("task.held", TaskHeld, "the task's publisher"),
    EventType("task.refused", TaskRefused, "the task's publisher"),
    EventType("order.taken", OrderTaken, "the task's publisher"),
    EventType("order.changed", OrderChanged, "the order's worker and publisher (a take: the worker)"),
    EventType("order.answered", OrderAnswered, "the order's worker and publisher"),
    EventType("wallet.changed", WalletChanged, "the user whose available balance changed"),
    EventType("withdrawal.changed", WithdrawalChanged, "the user who asked for the withdrawal"),
)}


def validate(event_type: str, payload: dict[str, Any]) -> None:
    """Raise (KeyError for an undeclared type, pydantic.ValidationError for a bad payload)."""
    import json

    EVENTS[event_type].payload.model_validate_json(json.dumps(payload))  # as the wire carries it


# --- the published schema ---------------------------------------------------------------------------------
def json_schema() -> dict[str, Any]:
    """docs/events.json: the envelope `{id, seq, type, data, at}` with one variant per event type."""
    from pydantic.json_schema import models_json_schema

    models = sorted({e.payload for e in EVENTS.values()}, key=lambda m: m.__name__)
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template="#/$defs/{model}")
    variants = []
    for e in EVENTS.values():
        variants.append({
            "title": e.name,
            "description": f"{(e.payload.__doc__ or '').strip()} Sent to: {e.audience}.",
            "type": "object",
            "required": ["id", "seq", "type", "data", "at"],
            "additionalProperties": False,
            "properties": {
                "id": {"type": "integer", "minimum": 1, "description": "event id: one event, one id, however often it is sent (deduplicate by it)"},
                "seq": {"type": "integer", "minimum": 1, "description": "the event's place in the delivery log: grows on every socket; resume after the last you processed (`?after_seq=`)"},
                "type": {"const": e.name},
                "data": {"$ref": f"#/$defs/{e.payload.__name__}"},
                "at": {"type": "string", "format": "date-time", "pattern": TIME_PATTERN, "description": "when it happened (UTC)"},
            },
        })
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://market.invalid/docs/events.json",
        "title": "WebSocket events of the Mini Program API",
        "description": __doc__.split("\n\n")[0].replace("\n", " "),
        "oneOf": variants,
        "$defs": defs["$defs"],
    }


def docs_table() -> str:
    """The event table of docs/api.md (a test checks the page holds exactly this)."""
    lines = ["| type | `data` | who gets it | meaning |", "|---|---|---|---|"]
    for e in EVENTS.values():
        fields = []
        schema = e.payload.model_json_schema()
        for name, prop in schema["properties"].items():
            fields.append(f"`{name}`{_kind(prop, schema)}")
        meaning = " ".join((e.payload.__doc__ or "").split())
        lines.append(f"| `{e.name}` | {', '.join(fields)} | {e.audience} | {meaning} |")
    return "\n".join(lines)


def _kind(prop: dict[str, Any], schema: dict[str, Any]) -> str:
    """A short hint of a field's values for the table: its enum, or `?` when it may be null."""
    options = prop.get("anyOf", [prop])
    nullable = any(o.get("type") == "null" for o in options)
    values: list[str] = []
    named = ""
    for o in options:
        if "$ref" in o:
            named = o["$ref"].rsplit("/", 1)[-1]
            o = schema["$defs"][named]
        if "enum" in o:
            values += o["enum"]
        elif "const" in o:
            values.append(o["const"])
    hint = f" ({' / '.join(values)})" if values and len(values) <= 4 else f" ({named})" if named else ""
    return hint + (" ?" if nullable else "")
