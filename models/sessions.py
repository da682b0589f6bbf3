"""Sessions, kept on the server so that logging out ends them (issue 17, item 4).

Mini Program users (`ApiSession`): a login opens a session that holds the hash of a **refresh
token**; the client trades it for a new short-lived access token (`miniprogram_api/auth.py`) and a
new refresh token each time (rotation). A session ends when:
- its refresh token is not used for `REFRESH_IDLE_S`, or `REFRESH_MAX_S` after the login;
- the user logs out or is banned (`end_user_sessions`): every session of the account ends, and
  `users.token_version` is bumped so that every access token already handed out stops at once;
- a refresh token that was already exchanged is presented again later than `REUSE_GRACE_S` after
  the exchange: somebody holds a copy, so every session of the account ends (both holders log in
  again with WeChat; the thief cannot).

Operators of the admin panel (`OperatorSession`): one row per login. The cookie carries a random
session id; the row holds only its SHA-256, so the table alone lets nobody in. Logging out revokes
the row, so a copied cookie stops working at once; changing one's password ends the other rows.

Dead rows are deleted when their owner next logs in: no sweeper is needed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from tortoise import fields
from tortoise.expressions import F
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import audit, clock
from models.errors import DomainError, UserBanned

REFRESH_IDLE_S = 30 * 86_400  # a phone that opens the app once a month never logs in again …
REFRESH_MAX_S = 90 * 86_400  # … until 90 days after its login (then wx.login again, silently)
REUSE_GRACE_S = 10  # two refreshes racing on one phone are not theft
MAX_LIVE_SESSIONS = 10  # per account: a new login beyond this ends the oldest
OPERATOR_SESSION_TTL_S = 12 * 3600  # one working day
SECRET_BYTES = 32


class RefreshTokenInvalid(DomainError):
    code, status = "refresh_token_invalid", 401
    message, message_zh = "This session has ended; log in again with wx.login().", "登录已结束，请重新登录。"
    hint = ("The refresh token is unknown, used already, expired (30 days unused, 90 days old) or its session ended "
            "(logout, ban): log in again (wx.login, then POST /login).")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- Mini Program users ---------------------------------------------------------------------------
class ApiSession(Model):
    id = fields.BigIntField(primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="sessions", on_delete=fields.CASCADE)
    # The user's token_version at login: a ban or a logout bumps it, which ends this session too.
    token_version = fields.IntField()
    secret_hash = fields.CharField(max_length=64)  # SHA-256 of the refresh token's secret
    previous_hash = fields.CharField(max_length=64, null=True)  # the one it replaced (reuse detection)
    created_at = fields.DatetimeField()
    refreshed_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_sessions"
        indexes = (("user_id", "expires_at"),)


def _expiry(created_at: dt.datetime, now: dt.datetime) -> dt.datetime:
    return min(clock.after(now, REFRESH_IDLE_S), clock.after(created_at, REFRESH_MAX_S))


async def open_user_session(user) -> tuple[ApiSession, str]:
    """A new session for a user who just logged in: (row, refresh token). Their dead sessions are
    deleted, and live ones beyond MAX_LIVE_SESSIONS - 1 (the oldest first) end."""
    now = clock.now()
    secret = secrets.token_urlsafe(SECRET_BYTES)
    async with in_transaction():
        await ApiSession.filter(user_id=user.id, expires_at__lte=now).delete()
        await ApiSession.filter(user_id=user.id, revoked_at__isnull=False).delete()
        await ApiSession.filter(user_id=user.id, token_version__lt=user.token_version).delete()
        live = await ApiSession.filter(user_id=user.id).order_by("-id").offset(MAX_LIVE_SESSIONS - 1).values_list("id", flat=True)
        if live:
            await ApiSession.filter(id__in=list(live)).delete()
        row = await ApiSession.create(
            user_id=user.id, token_version=user.token_version, secret_hash=_hash(secret),
            created_at=now, refreshed_at=now, expires_at=_expiry(now, now),
        )
    return row, f"{row.id}.{secret}"


def _parse_refresh(token: object) -> tuple[int, str] | None:
    if not isinstance(token, str) or len(token) > 200:
        return None
    sid, _, secret = token.partition(".")
    if not (sid.isascii() and sid.isdigit()) or not secret or len(sid) > 18:
        return None
    return int(sid), secret


async def refresh_user_session(token: str, end: str):
    """Exchange a refresh token: (user, session, new refresh token), or RefreshTokenInvalid /
    UserBanned. One conditional UPDATE on the presented secret: of two exchanges of one token,
    exactly one wins."""
    from models.users import User

    parsed = _parse_refresh(token)
    if parsed is None:
        raise RefreshTokenInvalid()
    sid, secret = parsed
    row = await ApiSession.get_or_none(id=sid)
    user = await User.get_or_none(id=row.user_id) if row is not None else None
    if row is None or user is None or user.end.value != end:
        raise RefreshTokenInvalid()
    if user.banned:
        raise UserBanned()
    now = clock.now()
    presented = _hash(secret)
    new_secret = secrets.token_urlsafe(SECRET_BYTES)
    expires_at = _expiry(row.created_at, now)
    won = await ApiSession.filter(
        id=sid, secret_hash=presented, revoked_at__isnull=True, expires_at__gt=now, token_version=user.token_version,
    ).update(secret_hash=_hash(new_secret), previous_hash=presented, refreshed_at=now, expires_at=expires_at)
    if won != 1:
        await _explain_failed_refresh(sid, presented, now)
        raise RefreshTokenInvalid()
    row.expires_at = expires_at
    return user, row, f"{sid}.{new_secret}"


async def _explain_failed_refresh(sid: int, presented: str, now: dt.datetime) -> None:
    """An exchanged token presented again after the grace time: somebody holds a copy of it, and
    we cannot tell which holder is the person. End every session of the account (its access
    tokens too), so both must log in again with WeChat; say so in the audit log."""
    row = await ApiSession.get_or_none(id=sid)
    if row is None or row.revoked_at is not None or row.previous_hash != presented:
        return
    if (now - row.refreshed_at).total_seconds() <= REUSE_GRACE_S:
        return
    if await ApiSession.filter(id=sid, revoked_at__isnull=True).update(revoked_at=now):  # once, however many replays
        await end_user_sessions(row.user_id, actor=("system", None), action="session.refresh_reused",
                                reason=f"refresh token of session {sid} used twice")


async def end_user_sessions(user_id: int, *, actor: tuple[str, int | None], action: str, reason: str = "") -> None:
    """End every session of the account: its access tokens (token_version) and refresh tokens.
    Runs inside the caller's transaction when there is one (a ban)."""
    from models.users import User

    now = clock.now()
    async with in_transaction():
        await User.filter(id=user_id).update(token_version=F("token_version") + 1)
        await ApiSession.filter(user_id=user_id, revoked_at__isnull=True).update(revoked_at=now)
        if action:
            await audit.record(actor[0], actor[1], action, "user", user_id, reason=reason or None)


# --- operators ------------------------------------------------------------------------------------
class OperatorSession(Model):
    id = fields.CharField(max_length=64, primary_key=True)  # SHA-256 of the id in the cookie
    operator = fields.ForeignKeyField("models.Operator", related_name="sessions", on_delete=fields.CASCADE)
    address = fields.CharField(max_length=64, default="")  # where the login came from (for people)
    created_at = fields.DatetimeField()
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "operator_sessions"
        indexes = (("operator_id", "expires_at"),)


async def open_operator_session(operator_id: int, address: str = "", ttl_s: int = OPERATOR_SESSION_TTL_S) -> tuple[str, dt.datetime]:
    """(session id for the cookie, expiry). The operator's dead sessions are deleted meanwhile."""
    now = clock.now()
    sid = secrets.token_urlsafe(SECRET_BYTES)
    await OperatorSession.filter(operator_id=operator_id, expires_at__lte=now).delete()
    await OperatorSession.filter(operator_id=operator_id, revoked_at__isnull=False).delete()
    expires_at = clock.after(now, ttl_s)
    await OperatorSession.create(id=_hash(sid), operator_id=operator_id, address=address[:64], created_at=now, expires_at=expires_at)
    return sid, expires_at


async def live_operator_session(sid: str) -> OperatorSession | None:
    """The session row if it is neither revoked nor expired (its operator not checked here)."""
    if not isinstance(sid, str) or not sid or len(sid) > 100:
        return None
    row = await OperatorSession.get_or_none(id=_hash(sid))
    if row is None or row.revoked_at is not None or row.expires_at <= clock.now():
        return None
    return row


async def end_operator_session(sid: str) -> None:
    await OperatorSession.filter(id=_hash(sid), revoked_at__isnull=True).update(revoked_at=clock.now())


async def end_operator_sessions(operator_id: int, *, keep: str | None = None) -> int:
    """End every session of the operator except `keep` (the session id of the one making the change)."""
    q = OperatorSession.filter(operator_id=operator_id, revoked_at__isnull=True)
    if keep:
        q = q.exclude(id=_hash(keep))
    return await q.update(revoked_at=clock.now())
