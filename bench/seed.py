"""Seeding: the state a benchmark starts from, built the way production builds it.

Everything that moves money goes through the domain: publishers register with
`users.login_or_register`, are funded by `recharges.create` + `recharges.credit` (the WeChat Pay
notification path) and publish with `tasks.publish`, so every balance is backed by its postings.

Two things would take too long through the domain at benchmark sizes, and move no money, so they are
written by bulk SQL that reproduces exactly the rows the domain writes:

- `bulk_users`: workers (and their accounts and `user.register` audit rows), as `login_or_register`;
- `bulk_take`: orders, as `orders.take` (and optionally `orders.submit`) would leave them: the order
  row with its copied terms and deadlines, the task's slot counters and status, the worker's
  in-progress counter, and the outbox and audit rows (payloads abbreviated to their ids).

Every benchmark ends with `ledger.audit()`, which checks that the books still balance (escrow equals
untaken slots plus live orders, every balance equals its postings, ...).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from collections import Counter
from typing import Sequence

import asyncpg

from models import clock, ledger, recharges, tasks
from models.users import End, User, login_or_register, new_invite_code

UNIT_PRICE_FEN = 1_000  # P = ¥10.00, so F = 100 fen, R_w = 20 fen, R_p = 10 fen
_seq = itertools.count(1)
_BULK_CHUNK = 5_000


# --- through the domain ----------------------------------------------------------------------------
async def register(end: End, count: int, *, inviter: User | None = None) -> list[User]:
    """`count` users of one end registered through `login_or_register` (invited by `inviter`)."""
    users = []
    for _ in range(count):
        u, _ = await login_or_register(
            end, f"bench-{end.value}-{next(_seq)}", invite_code=inviter.invite_code if inviter else None
        )
        users.append(u)
    return users


async def fund(user_id: int, amount_fen: int) -> None:
    """Recharge through the path a verified WeChat Pay notification takes, in payments ≤ the cap."""
    while amount_fen > 0:
        part = min(amount_fen, recharges.MAX_RECHARGE_FEN)
        n = next(_seq)
        r = await recharges.create(user_id, part, request_id=f"bench-fund-{n}")
        await recharges.credit(r.out_trade_no, transaction_id=f"bench-tx-{user_id}-{n}", amount_fen=part)
        amount_fen -= part


async def publishers_with_inviters(count: int, *, one_inviter: bool = False) -> list[User]:
    """`count` publishers, each invited by their own inviter (or all by one)."""
    if one_inviter:
        (inviter,) = await register(End.PUBLISHER, 1)
        inviters = [inviter] * count
    else:
        inviters = await register(End.PUBLISHER, count)
    return [(await register(End.PUBLISHER, 1, inviter=i))[0] for i in inviters]


async def publish_tasks(publisher_ids: Sequence[int], count: int, *, quantity: int, callers: int = 32) -> list[int]:
    """Fund the publishers and publish `count` tasks of `quantity` slots, round-robin over them.

    Returns the task ids in the order they were asked for (task i belongs to publisher i % n).
    """
    per_publisher = Counter(publisher_ids[i % len(publisher_ids)] for i in range(count))
    fee = UNIT_PRICE_FEN * 1_000 // 10_000
    for pid, n in per_publisher.items():
        await fund(pid, n * quantity * (UNIT_PRICE_FEN + fee))
    ids: list[int] = [0] * count
    todo = iter(range(count))

    async def caller() -> None:
        for i in todo:
            t = await tasks.publish(
                publisher_ids[i % len(publisher_ids)], title=f"bench task {i}", instructions="Do the thing.",
                unit_price_fen=UNIT_PRICE_FEN, quantity=quantity,
            )
            ids[i] = t.id

    await asyncio.gather(*(caller() for _ in range(callers)))
    return ids


# --- bulk SQL, reproducing what the domain writes ---------------------------------------------------
async def bulk_users(pool: asyncpg.Pool, end: End, count: int, *, inviter_ids: Sequence[int | None] = ()) -> list[int]:
    """Register `count` users as `login_or_register` does: the user row, its two accounts
    (available, withdrawing) and the `user.register` audit row. inviter_ids[i % len] invites user i."""
    now = clock.now()
    codes: set[str] = set()
    while len(codes) < count:
        codes.add(new_invite_code())
    code_list = list(codes)
    ids: list[int] = []
    for start in range(0, count, _BULK_CHUNK):
        stop = min(count, start + _BULK_CHUNK)
        openids = [f"bench-bulk-{end.value}-{next(_seq)}" for _ in range(start, stop)]
        inviters = [inviter_ids[i % len(inviter_ids)] if inviter_ids else None for i in range(start, stop)]
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                'INSERT INTO users ("end", openid, unionid, nickname, invite_code, inviter_id, banned, '
                "token_version, orders_in_progress, withdrawn_today_fen, created_at) "
                "SELECT $1, o, NULL, '', c, i, false, 0, 0, 0, $2 "
                "FROM unnest($3::text[], $4::text[], $5::bigint[]) AS x(o, c, i) RETURNING id, inviter_id",
                end.value, now, openids, code_list[start:stop], inviters,
            )
            new = [r["id"] for r in rows]
            await conn.execute(
                "INSERT INTO accounts (code, kind, user_id, shard, balance_fen, may_go_negative) "
                "SELECT 'u:' || u || ':' || k, k, u, 0, 0, false FROM unnest($1::bigint[]) AS u "
                "CROSS JOIN (VALUES ('available'), ('withdrawing')) AS kinds(k)",
                new,
            )
            await conn.execute(
                "INSERT INTO audit_log (actor_kind, actor_id, action, target_kind, target_id, data, created_at) "
                "SELECT 'user', u, 'user.register', 'user', u, jsonb_build_object('end', $2::text, 'inviter_id', i), $3 "
                "FROM unnest($1::bigint[], $4::bigint[]) AS x(u, i)",
                new, end.value, now, [r["inviter_id"] for r in rows],
            )
        ids += new
    return ids


async def bulk_take(
    pool: asyncpg.Pool,
    pairs: Sequence[tuple[int, int]],
    deadlines: Sequence[dt.datetime],
    submitted: Sequence[bool],
) -> list[int]:
    """Orders for (task_id, worker_id) pairs, as `orders.take` (then `orders.submit` where
    submitted[i]) leaves them. deadlines[i] is the deadline now running: the countdown's end for
    an order in progress, the review deadline for one submitted. Returns the order ids in order.

    The terms are copied from the task and the worker as `take` copies them; the task's
    `slots_untaken`/`orders_live`/`status` and the worker's `orders_in_progress` move as the
    conditional UPDATEs of take and submit move them.
    """
    async with pool.acquire() as conn:
        task_rows = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT id, publisher_id, unit_price_fen, fee_fen, worker_invite_bp, publisher_invite_bp, "
                "publisher_inviter_id, countdown_s, review_window_s, appeal_window_s FROM tasks WHERE id = ANY($1)",
                list({t for t, _ in pairs}),
            )
        }
        inviter_of = {
            r["id"]: r["inviter_id"]
            for r in await conn.fetch("SELECT id, inviter_id FROM users WHERE id = ANY($1)", list({w for _, w in pairs}))
        }
    ids: list[int] = []
    for start in range(0, len(pairs), _BULK_CHUNK):
        chunk = range(start, min(len(pairs), start + _BULK_CHUNK))
        cols: dict[str, list] = {k: [] for k in (
            "task", "worker", "publisher", "status", "price", "fee", "wbp", "pbp", "winv", "pinv", "rw", "aw",
            "taken", "submit_dl", "review_dl", "due", "submitted")}
        for i in chunk:
            task_id, worker_id = pairs[i]
            t = task_rows[task_id]
            deadline = deadlines[i]
            if submitted[i]:  # submitted 60 s into the countdown; the review window runs to `deadline`
                submitted_at = deadline - dt.timedelta(seconds=t["review_window_s"])
                taken = submitted_at - dt.timedelta(seconds=60)
                status, review_dl = "awaiting_review", deadline
            else:
                taken = deadline - dt.timedelta(seconds=t["countdown_s"])
                submitted_at, status, review_dl = None, "in_progress", None
            for key, value in (
                ("task", task_id), ("worker", worker_id), ("publisher", t["publisher_id"]), ("status", status),
                ("price", t["unit_price_fen"]), ("fee", t["fee_fen"]), ("wbp", t["worker_invite_bp"]),
                ("pbp", t["publisher_invite_bp"]), ("winv", inviter_of[worker_id]), ("pinv", t["publisher_inviter_id"]),
                ("rw", t["review_window_s"]), ("aw", t["appeal_window_s"]), ("taken", taken),
                ("submit_dl", taken + dt.timedelta(seconds=t["countdown_s"])), ("review_dl", review_dl),
                ("due", deadline), ("submitted", submitted_at),
            ):
                cols[key].append(value)
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "INSERT INTO orders (task_id, worker_id, publisher_id, status, unit_price_fen, fee_fen, "
                "worker_invite_bp, publisher_invite_bp, worker_inviter_id, publisher_inviter_id, review_window_s, "
                "appeal_window_s, taken_at, submit_deadline_at, review_deadline_at, due_at, submitted_at, sweep_failures) "
                "SELECT " + ", ".join(f"c{n}" for n in range(1, 18)) + ", 0 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], "
                "$6::bigint[], $7::int[], $8::int[], $9::bigint[], $10::bigint[], $11::int[], $12::int[], "
                "$13::timestamptz[], $14::timestamptz[], $15::timestamptz[], $16::timestamptz[], $17::timestamptz[]) "
                "WITH ORDINALITY AS x(" + ", ".join(f"c{n}" for n in range(1, 18)) + ", ord) ORDER BY ord RETURNING id",
                *cols.values(),
            )
            new = [r["id"] for r in rows]
            await _bulk_take_effects(conn, new)
        ids += new
    return ids


async def _bulk_take_effects(conn: asyncpg.Connection, order_ids: list[int]) -> None:
    """The counters, outbox rows and audit rows of take (and submit) for freshly inserted orders."""
    # take: slots_untaken − 1, orders_live + 1 per order; 'full' once no slot is left.
    await conn.execute(
        "UPDATE tasks t SET slots_untaken = t.slots_untaken - n.k, orders_live = t.orders_live + n.k, "
        "status = CASE WHEN t.slots_untaken - n.k = 0 THEN 'full' ELSE 'open' END "
        "FROM (SELECT task_id, count(*) AS k FROM orders WHERE id = ANY($1) GROUP BY task_id) n WHERE t.id = n.task_id",
        order_ids,
    )
    # take: + 1 in progress; submit: − 1 again. Net: the orders still in progress.
    await conn.execute(
        "UPDATE users u SET orders_in_progress = u.orders_in_progress + n.k "
        "FROM (SELECT worker_id, count(*) AS k FROM orders WHERE id = ANY($1) AND status = 'in_progress' "
        "GROUP BY worker_id) n WHERE u.id = n.worker_id",
        order_ids,
    )
    await conn.execute(
        "INSERT INTO outbox (channel, event, user_id, payload, status, attempts, next_attempt_at, created_at) "
        "SELECT e.channel, e.event, CASE e.who WHEN 'p' THEN o.publisher_id WHEN 'w' THEN o.worker_id END, "
        "jsonb_build_object('order_id', o.id, 'task_id', o.task_id), 'pending', 0, e.at, e.at "
        "FROM orders o CROSS JOIN LATERAL (VALUES "
        " ('push', 'hall.task_changed', NULL, o.taken_at, true), ('push', 'order.taken', 'p', o.taken_at, true), "
        " ('subscribe', 'order_taken', 'p', o.taken_at, true), ('push', 'order.changed', 'w', o.taken_at, true), "
        " ('push', 'order.changed', 'w', o.submitted_at, o.submitted_at IS NOT NULL), "
        " ('push', 'order.changed', 'p', o.submitted_at, o.submitted_at IS NOT NULL), "
        " ('subscribe', 'order_awaiting_review', 'p', o.submitted_at, o.submitted_at IS NOT NULL)"
        ") AS e(channel, event, who, at, wanted) WHERE o.id = ANY($1) AND e.wanted",
        order_ids,
    )
    await conn.execute(
        "INSERT INTO audit_log (actor_kind, actor_id, action, target_kind, target_id, data, created_at) "
        "SELECT 'user', o.worker_id, e.action, 'order', o.id, e.data, e.at FROM orders o CROSS JOIN LATERAL (VALUES "
        " ('order.take', jsonb_build_object('task_id', o.task_id), o.taken_at, true), "
        " ('order.submit', jsonb_build_object('from', 'in_progress', 'to', 'awaiting_review'), o.submitted_at, "
        "  o.submitted_at IS NOT NULL)"
        ") AS e(action, data, at, wanted) WHERE o.id = ANY($1) AND e.wanted",
        order_ids,
    )


async def books_are_clean() -> str:
    """One line: does the ledger audit pass after the benchmark?"""
    report = await ledger.audit()
    return "CLEAN" if report.ok else "PROBLEMS: " + "; ".join(report.problems[:3])


def dumps(value: dict) -> str:
    """JSON text for a jsonb parameter of a raw statement."""
    return json.dumps(value, separators=(",", ":"))
