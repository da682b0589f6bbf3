"""The HTTP API and WebSocket of the two Mini Programs (contract: docs/api.md, the OpenAPI document
at /docs/openapi.json, docs/events.json, docs/errors.json)."""

from __future__ import annotations

from sanic import Sanic

from models.blocks import BlockNotFound
from models.errors import NotFound, OrderNotFound, RechargeNotFound, TaskNotFound, WithdrawalNotFound
from models.users import End

NOT_FOUND = {"order_id": OrderNotFound, "task_id": TaskNotFound, "withdrawal_id": WithdrawalNotFound, "recharge_id": RechargeNotFound,
             "worker_id": BlockNotFound}  # the only worker_id in a path: DELETE /publisher/blocks/{worker_id}


def install(app: Sanic) -> None:
    from miniprogram_api import account, docs_site, public, publisher, worker, ws

    app.blueprint(account.account_blueprint(End.WORKER))
    app.blueprint(account.account_blueprint(End.PUBLISHER))
    app.blueprint(worker.bp)
    app.blueprint(publisher.bp)
    app.blueprint(public.bp)
    app.blueprint(ws.bp)  # the WebSocket is documented in docs/api.md and docs/events.json, not as a GET
    docs_site.install(app)

    @app.on_request
    async def ids_in_range(request):
        """A path id no row can have (the columns are BIGINT) is simply not found, never a 500."""
        for name, value in (request.match_info or {}).items():
            if name.endswith("_id") and isinstance(value, int) and not 1 <= value < 2**63:
                raise NOT_FOUND.get(name, NotFound)()
