"""The outbox drainer for WeChat subscription messages (channel 'subscribe'; SPEC §5).

Requirement: a person never gets the same message twice for one outbox row, and no message is lost
by a crash or a stop. So delivery is **at most once only for a send whose outcome is unknown**: a
row is marked in flight, durably, just before WeChat is called, and such a send is never repeated;
a row claimed but not yet sent is always sent (again claimable). One round (`drain_subscriptions`):

1. Claim only what is sent now: up to `SEND_CONCURRENCY` pending 'subscribe' rows whose
   next_attempt_at is due (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so drainers running side by
   side take disjoint rows and never wait), in one short transaction that bumps `attempts`, pushes
   next_attempt_at out by a lease and sets `last_error` to the claim marker `CLAIMED` — with a
   conditional UPDATE, so of two drainers that saw the same row only one gets it. The round repeats
   until `batch` rows were handled, nothing is due, or a stop was asked for (`request_stop`).
2. Send each claimed row at once (nothing inside a transaction): look up the recipient's end and
   openid, enrich the payload (task title, times); then mark it in flight (`INFLIGHT`, committed)
   and call `mp.send_event`. An access token WeChat rejects (40001/42001) is refreshed and the send
   retried once inside the client — safe, because WeChat did not accept the first call.
3. Record the outcome with a conditional UPDATE on the claim:
   - sent, or no template configured for that event on that end (nothing to send) → 'sent';
   - 43101 UserRefused → 'refused', never retried (the user did not subscribe; SPEC §5);
   - WeChat answered a definite, transient error (-1 busy, 45011 per-minute rate limit) or we could
     not connect (the request never left) → back to 'pending' with exponential backoff, until
     `outbox_max_attempts`, then 'failed';
   - 45009, the AppID's daily quota used up → 'failed' at once: no retry can succeed before
     midnight (the client does not even call WeChat again that day), and a day-old message is stale;
   - a message WeChat would refuse with 47003 (a value breaking its keyword's rule, a value the
     payload lacks) is found while rendering, before sending → 'failed' with the field named;
   - the outcome is unknown (read timeout, connection lost after sending) → 'failed' with the
     reason, NOT retried: WeChat may have delivered it, and a second copy is worse than none;
   - any other WeChat error (bad template, bad data, bad openid) → 'failed' (it would fail again).
4. A stop: no new claims once `request_stop()` was called; the sends in progress finish (the
   scheduler waits STOP_GRACE_S); a row still only claimed when its task is cancelled is released
   (pending, due now, its attempt not counted). A row cancelled in flight stays in flight (step 5).
5. A row found when its lease expires still carrying a marker belongs to a drainer that died:
   - `CLAIMED`: never sent → sent now like any other (its attempt is not counted);
   - `INFLIGHT`: it may or may not have reached WeChat → 'failed' ("outcome unknown"), not resent.

'push' rows are someone else's (the WebSocket fan-out) and are never touched here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import requests
from wechatpy.exceptions import WeChatClientException
from tortoise.transactions import in_transaction

from models import clock, db
from models.outbox import Channel, Outbox, OutboxStatus
from models.users import User
from server import metrics
from server.logs import request_id
from wechat.errors import Retryable, UserRefused, WeChatError
from wechat.miniprogram import MiniProgramClient

log = logging.getLogger("market.outbox")

LEASE_S = 120  # a claimed row is not due again for this long (a send takes seconds at most)
BACKOFF_BASE_S = 10  # retry delays: 10 s, 20 s, 40 s ... capped below
BACKOFF_MAX_S = 3600
SEND_CONCURRENCY = 8  # matches the wechatpy thread pool; also the most rows one drainer holds
CLAIMED = "claimed"  # last_error while a drainer holds the row and has not called WeChat
INFLIGHT = "in flight"  # last_error from just before the WeChat call until its outcome is recorded
ERROR_MAX = 255

_stop = {"requested": False}


def request_stop() -> None:
    """The scheduler is stopping: rounds claim nothing more (what they hold is finished)."""
    _stop["requested"] = True


def allow_rounds() -> None:
    _stop["requested"] = False


async def drain_subscriptions(mp: MiniProgramClient, *, batch: int = 200, max_attempts: int = 8) -> int:
    """One round: up to `batch` rows, claimed SEND_CONCURRENCY at a time, each claimed row sent at
    once. Returns how many rows it handled (== batch: more may wait)."""
    handled = 0
    while handled < batch and not _stop["requested"]:
        wanted = min(SEND_CONCURRENCY, batch - handled)
        rows = await _claim(wanted)
        handled += len(rows)
        if rows:
            await _send_claimed(mp, rows, max_attempts)
        if len(rows) < wanted:  # nothing more is due now
            break
    return handled


async def _send_claimed(mp: MiniProgramClient, rows: list[dict[str, Any]], max_attempts: int) -> None:
    try:
        fresh = []
        for row in rows:
            if row["was_inflight"]:  # step 5: its previous drainer died mid-send
                await _finish(row, OutboxStatus.FAILED, "outcome unknown: a drainer stopped while sending; not resent")
            else:
                fresh.append(row)
        users = {u.id: u for u in await User.filter(id__in={r["user_id"] for r in fresh if r["user_id"]})}

        async def one(row: dict[str, Any]) -> None:
            request_id.set(row.get("request_id"))  # this send logs under the id of the request that caused it
            try:
                await _deliver(mp, row, users.get(row["user_id"]), max_attempts)
            except Exception:  # noqa: BLE001 - recording failed (database); the lease expires → step 5
                log.exception("outbox %s: delivery could not be recorded", row["id"])

        await asyncio.gather(*(one(r) for r in fresh))
    except asyncio.CancelledError:
        # Step 4: every row of this round still only claimed was never sent: give it back before the
        # round ends (wherever the cancel landed: before the sends, or in them; gather ends at the
        # first cancelled send, so not from inside each send). Finished or in-flight rows keep theirs.
        await asyncio.shield(_release_all(rows))
        raise


async def _claim(n: int) -> list[dict[str, Any]]:
    now = clock.now()
    lease_until = now + dt.timedelta(seconds=LEASE_S)
    claimed: list[dict[str, Any]] = []
    try:
        return await _claim_in_transaction(n, now, lease_until, claimed)
    except asyncio.CancelledError:
        # Cancelled while committing the claim: it may have committed. Give back what it won (a
        # claim that rolled back matches nothing, or only a dead drainer's row, which is due anyway).
        if claimed:
            await asyncio.shield(_release_all(claimed))
        raise


async def _claim_in_transaction(n: int, now: dt.datetime, lease_until: dt.datetime,
                                claimed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    async with in_transaction():
        query = Outbox.filter(status=OutboxStatus.PENDING, channel=Channel.SUBSCRIBE, next_attempt_at__lte=now
                              ).order_by("next_attempt_at").limit(n)
        if db.is_postgres():
            query = query.select_for_update(skip_locked=True)
        due = await query
        if not due:
            return []
        # One conditional UPDATE for the claim (not one per row): on SQLite every writer of every
        # process waits while this transaction holds the write lock. Conditional still: a row that
        # is no longer due (another drainer claimed it) is not won; RETURNING says which rows were.
        marks = ", ".join(f"${i + 4}" for i in range(len(due)))
        # A row left CLAIMED by a dead drainer was never sent: that attempt does not count.
        won = {r["id"]: r["attempts"] for r in await db.fetch(
            "UPDATE outbox SET attempts = attempts + CASE WHEN last_error = $2 THEN 0 ELSE 1 END, "
            "next_attempt_at = $1, last_error = $2 "
            f"WHERE status = 'pending' AND next_attempt_at <= $3 AND id IN ({marks}) RETURNING id, attempts",
            lease_until, CLAIMED, now, *(o.id for o in due))}
        for o in due:
            if o.id in won:
                claimed.append({"id": o.id, "event": o.event, "user_id": o.user_id, "payload": o.payload or {},
                                "attempts": int(won[o.id]), "was_inflight": o.last_error == INFLIGHT,
                                "request_id": o.request_id})
    return claimed


async def _release_all(rows: list[dict[str, Any]]) -> None:
    """Give back the claimed rows that were never sent (still CLAIMED by this claim: not in flight,
    not finished): pending, due now, the attempt not counted. One statement (a stopping scheduler
    has little time)."""
    if not rows:
        return
    ours = " OR ".join(f"(id = ${2 * i + 3} AND attempts = ${2 * i + 4})" for i in range(len(rows)))
    await db.execute(
        "UPDATE outbox SET attempts = attempts - 1, next_attempt_at = $1, last_error = NULL "
        f"WHERE status = 'pending' AND last_error = $2 AND ({ours})",
        clock.now(), CLAIMED, *(v for row in rows for v in (row["id"], row["attempts"])))


async def _mark_inflight(row: dict[str, Any]) -> bool:
    """Just before WeChat is called (committed on its own): from now on the outcome may be unknown."""
    n = await Outbox.filter(id=row["id"], status=OutboxStatus.PENDING, attempts=row["attempts"], last_error=CLAIMED
                            ).update(last_error=INFLIGHT)
    row["inflight"] = n == 1
    return n == 1


async def _deliver(mp: MiniProgramClient, row: dict[str, Any], user: User | None, max_attempts: int) -> None:
    if user is None:
        await _finish(row, OutboxStatus.FAILED, "recipient not found")
        return
    payload = await enrich(row["event"], row["payload"])
    if not await _mark_inflight(row):
        log.warning("outbox %s: claim lost before sending; not sent by this drainer", row["id"])
        return
    try:
        sent = await mp.send_event(user.end.value, row["event"], user.openid, payload)
    except UserRefused as exc:
        await _finish(row, OutboxStatus.REFUSED, f"43101 {exc.errmsg}")
        return
    except Retryable as exc:
        if _outcome_unknown(exc):
            log.warning("outbox %s: outcome unknown (%s); not resent", row["id"], exc)
            await _finish(row, OutboxStatus.FAILED, f"outcome unknown, not resent: {exc}")
        elif row["attempts"] >= max_attempts:
            await _finish(row, OutboxStatus.FAILED, f"gave up after {row['attempts']} attempts: {exc}")
        else:
            delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (row["attempts"] - 1))
            await _finish(row, OutboxStatus.PENDING, f"retry in {delay} s: {exc}",
                          next_attempt_at=clock.now() + dt.timedelta(seconds=delay))
        return
    except WeChatError as exc:
        log.error("outbox %s: WeChat refused %s for %s: %s", row["id"], row["event"], user.end.value, exc)
        await _finish(row, OutboxStatus.FAILED, str(exc))
        return
    await _finish(row, OutboxStatus.SENT, None if sent else "no template configured for this event",
                  sent_at=clock.now())


def _outcome_unknown(exc: Retryable) -> bool:
    """True when the request may have reached WeChat: a read timeout or a connection dropped after
    sending. A refused/failed connection, or an errcode WeChat answered, means it was not sent."""
    cause = exc.__cause__
    if isinstance(cause, WeChatClientException) and cause.errcode is None:
        # An HTTP error with no errcode: a 502/504 from WeChat's gateway may come after the backend
        # took the message; only a 429 or a 503 says it was turned away.
        status = getattr(getattr(cause, "response", None), "status_code", None)
        return status not in (429, 503)
    if cause is None or isinstance(cause, WeChatClientException):
        return False  # WeChat answered with an errcode: definitely not sent
    if isinstance(cause, (requests.ConnectTimeout,)):
        return False
    if isinstance(cause, requests.ConnectionError) and not isinstance(cause, requests.ReadTimeout):
        text = repr(cause)
        # "Connection refused" / name resolution: the request never left; "aborted"/"reset": unknown
        return not any(s in text for s in ("refused", "NameResolution", "Failed to establish", "Max retries"))
    return True  # ReadTimeout, chunked/protocol errors after sending


async def _finish(row: dict[str, Any], status: OutboxStatus, error: str | None, *,
                  next_attempt_at: dt.datetime | None = None, sent_at: dt.datetime | None = None) -> None:
    values: dict[str, Any] = {"status": status, "last_error": (error or None) and error[:ERROR_MAX]}
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    if sent_at is not None:
        values["sent_at"] = sent_at
    # Only while our claim still holds (same attempts count, still ours: claimed or in flight).
    marker = INFLIGHT if row.get("inflight") else CLAIMED
    n = await Outbox.filter(id=row["id"], status=OutboxStatus.PENDING, attempts=row["attempts"],
                            last_error=marker).update(**values)
    metrics.subscription_outcome("retry" if status == OutboxStatus.PENDING else status.value, error)
    if n != 1:
        log.warning("outbox %s: claim lost before recording %s", row["id"], status.value)


# --- payload enrichment ------------------------------------------------------------------------------
_RESULT_TEXT = {True: "申诉成功", False: "申诉失败"}


async def enrich(event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What a template may name, beyond what the transition stored: the task title, readable times
    (ISO strings → datetimes, shown in Beijing time by the renderer), derived amounts."""
    from models.orders import Order
    from models.tasks import Task
    from models.withdrawals import Withdrawal

    p = dict(payload)
    for key, value in payload.items():
        if key.endswith("_at") and isinstance(value, str):
            try:
                p[key] = dt.datetime.fromisoformat(value)
            except ValueError:
                pass
    if "task_title" not in p:
        if "title" in p:
            p["task_title"] = p["title"]
        elif p.get("task_id") is not None:
            p["task_title"] = await Task.filter(id=p["task_id"]).first().values_list("title", flat=True) or ""
    if event == "appeal_decided" and "worker_wins" in p:
        p.setdefault("result_text", _RESULT_TEXT[bool(p["worker_wins"])])
    if event == "order_approved":
        p.setdefault("commission_fen", p.get("amount_fen"))
        if "completed_at" not in p and p.get("order_id") is not None:
            p["completed_at"] = await Order.filter(id=p["order_id"]).first().values_list("finished_at", flat=True)
    if event.startswith("withdrawal_") and p.get("withdrawal_id") is not None:
        if isinstance(p.get("amount_fen"), int) and isinstance(p.get("fee_fen"), int):
            p.setdefault("paid_fen", p["amount_fen"] - p["fee_fen"])
        if "paid_at" not in p:
            p["paid_at"] = await Withdrawal.filter(id=p["withdrawal_id"]).first().values_list("finished_at", flat=True)
    return {k: v for k, v in p.items() if v is not None}
