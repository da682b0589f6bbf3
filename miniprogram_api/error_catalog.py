"""The error catalog: every error code the API can answer, generated from the error classes.

Served as `GET /api/v1/errors` and committed as `docs/errors.json` (`python -m server errors`); a
test fails when the committed file differs. An entry: the code, its HTTP status, its message in each
language (templates over `details`: `{min_fen}` shows as ¥1.00), what it means for a client, and
the JSON Schema of its `details`.
"""

from __future__ import annotations

import importlib
from typing import Any

from models.errors import DEFAULT_LANG, LANGS, DomainError

# Every module that defines DomainError subclasses the API can answer with (the operators' panel
# has its own errors, in models/operators.py, never sent to a Mini Program).
MODULES = (
    "models.errors", "models.recharges", "models.sessions", "models.uploads", "miniprogram_api.auth", "miniprogram_api.account",
    "miniprogram_api.public", "miniprogram_api.ws", "server.errors", "server.ratelimit", "server.wechat_services", "server.wechat_errors",
    "models.records", "models.blocks",
)
# Codes of the operators' panel and of WeChat's callbacks, never sent to a Mini Program.
NOT_FOR_THE_APPS = {"invalid_settings", "amount_mismatch", "transaction_id_reused", "payout_still_at_wechat",
                    "payout_check_under_way"}


def all_error_classes() -> list[type[DomainError]]:
    for name in MODULES:
        importlib.import_module(name)
    seen: list[type[DomainError]] = []
    todo = [DomainError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.append(sub)
                todo.append(sub)
    return [c for c in seen if c.__module__ in MODULES and c.code not in NOT_FOR_THE_APPS]


def one_per_code(classes: list[type[DomainError]]) -> dict[str, type[DomainError]]:
    """Several classes may share a code (SessionRevoked and Unauthorized): the most general speaks."""
    by_code: dict[str, type[DomainError]] = {}
    for cls in sorted(classes, key=lambda c: (c.code, c.__mro__.index(DomainError), c.__name__)):
        by_code.setdefault(cls.code, cls)
    return by_code


def catalog() -> dict[str, Any]:
    entries = []
    for code, cls in sorted(one_per_code(all_error_classes()).items(), key=lambda kv: (kv[1].status, kv[0])):
        entries.append({
            "code": code,
            "status": cls.status,
            "message": {"zh-CN": cls.message_zh, "en": cls.message},
            "meaning": cls.hint,
            "details": {"type": "object", "additionalProperties": False, "properties": dict(sorted(cls.details_schema.items()))},
        })
    return {"languages": list(LANGS), "default_language": DEFAULT_LANG, "errors": entries}
