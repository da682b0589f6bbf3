"""WeChat wiring of the server (filled in by the WeChat integration work)."""

from __future__ import annotations

from sanic import Sanic


def install(app: Sanic) -> None:
    """Mount the sandbox and the WeChat notification endpoints; build the clients per worker."""
