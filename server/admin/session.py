"""Operator sessions and CSRF protection for the admin panel.

Session: a cookie `<payload>.<signature>`, payload = base64url JSON {oid, ver, sid, exp}, signed
with HMAC-SHA256 under a key derived from the app's secret (`app.ctx.secret_key`). HttpOnly (no
script can read it), SameSite=Strict (never sent by another site's page), Secure when served over
HTTPS or in production, scoped to /admin, expiring after SESSION_TTL_S. Every request re-reads the
operator row: a deactivated operator or one whose password changed (`session_version` bumped) is
logged out at once.

CSRF: every form carries a token bound to the session (HMAC of the session's random `sid`), checked
on every POST before anything else runs. The login form, which has no session yet, uses a
double-submit cookie instead (a random value in a cookie and in the form, which must match).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time

from sanic.request import Request

from models.operators import Operator

SESSION_COOKIE = "market_admin"
LOGIN_CSRF_COOKIE = "market_admin_login"
SESSION_TTL_S = 12 * 3600  # one working day; then log in again
COOKIE_PATH = "/admin"


def _key(request: Request, purpose: str) -> bytes:
    return hmac.new(request.app.ctx.secret_key.encode(), f"admin:{purpose}".encode(), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(request: Request, payload: str) -> str:
    return _b64(hmac.new(_key(request, "session"), payload.encode(), hashlib.sha256).digest())


def issue(request: Request, op: Operator, ttl_s: int = SESSION_TTL_S) -> str:
    claims = {"oid": op.id, "ver": op.session_version, "sid": secrets.token_urlsafe(16), "exp": int(time.time()) + ttl_s}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{payload}.{_sign(request, payload)}"


def read(request: Request) -> dict | None:
    """The claims of a valid, unexpired session cookie, else None."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw or len(raw) > 1024 or "." not in raw:
        return None
    payload, sig = raw.rsplit(".", 1)
    if not hmac.compare_digest(sig, _sign(request, payload)):
        return None
    try:
        claims = json.loads(_unb64(payload))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict) or not {"oid", "ver", "sid", "exp"} <= set(claims) or claims["exp"] < time.time():
        return None
    return claims


async def current_operator(request: Request) -> Operator | None:
    claims = read(request)
    if claims is None:
        return None
    op = await Operator.get_or_none(id=claims["oid"])
    if op is None or not op.active or op.session_version != claims["ver"]:
        return None
    request.ctx.admin_sid = claims["sid"]
    return op


def secure_cookies(request: Request) -> bool:
    return request.scheme == "https" or bool(getattr(request.app.ctx.config, "production", False))


def set_session_cookie(request: Request, response, token: str) -> None:
    response.add_cookie(
        SESSION_COOKIE, token, path=COOKIE_PATH, httponly=True, samesite="Strict",
        secure=secure_cookies(request), max_age=SESSION_TTL_S,
    )


def clear_session_cookie(response) -> None:
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH)


# --- CSRF ------------------------------------------------------------------------------------------
def csrf_token(request: Request) -> str:
    sid = getattr(request.ctx, "admin_sid", None)
    if not sid:
        return ""
    return _b64(hmac.new(_key(request, "csrf"), sid.encode(), hashlib.sha256).digest())


def csrf_ok(request: Request) -> bool:
    sent = (request.form.get("csrf") if request.form else None) or request.headers.get("x-csrf-token") or ""
    expected = csrf_token(request)
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


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
