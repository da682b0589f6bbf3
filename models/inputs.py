"""Checks of raw input shared by the domain functions (the API validates first; the domain never
trusts its callers: the admin panel, the scheduler and scripts call it too).

The text rule lives here once and every layer applies it: the Mini Program API's request schemas
(`miniprogram_api/schemas.py`), every request's path, query string and form (`server/inputs.py`,
which also covers the admin panel), the WebSocket's messages, and these domain checks. Text may
not contain control characters: PostgreSQL cannot store U+0000 at all (a NUL answered 500 there
while SQLite stored it), and the other controls only ever come from bugs or attacks (terminal
escapes in logs, invisible separators in names). Newline and tab are text where the text is
multi-line (instructions, proof, reasons, notes); a carriage return there is a line break written
the Windows way (browsers send a textarea's lines as CRLF) and is stored as a newline. Lone UTF-16
surrogates (valid in JSON's `\\ud800` escapes, not in UTF-8) cannot be stored by either database
and are refused by the same rule.
"""

from __future__ import annotations

import re
from typing import Any

from models.errors import InvalidInput

# C0 controls, DEL, C1 controls (Unicode category Cc), and lone surrogates (Cs).
_SINGLE_LINE_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_MULTI_LINE_BAD = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # after CR/CRLF → LF
# The same rule as JSON Schema patterns (ECMA-262 syntax), so the OpenAPI document states it.
SINGLE_LINE_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f\\ud800-\\udfff]*$"
MULTI_LINE_PATTERN = "^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f-\\u009f\\ud800-\\udfff]*$"


def forbidden_character(value: str, *, multiline: bool = False) -> str | None:
    """The first character the rule refuses, or None (for a multi-line value: after line breaks
    are normalised)."""
    if multiline:
        value = normalize_newlines(value)
    m = (_MULTI_LINE_BAD if multiline else _SINGLE_LINE_BAD).search(value)
    return m.group() if m else None


def normalize_newlines(value: str) -> str:
    return value.replace("\r\n", "\n").replace("\r", "\n")


def describe(char: str) -> str:
    return f"U+{ord(char):04X}"


def check_text(value: str, name: str, *, multiline: bool = False) -> str:
    """`value` if it obeys the rule (multi-line: with its line breaks normalised), else InvalidInput."""
    bad = forbidden_character(value, multiline=multiline)
    if bad is not None:
        if multiline:
            raise InvalidInput("{field} must not contain control characters ({character}); newline and tab are allowed.",
                               zh="{field} 不能包含控制字符（{character}）；可以换行和使用制表符。", field=name, character=describe(bad))
        raise InvalidInput("{field} must not contain control characters ({character}).",
                           zh="{field} 不能包含控制字符（{character}）。", field=name, character=describe(bad))
    return normalize_newlines(value) if multiline else value


def clean_text(value: Any, name: str, max_len: int, *, required: bool, multiline: bool = False) -> str | None:
    """Stripped text of at most `max_len` characters without control characters; None when
    empty and not required."""
    if value is not None and not isinstance(value, str):
        raise InvalidInput("{field} must be text.", zh="{field} 必须是文字。", field=name)
    # Checked before stripping: str.strip() would silently drop some controls (U+001C–U+001F, U+0085).
    value = check_text(value, name, multiline=multiline).strip() if value is not None else ""
    if not value:
        if required:
            raise InvalidInput("{field} is required.", zh="{field} 不能为空。", field=name)
        return None
    if len(value) > max_len:
        raise InvalidInput("{field} must be at most {max_len} characters.", zh="{field} 最多 {max_len} 个字符。", field=name, max_len=max_len)
    return value


def whole_number(value: Any, name: str) -> int:
    """An int that is not a bool (money and counts are never fractions or flags)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("{field} must be a whole number.", zh="{field} 必须是整数。", field=name)
    return value
