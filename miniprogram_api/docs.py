"""The OpenAPI document of the Mini Program API, built from the code.

Every API handler is decorated with `doc(...)`: a summary, a description, its body and response
models (miniprogram_api/schemas.py), its query parameters. `build_document(app)` walks the app's
router and writes one operation per route, adding what the code itself says:

- path parameters and their schemas from the route;
- the error codes each operation can answer, from its source (`raises.py`: what it and the
  functions it calls raise), plus what its decorators and helpers add (`require` → 401/403,
  `limit` → 429, `parse`/`page_args`/`query_*` → 400, a path id → that id's 404);
- an example of every body and response, made from the schemas (and checked against them).

The document is OpenAPI 3.1 (its schemas are JSON Schema 2020-12, as pydantic writes them). It is
served at `/docs/openapi.json`, committed as `docs/openapi.json` (`python -m server openapi`), and the
Mini Programs' TypeScript types are generated from it.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import textwrap
from typing import Any, Callable

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from models.errors import DomainError, InvalidInput, NotFound
from models.events import TIME_PATTERN

VERSION = "1.1.0"
TITLE = "任务市场 Mini Program API (Timed task marketplace)"
EXAMPLE_TIME = "2026-11-25T10:52:42.162808Z"
EXAMPLE_BASE = "https://api.example.com"
ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}

DESCRIPTION = """\
The HTTP API of the two WeChat Mini Programs of the marketplace: the **Worker** Mini Program
(`/api/v1/worker/...`) and the **Publisher** Mini Program (`/api/v1/publisher/...`). The guide —
flows, countdowns, the WebSocket and its events (`docs/events.json`) — is `docs/api.md`.

- **Money** is an integer number of fen (1 yuan = 100 fen): `"unit_price_fen": 1200` is ¥12.00.
- **Times** are UTC, `2026-11-25T10:52:42.162808Z`. Views with a deadline carry the server's `now`:
  count down against it, never against the phone's clock.
- **Errors** are `{"error": {"code", "message", "details"?}}`. Branch on `code` (each operation
  lists the codes it can answer); show `message` to people: it is Chinese unless
  `Accept-Language` prefers English. The full catalog: `GET /api/v1/errors` (`docs/errors.json`).
- **Sessions**: `POST /{end}/login` answers a 15-minute access token (`Authorization: Bearer …`) and a
  single-use refresh token. On `token_expired` trade the refresh token for a new pair at
  `POST /{end}/refresh`; `refresh_token_invalid` (or `unauthorized`) means log in again.
- **Retries**: a call that creates something takes a client-chosen `request_id`. Repeating it returns
  the first result with HTTP 200 and `"replayed": true` (a creation answers 201, `"replayed": false`).
- **Images**: views carry short-lived signed URLs (`*_url`) an `<image src>` can load without a token.
- **Reaching the server from a phone**: HTTPS and WSS only, on a domain registered in the Mini
  Program console (开发管理 → 开发设置 → 服务器域名: request, uploadFile, downloadFile and socket
  domains) — see docs/api.md.
"""

TAGS = [
    {"name": "worker", "description": "The Worker Mini Program: the task hall, one-click take, my orders, and my account."},
    {"name": "publisher", "description": "The Publisher Mini Program: recharge, publish, review, and my account."},
    {"name": "public", "description": "No session needed: the error catalog and signed image links."},
]


@dataclasses.dataclass(frozen=True)
class Query:
    name: str
    schema: dict[str, Any]
    description: str


@dataclasses.dataclass(frozen=True)
class Contract:
    summary: str
    description: str
    tag: str
    body: type[BaseModel] | None
    ok: type[BaseModel] | None
    ok_status: int
    replay: bool
    query: tuple[Query, ...]
    secured: bool
    errors: tuple[type[DomainError], ...]
    unreachable: tuple[type[DomainError], ...]
    body_content: dict[str, Any] | None
    ok_content: dict[str, Any] | None
    handler: Callable | None = None


def doc(
    summary: str,
    *,
    description: str,
    tag: str,
    body: type[BaseModel] | None = None,
    ok: type[BaseModel] | None = None,
    ok_status: int = 200,
    replay: bool = False,
    query: tuple[Query, ...] = (),
    secured: bool = True,
    errors: tuple[type[DomainError], ...] = (),
    unreachable: tuple[type[DomainError], ...] = (),
    body_content: dict[str, Any] | None = None,
    ok_content: dict[str, Any] | None = None,
):
    """Describe a handler for the OpenAPI document. `errors`: errors the source cannot show (raised
    by code we cannot read); `unreachable`: errors the source shows that the API cannot reach."""
    assert description.strip(), f"{summary}: every operation needs a description"

    def decorate(handler):
        handler.__contract__ = Contract(summary, description, tag, body, ok, ok_status, replay, tuple(query), secured,
                                        tuple(errors), tuple(unreachable), body_content, ok_content, handler)
        return handler

    return decorate


def q_limit() -> Query:
    return Query("limit", {"type": "integer", "minimum": 1, "maximum": 50, "default": 20}, "page size (1–50, default 20)")


def q_cursor() -> Query:
    return Query("cursor", {"$ref": "#/components/schemas/Cursor"}, "the next_cursor of the previous page (opaque)")


def q_status(enum: type) -> Query:
    return Query("status", {"$ref": f"#/components/schemas/{enum.__name__}"}, "only this state")


PAGE_QUERY = (q_cursor(), q_limit())


# --- the errors of an operation ------------------------------------------------------------------
def operation_errors(contract: Contract, path_params: list[str]) -> dict[str, type[DomainError]]:
    """code → class of every error the operation can answer with."""
    from miniprogram_api import NOT_FOUND
    from miniprogram_api.auth import TokenExpired, Unauthorized
    from miniprogram_api.raises import raises
    from models.errors import UserBanned, WrongEnd
    from server.ratelimit import RateLimited

    handler = contract.handler
    found: set[type[DomainError]] = set(raises(handler)) | set(contract.errors)
    calls = _called_names(handler)
    if contract.secured:
        found |= {Unauthorized, TokenExpired, WrongEnd, UserBanned}
    if "limit" in calls:
        found.add(RateLimited)
    # Any query string (documented parameters or not) is checked for control characters before the
    # handler runs (server/inputs.py): every operation can answer invalid_input.
    found.add(InvalidInput)
    if contract.body is not None or contract.body_content is not None:
        from server.errors import PayloadTooLarge

        found.add(PayloadTooLarge)  # Sanic refuses a body over REQUEST_MAX_SIZE before any handler
    for name in path_params:
        found.add(NOT_FOUND.get(name, NotFound))
        if name in NOT_FOUND:
            found.add(NotFound)  # an id that is not a whole number matches no route: plain not_found
    found -= set(contract.unreachable)
    by_code: dict[str, type[DomainError]] = {}
    for cls in sorted(found, key=lambda c: (c.status, c.code, c.__name__)):
        by_code.setdefault(cls.code, cls)
    return by_code


def _called_names(handler: Callable) -> set[str]:
    import inspect as _inspect

    source = textwrap.dedent(_inspect.getsource(_inspect.unwrap(handler)))
    # Plain-name calls only: `limit(request, ...)` is the rate limiter, `q.limit(n)` is not.
    return {node.func.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}


SAMPLE_DETAILS = {"field": "title", "status": "in_progress", "event": "submit", "end": "worker",
                  "deadline_at": EXAMPLE_TIME, "expected": "open, full", "account": "available"}


def error_example(cls: type[DomainError], lang: str = "zh-CN") -> dict[str, Any]:
    from models.errors import placeholders

    details = {}
    for name in sorted(placeholders(cls.message) | placeholders(cls.message_zh)):
        details[name] = SAMPLE_DETAILS.get(name, 1000 if name.endswith("_fen") else 3)
    error = cls(**details)
    return {"error": error.to_dict(lang)}


def _error_response(status: int, classes: list[type[DomainError]]) -> dict[str, Any]:
    lines = "\n".join(f"- `{c.code}`: {c.hint}" for c in classes)
    return {
        "description": f"Error codes:\n{lines}",
        "content": {"application/json": {
            "schema": {
                "type": "object", "required": ["error"], "additionalProperties": False,
                "properties": {"error": {
                    "type": "object", "required": ["code", "message"], "additionalProperties": False,
                    "properties": {
                        "code": {"type": "string", "enum": [c.code for c in classes]},
                        "message": {"type": "string", "description": "for people: Chinese, or English by Accept-Language"},
                        "details": {"type": "object", "description": "see the error catalog (GET /api/v1/errors)"},
                    },
                }},
            },
            "examples": {c.code: {"$ref": f"#/components/examples/error.{c.code}"} for c in classes},
        }},
    }


# --- examples made from the schemas --------------------------------------------------------------
def example_of(schema: dict[str, Any], components: dict[str, Any], name: str = "") -> Any:
    """A value that satisfies `schema` (a test validates every example against its schema)."""
    if "$ref" in schema:
        ref = schema["$ref"].rsplit("/", 1)[-1]
        return example_of(components[ref], components, name)
    if "examples" in schema and schema["examples"]:
        return schema["examples"][0]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        outer = {k: v for k, v in schema.items() if k in ("format", "pattern")}  # e.g. a nullable URL
        return example_of(outer | options[0], components, name) if options else None
    if "allOf" in schema:
        return example_of(schema["allOf"][0], components, name)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {k: example_of(v, components, k) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [example_of(schema.get("items", {}), components, name)]
    if kind == "integer":
        if name.endswith("_fen"):
            return 1200
        if name.endswith("_s"):
            return 300
        if name.endswith("_bp"):
            return 1000
        return max(int(schema.get("minimum", 1)), 1) if name.endswith("id") or name == "id" else int(schema.get("minimum", 3) or 3)
    if kind == "boolean":
        return False
    if kind == "string":
        if schema.get("pattern") == TIME_PATTERN or schema.get("format") == "date-time":
            return EXAMPLE_TIME
        if schema.get("format") == "uri":
            return f"{EXAMPLE_BASE}/api/v1/images/up_3sJx9mQbV2cT1yZk8LwPa7Dd?exp=1795600800&sig=Qm9v"
        if schema.get("pattern", "").startswith("^[1-9]"):
            return "120"
        if schema.get("pattern", "").startswith("^up_"):
            return "up_3sJx9mQbV2cT1yZk8LwPa7Dd"
        if name in ("avatar", "proof_image", "appeal_evidence", "ref"):
            return "up_3sJx9mQbV2cT1yZk8LwPa7Dd"
        return EXAMPLE_STRINGS.get(name, "text")
    return None


EXAMPLE_STRINGS = {
    "title": "扫码关注公众号", "nickname": "小王", "invite_code": "7KQ2MXPA", "scene": "7KQ2MXPA", "token": "eyJ1aWQiOjQyfQ.c2ln",
    "appid": "wx8a1b2c3d4e5f6a7b", "appId": "wx8a1b2c3d4e5f6a7b", "event": "order_approved", "template_id": "kX9sT2-order-approved",
    "page": "pages/order/detail?id={order_id}", "share_path": "pages/index/index?scene=7KQ2MXPA", "instructions": "用微信扫描二维码并关注。",
    "reject_reason": "截图看不清", "appeal_reason": "已按要求完成", "proof_text": "已关注", "request_id": "rq-20261125-01",
    "out_trade_no": "R20261125A1B2C3D4E5F6A7B8", "mchId": "1900000001", "openId": "oAbCdEf0123456789", "package": "prepay_id=wx25105242",
    "nonceStr": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", "timeStamp": "1795600800", "paySign": "c2lnbmF0dXJl",
    "message": "单价必须在 ¥1.00 到 ¥100.00 之间。", "code": "price_out_of_range", "memo": "approve",
}


# --- the document --------------------------------------------------------------------------------
def _schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    """Every model (and enum) under its own name, as JSON Schema 2020-12."""
    _, defs = models_json_schema([(m, "validation") for m in models], ref_template="#/components/schemas/{model}")
    return _strip_titles(defs.get("$defs", {}))


def _strip_titles(node: Any) -> Any:
    """Drop pydantic's generated titles ("Unit Price Fen"): noise in generated types. Values (examples,
    defaults, enums) are kept as they are: a key named "title" there is data."""
    if isinstance(node, dict):
        return {k: (v if k in ("examples", "example", "default", "const", "enum") else _strip_titles(v))
                for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


_PARAM = re.compile(r"<([a-z_]+)(?::([a-z]+))?>")


def _openapi_path(route_path: str) -> tuple[str, list[tuple[str, str]]]:
    path = "/" + route_path.lstrip("/")
    params = [(m.group(1), m.group(2) or "str") for m in _PARAM.finditer(path)]
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path), params


def contracts(app) -> list[tuple[str, str, Contract, list[tuple[str, str]]]]:
    """(method, OpenAPI path, contract, path params) of every documented route."""
    out = []
    for route in app.router.routes:
        contract = getattr(route.handler, "__contract__", None)
        if contract is None:
            continue
        path, params = _openapi_path(route.path)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            out.append((method, path, contract, params))
    return sorted(out, key=lambda t: (t[1], t[0]))


def build_document(app) -> dict[str, Any]:
    from miniprogram_api import schemas as S
    from miniprogram_api.error_catalog import all_error_classes, one_per_code
    from models.orders import OrderStatus
    from models.tasks import TaskStatus

    ops = contracts(app)
    models = {S.ErrorCatalogOut}
    for _, _, c, _ in ops:
        models |= {m for m in (c.body, c.ok) if m is not None}
    components = _schemas(sorted(models, key=lambda m: m.__name__) + [_enums_holder(OrderStatus, TaskStatus)])
    components.pop("EnumsHolder", None)
    components["Cursor"] = {"type": "string", "pattern": r"^[1-9][0-9]{0,17}$",
                            "description": "opaque page cursor: pass a next_cursor back unchanged"}
    codes = sorted({c.code for c in all_error_classes()})
    components["ErrorCode"] = {"type": "string", "enum": codes, "description": "every error code (GET /api/v1/errors)"}
    components["Error"] = {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "properties": {"error": {
            "type": "object", "required": ["code", "message"], "additionalProperties": False,
            "properties": {"code": {"$ref": "#/components/schemas/ErrorCode"}, "message": {"type": "string"},
                           "details": {"type": "object"}},
        }},
    }
    components = dict(sorted(components.items()))

    paths: dict[str, dict[str, Any]] = {}
    for method, path, c, params in ops:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, c, params, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "servers": [
            {"url": "/", "description": "the server that serves this document"},
            {"url": "https://{domain}", "description": "production: the HTTPS domain registered as the Mini Programs' request domain",
             "variables": {"domain": {"default": "api.example.com"}}},
        ],
        "tags": TAGS,
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer", "bearerFormat": "session token from POST /{end}/login"}},
            "schemas": components,
            "examples": {f"error.{c.code}": {"summary": c.hint, "value": error_example(c)}
                         for c in one_per_code(all_error_classes()).values()},
        },
    }


def _enums_holder(*enums: type) -> type[BaseModel]:
    """A throwaway model whose fields make pydantic publish these enums under their own names."""
    return type("EnumsHolder", (BaseModel,), {"__annotations__": {e.__name__.lower(): e for e in enums}})


def _operation(method: str, path: str, c: Contract, params: list[tuple[str, str]], components: dict[str, Any]) -> dict[str, Any]:
    end = path.split("/")[3] if path.startswith("/api/v1/") and path.split("/")[3] in ("worker", "publisher") else None
    name = c.handler.__name__
    op: dict[str, Any] = {
        "operationId": f"{end}_{name}" if end else name,
        "summary": c.summary,
        "description": textwrap.dedent(c.description).strip(),
        "tags": [c.tag],
        "security": [{"token": []}] if c.secured else [],
    }
    parameters = []
    for pname, kind in params:
        schema = dict(ID_SCHEMA) if kind == "int" else {"type": "string", "maxLength": 64}
        if pname == "ref":
            schema = {"type": "string", "pattern": r"^up_[A-Za-z0-9_-]{1,37}$"}
        parameters.append({"name": pname, "in": "path", "required": True, "schema": schema,
                           "example": example_of(schema, components, pname)})
    for q in c.query:
        parameters.append({"name": q.name, "in": "query", "required": False, "schema": q.schema, "description": q.description})
    if parameters:
        op["parameters"] = parameters
    if c.body is not None:
        schema = {"$ref": f"#/components/schemas/{c.body.__name__}"}
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": schema, "example": example_of(schema, components)}}}
    elif c.body_content is not None:
        op["requestBody"] = {"required": True, "content": c.body_content}
    responses: dict[str, Any] = {}
    if c.ok_content == {}:  # no body (204)
        responses[str(c.ok_status)] = {"description": "success (no body)"}
    elif c.ok_content is not None:
        responses[str(c.ok_status)] = {"description": "success", "content": c.ok_content}
    else:
        schema = {"$ref": f"#/components/schemas/{c.ok.__name__}"}
        body = {"application/json": {"schema": schema, "example": example_of(schema, components)}}
        responses[str(c.ok_status)] = {"description": "created (replayed: false)" if c.replay else "success", "content": body}
        if c.replay:
            replayed = example_of(schema, components) | {"replayed": True}
            responses["200"] = {"description": "a repeated request_id: the first result, unchanged (replayed: true)",
                                "content": {"application/json": {"schema": schema, "example": replayed}}}
    by_status: dict[int, list[type[DomainError]]] = {}
    for cls in operation_errors(c, [p for p, _ in params]).values():
        by_status.setdefault(cls.status, []).append(cls)
    for status in sorted(by_status):
        responses[str(status)] = _error_response(status, by_status[status])
    op["responses"] = dict(sorted(responses.items()))
    return op


def error_codes_by_operation(app) -> dict[tuple[str, str], dict[str, int]]:
    """(METHOD, OpenAPI path) → {code: status} — what the tests compare provoked errors with."""
    out = {}
    for method, path, c, params in contracts(app):
        out[(method, path)] = {code: cls.status for code, cls in operation_errors(c, [p for p, _ in params]).items()}
    return out
