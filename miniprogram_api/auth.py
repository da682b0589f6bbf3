"""Session tokens for the two Mini Programs, and the check every endpoint makes of who is asking.

A token is `<payload>.<signature>`: base64url JSON {uid, end, ver, exp} signed with HMAC-SHA256
under the server's secret key. It names one account of one end and expires (default 7 days). It is
revocable: banning a user bumps `users.token_version`, and a token whose `ver` is older is refused.
Every authenticated request checks the user row, so a ban takes effect on the next request, and on
the WebSocket at the next heartbeat: usually by one primary-key lookup before the handler runs; the
one-click take instead checks the same conditions inside its own statement (`require(...,
lookup=False)`), which saves the hottest endpoint a round trip.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from functools import wraps

from sanic.request import Request

from models.errors import DomainError, UserBanned, WrongEnd
from models.users import End, User

TOKEN_TTL_S = 7 * 86_400


class Unauthorized(DomainError):
    code, status, message = "unauthorized", 401, "Log in first: a valid session token is required."


class TokenExpired(Unauthorized):
    code, message = "token_expired", "The session has expired; log in again."


@dataclass(frozen=True)
class Session:
    user_id: int
    end: End
    token_version: int
    user: User | None = None  # the row as read now; None under require(..., lookup=False)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(secret: str, user: User, ttl_s: int = TOKEN_TTL_S) -> tuple[str, int]:
    exp = int(time.time()) + ttl_s
    payload = _b64(json.dumps({"uid": user.id, "end": user.end.value, "ver": user.token_version, "exp": exp}, separators=(",", ":")).encode())
    sig = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{sig}", exp


def read_token(secret: str, token: str) -> dict:
    """The token's claims if its signature is ours and it has not expired; else Unauthorized."""
    try:
        payload, sig = token.split(".", 1)
        expected = _b64(hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(sig, expected):
            raise Unauthorized()
        claims = json.loads(_unb64(payload))
        if not isinstance(claims, dict) or not {"uid", "end", "ver", "exp"} <= set(claims):
            raise Unauthorized()
    except (ValueError, TypeError, UnicodeDecodeError):
        raise Unauthorized() from None
    if claims["exp"] < time.time():
        raise TokenExpired()
    return claims


def token_from(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    # wx.connectSocket can send the header too; a query token is accepted on the WebSocket only.
    return request.args.get("token") if request.path.endswith("/ws") else None


async def authenticate(request: Request, end: End | None, *, lookup: bool = True) -> Session:
    """Who is asking. With `lookup=False` only the token is checked (signature, expiry, end): the
    caller must check the user row itself (not banned, `token_version` unchanged), in its statement."""
    token = token_from(request)
    if not token:
        raise Unauthorized()
    claims = read_token(request.app.ctx.secret_key, token)
    if not lookup:
        if end is not None and claims["end"] != end.value:
            raise WrongEnd(f"This endpoint belongs to the {end.value} Mini Program.")
        return Session(user_id=claims["uid"], end=End(claims["end"]), token_version=claims["ver"])
    user = await User.get_or_none(id=claims["uid"])
    if user is None or user.token_version != claims["ver"]:
        raise Unauthorized("This session is no longer valid; log in again.")
    if user.banned:
        raise UserBanned()
    if end is not None and user.end != end:
        raise WrongEnd(f"This endpoint belongs to the {end.value} Mini Program.")
    return Session(user_id=user.id, end=user.end, token_version=user.token_version, user=user)


def require(end: End | None, *, lookup: bool = True):
    """Decorator: the handler receives `session` after the token, the user and the end check out.

    `lookup=False`: the user row is not read here; the handler's own statement must check it (see
    `orders.take`)."""

    def decorate(handler):
        @wraps(handler)
        async def wrapped(request: Request, *args, **kwargs):
            session = await authenticate(request, end, lookup=lookup)
            request.ctx.session = session
            return await handler(request, session, *args, **kwargs)

        return wrapped

    return decorate
