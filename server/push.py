"""Live push: outbox `push` rows → the fan-out bus → every WebSocket that should see them.

1. The relay (a background task in each server worker) claims committed `push` rows from the
   outbox with one `UPDATE ... RETURNING` (disjoint across workers: `SKIP LOCKED` on PostgreSQL)
   and publishes them on the bus. It wakes every `interval_s`, or at once when a request in this
   worker has just committed a change (`poke()`).
2. The bus: in-process by default (one server process); with Redis configured, Redis pub/sub, so an
   event produced by any process or node reaches sockets held by every worker.
3. The hub of each worker delivers an event to its own connections: hall events (no user) to every
   worker-end socket, the others to that user's sockets. Each connection has a bounded queue; a
   client too slow to keep up is disconnected and, on reconnecting, asks for what it missed.

Live delivery is at most once; nothing is lost because every event stays in the outbox under its
id, and a reconnecting client replays from its last id (`replay()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
from typing import Any

from models import clock, db

log = logging.getLogger("market.push")

CHANNEL = "market:events"
QUEUE_MAX = 1_000  # events buffered per connection before it is dropped as too slow
REPLAY_MAX = 500  # events one resume may replay; beyond that the client reloads by REST


def _at(created: Any) -> str:
    if isinstance(created, str):
        created = dt.datetime.fromisoformat(created)
    return created.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _event(row: dict[str, Any]) -> dict[str, Any]:
    """An outbox row as the event a client receives (replays build it this way)."""
    payload = row["payload"]
    if isinstance(payload, (str, bytes)):
        payload = json.loads(payload)
    return {"id": row["id"], "type": row["event"], "user_id": row["user_id"], "data": payload, "at": _at(row["created_at"])}


def _wired(row: dict[str, Any]) -> dict[str, Any]:
    """An outbox row claimed by the relay: its id, and the event as JSON text (`wire`) equal to
    json.dumps(_event(row)), made without decoding and re-encoding the stored payload."""
    payload = row["payload"]
    if not isinstance(payload, str):
        payload = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    uid = row["user_id"]
    wire = '{"id":%d,"type":%s,"user_id":%s,"data":%s,"at":"%s"}' % (
        row["id"], json.dumps(row["event"], ensure_ascii=False), "null" if uid is None else int(uid), payload, _at(row["created_at"]))
    return {"id": row["id"], "wire": wire}


def wire_message(events: list[dict[str, Any]]) -> str:
    """Claimed events as one bus message: a JSON array."""
    return "[" + ",".join(e["wire"] for e in events) + "]"


class Connection:
    """One WebSocket: a bounded queue drained by its own writer task."""

    def __init__(self, ws, user_id: int, wants_hall: bool) -> None:
        self.ws = ws
        self.user_id = user_id
        self.wants_hall = wants_hall
        self.queue: asyncio.Queue[dict | None] = asyncio.Queue(QUEUE_MAX)
        self.closed = asyncio.Event()

    def offer(self, message: dict) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            log.warning("dropping slow push client of user %s", self.user_id)
            self.closed.set()

    async def writer(self) -> None:
        try:
            while not self.closed.is_set():
                message = await self.queue.get()
                if message is None:
                    break
                await self.ws.send(json.dumps(message, separators=(",", ":"), ensure_ascii=False))
        except Exception:  # the socket went away
            pass
        finally:
            self.closed.set()


class Hub:
    """The connections held by this worker process."""

    def __init__(self) -> None:
        self.by_user: dict[int, set[Connection]] = {}
        self.hall: set[Connection] = set()

    def add(self, conn: Connection) -> None:
        self.by_user.setdefault(conn.user_id, set()).add(conn)
        if conn.wants_hall:
            self.hall.add(conn)

    def remove(self, conn: Connection) -> None:
        conns = self.by_user.get(conn.user_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.by_user[conn.user_id]
        self.hall.discard(conn)

    @property
    def empty(self) -> bool:
        return not self.by_user

    def deliver(self, event: dict[str, Any]) -> int:
        uid = event.get("user_id")
        targets = self.hall if uid is None else self.by_user.get(uid, ())
        if not targets:
            return 0
        message = {k: v for k, v in event.items() if k != "user_id"}
        for conn in list(targets):
            conn.offer(message)
        return len(targets)

    @property
    def connections(self) -> int:
        return sum(len(c) for c in self.by_user.values())


class InProcessBus:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def publish(self, events: list[dict[str, Any]]) -> None:
        if events and not self.hub.empty:
            for event in json.loads(wire_message(events)):
                self.hub.deliver(event)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RedisBus:
    """Redis pub/sub: every worker of every node subscribes and delivers to its own sockets."""

    def __init__(self, hub: Hub, redis) -> None:
        self.hub = hub
        self.redis = redis
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()

    async def publish(self, events: list[dict[str, Any]]) -> None:
        if events:
            await self.redis.publish(CHANNEL, wire_message(events))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="push-redis-listener")
        await asyncio.wait_for(self._ready.wait(), 5)

    async def _listen(self) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self._ready.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message" and not self.hub.empty:  # no sockets here: nothing to parse
                            for event in json.loads(message["data"]):
                                self.hub.deliver(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("redis pub/sub listener failed; reconnecting")
                await asyncio.sleep(1)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


# The claim is a MATERIALIZED CTE: as `WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)`,
# PostgreSQL may run the subquery more than once and claim more than n rows.
_CLAIM = (
    "WITH picked AS MATERIALIZED (SELECT id FROM outbox WHERE channel = 'push' AND status = 'pending' "
    "ORDER BY id LIMIT $2{lock}) "
    "UPDATE outbox SET status = 'sent', sent_at = $1, attempts = attempts + 1 FROM picked "
    "WHERE outbox.id = picked.id AND outbox.status = 'pending' "
    "RETURNING outbox.id, outbox.event, outbox.user_id, outbox.payload, outbox.created_at"
)


async def claim(batch: int = 500) -> list[dict[str, Any]]:
    """Take committed push rows off the outbox (each row is claimed by exactly one relay)."""
    sql = _CLAIM.format(lock=" FOR UPDATE SKIP LOCKED" if db.is_postgres() else "")
    rows = await db.fetch(sql, clock.now(), batch)
    return sorted((_wired(r) for r in rows), key=lambda e: e["id"])


_CLAIM_IDS = (
    "UPDATE outbox SET status = 'sent', sent_at = $1, attempts = attempts + 1 "
    "WHERE id IN ({ids}) AND channel = 'push' AND status = 'pending' "
    "RETURNING id, event, user_id, payload, created_at"
)


async def claim_ids(ids: list[int]) -> list[dict[str, Any]]:
    """Take these push rows off the outbox, if still pending (a row another relay claimed first is
    not returned: its UPDATE waits for that claim, then finds the row sent)."""
    if not ids:
        return []
    sql = _CLAIM_IDS.format(ids=", ".join(f"${n}" for n in range(2, len(ids) + 2)))
    rows = await db.fetch(sql, clock.now(), *ids)
    return sorted((_wired(r) for r in rows), key=lambda e: e["id"])


REPLAY_OVERLAP_S = 30  # longer than any transaction that writes outbox rows runs


async def replay(user_id: int, include_hall: bool, after_id: int, limit: int = REPLAY_MAX) -> list[dict[str, Any]]:
    """The events after `after_id` this user should have seen (theirs, plus the hall's).

    Ids are handed out when a transaction inserts its rows, not when it commits, so an event with a
    smaller id can become visible after one with a larger id was delivered. The replay therefore
    starts at the first event created up to REPLAY_OVERLAP_S before `after_id` was; clients drop
    the events they already have by id.
    """
    anchor = await db.fetch_one("SELECT created_at FROM outbox WHERE id = $1", after_id) if after_id else None
    if anchor is not None:
        created = anchor["created_at"]
        if isinstance(created, str):
            created = dt.datetime.fromisoformat(created)
        first = await db.fetch_one(
            "SELECT MIN(id) AS id FROM outbox WHERE channel = 'push' AND id <= $1 AND created_at >= $2",
            after_id, created - dt.timedelta(seconds=REPLAY_OVERLAP_S),
        )
        if first is not None and first["id"] is not None:
            after_id = min(after_id, int(first["id"]) - 1)
    rows = await db.fetch(
        "SELECT id, event, user_id, payload, created_at FROM outbox WHERE channel = 'push' AND id > $1 "
        "AND (user_id = $2 OR (user_id IS NULL AND $3)) ORDER BY id LIMIT $4",
        after_id, user_id, include_hall, limit,
    )
    return [_event(r) for r in rows]


async def oldest_event_id() -> int:
    """The oldest push event still kept (older ones were pruned after the retention period)."""
    row = await db.fetch_one("SELECT COALESCE(MIN(id), 0) AS n FROM outbox WHERE channel = 'push'")
    return int(row["n"]) if row else 0


async def last_event_id() -> int:
    row = await db.fetch_one("SELECT COALESCE(MAX(id), 0) AS n FROM outbox WHERE channel = 'push'")
    return int(row["n"]) if row else 0


class Relay:
    """Moves committed push rows from the outbox onto the bus.

    Two ways to find them: a poke with the ids a commit just wrote (the take passes them) claims
    exactly those rows by primary key; a plain poke, and every `interval_s` in any case, scans for
    all pending push rows, which also picks up whatever an id claim missed (another process's
    commits, a relay that failed mid-claim). The scan walks the outbox's pending-push index from
    its oldest entry, and under heavy load that index holds many dead entries until VACUUM removes
    them: claims by id keep the hot path off it.
    """

    def __init__(self, bus, interval_s: float = 0.2, batch: int = 500, gather_s: float = 0.005) -> None:
        self.bus = bus
        self.interval_s = interval_s
        self.batch = batch
        # After a poke, wait this long before claiming, so the commits of the next few ms share one
        # claim (under load: one outbox UPDATE per few takes instead of one per take).
        self.gather_s = gather_s
        self._wake = asyncio.Event()
        self._ids: set[int] = set()
        self._scan = True
        self._last_scan = 0.0
        self._task: asyncio.Task | None = None

    def poke(self, ids: list[int] | None = None) -> None:
        """Something committed: its push rows `ids`, or (None) rows to be found by a scan."""
        if ids is None:
            self._scan = True
        else:
            self._ids.update(ids)
        self._wake.set()

    async def step(self) -> int:
        """One scan claim; the number of events it moved."""
        events = await claim(self.batch)
        if events:
            await self.bus.publish(events)
        return len(events)

    async def _claim_poked_ids(self) -> None:
        ids, self._ids = sorted(self._ids), set()
        for i in range(0, len(ids), self.batch):
            events = await claim_ids(ids[i:i + self.batch])
            if events:
                await self.bus.publish(events)

    async def run(self) -> None:
        while True:
            try:
                if self._ids:
                    await self._claim_poked_ids()
                if self._scan or time.monotonic() - self._last_scan >= self.interval_s:
                    self._scan, self._last_scan = False, time.monotonic()
                    while await self.step() == self.batch:
                        pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("push relay step failed")  # the next scan finds what was not claimed
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
            # arrives as the event is set, and stop() would then wait for ever on a busy relay.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
                await asyncio.sleep(self.gather_s)
            self._wake.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="push-relay")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
