"""What every Mini Program endpoint shares: request parsing, pagination, and the JSON views.

Handlers are thin: parse and validate here, call one domain function, serialize with a view below.
Money is integer fen and times are ISO 8601 UTC strings; every view of something with a deadline
carries the server's `now`, so a phone renders countdowns against server time and never drifts.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sanic.request import Request

from models import clock
from models.errors import InvalidInput, Text

M = TypeVar("M", bound=BaseModel)
PAGE_DEFAULT, PAGE_MAX = 20, 50


def poke_relay(request: Request, push_ids: list[int] | None = None) -> None:
    """A change was just committed: let this worker's push relay deliver it now, not at its next
    tick (by primary key when the change told us its push rows' ids)."""
    relay = getattr(request.app.ctx, "relay", None)
    if relay is not None:
        relay.poke(push_ids)


def parse(model: type[M], request: Request) -> M:
    """The JSON body as `model`, or InvalidInput naming each bad field (in both languages)."""
    try:
        body = request.json
    except Exception:
        raise InvalidInput("The body must be JSON.", zh="请求内容必须是 JSON。") from None
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise InvalidInput("The body must be a JSON object.", zh="请求内容必须是 JSON 对象。")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        fields = {".".join(str(p) for p in e["loc"]) or "body": field_reason(e) for e in exc.errors()[:20]}
        raise InvalidInput("Some fields are not valid.", zh="部分字段无效。", fields=fields) from None


# What is wrong with one field, by pydantic's error type, in both languages.
_REASONS = {
    "missing": ("required", "必填"),
    "extra_forbidden": ("unknown field", "不认识的字段"),
    "string_type": ("must be text", "必须是文字"),
    "int_type": ("must be a whole number", "必须是整数"),
    "int_parsing": ("must be a whole number", "必须是整数"),
    "int_from_float": ("must be a whole number", "必须是整数"),
    "string_too_short": ("must not be empty", "不能为空"),
    "string_too_long": ("at most {max_length} characters", "最多 {max_length} 个字符"),
    "greater_than": ("must be greater than {gt}", "必须大于 {gt}"),
    "greater_than_equal": ("must be at least {ge}", "不能小于 {ge}"),
    "less_than": ("must be less than {lt}", "必须小于 {lt}"),
    "less_than_equal": ("must be at most {le}", "不能大于 {le}"),
    "literal_error": ("must be one of {expected}", "必须是以下之一：{expected}"),
    "enum": ("must be one of {expected}", "必须是以下之一：{expected}"),
    "string_pattern_mismatch": ("has the wrong format", "格式不正确"),
}


def field_reason(error: dict[str, Any]) -> Text:
    en, zh = _REASONS.get(error["type"], (error["msg"], "无效"))
    return Text(en, zh, **{k: v for k, v in (error.get("ctx") or {}).items() if isinstance(v, (int, str))})


def query_int(request: Request, name: str, default: int | None = None, *, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput("{field} must be a whole number.", zh="{field} 必须是整数。", field=name) from None
    if not low <= value <= high:
        raise InvalidInput("{field} must be between {low} and {high}.", zh="{field} 必须在 {low} 到 {high} 之间。",
                           field=name, low=low, high=high)
    return value


def query_enum(request: Request, name: str, enum: type[StrEnum]) -> str | None:
    """A filter that must be one of the enum's values (or absent)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw not in enum.__members__.values():
        raise InvalidInput("{field} must be one of {expected}.", zh="{field} 必须是以下之一：{expected}。",
                           field=name, expected=", ".join(enum))
    return raw


CURSOR_PATTERN = r"^[1-9][0-9]{0,17}$"  # opaque to clients: pass next_cursor back as it came


def page_args(request: Request) -> tuple[int | None, int]:
    """(cursor, limit). The cursor is opaque to clients (today: the id of the previous page's last
    item, as a string); a cursor this server did not make is refused."""
    raw = request.args.get("cursor")
    cursor = None
    if raw not in (None, ""):
        if not re.match(CURSOR_PATTERN, raw):
            raise InvalidInput("cursor must be a next_cursor this server returned.", zh="cursor 必须是服务器返回的 next_cursor。",
                               field="cursor")
        cursor = int(raw)
    limit = query_int(request, "limit", PAGE_DEFAULT, low=1, high=PAGE_MAX)
    return cursor, limit


def page(items: list[dict[str, Any]], limit: int, key: str = "id") -> dict[str, Any]:
    next_cursor = str(items[-1][key]) if len(items) == limit else None
    return {"items": items, "next_cursor": next_cursor}


def iso(value: dt.datetime | None) -> str | None:
    """UTC, always with microseconds and a Z (the same form as the WebSocket events)."""
    return clock.iso_us(value) if value else None


def now_iso() -> str:
    return iso(clock.now())


class ImageLinks:
    """Short-lived signed URLs of uploaded images, for `<image src>` (which cannot send a token).

    A link names one upload and an expiry, signed with the server's key ring (`server/keys.py`,
    purpose "image.link": the signature names its key, so links survive a key rotation); `GET /api/v1/images/{ref}`
    serves it to whoever holds the link until it expires. Links are only put into views of things
    the reader may see, so holding one is the permission. Expiries are rounded up to a window
    (`LINK_WINDOW_S`), so the same image keeps the same URL for a while and the phone's image cache
    works; a link is valid for at least `LINK_TTL_S`.
    """

    def __init__(self, keys, base: str) -> None:
        self.keys = keys
        self.base = base.rstrip("/")

    def expiry(self) -> int:
        now = int(clock.now().timestamp())
        return (now + LINK_TTL_S + LINK_WINDOW_S - 1) // LINK_WINDOW_S * LINK_WINDOW_S

    def url(self, ref: str | None) -> str | None:
        if not ref:
            return None
        exp = self.expiry()
        return f"{self.base}/api/v1/images/{ref}?exp={exp}&sig={sign_image(self.keys, ref, exp)}"


LINK_TTL_S = 1_800  # every image link is valid at least this long (30 min)
LINK_WINDOW_S = 600  # ... and at most this much longer (links are stable within a window)


def sign_image(keys, ref: str, exp: int) -> str:
    """`<kid>.<mac>` of the link's upload and expiry."""
    return keys.tag(IMAGE_LINK_PURPOSE, f"{ref}:{exp}")


def image_link_valid(keys, ref: str, exp: int, sig: str) -> bool:
    return keys.check_tag(IMAGE_LINK_PURPOSE, f"{ref}:{exp}", sig)


IMAGE_LINK_PURPOSE = "image.link"


def image_links(request: Request) -> ImageLinks:
    """The link maker for this request: absolute URLs on public_base_url (or the host asked)."""
    base = request.app.ctx.config.public_base_url or f"{request.scheme}://{request.host}"
    return ImageLinks(request.app.ctx.keys, base)




def task_view(t, links: ImageLinks, *, for_publisher: bool = False) -> dict[str, Any]:
    view = {
        "id": t.id,
        "title": t.title,
        "instructions": t.instructions,
        "attachment_kind": t.attachment_kind,
        "attachment": t.attachment,
        "attachment_url": links.url(t.attachment) if t.attachment_kind == "image" else None,
        "criteria": t.criteria,
        "unit_price_fen": t.unit_price_fen,
        "quantity": t.quantity,
        "slots_untaken": t.slots_untaken,
        "status": t.status.value,
        "countdown_s": t.countdown_s,
        "take_deadline_at": iso(t.take_deadline_at),
        "created_at": iso(t.created_at),
        "min_approval_bp": t.min_approval_bp,
        "min_completed_orders": t.min_completed_orders,
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


def order_view(o, links: ImageLinks, task=None, *, with_task: bool = True) -> dict[str, Any]:
    """An order. `task` (the task row, or what the take read of it) is required unless `with_task`
    is False (the orders listed inside their own task's view)."""
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
        "reject_criterion": o.reject_criterion,
        "appeal_deadline_at": iso(o.appeal_deadline_at),
        "appealed_at": iso(o.appealed_at),
        "appeal_reason": o.appeal_reason,
        "appeal_evidence": o.appeal_evidence,
        "appeal_evidence_url": links.url(o.appeal_evidence),
        "proof_text": o.proof_text,
        "proof_image": o.proof_image,
        "proof_image_url": links.url(o.proof_image),
        "answer_text": o.answer_text,
        "answer_image": o.answer_image,
        "answer_image_url": links.url(o.answer_image),
        "answered_at": iso(o.answered_at),
        "answer_due_at": iso(o.answer_due_at),
        "decision_note": o.decision_note,
        "finished_at": iso(o.finished_at),
        "finished_by": o.finished_by,
        "deadline_at": iso(o.due_at),  # the deadline running now, if any (countdowns render this)
        "now": now_iso(),
    }
    if with_task:
        view["task"] = {
            "id": task.id, "title": task.title, "instructions": task.instructions,
            "attachment_kind": task.attachment_kind, "attachment": task.attachment,
            "attachment_url": links.url(task.attachment) if task.attachment_kind == "image" else None,
            "criteria": getattr(task, "criteria", None),
        }
    return view


def user_view(u, links: ImageLinks) -> dict[str, Any]:
    return {
        "id": u.id,
        "end": u.end.value,
        "nickname": u.nickname,
        "avatar": u.avatar,
        "avatar_url": links.url(u.avatar),
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


def created(view: dict[str, Any], replayed: bool) -> tuple[dict[str, Any], int]:
    """A creation's answer: 201 with `replayed: false`, or, for a repeated request_id, the first
    result with 200 and `replayed: true` (so a client can tell a retry from a new object)."""
    return view | {"replayed": replayed}, 200 if replayed else 201
