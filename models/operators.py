"""Operators of the admin panel: their accounts, password hashes, roles and login throttling.

Operators are not users of the Mini Programs: they live in their own table, log in with a username
and a password, and have one of two roles (SPEC §6, issue 5):

- `owner`: everything, including the market settings, manual ledger adjustments and operator accounts;
- `operator`: the daily queues (appeals, withdrawals), customers (search, ban / unban), browsing.

Passwords are hashed with scrypt (memory-hard) under a per-password random salt; the parameters are
stored in the hash, so they can be raised later and old hashes are upgraded at the next login.

Login throttling, two independent locks, both kept in the database so every server process and node
sees the same counters:
1. per username: `USER_MAX_FAILURES` consecutive failures lock the account for `USER_LOCKOUT_S`
   (a success resets the counter);
2. per client IP: `IP_MAX_FAILURES` failures within `IP_WINDOW_S` lock that address for
   `IP_LOCKOUT_S`, whatever usernames it tries (guessing many accounts from one place).
While a lock holds, the password is not even checked, so a locked account cannot be probed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from enum import StrEnum

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.expressions import F, Q
from tortoise.models import Model

from models import audit, clock
from models.errors import DomainError, InvalidInput

# scrypt cost: N=2^15, r=8 → 32 MiB and ~0.1 s per hash on one core (OWASP's minimum is N=2^17 with
# r=8 p=1 for interactive logins on fast machines; raise SCRYPT_N when the servers allow it — stored
# hashes carry their own parameters and are re-hashed at the next successful login).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
SALT_BYTES, HASH_BYTES = 16, 32

USER_MAX_FAILURES = 5  # consecutive failed logins for one username …
USER_LOCKOUT_S = 15 * 60  # … lock it for this long
IP_MAX_FAILURES = 20  # failed logins from one address within the window …
IP_WINDOW_S = 15 * 60
IP_LOCKOUT_S = 15 * 60  # … lock the address for this long

PASSWORD_MIN, PASSWORD_MAX = 10, 256
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,31}$")


class Role(StrEnum):
    OWNER = "owner"  # everything: settings, manual adjustments, operator accounts
    OPERATOR = "operator"  # queues and customers; no settings, no manual adjustments


class Operator(Model):
    id = fields.IntField(primary_key=True)
    username = fields.CharField(max_length=32, unique=True)  # lower case
    password_hash = fields.CharField(max_length=255)
    role = fields.CharEnumField(Role, max_length=16, default=Role.OPERATOR)
    active = fields.BooleanField(default=True)
    failed_logins = fields.IntField(default=0)  # consecutive failures since the last success
    locked_until = fields.DatetimeField(null=True)
    last_login_at = fields.DatetimeField(null=True)
    # Every session cookie names the version it was issued under: bumping it (password change,
    # deactivation) ends all of this operator's sessions at once.
    session_version = fields.IntField(default=0)
    created_at = fields.DatetimeField()

    class Meta:
        table = "operators"

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER


class LoginThrottle(Model):
    """Failed logins per client address (the per-username counter lives on the operator row)."""

    key = fields.CharField(max_length=80, primary_key=True)  # "ip:<address>"
    failures = fields.IntField(default=0)
    window_started_at = fields.DatetimeField()
    locked_until = fields.DatetimeField(null=True)

    class Meta:
        table = "operator_login_throttle"


class BadCredentials(DomainError):
    code, status, message = "bad_credentials", 401, "Wrong username or password."


class LoginLocked(DomainError):
    code, status, message = "login_locked", 429, "Too many failed logins; try again later."

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(retry_after_s=retry_after_s)
        self.retry_after_s = retry_after_s


# --- passwords -------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """`scrypt$N$r$p$salt$hash` (base64), with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=HASH_BYTES)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            maxmem=SCRYPT_MAXMEM, dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def needs_rehash(encoded: str) -> bool:
    return not encoded.startswith(f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$")


_dummy_hash: str | None = None


def _dummy() -> str:
    """Checked when the username does not exist, so that "no such user" costs as much as a wrong
    password (made at first use, not at import: a hash costs ~0.1 s)."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = hash_password(secrets.token_urlsafe(16))
    return _dummy_hash


def check_password_rules(password: str) -> None:
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidInput(f"The password must be {PASSWORD_MIN}–{PASSWORD_MAX} characters long.", field="password")
    if password.strip() != password or len(set(password)) < 4:
        raise InvalidInput("The password is too simple.", field="password")


def normalize_username(username: str) -> str:
    return (username or "").strip().lower()


def check_username(username: str) -> str:
    name = normalize_username(username)
    if not USERNAME_RE.match(name):
        raise InvalidInput("3–32 characters: letters, digits, '_', '.', '-'.", field="username")
    return name


# --- accounts --------------------------------------------------------------------------------------
async def create_operator(username: str, password: str, role: Role | str, *, created_by: int | None = None) -> Operator:
    """A new operator account; the audit log says who created it (None: the command line)."""
    name = check_username(username)
    check_password_rules(password)
    try:
        role = Role(role)
    except ValueError:
        raise InvalidInput("The role must be owner or operator.", field="role") from None
    hashed = await asyncio.to_thread(hash_password, password)
    try:
        op = await Operator.create(username=name, password_hash=hashed, role=role, created_at=clock.now())
    except IntegrityError:
        raise InvalidInput("This username is taken.", field="username") from None
    await audit.record(
        "operator" if created_by else "system", created_by, "operator.create", "operator", op.id,
        data={"username": name, "role": role.value},
    )
    return op


async def set_active(operator_id: int, active: bool, *, by: int) -> None:
    n = await Operator.filter(id=operator_id).update(active=active, session_version=F("session_version") + 1)
    if n != 1:
        from models.errors import NotFound

        raise NotFound("No such operator.")
    await audit.record("operator", by, "operator.activate" if active else "operator.deactivate", "operator", operator_id)


async def set_password(operator_id: int, password: str, *, by: int | None) -> None:
    """A new password ends every session of that operator and lifts any lock."""
    check_password_rules(password)
    hashed = await asyncio.to_thread(hash_password, password)
    n = await Operator.filter(id=operator_id).update(
        password_hash=hashed, session_version=F("session_version") + 1, failed_logins=0, locked_until=None
    )
    if n != 1:
        from models.errors import NotFound

        raise NotFound("No such operator.")
    await audit.record("operator" if by else "system", by, "operator.password", "operator", operator_id)


# --- login -----------------------------------------------------------------------------------------
def _retry_after(until: dt.datetime, now: dt.datetime) -> int:
    return max(1, int((until - now).total_seconds()) + 1)


async def login(username: str, password: str, *, ip: str) -> Operator:
    """The operator for these credentials, or BadCredentials / LoginLocked (see the module doc).

    Each attempt is counted *before* the (slow, threaded) password check, with conditional updates,
    so a burst of parallel guesses cannot all pass the lock check before the first failure is
    recorded: at most USER_MAX_FAILURES attempts per username and IP_MAX_FAILURES per address can
    be in flight or failed within their windows. A success gives its attempts back.
    """
    now = clock.now()
    ip_key = f"ip:{ip}"[:80]
    await _reserve_ip_attempt(ip_key, now)
    name = normalize_username(username)[:64]
    op = await Operator.get_or_none(username=name) if name else None
    if op is not None:
        reserved = await Operator.filter(
            Q(locked_until__isnull=True) | Q(locked_until__lte=now), id=op.id, failed_logins__lt=USER_MAX_FAILURES
        ).update(failed_logins=F("failed_logins") + 1)
        if reserved != 1:
            fresh = await Operator.get(id=op.id)
            locked = fresh.locked_until is not None and fresh.locked_until > now
            raise LoginLocked(_retry_after(fresh.locked_until, now) if locked else 1)
    good = await asyncio.to_thread(verify_password, password or "", op.password_hash if op else _dummy())
    if op is None or not good or not op.active:
        await _count_failure(op, now)
        raise BadCredentials()
    values = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
    if needs_rehash(op.password_hash):
        values["password_hash"] = await asyncio.to_thread(hash_password, password)
    await Operator.filter(id=op.id).update(**values)
    await LoginThrottle.filter(key=ip_key, failures__gt=0).update(failures=F("failures") - 1)
    await audit.record("operator", op.id, "operator.login", "operator", op.id, data={"ip": ip})
    return await Operator.get(id=op.id)


async def _reserve_ip_attempt(ip_key: str, now: dt.datetime) -> None:
    """Count one attempt from this address in its window (a fixed window started by its first
    attempt); refuse when the address is locked or has used up its attempts."""
    window_start = now - dt.timedelta(seconds=IP_WINDOW_S)
    counted = await LoginThrottle.filter(
        Q(locked_until__isnull=True) | Q(locked_until__lte=now),
        key=ip_key, window_started_at__gt=window_start, failures__lt=IP_MAX_FAILURES,
    ).update(failures=F("failures") + 1)
    if counted:
        return
    row = await LoginThrottle.get_or_none(key=ip_key)
    if row is not None and row.locked_until is not None and row.locked_until > now:
        raise LoginLocked(_retry_after(row.locked_until, now))
    if row is not None and row.window_started_at > window_start:  # attempts used up in this window
        await LoginThrottle.filter(key=ip_key).update(failures=0, window_started_at=now, locked_until=clock.after(now, IP_LOCKOUT_S))
        await audit.record("system", None, "operator.ip_locked", "operator", None, data={"ip": ip_key[3:]})
        raise LoginLocked(IP_LOCKOUT_S)
    try:  # no row yet, or its window is over: a new window starts with this attempt
        if row is None:
            await LoginThrottle.create(key=ip_key, failures=1, window_started_at=now)
        else:
            await LoginThrottle.filter(key=ip_key).update(failures=1, window_started_at=now, locked_until=None)
    except IntegrityError:  # a concurrent first attempt created it
        await LoginThrottle.filter(key=ip_key).update(failures=F("failures") + 1)


async def _count_failure(op: Operator | None, now: dt.datetime) -> None:
    """The attempt was counted when reserved; lock the username once it has used up its attempts."""
    if op is not None:
        failures = (await Operator.get(id=op.id)).failed_logins
        if failures >= USER_MAX_FAILURES:
            await Operator.filter(id=op.id).update(failed_logins=0, locked_until=clock.after(now, USER_LOCKOUT_S))
            await audit.record("system", None, "operator.locked", "operator", op.id, data={"failures": failures})
