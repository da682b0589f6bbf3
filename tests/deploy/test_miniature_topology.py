"""The production topology in miniature (issue 15, docs/operations.md): two server processes on two
ports (one with two workers), two standalone schedulers, PostgreSQL, Redis, and a PRODUCTION
configuration whose WeChat clients talk to a stand-in for WeChat's hosts (wechat/standin.py) with
generated keys — the built-in sandbox is never mounted. A flow crosses the processes: logins,
a recharge paid at "WeChat" and notified to the other server, publish, a live push to a socket on
the other server, take, submit, approve, subscription messages sent by a scheduler; then the
ledger audit, the reconciliation command against the stand-in's bills, both processes' metrics,
and a grep of every process's JSON logs for secrets, tokens and openids.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import websockets
import yaml

from tests.conftest import TEST_DATABASE_URL, USE_POSTGRES
from tests.wechat_integration.conftest import free_port
from wechat import crypto
from wechat.config import CHINA_TZ

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
WORKER_APPID, PUBLISHER_APPID = "wxminiworker0000001", "wxminipublisher0001"
MCHID, SERIAL, PUB_KEY_ID = "1900000009", "5A4D5A4D5A4D5A4D5A4D5A4D5A4D5A4DMINI0001", "PUB_KEY_ID_MINIATURE000000000000001"


TEMPLATES = yaml.safe_load((Path(__file__).parents[2] / "config.yaml").read_text(encoding="utf-8"))["wechat"]["subscription_templates"]


def template_id(end: str, event: str) -> str:
    """A template id as the 订阅消息 console gives them (43 characters), one per end and event."""
    return hashlib.sha256(f"{end}/{event}".encode()).hexdigest()[:43]


class Topology:
    def __init__(self, tmp_path) -> None:
        self.tmp = tmp_path
        self.procs: dict[str, subprocess.Popen] = {}
        merchant, platform = crypto.generate_private_key_pem(), crypto.generate_private_key_pem()
        apiv3 = secrets.token_urlsafe(24)[:32]
        self.secrets = {"MARKET_SECRET_KEY": secrets.token_urlsafe(48), "MARKET_METRICS_TOKEN": secrets.token_urlsafe(32),
                        "WECHAT_WORKER_SECRET": secrets.token_hex(16), "WECHAT_PUBLISHER_SECRET": secrets.token_hex(16),
                        "WECHATPAY_APIV3_KEY": apiv3}
        self.material = {"merchant_private_key": merchant, "platform_private_key": platform, "apiv3_key": apiv3}
        self.ports = {name: free_port() for name in ("wechat", "a", "b", "metrics1", "metrics2")}
        base, _, _ = TEST_DATABASE_URL.rpartition("/")
        self.db_name = f"market_mini_{uuid.uuid4().hex[:8]}"
        self.database_url = f"{base}/{self.db_name}"
        wx = f"http://127.0.0.1:{self.ports['wechat']}"
        notify = f"http://127.0.0.1:{self.ports['b']}"  # WeChat calls back the other server
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MARKET", "WECHAT", "PROMETHEUS"))},
            **self.secrets,
            "MARKET_PRODUCTION": "true", "DATABASE_URL": self.database_url, "REDIS_URL": REDIS_URL,
            "MARKET_LOG_FORMAT": "json", "MARKET__SCHEDULER__EMBEDDED": "false",
            "MARKET__SCHEDULER__OUTBOX_INTERVAL_S": "0.3",
            "MARKET__WECHAT__SANDBOX": "false",
            "MARKET__WECHAT__API_BASE": wx + "/wx/", "MARKET__WECHAT__PAY_BASE": wx + "/pay",
            "MARKET__WECHAT__WORKER__APPID": WORKER_APPID, "MARKET__WECHAT__PUBLISHER__APPID": PUBLISHER_APPID,
            "MARKET__WECHAT__PAY__MCHID": MCHID, "MARKET__WECHAT__PAY__MERCHANT_SERIAL_NO": SERIAL,
            "MARKET__WECHAT__PAY__PUBLIC_KEY_ID": PUB_KEY_ID,
            "MARKET__WECHAT__PAY__NOTIFY_URL": notify + "/api/wechat/pay/notify",
            "MARKET__WECHAT__PAY__TRANSFER_NOTIFY_URL": notify + "/api/wechat/transfer/notify",
            "WECHATPAY_PRIVATE_KEY": merchant, "WECHATPAY_PUBLIC_KEY": crypto.public_key_pem_of(platform),
            # Production refuses config.yaml's REPLACE-... placeholders: the ids chosen in the console.
            **{f"MARKET__WECHAT__SUBSCRIPTION_TEMPLATES__{end.upper()}__{event.upper()}__TEMPLATE_ID": template_id(end, event)
               for end, events in TEMPLATES.items() for event in events},
        }

    def start(self, name: str, args: list[str], **env) -> None:
        log = open(self.tmp / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen([sys.executable, *args], env={**self.env, **env}, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def run(self, args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], env=self.env, capture_output=True, text=True, timeout=120)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join((self.tmp / f"{name}.log").read_text(errors="replace") for name in self.procs)


async def wait_for(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"{url}: the process exited"
            try:
                if (await c.get(url)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise AssertionError(f"{url} did not come up")


async def eventually(check, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.3)


async def _db(admin_sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(TEST_DATABASE_URL.replace("asyncpg://", "postgres://").split("?")[0])
    try:
        await conn.execute(admin_sql)
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def topology(tmp_path):
    if not USE_POSTGRES:
        pytest.skip("needs PostgreSQL")
    from tests.conftest import connect_test_redis

    await (await connect_test_redis()).aclose()
    t = Topology(tmp_path)
    await _db(f'CREATE DATABASE "{t.db_name}"')
    try:
        migrated = t.run(["-m", "server", "migrate"])
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        standin_cfg = {"worker": {"appid": WORKER_APPID}, "publisher": {"appid": PUBLISHER_APPID},
                       "pay": {"mchid": MCHID, "merchant_serial_no": SERIAL, "public_key_id": PUB_KEY_ID},
                       "sandbox_options": {"notify_retry_schedule_s": [0, 0.5, 1, 2]}}
        t.start("wechat", ["-m", "wechat.standin", "--port", str(t.ports["wechat"])], MARKET_PRODUCTION="",
                WECHAT_SANDBOX_MATERIAL=json.dumps(t.material), STANDIN_CONFIG=json.dumps(standin_cfg))
        t.start("server-a", ["-m", "server"], PORT=str(t.ports["a"]), MARKET__WORKERS="2")
        t.start("server-b", ["-m", "server"], PORT=str(t.ports["b"]))
        t.start("scheduler-1", ["-m", "scheduler"], MARKET__METRICS__SCHEDULER_PORT=str(t.ports["metrics1"]))
        t.start("scheduler-2", ["-m", "scheduler"], MARKET__METRICS__SCHEDULER_PORT=str(t.ports["metrics2"]))
        await asyncio.gather(
            wait_for(f"http://127.0.0.1:{t.ports['wechat']}/_inspect", t.procs["wechat"]),
            wait_for(f"http://127.0.0.1:{t.ports['a']}/healthz", t.procs["server-a"]),
            wait_for(f"http://127.0.0.1:{t.ports['b']}/healthz", t.procs["server-b"]),
            wait_for(f"http://127.0.0.1:{t.ports['metrics1']}/metrics", t.procs["scheduler-1"]),
            wait_for(f"http://127.0.0.1:{t.ports['metrics2']}/metrics", t.procs["scheduler-2"]),
        )
        yield t
    finally:
        t.stop_all()
        await _db(f'DROP DATABASE IF EXISTS "{t.db_name}" WITH (FORCE)')


async def test_a_flow_runs_across_the_production_topology_in_miniature(topology):
    t = topology
    a = httpx.AsyncClient(base_url=f"http://127.0.0.1:{t.ports['a']}", timeout=20)
    b = httpx.AsyncClient(base_url=f"http://127.0.0.1:{t.ports['b']}", timeout=20)
    wx = httpx.AsyncClient(base_url=f"http://127.0.0.1:{t.ports['wechat']}", timeout=20)
    try:
        # Production never mounts the built-in sandbox.
        assert (await a.get("/sandbox/")).status_code == 404 and (await b.get("/sandbox/_inspect")).status_code == 404

        r = await a.post("/api/v1/publisher/login", json={"code": "alice-1"})
        assert r.status_code == 200, r.text
        alice_token = r.json()["token"]
        alice = {"Authorization": f"Bearer {alice_token}"}
        r = await b.post("/api/v1/worker/login", json={"code": "bob-1"})
        assert r.status_code == 200, r.text
        bob_token = r.json()["token"]
        bob = {"Authorization": f"Bearer {bob_token}"}

        # Recharge on A, paid at "WeChat", notified to B, credited once.
        r = await a.post("/api/v1/publisher/recharges", json={"amount_fen": 5_000, "request_id": "mini-1"}, headers=alice)
        assert r.status_code in (200, 201), r.text
        out_trade_no = r.json()["out_trade_no"]
        paid = await wx.post("/pay/_simulate/pay", json={"out_trade_no": out_trade_no, "wait": True})
        assert paid.json()["notification"]["status"] == 204, paid.text

        async def credited():
            return (await a.get("/api/v1/publisher/wallet", headers=alice)).json()["available_fen"] == 5_000
        assert await eventually(credited)

        # Bob's socket is on server A; Alice publishes on server B: the hall event crosses by Redis.
        ws = await websockets.connect(f"ws://127.0.0.1:{t.ports['a']}/api/v1/ws?token={bob_token}")
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
        r = await b.post("/api/v1/publisher/tasks", json={"title": "扫码关注", "instructions": "scan", "unit_price_fen": 1_000, "request_id": "mini-1"},
                         headers=alice)
        assert r.status_code == 201, r.text
        task_id = r.json()["id"]

        async def published():
            while True:
                m = json.loads(await ws.recv())
                if m.get("type") == "hall.task_published" and m["data"]["task_id"] == task_id:
                    return m
        await asyncio.wait_for(published(), 10)
        await ws.close()

        r = await a.post(f"/api/v1/worker/tasks/{task_id}/take", headers=bob)
        assert r.status_code == 201, r.text
        order_id = r.json()["id"]
        assert (await b.post(f"/api/v1/worker/tasks/{task_id}/take", headers=bob)).status_code == 409
        assert (await b.post(f"/api/v1/worker/orders/{order_id}/submit", json={"proof_text": "ok"}, headers=bob)).status_code == 200
        assert (await a.post(f"/api/v1/publisher/orders/{order_id}/approve", headers=alice)).status_code == 200

        # A scheduler sent the subscription messages to "WeChat".
        async def messages():
            state = (await wx.get("/_inspect")).json()
            return {m["template_id"] for m in state["messages"]} >= {template_id("publisher", "order_taken"), template_id("worker", "order_approved")}
        assert await eventually(messages), (await wx.get("/_inspect")).json()["messages"]

        # Metrics: server A sums its two workers; each scheduler serves its own port.
        token = {"Authorization": f"Bearer {t.secrets['MARKET_METRICS_TOKEN']}"}
        assert (await a.get("/metrics")).status_code == 401
        m = (await a.get("/metrics", headers=token)).text
        assert 'market_takes_total{reason="",result="won"} 1.0' in m
        assert "market_scheduler_heartbeat_age_seconds" in m and "market_overdue_rows" in m
        sched = "".join([(await httpx.AsyncClient().get(f"http://127.0.0.1:{t.ports[p]}/metrics")).text
                         for p in ("metrics1", "metrics2")])
        assert 'market_subscription_sends_total{errcode="",result="sent"}' in sched

        audit = t.run(["-m", "server", "ledger-audit"])
        assert audit.returncode == 0, audit.stdout + audit.stderr
        today = dt.datetime.now(CHINA_TZ).date().isoformat()
        recon = t.run(["-m", "server", "reconcile", "--date", today])
        assert recon.returncode == 0, recon.stdout + recon.stderr
        assert "clean; trade rows 1" in recon.stdout
    finally:
        for c in (a, b, wx):
            await c.aclose()

    t.stop_all()
    text = t.logs()
    for name in ("server-a", "server-b", "scheduler-1", "scheduler-2"):  # one JSON object per line
        own = [line for line in (t.tmp / f"{name}.log").read_text().splitlines() if line.strip()]
        assert own and [line for line in own if not line.startswith("{")] == [], name
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) > 20 and any(line.get("request_id") for line in lines)
    import asyncpg

    conn = await asyncpg.connect(t.database_url)
    try:
        openids = [r["openid"] for r in await conn.fetch("SELECT openid FROM users")]
    finally:
        await conn.close()
    forbidden = [*t.secrets.values(), alice_token, bob_token, *openids,
                 t.material["merchant_private_key"].splitlines()[1], t.material["platform_private_key"].splitlines()[1]]
    assert len(openids) == 2 and [v for v in forbidden if v in text] == []
