"""Ctrl-C stops `make run` within a few seconds, whatever ran before (issue 17 item 17).

The real server (`python -m server`: SQLite, the embedded scheduler, the WeChat sandbox) runs as a
subprocess in its own process group. Mixed traffic — the admin panel (login, dashboard with its
ledger audit, a customer page, a settings change), the Mini Program API (logins, a recharge through
the sandbox, publish, take, submit, approve, a WebSocket left open), timers for the scheduler to
sweep and messages for it to send — then SIGINT to the whole group, as a terminal's Ctrl-C does.
Every process must be gone within EXIT_S and the port free again.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import free_port
from tests.conftest import USE_POSTGRES

ROOT = Path(__file__).resolve().parents[2]
EXIT_S = 8.0
PASSWORD = "correct horse battery staple"

pytestmark = [pytest.mark.asyncio, pytest.mark.skipif(USE_POSTGRES, reason="the embedded default runs on SQLite")]


def server_env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARKET", "DATABASE_URL", "REDIS_URL", "PORT"))}
    env.update({
        "DATABASE_URL": f"sqlite://{tmp_path / 'market.sqlite3'}",
        "PORT": str(port),
        "MARKET__UPLOADS_DIR": str(tmp_path / "uploads"),
        "MARKET__WECHAT__SANDBOX_BASE": f"http://127.0.0.1:{port}/sandbox",
        "MARKET__MARKET__TAKE_WINDOW_S": "2",  # timers due while the server runs: the scheduler sweeps
        "MARKET__MARKET__REVIEW_WINDOW_S": "2",
        "MARKET_OWNER_PASSWORD": PASSWORD,
        "PYTHONUNBUFFERED": "1",
    })
    return env


def processes_in_group(pgid: int) -> list[int]:
    """Live processes of the group (a zombie has exited: it only waits for its parent to reap it)."""
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat="], capture_output=True, text=True).stdout
    rows = (line.split() for line in out.splitlines() if line.strip())
    return [int(pid) for pid, group, stat in rows if int(group) == pgid and not stat.startswith("Z")]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


async def wait_healthy(c: httpx.AsyncClient, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited while starting"
        try:
            if (await c.get("/healthz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.3)
    raise AssertionError("the server did not come up")


async def admin_traffic(c: httpx.AsyncClient, customer_id: int) -> None:
    page = await c.get("/admin/login")
    csrf = re.search(r'name="csrf" value="([^"]*)"', page.text).group(1)
    r = await c.post("/admin/login", data={"csrf": csrf, "username": "boss", "password": PASSWORD, "next": "/admin"})
    assert r.status_code == 303, r.text[:300]
    dashboard = await c.get("/admin")  # the dashboard runs the ledger audit
    assert dashboard.status_code == 200
    token = re.search(r'name="csrf" value="([^"]*)"', dashboard.text).group(1)
    assert (await c.get(f"/admin/customers/{customer_id}")).status_code == 200
    assert (await c.get("/admin/dashboard.json")).status_code == 200
    settings = await c.get("/admin/settings")
    fields = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', settings.text))
    fields.update(csrf=token, countdown_s="4")
    assert (await c.post("/admin/settings", data=fields)).status_code == 303


async def api_traffic(c: httpx.AsyncClient) -> tuple[int, str]:
    async def login(end: str, name: str) -> str:
        r = await c.post(f"/api/v1/{end}/login", json={"code": f"{name}-1", "nickname": name})
        assert r.status_code == 200, r.text
        return r.json()["token"]

    pub, wrk, wrk2 = await login("publisher", "alice"), await login("worker", "bob"), await login("worker", "carl")
    p, w, w2 = ({"Authorization": f"Bearer {t}"} for t in (pub, wrk, wrk2))
    r = await c.post("/api/v1/publisher/recharges", json={"amount_fen": 50_000, "request_id": "rc-1"}, headers=p)
    assert r.status_code == 201, r.text
    assert (await c.post("/sandbox/pay/_simulate/pay", json={"out_trade_no": r.json()["out_trade_no"]})).status_code == 200
    for _ in range(50):  # the notification reaches the server, which credits the wallet
        if (await c.get("/api/v1/publisher/wallet", headers=p)).json()["available_fen"] == 50_000:
            break
        await asyncio.sleep(0.1)
    tasks = []
    for i in range(3):
        r = await c.post("/api/v1/publisher/tasks", json={"title": f"Task {i}", "instructions": "Scan it", "unit_price_fen": 500, "quantity": 3, "request_id": f"ctrlc-{i}"}, headers=p)
        assert r.status_code == 201, r.text
        tasks.append(r.json()["id"])
    order = (await c.post(f"/api/v1/worker/tasks/{tasks[0]}/take", headers=w)).json()
    assert (await c.post(f"/api/v1/worker/orders/{order['id']}/submit", json={"proof_text": "done"}, headers=w)).status_code == 200
    assert (await c.post(f"/api/v1/publisher/orders/{order['id']}/approve", headers=p)).status_code == 200
    order2 = (await c.post(f"/api/v1/worker/tasks/{tasks[1]}/take", headers=w2)).json()
    assert (await c.post(f"/api/v1/worker/orders/{order2['id']}/submit", json={"proof_text": "done"}, headers=w2)).status_code == 200
    me = (await c.get("/api/v1/publisher/me", headers=p)).json()
    return me["id"], wrk


async def test_ctrl_c_stops_the_default_run_within_seconds_after_mixed_traffic(tmp_path):
    import websockets

    port = free_port()
    env = server_env(tmp_path, port)
    created = subprocess.run([sys.executable, "-m", "server", "create-owner", "--username", "boss"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert created.returncode == 0, created.stderr
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "server"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    pgid = proc.pid
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as c:
            await wait_healthy(c, proc)
            customer, worker_token = await api_traffic(c)
            ws = await websockets.connect(f"ws://127.0.0.1:{port}/api/v1/ws?token={worker_token}")  # left open
            await ws.recv()
            await admin_traffic(c, customer)
            await asyncio.sleep(3)  # the scheduler expires tasks, auto-approves, sends messages
            assert (await c.get("/healthz")).status_code == 200
        os.killpg(pgid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        started = time.monotonic()
        while (proc.poll() is None or processes_in_group(pgid)) and time.monotonic() - started < EXIT_S:
            await asyncio.sleep(0.1)
        left = processes_in_group(pgid)
        took = time.monotonic() - started
        log.flush()
        tail = (tmp_path / "server.log").read_text(errors="replace")[-4000:]
        assert not left, f"still running {took:.1f} s after SIGINT: {left}\n{tail}"
        assert port_is_free(port), "the port is still bound"
        assert proc.returncode == 0, proc.returncode
        # A clean stop, not only a quick one: every shutdown listener ran (no worker cleanup failure).
        assert "Traceback" not in tail and "Worker complete" in tail and "scheduler stopped" in tail, tail
        with pytest.raises(Exception):
            await asyncio.wait_for(ws.recv(), 1)
    finally:
        if processes_in_group(pgid):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait(5)
        log.close()
