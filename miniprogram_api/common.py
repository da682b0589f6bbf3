"""What every Mini Program endpoint shares: request parsing, pagination, and the JSON views.

Handlers are thin: parse and validate here, call one domain function, serialize with a view below.
Money is integer fen and times are ISO 8601 UTC strings; every view of something with a deadline
carries the server's `now`, so a phone renders countdowns against server time and never drifts.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sanic.request import Request

from models import clock
from models.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)
PAGE_DEFAULT, PAGE_MAX = 20, 50


def poke_relay(request: Request, push_ids: list[int] | None = None) -> None:
    """A change was just committed: let this worker's push relay deliver it now, not at its next
    tick (by primary key when the change told us its push rows' ids)."""
    relay = getattr(request.app.ctx, "relay", None)
    if relay is not None:
        relay.poke(push_ids)


def parse(model: type[M], request: Request) -> M:
    """The JSON body as `model`, or InvalidInput naming each bad field."""
    try:
        body = request.json
    except Exception:
        raise InvalidInput("The body must be JSON.") from None
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidInput("The body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        fields = {".".join(str(p) for p in e["loc"]) or "body": e["msg"] for e in exc.errors()[:20]}
        raise InvalidInput("Some fields are not valid.", fields=fields) from None


def query_int(request: Request, name: str, default: int | None = None, *, low: int | None = None, high: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number.", field=name) from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidInput(f"{name} must be between {low} and {high}.", field=name)
    return value


def page_args(request: Request) -> tuple[int | None, int]:
    """(cursor, limit): the cursor is the id of the last item of the previous page."""
    cursor = query_int(request, "cursor", None, low=1, high=2**62)
    limit = query_int(request, "limit", PAGE_DEFAULT, low=1, high=PAGE_MAX)
    return cursor, limit


def page(items: list[dict[str, Any]], limit: int, key: str = "id") -> dict[str, Any]:
    next_cursor = str(items[-1][key]) if len(items) == limit else None
    return {"items": items, "next_cursor": next_cursor}


def iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if value else None


def now_iso() -> str:
    return iso(clock.now())


def task_view(t, *, for_publisher: bool = False) -> dict[str, Any]:
    view = {
        "id": t.id,
        "title": t.title,
        "instructions": t.instructions,
        "attachment_kind": t.attachment_kind,
        "attachment": t.attachment,
        "unit_price_fen": t.unit_price_fen,
        "quantity": t.quantity,
        "slots_untaken": t.slots_untaken,
        "status": t.status.value,
        "countdown_s": t.countdown_s,
        "take_deadline_at": iso(t.take_deadline_at),
        "created_at": iso(t.created_at),
        "now": now_iso(),
    }
    if for_publisher:
        view.update(
            fee_fen=t.fee_fen,
            slots_refunded=t.slots_refunded,
            orders_live=t.orders_live,
            review_window_s=t.review_window_s,
            appeal_window_s=t.appeal_window_s,
            held_fen=(t.slots_untaken + t.orders_live) * (t.unit_price_fen + t.fee_fen),
        )
    return view


def order_view(o, task=None) -> dict[str, Any]:
    view = {
        "id": o.id,
        "task_id": o.task_id,
        "status": o.status.value,
        "unit_price_fen": o.unit_price_fen,
        "taken_at": iso(o.taken_at),
        "submit_deadline_at": iso(o.submit_deadline_at),
        "submitted_at": iso(o.submitted_at),
        "review_deadline_at": iso(o.review_deadline_at),
        "rejected_at": iso(o.rejected_at),
        "reject_reason": o.reject_reason,
        "appeal_deadline_at": iso(o.appeal_deadline_at),
        "appealed_at": iso(o.appealed_at),
        "appeal_reason": o.appeal_reason,
        "appeal_evidence": o.appeal_evidence,
        "proof_text": o.proof_text,
        "proof_image": o.proof_image,
        "decision_note": o.decision_note,
        "finished_at": iso(o.finished_at),
        "finished_by": o.finished_by,
        "deadline_at": iso(o.due_at),  # the deadline running now, if any (countdowns render this)
        "now": now_iso(),
    }
    if task is not None:
        view["task"] = {
            "id": task.id, "title": task.title, "instructions": task.instructions,
            "attachment_kind": task.attachment_kind, "attachment": task.attachment,
        }
    return view


def user_view(u) -> dict[str, Any]:
    return {
        "id": u.id,
        "end": u.end.value,
        "nickname": u.nickname,
        "invite_code": u.invite_code,
        "inviter_id": u.inviter_id,
        "created_at": iso(u.created_at),
    }


def withdrawal_view(w) -> dict[str, Any]:
    return {
        "id": w.id,
        "request_id": w.request_id,
        "amount_fen": w.amount_fen,
        "fee_fen": w.fee_fen,
        "payout_fen": w.amount_fen - w.fee_fen,
        "status": w.status.value,
        "method": w.method,
        "reason": w.reason,
        "package_info": w.package_info,
        "created_at": iso(w.created_at),
        "decided_at": iso(w.decided_at),
        "finished_at": iso(w.finished_at),
    }
