"""Benchmark 1 — take: 32 concurrent workers taking slots with `orders.take`.

1. Seed (fresh database): 64 publishers with inviters publish, through `tasks.publish`, 3·N
   one-slot tasks (for ours, the raw transaction and the raw single UPDATE) and two "hot" tasks of N
   slots each; 3·N workers (with inviters) are registered in bulk. Every take uses its own worker, so
   only the task row can be contended.
2. Ours: 32 callers take the N one-slot tasks through `orders.take` — takes/s.
3. Baseline: an asyncpg pool of 32 runs the statements take sends (users counter UPDATE ...
   RETURNING, tasks conditional UPDATE ... RETURNING, INSERT order, INSERT outbox rows, INSERT audit
   row) in one transaction per take, on the other N tasks. Target: ours ≥ 50 % of it.
4. Orientation: the slot's conditional UPDATE alone, autocommitted, on the last N tasks.
5. Hot task (informational): the same two ways on one task with N slots, where all 32 callers
   queue on one task row.
"""

from __future__ import annotations

from bench import raw, seed
from bench.harness import CALLERS, Bench, Report, fresh_database, run_concurrently, warm_up_tortoise
from models import orders
from models import settings as market_settings
from models.users import End

TARGET = 0.50


async def run(report: Report, *, quick: bool) -> None:
    n = 200 if quick else 2_000
    report.section(f"take — {CALLERS} concurrent callers, N = {n} takes per variant")
    async with fresh_database() as bench:
        await _run(bench, report, n)


async def _run(bench: Bench, report: Report, n: int) -> None:
    publishers = [p.id for p in await seed.publishers_with_inviters(64)]
    single = await seed.publish_tasks(publishers, 3 * n, quantity=1)
    hot = await seed.publish_tasks(publishers[:2], 2, quantity=min(n, 10_000))
    (inviter,) = await seed.register(End.WORKER, 1)
    workers = await seed.bulk_users(bench.pool, End.WORKER, 3 * n, inviter_ids=[inviter.id])
    limit = (await market_settings.current()).max_orders_in_progress
    await warm_up_tortoise()

    ours = await run_concurrently(zip(single[:n], workers[:n]), lambda p: orders.take(*p))
    async with bench.baseline() as pool:
        base = await run_concurrently(zip(single[n:2 * n], workers[n:2 * n]), lambda p: raw.take(pool, *p, limit))
        slot = await run_concurrently(single[2 * n:], lambda t: raw.take_slot_only(pool, t))
    report.run("ours: orders.take (one-slot tasks)", ours, "takes/s")
    report.run("baseline: raw asyncpg transaction", base, "takes/s")
    report.row("take, one-slot tasks", ours.rate, base.rate, "takes/s", target_ratio=TARGET)
    report.run("orientation: raw conditional UPDATE alone", slot, "updates/s")
    # Those UPDATEs took slots without creating orders: give them back so the books balance again.
    await bench.pool.execute(
        "UPDATE tasks SET slots_untaken = 1, orders_live = 0, status = 'open' WHERE id = ANY($1)", single[2 * n:]
    )

    hot_slots = min(n, 10_000)
    await warm_up_tortoise()
    ours_hot = await run_concurrently(((hot[0], w) for w in workers[:hot_slots]), lambda p: orders.take(*p))
    async with bench.baseline() as pool:
        base_hot = await run_concurrently(((hot[1], w) for w in workers[n:n + hot_slots]), lambda p: raw.take(pool, *p, limit))
    report.run(f"ours: orders.take (one task, {hot_slots} slots)", ours_hot, "takes/s")
    report.run("baseline: raw asyncpg transaction (same)", base_hot, "takes/s")
    report.row("take, one hot task (info)", ours_hot.rate, base_hot.rate, "takes/s")
    report.line("ledger audit after the run", await seed.books_are_clean())
