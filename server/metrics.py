"""The metric objects (prometheus-client) and the one-line hooks the code calls to move them.

Multi-process strategy (issue 15): Sanic runs several worker processes, and the embedded scheduler
is one more. `python -m server` points prometheus-client at a fresh directory through
PROMETHEUS_MULTIPROC_DIR before anything imports the library (`server.__main__`); every process
then keeps its counters in memory-mapped files there, and a scrape of GET /metrics — answered by any
one worker — sums the files of all of them (the library's multiprocess mode). A standalone
`python -m scheduler` is a single process with the plain registry and serves its own metrics on
`metrics.scheduler_port`. Facts that live in the database (outbox depth, rows past their deadline,
withdrawals waiting or held, the last ledger audit, open reconciliation differences) are not counted by any
process: `server/observability.py` reads them at scrape time, so every node reports the same truth.

This module imports nothing of ours, so models/, scheduler/ and server/ can all call it.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar

from prometheus_client import Counter, Gauge, Histogram

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Who applied a transition: "person" (a user), "operator", "wechat", "system", or for timer events
# "timer" (the scheduler's sweep) vs "lazy_read" (a request that found the row overdue).
sweeping: ContextVar[bool] = ContextVar("market_sweeping", default=False)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

HTTP_REQUESTS = Counter("market_http_requests_total", "HTTP requests answered", ["route", "method", "status"])
# By status class (2xx … 5xx), not code: with route × method the series stay bounded, and a fast
# 4xx refusal no longer hides inside the latency of the requests that did the work.
HTTP_LATENCY = Histogram("market_http_request_duration_seconds", "HTTP request latency by status class",
                         ["route", "method", "status"], buckets=LATENCY_BUCKETS)
TAKES = Counter("market_takes_total", "One-click takes: won, or lost with the reason's code", ["result", "reason"])
TRANSITIONS = Counter("market_transitions_total", "State transitions applied", ["action", "by"])
TIMER_LAG = Histogram("market_timer_lag_seconds", "How late a timer was applied: applied - deadline",
                      ["kind", "by"], buckets=LAG_BUCKETS)
SUBSCRIPTION_SENDS = Counter("market_subscription_sends_total", "Subscription messages by result and WeChat errcode",
                             ["result", "errcode"])
WS_CONNECTIONS = Gauge("market_websocket_connections", "Open WebSocket connections", multiprocess_mode="livesum")
WS_DELIVERIES = Counter("market_websocket_deliveries_total", "Events offered to WebSocket connections")
WECHAT_LATENCY = Histogram("market_wechat_call_duration_seconds", "WeChat API call latency", ["api", "endpoint"],
                           buckets=LATENCY_BUCKETS)
WECHAT_ERRORS = Counter("market_wechat_call_errors_total", "WeChat API calls that failed", ["api", "endpoint", "error"])
RECONCILIATION_RUNS = Counter("market_reconciliation_runs_total", "Reconciliation runs by result", ["result"])
PAID_AFTER_RETURN = Counter("market_payouts_paid_after_return_total",
                            "Payouts WeChat reported paid after their money was returned to the user (to recover)")
OVERDUE_TRANSFERS = Counter("market_transfers_cancelled_overdue_total",
                            "Payouts cancelled because the user did not confirm before the deadline")


def status_class(status: int) -> str:
    """200 → "2xx"; anything outside 100–599 → "other" (the label takes six values at most)."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def transition(action: str, actor_kind: str) -> None:
    """Every audited transition (models/audit.py calls this once per row it writes)."""
    TRANSITIONS.labels(action, _by(actor_kind)).inc()


def timer_applied(kind: str, deadline, now) -> None:
    """A timer event won its transition `(now - deadline)` seconds after its deadline."""
    if isinstance(deadline, str):  # SQLite's raw rows hand datetimes back as text
        import datetime as dt

        deadline = dt.datetime.fromisoformat(deadline)
        if deadline.tzinfo is None:
            deadline = deadline.replace(tzinfo=dt.timezone.utc)
    TIMER_LAG.labels(kind, "timer" if sweeping.get() else "lazy_read").observe(max(0.0, (now - deadline).total_seconds()))


def _by(actor_kind: str) -> str:
    if actor_kind == "timer":
        return "timer" if sweeping.get() else "lazy_read"
    return "person" if actor_kind == "user" else actor_kind


async def count_take(call):
    """Await the take, counting it won or lost (by the error's code)."""
    try:
        result = await call
    except Exception as exc:
        TAKES.labels("lost", getattr(exc, "code", type(exc).__name__)).inc()
        raise
    TAKES.labels("won", "").inc()
    return result


def take_lost_early(code: str) -> None:
    """A take answered before the database (the task is marked sold out)."""
    TAKES.labels("lost", code).inc()


_ERRCODE = re.compile(r"(?:WeChat error |^)(-?\d{1,6})\b")


def subscription_outcome(result: str, error: str | None) -> None:
    """A subscription message's outcome (sent / refused / retry / failed) with WeChat's errcode,
    read from the recorded error text ("43101 ...", "... WeChat error 40003: ...")."""
    match = _ERRCODE.search(error or "")
    SUBSCRIPTION_SENDS.labels(result, match.group(1) if match else "").inc()


def wechat_call(api: str, endpoint: str, seconds: float, error: str | None) -> None:
    WECHAT_LATENCY.labels(api, endpoint).observe(seconds)
    if error:
        WECHAT_ERRORS.labels(api, endpoint, error).inc()


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def process_stopped() -> None:
    """A worker is going away: its live gauges (open sockets) must stop counting."""
    directory = multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), directory)


