"""Operator sessions and CSRF protection for the admin panel.

Session: a row in `operator_sessions` (models/sessions.py) per login, and a cookie
`<kid>.<payload>.<mac>` signed with the panel's own key (`server/keys.py`, purpose
"admin.session"), payload = base64url JSON {sid, exp}. The cookie is HttpOnly (no script can read
it), SameSite=Strict (never sent by another site's page), Secure when served over HTTPS or in
production, scoped to /admin, expiring with its row after 12 hours. Every request re-reads the
row and the operator: logging out revokes the row, so a copied cookie stops working at once; a
deactivated operator, or one whose password changed elsewhere, is logged out at once too.

CSRF: every form carries a token bound to the session (a MAC of its random `sid` under the
"admin.csrf" key), checked on every POST before anything else runs. The login form, which has no
session yet, uses a double-submit cookie instead (a random value in a cookie and in the form,
which must match).
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time

from sanic.request import Request

from models import sessions
from models.operators import Operator

SESSION_COOKIE = "market_admin"
LOGIN_CSRF_COOKIE = "market_admin_login"
SESSION_TTL_S = sessions.OPERATOR_SESSION_TTL_S  # one working day; then log in again
COOKIE_PATH = "/admin"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def issue(request: Request, op: Operator, address: str = "", ttl_s: int = SESSION_TTL_S) -> str:
    """Open a session for `op` and return its cookie value."""
    sid, _ = await sessions.open_operator_session(op.id, address, ttl_s)
    claims = {"sid": sid, "exp": int(time.time()) + ttl_s}
    return request.app.ctx.keys.sign("admin.session", _b64(json.dumps(claims, separators=(",", ":")).encode()))


def read(request: Request) -> dict | None:
    """The claims of a cookie this server signed and that has not expired, else None (the row is
    checked by `current_operator`)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw or len(raw) > 1024:
        return None
    payload = request.app.ctx.keys.verify("admin.session", raw)
    if payload is None:
        return None
    try:
        claims = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("sid"), str) or not isinstance(claims.get("exp"), int):
        return None
    return claims if claims["exp"] >= time.time() else None


async def current_operator(request: Request) -> Operator | None:
    claims = read(request)
    if claims is None:
        return None
    row = await sessions.live_operator_session(claims["sid"])
    if row is None:
        return None
    op = await Operator.get_or_none(id=row.operator_id)
    if op is None or not op.active:
        return None
    request.ctx.admin_sid = claims["sid"]
    return op


async def end(request: Request) -> None:
    """Log out: the session's row is revoked, whoever holds a copy of the cookie."""
    sid = getattr(request.ctx, "admin_sid", None) or (read(request) or {}).get("sid")
    if sid:
        await sessions.end_operator_session(sid)


def secure_cookies(request: Request) -> bool:
    return request.scheme == "https" or bool(getattr(request.app.ctx.config, "production", False))


def set_session_cookie(request: Request, response, token: str) -> None:
    response.add_cookie(
        SESSION_COOKIE, token, path=COOKIE_PATH, httponly=True, samesite="Strict",
        secure=secure_cookies(request), max_age=SESSION_TTL_S,
    )


def clear_cookie(request: Request, response, name: str) -> None:
    """Delete a cookie with the attributes it was set with: a deleting cookie marked Secure on
    plain http is ignored by browsers (Sanic's delete_cookie marks it Secure by default)."""
    response.add_cookie(name, "", path=COOKIE_PATH, httponly=True, samesite="Strict",
                        secure=secure_cookies(request), max_age=0)


def clear_session_cookie(request: Request, response) -> None:
    clear_cookie(request, response, SESSION_COOKIE)


# --- CSRF ------------------------------------------------------------------------------------------
def csrf_token(request: Request) -> str:
    sid = getattr(request.ctx, "admin_sid", None)
    if not sid:
        return ""
    return request.app.ctx.keys.tag("admin.csrf", sid)


def csrf_ok(request: Request) -> bool:
    sid = getattr(request.ctx, "admin_sid", None)
    sent = (request.form.get("csrf") if request.form else None) or request.headers.get("x-csrf-token") or ""
    return bool(sid) and request.app.ctx.keys.check_tag("admin.csrf", sid, sent)


def login_csrf(request: Request) -> str:
    """The double-submit value for the login form: the cookie's if it has one, else a new one."""
    value = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if len(value) < 20 or len(value) > 64:
        value = secrets.token_urlsafe(24)
    return value


def set_login_csrf_cookie(request: Request, response, value: str) -> None:
    response.add_cookie(
        LOGIN_CSRF_COOKIE, value, path=COOKIE_PATH, httponly=True, samesite="Strict",
        secure=secure_cookies(request), max_age=3600,
    )


def login_csrf_ok(request: Request) -> bool:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    sent = (request.form.get("csrf") if request.form else None) or ""
    return len(cookie) >= 20 and hmac.compare_digest(cookie.encode(), sent.encode())
