"""The HTTP API and WebSocket of the two Mini Programs (contract: docs/api.md and /docs/openapi.json)."""

from __future__ import annotations

from sanic import Sanic

from models.users import End


def install(app: Sanic) -> None:
    from miniprogram_api import account, publisher, worker, ws
    from miniprogram_api.docs import ERROR_SCHEMA

    app.ext.openapi.add_component("schemas", "Error", ERROR_SCHEMA)

    app.blueprint(account.account_blueprint(End.WORKER))
    app.blueprint(account.account_blueprint(End.PUBLISHER))
    app.blueprint(worker.bp)
    app.blueprint(publisher.bp)
    app.blueprint(ws.bp)
