"""Push fan-out: one published task reaching every connected worker's WebSocket.

`python -m bench.push_fanout [--quick] [--clients N] [--procs P]`

1. A fresh database (dropped at the end); one publisher (registered, funded through
   `recharges.create` + `credit`) and N workers (bulk SQL, the rows `login_or_register` writes),
   with tokens from `issue_token`.
2. The real server (`python -m server`, 2 workers, Redis bus, scheduler not embedded).
3. N WebSocket clients (`websockets`, uvloop) spread over P client processes connect to
   `/api/v1/ws?token=...`; we wait until every one has its `welcome`. Server memory: VmRSS of each
   server worker process before and after, divided by the connections.
4. Rounds: the publisher publishes a task through `POST /api/v1/publisher/tasks` (the path a real
   publish takes: commit, relay poked, Redis pub/sub, each worker's hub, one frame written per
   socket); each client stamps the arrival of `hall.task_published` with CLOCK_MONOTONIC (one
   clock for every process on the machine). Latency = arrival − the moment the POST was sent.
   Round 0 is a warm-up and is not counted. Events are matched by a random title, since Redis
   pub/sub channels are shared by every Redis database on the host.

Clients and server share the machine's 2 cores: the client processes' CPU is printed, and the
figures are the time until the last client *processed* the event, which includes client-side lag.
"""

from __future__ import annotations

import uuid

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import _live
from bench._live import ServerProcess, log, percentile

HANDSHAKES_IN_FLIGHT = 25  # per client process (Sanic's listen backlog is 100)
PING_S = float(os.environ.get("BENCH_WS_PING_S", "20"))  # 0 = never ping (shows the heartbeat bug)


# --- the client process -----------------------------------------------------------------------------------
async def client_main(url: str, tokens_file: str, start: int, count: int) -> None:
    import websockets
    from websockets.asyncio.client import connect

    _live.raise_nofile(count + 256)
    tokens = Path(tokens_file).read_text().split()[start:start + count]
    arrivals: dict[str, list[float]] = {}
    welcomed = 0
    failed = 0
    busy = [0]  # handshakes answered 503 server_busy (retried)
    errors: list[str] = []
    gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
    all_welcomed = asyncio.Event()
    stop = asyncio.Event()
    sockets = []

    async def one(token: str) -> None:
        nonlocal welcomed, failed
        try:
            async with gate:
                while True:
                    try:
                        ws = await connect(f"{url}?token={token}", open_timeout=60, max_queue=64, compression=None)
                        break
                    except websockets.exceptions.InvalidStatus as exc:  # 503 server_busy: as live.js, wait Retry-After × (1 + random)
                        if exc.response.status_code != 503:
                            raise
                        busy[0] += 1
                        await asyncio.sleep(float(exc.response.headers.get("Retry-After", "5")) * (1 + random.random()))
                first = json.loads(await ws.recv())
                if first.get("type") != "welcome":
                    raise RuntimeError(f"first message {first}")
            sockets.append(ws)
            welcomed += 1
        except Exception as exc:  # noqa: BLE001
            failed += 1
            if len(errors) < 3:
                errors.append(repr(exc)[:160])
            return
        finally:
            if welcomed + failed == count:
                all_welcomed.set()
        if PING_S:
            pinger = asyncio.create_task(ping(ws))
        try:
            async for raw in ws:
                if "hall.task_published" in raw:
                    at = time.monotonic()
                    event = json.loads(raw)
                    if event.get("type") == "hall.task_published":
                        arrivals.setdefault(event["data"].get("title", ""), []).append(at)
        except websockets.ConnectionClosed:
            pass

    async def ping(ws) -> None:
        # A client message before the server's 25 s receive timeout keeps the socket off the
        # heartbeat path, which closes it (see bench/README-http.md). First ping 5–20 s in.
        import random

        await asyncio.sleep(random.uniform(5, PING_S))
        with contextlib.suppress(Exception):
            while True:
                await ws.send('{"type":"ping"}')
                await asyncio.sleep(PING_S)

    t0 = time.monotonic()
    tasks = [asyncio.create_task(one(t)) for t in tokens]
    await all_welcomed.wait()
    print(f"READY {welcomed} {failed} {time.monotonic() - t0:.2f} {busy[0]} {json.dumps(errors)}", flush=True)

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while not stop.is_set():
        line = (await reader.readline()).decode().strip()
        if not line or line == "QUIT":
            break
        cmd, marker, timeout = line.split()
        deadline = time.monotonic() + float(timeout)
        while len(arrivals.get(marker, ())) < welcomed and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        cpu = time.process_time()
        print(f"TIMES {marker} {cpu:.3f} {json.dumps(arrivals.get(marker, []))}", flush=True)
    for ws in sockets:
        ws.transport.abort() if ws.transport else None
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- the benchmark ----------------------------------------------------------------------------------------
class Clients:
    def __init__(self, ws_url: str, tokens_file: Path, n: int, procs: int) -> None:
        per = -(-n // procs)
        self.busy = 0
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", "bench.push_fanout", "--client", ws_url, str(tokens_file), str(i * per), str(min(per, n - i * per))],
                cwd=_live.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            )
            for i in range(procs) if n - i * per > 0
        ]

    async def ready(self) -> tuple[int, int, float, list]:
        lines = await asyncio.gather(*(asyncio.to_thread(p.stdout.readline) for p in self.procs))
        ok = failed = 0
        secs = 0.0
        errs = []
        for line in lines:
            if not line.startswith("READY"):
                raise RuntimeError(f"client process said {line!r}")
            _, a, b, s, busy, e = line.split(" ", 5)
            ok, failed, secs = ok + int(a), failed + int(b), max(secs, float(s))
            self.busy += int(busy)
            errs += json.loads(e)
        return ok, failed, secs, errs

    async def arrivals(self, marker: str, timeout: float) -> tuple[list[float], float]:
        for p in self.procs:
            p.stdin.write(f"WAIT {marker} {timeout}\n")
            p.stdin.flush()
        lines = await asyncio.gather(*(asyncio.to_thread(p.stdout.readline) for p in self.procs))
        times: list[float] = []
        cpu = 0.0
        for line in lines:
            _, _, c, data = line.split(" ", 3)
            cpu += float(c)
            times += json.loads(data)
        return times, cpu

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    p.stdin.write("QUIT\n")
                    p.stdin.flush()
                except OSError:
                    pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


async def main(n: int, procs: int, rounds: int) -> None:
    import httpx

    from miniprogram_api.auth import issue_token
    from models import db
    from models.users import User
    from server.config import key_ring, load_config

    _live.raise_nofile(n + 1024)
    print(f"# push_fanout — {n} WebSocket clients in {procs} client processes, {rounds} counted rounds")
    print(f"machine: {os.cpu_count()} cores, load average at start {Path('/proc/loadavg').read_text().split()[:3]}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-push-"))
    async with _live.fresh_database() as url:
        t0 = time.monotonic()
        (pub,) = await _live.publishers(1)
        await _live.fund(pub, 100 * (rounds + 1) * 110)
        publisher_token = issue_token(key_ring(load_config()), await User.get(id=pub), ttl_s=3 * 3600)[0]
        worker_ids = await _live.bulk_workers(url, n)
        tokens = await _live.worker_tokens(worker_ids)
        (tmp / "tokens.txt").write_text("\n".join(tokens) + "\n")
        print(f"seeded 1 publisher and {n} workers in {time.monotonic() - t0:.1f} s")
        await db.close_db()

        # db_pool_max 10 (not 20): the PostgreSQL here is shared (max_connections 100) and sockets need little of it.
        server = ServerProcess.market(url, workers=2, extra_env={"MARKET__DB_POOL_MAX": "10"})
        clients: Clients | None = None
        try:
            await server.start()
            workers = server.worker_pids()
            rss0 = {p: _live.rss_kib(p) for p in workers}
            cpu0 = {p: _live.cpu_seconds(p) for p in workers}
            t_conn = time.monotonic()
            clients = Clients(f"ws://127.0.0.1:{server.port}/api/v1/ws", tmp / "tokens.txt", n, procs)
            ok, failed, secs, errs = await clients.ready()
            print(f"connected and welcomed: {ok} of {n} ({failed} failed{': ' + '; '.join(errs) if errs else ''}) in {time.monotonic() - t_conn:.1f} s "
                  f"({ok / max(secs, 1e-9):.0f} handshakes/s); server workers' CPU for the handshakes "
                  f"{1000 * sum(_live.cpu_seconds(p) - cpu0[p] for p in workers) / max(ok, 1):.2f} ms per connection; "
                  f"{clients.busy} handshakes answered 503 server_busy and retried")
            await asyncio.sleep(3)
            rss1 = {p: _live.rss_kib(p) for p in workers}
            for p in workers:
                print(f"  server worker {p}: VmRSS {rss0[p] / 1024:.1f} MiB → {rss1[p] / 1024:.1f} MiB (+{(rss1[p] - rss0[p]) / 1024:.1f} MiB)")
            grow = sum(rss1.values()) - sum(rss0.values())
            print(f"server memory per connection: {grow / max(ok, 1):.1f} KiB (VmRSS growth of the {len(workers)} workers / {ok} sockets)")

            results = []
            async with httpx.AsyncClient(base_url=server.base, headers={"Authorization": f"Bearer {publisher_token}"}, timeout=30) as http:
                for r in range(rounds + 1):
                    marker = f"fanout-{secrets.token_hex(4)}-{r}"
                    cpu_before = {p: _live.cpu_seconds(p) for p in workers + clients.pids()}
                    sent = time.monotonic()
                    resp = await http.post("/api/v1/publisher/tasks", json={"title": marker, "instructions": "Fan-out probe.", "unit_price_fen": 100, "quantity": 1, "request_id": uuid.uuid4().hex})
                    answered = time.monotonic() - sent
                    if resp.status_code != 201:
                        raise RuntimeError(f"publish failed: {resp.status_code} {resp.text}")
                    times, _ = await clients.arrivals(marker, 60)
                    lat = sorted(1000 * (t - sent) for t in times)
                    srv = sum(_live.cpu_seconds(p) - cpu_before[p] for p in workers)
                    cli = sum(_live.cpu_seconds(p) - cpu_before[p] for p in clients.pids())
                    label = "warm-up" if r == 0 else f"round {r}"
                    print(f"{label}: {len(lat)}/{ok} received; publish answered in {1000 * answered:.1f} ms; arrival after the POST was sent: "
                          f"p50 {percentile(lat, 50):.0f} ms, p99 {percentile(lat, 99):.0f} ms, max {lat[-1] if lat else float('nan'):.0f} ms "
                          f"(server workers CPU {1000 * srv:.0f} ms, client processes CPU {1000 * cli:.0f} ms)")
                    if r:
                        results.append((len(lat), lat))
                    await asyncio.sleep(2)
            all_lat = sorted(x for _, lat in results for x in lat)
            got = sum(k for k, _ in results)
            print()
            print(f"over {rounds} rounds: {got}/{rounds * ok} deliveries; p50 {percentile(all_lat, 50):.0f} ms, "
                  f"p99 {percentile(all_lat, 99):.0f} ms, max {all_lat[-1]:.0f} ms; "
                  f"worst round's max {max(lat[-1] for _, lat in results):.0f} ms")
        finally:
            if clients is not None:
                clients.stop()
            server.stop()
        import collections
        import re as _re

        text = server.logfile.read_text(errors="replace") if server.logfile.exists() else ""
        kinds = collections.Counter(m.group(0)[:110] for m in _re.finditer(r"^[\w.]+(?:Error|Exception)\b.*$", text, _re.M))
        print("server log, exceptions by kind:", dict(kinds.most_common(5)) or "none", "| slow clients dropped:", text.count("dropping slow"))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        import uvloop

        uvloop.run(client_main(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
        sys.exit(0)
    parser = argparse.ArgumentParser(prog="python -m bench.push_fanout")
    parser.add_argument("--quick", action="store_true", help="500 clients")
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--procs", type=int, default=None, help="client processes (default 4; 2 with --quick)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.clients or (500 if args.quick else 5_000)
    asyncio.run(main(n, args.procs or (2 if args.quick else 4), args.rounds))
