"""Where a sweep's time goes: `python -m bench.sweep_profile [--backlog N] [--procs K] [--kind ours|raw] [--lanes L]
[--orders-per-worker W]`.

Not part of `python -m bench` (it prints no ratio). On a fresh benchmark database seeded as the
sweep benchmark seeds it (bench/sweep.py: each worker holds 60 orders, 30 of them in progress; with
`--orders-per-worker 1` every order has its own worker, as a flash crowd on one task), K scheduler processes (bench/sweep_proc.py) drain a
backlog of N orders while this process samples, every 20 ms, PostgreSQL's view of the benchmark
database's backends (`pg_stat_activity`: what each is doing or waiting for) and the row locks
queued on (`pg_locks`, locktype tuple: which table). It prints the rate, the CPU seconds of the
scheduler processes and of their PostgreSQL backends (read from /proc, so PostgreSQL must run on
this machine), and the sample counts: "idle in transaction / ClientRead" means the backend waited
for Python, "Lock / transactionid" for another transaction's row lock. For a Python profile, run a
process under py-spy: `py-spy record -f raw -o out.txt -- python -m bench.sweep_proc ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections import Counter

from bench import seed
from bench import sweep as bench_sweep
from bench.harness import fresh_database
from models import db
from models.users import End

_HZ = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _HZ
    except (OSError, IndexError, ValueError):
        return None


async def main(backlog: int, procs: int, kind: str, lanes: int, batch: int, per_worker: int) -> None:
    logging.getLogger("market.sweeper").setLevel(logging.CRITICAL)
    async with fresh_database() as bench:
        publishers = [u.id for u in await seed.publishers_with_inviters(64)]
        inviters = [u.id for u in await seed.register(End.WORKER, 32)]
        workers = await seed.bulk_users(bench.pool, End.WORKER, max(100, backlog // per_worker), inviter_ids=inviters)
        await bench_sweep._Seeder(bench, publishers, workers).backlog(backlog)
        await bench.pool.execute("ANALYZE")
        await db.conn().close()
        name = bench.url.rsplit("/", 1)[1]
        start = time.monotonic() + 4.0
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.sweep_proc", bench.url, str(lanes), str(batch), str(start), kind,
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(procs)
        ]
        backends: dict[int, list[float]] = {}  # pid -> [first CPU seen, last CPU seen]
        samples: Counter = Counter()

        async def sample() -> None:
            while True:
                for r in await bench.pool.fetch(
                    "SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity WHERE datname = $1 "
                    "AND pid <> pg_backend_pid()", name,
                ):
                    samples[f"{r['state']} / {r['wait_event_type']}: {r['wait_event']}"] += 1
                    cpu = _cpu_s(r["pid"])
                    if cpu is not None:
                        backends.setdefault(r["pid"], [cpu, cpu])[1] = cpu
                for r in await bench.pool.fetch(
                    "SELECT relation::regclass::text AS rel FROM pg_locks WHERE locktype = 'tuple' "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = $1)", name,
                ):
                    samples[f"row lock queue on {r['rel']}"] += 1
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        outs = [json.loads((await c.communicate())[0].decode().strip().splitlines()[-1]) for c in children]
        sampler.cancel()
        seconds = max(o["end"] for o in outs) - min(o["start"] for o in outs)
        claimed = sum(o["claimed"] for o in outs)
        print(f"{procs} x {kind}, {lanes} lanes, batch {batch}, {per_worker} orders per worker: {claimed} transitions in {seconds:.2f} s = {claimed / seconds:.0f}/s "
              f"(load average {os.getloadavg()[0]:.1f})")
        print(f"  CPU: scheduler processes {sum(o['cpu'] for o in outs):.2f} s, "
              f"their PostgreSQL backends {sum(b - a for a, b in backends.values()):.2f} s")
        for what, n in samples.most_common():
            print(f"  {n:6d}  {what}")
        print(" ", await seed.books_are_clean())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.sweep_profile", description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--kind", choices=["ours", "raw"], default="ours")
    parser.add_argument("--lanes", type=int, default=bench_sweep.LANES)
    parser.add_argument("--batch", type=int, default=bench_sweep.BATCH)
    parser.add_argument("--orders-per-worker", type=int, default=60)
    a = parser.parse_args()
    asyncio.run(main(a.backlog, a.procs, a.kind, a.lanes, a.batch, a.orders_per_worker))
