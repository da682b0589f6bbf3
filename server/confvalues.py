"""The one reading of configuration values: booleans and numbers, whatever file or variable they
come from. `server/config.py` reads config.yaml and the environment through it, and
`wechat/config.py` its own section, so the same text never means two things (issue 17: a quoted
`sandbox: "false"` was once "on" for one reader and "off" for the other).

Rules, the same for YAML values and environment variables (which are always text):
- a boolean is `true`/`false` (YAML's), or the text true/false, yes/no, on/off, 1/0 in any case,
  or the integers 1/0. Anything else — "", "maybe", 2, null, a list — is refused;
- a whole number is an integer, or text of digits with an optional sign; never a boolean, a
  fraction or an empty text;
- a number is an integer or a finite decimal, or text that reads as one; never a boolean, NaN or
  infinity.

A refusal is a `ValueProblem` naming the key ("wechat.sandbox") and where the value came from
("environment variable MARKET__WECHAT__SANDBOX", "/srv/market/config.yaml"); the caller raises its
own error type with that text.
"""

from __future__ import annotations

import math
import re
from typing import Any

TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})
_INT_TEXT = re.compile(r"^[+-]?\d+$")


class ValueProblem(ValueError):
    """A value of the wrong kind. `str()` is the whole sentence for a person."""

    def __init__(self, key: str, source: str, expected: str, value: Any, *, secret: bool = False) -> None:
        shown = "(hidden)" if secret else _show(value)
        self.key, self.source = key, source
        super().__init__(f"{key} = {shown} (from {source}): {expected}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_bool(value: Any, key: str, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueProblem(key, source, "not clearly true or false; write true or false", value)


def parse_int(value: Any, key: str, source: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INT_TEXT.match(value.strip()):
        return int(value.strip())
    raise ValueProblem(key, source, "must be a whole number", value)


def parse_number(value: Any, key: str, source: str) -> float:
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        raise ValueProblem(key, source, "must be a number (seconds may have decimals)", value)
    return number


def parse_number_list(value: Any, key: str, source: str) -> tuple[float, ...]:
    """A list of numbers; null (YAML `null` or `~`) is the empty list: "use the built-in default"."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ValueProblem(key, source, "must be a list of numbers", value)
    return tuple(parse_number(v, f"{key}[{i}]", source) for i, v in enumerate(value))
