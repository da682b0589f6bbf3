"""With two server processes and Redis, an event produced in one reaches a client of the other."""

from __future__ import annotations

import uuid

import asyncio
import json
import os
import subprocess
import sys
import time

import httpx
import pytest
import websockets

from miniprogram_api.auth import issue_token
from server.config import key_ring, load_config
from tests import personas as p
from tests.api.conftest import free_port

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def start_server(database_url: str, port: int, tmp_path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "PORT": str(port),
        "MARKET__SCHEDULER__EMBEDDED": "false",
        "MARKET__UPLOADS_DIR": str(tmp_path / f"uploads-{port}"),
        "MARKET__WECHAT__SANDBOX_BASE": f"http://127.0.0.1:{port}/sandbox",
    }
    env.pop("MARKET_CONFIG", None)
    log = open(tmp_path / f"server-{port}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "server"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


async def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the server process exited"
            try:
                if (await c.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise AssertionError(f"server on {port} did not come up")


def stop(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(10)
    except Exception:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_an_event_from_one_process_reaches_a_client_of_another(database, tmp_path):
    redis = pytest.importorskip("redis.asyncio")
    try:
        r = redis.from_url(REDIS_URL)
        await r.ping()
        await r.aclose()
    except Exception:
        pytest.skip("needs Redis at TEST_REDIS_URL")
    secret = key_ring(load_config(env={}))
    alice = await p.publisher("alice", balance_fen=10_000)
    bob = await p.worker("bob")
    port_a, port_b = free_port(), free_port()
    a, b = start_server(database, port_a, tmp_path), start_server(database, port_b, tmp_path)
    try:
        await asyncio.gather(wait_healthy(port_a, a), wait_healthy(port_b, b))
        ws = await websockets.connect(f"ws://127.0.0.1:{port_b}/api/v1/ws?token={issue_token(secret, bob)[0]}")
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_a}", headers={"Authorization": f"Bearer {issue_token(secret, alice)[0]}"}) as c:
            r = await c.post("/api/v1/publisher/tasks", json={"title": "Cross", "instructions": "x", "unit_price_fen": 500, "request_id": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
        task_id = r.json()["id"]

        async def published():
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "hall.task_published" and message["data"]["task_id"] == task_id:
                    return message

        event = await asyncio.wait_for(published(), 10)
        assert event["data"]["title"] == "Cross"
        await ws.close()
    finally:
        stop(a)
        stop(b)
