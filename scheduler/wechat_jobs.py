"""Scheduler jobs that talk to WeChat (filled in by the WeChat integration work)."""

from __future__ import annotations

from typing import Any

from server.config import Config


def jobs(config: Config) -> list[tuple[Any, float, str]]:
    """(coroutine function, interval seconds, job id) for every WeChat job."""
    return []
