"""Logs: one JSON object per line (or plain text for `make run`), a request id on every line a
request causes, and nothing secret.

- `request_id` is a context variable. The server sets it for each HTTP request (from a well-formed
  `X-Request-ID` header, e.g. nginx's `$request_id`, else a new one) and answers it back in the same
  header. Everything the request runs inherits it: the transition's log line and audit row, the
  outbox rows it writes (column `request_id`, so the scheduler that later sends the subscription
  message logs under the same id) and the WeChat calls made for it.
- Redaction happens in the formatter, on the final text of every record, whoever logged it (our
  code, Sanic, httpx, urllib3): the configured secrets by value, `access_token=` / `secret=` /
  `js_code=` / `token=` / `refresh_token=` / `password=` values, `Bearer` credentials, our access and
  refresh tokens, PEM
  blocks, and WeChat openids/unionids (kept to their first 6 characters). So even a DEBUG-level log
  of the WeChat SDK's URLs shows no secret (tests/server/test_logs.py greps a full flow's logs).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import secrets
import sys
from contextvars import ContextVar
from typing import Iterable

request_id: ContextVar[str | None] = ContextVar("market_request_id", default=None)

REQUEST_ID_HEADER = "X-Request-ID"
_GOOD_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")

_QUERY_SECRET = re.compile(
    r"(?i)\b(access_token|refresh_token|secret|appsecret|js_code|token|password|passwd|sign|paysign|session_key|apiv3_key)"
    r"(=|\"?\s*:\s*\"?)([^&\s\"',}]+)")
_BEARER = re.compile(r"(?i)\b(bearer|WECHATPAY2-SHA256-RSA2048)\s+[^\s\"',]+")
# Our access tokens (`<kid>.<payload>.<mac>`, the payload base64 JSON: "eyJ…") and refresh tokens
# (`<session id>.<43-character secret>`, models/sessions.py), wherever they appear.
_SESSION_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])(?:[A-Za-z0-9_-]{8}\.)?eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}")
_REFRESH_TOKEN = re.compile(r"(?<![A-Za-z0-9_.-])\d{1,18}\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")
_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.S)
# WeChat openids and unionids: 28 URL-safe characters starting with "o".
_OPENID = re.compile(r"(?<![A-Za-z0-9_-])(o[A-Za-z0-9_-]{5})[A-Za-z0-9_-]{22}(?![A-Za-z0-9_-])")

_known_secrets: set[str] = set()


def new_request_id() -> str:
    return secrets.token_hex(8)


def accept_request_id(header: str | None) -> str:
    """The caller's id if it looks like one (nginx's $request_id is 32 hex), else a new one."""
    if header and _GOOD_REQUEST_ID.match(header):
        return header
    return new_request_id()


def add_secrets(values: Iterable[str | None]) -> None:
    """Values that must never appear in a log line (replaced by [secret] wherever they occur)."""
    for value in values:
        if value and len(value) >= 6:
            _known_secrets.add(value)


def redact(text: str) -> str:
    for value in _known_secrets:
        if value in text:
            text = text.replace(value, "[secret]")
    text = _PEM.sub("[pem]", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = _SESSION_TOKEN.sub("[session-token]", text)
    text = _REFRESH_TOKEN.sub("[refresh-token]", text)
    text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
    return _OPENID.sub(lambda m: m.group(1) + "…", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC), level, logger, msg, request_id, process, pid, exc."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid:
            line["request_id"] = rid
        line["process"] = self.process
        line["pid"] = record.process
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = getattr(record, "request_id", None) or request_id.get()
        return redact(f"{text} [rid={rid}]" if rid else text)


_HANDLER_MARK = "_market_handler"


def setup(config, process: str, *, stream=None) -> logging.Handler:
    """Send every logger's records through one redacting handler on stderr (idempotent per process)."""
    from server.keys import DEVELOPMENT_KEY

    add_secrets(_config_secrets(config) + [DEVELOPMENT_KEY])
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(process) if config.log_format == "json" else TextFormatter(process))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(getattr(logging, config.log_level, logging.INFO))
    # Sanic's own loggers carry handlers of their own; route them through ours instead.
    for name in ("sanic.root", "sanic.error", "sanic.access", "sanic.server", "sanic.websockets"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # not a line per job run
    return handler


def _config_secrets(config) -> list[str]:
    """Every secret the configuration knows: session keys (current and previous), metrics token, WeChat secrets and keys,
    database and Redis passwords."""
    from urllib.parse import urlsplit

    from wechat.config import SECRET_ENV

    values = [config.secret_key, *config.previous_secret_keys, config.metrics.token]
    values += [os.environ.get(name) for name in SECRET_ENV.values()]
    for url in (config.database_url, config.redis_url):
        try:
            values.append(urlsplit(url).password)
        except ValueError:
            pass
    return values
