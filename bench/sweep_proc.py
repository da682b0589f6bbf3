"""One scheduler process for the sweep benchmark: `python -m bench.sweep_proc URL LANES BATCH START KIND`.

Opens its own Tortoise pool on the bench database (no migration), waits until CLOCK_MONOTONIC
reaches START (every process starts together), drains the due orders — KIND `ours`:
`sweeper.sweep_all(BATCH, lanes=LANES)` in a loop; `raw`: LANES loops of
`raw.sweep_orders_batched` on a plain asyncpg pool, batches growing as `sweep_all`'s — and prints `{"claimed": n, "start": t0, "end": t1, "cpu": its own CPU seconds from t0 to t1}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time


async def main(url: str, lanes: int, batch: int, start: float, kind: str) -> None:
    logging.getLogger("market.sweeper").setLevel(logging.CRITICAL)
    logging.getLogger("market.transitions").setLevel(logging.WARNING)
    claimed = 0
    if kind == "ours":
        from models import db
        from scheduler import sweeper

        await db.init_db(f"{url}?maxsize={lanes + 2}", migrate=False)
        await asyncio.gather(*(db.fetch("SELECT pg_sleep(0.01)") for _ in range(lanes)))  # open the connections
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        t0, c0 = time.monotonic(), time.process_time()
        while True:
            n = await sweeper.sweep_all(batch, lanes=lanes, max_batches=1_000)
            claimed += n
            if n == 0:
                break
        t1, c1 = time.monotonic(), time.process_time()
        await db.close_db()
    else:
        import asyncpg

        from bench import raw

        pool = await asyncpg.create_pool(url, min_size=lanes, max_size=lanes)
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        t0, c0 = time.monotonic(), time.process_time()

        from scheduler.sweeper import BATCH_GROWTH

        async def lane() -> int:  # as `sweep_all`'s lanes: a full batch doubles the next, up to BATCH_GROWTH x
            done, size = 0, batch
            while (n := await raw.sweep_orders_batched(pool, size)) > 0:
                done += n
                size = min(size * 2, batch * BATCH_GROWTH) if n == size else batch
            return done

        claimed = sum(await asyncio.gather(*(lane() for _ in range(lanes))))
        t1, c1 = time.monotonic(), time.process_time()
        await pool.close()
    print(json.dumps({"claimed": claimed, "start": t0, "end": t1, "cpu": c1 - c0}), flush=True)


if __name__ == "__main__":
    url, lanes, batch, start, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    asyncio.run(main(url, lanes, batch, start, kind))
