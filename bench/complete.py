"""Benchmark 2 — complete: 32 concurrent publishers approving orders with `orders.approve`.

Approving posts the order's money: P from escrow to the worker, F to fees minus the referral
rewards of the worker's and the publisher's inviters (two `referral_rewards` rows), plus the task's
live-order counter, outbox rows and an audit row — all in one transaction.

1. Seed (fresh database), per scenario: publishers (each with an inviter) fund and publish tasks of
   10 slots through the domain; 2·N orders are taken and submitted in bulk (`seed.bulk_take`) by
   workers who all have inviters, so every approval writes both referral rewards.
2. Ours: 32 callers approve N orders (in shuffled order, so concurrent approvals rarely share a
   task) through `orders.approve` — approvals/s.
3. Baseline: an asyncpg pool of 32 runs the same statements by hand on the other N orders (order
   conditional UPDATE ... RETURNING, tasks UPDATE, journal entry INSERT, 4 account UPDATEs ...
   RETURNING in code order, postings INSERT, referral rows, outbox rows, audit row).
4. Scenarios: "spread" (64 publishers, 64 inviters) and "one publisher" (one publisher, one
   inviter: every order's rewards and publisher are the same). Target: one-publisher ≥ 80 % of
   spread. Informational: "one hot task" — one publisher's single task with N slots, where every
   approval updates the same task row.
"""

from __future__ import annotations

import random

from bench import raw, seed
from bench.harness import CALLERS, Bench, Report, fresh_database, run_concurrently, warm_up_tortoise
from models import clock, orders
from models.users import End

QUANTITY = 10  # slots per task in the spread and one-publisher scenarios
TARGET_ONE_PUBLISHER = 0.80
TARGET_VS_RAW = 0.50  # ours ≥ 50 % of the raw transaction doing the same postings (issue 2)


async def run(report: Report, *, quick: bool) -> None:
    n = 150 if quick else 1_500
    report.section(f"complete — {CALLERS} concurrent approvals, N = {n} per variant, with ledger and referrals")
    async with fresh_database() as bench:
        await _run(bench, report, n)


async def _scenario(bench: Bench, workers: list[int], publishers: list[int], n: int, quantity: int) -> tuple[list, list]:
    """Seed 2·N orders awaiting review on tasks of `publishers`; return (ours, baseline) items."""
    task_count = -(-2 * n // quantity)
    task_ids = await seed.publish_tasks(publishers, task_count, quantity=quantity)
    pairs = [(task_ids[i // quantity], workers[i]) for i in range(2 * n)]
    review_deadline = clock.after(clock.now(), 1_200)
    ids = await seed.bulk_take(bench.pool, pairs, [review_deadline] * len(pairs), [True] * len(pairs))
    rows = await bench.pool.fetch("SELECT id, publisher_id FROM orders WHERE id = ANY($1)", ids)
    items = [(r["id"], r["publisher_id"]) for r in rows]
    random.Random(len(items)).shuffle(items)
    return items[:n], items[n:]


async def _measure(bench: Bench, report: Report, label: str, ours_items: list, base_items: list):
    await warm_up_tortoise()
    ours = await run_concurrently(ours_items, lambda i: orders.approve(*i))
    async with bench.baseline() as pool:
        base = await run_concurrently(base_items, lambda i: raw.approve(pool, *i))
    report.run(f"ours: orders.approve ({label})", ours, "approvals/s")
    report.run(f"baseline: raw asyncpg transaction ({label})", base, "approvals/s")
    return ours, base


async def _run(bench: Bench, report: Report, n: int) -> None:
    worker_inviters = [u.id for u in await seed.register(End.WORKER, 32)]
    workers = await seed.bulk_users(bench.pool, End.WORKER, 2 * n, inviter_ids=worker_inviters)
    spread_publishers = [p.id for p in await seed.publishers_with_inviters(64)]
    (one_publisher,) = [p.id for p in await seed.publishers_with_inviters(1)]
    spread = await _scenario(bench, workers, spread_publishers, n, QUANTITY)
    single = await _scenario(bench, workers, [one_publisher], n, QUANTITY)
    hot = await _scenario(bench, workers, [one_publisher], n, min(2 * n, 10_000))

    ours_spread, base_spread = await _measure(bench, report, "spread: 64 publishers", *spread)
    report.row("complete, spread", ours_spread.rate, base_spread.rate, "approvals/s", target_ratio=TARGET_VS_RAW)
    ours_one, base_one = await _measure(bench, report, "one publisher, one inviter", *single)
    report.row("complete, one publisher", ours_one.rate, base_one.rate, "approvals/s", target_ratio=TARGET_VS_RAW)
    report.row(
        "complete, one publisher / spread (ours)", ours_one.rate, ours_spread.rate, "approvals/s",
        target_ratio=TARGET_ONE_PUBLISHER, baseline_label="spread",
    )
    ours_hot, base_hot = await _measure(bench, report, "one publisher, one hot task", *hot)
    report.row("complete, one hot task (info)", ours_hot.rate, base_hot.rate, "approvals/s")
    report.line("one hot task / spread (ours)", f"{ours_hot.rate / ours_spread.rate:10.1%}")
    report.line("ledger audit after the run", await seed.books_are_clean())
