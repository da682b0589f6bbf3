"""OpenAPI helpers: one decorator documents an endpoint's body, success and every error it may give."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sanic_ext import openapi

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable"},
                "message": {"type": "string", "description": "for people"},
                "details": {"type": "object", "additionalProperties": True},
            },
        }
    },
}

ERROR_REF = {"$ref": "#/components/schemas/Error"}  # registered once by miniprogram_api.install

STATUS_TEXT = {
    400: "invalid input (code says which: invalid_input, insufficient_balance, price_out_of_range, …)",
    401: "no valid session token (unauthorized, token_expired)",
    403: "not allowed (wrong_end, user_banned, own_task, forbidden)",
    404: "not found, or not yours",
    409: "the state moved on (slot_taken, invalid_transition, deadline_passed, …)",
    413: "too large",
    429: "rate limited (see Retry-After)",
    503: "WeChat unavailable; retry",
}


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in OpenAPI 3.0 terms (pydantic emits JSON Schema 2020-12)."""
    return _openapi30(model.model_json_schema(ref_template="#/components/schemas/{model}"))


def _openapi30(node: Any) -> Any:
    if isinstance(node, list):
        return [_openapi30(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _openapi30(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    variants = node.get("anyOf")
    if variants and any(v == {"type": "null"} for v in variants):
        rest = [v for v in variants if v != {"type": "null"}]
        node.pop("anyOf")
        node.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        node["nullable"] = True
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node.get(bound), bool):
            node[flag] = node.pop(bound)
            node[bound] = True
    return node


def doc(
    summary: str,
    *,
    tag: str,
    body: type[BaseModel] | None = None,
    ok: dict[str, Any] | None = None,
    ok_status: int = 200,
    errors: tuple[int, ...] = (400, 401, 403, 404, 409, 429),
    secured: bool = True,
    description: str | None = None,
    params: tuple[tuple[str, str, str], ...] = (),
    body_content: dict[str, Any] | None = None,
    ok_content: dict[str, Any] | None = None,
):
    """Decorate a handler with its complete OpenAPI description."""

    def decorate(handler):
        decorators = [
            openapi.summary(summary),
            openapi.tag(tag),
            openapi.response(ok_status, ok_content or {"application/json": ok or {"type": "object"}}, "success"),
        ]
        if description:
            decorators.append(openapi.description(description))
        if body is not None:
            decorators.append(openapi.body({"application/json": _schema(body)}, required=True))
        if body_content is not None:
            decorators.append(openapi.body(body_content, required=True))
        for status in errors:
            decorators.append(openapi.response(status, {"application/json": ERROR_REF}, STATUS_TEXT[status]))
        if secured:
            decorators.append(openapi.secured("token"))
        for name, kind, text in params:
            decorators.append(openapi.parameter(name, QUERY_SCHEMAS.get(name, {"integer": int, "string": str}[kind]), "query", description=text))
        for d in reversed(decorators):
            handler = d(handler)
        return handler

    return decorate


QUERY_SCHEMAS: dict[str, Any] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20},
    "cursor": {"type": "integer", "format": "int64", "minimum": 1},
    "min_price_fen": {"type": "integer", "minimum": 0},
    "max_price_fen": {"type": "integer", "minimum": 0},
}


def obj(**props: Any) -> dict[str, Any]:
    """A small inline object schema: obj(id="integer", title="string")."""
    return {
        "type": "object",
        "properties": {k: (v if isinstance(v, dict) else {"type": v}) for k, v in props.items()},
    }


def page_of(item: dict[str, Any]) -> dict[str, Any]:
    return obj(items={"type": "array", "items": item}, next_cursor={"type": "string", "nullable": True})
