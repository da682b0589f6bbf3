"""Fixtures: the sandbox on a real loopback port (same event loop as the test), plus the real
clients pointed at it. No database, no Redis needed (the Redis store test skips without one)."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import socket
from types import SimpleNamespace

import pytest
import pytest_asyncio
from sanic import Sanic
from sanic.response import empty, json as json_response

from wechat.config import WeChatConfig
from wechat.errors import PayError
from wechat.miniprogram import MiniProgramClient
from wechat.pay import PayClient
from wechat.sandbox import create_sandbox_blueprint

Sanic.test_mode = True  # the same app name is created again for every test
_names = itertools.count()

TEMPLATES = {
    "worker": {
        "order_approved": {
            "template_id": "TPL-worker-approved",
            "page": "pages/order/detail?id={order_id}",
            "fields": {"thing1": "{task_title}", "amount2": "{commission_yuan}元", "time3": "{completed_at}"},
        }
    },
    "publisher": {
        "order_taken": {"template_id": "TPL-pub-taken", "page": "pages/task/detail?id={task_id}",
                        "fields": {"thing1": "{task_title}", "thing2": "有人接单了"}},
    },
}


def make_config(**overrides) -> WeChatConfig:
    section = {
        "sandbox": True,
        "subscription_templates": TEMPLATES,
        "sandbox_options": {"refused_users": ["rita"], "notify_retry_schedule_s": [0, 0.05, 0.1, 0.2]},
    }
    section.update(overrides)
    return WeChatConfig.from_dict(section, env={})


@pytest.fixture
def cfg() -> WeChatConfig:
    return make_config()


@pytest_asyncio.fixture
async def sandbox(cfg):
    """A Sanic app with the sandbox mounted and a merchant notify endpoint that uses the real
    PayClient.parse_notification, running on 127.0.0.1:<random port>."""
    async with running_sandbox(cfg) as ns:
        yield ns


@contextlib.asynccontextmanager
async def running_sandbox(cfg: WeChatConfig):
    """The `sandbox` fixture for a configuration chosen inside a test."""
    app = Sanic(f"wechat_sandbox_test_{next(_names)}")
    bp = create_sandbox_blueprint(cfg)
    app.blueprint(bp)
    received: list[dict] = []
    rejected: list[str] = []
    ns = SimpleNamespace(fail_next=0)

    @app.post("/merchant/notify/<kind:str>")
    async def notify(request, kind):
        if ns.fail_next > 0:  # simulate a merchant outage: WeChat must retry
            ns.fail_next -= 1
            return json_response({"code": "FAIL", "message": "busy"}, status=500)
        try:
            received.append(await ns.pay.parse_notification(request.headers, request.body))
        except PayError as exc:
            rejected.append(exc.__class__.__name__)
            return json_response({"code": "FAIL", "message": str(exc)}, status=400)
        return empty(status=204)

    # A socket bound here: Sanic reads port=0 as "the default, 8000", which other test runs may hold.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = await app.create_server(sock=sock, return_asyncio_server=True)
    await server.startup()
    await server.before_start()
    await server.after_start()
    port = server.server.sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    live_cfg = cfg.with_sandbox_base(base + "/sandbox")
    live_cfg = dataclasses.replace(live_cfg, pay=dataclasses.replace(
        live_cfg.pay, notify_url=base + "/merchant/notify/pay", transfer_notify_url=base + "/merchant/notify/transfer"))
    ns.base, ns.port, ns.cfg, ns.state, ns.app = base, port, live_cfg, bp.ctx.state, app
    ns.received, ns.rejected = received, rejected
    ns.pay = PayClient.from_config(live_cfg)
    ns.mp = MiniProgramClient.from_config(live_cfg)
    try:
        yield ns
    finally:
        await ns.pay.aclose()
        ns.mp.close()
        await ns.state.aclose()
        await server.before_stop()
        await server.close()
        await server.after_stop()
