"""HTTP take: `POST /api/v1/worker/tasks/{id}/take` on the real server, against a bare asyncpg baseline.

`python -m bench.http_take [--quick]`

1. A fresh PostgreSQL database (`bench_<random>`, dropped at the end) migrated by the real
   migrations. Publishers register, are funded (`recharges.create` + `credit`) and publish one-slot
   tasks through `tasks.publish`; workers are registered in bulk SQL (the rows `login_or_register`
   writes) and get tokens from `issue_token`. Every request uses its own worker on its own task, so
   the rate limiter (10 takes / 10 s per user) and `max_orders_in_progress` never refuse a request
   and no two requests queue on one row: this is the uncontended one-click take.
2. Ours: `python -m server` as a subprocess — 2 workers, Redis (rate limits + push bus), scheduler
   not embedded, access log off, WeChat sandbox on. Everything a real take does runs: token check
   and user lookup, the Redis rate-limit round trip, `orders.take` (its transaction), the push relay
   poked and publishing to Redis, the task reload and the JSON view.
3. Baseline: a minimal Sanic app (this file, `--serve-baseline`, 2 workers, an asyncpg pool of the
   same size per worker) whose endpoint runs only the conditional UPDATE of the slot, autocommitted,
   on copies of the same task rows in the same database.
4. Load: `wrk` (C, one thread, 64 keep-alive connections) with a Lua script that sends each
   (task, token) pair once. A Python client would need about a core of its own at these rates on a
   2-core machine; wrk's CPU is measured and printed next to each figure, as is the CPU of
   everything else on the machine during the window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import _live
from bench._live import CpuWindow, ServerProcess, log

CONNECTIONS = 64
TARGET = 0.7  # issue 12 item 6 (was 0.5 before it)
# Connections per worker on both sides: the server's db_pool_max default unless BENCH_POOL says.
POOL = int(os.environ.get("BENCH_POOL", "20"))

LUA = r"""
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  reqs = {}
  local i = 0
  for line in io.lines(os.getenv("BENCH_PAIRS")) do
    if i % nthreads == tid then
      local id, tok = line:match("(%d+) (%S+)")
      reqs[#reqs + 1] = wrk.format("POST", "/api/v1/worker/tasks/" .. id .. "/take",
        {["Authorization"] = "Bearer " .. tok, ["Content-Length"] = "0"})
    end
    i = i + 1
  end
  idx = 0
  wrapped = 0
  statuses = {}
end
function request()
  idx = idx + 1
  if idx > #reqs then idx = 1; wrapped = wrapped + 1 end
  return reqs[idx]
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d err_connect=%d err_read=%d err_write=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("LATENCY p%s=%d\n", tostring(p), latency:percentile(p)))
  end
  io.write(string.format("LATENCY max=%d mean=%.0f\n", latency.max, latency.mean))
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do io.write(string.format("STATUS %d %d\n", k, v)) end
    io.write(string.format("WRAPPED %d\n", t:get("wrapped")))
  end
end
"""


class WrkResult:
    def __init__(self, text: str, cpu: CpuWindow) -> None:
        self.text, self.cpu = text, cpu
        m = re.search(r"RESULT requests=(\d+) duration_us=(\d+)", text)
        if not m:
            raise RuntimeError("wrk gave no result:\n" + text)
        self.requests, self.seconds = int(m[1]), int(m[2]) / 1e6
        self.errors = {k: int(v) for k, v in re.findall(r"err_(\w+)=(\d+)", text)}
        self.lat = {k: int(v) / 1000 for k, v in re.findall(r"LATENCY (?:p)?([\w.]+)=(\d+)", text)}
        self.statuses: dict[int, int] = {}
        for code, n in re.findall(r"STATUS (\d+) (\d+)", text):
            self.statuses[int(code)] = self.statuses.get(int(code), 0) + int(n)
        self.wrapped = sum(int(n) for n in re.findall(r"WRAPPED (\d+)", text))

    @property
    def ok(self) -> int:
        return self.statuses.get(201, 0)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds

    def line(self, label: str) -> str:
        bad = {k: v for k, v in self.statuses.items() if k != 201}
        errs = {k: v for k, v in self.errors.items() if v}
        return (f"{label}: {self.rate:8.0f} takes/s  ({self.ok} × 201 in {self.seconds:.1f} s"
                f"{', other statuses ' + str(bad) if bad else ''}{', socket errors ' + str(errs) if errs else ''}"
                f"{', PAIRS EXHAUSTED' if self.wrapped else ''})  latency p50 {self.lat['50']:.1f} ms, "
                f"p90 {self.lat['90']:.1f} ms, p99 {self.lat['99']:.1f} ms, max {self.lat['max']:.1f} ms")


def write_pairs(path: Path, task_ids, tokens) -> None:
    path.write_text("".join(f"{t} {tok}\n" for t, tok in zip(task_ids, tokens)))


def run_wrk(base: str, pairs: Path, lua: Path, seconds: float, server_pids: list[int]) -> WrkResult:
    env = dict(os.environ, BENCH_PAIRS=str(pairs), BENCH_THREADS="1")
    proc = subprocess.Popen(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(lua), base],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        time.sleep(0.05)
        groups = {"server": server_pids, "wrk": [proc.pid], "postgres": _live.pids_named("postgres"),
                  "redis": _live.pids_named("redis-server")}
        with CpuWindow(groups) as cpu:
            # wrk's own cpu is read before it exits (it is gone once reaped)
            deadline = time.monotonic() + seconds + 30
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
                if time.monotonic() - cpu.t0 > seconds - 0.3:
                    break
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return WrkResult(out, cpu)


def start_profiles(pids: list[int], seconds: float) -> list[subprocess.Popen]:
    """With BENCH_PROFILE=<dir>, sample every server process with py-spy (collapsed stacks, one file
    per pid) during the measured run. Sampling costs the server a few percent: not for the figures."""
    out = os.environ.get("BENCH_PROFILE")
    if not out:
        return []
    Path(out).mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return [subprocess.Popen([str(spy), "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
                              "--rate", "250", "--format", "raw", "--nonblocking", "-o", f"{out}/take-{pid}.txt"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in pids]


def finish_profiles(spies: list[subprocess.Popen]) -> None:
    for proc in spies:
        proc.wait(timeout=60)


# --- the baseline app -----------------------------------------------------------------------------------
SLOT_SQL = (
    "UPDATE tasks SET slots_untaken = slots_untaken - 1, orders_live = orders_live + 1, "
    "status = CASE WHEN slots_untaken = 1 THEN 'full' ELSE 'open' END "
    "WHERE id = $1 AND status = 'open' AND slots_untaken > 0 RETURNING id"
)


def create_baseline_app():
    import asyncpg
    from sanic import Sanic
    from sanic.response import json as json_response

    app = Sanic("baseline_take")
    dsn = os.environ["BASELINE_DSN"]

    @app.before_server_start
    async def open_pool(app):
        app.ctx.pool = await asyncpg.create_pool(dsn, min_size=POOL, max_size=POOL)

    @app.after_server_stop
    async def close_pool(app):
        await app.ctx.pool.close()

    @app.get("/healthz")
    async def health(request):
        return json_response({"ok": True})

    @app.post("/api/v1/worker/tasks/<task_id:int>/take")
    async def take(request, task_id: int):
        row = await app.ctx.pool.fetchrow(SLOT_SQL, task_id)
        if row is None:
            return json_response({"code": "slot_taken"}, status=409)
        return json_response({"id": row["id"]}, status=201)

    return app


def serve_baseline() -> None:
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    loader = AppLoader(factory=create_baseline_app)
    app = loader.load()
    app.prepare(host="127.0.0.1", port=int(os.environ["PORT"]), workers=2, access_log=False)
    Sanic.serve(primary=app, app_loader=loader)


async def copy_tasks_for_baseline(url: str, template_id: int, count: int) -> list[int]:
    """`count` open one-slot task rows copied from a real one (same columns, same indexes)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        cols = [r["column_name"] for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'tasks' AND column_name <> 'id' ORDER BY ordinal_position")]
        fixed = {"status": "'open'", "slots_untaken": "1", "orders_live": "0", "request_id": "NULL"}
        select = ", ".join(fixed.get(c, f't."{c}"') for c in cols)
        rows = await conn.fetch(
            f"INSERT INTO tasks ({', '.join(chr(34) + c + chr(34) for c in cols)}) "
            f"SELECT {select} FROM tasks t, generate_series(1, $2) WHERE t.id = $1 RETURNING id",
            template_id, count,
        )
        return [r["id"] for r in rows]
    finally:
        await conn.close()


async def explain_relay_claim(url: str) -> str:
    """What the push relay's stamp (server/push.py, run after every take) costs on the outbox the run
    left, as written and with a partial index on the pending push rows (tried in a rolled-back
    transaction: the schema is not changed)."""
    import asyncpg

    from server import push

    # The relay's scan is now the stamp (its lock on push_sequence is not part of the statement).
    sql = "EXPLAIN (ANALYZE, FORMAT JSON) " + push._STAMP.format(ids="").replace("$1", "0").replace("$2", "now()").replace("$3", "500")
    conn = await asyncpg.connect(url)
    try:
        counts = await conn.fetchrow(
            "SELECT count(*) AS n, count(*) FILTER (WHERE channel = 'push' AND status = 'pending') AS push_pending, "
            "count(*) FILTER (WHERE status = 'pending') AS pending FROM outbox")
        out = []
        for label, ddl in (("as written", None), ("with CREATE INDEX ON outbox (id) WHERE channel='push' AND status='pending'",
                           "CREATE INDEX bench_outbox_push_pending ON outbox (id) WHERE channel = 'push' AND status = 'pending'")):
            best = float("inf")
            tr = conn.transaction()
            await tr.start()
            try:
                if ddl:
                    await conn.execute(ddl)
                    await conn.execute("ANALYZE outbox")
                for _ in range(5):
                    sp = conn.transaction()
                    await sp.start()
                    plan = json.loads(await conn.fetchval(sql))[0]
                    await sp.rollback()
                    best = min(best, plan["Execution Time"])
            finally:
                await tr.rollback()
            out.append(f"{best:.2f} ms {label}")
        return (f"relay claim on the outbox left by the run ({counts['n']} rows, {counts['pending']} pending of which "
                f"{counts['push_pending']} push; best of 5, rolled back): " + "; ".join(out))
    finally:
        await conn.close()


async def settle(url: str) -> None:
    """Mark the seeding's push events delivered, then VACUUM ANALYZE and CHECKPOINT, so neither
    side pays for the seeding's leftovers: a backlog, dead rows, stale statistics, a checkpoint
    falling inside the window."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        # The seeding's own events (tasks published long before the rush) count as delivered:
        # otherwise the relay would spend the first seconds pushing tens of thousands of them.
        await conn.execute("UPDATE outbox SET status = 'sent', sent_at = now() WHERE channel = 'push' AND status = 'pending'")
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def drop_baseline_tasks(url: str, ids: list[int]) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("DELETE FROM tasks WHERE id = ANY($1)", ids)
    finally:
        await conn.close()


# --- the benchmark --------------------------------------------------------------------------------------
class Totals:
    """The measured rounds of one side, added up."""

    def __init__(self, runs: list[WrkResult]) -> None:
        self.runs = runs
        self.ok = sum(r.ok for r in runs)
        self.seconds = sum(r.seconds for r in runs)
        self.rate = self.ok / self.seconds
        self.cpu = {k: sum(r.cpu.used[k] for r in runs) for k in runs[0].cpu.used}
        self.cpu_seconds = sum(r.cpu.seconds for r in runs)
        worst = max(runs, key=lambda r: r.lat["99"])
        self.p50 = sorted(r.lat["50"] for r in runs)[len(runs) // 2]
        self.p99 = worst.lat["99"]

    def per_take_ms(self, group: str) -> float:
        return 1000 * self.cpu[group] / max(self.ok, 1)


async def main(quick: bool) -> None:
    if shutil.which("wrk") is None:
        sys.exit("bench.http_take needs the load generator wrk: apt-get install wrk (Debian package)")
    rounds, round_s = (2, 3.0) if quick else (3, 5.0)
    most_per_s = 2_000  # more takes per second than ours does here: the pairs of a round never run out
    warm_n = 1_000 if quick else 2_000
    round_n = int(most_per_s * round_s)
    main_n = rounds * round_n
    base_rows = 100_000 if quick else 300_000
    _live.raise_nofile(4096)
    print(f"# http_take — POST /api/v1/worker/tasks/{{id}}/take, {CONNECTIONS} keep-alive connections (wrk, 1 thread)")
    print(f"machine: {os.cpu_count()} cores, load average at start {Path('/proc/loadavg').read_text().split()[:3]}")
    print(f"{rounds} rounds of {round_s:.0f} s each side, alternating ours / baseline (both servers up throughout)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-take-"))
    lua = tmp / "take.lua"
    lua.write_text(LUA)
    async with _live.fresh_database() as url:
        t0 = time.monotonic()
        pubs = await _live.publishers(8)
        task_ids = await _live.publish_tasks(pubs, warm_n + main_n)
        worker_ids = await _live.bulk_workers(url, warm_n + main_n)
        tokens = await _live.worker_tokens(worker_ids)
        print(f"seeded {len(task_ids)} one-slot tasks (tasks.publish) and {len(worker_ids)} workers in {time.monotonic() - t0:.1f} s")
        write_pairs(tmp / "warm.txt", task_ids[:warm_n], tokens[:warm_n])
        for r in range(rounds):
            first = warm_n + r * round_n
            write_pairs(tmp / f"ours{r}.txt", task_ids[first:first + round_n], tokens[first:first + round_n])
        from models import db

        await db.close_db()  # the bench process holds no connection while the servers run
        base_ids = await copy_tasks_for_baseline(url, task_ids[0], base_rows)
        chunk = base_rows // (rounds + 1)
        for r in range(rounds + 1):  # chunk 0 is the warm-up's
            write_pairs(tmp / f"base{r}.txt", base_ids[r * chunk:(r + 1) * chunk], tokens * (chunk // len(tokens) + 1))
        await settle(url)

        server = ServerProcess.market(url, workers=2, extra_env={"MARKET__DB_POOL_MAX": str(POOL)})
        port = _live.free_port()
        baseline = ServerProcess([sys.executable, "-m", "bench.http_take", "--serve-baseline"],
                                 dict(os.environ, BASELINE_DSN=url, PORT=str(port)), port, "baseline-take")
        ours_runs: list[WrkResult] = []
        base_runs: list[WrkResult] = []
        try:
            await server.start()
            await baseline.start()
            ours_pids, base_pids = server.all_pids(), baseline.all_pids()
            warm = await asyncio.to_thread(run_wrk, server.base, tmp / "warm.txt", lua, 2, ours_pids)
            print(warm.line("ours, warm-up (2 s)"))
            bwarm = await asyncio.to_thread(run_wrk, baseline.base, tmp / "base0.txt", lua, 2, base_pids)
            print(bwarm.line("baseline, warm-up (2 s)"))
            for r in range(rounds):
                spies = start_profiles(ours_pids, round_s)
                ours_runs.append(await asyncio.to_thread(run_wrk, server.base, tmp / f"ours{r}.txt", lua, round_s, ours_pids))
                finish_profiles(spies)
                print(ours_runs[-1].line(f"ours, round {r + 1}"))
                print("   " + ours_runs[-1].cpu.text())
                base_runs.append(await asyncio.to_thread(run_wrk, baseline.base, tmp / f"base{r + 1}.txt", lua, round_s, base_pids))
                print(base_runs[-1].line(f"baseline, round {r + 1}"))
                print("   " + base_runs[-1].cpu.text())
        finally:
            server.stop()
            baseline.stop()
        print("server log tail (errors only):", [l for l in server.tail(200).splitlines() if "Error" in l or "Traceback" in l][:5] or "none")
        await drop_baseline_tasks(url, base_ids)

        from models import db as _db

        await _db.init_db(f"{url}?maxsize=4", migrate=False)
        placed = await _db.fetch_one("SELECT count(*) AS n FROM orders")
        print(f"orders in the database: {placed['n']} (201 responses: {warm.ok + sum(r.ok for r in ours_runs)}); "
              f"ledger audit: {await _live.books_are_clean()}")
        await _db.close_db()
        print(await explain_relay_claim(url))

    ours, base = Totals(ours_runs), Totals(base_runs)
    ratio = ours.rate / base.rate if base.rate else float("nan")
    print()
    print(f"| | takes/s | p50 ms (median round) | p99 ms (worst round) |")
    print("|---|---:|---:|---:|")
    print(f"| ours (real server, 2 workers) | {ours.rate:.0f} | {ours.p50:.1f} | {ours.p99:.1f} |")
    print(f"| baseline (Sanic + asyncpg, UPDATE only) | {base.rate:.0f} | {base.p50:.1f} | {base.p99:.1f} |")
    per_round = ", ".join(f"{o.rate / b.rate:.2f}" for o, b in zip(ours_runs, base_runs))
    print(f"ratio ours / baseline = {ratio:.2f} (rounds: {per_round}; target ≥ {TARGET}) → {'MET' if ratio >= TARGET else 'NOT MET'}")
    print(f"server CPU per take: ours {ours.per_take_ms('server'):.2f} ms, baseline {base.per_take_ms('server'):.2f} ms; "
          f"wrk CPU: ours {ours.cpu['wrk'] / ours.cpu_seconds:.2f} cores, baseline {base.cpu['wrk'] / base.cpu_seconds:.2f} cores")
    print(f"PostgreSQL CPU per take: ours {ours.per_take_ms('postgres'):.2f} ms, baseline {base.per_take_ms('postgres'):.2f} ms; "
          f"Redis CPU per take: ours {ours.per_take_ms('redis'):.2f} ms, baseline {base.per_take_ms('redis'):.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.http_take")
    parser.add_argument("--quick", action="store_true", help="fewer tasks, 2 rounds of 3 s")
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline()
    else:
        asyncio.run(main(args.quick))
