"""The Sanic application factory (Sanic guide's app-factory style).

`create_app(config)` assembles the blueprints and listeners; it never opens anything at import time,
so Sanic's spawned workers and the tests can build as many apps as they need.

Process model (SPEC §8): the main process runs the migrations once; every worker opens its own
database pool; with `scheduler.embedded` the scheduler runs beside the workers as one Sanic-managed
process (production runs `python -m scheduler` instead, as many as wanted: sweeps are safe to run
side by side).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from types import SimpleNamespace

from sanic import Sanic
from sanic.response import json
from sanic_ext import Extend

from models import db
from models import settings as market_settings
from server import errors, inputs
from server.config import Config, load_config

log = logging.getLogger("market.server")

APP_NAME = "market"


def create_app(config: Config | None = None, *, manage_db: bool = True) -> Sanic:
    """Build the app. `manage_db=False` leaves the database to the caller (the tests' fixture)."""
    config = config or load_config()
    app = Sanic(APP_NAME)
    app.config.update(
        {
            "REQUEST_MAX_SIZE": 12 * 1024 * 1024,  # the largest upload (an image) plus headroom
            "FALLBACK_ERROR_FORMAT": "json",
            # sanic-ext would add a HEAD and an OPTIONS route per endpoint, re-finalizing the router
            # each time (seconds per worker start); Mini Programs need neither (no CORS preflight).
            "HTTP_AUTO_HEAD": False,
            "HTTP_AUTO_OPTIONS": False,
            "CORS_AUTOMATIC_OPTIONS": False,
            # The Mini Programs' WebSocket is not Sanic's (server/sockets.py: leaner per socket); its
            # largest client message is WEBSOCKET_MAX_SIZE. No keep-alive ping task per socket: the
            # heartbeat service of miniprogram_api/ws.py pings every socket from one task per worker.
            "WEBSOCKET_PING_INTERVAL": None,
        }
    )
    # None of sanic-ext's extensions (the admin panel uses only its `render` with its own Jinja2
    # environment). Extending explicitly keeps Sanic from attaching them all by itself; the OpenAPI
    # document is our own (miniprogram_api/docs.py): built from the code, OpenAPI 3.1.
    Extend(app, built_in_extensions=False, extensions=[])
    app.ctx.config = config
    app.ctx.services = SimpleNamespace()
    market_settings.set_seed(config.market)
    errors.install(app)
    inputs.install(app)  # no control characters in any query string or form (models/inputs.py)
    if manage_db:
        _manage_db(app, config)
    _stop_once(app)

    from server import listeners

    listeners.install(app, config)

    @app.get("/healthz")
    async def health(request):
        """Liveness and database reachability."""
        await db.fetch_one("SELECT 1 AS ok")
        return json({"ok": True, "database": db.dialect()})

    from server import wechat_routes

    wechat_routes.install(app)

    import miniprogram_api

    miniprogram_api.install(app)

    from server import admin; admin.install(app)  # noqa: E702  the admin web panel at /admin (SPEC §6)
    from server import observability; observability.install(app)  # noqa: E702  request ids, /metrics (issue 15)

    if manage_db and config.scheduler.embedded:

        @app.main_process_ready
        async def start_scheduler(app):
            from scheduler.runner import run_process

            app.manager.manage("Scheduler", run_process, {"config": dataclasses.asdict(config)})

    return app


def create_served_app() -> Sanic:
    """The factory `python -m server` hands Sanic: every process (main and each spawned worker)
    builds the app, then routes every log record through the JSON/text redacting handler."""
    from server import logs

    config = load_config()
    app = create_app(config)
    logs.setup(config, "server")  # after Sanic(...) configured its own loggers: ours replace them
    return app


def _manage_db(app: Sanic, config: Config) -> None:
    """The database of each worker process. Registered before every other listener: shutdown
    listeners run in reverse order, so the database is closed after everything that may use it."""

    @app.main_process_start
    async def migrate(app):
        await db.migrate_db(config.db_url_with_pool)

    @app.before_server_start
    async def open_db(app):
        await db.init_db(config.db_url_with_pool, migrate=False)

    @app.after_server_stop
    async def close_db(app):
        await db.close_db()


def _stop_once(app: Sanic) -> None:
    """A worker stops once, however many stop signals it gets.

    Ctrl-C signals the whole foreground process group, so a worker gets SIGINT from the terminal
    and, an instant later, again from Sanic's main process shutting its workers down (systemd's
    SIGTERM to the control group does the same). Sanic's handler stopped the event loop for each;
    with uvloop the second stop is still pending when the worker's shutdown runs its cleanup, which
    then fails ("Event loop stopped before Future completed") and skips the after_server_stop
    listeners — among them closing the database, so the SQLite connection's thread (aiosqlite's,
    not a daemon) kept the worker from ever exiting, and the main process waited for it with the
    port bound. (models/sqlite_engine.py now also makes that thread a daemon, as a last guarantee.)
    """

    @app.after_server_start
    async def stop_on_the_first_signal_only(app):
        if not os.environ.get("SANIC_WORKER_PROCESS"):  # tests serve apps in their own loop: leave it
            return
        loop = asyncio.get_running_loop()
        stopping = False

        def stop() -> None:
            nonlocal stopping
            if not stopping:
                stopping = True
                app.stop(terminate=False)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)  # replaces Sanic's own handler (installed just before)
