"""Checks of raw input shared by the domain functions (the API validates first; the domain never
trusts its callers: the admin panel, the scheduler and scripts call it too)."""

from __future__ import annotations

from typing import Any

from models.errors import InvalidInput


def clean_text(value: Any, name: str, max_len: int, *, required: bool) -> str | None:
    """Stripped text of at most `max_len` characters; None when empty and not required."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidInput(f"{name} is required.", field=name)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be text.", field=name)
    value = value.strip()
    if len(value) > max_len:
        raise InvalidInput(f"{name} must be at most {max_len} characters.", field=name)
    return value


def whole_number(value: Any, name: str) -> int:
    """An int that is not a bool (money and counts are never fractions or flags)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be a whole number.", field=name)
    return value
