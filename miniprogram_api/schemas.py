"""Request bodies of the Mini Program API (pydantic, strict: money must be a JSON integer — never
a string or a fraction — and unknown fields are refused, so a client mistake surfaces at once)."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

MAX_FEN = 100_000_000  # ¥1 000 000: above any amount the market allows; a fast first filter


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LoginIn(Strict):
    code: str = Field(min_length=1, max_length=128, description="the code from wx.login()")
    invite_code: Optional[str] = Field(None, max_length=16, description="an inviter's code, bound at first login only")
    scene: Optional[str] = Field(None, max_length=32, description="the Mini Program code's scene (an invite code)")
    nickname: Optional[str] = Field(None, max_length=64)


class PublishIn(Strict):
    title: str = Field(min_length=1, max_length=64)
    instructions: str = Field(min_length=1, max_length=2000)
    unit_price_fen: int = Field(gt=0, le=MAX_FEN, description="P, paid to the worker per completed order (fen)")
    quantity: int = Field(1, ge=1, le=10_000, description="slots; the admin's max_quantity applies")
    attachment_kind: Optional[Literal["image", "link", "text"]] = None
    attachment: Optional[str] = Field(None, max_length=1024, description="an upload ref (image), a URL (link) or text")
    request_id: Optional[str] = Field(None, min_length=1, max_length=64, description="idempotency key: a repeat returns the first task")


class SubmitIn(Strict):
    proof_text: Optional[str] = Field(None, max_length=2000)
    proof_image: Optional[str] = Field(None, max_length=40, description="an upload ref")


class AppealIn(Strict):
    reason: str = Field(min_length=1, max_length=500)
    evidence: Optional[str] = Field(None, max_length=40, description="an upload ref")


class RejectIn(Strict):
    reason: str = Field(min_length=1, max_length=500)


class MoneyRequestIn(Strict):
    amount_fen: int = Field(gt=0, le=MAX_FEN)
    request_id: str = Field(min_length=1, max_length=64, description="idempotency key chosen by the client")
