"""Runtime market settings: one row in the database, seeded from `config.yaml`, changed by the admin.

Amounts are fen, ratios basis points, durations seconds. Every change is validated as a whole
(`validate`) and written with its old and new values to the audit log. The durations and ratios in
force are copied onto each task when it is published, so a change never moves an existing deadline
or re-prices escrowed money.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from tortoise import fields
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import audit, clock
from models.errors import InvalidSettings

BP = 10_000  # basis points in 100 %
MAX_COUNTDOWN_S = 600  # WeChat's limit for assisted steps: the task countdown may not exceed 10 min
MAX_PRICE_FEN = 1_000_000  # ¥10 000: the ceiling any configured max_unit_price_fen may reach


@dataclasses.dataclass(frozen=True)
class MarketSettings:
    min_unit_price_fen: int = 100  # ¥1.00
    max_unit_price_fen: int = 10_000  # ¥100.00
    max_quantity: int = 100  # slots per task
    publish_fee_bp: int = 1_000  # F = floor(P × 10 %)
    worker_invite_bp: int = 200  # R_w = floor(P × 2 %) to the worker's inviter
    publisher_invite_bp: int = 1_000  # R_p = floor(F × 10 %) to the publisher's inviter
    withdraw_fee_bp: int = 100  # W = floor(A × 1 %)
    min_withdraw_fen: int = 1_000  # ¥10.00
    daily_withdraw_cap_fen: int = 500_000  # ¥5 000.00 per user per day (Asia/Shanghai day)
    max_orders_in_progress: int = 1  # per worker
    take_window_s: int = 180  # untaken slots refunded 3 min after publishing
    countdown_s: int = 300  # the worker has 5 min after taking
    review_window_s: int = 1_200  # auto-approve 20 min after awaiting review
    appeal_window_s: int = 600  # a rejection not appealed within 10 min fails the order
    upload_quota_mb: int = 1_024  # images one user may store in total (re-encoded bytes; models/uploads.py)
    # Records and limits (issue 14; models/records.py).
    record_window_days: int = 90  # records count the orders taken in the last 90 days
    record_min_sample: int = 10  # below 10 reviewed orders a record is "new" (its rates are not shown)
    limit_window_days: int = 7  # automatic worker limits look at the last 7 days
    limit_max_abandons: int = 5  # 5 abandons in the limit window pause a worker's takes (0 = off)
    limit_max_appeals_lost: int = 3  # 3 appeals decided against a worker in it do too (0 = off)
    compliance_hold_on_match: int = 0  # 0: a prohibited term refuses the publish; 1: holds the task for an operator
    referral_requires_first_order: int = 1  # 1: an inviter earns only for invitees who completed a first order

    def fee_fen(self, unit_price_fen: int) -> int:
        return unit_price_fen * self.publish_fee_bp // BP

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


FIELDS = tuple(f.name for f in dataclasses.fields(MarketSettings))


def referral_rewards(unit_price_fen: int, fee_fen: int, worker_invite_bp: int, publisher_invite_bp: int) -> tuple[int, int]:
    """(R_w, R_p) for one completed order, before knowing whether the inviters exist."""
    return unit_price_fen * worker_invite_bp // BP, fee_fen * publisher_invite_bp // BP


def validate(s: MarketSettings) -> None:
    """Refuse settings that would break a rule of the market; the message names every bad field."""
    errors: dict[str, str] = {}
    for name in FIELDS:
        value = getattr(s, name)
        if not isinstance(value, int) or isinstance(value, bool):
            errors[name] = "must be an integer"
    if errors:
        raise InvalidSettings("Every setting must be an integer.", zh="每个设置项都必须是整数。", fields=errors)

    if s.min_unit_price_fen < 1:
        errors["min_unit_price_fen"] = "must be at least 1 fen"
    if s.max_unit_price_fen < s.min_unit_price_fen:
        errors["max_unit_price_fen"] = "must not be below the minimum unit price"
    if s.max_unit_price_fen > MAX_PRICE_FEN:
        errors["max_unit_price_fen"] = f"must not exceed {MAX_PRICE_FEN} fen"
    if not 1 <= s.max_quantity <= 10_000:
        errors["max_quantity"] = "must be between 1 and 10000"
    for name in ("publish_fee_bp", "worker_invite_bp", "publisher_invite_bp", "withdraw_fee_bp"):
        if not 0 <= getattr(s, name) <= BP:
            errors[name] = "must be between 0 and 10000 basis points"
    if s.min_withdraw_fen < 1:
        errors["min_withdraw_fen"] = "must be at least 1 fen"
    if s.daily_withdraw_cap_fen < s.min_withdraw_fen:
        errors["daily_withdraw_cap_fen"] = "must not be below the minimum withdrawal"
    if not 1 <= s.max_orders_in_progress <= 100:
        errors["max_orders_in_progress"] = "must be between 1 and 100"
    for name in ("take_window_s", "countdown_s", "review_window_s", "appeal_window_s"):
        if getattr(s, name) <= 0:
            errors[name] = "must be longer than 0 seconds"
        elif getattr(s, name) > 30 * 86_400:
            errors[name] = "must not exceed 30 days"
    if not 1 <= s.upload_quota_mb <= 1_048_576:
        errors["upload_quota_mb"] = "must be between 1 and 1048576"
    if not 1 <= s.record_window_days <= 365:
        errors["record_window_days"] = "must be between 1 and 365"
    if not 1 <= s.record_min_sample <= 10_000:
        errors["record_min_sample"] = "must be between 1 and 10000"
    if not 1 <= s.limit_window_days <= 365:
        errors["limit_window_days"] = "must be between 1 and 365"
    for name in ("limit_max_abandons", "limit_max_appeals_lost"):
        if not 0 <= getattr(s, name) <= 10_000:
            errors[name] = "must be between 0 (off) and 10000"
    for name in ("compliance_hold_on_match", "referral_requires_first_order"):
        if getattr(s, name) not in (0, 1):
            errors[name] = "must be 0 (off) or 1 (on)"
    if s.countdown_s > MAX_COUNTDOWN_S:
        errors["countdown_s"] = "must not exceed 10 minutes (WeChat's limit for assisted steps)"
    if not errors and s.withdraw_fee_bp >= BP:
        errors["withdraw_fee_bp"] = "must leave the user something: below 10000 basis points"
    if not errors:
        price = first_price_where_rewards_exceed_fee(s)
        if price is not None:
            errors["worker_invite_bp"] = (
                f"referral rewards would exceed the publishing fee at a unit price of {price} fen"
            )
    if errors:
        raise InvalidSettings("Some settings are not valid.", zh="部分设置无效。", fields=errors)


def first_price_where_rewards_exceed_fee(s: MarketSettings) -> int | None:
    """The lowest allowed unit price at which R_w + R_p > F, or None when there is none.

    Rounding makes this depend on the price, so every allowed price is checked exactly. R_p ≤ F
    always (publisher_invite_bp ≤ 10 000), so with no worker reward there is nothing to check.
    """
    if s.worker_invite_bp == 0:
        return None
    for price in range(s.min_unit_price_fen, s.max_unit_price_fen + 1):
        fee = price * s.publish_fee_bp // BP
        r_w, r_p = referral_rewards(price, fee, s.worker_invite_bp, s.publisher_invite_bp)
        if r_w + r_p > fee:
            return price
    return None


class SettingsRow(Model):
    """The single row (id = 1) holding the settings in force."""

    id = fields.IntField(primary_key=True)
    values = fields.JSONField()
    version = fields.IntField(default=1)
    updated_at = fields.DatetimeField()

    class Meta:
        table = "market_settings"


_seed = MarketSettings()


def set_seed(values: dict[str, Any]) -> None:
    """The defaults from config.yaml, used to create the row the first time (validated)."""
    global _seed
    seed = from_dict(values)
    validate(seed)
    _seed = seed


def from_dict(values: dict[str, Any]) -> MarketSettings:
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise InvalidSettings("Unknown settings.", zh="未知的设置项。", fields={k: "unknown setting" for k in sorted(unknown)})
    return dataclasses.replace(MarketSettings(), **values)


async def ensure_settings_row() -> None:
    if not await SettingsRow.exists(id=1):
        from tortoise.exceptions import IntegrityError

        try:
            await SettingsRow.create(id=1, values=_seed.as_dict(), updated_at=clock.now())
        except IntegrityError:
            pass  # another process created it first


# Hot paths (every take) read the settings through a short cache. The bound, stated once: a change
# committed by any process is in force in every process at most CACHE_TTL_S later, for every
# request. A value is served only if its database read *began* less than CACHE_TTL_S ago (a read
# that began before a change may not have seen it); callers that find the cache too old share
# one read (started then, so it qualifies) instead of each querying, and nobody is handed the old
# value meanwhile. The process that makes the change sees it at once (`invalidate_cache`).
CACHE_TTL_S = 1.0


@dataclasses.dataclass(frozen=True)
class _Cached:
    started: float  # time.monotonic() when its read began
    generation: int
    value: MarketSettings


@dataclasses.dataclass(frozen=True)
class _Reading:
    started: float
    generation: int
    task: asyncio.Task


_cache: _Cached | None = None
_reading: _Reading | None = None  # the read under way in this process, shared by its callers
_generation = 0  # bumped by invalidate_cache(): a read begun before a change never serves after it


def invalidate_cache() -> None:
    global _cache, _generation
    _cache = None
    _generation += 1


async def _read() -> MarketSettings:
    row = await SettingsRow.get_or_none(id=1)
    if row is None:
        return _seed
    return dataclasses.replace(MarketSettings(), **{k: v for k, v in row.values.items() if k in FIELDS})


async def current() -> MarketSettings:
    """The settings in force (see CACHE_TTL_S for how fresh). Call it outside a transaction: the
    shared read runs in the context of the caller that starts it."""
    global _reading
    now = time.monotonic()
    cached = _cache
    if cached is not None and cached.generation == _generation and now - cached.started < CACHE_TTL_S:
        return cached.value
    loop = asyncio.get_running_loop()
    reading = _reading
    if (reading is None or reading.generation != _generation or now - reading.started >= CACHE_TTL_S
            or reading.task.get_loop() is not loop or reading.task.done()):
        reading = _Reading(now, _generation, loop.create_task(_read_and_keep(now, _generation)))
        # A failed read is reported to its callers; mark it seen even when they all left.
        reading.task.add_done_callback(lambda t: t.cancelled() or t.exception())
        _reading = reading
    # shield: a caller that is cancelled (its client went away) leaves the read to the others
    return await asyncio.shield(reading.task)


async def _read_and_keep(started: float, generation: int) -> MarketSettings:
    global _cache, _reading
    try:
        value = await _read()
    finally:
        if _reading is not None and _reading.task is asyncio.current_task():
            _reading = None
    if generation == _generation and (_cache is None or _cache.started <= started):
        _cache = _Cached(started, generation, value)
    return value


async def update(changes: dict[str, Any], *, operator_id: int, expected_version: int | None = None) -> MarketSettings:
    """Apply a partial change, validated as a whole; the audit row keeps old and new values. With
    `expected_version` (the version a form was rendered from), a newer row refuses it (Conflict)."""
    from models.errors import Conflict

    async with in_transaction():
        row = await SettingsRow.select_for_update().get(id=1)
        if expected_version is not None and row.version != expected_version:
            raise Conflict("The settings were changed by someone else; reload and try again.", zh="设置已被他人修改，请刷新后重试。")
        old = dataclasses.replace(MarketSettings(), **{k: v for k, v in row.values.items() if k in FIELDS})
        new = _apply(old, changes)
        validate(new)
        diff = {k: {"old": getattr(old, k), "new": getattr(new, k)} for k in FIELDS if getattr(old, k) != getattr(new, k)}
        n = await SettingsRow.filter(id=1, version=row.version).update(
            values=new.as_dict(), version=row.version + 1, updated_at=clock.now()
        )
        if n != 1:
            raise Conflict("The settings were changed by someone else; reload and try again.", zh="设置已被他人修改，请刷新后重试。")
        await audit.record("operator", operator_id, "settings.update", "settings", 1, data=diff)
    invalidate_cache()
    return new


def _apply(old: MarketSettings, changes: dict[str, Any]) -> MarketSettings:
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise InvalidSettings("Unknown settings.", zh="未知的设置项。", fields={k: "unknown setting" for k in sorted(unknown)})
    return dataclasses.replace(old, **changes)
