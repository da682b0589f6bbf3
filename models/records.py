"""Records: what a publisher's and a worker's past orders say about them (issue 14, part 1), and the
automatic limits on workers who abandon or lose appeals too often (part 3).

Outcomes only, never opinions, over a rolling window (`record_window_days`, orders *taken* in it):

- a publisher's record: of the orders that reached a review, how many they approved in person, let
  be approved by the review timer, rejected; how many rejections were appealed and how many of the
  decided appeals the publisher lost; their median review time; tasks and orders in the window;
- a worker's record: orders taken, completed, failed, abandoned, appeals won and lost.

Below `record_min_sample` reviewed orders (publisher) or final outcomes (worker) a record is "new":
its rates are null, so nobody is judged on two orders.

The records are a summary table (`user_records`), never computed per request: a hall page reads
the rows of its publishers by primary key. The scheduler keeps it current in two ways:

1. `refresh_changed()` (every `records_refresh_interval_s`): the users whose orders or tasks moved
   since the last round, found through the audit log (every transition writes one row there, in
   its own transaction) after a cursor, re-scanning a margin of ids below it (a transaction that
   committed late with a lower id is still seen); their records are recomputed set-based.
2. `refresh_all()` (every `records_full_refresh_interval_s`): every record, so that orders leaving
   the window age out and a settings change reaches every row.

A recomputation is idempotent: running it twice, or in two schedulers at once, writes the same rows.

Limits (`limit_*` settings): a worker with at least `limit_max_abandons` abandons, or at least
`limit_max_appeals_lost` appeals decided against them, in the last `limit_window_days`, is limited
until the oldest of those events leaves that window; the take refuses them with `worker_limited`
and the reason. The limit is set by the same rounds (so within a refresh interval of the event).
"""

from __future__ import annotations

import datetime as dt
import statistics
from types import SimpleNamespace
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from tortoise import fields
from tortoise.models import Model
from tortoise.transactions import in_transaction

from models import clock, db, ops_status
from models import settings as market_settings
from models.errors import DomainError
from models.settings import BP

CURSOR_KEY = "user_records_cursor"
AUDIT_BATCH = 20_000  # audit rows one incremental round reads at most (the rest: next round)
AUDIT_OVERLAP = 2_000  # ids below the cursor read again: transactions that committed late
USERS_PER_STATEMENT = 500  # users one recomputation statement names
LIMIT_REASONS = ("abandons", "appeals_lost")


class UserRecord(Model):
    """One user's record over the window (a row only for users with orders or tasks in it)."""

    user_id = fields.BigIntField(primary_key=True, generated=False)  # the user (no FK: a summary)
    end = fields.CharField(max_length=16)  # worker | publisher: which side the counts describe
    orders_n = fields.IntField(default=0)  # orders taken in the window (of my tasks / by me)
    reviewed_n = fields.IntField(default=0)  # ... that were approved (in person or by the timer) or rejected
    approved_n = fields.IntField(default=0)  # ... approved by the publisher in person
    auto_approved_n = fields.IntField(default=0)  # ... approved by the review timer (nobody reviewed)
    rejected_n = fields.IntField(default=0)
    appealed_n = fields.IntField(default=0)
    appeals_worker_won_n = fields.IntField(default=0)
    appeals_publisher_won_n = fields.IntField(default=0)
    completed_n = fields.IntField(default=0)
    failed_n = fields.IntField(default=0)
    abandoned_n = fields.IntField(default=0)
    tasks_n = fields.IntField(default=0)  # publisher: tasks published in the window
    median_review_s = fields.IntField(null=True)  # publisher: submitted → approved/rejected in person
    # The rate the task restrictions compare (publisher: approved share of reviewed; worker: completed
    # share of completed + failed), null below record_min_sample.
    approval_bp = fields.IntField(null=True)
    limited_until = fields.DatetimeField(null=True)  # worker: takes refused until then
    limited_reason = fields.CharField(max_length=16, null=True)  # abandons | appeals_lost
    limited_count = fields.IntField(null=True)  # how many such events in the limit window
    computed_at = fields.DatetimeField()

    class Meta:
        table = "user_records"


COUNTS = (
    "orders_n", "reviewed_n", "approved_n", "auto_approved_n", "rejected_n", "appealed_n", "appeals_worker_won_n",
    "appeals_publisher_won_n", "completed_n", "failed_n", "abandoned_n",
)
COLUMNS = ("user_id", "end", *COUNTS, "tasks_n", "median_review_s", "approval_bp",
           "limited_until", "limited_reason", "limited_count", "computed_at")


class WorkerLimited(DomainError):
    code, status = "worker_limited", 403
    message = "Taking is paused for this account until {limited_until}: too many abandoned orders or lost appeals in the last {window_days} days."
    message_zh = "近 {window_days} 天内放弃订单或申诉失败次数过多，暂停接单至 {limited_until_beijing}（北京时间）。"
    hint = ("The worker abandoned too many orders or lost too many appeals recently (settings limit_*); takes are "
            "refused until details.limited_until, when the oldest of those events leaves the window. Show the message.")
    details_schema = {
        "reason": {"type": "string", "enum": list(LIMIT_REASONS), "description": "abandons: orders given up; appeals_lost: appeals decided against me"},
        "count": {"type": "integer", "description": "such events in the window"},
        "max": {"type": "integer", "description": "the limit"},
        "window_days": {"type": "integer"},
        "limited_until": {"type": "string", "format": "date-time"},
        "limited_until_beijing": {"type": "string", "description": "the same instant in Beijing time, YYYY-MM-DD HH:MM"},
    }


# The words each reason is shown with (an English and a Chinese template per reason).
_REASON_TEXT = {
    "abandons": ("Taking is paused for this account until {limited_until}: {count} orders abandoned in the last "
                 "{window_days} days (limit {max}).",
                 "由于近 {window_days} 天内放弃订单 {count} 次（上限 {max} 次），暂停接单至 {limited_until_beijing}（北京时间）。"),
    "appeals_lost": ("Taking is paused for this account until {limited_until}: {count} appeals lost in the last "
                     "{window_days} days (limit {max}).",
                     "由于近 {window_days} 天内申诉失败 {count} 次（上限 {max} 次），暂停接单至 {limited_until_beijing}（北京时间）。"),
}
BEIJING = ZoneInfo("Asia/Shanghai")


def limited_error(rec: "UserRecord", s: market_settings.MarketSettings) -> WorkerLimited:
    en, zh = _REASON_TEXT[rec.limited_reason or "abandons"]
    cap = s.limit_max_abandons if rec.limited_reason == "abandons" else s.limit_max_appeals_lost
    until = _as_dt(rec.limited_until)
    return WorkerLimited(
        en, zh=zh, reason=rec.limited_reason, count=rec.limited_count, max=cap, window_days=s.limit_window_days,
        limited_until=clock.iso_us(until), limited_until_beijing=until.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M"),
    )


# --- computing ---------------------------------------------------------------------------------------
def _aggregate_sql(side: str, postgres: bool, n_users: int) -> str:
    """Counts per user of one side over the orders taken since $1 (optionally of the users $2...)."""
    col = "publisher_id" if side == "publisher" else "worker_id"
    median = (
        "CAST(percentile_disc(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (COALESCE(rejected_at, finished_at) - submitted_at))) "
        "FILTER (WHERE submitted_at IS NOT NULL AND (finished_by = 'approve' OR rejected_at IS NOT NULL)) AS INTEGER)"
        if postgres and side == "publisher" else "NULL"
    )
    users = f" AND {col} IN ({', '.join(f'${i + 2}' for i in range(n_users))})" if n_users else ""
    return (
        f"SELECT {col} AS user_id, COUNT(*) AS orders_n, "
        "SUM(CASE WHEN finished_by IN ('approve', 'review_timeout') OR rejected_at IS NOT NULL THEN 1 ELSE 0 END) AS reviewed_n, "
        "SUM(CASE WHEN finished_by = 'approve' THEN 1 ELSE 0 END) AS approved_n, "
        "SUM(CASE WHEN finished_by = 'review_timeout' THEN 1 ELSE 0 END) AS auto_approved_n, "
        "SUM(CASE WHEN rejected_at IS NOT NULL THEN 1 ELSE 0 END) AS rejected_n, "
        "SUM(CASE WHEN appealed_at IS NOT NULL THEN 1 ELSE 0 END) AS appealed_n, "
        "SUM(CASE WHEN finished_by = 'arbitrate_worker' THEN 1 ELSE 0 END) AS appeals_worker_won_n, "
        "SUM(CASE WHEN finished_by = 'arbitrate_publisher' THEN 1 ELSE 0 END) AS appeals_publisher_won_n, "
        "SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS completed_n, "
        "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed_n, "
        "SUM(CASE WHEN status = 'abandoned' THEN 1 ELSE 0 END) AS abandoned_n, "
        f"{median} AS median_review_s "
        f"FROM orders WHERE taken_at >= $1{users} GROUP BY {col}"
    )


def _in(ids: list[int], first: int) -> str:
    return ", ".join(f"${i + first}" for i in range(len(ids)))


def _as_dt(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


async def _compute(s: market_settings.MarketSettings, now: dt.datetime, users: list[int] | None) -> dict[int, dict[str, Any]]:
    """The records of `users` (None: everybody with something in the window), as rows to write."""
    postgres = db.is_postgres()
    since = now - dt.timedelta(days=s.record_window_days)
    ids = users or []
    rows: dict[int, dict[str, Any]] = {}

    def row(user_id: int, end: str) -> dict[str, Any]:
        if user_id not in rows:
            rows[user_id] = {"user_id": user_id, "end": end, **dict.fromkeys(COUNTS, 0), "tasks_n": 0, "median_review_s": None,
                             "approval_bp": None, "limited_until": None, "limited_reason": None, "limited_count": None,
                             "computed_at": now}
        return rows[user_id]

    for side in ("publisher", "worker"):
        for agg in await db.fetch(_aggregate_sql(side, postgres, len(ids)), since, *ids):
            r = row(int(agg["user_id"]), side)
            for name in COUNTS:
                r[name] = int(agg[name] or 0)
            r["median_review_s"] = None if agg["median_review_s"] is None else int(agg["median_review_s"])
    users_sql = f" AND publisher_id IN ({_in(ids, 2)})" if ids else ""
    for t in await db.fetch(f"SELECT publisher_id, COUNT(*) AS n FROM tasks WHERE created_at >= $1{users_sql} GROUP BY publisher_id", since, *ids):
        row(int(t["publisher_id"]), "publisher")["tasks_n"] = int(t["n"])
    if not postgres:  # SQLite has no percentile: the median of each publisher's review times here
        await _medians_in_python(rows, since, ids)
    await _limits(rows, s, now, ids, row)
    for r in rows.values():
        if r["end"] == "publisher":
            base, good = r["reviewed_n"], r["approved_n"] + r["auto_approved_n"]
        else:
            base, good = r["completed_n"] + r["failed_n"], r["completed_n"]
        r["approval_bp"] = good * BP // base if base and base >= s.record_min_sample else None
    return rows


async def _medians_in_python(rows: dict[int, dict[str, Any]], since: dt.datetime, ids: list[int]) -> None:
    users_sql = f" AND publisher_id IN ({_in(ids, 2)})" if ids else ""
    times: dict[int, list[float]] = {}
    for o in await db.fetch(
        "SELECT publisher_id, submitted_at, COALESCE(rejected_at, finished_at) AS decided_at FROM orders "
        f"WHERE taken_at >= $1 AND submitted_at IS NOT NULL AND (finished_by = 'approve' OR rejected_at IS NOT NULL){users_sql}",
        since, *ids,
    ):
        decided, submitted = _as_dt(o["decided_at"]), _as_dt(o["submitted_at"])
        times.setdefault(int(o["publisher_id"]), []).append((decided - submitted).total_seconds())
    for user_id, values in times.items():
        if user_id in rows:
            rows[user_id]["median_review_s"] = int(statistics.median_low(sorted(values)))


async def _limits(rows, s, now: dt.datetime, ids: list[int], row) -> None:
    """A worker is limited while the `max`-th most recent event of a kind is inside the limit
    window: until that event leaves it."""
    window = dt.timedelta(days=s.limit_window_days)
    users_sql = f" AND worker_id IN ({_in(ids, 3)})" if ids else ""
    for reason, cap, condition in (
        ("abandons", s.limit_max_abandons, "status = 'abandoned'"),
        ("appeals_lost", s.limit_max_appeals_lost, "finished_by = 'arbitrate_publisher'"),
    ):
        if cap <= 0:  # 0 = this limit is off
            continue
        for hit in await db.fetch(
            "SELECT worker_id, finished_at, n FROM (SELECT worker_id, finished_at, "
            "ROW_NUMBER() OVER (PARTITION BY worker_id ORDER BY finished_at DESC) AS rn, "
            "COUNT(*) OVER (PARTITION BY worker_id) AS n "
            f"FROM orders WHERE {condition} AND finished_at >= $1{users_sql}) x WHERE rn = $2",
            now - window, cap, *ids,
        ):
            until = _as_dt(hit["finished_at"]) + window
            if until <= now:
                continue
            r = row(int(hit["worker_id"]), "worker")
            if r["limited_until"] is None or until > r["limited_until"]:
                r.update(limited_until=until, limited_reason=reason, limited_count=int(hit["n"]))


# PostgreSQL types of COLUMNS, for the one-statement write through unnest().
_PG_TYPES = {"user_id": "bigint", "end": "varchar", "median_review_s": "int", "approval_bp": "int", "limited_until": "timestamptz",
             "limited_reason": "varchar", "limited_count": "int", "computed_at": "timestamptz"}
SQLITE_ROWS_PER_STATEMENT = 40  # 40 rows × 21 columns stay under SQLite's 999 parameters of old builds


async def _write(rows: dict[int, dict[str, Any]], now: dt.datetime, users: list[int] | None) -> None:
    """Upsert the rows; drop the rows of users who no longer have anything in the window. One
    transaction: readers see the old records or the new ones."""
    update = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in COLUMNS if c != "user_id")
    columns = ", ".join(_q(c) for c in COLUMNS)
    items = list(rows.values())
    async with in_transaction():
        if items and db.is_postgres():  # every row in one statement: one array per column
            arrays = [[r[c] for r in items] for c in COLUMNS]
            unnest = ", ".join(f"${i + 1}::{_PG_TYPES.get(c, 'int')}[]" for i, c in enumerate(COLUMNS))
            await db.execute(f"INSERT INTO user_records ({columns}) SELECT * FROM unnest({unnest}) "
                             f"ON CONFLICT (user_id) DO UPDATE SET {update}", *arrays)
        elif items:
            width = len(COLUMNS)
            for start in range(0, len(items), SQLITE_ROWS_PER_STATEMENT):
                chunk = items[start:start + SQLITE_ROWS_PER_STATEMENT]
                marks = ", ".join("(" + ", ".join(f"${k * width + i + 1}" for i in range(width)) + ")" for k in range(len(chunk)))
                await db.execute(f"INSERT INTO user_records ({columns}) VALUES {marks} ON CONFLICT (user_id) DO UPDATE SET {update}",
                                 *[r[c] for r in chunk for c in COLUMNS])
        if users is None:
            await db.execute("DELETE FROM user_records WHERE computed_at < $1", now)
        else:
            gone = [u for u in users if u not in rows]
            for start in range(0, len(gone), USERS_PER_STATEMENT):
                chunk = gone[start:start + USERS_PER_STATEMENT]
                await db.execute(f"DELETE FROM user_records WHERE user_id IN ({_in(chunk, 1)})", *chunk)


def _q(column: str) -> str:
    return '"end"' if column == "end" else column


async def refresh_users(user_ids: Iterable[int]) -> int:
    """Recompute the records of these users (and their limits). Returns how many were recomputed."""
    ids = sorted(set(user_ids))
    s = await market_settings.current()
    for start in range(0, len(ids), USERS_PER_STATEMENT):
        chunk = ids[start:start + USERS_PER_STATEMENT]
        now = clock.now()
        await _write(await _compute(s, now, chunk), now, chunk)
    return len(ids)


async def refresh_all() -> int:
    """Recompute every record (orders age out of the window; settings may have changed)."""
    s = await market_settings.current()
    now = clock.now()
    rows = await _compute(s, now, None)
    await _write(rows, now, None)
    return len(rows)


async def refresh_changed() -> int:
    """Recompute the records of the users whose orders or tasks moved since the last round."""
    state = await ops_status.get(CURSOR_KEY)
    cursor = int((state.detail or {}).get("audit_id", 0)) if state else 0
    top = await db.fetch_one("SELECT MAX(id) AS id FROM audit_log")
    top_id = int(top["id"] or 0) if top else 0
    if top_id <= cursor and state is not None:
        return 0
    upto = min(top_id, cursor + AUDIT_BATCH)
    low = max(0, cursor - AUDIT_OVERLAP)
    users: set[int] = set()
    for r in await db.fetch(
        "SELECT DISTINCT o.worker_id, o.publisher_id FROM audit_log a JOIN orders o ON o.id = a.target_id "
        "WHERE a.id > $1 AND a.id <= $2 AND a.target_kind = 'order'", low, upto,
    ):
        users.update((int(r["worker_id"]), int(r["publisher_id"])))
    for r in await db.fetch(
        "SELECT DISTINCT t.publisher_id FROM audit_log a JOIN tasks t ON t.id = a.target_id "
        "WHERE a.id > $1 AND a.id <= $2 AND a.target_kind = 'task'", low, upto,
    ):
        users.add(int(r["publisher_id"]))
    n = await refresh_users(users)
    await ops_status.put(CURSOR_KEY, True, {"audit_id": upto, "users": n})
    return n


# --- reading -----------------------------------------------------------------------------------------
async def get_records(user_ids: Iterable[int]) -> dict[int, UserRecord]:
    ids = list(set(user_ids))
    if not ids:
        return {}
    return {r.user_id: r for r in await UserRecord.filter(user_id__in=ids)}


# The record of somebody with nothing in the window.
_EMPTY = SimpleNamespace(**dict.fromkeys(COUNTS, 0), tasks_n=0, median_review_s=None, approval_bp=None,
                         limited_until=None, limited_reason=None, limited_count=None, computed_at=None)


def _bp(part: int, whole: int) -> int | None:
    return part * BP // whole if whole else None


def publisher_record(rec: UserRecord | None, s: market_settings.MarketSettings) -> dict[str, Any]:
    """A publisher's record as workers see it on a task (rates null while `new`)."""
    r = rec or _EMPTY
    reviewed = r.reviewed_n or 0
    new = reviewed < s.record_min_sample
    appeals_decided = (r.appeals_worker_won_n or 0) + (r.appeals_publisher_won_n or 0)
    return {
        "new": new,
        "window_days": s.record_window_days,
        "min_sample": s.record_min_sample,
        "tasks": r.tasks_n or 0,
        "orders": r.orders_n or 0,
        "reviewed": reviewed,
        "approval_bp": None if new else _bp((r.approved_n or 0) + (r.auto_approved_n or 0), reviewed),
        "rejection_bp": None if new else _bp(r.rejected_n or 0, reviewed),
        "auto_approve_bp": None if new else _bp(r.auto_approved_n or 0, reviewed),
        "appeal_bp": None if new else _bp(r.appealed_n or 0, r.rejected_n or 0),
        "appeals_decided": appeals_decided,
        "appeals_lost_bp": None if new else _bp(r.appeals_worker_won_n or 0, appeals_decided),
        "median_review_s": None if new else r.median_review_s,
        "computed_at": clock.iso_us(r.computed_at) if r.computed_at else None,
    }


def worker_record(rec: UserRecord | None, s: market_settings.MarketSettings) -> dict[str, Any]:
    """A worker's record as publishers and operators see it (and the worker themself)."""
    r = rec or _EMPTY
    final = (r.completed_n or 0) + (r.failed_n or 0)
    new = final < s.record_min_sample
    limited = None
    if r.limited_until is not None and r.limited_until > clock.now():
        cap = s.limit_max_abandons if r.limited_reason == "abandons" else s.limit_max_appeals_lost
        limited = {"reason": r.limited_reason, "count": r.limited_count or 0, "max": cap,
                   "window_days": s.limit_window_days, "until": clock.iso_us(r.limited_until)}
    return {
        "new": new,
        "window_days": s.record_window_days,
        "min_sample": s.record_min_sample,
        "orders": r.orders_n or 0,
        "completed": r.completed_n or 0,
        "failed": r.failed_n or 0,
        "abandoned": r.abandoned_n or 0,
        "approval_bp": None if new else _bp(r.completed_n or 0, final),
        "abandon_bp": None if new else _bp(r.abandoned_n or 0, r.orders_n or 0),
        "appeals_won": r.appeals_worker_won_n or 0,
        "appeals_lost": r.appeals_publisher_won_n or 0,
        "limited": limited,
        "computed_at": clock.iso_us(r.computed_at) if r.computed_at else None,
    }
