"""The list pages' filters, checked (issue 13 defect 5): `publisher=abc`, `from=2026-13-45` or
`state=bogus` used to be dropped silently and the whole list shown. Now each bad value is named
with what was wrong, the list is not shown, and the page answers 400.

`check(args, spec)` only judges; the list handlers keep reading the values they understand.
"""

from __future__ import annotations

import datetime as dt
from typing import Iterable

from server.admin import units

# A spec: {query parameter: kind}. Kinds: "id" (a positive whole number), "day" (YYYY-MM-DD), or a
# tuple of the allowed values.
Spec = dict[str, "str | tuple[str, ...]"]


def check(args, spec: Spec, t) -> dict[str, str]:
    """{parameter: what was wrong, translated} for every filled-in parameter that is not valid."""
    errors: dict[str, str] = {}
    for name, kind in spec.items():
        raw = (args.get(name) or "").strip()
        if not raw:
            continue
        if kind == "id":
            if units.parse_id(raw) is None or units.parse_id(raw) == 0:
                errors[name] = t("“{v}” is not an ID (a whole number such as 123).", v=raw[:40])
        elif kind == "day":
            if units.parse_day(raw) is None:
                errors[name] = t("“{v}” is not a date (YYYY-MM-DD, e.g. 2026-03-31).", v=raw[:40])
        elif raw not in kind:  # a tuple of allowed values
            errors[name] = t("“{v}” is not one of: {choices}.", v=raw[:40], choices="、".join(t(c) for c in kind))
    start, end = units.parse_day(args.get("from")), units.parse_day(args.get("to"))
    if start and end and start > end and "from" in spec:
        errors["to"] = t("“To” is before “From”.")
    return errors


# How each parameter is labelled on its form (i18n keys the templates already use).
LABELS = {"state": "State", "publisher": "Publisher #", "worker": "Worker #", "task": "Task #", "from": "From", "to": "To", "inviter": "Inviter",
          "actor_kind": "Who", "actor_id": "Actor #", "target_id": "Target #"}


def choices(values: Iterable) -> tuple[str, ...]:
    return tuple(getattr(v, "value", v) for v in values)


TASKS: Spec = {"publisher": "id", "from": "day", "to": "day"}
ORDERS: Spec = {"publisher": "id", "worker": "id", "task": "id", "from": "day", "to": "day"}
AUDIT: Spec = {"actor_kind": ("user", "operator", "timer", "wechat", "system"), "actor_id": "id", "target_id": "id",
               "from": "day", "to": "day"}
