"""Timers applied in batches: many due rows settled in one transaction (SPEC §3 timers, issue 12).

The same transitions as `orders.apply_timer` and `tasks.expire_due` — the same conditional UPDATEs,
ledger entries (same idempotency keys), outbox and audit rows — written set-based for a whole batch,
so a backlog costs one commit per batch instead of one per row.

A batch, in order (the numbers are the lock order; every transaction in the code base takes its locks
in this order: order rows → user rows → task rows → accounts by code, so no two can deadlock):

1. Claim up to `batch` due rows, oldest deadline first, `FOR NO KEY UPDATE SKIP LOCKED` on
   PostgreSQL: a claim never waits (rows a person or another batch holds are skipped), so several
   lanes and several schedulers take disjoint rows. The rows are then handled sorted by task.
2. Plan each row in Python (its new deadline, its entry, its messages). A row whose plan fails is
   postponed with backoff (`sweep_failures`, `due_at` moved out) and left out of the batch.
3. Conditional UPDATEs of the claimed rows (one per kind of timer; they hold the rows' locks, so
   each matches), referral rows, outbox rows, audit rows: one statement each, from arrays (one
   statement text whatever the batch's size, so PostgreSQL prepares it once per connection).
4. Last, the rows other transactions contend for: the workers' in-progress counters (users locked
   in id order), the tasks' live-order counters (tasks locked in id order), then every ledger entry
   of the batch at once (`ledger.post_many`: accounts locked in code order, one balance UPDATE per
   account for the batch's net change). Each lock is taken by the UPDATE that writes it (a locking
   subquery in order), and held only until the commit right after.

Nothing of a batch stands alone: any error rolls the whole transaction back, and the sweeper then
settles those rows one per transaction (scheduler/sweeper.py), where a poisoned row is postponed
alone. A batch killed half-way (deploy, crash, cancellation) leaves nothing behind; its rows are
simply due again.

SQLite (the embedded default) runs the same batches with one writer at a time: per-row statements
where PostgreSQL gets set-based ones, no row locks needed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from typing import Any

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from models import clock, db, ledger
from models.ledger import EntryKind
from models.orders import (
    EVERYONE_EARNS,
    Earns,
    TIMER_EVENTS,
    E,
    Order,
    OrderEvent,
    OrderStatus,
    S,
    _notify,
    completion_entry,
    completion_summary,
    invitees_qualify_many,
    referral_split,
    refund_entry,
    review_deadline_after_countdown,
)
from models.outbox import Pending, hall_task_removed
from models.referrals import ReferralReward, Side
from server import metrics

log = logging.getLogger("market.transitions")
sweep_log = logging.getLogger("market.sweeper")
MAX_BACKOFF_S = 300
# One encoder for every audit payload (`json.dumps` with options builds a new encoder per call).
_encode_audit = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


async def _checkpoint(step: str) -> None:
    """Nothing: the tests replace it to pause a batch at a step, holding its locks ("claimed",
    "written": the rows' own writes done, "locked": users, tasks and accounts written, before the commit)."""


def backoff_s(failures: int) -> int:
    return min(MAX_BACKOFF_S, 2**failures)


class _Plan:
    __slots__ = ("order", "event", "deadline", "values", "money", "entry", "referrals")

    def __init__(self, order: Order | DueOrder, event: OrderEvent, deadline: dt.datetime) -> None:
        self.order, self.event, self.deadline = order, event, deadline
        self.values: dict[str, Any] = {}
        self.money: dict[str, Any] | None = None
        self.entry: ledger.Entry | None = None
        self.referrals: list[tuple[int, int, int, str, int]] = []  # inviter, invitee, order, side, amount


def _plan(o: Order | DueOrder, now: dt.datetime, earns: Earns) -> _Plan:
    """What the order's due timer does (no writes): `orders.apply_timer`'s rules, row by row."""
    event, column = TIMER_EVENTS[o.status]
    plan = _Plan(o, event, getattr(o, column))
    if event == E.COUNTDOWN_END:
        review = review_deadline_after_countdown(o, now)
        plan.values = {"review_deadline_at": review, "due_at": review, "submitted_at": plan.deadline}
    elif event == E.REVIEW_TIMEOUT:
        plan.values = {"due_at": None, "finished_at": plan.deadline, "finished_by": event.value}
        plan.money = completion_summary(o, earns)
        plan.entry = completion_entry(o, event, earns)
        r_w, r_p = referral_split(o, earns)
        if r_w:
            plan.referrals.append((o.worker_inviter_id, o.worker_id, o.id, Side.WORKER.value, r_w))
        if r_p:
            plan.referrals.append((o.publisher_inviter_id, o.publisher_id, o.id, Side.PUBLISHER.value, r_p))
    else:  # APPEAL_TIMEOUT
        plan.values = {"due_at": None, "finished_at": plan.deadline, "finished_by": event.value}
        plan.money = {"refund_fen": o.unit_price_fen + o.fee_fen}
        plan.entry = refund_entry(o, f"order:{o.id}:fail", EntryKind.ORDER_FAIL, event.value)
    return plan


class BatchLost(Exception):
    """A conditional UPDATE of the batch matched fewer rows than it claimed: roll back, go row by row."""


async def settle_orders(batch: int) -> int:
    """Claim up to `batch` due orders and apply their timers in one transaction; returns how many
    were claimed (applied or postponed). Raises on any error, with nothing written."""
    async with in_transaction():
        now = clock.now()
        claimed = sorted(await _claim(batch, now), key=lambda o: (o.task_id, o.id))
        if not claimed:
            return 0
        await _checkpoint("claimed")
        # referral_requires_first_order, as `orders._complete` applies it (one query for the batch)
        earns = await invitees_qualify_many([o for o in claimed if o.status == S.AWAITING_REVIEW])
        plans: list[_Plan] = []
        for o in claimed:
            try:
                if o.status not in TIMER_EVENTS:
                    raise ValueError(f"order {o.id} is {o.status} with a deadline")
                plans.append(_plan(o, now, earns.get(o.id, EVERYONE_EARNS)))
            except Exception:  # noqa: BLE001 - a poisoned row is postponed alone, never stops the batch
                await _postpone(o, now)
        applied = await _apply_order_plans(plans, now)
        await _checkpoint("locked")
    for plan in applied:
        metrics.timer_applied(f"order.{plan.event.value}", plan.deadline, now)
    return len(claimed)


class DueOrder:
    """A claimed order as the timers read it: the columns `_plan`, the ledger entries and `_notify`
    use, as plain attributes (PostgreSQL claims). A batch claims hundreds of rows: Tortoise model
    objects for them (and for their referral rows) were a tenth of a scheduler process's CPU."""

    __slots__ = ("id", "task_id", "worker_id", "publisher_id", "status", "unit_price_fen", "fee_fen", "worker_invite_bp",
                 "publisher_invite_bp", "worker_inviter_id", "publisher_inviter_id", "review_window_s", "submit_deadline_at",
                 "review_deadline_at", "appeal_deadline_at", "due_at", "sweep_failures",
                 # not claimed: a timer does not read them, only sets them (its plan's values)
                 "submitted_at", "finished_at", "finished_by", "reject_reason")

    def __init__(self, row: Any) -> None:
        for name, value in zip(_CLAIMED, row):
            setattr(self, name, value)
        self.status = OrderStatus(self.status)
        self.submitted_at = self.finished_at = self.finished_by = self.reject_reason = None


_CLAIMED = DueOrder.__slots__[:-4]
_CLAIM_SQL = (
    f"SELECT {', '.join(_CLAIMED)} FROM orders WHERE due_at <= $1 ORDER BY due_at LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED"
)


async def _claim(batch: int, now: dt.datetime) -> list[Order] | list[DueOrder]:
    """The oldest due orders, locked (PostgreSQL: skipping rows others hold, never waiting)."""
    if not db.is_postgres():
        return await Order.filter(due_at__lte=now).order_by("due_at").limit(batch)
    # One statement straight on asyncpg (the transaction's connection), without the query builder.
    async with db.conn().acquire_connection() as connection:
        rows = await connection.fetch(_CLAIM_SQL, now, batch)
    return [DueOrder(row) for row in rows]


async def _postpone(o: Order | DueOrder, now: dt.datetime) -> None:
    failures = o.sweep_failures + 1
    delay = backoff_s(failures)
    sweep_log.exception("order %s: timer failed (%s times); retrying in %s s", o.id, failures, delay)
    await Order.filter(id=o.id).update(due_at=now + dt.timedelta(seconds=delay), sweep_failures=failures)


async def _apply_order_plans(plans: list[_Plan], now: dt.datetime) -> list[_Plan]:
    by_event: dict[OrderEvent, list[_Plan]] = {E.COUNTDOWN_END: [], E.REVIEW_TIMEOUT: [], E.APPEAL_TIMEOUT: []}
    for plan in plans:
        by_event[plan.event].append(plan)
    ends, completions, failures = by_event[E.COUNTDOWN_END], by_event[E.REVIEW_TIMEOUT], by_event[E.APPEAL_TIMEOUT]

    # 3. The orders' own conditional UPDATEs (their locks are ours since the claim).
    await _countdown_ends(ends, now)
    for group, source, target in ((completions, S.AWAITING_REVIEW, S.COMPLETED), (failures, S.REJECTED, S.FAILED)):
        if not group:
            continue
        column = TIMER_EVENTS[source][1]
        ids = [p.order.id for p in group]
        if db.is_postgres():  # one statement text whatever the batch's size (prepared once per connection)
            n = await db.execute(
                f"UPDATE orders SET status = $2, due_at = NULL, finished_at = {column}, finished_by = $3 "
                "WHERE id = ANY($1::bigint[]) AND status = $4 AND due_at <= $5",
                ids, target.value, group[0].event.value, source.value, now,
            )
        else:
            n = await Order.filter(id__in=ids, status=source, due_at__lte=now).update(
                status=target, due_at=None, finished_at=F(column), finished_by=group[0].event.value,
            )
        if n != len(group):
            raise BatchLost(f"{group[0].event.value}: {n} of {len(group)} orders")
    rewards = [r for p in completions for r in p.referrals]
    if rewards and db.is_postgres():
        await db.execute(
            "INSERT INTO referral_rewards (inviter_id, invitee_id, order_id, side, amount_fen, created_at) "
            "SELECT i, e, o, s, m, $6 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[]) AS x(i, e, o, s, m)",
            *(list(column) for column in zip(*rewards)), now,
        )
    elif rewards:
        await ReferralReward.bulk_create([
            ReferralReward(inviter_id=i, invitee_id=e, order_id=o, side=Side(side), amount_fen=m, created_at=now)
            for i, e, o, side, m in rewards
        ])
    out = Pending()
    for plan in plans:
        o = plan.order
        source = o.status
        for name, value in plan.values.items():
            setattr(o, name, value)
        o.status = {E.COUNTDOWN_END: S.AWAITING_REVIEW, E.REVIEW_TIMEOUT: S.COMPLETED, E.APPEAL_TIMEOUT: S.FAILED}[plan.event]
        plan.money = {"from": source.value, "to": o.status.value, **(plan.money or {})}
        if plan.event == E.REVIEW_TIMEOUT:
            out.wallet_changed(o.worker_id, EntryKind.ORDER_COMPLETE, o.unit_price_fen, task_id=o.task_id, order_id=o.id)
        elif plan.event == E.APPEAL_TIMEOUT:
            out.wallet_changed(o.publisher_id, EntryKind.ORDER_FAIL, o.unit_price_fen + o.fee_fen, task_id=o.task_id, order_id=o.id)
        _notify(o, plan.event, out)
    await out.write(at=now, ids=False)
    await record_timers([("order." + p.event.value, "order", p.order.id, p.money) for p in plans], now)
    await _checkpoint("written")

    # 4. The shared rows, last, in the one lock order: the workers' counters (users in id order), the
    #    tasks in id order, then the ledger (accounts in code order). Held until the commit right after.
    await _users_released(Counter(p.order.worker_id for p in ends))
    await _orders_final(Counter(p.order.task_id for p in completions + failures))
    await ledger.post_many([p.entry for p in completions + failures if p.entry is not None])
    return plans


async def _countdown_ends(ends: list[_Plan], now: dt.datetime) -> None:
    if not ends:
        return
    if db.is_postgres():
        rows = await db.fetch(
            "UPDATE orders o SET status = 'awaiting_review', submitted_at = o.submit_deadline_at, "
            "review_deadline_at = v.review, due_at = v.review "
            "FROM unnest($1::bigint[], $2::timestamptz[]) AS v(id, review) "
            "WHERE o.id = v.id AND o.status = 'in_progress' AND o.due_at <= $3 RETURNING o.id",
            [p.order.id for p in ends], [p.values["review_deadline_at"] for p in ends], now,
        )
        n = len(rows)
    else:
        n = 0
        for p in ends:
            n += await Order.filter(id=p.order.id, status=S.IN_PROGRESS, due_at__lte=now).update(status=S.AWAITING_REVIEW, **p.values)
    if n != len(ends):
        raise BatchLost(f"countdown_end: {n} of {len(ends)} orders")


async def _users_released(per_worker: Counter) -> None:
    """Each worker has that many orders fewer in progress (users locked in id order)."""
    if not per_worker:
        return
    ids = sorted(per_worker)
    if db.is_postgres():
        # One statement: the subquery locks the rows in id order as it yields them, and the UPDATE
        # writes a row only once the subquery has yielded (locked) it, so the locks follow id order.
        await db.execute(
            "UPDATE users u SET orders_in_progress = u.orders_in_progress - v.n "
            "FROM (SELECT id FROM users WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE) AS l, "
            "unnest($1::bigint[], $2::int[]) AS v(id, n) WHERE u.id = l.id AND u.id = v.id",
            ids, [per_worker[i] for i in ids],
        )
        return
    for worker_id in ids:
        await db.execute("UPDATE users SET orders_in_progress = orders_in_progress - $1 WHERE id = $2", per_worker[worker_id], worker_id)


async def _orders_final(per_task: Counter) -> None:
    """That many live orders of each task became final; a full task whose last order ends is
    finished (tasks locked in id order)."""
    if not per_task:
        return
    ids = sorted(per_task)
    if db.is_postgres():
        await db.execute(  # locked in id order by the subquery, as `_users_released`
            "UPDATE tasks t SET orders_live = t.orders_live - v.n, status = CASE WHEN t.status = 'full' "
            "AND t.orders_live = v.n AND t.slots_untaken = 0 THEN 'finished' ELSE t.status END "
            "FROM (SELECT id FROM tasks WHERE id = ANY($1::bigint[]) ORDER BY id FOR NO KEY UPDATE) AS l, "
            "unnest($1::bigint[], $2::int[]) AS v(id, n) WHERE t.id = l.id AND t.id = v.id",
            ids, [per_task[i] for i in ids],
        )
        return
    for task_id in ids:
        n = per_task[task_id]
        await db.execute(
            "UPDATE tasks SET orders_live = orders_live - $1, status = CASE WHEN status = 'full' AND orders_live = $1 "
            "AND slots_untaken = 0 THEN 'finished' ELSE status END WHERE id = $2",
            n, task_id,
        )


async def record_timers(rows: list[tuple[str, str, int, dict[str, Any]]], now: dt.datetime) -> None:
    """The audit rows of a batch of timer transitions, one INSERT (models/audit.py `record`, many)."""
    from server.logs import request_id

    rid = request_id.get()
    data = [_encode_audit(r[3]) for r in rows]
    if rows and db.is_postgres():  # arrays: one statement text whatever the batch's size
        await db.execute(
            "INSERT INTO audit_log (actor_kind, actor_id, action, target_kind, target_id, data, reason, created_at, request_id) "
            "SELECT 'timer', NULL, a, k, t, d::jsonb, NULL, $5, $6 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS x(a, k, t, d)",
            [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], data, now, rid,
        )
    else:
        for start in range(0, len(rows), 500):  # 9 parameters a row: well under SQLite's limit
            values: list[Any] = []
            marks: list[str] = []
            for (action, target_kind, target_id, _), text in zip(rows[start:start + 500], data[start:start + 500]):
                n = len(values)
                marks.append(f"('timer', NULL, ${n + 1}, ${n + 2}, ${n + 3}, ${n + 4}, NULL, ${n + 5}, ${n + 6})")
                values += [action, target_kind, target_id, text, now, rid]
            await db.execute(
                "INSERT INTO audit_log (actor_kind, actor_id, action, target_kind, target_id, data, reason, created_at, request_id) VALUES "
                + ", ".join(marks),
                *values,
            )
    for action, target_kind, target_id, _ in rows:
        metrics.transition(action, "timer")
        log.info("%s %s %s by timer ", action, target_kind, target_id)


# --- tasks whose take window ended ----------------------------------------------------------------
async def settle_tasks(batch: int, skip: list[int]) -> int:
    """Expire up to `batch` open tasks whose take window has ended, refunding their untaken slots,
    in one transaction (`tasks.expire_due`, set-based). `skip`: tasks backing off after a failure.
    Returns how many were claimed; raises on any error, with nothing written."""
    async with in_transaction():
        now = clock.now()
        sql = "SELECT id FROM tasks WHERE status = 'open' AND take_deadline_at <= $1"
        if skip:
            sql += " AND id NOT IN (" + ", ".join(str(int(t)) for t in skip[:1000]) + ")"
        sql += " ORDER BY take_deadline_at LIMIT $2"
        if db.is_postgres():
            sql += " FOR NO KEY UPDATE SKIP LOCKED"
        ids = sorted(r["id"] for r in await db.fetch(sql, now, batch))
        if not ids:
            return 0
        await _checkpoint("claimed")
        marks = ", ".join(f"${i + 2}" for i in range(len(ids)))
        rows = await db.fetch(
            "UPDATE tasks SET status = 'expired', last_refund_slots = slots_untaken, "
            "slots_refunded = slots_refunded + slots_untaken, slots_untaken = 0, closed_at = $1 "
            f"WHERE id IN ({marks}) AND status = 'open' AND take_deadline_at <= $1 "
            "RETURNING id, last_refund_slots, unit_price_fen, fee_fen, publisher_id, title, take_deadline_at",
            now, *ids,
        )
        if len(rows) != len(ids):
            raise BatchLost(f"expire: {len(rows)} of {len(ids)} tasks")
        rows.sort(key=lambda r: r["id"])
        out = Pending()
        entries: list[ledger.Entry] = []
        audits = []
        for row in rows:
            task_id, slots = row["id"], row["last_refund_slots"]
            refunded = slots * (row["unit_price_fen"] + row["fee_fen"])
            if refunded:
                out.wallet_changed(row["publisher_id"], EntryKind.SLOT_REFUND, refunded, task_id=task_id)
                entries.append(ledger.Entry(
                    f"task:{task_id}:expire", EntryKind.SLOT_REFUND,
                    (ledger.Leg(ledger.platform_account(ledger.AccountKind.ESCROW, task_id), -refunded),
                     ledger.Leg(ledger.user_account(row["publisher_id"]), refunded)),
                    task_id=task_id, memo="take window ended",
                ))
            out.hall("hall.task_removed", hall_task_removed(task_id, "expired"))
            payload = {"task_id": task_id, "title": row["title"], "slots_refunded": slots, "refund_fen": refunded}
            out.push("task.expired", payload, row["publisher_id"])
            if refunded:
                out.subscribe("task_expired_refunded", payload, row["publisher_id"])
            audits.append(("task.expire", "task", task_id, payload))
        await out.write(at=now, ids=False)
        await record_timers(audits, now)
        await _checkpoint("written")
        await ledger.post_many(entries)
        await _checkpoint("locked")
    for row in rows:
        metrics.timer_applied("task.expire", row["take_deadline_at"], now)
    return len(ids)
