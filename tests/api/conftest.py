"""A live server for API tests: the real app on a real loopback port, on the test's event loop,
with the WeChat sandbox mounted on the same server (so login and payments go through the
production client code over HTTP), and the test's database (SQLite or PostgreSQL)."""

from __future__ import annotations

import itertools
import socket
from types import SimpleNamespace

import httpx
import pytest
import pytest_asyncio

from server.app import create_app
from server.config import load_config
from tests.api import contract
from tests.api.contract import Recorder

_names = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_config(port: int, tmp_path, **overrides):
    tree = {
        "host": "127.0.0.1",
        "port": port,
        "uploads_dir": str(tmp_path / "uploads"),
        "scheduler": {"embedded": False},
        "wechat": {"sandbox": True, "sandbox_base": f"http://127.0.0.1:{port}/sandbox"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            tree[key] = tree[key] | value
        else:
            tree[key] = value
    return load_config(env={}, overrides=tree)


class Live(SimpleNamespace):
    """Helpers bound to one running server."""

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.base, headers=headers, timeout=20)

    async def login(self, end: str, name: str | None = None, *, invite_code: str | None = None) -> SimpleNamespace:
        """Log in through the sandbox: code '<name>-<n>' maps to a stable openid for <name>."""
        name = name or f"user{next(_names)}"
        body = {"code": f"{name}-{next(_names)}", "nickname": name}
        if invite_code:
            body["invite_code"] = invite_code
        async with self.client() as c:
            r = await c.post(f"/api/v1/{end}/login", json=body)
        assert r.status_code == 200, r.text
        data = r.json()
        return SimpleNamespace(token=data["token"], user=data["user"], id=data["user"]["id"], end=end, name=name)

    async def pay(self, out_trade_no: str) -> None:
        """A person pays the recharge in the sandbox; its notification reaches our endpoint."""
        async with self.client() as c:
            r = await c.post("/sandbox/pay/_simulate/pay", json={"out_trade_no": out_trade_no})
        assert r.status_code == 200, r.text
        state = self.app.ctx.wechat.sandbox
        if state is not None:
            await state.drain()

    async def recharge(self, who, amount_fen: int) -> dict:
        async with self.client(who.token) as c:
            r = await c.post("/api/v1/publisher/recharges", json={"amount_fen": amount_fen, "request_id": f"rc-{next(_names)}"})
        assert r.status_code == 201, r.text
        await self.pay(r.json()["out_trade_no"])
        return r.json()


async def start_live(database_url: str, tmp_path, **overrides) -> tuple[Live, object]:
    port = free_port()
    app = create_app(live_config(port, tmp_path, **overrides), manage_db=False)
    recorder = Recorder()
    recorder.install(app)
    server = await app.create_server(host="127.0.0.1", port=port, return_asyncio_server=True)
    await server.startup()
    await server.before_start()
    await server.after_start()
    return Live(app=app, base=f"http://127.0.0.1:{port}", port=port, database_url=database_url, recorder=recorder), server


async def stop_live(server) -> None:
    await server.before_stop()
    await server.close()
    await server.after_stop()


@pytest_asyncio.fixture
async def live(database, tmp_path, request):
    """A live server; when the test has passed, everything it made the server send is checked
    against the published contract (tests/api/contract.py)."""
    live, server = await start_live(database, tmp_path)
    try:
        yield live
    finally:
        await stop_live(server)
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.passed:
        problems = await contract.check(live.app, live.recorder)
        assert not problems, "the server broke its published contract:\n" + "\n".join(problems[:20])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report
