"""The text rule of `models/inputs.py` (no control characters) applied to every request before
any handler runs: every query parameter (names and values, documented or
not) and every form field — the Mini Program API's query strings, the admin panel's search and
filter parameters and all of its forms, the WeChat callbacks' and the sandbox's URLs.

JSON bodies are checked field by field by the API's request schemas (`miniprogram_api/schemas.py`),
which know which fields are multi-line. A form field is one line unless its route names it as
multi-line (`ctx_multiline=("note",)` on the route: the admin panel's textareas).

A refusal is `InvalidInput` (400 `invalid_input`, naming the field): JSON for the API, the panel's
error page for the panel (its blueprint renders it).
"""

from __future__ import annotations

from sanic import Sanic
from sanic.request import Request

from models import inputs
from models.errors import InvalidInput

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def check_request(request: Request) -> None:
    """Raise InvalidInput for the first query parameter or form field that breaks the rule. (Path
    parameters reach handlers still percent-encoded — Sanic does not unquote them — so `%00` in a
    path is three harmless characters there: an unknown id or ref, 404.)"""
    for name, values in request.args.items():
        _check(name, name, "query")
        for value in values:
            _check(value, name, "query")
    if request.content_type.split(";")[0].strip().lower() in FORM_TYPES and request.form:
        multiline = set(getattr(request.route.ctx, "multiline", ()) if request.route else ())
        for name, values in request.form.items():
            _check(name, name, "form")
            for value in values:
                _check(value, name, "form", multiline=name in multiline)


def _check(value: str, name: str, where: str, *, multiline: bool = False) -> None:
    bad = inputs.forbidden_character(value, multiline=multiline)
    if bad is not None:
        shown = name if inputs.forbidden_character(name) is None else "?"  # never echo the bad name
        raise InvalidInput("The {where} parameter {field} must not contain control characters ({character}).",
                           zh="参数 {field} 不能包含控制字符（{character}）。", field=shown, where=where,
                           character=inputs.describe(bad))


def install(app: Sanic) -> None:
    @app.on_request(priority=100)  # before any other middleware reads the request
    async def refuse_control_characters(request: Request):
        check_request(request)
