"""Fixtures: the real app (create_app) serving on a free loopback port, in the test's own event loop,
with the `database` fixture's database, the WeChat sandbox mounted, and `app.ctx.wechat` built by the
real listeners (once: the server is started by hand, not per request).

No `__init__.py` here on purpose (like tests/wechat): a package named after this directory is not
needed, and the test modules have unique names (test_wx_*.py)."""

from __future__ import annotations

import contextlib
import json
import socket
from types import SimpleNamespace

import httpx
import pytest_asyncio
from sanic.response import json as json_response

from models.errors import DomainError
from server.app import create_app
from server.config import load_config
from tests.conftest import TEST_SETTINGS
from wechat.sandbox import SandboxKeys

WECHAT_TEST_SECTION = {
    "http_timeout_s": 1,
    "sandbox_options": {"refused_users": ["rita"], "notify_retry_schedule_s": [0, 0.1, 0.2, 0.4]},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_config(**overrides):
    tree = {"host": "127.0.0.1", "port": free_port(), "public_base_url": "", "redis_url": "",
            "scheduler": {"embedded": False}, "market": TEST_SETTINGS, "wechat": WECHAT_TEST_SECTION}
    tree.update(overrides)
    return load_config(env={}, overrides=tree)


@pytest_asyncio.fixture
async def live(database):
    async with running_app(make_config()) as ns:
        yield ns


@contextlib.asynccontextmanager
async def running_app(config):
    """The `live` fixture's server for a configuration chosen inside a test (needs `database`)."""
    app = create_app(config, manage_db=False)

    @app.post("/test/login/<end:str>")
    async def test_login(request, end):  # stands in for miniprogram_api's auth route
        body = request.json or {}
        user, created = await request.app.ctx.wechat.login(end, body.get("code", ""), invite_code=body.get("invite_code"))
        return json_response({"user_id": user.id, "openid": user.openid, "unionid": user.unionid,
                              "inviter_id": user.inviter_id, "created": created})

    server = await app.create_server(host=config.host, port=config.port, return_asyncio_server=True)
    await server.startup()
    await server.before_start()
    await server.after_start()
    base = f"http://{config.host}:{config.port}"
    http = httpx.AsyncClient(base_url=base, timeout=20)
    services = app.ctx.wechat
    ns = SimpleNamespace(app=app, config=config, base=base, http=http, services=services, wx=services,
                         state=services.sandbox, keys=SandboxKeys.from_config(services.cfg))
    try:
        yield ns
    finally:
        await http.aclose()
        await server.before_stop()
        await server.close()
        await server.after_stop()


async def post_raw(ns, path: str, headers: dict, body: bytes) -> httpx.Response:
    return await ns.http.post(path, content=body, headers=headers)


async def sandbox_post(ns, path: str, payload: dict) -> dict:
    r = await ns.http.post("/sandbox" + path, json=payload)
    assert r.status_code == 200, r.text
    return r.json()


def fail_body(r: httpx.Response) -> dict:
    return json.loads(r.content) if r.content else {}


__all__ = ["DomainError", "fail_body", "free_port", "make_config", "post_raw", "sandbox_post"]
