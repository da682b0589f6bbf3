"""The one JSON error shape: `{"error": {"code", "message", "details"?}}` with the right status.

Domain errors carry their own code and status. Errors Sanic raises itself (an unknown path, a wrong
method, a body that is too large) are rendered through the classes below, so they too have a stable
code and a message in both languages. Anything unexpected becomes a 500 with a generic message (the
traceback goes to the log, never to the client).

`message` is Chinese unless the request's `Accept-Language` prefers English (SPEC §9: people read
Chinese); `Content-Language` says which was chosen. `code` never changes with the language.
"""

from __future__ import annotations

import logging

from sanic import Sanic
from sanic.exceptions import SanicException
from sanic.request import Request
from sanic.response import JSONResponse, json

from models.errors import DEFAULT_LANG, DomainError, NotFound

log = logging.getLogger("market.errors")


class BadRequest(DomainError):
    code, status = "bad_request", 400
    message, message_zh = "The request could not be read.", "无法解析该请求。"
    hint = "The HTTP request itself is malformed."


class MethodNotAllowed(DomainError):
    code, status = "method_not_allowed", 405
    message, message_zh = "This method is not allowed here.", "此路径不支持该请求方法。"
    hint = "Wrong HTTP method for this path (see the OpenAPI document)."


class RequestTimeout(DomainError):
    code, status = "request_timeout", 408
    message, message_zh = "The request took too long to arrive.", "请求超时。"
    hint = "The body was not received in time; retry."


class PayloadTooLarge(DomainError):
    code, status = "payload_too_large", 413
    message, message_zh = "The request body is too large.", "请求内容过大。"
    hint = "The body exceeds the server's limit (12 MB)."


class UnsupportedMediaType(DomainError):
    code, status = "unsupported_media_type", 415
    message, message_zh = "This content type is not supported.", "不支持该内容类型。"
    hint = "Send JSON (application/json), or multipart/form-data for uploads."


class Unavailable(DomainError):
    code, status = "unavailable", 503
    message, message_zh = "The service is unavailable; try again shortly.", "服务暂不可用，请稍后重试。"
    hint = "The server is starting or overloaded; retry later."


class InternalError(DomainError):
    code, status = "internal_error", 500
    message, message_zh = "Internal error.", "服务器内部错误。"
    hint = "A bug on our side (it is logged); retry later or report it."


_SANIC_ERRORS: dict[int, type[DomainError]] = {
    400: BadRequest, 404: NotFound, 405: MethodNotAllowed, 408: RequestTimeout, 413: PayloadTooLarge,
    415: UnsupportedMediaType, 503: Unavailable,
}


def request_lang(request: Request | None) -> str:
    """`en` when Accept-Language prefers English over Chinese, else zh-CN (the default)."""
    header = request.headers.get("accept-language", "") if request is not None else ""
    best, best_q = DEFAULT_LANG, 0.0
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = "en" if tag.startswith("en") else DEFAULT_LANG if tag.startswith("zh") else None
        if lang is not None and q > best_q:
            best, best_q = lang, q
    return best


def error_response(request: Request | None, exc: DomainError, headers: dict | None = None) -> JSONResponse:
    lang = request_lang(request)
    all_headers = {"Content-Language": lang, "Vary": "Accept-Language", **(headers or {})}
    return json({"error": exc.to_dict(lang)}, status=exc.status, headers=all_headers)


def render_domain_error(request: Request, exc: DomainError) -> JSONResponse:
    return error_response(request, exc, getattr(exc, "headers", None))


def render_sanic_error(request: Request, exc: SanicException) -> JSONResponse:
    status = getattr(exc, "status_code", 500) or 500
    kind = _SANIC_ERRORS.get(status, InternalError if status >= 500 else BadRequest)
    error = kind()
    if kind is BadRequest and status != 400:
        error.status = status  # an odd 4xx Sanic raised: keep its status, say "bad request"
    headers = getattr(exc, "headers", None) or {}
    return error_response(request, error, headers)


def render_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(request, InternalError())


def install(app: Sanic) -> None:
    app.error_handler.add(DomainError, render_domain_error)
    app.error_handler.add(SanicException, render_sanic_error)
    app.error_handler.add(Exception, render_unexpected)
