"""The outbox drainer for WeChat subscription messages (channel 'subscribe'; SPEC §5).

Requirement: a person never gets the same message twice for one outbox row. So delivery is
**at most once**: a row is marked in flight, durably, before WeChat is called, and a send whose
outcome we cannot know is never repeated. One round (`drain_subscriptions`):

1. Claim, in one short transaction: up to `batch` pending 'subscribe' rows whose next_attempt_at
   is due (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so drainers running side by side take disjoint
   rows and never wait). The claim bumps `attempts`, pushes next_attempt_at out by a lease and sets
   `last_error` to the in-flight marker — with a conditional UPDATE, so of two drainers that saw the
   same row only one gets it — and commits before anything is sent.
2. Send each claimed row (up to `SEND_CONCURRENCY` at a time; nothing inside a transaction):
   look up the recipient's end and openid, enrich the payload (task title, times), and call
   `mp.send_event`. An access token WeChat rejects (40001/42001) is refreshed and the send retried
   once inside the client — safe, because WeChat did not accept the first call.
3. Record the outcome with a conditional UPDATE on the claim:
   - sent, or no template configured for that event on that end (nothing to send) → 'sent';
   - 43101 UserRefused → 'refused', never retried (the user did not subscribe; SPEC §5);
   - WeChat answered a definite, transient error (-1 busy, 45009/45011 rate limits) or we could
     not connect (the request never left) → back to 'pending' with exponential backoff, until
     `outbox_max_attempts`, then 'failed';
   - the outcome is unknown (read timeout, connection lost after sending) → 'failed' with the
     reason, NOT retried: WeChat may have delivered it, and a second copy is worse than none;
   - any other WeChat error (bad template, bad data, bad openid) → 'failed' (it would fail again).
4. A row found still carrying the in-flight marker when its lease expires belongs to a drainer
   that died between claiming and recording: it may or may not have been sent, so it is marked
   'failed' ("outcome unknown") instead of being sent again.

'push' rows are someone else's (the WebSocket fan-out) and are never touched here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import requests
from wechatpy.exceptions import WeChatClientException
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from models import clock, db
from models.outbox import Channel, Outbox, OutboxStatus
from models.users import User
from wechat.errors import Retryable, UserRefused, WeChatError
from wechat.miniprogram import MiniProgramClient

log = logging.getLogger("market.outbox")

LEASE_S = 300  # a claimed row is not due again for this long (a send takes seconds at most)
BACKOFF_BASE_S = 10  # retry delays: 10 s, 20 s, 40 s ... capped below
BACKOFF_MAX_S = 3600
SEND_CONCURRENCY = 8  # matches the wechatpy thread pool
INFLIGHT = "in flight"  # last_error while a drainer holds the row
ERROR_MAX = 255


async def drain_subscriptions(mp: MiniProgramClient, *, batch: int = 200, max_attempts: int = 8) -> int:
    """One round: claim, send, record. Returns how many rows it claimed (== batch: more may wait)."""
    rows = await _claim(batch)
    if not rows:
        return 0
    fresh = []
    for row in rows:
        if row["was_inflight"]:  # step 4: its previous drainer died mid-send
            await _finish(row, OutboxStatus.FAILED, "outcome unknown: a drainer stopped while sending; not resent")
        else:
            fresh.append(row)
    users = {u.id: u for u in await User.filter(id__in={r["user_id"] for r in fresh if r["user_id"]})}
    sem = asyncio.Semaphore(SEND_CONCURRENCY)

    async def one(row: dict[str, Any]) -> None:
        async with sem:
            try:
                await _deliver(mp, row, users.get(row["user_id"]), max_attempts)
            except Exception:  # noqa: BLE001 - recording failed (database); the lease expires → step 4
                log.exception("outbox %s: delivery could not be recorded", row["id"])

    await asyncio.gather(*(one(r) for r in fresh))
    return len(rows)


async def _claim(batch: int) -> list[dict[str, Any]]:
    now = clock.now()
    lease_until = now + dt.timedelta(seconds=LEASE_S)
    async with in_transaction():
        query = Outbox.filter(status=OutboxStatus.PENDING, channel=Channel.SUBSCRIBE, next_attempt_at__lte=now
                              ).order_by("next_attempt_at").limit(batch)
        if db.is_postgres():
            query = query.select_for_update(skip_locked=True)
        due = await query
        claimed = []
        for o in due:
            # Conditional: on SQLite (no row locks) two drainers may read the same row; only the
            # UPDATE that still finds it due (and unclaimed) wins it.
            n = await Outbox.filter(id=o.id, status=OutboxStatus.PENDING, attempts=o.attempts,
                                    next_attempt_at__lte=now).update(
                attempts=F("attempts") + 1, next_attempt_at=lease_until, last_error=INFLIGHT)
            if n == 1:
                claimed.append({"id": o.id, "event": o.event, "user_id": o.user_id, "payload": o.payload or {},
                                "attempts": o.attempts + 1, "was_inflight": o.last_error == INFLIGHT})
    return claimed


async def _deliver(mp: MiniProgramClient, row: dict[str, Any], user: User | None, max_attempts: int) -> None:
    if user is None:
        await _finish(row, OutboxStatus.FAILED, "recipient not found")
        return
    payload = await enrich(row["event"], row["payload"])
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
    # Only while our claim still holds (same attempts count, still in flight).
    n = await Outbox.filter(id=row["id"], status=OutboxStatus.PENDING, attempts=row["attempts"],
                            last_error=INFLIGHT).update(**values)
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
