"""What an operator needs to see the server run: request ids, request metrics, GET /metrics, and
the timing of every WeChat call (issue 15; strategy in server/metrics.py).

`install(app)` (called by create_app):
1. Every request gets a request id (`X-Request-ID` in, or a new one; answered in the same header),
   held in `server.logs.request_id` for everything the request runs.
2. Every answered request is counted and timed by route pattern (not by path: ids would explode
   the number of series), method and status (the count by code, the latency by class: 2xx … 5xx).
3. GET /metrics answers the Prometheus text format to `Authorization: Bearer <metrics.token>`
   (env MARKET_METRICS_TOKEN) and to nobody else; without a token configured it is 404, so a
   forgotten setting never exposes it. nginx refuses /metrics from outside as well.
4. WeChat's clients are wrapped once per worker (`instrument_wechat`) so that each call is timed,
   counted when it fails and logged under the request id — without touching wechat/.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
from typing import Any

from sanic import Sanic
from sanic.request import Request
from sanic.response import HTTPResponse, json

from server import logs, metrics

log = logging.getLogger("market.wechat.calls")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def install(app: Sanic) -> None:
    config = app.ctx.config

    @app.on_request(priority=1000)
    async def start_request(request: Request):
        rid = logs.accept_request_id(request.headers.get(logs.REQUEST_ID_HEADER))
        request.ctx.request_id = rid
        request.ctx.started = time.perf_counter()
        logs.request_id.set(rid)

    @app.on_response(priority=1000)
    async def finish_request(request: Request, response: HTTPResponse):
        rid = getattr(request.ctx, "request_id", None)
        if response is None or rid is None:
            return
        response.headers[logs.REQUEST_ID_HEADER] = rid
        route = request.route.path if request.route is not None else "<unmatched>"
        route = "/" + route.lstrip("/")
        metrics.HTTP_REQUESTS.labels(route, request.method, str(response.status)).inc()
        metrics.HTTP_LATENCY.labels(route, request.method, metrics.status_class(response.status)).observe(time.perf_counter() - request.ctx.started)

    @app.get("/metrics", name="metrics")
    async def metrics_endpoint(request: Request):
        token = config.metrics.token
        if not token:
            return json({"error": {"code": "not_found", "message": "Not found."}}, status=404)
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return json({"error": {"code": "unauthorized", "message": "A metrics token is required."}}, status=401,
                        headers={"WWW-Authenticate": "Bearer"})
        return HTTPResponse(await render(), content_type=CONTENT_TYPE)

    try:
        from sanic_ext.extensions.openapi import openapi

        openapi.exclude(route=metrics_endpoint)  # operators' endpoint, not the Mini Programs' API
    except (ImportError, TypeError):
        pass

    @app.after_server_start
    async def instrument(app: Sanic):
        services = getattr(app.ctx, "wechat", None)
        if services is not None:
            instrument_wechat(services)
            logs.add_secrets([services.cfg.worker.secret, services.cfg.publisher.secret, services.cfg.pay.apiv3_key])

    @app.after_server_stop
    async def worker_gone(app: Sanic):
        metrics.process_stopped()


# --- the scrape ------------------------------------------------------------------------------------
async def render() -> bytes:
    """Process metrics (summed over every process in multiprocess mode) + the database's figures."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    facts = await database_facts()
    registry = CollectorRegistry(auto_describe=False)
    directory = metrics.multiprocess_dir()
    if directory:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(_Static(facts))
    return generate_latest(registry)


class _Forward:
    def __init__(self, registry) -> None:
        self.registry = registry

    def collect(self):
        yield from self.registry.collect()


class _Static:
    def __init__(self, families) -> None:
        self.families = families

    def collect(self):
        yield from self.families


async def database_facts() -> list:
    """Figures that live in the database, read now: the same on every node and process.

    All are single indexed aggregates; a scrape every 15 s costs a handful of small queries."""
    from prometheus_client.core import GaugeMetricFamily

    from models import clock, db, ops_status

    now = clock.now()
    out: list = []

    def gauge(name: str, doc: str, labels: list[str], rows: list[tuple[list[str], float]]):
        g = GaugeMetricFamily(name, doc, labels=labels)
        for label_values, value in rows:
            g.add_metric(label_values, value)
        out.append(g)

    def age(at) -> float:
        return max(0.0, (now - at).total_seconds()) if at is not None else 0.0

    orders = await db.fetch_one("SELECT COUNT(*) AS n, MIN(due_at) AS oldest FROM orders WHERE due_at <= $1", now)
    tasks = await db.fetch_one("SELECT COUNT(*) AS n, MIN(take_deadline_at) AS oldest FROM tasks "
                               "WHERE status = 'open' AND take_deadline_at <= $1", now)
    gauge("market_overdue_rows", "Rows past their deadline whose timer is not applied yet", ["kind"],
          [(["order"], orders["n"]), (["task"], tasks["n"])])
    gauge("market_overdue_oldest_seconds", "How long the most overdue row has waited past its deadline", ["kind"],
          [(["order"], age(_dt(orders["oldest"]))), (["task"], age(_dt(tasks["oldest"])))])

    by_channel = {r["channel"]: r for r in await db.fetch(
        "SELECT channel, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE status = 'pending' GROUP BY channel")}
    failed = {r["channel"]: r["n"] for r in await db.fetch(
        "SELECT channel, COUNT(*) AS n FROM outbox WHERE status = 'failed' GROUP BY channel")}
    channels = ("push", "subscribe")
    gauge("market_outbox_depth", "Outbox rows waiting for delivery", ["channel"],
          [([c], by_channel[c]["n"] if c in by_channel else 0) for c in channels])
    gauge("market_outbox_oldest_seconds", "Age of the oldest outbox row waiting", ["channel"],
          [([c], age(_dt(by_channel[c]["oldest"])) if c in by_channel else 0) for c in channels])
    gauge("market_outbox_failed", "Outbox rows given up (kept for operators)", ["channel"],
          [([c], failed.get(c, 0)) for c in channels])

    waiting = {r["status"]: r for r in await db.fetch(
        "SELECT status, COUNT(*) AS n, MIN(COALESCE(decided_at, created_at)) AS oldest FROM withdrawals "
        "WHERE status IN ('pending', 'paying') GROUP BY status")}
    states = ("pending", "paying")
    gauge("market_withdrawals_waiting", "Withdrawals waiting: for an operator (pending) or for WeChat (paying)",
          ["status"], [([s], waiting[s]["n"] if s in waiting else 0) for s in states])
    gauge("market_withdrawals_oldest_seconds", "Age of the oldest waiting withdrawal (since request / approval)",
          ["status"], [([s], age(_dt(waiting[s]["oldest"])) if s in waiting else 0) for s in states])
    # Payouts WeChat refused for a reason only a person can cure (IP allowlist, scene, quota, a
    # missing real name): nothing retries them, so they wait for an operator however long it takes.
    held = await db.fetch_one("SELECT COUNT(*) AS n, COALESCE(SUM(amount_fen - fee_fen), 0) AS fen, MIN(held_at) AS oldest "
                              "FROM withdrawals WHERE status = 'paying' AND hold_reason IS NOT NULL")
    gauge("market_withdrawals_held", "Payouts held for an operator (WeChat refused them for a configuration reason)",
          [], [([], held["n"])])
    gauge("market_withdrawals_held_fen", "What the held payouts would pay (A - W), in fen", [], [([], int(held["fen"]))])
    gauge("market_withdrawals_held_oldest_seconds", "How long the oldest held payout has waited for an operator",
          [], [([], age(_dt(held["oldest"])))])

    audit = await ops_status.get(ops_status.LEDGER_AUDIT)
    gauge("market_ledger_audit_ok", "1 if the last ledger audit was clean, 0 if not, -1 if none ran yet", [],
          [([], -1 if audit is None else int(bool(audit.ok)))])
    gauge("market_ledger_audit_age_seconds", "Seconds since the last ledger audit (+Inf: never)", [],
          [([], float("inf") if audit is None else age(audit.at))])
    beat = await ops_status.get(ops_status.SCHEDULER_HEARTBEAT)
    gauge("market_scheduler_heartbeat_age_seconds", "Seconds since any scheduler last reported (+Inf: never)", [],
          [([], float("inf") if beat is None else age(beat.at))])

    diffs = {r["kind"]: r["n"] for r in await db.fetch(
        "SELECT kind, COUNT(*) AS n FROM reconciliation_differences WHERE status = 'open' GROUP BY kind")}
    from models.reconciliation import DifferenceKind

    gauge("market_reconciliation_open_differences", "Differences with WeChat's bills waiting for an operator",
          ["kind"], [([k.value], diffs.get(k.value, 0)) for k in DifferenceKind])
    last = await db.fetch_one("SELECT MAX(bill_date) AS d FROM reconciliation_runs WHERE status IN ('clean', 'differences')")
    day = last["d"] if last else None
    if isinstance(day, str):
        import datetime as dt

        day = dt.date.fromisoformat(day[:10])
    gauge("market_reconciliation_days_behind", "Days since the last reconciled bill day (+Inf: never)", [],
          [([], float("inf") if day is None else float((_beijing_today(now) - day).days))])
    return out


def _dt(value):
    """SQLite hands MIN() of a datetime column back as text."""
    if value is None or not isinstance(value, str):
        return value
    import datetime as dt

    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def _beijing_today(now):
    import datetime as dt

    return now.astimezone(dt.timezone(dt.timedelta(hours=8))).date()


# --- WeChat calls ----------------------------------------------------------------------------------
_SEGMENT = re.compile(r"/(out-trade-no|out-bill-no|transfer-bill-no|id)/[^/?]+")


def pay_endpoint(method: str, url: str) -> str:
    """'GET /v3/pay/transactions/out-trade-no/R2024.../?mchid=1' → 'GET /v3/pay/transactions/out-trade-no/{no}'."""
    path = str(url).split("?", 1)[0]
    path = path[path.find("/v3/"):] if "/v3/" in path else path
    return f"{method} {_SEGMENT.sub(lambda m: f'/{m.group(1)}/{{no}}', path)}"


class _TimedHTTP:
    """Stands in for the PayClient's httpx client: the same object, with each request timed."""

    def __init__(self, inner) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def request(self, method: str, url, **kwargs):
        endpoint = pay_endpoint(method, url)
        started, error, status = time.perf_counter(), None, None
        try:
            response = await self._inner.request(method, url, **kwargs)
            status = response.status_code
            if status >= 400:
                error = _pay_code(response) or f"http_{status}"
            return response
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            took = time.perf_counter() - started
            metrics.wechat_call("pay", endpoint, took, error)
            (log.warning if error else log.info)("wechat pay %s -> %s in %.0f ms", endpoint, error or status, took * 1000)


def _pay_code(response) -> str | None:
    try:
        return str(response.json().get("code") or "") or None
    except Exception:  # noqa: BLE001 - not JSON: the status says enough
        return None


def instrument_wechat(services) -> None:
    """Time every WeChat call of this process's clients (idempotent)."""
    pay = getattr(services, "pay", None)
    if pay is not None and not isinstance(getattr(pay, "_http", None), _TimedHTTP):
        pay._http = _TimedHTTP(pay._http)
    mp = getattr(services, "mp", None)
    if mp is not None and not getattr(mp, "_market_timed", False):
        run = mp._run

        async def timed(end, fn, *args, **kwargs):
            name = getattr(fn, "__qualname__", getattr(fn, "__name__", "call")).split(".<locals>")[0].rsplit(".", 1)[-1]
            if name in ("get", "post") and args and isinstance(args[0], str):
                name = args[0]  # the path wechatpy is asked to call: "stable_token", ...
            name = name.lstrip("_").removesuffix("_sync")
            started, error = time.perf_counter(), None
            try:
                return await run(end, fn, *args, **kwargs)
            except Exception as exc:
                error = str(getattr(exc, "errcode", None) or type(exc).__name__)
                raise
            finally:
                took = time.perf_counter() - started
                metrics.wechat_call("miniprogram", name, took, error)
                (log.warning if error else log.info)("wechat miniprogram %s (%s) -> %s in %.0f ms", name, end,
                                                     error or "ok", took * 1000)

        mp._run = timed
        mp._market_timed = True
