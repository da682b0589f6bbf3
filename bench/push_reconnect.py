"""A node dies with thousands of sockets: they reconnect to the other node and resume (issue 9).

`python -m bench.push_reconnect [--clients 5000] [--procs 4] [--rate 10] [--before 5] [--after 10]`

1. A fresh database; N workers (bulk SQL) with tokens.
2. Two servers, A and B (`python -m server`, 2 workers each, Redis bus, one database).
3. N WebSocket clients in P client processes, all on A; each behaves as `miniprogram/shared/live.js`:
   it keeps the seq of the last event it processed, and when its socket breaks it waits
   `random(0, min(30 s, 0.5 s × 2^(failures−1)))` ("full jitter"), or after a 503 `server_busy`
   `Retry-After × (1 + random(0, 1))`, and reconnects — to B, since A is gone — with `?after_seq=`.
4. Hall events (every worker's socket gets each) are written into the outbox at `--rate` per second
   for `--before` seconds; then A is killed (SIGKILL, its whole process group) and the writes go on
   for `--after` seconds; then they stop. The target is the log's last seq.
5. Figures: the time from the kill until every client is current (has processed the target seq;
   given up after 300 s), how the reconnects spread, and per socket: events repeated (a seq at or
   below one it had) and, on the sockets that are current, events missing (the log holds every seq
   from its welcome to the target; all are hall events).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import _live
from bench._live import ServerProcess

HANDSHAKES_IN_FLIGHT = 25  # per client process, for the first connections only (not the reconnects)
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0


# --- the client process -----------------------------------------------------------------------------------
async def client_main(url_a: str, url_b: str, tokens_file: str, start: int, count: int) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    _live.raise_nofile(count + 256)
    tokens = Path(tokens_file).read_text().split()[start:start + count]
    n = len(tokens)
    state = [{"first": None, "last": None, "got": 0, "dup": 0, "reconnects": 0, "busy": 0, "back_at": None} for _ in range(n)]
    welcomed = asyncio.Event()
    welcomes = [0]
    gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def one(i: int) -> None:
        s = state[i]
        url = url_a
        failures = 0
        first = True
        while not stop.is_set():
            query = f"?token={tokens[i]}" + (f"&after_seq={s['last']}" if s["last"] is not None else "")
            try:
                if first:
                    async with gate:
                        ws = await connect(url + query, open_timeout=30, ping_interval=None, max_queue=None)
                else:
                    ws = await connect(url + query, open_timeout=30, ping_interval=None, max_queue=None)
                async with ws:
                    async for raw in ws:
                        m = json.loads(raw)
                        kind = m.get("type")
                        if "seq" in m:
                            if m["seq"] <= s["last"]:
                                s["dup"] += 1
                            else:
                                s["got"] += 1
                                s["last"] = m["seq"]
                        elif kind == "welcome":
                            failures = 0
                            if s["last"] is None:
                                s["first"] = s["last"] = m["last_seq"]
                                welcomes[0] += 1
                                if welcomes[0] == n:
                                    welcomed.set()
                            else:
                                s["back_at"] = time.monotonic()
                        elif kind == "replay_truncated":
                            s["last"] = m["last_seq"]
            except InvalidStatus as exc:  # 503 server_busy: wait Retry-After × (1 + random), as live.js
                retry_after = float(exc.response.headers.get("Retry-After", "5")) if exc.response.status_code == 503 else None
            except Exception:  # noqa: BLE001 - refused, reset, killed: back off and try again
                retry_after = None
            else:
                retry_after = None
            if stop.is_set():
                return
            if s["last"] is not None:  # welcomed on A once: A is gone, reconnect to B
                first = False
                url = url_b
            failures += 1
            s["reconnects"] += 1
            if retry_after is not None:
                s["busy"] += 1
                await asyncio.sleep(retry_after * (1 + random.random()))
            else:
                await asyncio.sleep(random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** (failures - 1))))

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    t0 = time.monotonic()
    await welcomed.wait()
    print(f"READY {n} {time.monotonic() - t0:.2f}", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)  # "TARGET <seq> <timeout_s>"
    _, target_s, timeout_s = line.split()
    target = int(target_s)
    deadline = time.monotonic() + float(timeout_s)
    while time.monotonic() < deadline and not all(s["last"] is not None and s["last"] >= target for s in state):
        await asyncio.sleep(0.05)
    current_at = time.monotonic()
    stop.set()
    is_current = [s["last"] is not None and s["last"] >= target for s in state]
    behind = is_current.count(False)
    # Missing: seqs from its welcome to the target it never processed — counted only for the current
    # sockets (a socket still behind misses, by definition, what it has not caught up on yet).
    missing = sum(max(0, (target - s["first"]) - s["got"]) for s, ok in zip(state, is_current) if ok)
    back = [s["back_at"] for s in state if s["back_at"] is not None]
    print("DONE " + json.dumps({
        "current_at": current_at, "behind": behind, "dup": sum(s["dup"] for s in state), "missing": missing,
        "reconnects": sum(s["reconnects"] for s in state), "busy": sum(s["busy"] for s in state), "back": back,
        "cpu_s": _live.cpu_seconds(os.getpid()),
    }), flush=True)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- the conductor ------------------------------------------------------------------------------------
async def write_events(url: str, rate: float, seconds: float) -> int:
    """Hall events into the outbox at `rate` per second (the servers' relays stamp and publish them)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    written = 0
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await conn.execute(
                "INSERT INTO outbox (channel, event, user_id, payload, status, attempts, next_attempt_at, created_at) "
                "VALUES ('push', 'hall.task_changed', NULL, $1, 'pending', 0, now(), now())",
                json.dumps({"task_id": 1, "slots_untaken": written, "status": "open"}))
            written += 1
            await asyncio.sleep(1 / rate)
    finally:
        await conn.close()
    return written


async def last_seq_when_stamped(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        for _ in range(600):
            pending = await conn.fetchval("SELECT COUNT(*) FROM outbox WHERE channel = 'push' AND seq IS NULL")
            if not pending:
                return int(await conn.fetchval("SELECT last_seq FROM push_sequence WHERE id = 1"))
            await asyncio.sleep(0.1)
        raise RuntimeError("rows were never stamped")
    finally:
        await conn.close()


async def main(n: int, procs: int, rate: float, before: float, after: float) -> None:
    from models import db

    _live.raise_nofile(n + 1024)
    print(f"# push_reconnect — {n} WebSocket clients in {procs} client processes; {rate:g} hall events/s; "
          f"node A killed after {before:g} s, writes go on {after:g} s")
    print(f"machine: {os.cpu_count()} cores, load average at start {Path('/proc/loadavg').read_text().split()[:3]}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-reconnect-"))
    async with _live.fresh_database() as url:
        worker_ids = await _live.bulk_workers(url, n)
        (tmp / "tokens.txt").write_text("\n".join(await _live.worker_tokens(worker_ids)) + "\n")
        await db.close_db()
        env = {"MARKET__DB_POOL_MAX": "10"}
        a = ServerProcess.market(url, workers=2, extra_env=env)
        b = ServerProcess.market(url, workers=2, extra_env=env)
        clients: list[subprocess.Popen] = []
        try:
            await asyncio.gather(a.start(), b.start())
            per = -(-n // procs)
            clients = [subprocess.Popen(
                [sys.executable, "-m", "bench.push_reconnect", "--client", f"ws://127.0.0.1:{a.port}/api/v1/ws",
                 f"ws://127.0.0.1:{b.port}/api/v1/ws", str(tmp / "tokens.txt"), str(i * per), str(min(per, n - i * per))],
                cwd=_live.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
                for i in range(procs) if n - i * per > 0]
            t_conn = time.monotonic()
            ready = await asyncio.gather(*(asyncio.to_thread(c.stdout.readline) for c in clients))
            assert all(r.startswith("READY") for r in ready), ready
            print(f"all {n} sockets welcomed on node A in {time.monotonic() - t_conn:.1f} s")
            b_cpu0 = sum(_live.cpu_seconds(p) for p in b.worker_pids())
            writer = asyncio.create_task(write_events(url, rate, before + after))
            await asyncio.sleep(before)
            os.killpg(a.proc.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            a.proc.wait()
            written = await writer
            target = await last_seq_when_stamped(url)
            stopped_at = time.monotonic()
            for c in clients:
                c.stdin.write(f"TARGET {target} 300\n")
                c.stdin.flush()
            done = [json.loads(line.split(" ", 1)[1]) for line in
                    await asyncio.gather(*(asyncio.to_thread(c.stdout.readline) for c in clients))]
            b_cpu = sum(_live.cpu_seconds(p) for p in b.worker_pids()) - b_cpu0
            current = max(d["current_at"] for d in done)
            back = sorted(t - killed_at for d in done for t in d["back"])
            behind = sum(d["behind"] for d in done)
            print(f"events written: {written} (target seq {target}); node A killed {before:g} s in")
            print(f"every client current again: {current - killed_at:.1f} s after the kill "
                  f"({current - stopped_at:.1f} s after the last event was stamped); clients still behind: {behind}")
            if back:
                print(f"reconnected to B: {len(back)} sockets; after the kill p50 {_live.percentile(back, 50):.2f} s, "
                      f"p90 {_live.percentile(back, 90):.2f} s, last {back[-1]:.2f} s; connection attempts {sum(d['reconnects'] for d in done)}, "
                      f"of which answered 503 server_busy {sum(d['busy'] for d in done)}")
            print(f"events repeated on a socket: {sum(d['dup'] for d in done)}; events missing on the {n - behind} current "
                  f"sockets: {sum(d['missing'] for d in done)}")
            print(f"node B's 2 workers used {b_cpu:.1f} CPU-s from the first write to the end; client processes "
                  f"{sum(d['cpu_s'] for d in done):.1f} CPU-s in all")
        finally:
            for c in clients:
                if c.poll() is None:
                    c.kill()
            for server in (a, b):
                if server.proc is not None and server.proc.poll() is None:
                    server.stop()


def cli() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        url_a, url_b, tokens, start, count = sys.argv[2:7]
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(client_main(url_a, url_b, tokens, int(start), int(count)))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.push_reconnect", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--before", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(main(args.clients, args.procs, args.rate, args.before, args.after))


if __name__ == "__main__":
    cli()
