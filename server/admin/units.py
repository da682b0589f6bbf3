"""What people read and type (¥ yuan, percent, minutes, Asia/Shanghai times) ↔ what is stored
(integer fen, basis points, seconds, UTC). Parsing is exact (Decimal, never float) and refuses
anything that does not map to a whole stored unit; the error names the field and says why.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

MARKET_TZ = ZoneInfo("Asia/Shanghai")


class FieldError(ValueError):
    """Bad input for one form field. `message` is an i18n key, `params` its values."""

    def __init__(self, message: str, **params) -> None:
        super().__init__(message)
        self.message = message
        self.params = params


# --- display ---------------------------------------------------------------------------------------
def yuan(fen: int | None) -> str:
    if fen is None:
        return "—"
    fen = int(fen)
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}¥{whole:,}.{cents:02d}"


def yuan_plain(fen: int) -> str:
    """For an input box: '12.30' (no symbol, no thousands separator)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{whole}.{cents:02d}"


def percent_plain(bp: int) -> str:
    whole, frac = divmod(int(bp), 100)
    return f"{whole}" if frac == 0 else f"{whole}.{frac:02d}".rstrip("0")


def minutes_plain(seconds: int) -> str:
    value = Decimal(int(seconds)) / 60
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text


def local(at: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    if at is None:
        return "—"
    if isinstance(at, str):
        at = dt.datetime.fromisoformat(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return at.astimezone(MARKET_TZ).strftime(fmt)


def day_start_utc(day: dt.date) -> dt.datetime:
    """00:00 of this Asia/Shanghai day, in UTC."""
    return dt.datetime.combine(day, dt.time(0), tzinfo=MARKET_TZ).astimezone(dt.timezone.utc)


def today_local(now: dt.datetime) -> dt.date:
    return now.astimezone(MARKET_TZ).date()


# --- parsing ---------------------------------------------------------------------------------------
def _decimal(text: str | None, *, signed: bool = False) -> Decimal:
    raw = (text or "").strip().replace(",", "").replace("，", "").lstrip("¥￥").strip().rstrip("%").strip()
    if not raw:
        raise FieldError("This field is required.")
    if raw[0] in "+-" and not signed:
        if raw[0] == "-":
            raise FieldError("Must not be negative.")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise FieldError("Not a number.") from None
    if not value.is_finite():
        raise FieldError("Not a number.")
    if abs(value) > Decimal(10) ** 12:
        raise FieldError("Too large.")
    return value


def parse_yuan(text: str | None, *, signed: bool = False) -> int:
    """'12.34' → 1234 fen. At most two decimals."""
    value = _decimal(text, signed=signed)
    fen = value * 100
    if fen != fen.to_integral_value():
        raise FieldError("At most two decimals (fen).")
    return int(fen)


def parse_percent(text: str | None) -> int:
    """'2.5' (%) → 250 bp. At most two decimals."""
    value = _decimal(text)
    bp = value * 100
    if bp != bp.to_integral_value():
        raise FieldError("At most two decimals (0.01 %).")
    return int(bp)


def parse_minutes(text: str | None) -> int:
    """'2.5' (minutes) → 150 s. Must be a whole number of seconds."""
    value = _decimal(text)
    seconds = value * 60
    if seconds != seconds.to_integral_value():
        raise FieldError("Must be a whole number of seconds.")
    return int(seconds)


def parse_count(text: str | None) -> int:
    value = _decimal(text)
    if value != value.to_integral_value():
        raise FieldError("Must be a whole number.")
    return int(value)


def parse_id(text: str | None) -> int | None:
    """An optional positive id from a query string: None when empty or not a number."""
    text = (text or "").strip().lstrip("#")
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)


def parse_day(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat((text or "").strip())
    except ValueError:
        return None
