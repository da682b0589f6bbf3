"""A short marketplace day, played against a running server through the HTTP API and the sandbox.

    make demo                      # starts its own server (SQLite in a temp dir, short timers)
    python -m demo --base URL      # or plays against a server you started (sandbox on)

Two publishers and four workers log in through the WeChat sandbox (a worker and a publisher with
inviters), the publishers recharge by "paying" in the sandbox, and then: a race of three workers for
one slot, an approval, an auto-approval when the review window runs out, a rejection and an appeal,
an expiry refund, and a withdrawal request. At the end it prints every balance and the ledger audit.
With its own server the timers are shortened (seconds instead of minutes) so the day takes ~30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

SHORT_TIMERS = {"take_window_s": 8, "countdown_s": 6, "review_window_s": 5, "appeal_window_s": 5}
_seq = itertools.count(1)


def say(text: str) -> None:
    print(f"  {text}", flush=True)


class Player:
    def __init__(self, base: str, end: str, name: str, data: dict) -> None:
        self.end, self.name, self.id = end, name, data["user"]["id"]
        self.invite_code = data["user"]["invite_code"]
        self.http = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {data['token']}"}, timeout=30)

    async def call(self, method: str, path: str, **kw) -> httpx.Response:
        return await self.http.request(method, f"/api/v1/{self.end}{path}", **kw)

    async def ok(self, method: str, path: str, **kw) -> dict:
        r = await self.call(method, path, **kw)
        if r.status_code >= 300:
            raise SystemExit(f"{self.name}: {method} {path} -> {r.status_code} {r.text}")
        return r.json()


async def login(base: str, end: str, name: str, invite_code: str | None = None) -> Player:
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        body = {"code": f"{name}-{next(_seq)}", "nickname": name} | ({"invite_code": invite_code} if invite_code else {})
        r = await c.post(f"/api/v1/{end}/login", json=body)
        r.raise_for_status()
        return Player(base, end, name, r.json())


async def recharge(base: str, who: Player, amount_fen: int) -> None:
    started = await who.ok("POST", "/recharges", json={"amount_fen": amount_fen, "request_id": f"demo-{next(_seq)}"})
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:  # the person pays in WeChat
        (await c.post("/sandbox/pay/_simulate/pay", json={"out_trade_no": started["out_trade_no"]})).raise_for_status()
    for _ in range(50):  # the balance changes when WeChat Pay's notification has arrived
        if (await who.ok("GET", f"/recharges/{started['recharge_id']}"))["status"] == "paid":
            return
        await asyncio.sleep(0.1)
    raise SystemExit("the recharge was never credited")


async def wait_status(who: Player, path: str, status: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = await who.ok("GET", path)
        if view.get("status") == status or view.get("task", {}).get("status") == status:
            return view
        await asyncio.sleep(0.5)
    raise SystemExit(f"{path} never became {status}")


def yuan(fen: int) -> str:
    return f"¥{fen / 100:,.2f}"


async def play(base: str) -> None:
    print("A marketplace day:")
    carol = await login(base, "publisher", "carol")  # invites alice
    alice = await login(base, "publisher", "alice", carol.invite_code)
    dora = await login(base, "publisher", "dora")
    erin = await login(base, "worker", "erin")  # invites bob
    bob = await login(base, "worker", "bob", erin.invite_code)
    frank = await login(base, "worker", "frank")
    gina = await login(base, "worker", "gina")
    say("logged in: publishers carol, alice (invited by carol), dora; workers erin, bob (invited by erin), frank, gina")

    await recharge(base, alice, 50_000)
    await recharge(base, dora, 30_000)
    say(f"alice recharged {yuan(50_000)}, dora {yuan(30_000)} (paid in the sandbox, credited by WeChat Pay's notification)")

    # 1. A race for a single slot, then an approval.
    t1 = await alice.ok("POST", "/tasks", json={"title": "Scan the shop's QR code", "instructions": "Scan and follow", "unit_price_fen": 1_200, "request_id": f"demo-t-{next(_seq)}"})
    results = await asyncio.gather(*(w.call("POST", f"/tasks/{t1['id']}/take") for w in (bob, frank, gina)))
    winners = [(w, r) for w, r in zip((bob, frank, gina), results) if r.status_code == 201]
    losers = [r.json()["error"]["code"] for r in results if r.status_code != 201]
    winner, won = winners[0]
    say(f"race for task {t1['id']}: {winner.name} won; the others were told {sorted(set(losers))}")
    await winner.ok("POST", f"/orders/{won.json()['id']}/submit", json={"proof_text": "scanned"})
    await alice.ok("POST", f"/orders/{won.json()['id']}/approve")
    say(f"{winner.name} submitted; alice approved: {winner.name} earns {yuan(1_200)}")

    # 2. Nobody reviews: the review window runs out and the order is approved automatically.
    t2 = await dora.ok("POST", "/tasks", json={"title": "Write a review", "instructions": "Two sentences", "unit_price_fen": 800, "request_id": f"demo-t-{next(_seq)}"})
    o2 = await bob.ok("POST", f"/tasks/{t2['id']}/take")
    await bob.ok("POST", f"/orders/{o2['id']}/submit", json={"proof_text": "written"})
    say(f"bob submitted task {t2['id']}; dora never reviews it ...")
    await wait_status(bob, f"/orders/{o2['id']}", "completed")
    say("... the review window ran out: auto-approved, bob paid (and his inviter erin earns a referral reward)")

    # 3. A rejection and an appeal.
    t3 = await alice.ok("POST", "/tasks", json={"title": "Follow the account", "instructions": "Follow and screenshot", "unit_price_fen": 500, "request_id": f"demo-t-{next(_seq)}"})
    o3 = await frank.ok("POST", f"/tasks/{t3['id']}/take")
    await frank.ok("POST", f"/orders/{o3['id']}/submit", json={"proof_text": "followed"})
    await alice.ok("POST", f"/orders/{o3['id']}/reject", json={"reason": "no screenshot"})
    appealed = await frank.ok("POST", f"/orders/{o3['id']}/appeal", json={"reason": "I did follow; see my account"})
    say(f"alice rejected frank's order {o3['id']}; frank appealed: it is {appealed['status']} (an operator decides)")

    # 4. Nobody takes a task: its slots are refunded when the take window ends.
    t4 = await dora.ok("POST", "/tasks", json={"title": "Nobody wants this", "instructions": "-", "unit_price_fen": 300, "quantity": 3, "request_id": f"demo-t-{next(_seq)}"})
    say(f"dora published task {t4['id']} with 3 slots; nobody takes it ...")
    await wait_status(dora, f"/tasks/{t4['id']}", "expired")
    say(f"... the take window ended: {yuan(3 * (300 + 30))} refunded to dora")

    # 5. A withdrawal request.
    w = await winner.ok("POST", "/withdrawals", json={"amount_fen": 1_000, "request_id": f"demo-w-{next(_seq)}"})
    say(f"{winner.name} asked to withdraw {yuan(w['amount_fen'])} (fee {yuan(w['fee_fen'])}): {w['status']}, waiting for an operator")

    print("\nBalances (available / withdrawing):")
    for who in (carol, alice, dora, erin, bob, frank, gina):
        wallet = await who.ok("GET", "/wallet")
        print(f"  {who.end:9} {who.name:6} {yuan(wallet['available_fen']):>12} / {yuan(wallet['withdrawing_fen'])}")
    for who in (carol, alice, dora, erin, bob, frank, gina):
        await who.http.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_up(base: str, proc: subprocess.Popen) -> None:
    async with httpx.AsyncClient() as c:
        for _ in range(120):
            if proc.poll() is not None:
                raise SystemExit("the server did not start; see its log above")
            try:
                if (await c.get(f"{base}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
    raise SystemExit("the server did not come up in time")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="play against this running server instead of starting one")
    args = parser.parse_args()
    if args.base:
        asyncio.run(play(args.base.rstrip("/")))
        return 0

    work = Path(tempfile.mkdtemp(prefix="market-demo-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKET")}
    env.update({
        "DATABASE_URL": f"sqlite://{work}/demo.sqlite3",
        "PORT": str(port),
        "MARKET__UPLOADS_DIR": str(work / "uploads"),
        "MARKET__WECHAT__SANDBOX_BASE": f"{base}/sandbox",
        **{f"MARKET__MARKET__{k.upper()}": str(v) for k, v in SHORT_TIMERS.items()},
    })
    env.pop("REDIS_URL", None)
    print(f"Starting a server on {base} (SQLite in {work}, timers in seconds) ...", flush=True)
    server = subprocess.Popen([sys.executable, "-m", "server"], env=env, stdout=open(work / "server.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        asyncio.run(wait_up(base, server))
        asyncio.run(play(base))
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    print("\nLedger audit:", flush=True)
    return subprocess.call([sys.executable, "-m", "server", "ledger-audit"], env=env)


if __name__ == "__main__":
    sys.exit(main())
