"""The one clock every rule reads.

Deadlines are compared against `now()`, never against the database's clock, so that a test can move
time forward instead of waiting (`advance(seconds)`), and SQLite and PostgreSQL agree.
"""

from __future__ import annotations

import datetime as dt

UTC = dt.timezone.utc
_offset = dt.timedelta(0)


def now() -> dt.datetime:
    """The current time in UTC (plus any offset a test has applied)."""
    return dt.datetime.now(UTC) + _offset


def advance(seconds: float) -> None:
    """Move the clock forward (tests and the demo only)."""
    global _offset
    _offset += dt.timedelta(seconds=seconds)


def reset() -> None:
    global _offset
    _offset = dt.timedelta(0)


def after(base: dt.datetime, seconds: int) -> dt.datetime:
    return base + dt.timedelta(seconds=seconds)


def iso_us(value: dt.datetime) -> str:
    """UTC ISO 8601 with microseconds always written and a `Z` (`2026-11-25T18:52:42.162808Z`): the
    one form of every time the API and the WebSocket send (PostgreSQL's to_char writes the same)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
