"""The raw-SQL baselines: the statements our domain functions send, hand-written on plain asyncpg.

Each function here does, in one transaction, the same statements as the domain function it stands
for, in the same order and with the same locks, but without the ORM: no model objects, no query
builder, no per-row Python work beyond building the parameters. What separates our figure from this
one is therefore the cost of the ORM and of the domain code's extra round trips, not the schema.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

import asyncpg

from bench.seed import dumps
from models import clock
from models.ledger import PLATFORM_SHARDS

BP = 10_000


class Lost(Exception):
    """A conditional UPDATE matched nothing (the baseline's `_Lost`)."""


# --- the statements, as the domain writes them ------------------------------------------------------
TAKE_USER_SQL = (
    "UPDATE users SET orders_in_progress = orders_in_progress + 1 "
    "WHERE id = $1 AND \"end\" = 'worker' AND NOT banned AND orders_in_progress < $2 "
    "RETURNING inviter_id, unionid"
)
TAKE_TASK_SQL = (
    "UPDATE tasks SET slots_untaken = slots_untaken - 1, orders_live = orders_live + 1, "
    "status = CASE WHEN slots_untaken = 1 THEN 'full' ELSE 'open' END "
    "WHERE id = $1 AND status = 'open' AND slots_untaken > 0 AND take_deadline_at > $2 "
    "AND (publisher_unionid IS NULL OR CAST($3 AS VARCHAR(64)) IS NULL OR publisher_unionid <> CAST($3 AS VARCHAR(64))) "
    "RETURNING publisher_id, unit_price_fen, fee_fen, worker_invite_bp, publisher_invite_bp, "
    "publisher_inviter_id, countdown_s, review_window_s, appeal_window_s, slots_untaken, title, status"
)
INSERT_ORDER_SQL = (
    "INSERT INTO orders (task_id, worker_id, publisher_id, status, unit_price_fen, fee_fen, worker_invite_bp, "
    "publisher_invite_bp, worker_inviter_id, publisher_inviter_id, review_window_s, appeal_window_s, taken_at, "
    "submit_deadline_at, due_at, sweep_failures) "
    "VALUES ($1, $2, $3, 'in_progress', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, 0) RETURNING id"
)
AUDIT_SQL = (
    "INSERT INTO audit_log (actor_kind, actor_id, action, target_kind, target_id, data, created_at) "
    "VALUES ($1, $2, $3, 'order', $4, $5::jsonb, $6)"
)
TASK_ORDER_FINAL_SQL = (
    "UPDATE tasks SET orders_live = orders_live - 1, "
    "status = CASE WHEN status = 'full' AND orders_live = 1 AND slots_untaken = 0 THEN 'finished' ELSE status END "
    "WHERE id = $1"
)
JOURNAL_SQL = (
    "INSERT INTO journal_entries (key, kind, task_id, order_id, memo, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING RETURNING id"
)
BALANCE_SQL = (
    "UPDATE accounts SET balance_fen = balance_fen + $1 "
    "WHERE code = $2 AND (may_go_negative OR balance_fen + $1 >= 0) RETURNING id, balance_fen"
)
POSTINGS_SQL = (
    "INSERT INTO postings (entry_id, account_id, amount_fen, balance_after_fen, related_user_id, created_at) "
    "SELECT $1, a, m, b, NULL, $2 FROM unnest($3::bigint[], $4::bigint[], $5::bigint[]) AS x(a, m, b)"
)
REWARDS_SQL = (
    "INSERT INTO referral_rewards (inviter_id, invitee_id, order_id, side, amount_fen, created_at) "
    "SELECT i, e, $1, s, m, $2 FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::bigint[]) AS x(i, e, s, m)"
)
OUTBOX_SQL = (
    "INSERT INTO outbox (channel, event, user_id, payload, status, attempts, next_attempt_at, created_at) "
    "SELECT c, e, u, p::jsonb, 'pending', 0, $1, $1 FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[]) AS x(c, e, u, p)"
)
# The order columns a settling transition needs, returned by its conditional UPDATE.
ORDER_TERMS = (
    "id, task_id, worker_id, publisher_id, unit_price_fen, fee_fen, worker_invite_bp, publisher_invite_bp, "
    "worker_inviter_id, publisher_inviter_id, review_window_s, submit_deadline_at, review_deadline_at"
)
APPROVE_SQL = (
    "UPDATE orders SET status = 'completed', due_at = NULL, finished_at = $2, finished_by = 'approve' "
    "WHERE id = $1 AND status = 'awaiting_review' AND publisher_id = $3 AND review_deadline_at > $2 "
    f"RETURNING {ORDER_TERMS}"
)


def _shard(kind: str, key: int) -> str:
    return f"p:{kind}:{key % PLATFORM_SHARDS}"


async def write_outbox(conn: asyncpg.Connection, now: dt.datetime, rows: Sequence[tuple[str, str, int | None, dict]]) -> None:
    await conn.execute(
        OUTBOX_SQL, now, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [dumps(r[3]) for r in rows]
    )


# --- take ------------------------------------------------------------------------------------------
async def take(pool: asyncpg.Pool, task_id: int, worker_id: int, limit: int) -> int:
    """`orders.take` by hand: counter UPDATE, slot UPDATE, order INSERT, 4 outbox rows, audit row."""
    now = clock.now()
    async with pool.acquire() as conn, conn.transaction():
        worker = await conn.fetchrow(TAKE_USER_SQL, worker_id, limit)
        if worker is None:
            raise Lost("worker")
        task = await conn.fetchrow(TAKE_TASK_SQL, task_id, now, worker["unionid"])
        if task is None:
            raise Lost("task")
        deadline = now + dt.timedelta(seconds=task["countdown_s"])
        order_id = await conn.fetchval(
            INSERT_ORDER_SQL, task_id, worker_id, task["publisher_id"], task["unit_price_fen"], task["fee_fen"],
            task["worker_invite_bp"], task["publisher_invite_bp"], worker["inviter_id"], task["publisher_inviter_id"],
            task["review_window_s"], task["appeal_window_s"], now, deadline,
        )
        hall = {"task_id": task_id, "slots_untaken": task["slots_untaken"], "status": task["status"]}
        info = {"order_id": order_id, "task_id": task_id, "title": task["title"], "taken_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        await write_outbox(conn, now, [
            ("push", "hall.task_removed" if task["slots_untaken"] == 0 else "hall.task_changed", None, hall),
            ("push", "order.taken", task["publisher_id"], info),
            ("subscribe", "order_taken", task["publisher_id"], info),
            ("push", "order.changed", worker_id, {"order_id": order_id, "task_id": task_id, "status": "in_progress", "event": "take",
                                                   "deadline_at": deadline.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}),
        ])
        await conn.execute(AUDIT_SQL, "user", worker_id, "order.take", order_id, dumps({"task_id": task_id}), now)
    return order_id


async def take_slot_only(pool: asyncpg.Pool, task_id: int) -> None:
    """The slot's conditional UPDATE alone, autocommitted: the floor under any take."""
    row = await pool.fetchrow(TAKE_TASK_SQL, task_id, clock.now(), None)
    if row is None:
        raise Lost("task")


# --- completing an order (approve, review timeout) ---------------------------------------------------
async def complete(conn: asyncpg.Connection, o: Any, event: str, now: dt.datetime, deadline_info: dict) -> None:
    """`orders._complete` + `_notify` + the audit row, after the order's UPDATE has been won.

    `o` is the row the conditional UPDATE returned (ORDER_TERMS)."""
    oid, task_id, price, fee = o["id"], o["task_id"], o["unit_price_fen"], o["fee_fen"]
    r_w = price * o["worker_invite_bp"] // BP if o["worker_inviter_id"] else 0
    r_p = fee * o["publisher_invite_bp"] // BP if o["publisher_inviter_id"] else 0
    await conn.execute(TASK_ORDER_FINAL_SQL, task_id)
    entry_id = await conn.fetchval(JOURNAL_SQL, f"order:{oid}:complete", "order_complete", task_id, oid, event, now)
    if entry_id is None:
        raise Lost("duplicate entry")
    legs = {
        _shard("escrow", task_id): -(price + fee),
        f"u:{o['worker_id']}:available": price,
        _shard("fees", oid): fee - r_w - r_p,
        _shard("referral_payable", oid): r_w + r_p,
    }
    accounts, amounts, after = [], [], []
    for code in sorted(legs):  # code order, as ledger.post: deadlock-free
        if legs[code]:
            row = await conn.fetchrow(BALANCE_SQL, legs[code], code)
            if row is None:
                raise Lost(f"insufficient balance on {code}")
            accounts.append(row["id"]), amounts.append(legs[code]), after.append(row["balance_fen"])
    await conn.execute(POSTINGS_SQL, entry_id, now, accounts, amounts, after)
    rewards = [(o["worker_inviter_id"], o["worker_id"], "worker", r_w), (o["publisher_inviter_id"], o["publisher_id"], "publisher", r_p)]
    rewards = [r for r in rewards if r[3]]
    if rewards:
        await conn.execute(REWARDS_SQL, oid, now, [r[0] for r in rewards], [r[1] for r in rewards],
                           [r[2] for r in rewards], [r[3] for r in rewards])
    info = {"order_id": oid, "task_id": task_id, "status": "completed", "event": event}
    changed = info | {"deadline_at": None}
    await write_outbox(conn, now, [
        ("push", "wallet.changed", o["worker_id"], {"reason": "order_complete", "amount_fen": price, "task_id": task_id, "order_id": oid,
                                                    "recharge_id": None, "withdrawal_id": None}),
        ("push", "order.changed", o["worker_id"], changed),
        ("push", "order.changed", o["publisher_id"], changed),
        ("subscribe", "order_approved", o["worker_id"], info | {"amount_fen": price}),
    ])
    money = {"paid_fen": price, "fee_fen": fee - r_w - r_p, "worker_referral_fen": r_w, "publisher_referral_fen": r_p}
    actor = ("timer", None) if event == "review_timeout" else ("user", o["publisher_id"])
    await conn.execute(AUDIT_SQL, actor[0], actor[1], f"order.{event}", oid,
                       dumps({"from": "awaiting_review", "to": "completed", **money, **deadline_info}), now)


async def approve(pool: asyncpg.Pool, order_id: int, publisher_id: int) -> None:
    """`orders.approve` by hand: the order's conditional UPDATE, then `complete`."""
    now = clock.now()
    async with pool.acquire() as conn, conn.transaction():
        o = await conn.fetchrow(APPROVE_SQL, order_id, now, publisher_id)
        if o is None:
            raise Lost("order")
        await complete(conn, o, "approve", now, {})


# --- the sweep -------------------------------------------------------------------------------------
CLAIM_SQL = (
    f"SELECT {ORDER_TERMS}, status, due_at, sweep_failures FROM orders WHERE due_at <= $1 "
    "ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED"
)
COUNTDOWN_END_SQL = (
    "UPDATE orders SET status = 'awaiting_review', review_deadline_at = $3, due_at = $3, submitted_at = $4 "
    "WHERE id = $1 AND status = 'in_progress' AND due_at <= $2"
)
REVIEW_TIMEOUT_SQL = (
    "UPDATE orders SET status = 'completed', due_at = NULL, finished_at = $3, finished_by = 'review_timeout' "
    "WHERE id = $1 AND status = 'awaiting_review' AND due_at <= $2"
)


async def sweep_orders(pool: asyncpg.Pool, batch: int = 100) -> int:
    """`sweeper.sweep_orders` by hand: each due row claimed (SKIP LOCKED) and settled in its own
    transaction, its transition in a savepoint."""
    claimed = 0
    async with pool.acquire() as conn:
        while claimed < batch:
            async with conn.transaction():
                due = await conn.fetch(CLAIM_SQL, clock.now(), 1)
                if not due:
                    break
                o = due[0]
                claimed += 1
                try:
                    await _apply_timer(conn, o)
                except Exception:  # as sweeper._postpone_order: roll back this row alone, retry it later
                    failures = o["sweep_failures"] + 1
                    await conn.execute(
                        "UPDATE orders SET due_at = $2, sweep_failures = $3 WHERE id = $1",
                        o["id"], clock.now() + dt.timedelta(seconds=min(300, 2**failures)), failures,
                    )
    return claimed


async def _apply_timer(conn: asyncpg.Connection, o: Any) -> None:
    """One claimed order's timer transition, in its own savepoint."""
    now = clock.now()
    async with conn.transaction():  # a savepoint, as the sweeper's nested in_transaction()
        if o["status"] == "in_progress":
            deadline = o["submit_deadline_at"]
            review = deadline + dt.timedelta(seconds=o["review_window_s"])
            if await conn.execute(COUNTDOWN_END_SQL, o["id"], now, review, deadline) != "UPDATE 1":
                return
            await conn.execute("UPDATE users SET orders_in_progress = orders_in_progress - 1 WHERE id = $1", o["worker_id"])
            info = {"order_id": o["id"], "task_id": o["task_id"], "status": "awaiting_review", "event": "countdown_end"}
            await write_outbox(conn, now, [
                ("push", "order.changed", o["worker_id"], info),
                ("push", "order.changed", o["publisher_id"], info),
                ("subscribe", "order_awaiting_review", o["publisher_id"], info | {"review_deadline_at": review.isoformat()}),
            ])
            await conn.execute(AUDIT_SQL, "timer", None, "order.countdown_end", o["id"],
                               dumps({"from": "in_progress", "to": "awaiting_review"}), now)
        elif o["status"] == "awaiting_review":
            if await conn.execute(REVIEW_TIMEOUT_SQL, o["id"], now, o["review_deadline_at"]) != "UPDATE 1":
                return
            await complete(conn, o, "review_timeout", now, {})


# --- the sweep, batched (the baseline of `timer_batch.settle_orders`) -------------------------------
BATCH_CLAIM_SQL = (
    f"SELECT {ORDER_TERMS}, status, due_at, sweep_failures FROM orders WHERE due_at <= $1 "
    "ORDER BY due_at LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED"
)


async def sweep_orders_batched(pool: asyncpg.Pool, batch: int = 100) -> int:
    """`timer_batch.settle_orders` by hand: up to `batch` due orders claimed (SKIP LOCKED) and
    settled in ONE transaction with set-based statements — the orders' conditional UPDATEs, the
    workers' counters and the tasks' counters (each locked in id order first), referral rows,
    outbox rows, audit rows, journal entries, the accounts (locked in code order, one UPDATE for the
    batch's net change each) and the postings with running balances. The same writes as ours."""
    now = clock.now()
    async with pool.acquire() as conn, conn.transaction():
        claimed = sorted(await conn.fetch(BATCH_CLAIM_SQL, now, batch), key=lambda o: (o["task_id"], o["id"]))
        if not claimed:
            return 0
        ends = [o for o in claimed if o["status"] == "in_progress"]
        dones = [o for o in claimed if o["status"] == "awaiting_review"]
        outbox: list[tuple[str, str, int | None, dict]] = []
        audits: list[tuple[str, int, str]] = []
        if ends:
            reviews = [o["submit_deadline_at"] + dt.timedelta(seconds=o["review_window_s"]) for o in ends]
            await conn.execute(
                "UPDATE orders o SET status = 'awaiting_review', submitted_at = o.submit_deadline_at, review_deadline_at = v.r, "
                "due_at = v.r FROM unnest($1::bigint[], $2::timestamptz[]) AS v(id, r) WHERE o.id = v.id AND o.status = 'in_progress' AND o.due_at <= $3",
                [o["id"] for o in ends], reviews, now,
            )
            per_worker: dict[int, int] = {}
            for o in ends:
                per_worker[o["worker_id"]] = per_worker.get(o["worker_id"], 0) + 1
            ids = sorted(per_worker)
            await conn.execute("SELECT id FROM users WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE", ids)
            await conn.execute(
                "UPDATE users u SET orders_in_progress = u.orders_in_progress - v.n FROM unnest($1::bigint[], $2::int[]) AS v(id, n) WHERE u.id = v.id",
                ids, [per_worker[i] for i in ids],
            )
            for o, review in zip(ends, reviews):
                info = {"order_id": o["id"], "task_id": o["task_id"], "status": "awaiting_review", "event": "countdown_end"}
                outbox += [("push", "order.changed", o["worker_id"], info), ("push", "order.changed", o["publisher_id"], info),
                           ("subscribe", "order_awaiting_review", o["publisher_id"], info | {"review_deadline_at": review.isoformat()})]
                audits.append(("order.countdown_end", o["id"], dumps({"from": "in_progress", "to": "awaiting_review"})))
        entries, deltas, rewards = [], {}, []
        if dones:
            await conn.execute(
                "UPDATE orders SET status = 'completed', due_at = NULL, finished_at = review_deadline_at, finished_by = 'review_timeout' "
                "WHERE id = ANY($1::bigint[]) AND status = 'awaiting_review' AND due_at <= $2",
                [o["id"] for o in dones], now,
            )
            for o in dones:
                oid, task_id, price, fee = o["id"], o["task_id"], o["unit_price_fen"], o["fee_fen"]
                r_w = price * o["worker_invite_bp"] // BP if o["worker_inviter_id"] else 0
                r_p = fee * o["publisher_invite_bp"] // BP if o["publisher_inviter_id"] else 0
                legs = {_shard("escrow", task_id): -(price + fee), f"u:{o['worker_id']}:available": price,
                        _shard("fees", oid): fee - r_w - r_p, _shard("referral_payable", oid): r_w + r_p}
                legs = {c: m for c, m in sorted(legs.items()) if m}
                entries.append((f"order:{oid}:complete", task_id, oid, legs))
                for c, m in legs.items():
                    deltas[c] = deltas.get(c, 0) + m
                if r_w:
                    rewards.append((o["worker_inviter_id"], o["worker_id"], oid, "worker", r_w))
                if r_p:
                    rewards.append((o["publisher_inviter_id"], o["publisher_id"], oid, "publisher", r_p))
                info = {"order_id": oid, "task_id": task_id, "status": "completed", "event": "review_timeout"}
                outbox += [("push", "wallet.changed", o["worker_id"], {"reason": "order_complete", "amount_fen": price, "task_id": task_id,
                                                                        "order_id": oid, "recharge_id": None, "withdrawal_id": None}),
                           ("push", "order.changed", o["worker_id"], info | {"deadline_at": None}),
                           ("push", "order.changed", o["publisher_id"], info | {"deadline_at": None}),
                           ("subscribe", "order_approved", o["worker_id"], info | {"amount_fen": price})]
                money = {"paid_fen": price, "fee_fen": fee - r_w - r_p, "worker_referral_fen": r_w, "publisher_referral_fen": r_p}
                audits.append(("order.review_timeout", oid, dumps({"from": "awaiting_review", "to": "completed", **money})))
        if rewards:
            await conn.execute(
                "INSERT INTO referral_rewards (inviter_id, invitee_id, order_id, side, amount_fen, created_at) "
                "SELECT i, e, o, s, m, $6 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[]) AS x(i, e, o, s, m)",
                *[list(c) for c in zip(*rewards)], now,
            )
        await write_outbox(conn, now, outbox)
        await conn.execute(
            "INSERT INTO audit_log (actor_kind, actor_id, action, target_kind, target_id, data, created_at) "
            "SELECT 'timer', NULL, a, 'order', t, d::jsonb, $4 FROM unnest($1::text[], $2::bigint[], $3::text[]) AS x(a, t, d)",
            [a[0] for a in audits], [a[1] for a in audits], [a[2] for a in audits], now,
        )
        if dones:
            per_task: dict[int, int] = {}
            for o in dones:
                per_task[o["task_id"]] = per_task.get(o["task_id"], 0) + 1
            ids = sorted(per_task)
            await conn.execute("SELECT id FROM tasks WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE", ids)
            await conn.execute(
                "UPDATE tasks t SET orders_live = t.orders_live - v.n, status = CASE WHEN t.status = 'full' AND t.orders_live = v.n "
                "AND t.slots_untaken = 0 THEN 'finished' ELSE t.status END FROM unnest($1::bigint[], $2::int[]) AS v(id, n) WHERE t.id = v.id",
                ids, [per_task[i] for i in ids],
            )
            rows = await conn.fetch(
                "INSERT INTO journal_entries (key, kind, task_id, order_id, memo, created_at) "
                "SELECT k, 'order_complete', t, o, 'review_timeout', $4 FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS e(k, t, o) "
                "RETURNING id, key",
                [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries], now,
            )
            entry_ids = {r["key"]: r["id"] for r in rows}
            codes = sorted(deltas)
            await conn.execute("SELECT id FROM accounts WHERE code = ANY($1::text[]) ORDER BY code FOR NO KEY UPDATE", codes)
            updated = await conn.fetch(
                "UPDATE accounts a SET balance_fen = a.balance_fen + d.m FROM unnest($1::text[], $2::bigint[]) AS d(c, m) "
                "WHERE a.code = d.c AND (a.may_go_negative OR a.balance_fen + d.m >= 0) RETURNING a.code, a.id, a.balance_fen",
                codes, [deltas[c] for c in codes],
            )
            if len(updated) != len(codes):
                raise Lost("insufficient balance")
            account = {r["code"]: r["id"] for r in updated}
            running = {r["code"]: r["balance_fen"] - deltas[r["code"]] for r in updated}
            pe, pa, pm, pb = [], [], [], []
            for key, _, _, legs in entries:
                for code, m in legs.items():
                    running[code] += m
                    pe.append(entry_ids[key]), pa.append(account[code]), pm.append(m), pb.append(running[code])
            await conn.execute(
                "INSERT INTO postings (entry_id, account_id, amount_fen, balance_after_fen, related_user_id, created_at) "
                "SELECT e, a, m, b, NULL, $5 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS x(e, a, m, b)",
                pe, pa, pm, pb, now,
            )
    return len(claimed)
