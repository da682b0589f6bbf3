"""The one JSON error shape: `{"error": {"code", "message", "details"?}}` with the right status.

Domain errors carry their own code and status. Anything unexpected becomes a 500 with a generic
message (the traceback goes to the log, never to the client).
"""

from __future__ import annotations

import logging

from sanic import Sanic
from sanic.exceptions import SanicException
from sanic.request import Request
from sanic.response import JSONResponse, json

from models.errors import DomainError

log = logging.getLogger("market.errors")

_SANIC_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    body = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


def render_domain_error(request: Request, exc: DomainError) -> JSONResponse:
    return json({"error": exc.to_dict()}, status=exc.status, headers=getattr(exc, "headers", None))


def render_sanic_error(request: Request, exc: SanicException) -> JSONResponse:
    status = getattr(exc, "status_code", 500) or 500
    code = getattr(exc, "error_code", None) or _SANIC_CODES.get(status, "error")
    message = str(exc) if status < 500 else "Internal error."
    headers = getattr(exc, "headers", None) or {}
    return json(error_body(code, message, getattr(exc, "extra", None) if status < 500 else None), status=status, headers=headers)


def render_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return json(error_body("internal_error", "Internal error."), status=500)


def install(app: Sanic) -> None:
    app.error_handler.add(DomainError, render_domain_error)
    app.error_handler.add(SanicException, render_sanic_error)
    app.error_handler.add(Exception, render_unexpected)
