"""Flash crowd: `python -m bench.flash_take [--quick]` (issue 12 item 5).

10 000 workers (quick: 2 000) each send one `POST /api/v1/worker/tasks/{id}/take` for ONE task with
100 slots, all at once, to the real server (`python -m server`, 2 worker processes, Redis), over
256 keep-alive connections opened beforehand. A second wave of 2 000 (quick: 500) other workers
arrives once the task is sold out. A small asyncio HTTP/1.1 client stamps each request when it is
written and when its whole response has been read (latency per request, client queueing
excluded: every connection sends its next request only after the previous answer).

Printed: the statuses and error codes (target: exactly 100 × 201, every other answer 409 with a
code), latency p50/p99/max per wave (target p99 ≤ 100 ms) and apart for winners and losers, and
how many times PostgreSQL ran `market_take` (winners, also those inside a batch) and
`market_take_batch` (the take lanes' grouped calls, server/takelanes.py) in each wave
(`pg_stat_user_functions`, `track_functions = 'pl'` set on the bench database): the second wave
must be answered from the sold-out mark in Redis, with no call. The
server's and PostgreSQL's CPU over each wave come from /proc (other tenants of the machine show up
in "rest of machine").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter
from pathlib import Path

import asyncpg

from bench import _live
from bench._live import CpuWindow, ServerProcess, percentile

SLOTS = 100
CONNECTIONS = 256
TARGET_P99_MS = 100.0


async def _wave(port: int, task_id: int, tokens: list[str]) -> tuple[list[tuple[int, str, float]], float]:
    """Send one take per token over CONNECTIONS connections; returns [(status, code, seconds)], wall s."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(min(CONNECTIONS, len(tokens)))]
    results: list[tuple[int, str, float]] = []
    todo = iter(tokens)
    path = f"/api/v1/worker/tasks/{task_id}/take"

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for token in todo:
            request = (f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n"
                       "Content-Length: 0\r\n\r\n").encode()
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length = next(int(l.split(":", 1)[1]) for l in lines if l.lower().startswith("content-length:"))
            body = await reader.readexactly(length)
            elapsed = time.perf_counter() - t0
            code = ""
            if status >= 400:
                marker = b'"code":"'
                i = body.find(marker)
                code = body[i + len(marker):body.find(b'"', i + len(marker))].decode() if i >= 0 else "?"
            results.append((status, code, elapsed))
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(run(r, w) for r, w in conns))
    return results, time.perf_counter() - started


async def _take_calls(url: str) -> tuple[int, int]:
    """How often PostgreSQL ran `market_take` (also inside a batch; only calls that did not raise
    are counted, i.e. the winners) and `market_take_batch` (server/takelanes.py)."""
    conn = await asyncpg.connect(url)
    try:
        rows = dict(await conn.fetch("SELECT funcname, sum(calls) FROM pg_stat_user_functions "
                                     "WHERE funcname IN ('market_take', 'market_take_batch') GROUP BY funcname"))
        return int(rows.get("market_take", 0) or 0), int(rows.get("market_take_batch", 0) or 0)
    finally:
        await conn.close()


def _print_wave(label: str, results: list[tuple[int, str, float]], seconds: float, calls: tuple[int, int], cpu: CpuWindow) -> float:
    lat = sorted(r[2] * 1000 for r in results)
    statuses = Counter(r[0] for r in results)
    codes = Counter(r[1] for r in results if r[0] >= 400)
    p99 = percentile(lat, 99)
    print(f"{label}: {len(results)} requests in {seconds:.2f} s ({len(results) / seconds:.0f}/s); statuses {dict(statuses)}; "
          f"codes {dict(codes)}")
    print(f"   latency p50 {percentile(lat, 50):.1f} ms, p99 {p99:.1f} ms, max {lat[-1]:.1f} ms; PostgreSQL ran market_take {calls[0]} times, market_take_batch {calls[1]} times")
    for who, group in (("winners", [r for r in results if r[0] == 201]), ("losers", [r for r in results if r[0] != 201])):
        if group:
            g = sorted(r[2] * 1000 for r in group)
            print(f"   {who}: {len(g)}, p50 {percentile(g, 50):.1f} ms, p99 {percentile(g, 99):.1f} ms, max {g[-1]:.1f} ms; "
                  f"slower than {TARGET_P99_MS:.0f} ms: {sum(v > TARGET_P99_MS for v in g)}")
    print(f"   {cpu.text()}")
    return p99


async def main(quick: bool) -> None:
    crowd, second = (2_000, 500) if quick else (10_000, 2_000)
    _live.raise_nofile(8192)
    print(f"# flash_take — {crowd} workers take one task with {SLOTS} slots, then {second} more; {CONNECTIONS} connections")
    print(f"machine: {os.cpu_count()} cores, load average at start {Path('/proc/loadavg').read_text().split()[:3]}")
    async with _live.fresh_database() as url:
        from models import db, tasks

        admin = await asyncpg.connect(url)
        await admin.execute(f"ALTER DATABASE \"{url.rsplit('/', 1)[1]}\" SET track_functions = 'pl'")
        await admin.close()
        (publisher,) = await _live.publishers(1)
        await _live.fund(publisher, SLOTS * 110)
        task = await tasks.publish(publisher, title="flash", instructions="Be quick.", unit_price_fen=_live.UNIT_PRICE_FEN, quantity=SLOTS)
        workers = await _live.bulk_workers(url, crowd + second)
        tokens = await _live.worker_tokens(workers)
        await db.close_db()
        server = ServerProcess.market(url, workers=2, extra_env={"MARKET__DB_POOL_MAX": "20"})
        try:
            await server.start()
            groups = {"server": server.all_pids(), "postgres": _live.pids_named("postgres")}
            calls0 = await _take_calls(url)
            with CpuWindow(groups) as cpu1:
                first, s1 = await _wave(server.port, task.id, tokens[:crowd])
            calls1 = await _take_calls(url)
            await asyncio.sleep(0.5)  # PostgreSQL's function statistics are flushed by each backend
            calls1 = await _take_calls(url)
            with CpuWindow(groups) as cpu2:
                late, s2 = await _wave(server.port, task.id, tokens[crowd:])
            await asyncio.sleep(0.5)
            calls2 = await _take_calls(url)
        finally:
            server.stop()
        print("server log tail (errors only):", [l for l in server.tail(200).splitlines() if "Error" in l or "Traceback" in l][:5] or "none")
        p99_1 = _print_wave("wave 1 (the crowd)", first, s1, (calls1[0] - calls0[0], calls1[1] - calls0[1]), cpu1)
        p99_2 = _print_wave("wave 2 (after sold out)", late, s2, (calls2[0] - calls1[0], calls2[1] - calls1[1]), cpu2)
        wave2_calls = sum(calls2) - sum(calls1)
        await db.init_db(f"{url}?maxsize=2", migrate=False)
        orders = (await db.fetch_one("SELECT count(*) AS n FROM orders WHERE task_id = $1", task.id))["n"]
        print(f"orders in the database: {orders} (target exactly {SLOTS}); ledger audit: {await _live.books_are_clean()}")
        answered = first + late
        losers = [r for r in answered if r[0] != 201]
        exact = orders == SLOTS and sum(r[0] == 201 for r in answered) == SLOTS
        coded = all(r[0] == 409 and r[1] for r in losers)
        worst = max(p99_1, p99_2)
        print()
        print("| flash crowd | figure | target | met? |")
        print("|---|---|---|---|")
        print(f"| winners | {orders} orders, {sum(r[0] == 201 for r in answered)} × 201 | exactly {SLOTS} | {'yes' if exact else 'NO'} |")
        print(f"| losers | {len(losers)}, codes {dict(Counter(r[1] for r in losers))} | all 409 with a code | {'yes' if coded else 'NO'} |")
        print(f"| latency p99, wave 1 / wave 2 | {p99_1:.0f} ms / {p99_2:.0f} ms | ≤ {TARGET_P99_MS:.0f} ms | {'yes' if worst <= TARGET_P99_MS else 'NO'} |")
        print(f"| take calls in PostgreSQL, wave 2 (sold out) | {wave2_calls} of {len(late)} requests | ≤ 1 % (only after a TTL expiry) | "
              f"{'yes' if wave2_calls <= len(late) // 100 else 'NO'} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.flash_take")
    parser.add_argument("--quick", action="store_true", help="2 000 + 500 workers")
    asyncio.run(main(parser.parse_args().quick))
