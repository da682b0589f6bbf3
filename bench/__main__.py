"""`python -m bench [take|complete|sweep|all] [--quick]`

Each benchmark creates its own database on the PostgreSQL server of BENCH_DATABASE_URL (default
postgres://postgres@127.0.0.1:5432/postgres), prints our figure, the raw-SQL baseline and their
ratio, and drops the database. `--quick` uses small sizes (a smoke test, under a minute in all).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

from bench import complete, sweep, take
from bench.harness import Report

BENCHMARKS = {"take": take.run, "complete": complete.run, "sweep": sweep.run}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="?", default="all", choices=[*BENCHMARKS, "all", "flash"],
                        help="flash: the flash crowd on a live server (bench/flash_take.py; not part of all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--sweep-backlog", type=int, default=None, metavar="N",
                        help=f"orders in the sweep backlog (default {sweep.BACKLOG}, --quick 600)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    names = list(BENCHMARKS) if args.which == "all" else [args.which]
    asyncio.run(_run(names, quick=args.quick, sweep_backlog=args.sweep_backlog))


async def _run(names: list[str], *, quick: bool, sweep_backlog: int | None) -> None:
    report = Report()
    started = time.perf_counter()
    for name in names:
        if name == "flash":
            from bench import flash_take

            await flash_take.main(quick)
        elif name == "sweep":
            await sweep.run(report, quick=quick, backlog=sweep_backlog)
        else:
            await BENCHMARKS[name](report, quick=quick)
    report.summary()
    print(f"\n(total {time.perf_counter() - started:.0f} s{', --quick sizes' if quick else ''})")


if __name__ == "__main__":
    main()
