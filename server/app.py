"""The Sanic application factory (Sanic guide's app-factory style).

`create_app(config)` assembles the blueprints and listeners; it never opens anything at import time,
so Sanic's spawned workers and the tests can build as many apps as they need.

Process model (SPEC §8): the main process runs the migrations once; every worker opens its own
database pool; with `scheduler.embedded` the scheduler runs beside the workers as one Sanic-managed
process (production runs `python -m scheduler` instead, as many as wanted: sweeps are safe to run
side by side).
"""

from __future__ import annotations

import dataclasses
import logging
from types import SimpleNamespace

from sanic import Sanic
from sanic.response import json
from sanic_ext import Extend
from sanic_ext.extensions.openapi.extension import OpenAPIExtension

from models import db
from models import settings as market_settings
from server import errors
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
            "OAS_UI_DEFAULT": "redoc",
            "OAS_TITLE": "Timed task marketplace API",
            "OAS_DESCRIPTION": "The API of the Worker and Publisher Mini Programs. Money is integer fen.",
            "OAS_VERSION": "1.0.0",
            "FALLBACK_ERROR_FORMAT": "json",
            # sanic-ext would add a HEAD and an OPTIONS route per endpoint, re-finalizing the router
            # each time (seconds per worker start); Mini Programs need neither (no CORS preflight).
            "HTTP_AUTO_HEAD": False,
            "HTTP_AUTO_OPTIONS": False,
            "CORS_AUTOMATIC_OPTIONS": False,
        }
    )
    # Of sanic-ext, only the OpenAPI document: its dependency injection would run a signal handler
    # on every request and its CORS a response middleware (Mini Programs make no CORS requests;
    # the admin panel is same-origin), for nothing we use.
    Extend(app, built_in_extensions=False, extensions=[OpenAPIExtension])
    app.ctx.config = config
    app.ctx.services = SimpleNamespace()
    market_settings.set_seed(config.market)
    errors.install(app)
    app.ext.openapi.add_security_scheme("token", "http", scheme="bearer", bearer_format="session token from /login")

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

    if manage_db:

        @app.main_process_start
        async def migrate(app):
            await db.migrate_db(config.db_url_with_pool)

        @app.before_server_start
        async def open_db(app):
            await db.init_db(config.db_url_with_pool, migrate=False)

        @app.after_server_stop
        async def close_db(app):
            await db.close_db()

        if config.scheduler.embedded:

            @app.main_process_ready
            async def start_scheduler(app):
                from scheduler.runner import run_process

                app.manager.manage("Scheduler", run_process, {"config": dataclasses.asdict(config)})

    return app
