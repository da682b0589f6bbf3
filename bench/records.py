"""`python -m bench.records [--orders N] [--blocks N]` — records, blocks and the hall at scale (issue 14).

On a fresh PostgreSQL database (BENCH_DATABASE_URL, as the other benchmarks):

1. Seed in bulk SQL: 200 publishers, 5 000 workers with orders (and more to block), one task per 100 orders, N orders (default
   100 000) taken over the last 60 days in every final state (approved, auto-approved, rejected,
   appealed and decided either way, abandoned), and M blocks (default 100 000) by ONE publisher
   (Alice), one of them of the worker the hall and take probes use.
2. `records.refresh_all()` — every record from scratch (the hourly job): seconds.
3. `records.refresh_changed()` after 1 000 orders moved (their audit rows): the every-10-s job.
4. The hall page of a worker blocked by Alice, 20 tasks with their publishers' records (the
   handler's two queries), and of a worker nobody blocked: ms per page.
5. `orders.take` of one of Alice's tasks by the blocked worker (refused: `blocked_by_publisher`)
   and by a worker not blocked (wins), with 100 000 blocks by Alice: ms per take.
6. A page of Alice's blocks (`GET /publisher/blocks`): ms.

Prints the figures; asserts nothing. Figures measured on this machine are in bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.harness import fresh_database
from models import blocks, clock, orders, records, tasks
from models.errors import DomainError
from models.tasks import Task, TaskStatus


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


async def _seed(pool, n_orders: int, n_blocks: int) -> dict:
    now = clock.now()
    async with pool.acquire() as c:
        await c.execute(
            "INSERT INTO users (\"end\", openid, nickname, invite_code, banned, token_version, orders_in_progress, withdrawn_today_fen, created_at) "
            "SELECT 'publisher', 'pub-' || i, 'p' || i, 'P' || lpad(i::text, 7, '0'), false, 0, 0, 0, $1 FROM generate_series(1, 200) i", now)
        await c.execute(
            "INSERT INTO users (\"end\", openid, nickname, invite_code, banned, token_version, orders_in_progress, withdrawn_today_fen, created_at) "
            "SELECT 'worker', 'wrk-' || i, 'w' || i, 'W' || lpad(i::text, 7, '0'), false, 0, 0, 0, $1 FROM generate_series(1, $2) i",
            now, max(5_000, n_blocks + 50))
        pubs = [r["id"] for r in await c.fetch("SELECT id FROM users WHERE \"end\" = 'publisher' ORDER BY id")]
        workers = [r["id"] for r in await c.fetch("SELECT id FROM users WHERE \"end\" = 'worker' ORDER BY id")]
        n_tasks = max(1, n_orders // 100)
        # Finished tasks, spread over the publishers and the last 60 days.
        await c.execute(
            "INSERT INTO tasks (publisher_id, title, instructions, unit_price_fen, fee_fen, quantity, status, slots_untaken, "
            "orders_live, slots_refunded, last_refund_slots, take_window_s, countdown_s, review_window_s, appeal_window_s, fee_bp, "
            "worker_invite_bp, publisher_invite_bp, take_deadline_at, created_at, min_approval_bp, min_completed_orders) "
            "SELECT ($1::bigint[])[(i % 200) + 1], 't' || i, 'i', 1000, 100, 100, 'finished', 0, 0, 0, 0, 180, 300, 1200, 600, 1000, "
            "0, 0, $2::timestamptz - make_interval(days => i % 60), $2::timestamptz - make_interval(days => i % 60), 0, 0 FROM generate_series(1, $3) i",
            pubs, now, n_tasks)
        first_task = await c.fetchval("SELECT MIN(id) FROM tasks")
        # Orders: the outcome by i % 10 (4 approved, 2 auto-approved, 1 rejected and accepted,
        # 1 appeal won by the worker, 1 appeal lost, 1 abandoned).
        await c.execute(
            """
            INSERT INTO orders (task_id, worker_id, publisher_id, status, unit_price_fen, fee_fen, worker_invite_bp, publisher_invite_bp,
                review_window_s, appeal_window_s, taken_at, submit_deadline_at, submitted_at, rejected_at, appealed_at, finished_at,
                finished_by, sweep_failures)
            SELECT t.id, ($1::bigint[])[((i * 7) % 5000) + 1], t.publisher_id,
                   CASE WHEN i % 10 IN (0,1,2,3,4,5,7) THEN 'completed' WHEN i % 10 = 9 THEN 'abandoned' ELSE 'failed' END,
                   1000, 100, 0, 0, 1200, 600, t.created_at, t.created_at + interval '5 min',
                   CASE WHEN i % 10 = 9 THEN NULL ELSE t.created_at + interval '3 min' END,
                   CASE WHEN i % 10 IN (6,7,8) THEN t.created_at + make_interval(mins => 4 + i % 13) END,
                   CASE WHEN i % 10 IN (7,8) THEN t.created_at + interval '20 min' END,
                   t.created_at + interval '1 hour',
                   CASE i % 10 WHEN 6 THEN 'accept_rejection' WHEN 7 THEN 'arbitrate_worker' WHEN 8 THEN 'arbitrate_publisher'
                        WHEN 9 THEN 'abandon' WHEN 4 THEN 'review_timeout' WHEN 5 THEN 'review_timeout' ELSE 'approve' END, 0
              FROM generate_series(0, $2 - 1) i JOIN tasks t ON t.id = $3 + i / 100
            """, workers, n_orders, first_task)
        alice = pubs[0]
        # Alice blocks n_blocks workers (the first of them is the probe's blocked worker).
        await c.execute(
            "INSERT INTO publisher_blocks (publisher_id, worker_id, reason, created_at) "
            "SELECT $1, w, 'bench', $2 FROM unnest($3::bigint[]) w", alice, now, workers[:n_blocks])
        await c.execute("ANALYZE")
    return {"alice": alice, "pubs": pubs, "blocked": workers[0], "free": workers[-1], "workers": workers}


async def _hall(worker_id: int) -> float:
    started = time.perf_counter()
    rows = await Task.filter(status=TaskStatus.OPEN, take_deadline_at__gt=clock.now(),
                             publisher_id__not_in=blocks.blocking_publishers(worker_id)).order_by("-id").limit(20)
    await records.get_records(t.publisher_id for t in rows)
    return time.perf_counter() - started


async def run(n_orders: int, n_blocks: int) -> None:
    async with fresh_database() as bench:
        t0 = time.perf_counter()
        world = await _seed(bench.pool, n_orders, n_blocks)
        print(f"seeded {n_orders} orders, {n_blocks} blocks by one publisher in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        n = await records.refresh_all()
        print(f"refresh_all: {n} records from {n_orders} orders in {time.perf_counter() - t0:.2f} s")
        t0 = time.perf_counter()
        await records.refresh_all()
        print(f"refresh_all again (rows in place): {time.perf_counter() - t0:.2f} s")

        async with bench.pool.acquire() as c:  # 1 000 orders move: their audit rows
            await c.execute("INSERT INTO audit_log (actor_kind, action, target_kind, target_id, created_at) "
                            "SELECT 'timer', 'order.review_timeout', 'order', id, now() FROM orders ORDER BY id DESC LIMIT 1000")
        t0 = time.perf_counter()
        n = await records.refresh_changed()
        print(f"refresh_changed after 1000 orders moved: {n} users in {time.perf_counter() - t0:.2f} s")
        t0 = time.perf_counter()
        n = await records.refresh_changed()
        print(f"refresh_changed with nothing new: {n} users in {_ms(time.perf_counter() - t0)}")

        # Open tasks of every publisher (Alice's among them) for the hall and the take.
        for pub in world["pubs"][:40]:
            await _fund(bench.pool, pub)
            await tasks.publish(pub, title="scan", instructions="scan it", unit_price_fen=1_000, quantity=5)
        hall_blocked = sorted([await _hall(world["blocked"]) for _ in range(50)])
        hall_free = sorted([await _hall(world["free"]) for _ in range(50)])
        print(f"hall page (20 tasks + records), worker blocked by Alice: median {_ms(hall_blocked[25])}, p90 {_ms(hall_blocked[45])}")
        print(f"hall page, worker blocked by nobody: median {_ms(hall_free[25])}, p90 {_ms(hall_free[45])}")

        alice_tasks = [await tasks.publish(world["alice"], title="scan", instructions="scan it", unit_price_fen=1_000, quantity=1)
                       for _ in range(20)]
        refused = []
        for t in alice_tasks:
            started = time.perf_counter()
            try:
                await orders.take(t.id, world["blocked"])
            except DomainError as e:
                assert e.code == "blocked_by_publisher", e.code
            refused.append(time.perf_counter() - started)
        won = []
        for i, t in enumerate(alice_tasks):
            worker = world["workers"][n_blocks + 1 + i]  # not blocked
            started = time.perf_counter()
            await orders.take(t.id, worker)
            won.append(time.perf_counter() - started)
        refused.sort(), won.sort()
        print(f"take refused for a block (with {n_blocks} blocks by the publisher): median {_ms(refused[10])}")
        print(f"take won by a worker not blocked: median {_ms(won[10])}")

        started = time.perf_counter()
        page = await blocks.page_of_blocks(world["alice"], None, 50)
        await blocks.page_of_blocks(world["alice"], page[-1].id, 50)
        print(f"two pages of Alice's {n_blocks} blocks: {_ms(time.perf_counter() - started)}")


async def _fund(pool, user_id: int) -> None:
    from bench.seed import fund  # money moves through the domain
    from models.ledger import open_user_accounts

    await open_user_accounts(user_id)  # the bulk-seeded users have none yet
    await fund(user_id, 1_000_000)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.records", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--blocks", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(run(args.orders, args.blocks))


if __name__ == "__main__":
    main()
