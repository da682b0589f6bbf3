"""Operators of the admin panel: their accounts, password hashes, roles and login throttling.

Operators are not users of the Mini Programs: they live in their own table, log in with a username
and a password, and have one of two roles (SPEC §6, issue 5):

- `owner`: everything, including the market settings, manual ledger adjustments and operator accounts;
- `operator`: the daily queues (appeals, withdrawals), customers (search, ban / unban), browsing.

Passwords are hashed with scrypt (memory-hard) under a per-password random salt; the parameters are
stored in the hash, so they can be raised later and old hashes are upgraded at the next login.

Login throttling (issue 17, item 5), kept in the database so every server process and node sees
the same counters, and never a lock on the account itself (a lock anyone could trigger by knowing a
username would let them keep an operator out):
1. per (username, client address): `PAIR_FREE_FAILURES` failures are free; each further one makes
   that pair wait, doubling from `PAIR_BACKOFF_BASE_S` up to `PAIR_BACKOFF_MAX_S`. A success (or a
   quiet `PAIR_FORGET_S`) forgets them. The same operator at another address is not slowed at all;
2. per client address: `IP_MAX_FAILURES` failures within `IP_WINDOW_S` lock that address for
   `IP_LOCKOUT_S`, whatever usernames it tries (guessing many accounts from one place).
The address is the client's as Sanic reads it behind a trusted proxy (server/ratelimit.py,
`client_address`). While a wait holds, the password is not even checked, so a throttled pair
cannot be probed. Changing one's own password checks the current one under the same throttle.
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

PAIR_FREE_FAILURES = 5  # failed logins of one username from one address before it must wait …
PAIR_BACKOFF_BASE_S = 30  # … 30 s, then 60 s, 2 min, … doubling with each further failure …
PAIR_BACKOFF_MAX_S = 15 * 60  # … up to 15 min per attempt
PAIR_FORGET_S = 24 * 3600  # failures older than a day (with no success since) are forgotten
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
    # No longer written: logins are throttled per (username, address) in LoginThrottle, never by
    # locking the account (issue 17). Kept so the table keeps its shape.
    failed_logins = fields.IntField(default=0)
    locked_until = fields.DatetimeField(null=True)
    last_login_at = fields.DatetimeField(null=True)
    # Counts password changes and deactivations. Sessions themselves are rows in
    # `operator_sessions` (models/sessions.py), ended by those same changes.
    session_version = fields.IntField(default=0)
    created_at = fields.DatetimeField()

    class Meta:
        table = "operators"

    @property
    def is_owner(self) -> bool:
        return self.role == Role.OWNER


class LoginThrottle(Model):
    """Failed logins per client address ("ip:<address>") and per username and address
    ("u:<username>|<address>"); `locked_until` is the address's lock or the pair's next allowed try."""

    key = fields.CharField(max_length=80, primary_key=True)
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
        raise InvalidInput("The password must be {low}–{high} characters long.", zh="密码长度须为 {low}–{high} 个字符。", field="password", low=PASSWORD_MIN, high=PASSWORD_MAX)
    if password.strip() != password or len(set(password)) < 4:
        raise InvalidInput("The password is too simple.", zh="密码过于简单。", field="password")


def normalize_username(username: str) -> str:
    return (username or "").strip().lower()


def check_username(username: str) -> str:
    name = normalize_username(username)
    if not USERNAME_RE.match(name):
        raise InvalidInput("3–32 characters: letters, digits, '_', '.', '-'.", zh="3–32 个字符：字母、数字、'_'、'.'、'-'。", field="username")
    return name


# --- accounts --------------------------------------------------------------------------------------
async def create_operator(username: str, password: str, role: Role | str, *, created_by: int | None = None) -> Operator:
    """A new operator account; the audit log says who created it (None: the command line)."""
    name = check_username(username)
    check_password_rules(password)
    try:
        role = Role(role)
    except ValueError:
        raise InvalidInput("The role must be owner or operator.", zh="角色必须是所有者或操作员。", field="role") from None
    hashed = await asyncio.to_thread(hash_password, password)
    try:
        op = await Operator.create(username=name, password_hash=hashed, role=role, created_at=clock.now())
    except IntegrityError:
        raise InvalidInput("This username is taken.", zh="该用户名已被使用。", field="username") from None
    await audit.record(
        "operator" if created_by else "system", created_by, "operator.create", "operator", op.id,
        data={"username": name, "role": role.value},
    )
    return op


async def set_active(operator_id: int, active: bool, *, by: int) -> None:
    from models.sessions import end_operator_sessions

    n = await Operator.filter(id=operator_id).update(active=active, session_version=F("session_version") + 1)
    if n != 1:
        from models.errors import NotFound

        raise NotFound("No such operator.", zh="没有这个操作员。")
    if not active:
        await end_operator_sessions(operator_id)
    await audit.record("operator", by, "operator.activate" if active else "operator.deactivate", "operator", operator_id)


async def set_password(operator_id: int, password: str, *, by: int | None) -> None:
    """A new password set by an owner (or `create-owner --reset`) ends every session of that
    operator and lifts the waits of their username at every address."""
    from models.sessions import end_operator_sessions

    check_password_rules(password)
    hashed = await asyncio.to_thread(hash_password, password)
    n = await Operator.filter(id=operator_id).update(password_hash=hashed, session_version=F("session_version") + 1)
    if n != 1:
        from models.errors import NotFound

        raise NotFound("No such operator.", zh="没有这个操作员。")
    await end_operator_sessions(operator_id)
    op = await Operator.get(id=operator_id)
    await LoginThrottle.filter(key__startswith=_pair_prefix(op.username)).delete()
    await audit.record("operator" if by else "system", by, "operator.password", "operator", operator_id)


async def change_own_password(operator_id: int, current: str, new: str, *, keep_session: str | None, ip: str) -> None:
    """An operator changes their own password: the current one is checked under the login throttle
    of (username, address); the operator's other sessions end, `keep_session` stays."""
    from models.sessions import end_operator_sessions

    op = await Operator.get(id=operator_id)
    now = clock.now()
    pair_key = _pair_key(op.username, ip)
    await _reserve_pair_attempt(pair_key, now, op.username, ip)
    if not await asyncio.to_thread(verify_password, current or "", op.password_hash):
        raise BadCredentials("The current password is wrong.", zh="当前密码错误。")
    await LoginThrottle.filter(key=pair_key).delete()
    check_password_rules(new)
    if new == current:
        raise InvalidInput("The new password must differ from the current one.", zh="新密码不能与当前密码相同。", field="new_password")
    hashed = await asyncio.to_thread(hash_password, new)
    await Operator.filter(id=operator_id).update(password_hash=hashed, session_version=F("session_version") + 1)
    ended = await end_operator_sessions(operator_id, keep=keep_session)
    await audit.record("operator", operator_id, "operator.password_change", "operator", operator_id,
                       data={"other_sessions_ended": ended, "ip": ip})


# --- login -----------------------------------------------------------------------------------------
def _retry_after(until: dt.datetime, now: dt.datetime) -> int:
    return max(1, int((until - now).total_seconds()) + 1)


def _pair_prefix(username: str) -> str:
    return f"u:{normalize_username(username)[:32]}|"


def _pair_key(username: str, ip: str) -> str:
    return (_pair_prefix(username) + ip)[:80]


def _pair_wait_s(failures: int) -> int | None:
    """How long a pair waits after its `failures`-th failure (None: no wait yet)."""
    if failures < PAIR_FREE_FAILURES:
        return None
    return min(PAIR_BACKOFF_MAX_S, PAIR_BACKOFF_BASE_S * 2 ** min(failures - PAIR_FREE_FAILURES, 20))


async def login(username: str, password: str, *, ip: str) -> Operator:
    """The operator for these credentials, or BadCredentials / LoginLocked (see the module doc).

    Each attempt is counted *before* the (slow, threaded) password check, with conditional updates,
    so a burst of parallel guesses cannot all pass the check before the first failure is recorded:
    at most PAIR_FREE_FAILURES attempts per (username, address) and IP_MAX_FAILURES per address
    can be in flight or failed before the waits begin. A success gives its attempts back.
    """
    now = clock.now()
    ip_key = f"ip:{ip}"[:80]
    await _reserve_ip_attempt(ip_key, now)
    name = normalize_username(username)[:64]
    pair_key = _pair_key(name, ip)
    await _reserve_pair_attempt(pair_key, now, name, ip)
    op = await Operator.get_or_none(username=name) if name else None
    good = await asyncio.to_thread(verify_password, password or "", op.password_hash if op else _dummy())
    if op is None or not good or not op.active:
        raise BadCredentials()  # the failure was counted when the attempt was reserved
    values = {"last_login_at": now}
    if needs_rehash(op.password_hash):
        values["password_hash"] = await asyncio.to_thread(hash_password, password)
    await Operator.filter(id=op.id).update(**values)
    await LoginThrottle.filter(key=pair_key).delete()
    await LoginThrottle.filter(key=ip_key, failures__gt=0).update(failures=F("failures") - 1)
    await audit.record("operator", op.id, "operator.login", "operator", op.id, data={"ip": ip})
    return await Operator.get(id=op.id)


async def _reserve_pair_attempt(key: str, now: dt.datetime, username: str, ip: str) -> None:
    """Count one attempt of this (username, address) pair, or refuse it while the pair waits.

    The count and the next wait are written together by a compare-and-set on the count, so two
    parallel attempts never both take the last free one."""
    for _ in range(8):
        row = await LoginThrottle.get_or_none(key=key)
        if row is None:
            try:
                await LoginThrottle.create(key=key, failures=1, window_started_at=now, locked_until=None)
                return
            except IntegrityError:  # a parallel first attempt created it: count against that row
                continue
        if row.locked_until is not None and row.locked_until > now:
            raise LoginLocked(_retry_after(row.locked_until, now))
        fresh = row.window_started_at > now - dt.timedelta(seconds=PAIR_FORGET_S)
        failures = (row.failures if fresh else 0) + 1
        wait = _pair_wait_s(failures)
        n = await LoginThrottle.filter(key=key, failures=row.failures, window_started_at=row.window_started_at).update(
            failures=failures, window_started_at=row.window_started_at if fresh else now,
            locked_until=clock.after(now, wait) if wait else None,
        )
        if n == 1:
            if failures == PAIR_FREE_FAILURES:
                await audit.record("system", None, "operator.throttled", "operator", None,
                                   data={"username": username[:32], "ip": ip})
            return
    raise LoginLocked(1)  # the pair is being hammered right now: this attempt is not checked


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
