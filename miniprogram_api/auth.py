"""Access tokens for the two Mini Programs, and the check every endpoint makes of who is asking.

An access token is `<kid>.<payload>.<mac>` (`server/keys.py`, purpose "api.access"): payload =
base64url JSON {uid, end, ver, sid, exp}. It names one account of one end and lives
`ACCESS_TTL_S` (15 minutes); the refresh token of the login's session (`models/sessions.py`) gets a
new one (`POST /{end}/refresh`). Why this split suits a phone is argued in docs/api.md.

Every authenticated request checks the user row, so a ban, a logout (both bump
`users.token_version`) take effect on the next request, and on the WebSocket at the next heartbeat:
usually by one primary-key lookup before the handler runs; the one-click take instead checks the
same conditions inside its own statement (`require(..., lookup=False)`), which saves the hottest
endpoint a round trip. A banned user is told `user_banned` (403) on every path, whatever the age of
the token; a token of an ended session is `unauthorized` (401); an expired one `token_expired`.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from functools import wraps

from sanic.request import Request

from models.errors import DomainError, UserBanned, WrongEnd
from models.users import End, User

ACCESS_TTL_S = 15 * 60
PURPOSE = "api.access"


class Unauthorized(DomainError):
    code, status = "unauthorized", 401
    message, message_zh = "Log in first: a valid session token is required.", "请先登录：需要有效的登录凭证。"
    hint = "No valid session token: log in again (wx.login, then POST /login)."


class TokenExpired(Unauthorized):
    code, message = "token_expired", "The access token has expired; get a new one with the refresh token."
    message_zh = "访问凭证已过期，请用刷新凭证换取新的。"
    hint = "The access token lived its 15 minutes: POST /refresh with the refresh token (then retry); if that is refused, log in again."


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


def issue_token(keys, user: User, ttl_s: int = ACCESS_TTL_S, *, session_id: int | None = None) -> tuple[str, int]:
    """(access token, its expiry as a Unix time), signed with the current key of `keys`."""
    exp = int(time.time()) + ttl_s
    claims = {"uid": user.id, "end": user.end.value, "ver": user.token_version, "sid": session_id, "exp": exp}
    return keys.sign(PURPOSE, _b64(json.dumps(claims, separators=(",", ":")).encode())), exp


def read_token(keys, token: str, *, allow_expired: bool = False) -> dict:
    """The token's claims if a key of the ring signed it for this purpose and it has not expired
    (or `allow_expired`); else Unauthorized / TokenExpired."""
    payload = keys.verify(PURPOSE, token)
    if payload is None:
        raise Unauthorized()
    try:
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError, UnicodeDecodeError):
        raise Unauthorized() from None
    if not isinstance(claims, dict) or not {"uid", "end", "ver", "exp"} <= set(claims):
        raise Unauthorized()
    if not isinstance(claims["exp"], (int, float)) or (claims["exp"] < time.time() and not allow_expired):
        raise TokenExpired()
    return claims


def token_from(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    # wx.connectSocket can send the header too; a query token is accepted on the WebSocket only.
    return request.args.get("token") if request.path.endswith("/ws") else None


def check_user(user: User | None, claims: dict) -> User:
    """The rules of a live session on a freshly read user row: banned first (whatever the token's
    age: the person must learn why), then the session version (ban, logout)."""
    if user is None:
        raise Unauthorized("This session is no longer valid; log in again.", zh="登录已失效，请重新登录。")
    if user.banned:
        raise UserBanned()
    if user.token_version != claims["ver"]:
        raise Unauthorized("This session is no longer valid; log in again.", zh="登录已失效，请重新登录。")
    return user


async def authenticate(request: Request, end: End | None, *, lookup: bool = True, check_expiry: bool = True) -> Session:
    """Who is asking. With `lookup=False` only the token is checked (signature, expiry, end): the
    caller must check the user row itself (not banned, `token_version` unchanged), in its statement.
    `check_expiry=False` (the WebSocket heartbeat): the session must still live, but the access
    token that opened the socket may have expired since."""
    token = token_from(request)
    if not token:
        raise Unauthorized()
    claims = read_token(request.app.ctx.keys, token, allow_expired=not check_expiry)
    if not lookup:
        if end is not None and claims["end"] != end.value:
            raise WrongEnd("This endpoint belongs to the {end} Mini Program.", zh="此接口属于{end}小程序。", end=end.value)
        return Session(user_id=claims["uid"], end=End(claims["end"]), token_version=claims["ver"])
    user = check_user(await User.get_or_none(id=claims["uid"]), claims)
    if end is not None and user.end != end:
        raise WrongEnd("This endpoint belongs to the {end} Mini Program.", zh="此接口属于{end}小程序。", end=end.value)
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
