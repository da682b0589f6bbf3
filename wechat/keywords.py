"""WeChat's rules for the values of subscription-message keywords (订阅消息参数值内容限制).

A template's data keys are a keyword type plus a number (``thing1``, ``time2``, ``amount3``...); the
type decides what WeChat accepts as its value. A value that breaks the rule — or an empty one —
makes ``subscribeMessage.send`` answer errcode 47003 naming the field, and the message is lost.
The renderer (``config.SubscriptionTemplate.render``) checks every value with ``problem`` before
anything is sent; the sandbox answers 47003 with the same check, as WeChat would.

The rules, from the subscribeMessage.send documentation:

  thing             ≤ 20 characters: Chinese, digits, letters or symbols
  number            ≤ 32 digits, a decimal point allowed
  letter            ≤ 32 letters
  symbol            ≤ 5 symbols
  character_string  ≤ 32 digits, letters or symbols (no Chinese)
  time              24-hour time (HH:MM or HH:MM:SS), optionally after a date; a range "a~b"
  date              a date (y年m月d日, y年m月, m月d日, or 2018-01-01 / 2018/01/01 / 2018.01.01 /
                    2018-01 / 01-01), optionally with a time; a range "a~b"
  amount            an optional currency symbol + ≤ 10 digits, decimals allowed, "元" at the end allowed
  phone_number      ≤ 17 digits and symbols
  car_number        ≤ 8 characters; the first and the last may be Chinese, the rest letters or digits
  name              ≤ 10 characters when it has Chinese, else ≤ 20 letters or symbols
  phrase            ≤ 5 Chinese characters
No value may be empty or contain control characters (line breaks included).
"""

from __future__ import annotations

import re
import string

KINDS = ("thing", "number", "letter", "symbol", "character_string", "time", "date", "amount",
         "phone_number", "car_number", "name", "phrase")
LIMITS = {"thing": 20, "number": 32, "letter": 32, "symbol": 5, "character_string": 32, "phone_number": 17,
          "car_number": 8, "phrase": 5}  # characters; amount, time and date are limited by their shape

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAS_CJK = re.compile(f"[{_CJK}]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CLOCK = r"([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?"
_DAY = (r"(\d{4}年\d{1,2}月\d{1,2}日|\d{4}年\d{1,2}月|\d{1,2}月\d{1,2}日"
        r"|\d{4}(?P<sep>[-/.])\d{1,2}(?P=sep)\d{1,2}|\d{4}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2})")
_DATE_POINT = re.compile(rf"^{_DAY}(\s*{_CLOCK})?$")
_TIME_POINT = re.compile(rf"^({_DAY}\s*)?{_CLOCK}$")
_PATTERNS = {
    "number": re.compile(r"^\d+(\.\d+)?$"),
    "letter": re.compile(r"^[A-Za-z]+$"),
    "symbol": re.compile(rf"^[^\sA-Za-z0-9{_CJK}]+$"),
    "character_string": re.compile(r"^[\x21-\x7e]+$"),
    "amount": re.compile(r"^[¥￥$€£]?\d{1,10}(\.\d+)?元?$"),
    "phone_number": re.compile(r"^[0-9+\-() ]+$"),
    "car_number": re.compile(rf"^[{_CJK}A-Za-z0-9][A-Za-z0-9]*[{_CJK}A-Za-z0-9]?$"),
    "phrase": re.compile(rf"^[{_CJK}]+$"),
}


def kind_of(key: str) -> str:
    """``thing12`` → ``thing``; ``character_string3`` → ``character_string``."""
    return key.rstrip(string.digits)


def problem(key: str, value: object) -> str | None:
    """What WeChat would refuse about ``value`` as the value of data key ``key``; None when fine.

    The text completes WeChat's errmsg: ``argument invalid! data.<key>.value <problem>``."""
    if not isinstance(value, str):
        return "must be a string"
    if not value.strip():
        return "is empty"
    if _CONTROL.search(value):
        return "contains control characters"
    kind = kind_of(key)
    if kind not in KINDS:
        return None  # a type we do not know (enum...): WeChat checks it against the template itself
    if kind in ("time", "date"):
        point = _TIME_POINT if kind == "time" else _DATE_POINT
        if not all(point.match(part.strip()) for part in value.split("~", 1)):
            return f"is not a valid {kind} (e.g. 2019年10月1日 15:01 or 2019-10-01 15:01)"
        return None
    if kind == "name":
        limit = 10 if _HAS_CJK.search(value) else 20
        if len(value) > limit:
            return f"exceeds the limit of {limit} characters"
        if any(c.isdigit() for c in value):
            return "is not a valid name (no digits)"
        return None
    if kind in LIMITS and len(value) > LIMITS[kind]:
        return f"exceeds the limit of {LIMITS[kind]} characters"
    pattern = _PATTERNS.get(kind)
    if pattern is not None and not pattern.match(value):
        return f"is not a valid {kind}"
    return None


def first_problem(data: dict) -> tuple[str, str] | None:
    """(key, problem) of the first value WeChat would refuse in a send's ``data``, or None."""
    for key, item in data.items():
        value = item.get("value") if isinstance(item, dict) else None
        found = problem(key, value)
        if found is not None:
            return key, found
    return None


def fit(key: str, text: str) -> str:
    """Make free text fit its keyword where that cannot change its meaning: line breaks become
    spaces, and a ``thing`` or ``name`` too long is cut with an ellipsis. Numbers, amounts, times
    and codes are never cut (a cut amount would be a wrong amount): ``problem`` refuses them."""
    text = _CONTROL.sub(" ", text).strip()
    kind = kind_of(key)
    if kind == "thing" and len(text) > LIMITS["thing"]:
        return text[: LIMITS["thing"] - 1] + "…"
    if kind == "name":
        limit = 10 if _HAS_CJK.search(text) else 20
        if len(text) > limit:
            return text[: limit - 1] + "…"
    return text
