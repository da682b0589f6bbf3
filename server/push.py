"""Live push: outbox `push` rows → a delivery log → the fan-out bus → every WebSocket that should see them.

The design and why: docs/push.md. In short:

1. **The delivery log.** A transition writes its push rows in its own transaction (models/outbox.py).
   After commit, a relay *stamps* them: under the lock of the one `push_sequence` row it gives each
   committed, unstamped row the next `seq`, and commits. Stamping transactions run one after
   another, so seqs become visible in order: whoever sees seq S sees every seq below it. A row's
   seq never changes; there is no hole that fills later (an id is handed out at INSERT, so ids
   commit out of order; seqs do not).
2. **Publish, then mark (at least once).** The stamp leases the rows to their relay for
   `LEASE_S`; the relay publishes them on the bus and then marks them sent. A relay that dies after
   the stamp leaves its rows pending with a lease that runs out: any relay republishes them. A
   publish that happened twice is harmless: hubs drop a seq they have delivered.
3. **The bus**: in-process by default (one server process); with Redis, pub/sub on the channel
   `<redis_namespace>:events`, so an event stamped by any process reaches every worker of every node.
4. **The hub** of each worker delivers the log in seq order, each seq once: an event that comes
   early waits for the ones before it; a seq still missing after `GAP_WAIT_S` (a publish lost with
   its relay, or in flight on a slower relay) is read from the database, and so is anything
   stamped more than a tick ago and not yet heard of. The hub's connections get their own events
   (hall events: every worker-end socket; the others: that user's sockets).
5. **Resume**: a client says the last seq it processed; the server reads every event of that
   client after it from the database, page by page (no window, no cap), while the hub holds the
   live events that arrive meanwhile, then hands over to live. `replay_truncated` only when the
   events after that seq were pruned (retention).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import logging
import struct
import time
from typing import Any

from tortoise.transactions import in_transaction

from models import clock, db
from server import metrics

log = logging.getLogger("market.push")

QUEUE_MAX = 1_000  # messages buffered per connection before it is dropped as too slow
REPLAY_HIGH = QUEUE_MAX // 2  # a replay waits while the socket has this many messages unsent
PAGE = 1_000  # events read per database page (a replay, a hub filling a gap)
LEASE_S = 3.0  # a stamped row not marked sent this long after is republished by any relay
GAP_WAIT_S = 0.2  # a missing seq is awaited this long on the bus before it is read from the database
TICK_S = 1.0  # how often a hub compares its position with the log's
RECENT_MAX = 5_000  # the last events a hub delivered, kept to answer resumes without the database


def _at(created: Any) -> str:
    if isinstance(created, str):
        created = dt.datetime.fromisoformat(created)
    return created.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _event(row: dict[str, Any]) -> dict[str, Any]:
    """A stamped outbox row as the event a client receives (plus `user_id`, its audience)."""
    payload = row["payload"]
    if isinstance(payload, (str, bytes)):
        payload = json.loads(payload)
    return {"id": row["id"], "seq": int(row["seq"]), "type": row["event"], "user_id": row["user_id"], "data": payload,
            "at": _at(row["created_at"])}


def _wired(row: dict[str, Any]) -> dict[str, Any]:
    """A stamped row: its id, seq, and the event as JSON text (`wire`) equal to json.dumps(_event(row)),
    made without decoding and re-encoding the stored payload."""
    payload = row["payload"]
    if not isinstance(payload, str):
        payload = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    uid = row["user_id"]
    wire = '{"id":%d,"seq":%d,"type":%s,"user_id":%s,"data":%s,"at":"%s"}' % (
        row["id"], int(row["seq"]), json.dumps(row["event"], ensure_ascii=False), "null" if uid is None else int(uid),
        payload, _at(row["created_at"]))
    return {"id": row["id"], "seq": int(row["seq"]), "wire": wire}


def wire_message(events: list[dict[str, Any]]) -> str:
    """Stamped events as one bus message: the largest seq, a space, the events as a JSON array (a hub
    with no sockets reads only the number)."""
    return "%d [%s]" % (max(e["seq"] for e in events), ",".join(e["wire"] for e in events))


def client_text(event: dict[str, Any]) -> str:
    """What a socket receives for an event: the event without its audience."""
    return json.dumps({k: v for k, v in event.items() if k != "user_id"}, separators=(",", ":"), ensure_ascii=False)


# --- the log in the database ---------------------------------------------------------------------------

async def _lock_sequence() -> dict[str, Any]:
    """Lock the sequence row for this transaction (created if a test emptied the table)."""
    lock = " FOR UPDATE" if db.is_postgres() else ""  # SQLite: the transaction holds the write lock already
    row = await db.fetch_one(f"SELECT last_seq, pruned_seq FROM push_sequence WHERE id = 1{lock}")
    if row is None:
        await db.execute("INSERT INTO push_sequence (id, last_seq, pruned_seq) VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING")
        row = await db.fetch_one(f"SELECT last_seq, pruned_seq FROM push_sequence WHERE id = 1{lock}")
    return row


# The picked rows are MATERIALIZED: as a plain subquery PostgreSQL may evaluate it more than once.
_STAMP = (
    "WITH picked AS MATERIALIZED (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM outbox "
    "WHERE channel = 'push' AND status = 'pending' AND seq IS NULL{ids} ORDER BY id LIMIT $3) "
    "UPDATE outbox SET seq = $1 + picked.n, next_attempt_at = $2, attempts = outbox.attempts + 1 FROM picked "
    "WHERE outbox.id = picked.id "
    "RETURNING outbox.id, outbox.seq, outbox.event, outbox.user_id, outbox.payload, outbox.created_at"
)


async def stamp(batch: int = 500, ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Give committed, unstamped push rows (these `ids`, or the oldest `batch`) the next seqs, in id
    order, and lease them to the caller for LEASE_S. Returns them wired, in seq order.

    Under the sequence row's lock, in READ COMMITTED: the row read happens after the previous
    stamper committed, so this stamper sees every seq it handed out and continues after them."""
    where = ""
    args: list[Any] = []
    if ids is not None:
        if not ids:
            return []
        where = " AND id IN (%s)" % ", ".join(f"${n}" for n in range(4, len(ids) + 4))
        args = list(ids)
        batch = len(ids)
    async with in_transaction():
        base = int((await _lock_sequence())["last_seq"])
        rows = await db.fetch(_STAMP.format(ids=where), base, clock.now() + dt.timedelta(seconds=LEASE_S), batch, *args)
        if rows:
            await db.execute("UPDATE push_sequence SET last_seq = $1 WHERE id = 1", base + len(rows))
    return sorted((_wired(r) for r in rows), key=lambda e: e["seq"])


_RELEASE_STALE = (
    "WITH picked AS MATERIALIZED (SELECT id FROM outbox WHERE channel = 'push' AND status = 'pending' "
    "AND seq IS NOT NULL AND next_attempt_at <= $1 ORDER BY id LIMIT $3{lock}) "
    "UPDATE outbox SET next_attempt_at = $2, attempts = outbox.attempts + 1 FROM picked "
    "WHERE outbox.id = picked.id AND outbox.status = 'pending' AND outbox.next_attempt_at <= $1 "
    "RETURNING outbox.id, outbox.seq, outbox.event, outbox.user_id, outbox.payload, outbox.created_at"
)


async def claim_stale(batch: int = 500) -> list[dict[str, Any]]:
    """Stamped rows whose lease ran out unmarked (their relay died, or its publish or mark failed):
    lease them again, to this caller, for another publish. Disjoint across relays (SKIP LOCKED and
    the conditional lease)."""
    now = clock.now()
    sql = _RELEASE_STALE.format(lock=" FOR UPDATE SKIP LOCKED" if db.is_postgres() else "")
    rows = await db.fetch(sql, now, now + dt.timedelta(seconds=LEASE_S), batch)
    return sorted((_wired(r) for r in rows), key=lambda e: e["seq"])


async def mark_sent(events: list[dict[str, Any]]) -> int:
    """After the publish: these rows are on the bus."""
    if not events:
        return 0
    ids = [e["id"] for e in events]
    marks = ", ".join(f"${n}" for n in range(2, len(ids) + 2))
    return await db.execute(f"UPDATE outbox SET status = 'sent', sent_at = $1 WHERE id IN ({marks}) AND status = 'pending'",
                            clock.now(), *ids)


_COLUMNS = "id, seq, event, user_id, payload, created_at"


async def read_range(after_seq: int, upto_seq: int, limit: int = PAGE) -> list[dict[str, Any]]:
    """The log's events (every audience) with after_seq < seq <= upto_seq, in seq order."""
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM outbox WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
                          after_seq, upto_seq, limit)
    return [_event(r) for r in rows]


async def replay(user_id: int, include_hall: bool, after_seq: int, limit: int = PAGE) -> list[dict[str, Any]]:
    """One page of the events this user should see (theirs, plus the hall's) after `after_seq`, in
    seq order. Each part reads its own index (user_id, seq) / (seq); a short page is the end."""
    mine = f"SELECT {_COLUMNS} FROM outbox WHERE user_id = $2 AND seq > $1 ORDER BY seq LIMIT $3"
    if not include_hall:
        rows = await db.fetch(mine, after_seq, user_id, limit)
    else:
        hall = f"SELECT {_COLUMNS} FROM outbox WHERE seq > $1 AND user_id IS NULL ORDER BY seq LIMIT $3"
        rows = await db.fetch(f"SELECT * FROM (SELECT * FROM ({mine}) AS a UNION ALL SELECT * FROM ({hall}) AS b) AS t "
                              "ORDER BY seq LIMIT $3", after_seq, user_id, limit)
    return [_event(r) for r in rows]


async def positions() -> tuple[int, int]:
    """(last_seq, pruned_seq): the newest seq handed out, and the highest seq pruned."""
    row = await db.fetch_one("SELECT last_seq, pruned_seq FROM push_sequence WHERE id = 1")
    return (int(row["last_seq"]), int(row["pruned_seq"])) if row else (0, 0)


async def last_seq() -> int:
    return (await positions())[0]


async def prune(before: dt.datetime, batch: int = 5000, rounds: int = 100) -> int:
    """Delete the push log's events created before `before`, lowest seqs first, and record the
    highest pruned seq (a resume from below it is told `replay_truncated`). Subscription rows are
    pruned elsewhere (scheduler/runner.py)."""
    total = 0
    for _ in range(rounds):
        async with in_transaction():
            horizon = await db.fetch_one(
                "SELECT MAX(seq) AS s FROM (SELECT seq FROM outbox WHERE seq IS NOT NULL AND created_at < $1 "
                "ORDER BY seq LIMIT $2) AS old", before, batch)
            upto = horizon["s"] if horizon else None
            if upto is None:
                break
            await _lock_sequence()
            await db.execute("UPDATE push_sequence SET pruned_seq = $1 WHERE id = 1 AND pruned_seq < $1", int(upto))
            n = await db.execute("DELETE FROM outbox WHERE seq IS NOT NULL AND seq <= $1", int(upto))
        total += n
        if n < batch:
            break
    return total


# --- sockets --------------------------------------------------------------------------------------------

def ws_frame(text: str) -> bytes:
    """`text` as one unmasked, unfragmented WebSocket text frame (RFC 6455 §5.2): what a server
    sends, the same bytes for every socket (no compression extension is negotiated), so an
    event is framed once for all its sockets."""
    data = text.encode()
    n = len(data)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + data


class Connection:
    """One WebSocket: its place in the log, and what it could not take yet.

    No task per socket: a message is framed and written to the socket's transport at once, by
    whoever offers it (the hub delivering an event, made into text and framed once for all its
    sockets; the heartbeat service; the handler). Only when the socket cannot take it now (the
    transport is paused because the client reads slowly, or earlier messages wait) does it wait
    in a backlog that a short-lived task drains, in order, with the socket's `send` (which waits
    for `resume_writing`). More than QUEUE_MAX waiting: the client is too slow and is dropped.
    The socket (`ws`) is a `server.sockets.Socket` (miniprogram_api/ws.py).

    `position`: the seq of the last event given to this socket; every event of its audience up to
    it has been given (live, in seq order from the hub; or by a replay, page after page)."""

    __slots__ = ("ws", "user_id", "wants_hall", "token_version", "position", "replaying", "closed", "bucket",
                 "_held", "_held_dropped", "_backlog", "_flusher", "_room", "__weakref__")

    def __init__(self, ws, user_id: int, wants_hall: bool, token_version: int | None = None) -> None:
        self.ws = ws
        self.user_id = user_id
        self.wants_hall = wants_hall
        self.token_version = token_version  # the session's (the heartbeat service compares it)
        self.position = 0
        self.replaying = False
        self.closed = False  # nothing more goes out
        self.bucket = -1  # the heartbeat service's slice this socket is in
        self._held: list[tuple[int, str]] | None = None  # live events that arrived during a replay
        self._held_dropped = False
        self._backlog: collections.deque[str] | None = None  # messages waiting for the socket
        self._flusher: asyncio.Task | None = None
        self._room: asyncio.Event | None = None  # a replay waits on it while the backlog is long

    @property
    def pending(self) -> int:
        """Messages offered and not yet handed to the socket's transport."""
        return len(self._backlog) if self._backlog else 0

    def offer(self, message: dict | str, frame: bytes | None = None) -> None:
        """Send `message` (`frame`: the same text already framed, shared by every socket)."""
        if self.closed:
            return
        if not isinstance(message, str):
            message = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
        if self._backlog is None:
            transport = self._transport()
            if transport is not None:
                transport.write(frame or ws_frame(message))
                return
            self._backlog = collections.deque()
        if len(self._backlog) >= QUEUE_MAX:
            log.warning("dropping slow push client of user %s", self.user_id)
            self.drop()
            return
        self._backlog.append(message)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    def _transport(self):
        """The socket's transport if a frame can be written to it now without waiting (open, not
        paused by a slow reader: `server.sockets.Socket.writable`); else None."""
        writable = getattr(self.ws, "writable", None)
        return writable() if writable is not None else None

    def probe(self) -> bool:
        """Send a protocol ping (every WebSocket client answers it with a pong); False when the
        previous probe's ping is still unanswered — the client is gone or stuck. Replaces a
        keep-alive task per socket (the heartbeat service probes every socket once per beat); a
        socket with messages waiting gets no ping this time."""
        ping = getattr(self.ws, "ping", None)
        if ping is None:
            return True  # not a socket of ours (tests): no judgement
        return ping(send=not self._backlog)

    async def _flush(self) -> None:
        backlog = self._backlog
        try:
            while backlog:
                await self.ws.send(backlog[0])
                backlog.popleft()
                if self._room is not None and len(backlog) < REPLAY_HIGH:
                    self._room.set()
        except Exception:  # the socket went away
            self.closed = True
            backlog.clear()
        finally:
            self._flusher = None
            if not backlog:
                self._backlog = None
            if self._room is not None:
                self._room.set()

    def drop(self, reason: str = "too slow") -> None:
        """Give up on this socket (too slow, or gone): nothing more goes out, and it is closed."""
        self.closed = True
        if self._backlog:
            self._backlog.clear()
        if self._room is not None:
            self._room.set()
        fail = getattr(self.ws, "fail_connection", None)
        if fail is not None:
            with contextlib.suppress(Exception):
                fail(1011, reason)

    async def drained(self, timeout: float = 2.0) -> None:
        """Wait (up to `timeout`) until everything offered has been handed to the transport."""
        with contextlib.suppress(Exception):
            if self._flusher is not None:
                await asyncio.wait_for(asyncio.shield(self._flusher), timeout)

    def stop(self) -> None:
        """The socket is gone: drop what waits."""
        self.closed = True
        if self._backlog:
            self._backlog.clear()
        if self._flusher is not None:
            self._flusher.cancel()
        if self._room is not None:
            self._room.set()

    def live(self, seq: int, text: str, frame: bytes | None = None) -> None:
        """An event from the hub (seq order, each seq once), with its frame when the hub made it."""
        if self.replaying:
            if len(self._held) >= QUEUE_MAX:
                self._held.clear()  # the replay reads them from the database instead (`replay_from`)
                self._held_dropped = True
            elif not self._held_dropped:
                self._held.append((seq, text))
            return
        if seq > self.position:
            self.position = seq
            self.offer(text, frame)

    async def _put_replayed(self, seq: int, text: str, frame: bytes | None = None) -> None:
        while self.pending >= REPLAY_HIGH and not self.closed:
            if self._room is None:
                self._room = asyncio.Event()
            self._room.clear()
            await self._room.wait()
        self.position = seq
        self.offer(text, frame)

    def hold(self) -> None:
        """From now on, hold the live events (a replay is about to begin)."""
        if not self.replaying:
            self.replaying, self._held, self._held_dropped = True, [], False

    def release(self) -> None:
        """Stop holding: the held events after `position` go out, in order."""
        for seq, text in self._held or ():
            if seq > self.position:
                self.position = seq
                self.offer(text)
        self.replaying, self._held, self._held_dropped = False, None, False

    async def replay_from(self, after_seq: int, read=None) -> bool:
        """Queue every event of this socket's audience after `after_seq`, then hand over to live.
        False if the socket closed meanwhile.

        Why nothing is lost: live events are held from the moment the replay begins, or from
        `hold()` if that came first (hub position H). Every page is read after that moment, so it sees every seq up to H and all it reads
        is contiguous; the last (short) page ends the log as that read saw it, and everything
        later reached the hub after H, so it is held. If too many were held, they are dropped and
        the pages go on from the database until a page ends short with nothing dropped."""
        read = read or replay
        self.hold()
        self.position = after_seq
        try:
            while not self.closed:
                page = await read(self.user_id, self.wants_hall, self.position, PAGE)
                for event in page:
                    await self._put_replayed(event["seq"], event.get("text") or client_text(event), event.get("frame"))
                    if self.closed:
                        return False
                if len(page) < PAGE:
                    if self._held_dropped:
                        self._held_dropped = False
                        continue
                    self.release()
                    return not self.closed
            return False
        finally:
            if self.replaying:
                self.replaying, self._held = False, None


class Hub:
    """The connections held by this worker process, and this worker's place in the log.

    `position` is the last seq this hub delivered; it delivers seq position+1 next, and only that:
    an event that comes early waits in `waiting`. A gap is filled from the database after
    GAP_WAIT_S; every TICK_S the hub also compares its position with the log's, so an event whose
    publish was lost (and nothing after it) arrives within about two ticks."""

    def __init__(self, gap_wait_s: float = GAP_WAIT_S, tick_s: float = TICK_S) -> None:
        self.by_user: dict[int, set[Connection]] = {}
        self.hall: set[Connection] = set()
        self.position: int | None = None
        self.waiting: dict[int, dict[str, Any]] = {}
        self.gap_wait_s = gap_wait_s
        self.tick_s = tick_s
        self._filling: asyncio.Task | None = None
        self._ticker: asyncio.Task | None = None
        self._seen_last = 0  # the log's last seq at the previous tick
        self.filled = 0  # events this hub read from the database (metrics, tests)
        # The events delivered last, every audience, contiguous: seqs _recent_first .. position.
        self._recent: list[tuple[int, int | None, str, bytes]] = []
        self._recent_first = 0
        self.replays_from_memory = 0  # replay pages answered from `_recent` (tests, benchmarks)

    async def start(self) -> None:
        self.position = await last_seq()
        self._seen_last = self.position
        self._ticker = asyncio.create_task(self._tick(), name="push-hub-tick")

    async def stop(self) -> None:
        for task in (self._ticker, self._filling):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def add(self, conn: Connection) -> int:
        """Register a socket; it gets every event after the returned position (unless it replays)."""
        metrics.WS_CONNECTIONS.inc()
        self.by_user.setdefault(conn.user_id, set()).add(conn)
        if conn.wants_hall:
            self.hall.add(conn)
        conn.position = max(conn.position, self.position or 0)
        return conn.position

    def remove(self, conn: Connection) -> None:
        conns = self.by_user.get(conn.user_id)
        if conns is not None and conn in conns:
            metrics.WS_CONNECTIONS.dec()
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.by_user[conn.user_id]
        self.hall.discard(conn)

    @property
    def empty(self) -> bool:
        return not self.by_user

    @property
    def connections(self) -> int:
        return sum(len(c) for c in self.by_user.values())

    def receive(self, message: str | bytes) -> None:
        """A bus message (`wire_message`)."""
        if isinstance(message, bytes):
            message = message.decode()
        head, _, body = message.partition(" ")
        last = int(head)
        if self.position is None or last <= self.position:
            return  # not started, or all delivered already (a republish)
        events = json.loads(body)
        if self.empty and not self.waiting and [e["seq"] for e in events] != list(range(self.position + 1, last + 1)):
            self._jump(last)  # nobody here to deliver to, and a gap: not worth reading
            return
        for event in events:
            if event["seq"] > self.position:
                self.waiting[event["seq"]] = event
        self._advance()

    def _jump(self, to: int) -> None:
        """Move the position without delivering what lies between: what `_recent` held is no
        longer contiguous with it."""
        if to != self.position:
            self._recent = []
        self.position = to

    def recent(self, user_id: int, include_hall: bool, after_seq: int, limit: int = PAGE) -> list[dict[str, Any]] | None:
        """A replay page from memory — the events of this audience after `after_seq` among those
        this hub delivered last (`{seq, text, frame}`, in seq order) — or None when memory does not
        reach back to `after_seq`. Everything after the position comes live (the caller holds)."""
        ring = self._recent
        if not ring or after_seq < self._recent_first - 1:
            return None
        page = []
        for i in range(max(0, after_seq - self._recent_first + 1), len(ring)):
            seq, uid, text, frame = ring[i]
            if uid == user_id or (uid is None and include_hall):
                page.append({"seq": seq, "text": text, "frame": frame})
                if len(page) >= limit:
                    break
        return page

    async def replay(self, user_id: int, include_hall: bool, after_seq: int, limit: int = PAGE) -> list[dict[str, Any]]:
        """A replay page (`Connection.replay_from`'s `read`): from memory when it reaches back to
        `after_seq` (a phone whose node died resumes from a few seconds ago), else from the log."""
        page = self.recent(user_id, include_hall, after_seq, limit)
        if page is None:
            return await replay(user_id, include_hall, after_seq, limit)
        self.replays_from_memory += 1
        return page

    def _advance(self) -> None:
        while self.position + 1 in self.waiting:
            event = self.waiting.pop(self.position + 1)
            self.position += 1
            self._deliver(event)
        if self.waiting and self._filling is None:
            self._filling = asyncio.create_task(self._fill(wait_s=self.gap_wait_s), name="push-hub-fill")

    def _deliver(self, event: dict[str, Any]) -> int:
        uid = event.get("user_id")
        targets = self.hall if uid is None else self.by_user.get(uid, ())
        text = client_text(event)  # serialized and framed once, for every socket
        frame = ws_frame(text)
        seq = event["seq"]
        if not self._recent:
            self._recent_first = seq
        self._recent.append((seq, uid, text, frame))
        if len(self._recent) > 2 * RECENT_MAX:
            drop = len(self._recent) - RECENT_MAX
            del self._recent[:drop]
            self._recent_first += drop
        if not targets:
            return 0
        metrics.WS_DELIVERIES.inc(len(targets))
        for conn in list(targets):
            conn.live(seq, text, frame)
        return len(targets)

    async def _fill(self, wait_s: float, upto: int = 0) -> None:
        """Read what is missing from the database, up to the largest seq waiting (or `upto`)."""
        try:
            await asyncio.sleep(wait_s)
            while True:
                goal = max([upto, *self.waiting])
                if self.position is None or goal <= self.position:
                    break
                if self.empty:
                    self._jump(goal)
                    self.waiting = {}
                    break
                page = await read_range(self.position, goal, PAGE)
                if not page:  # pruned under us: skip to what we have
                    log.warning("push hub: seqs %s..%s are gone from the log", self.position + 1, goal)
                    self._jump(min(self.waiting, default=goal + 1) - 1)
                for event in page:
                    if event["seq"] > self.position and event["seq"] not in self.waiting:
                        self.waiting[event["seq"]] = event
                        self.filled += 1
                self._filling = asyncio.current_task()  # _advance must not start a second filler
                self._advance()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("push hub: reading the log failed; the next tick tries again")
        finally:
            self._filling = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                last = await last_seq()
                if self.empty and not self.waiting:
                    if self._seen_last > (self.position or 0):  # stamped a tick ago, not heard of: skip it
                        self._jump(max(self.position or 0, last))
                elif self._seen_last > (self.position or 0) and self._filling is None:
                    # Stamped a tick ago and still not heard of: its publish was lost.
                    self._filling = asyncio.create_task(self._fill(0.0, self._seen_last), name="push-hub-fill")
                self._seen_last = last
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("push hub tick failed")


# --- the bus ----------------------------------------------------------------------------------------------

class InProcessBus:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def publish(self, events: list[dict[str, Any]]) -> None:
        if events:
            self.hub.receive(wire_message(events))

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def channel_name(namespace: str) -> str:
    return f"{namespace}:events"


class RedisBus:
    """Redis pub/sub on `<namespace>:events`: every worker of every node of this deployment
    subscribes and delivers to its own sockets. (Pub/sub ignores the database number: the
    namespace is what keeps deployments sharing one Redis apart.)"""

    def __init__(self, hub: Hub, redis, channel: str) -> None:
        self.hub = hub
        self.redis = redis
        self.channel = channel
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()

    async def publish(self, events: list[dict[str, Any]]) -> None:
        if events:
            await self.redis.publish(self.channel, wire_message(events))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="push-redis-listener")
        await asyncio.wait_for(self._ready.wait(), 5)

    async def _listen(self) -> None:
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    self._ready.set()
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self.hub.receive(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception:
                # Whatever was published meanwhile is read from the database by the hub's tick.
                log.exception("redis pub/sub listener failed; reconnecting")
                await asyncio.sleep(1)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


# --- the relay ------------------------------------------------------------------------------------------

class Relay:
    """Stamps committed push rows, publishes them, then marks them sent.

    Two ways to find them: a poke with the ids a commit just wrote (the take passes them) stamps
    exactly those rows by primary key; a plain poke, and every `interval_s` in any case, scans for
    every unstamped row (another process's commits, a relay that failed mid-way) and for stamped
    rows whose lease ran out unmarked (their relay died between stamp and mark: republished)."""

    def __init__(self, bus, interval_s: float = 0.2, batch: int = 500, gather_s: float = 0.005) -> None:
        self.bus = bus
        self.interval_s = interval_s
        self.batch = batch
        # After a poke, wait this long before stamping, so the commits of the next few ms share one
        # stamp (under load: one stamping transaction per few takes instead of one per take).
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

    async def _send(self, events: list[dict[str, Any]]) -> int:
        if events:
            await self.bus.publish(events)
            await mark_sent(events)
        return len(events)

    async def step(self) -> int:
        """One scan: stamp a batch of unstamped rows and republish a batch of stale ones; the number
        of events it moved."""
        moved = await self._send(await stamp(self.batch))
        return moved + await self._send(await claim_stale(self.batch))

    async def _stamp_poked_ids(self) -> None:
        ids, self._ids = sorted(self._ids), set()
        for i in range(0, len(ids), self.batch):
            await self._send(await stamp(ids=ids[i:i + self.batch]))

    async def run(self) -> None:
        while True:
            try:
                if self._ids:
                    await self._stamp_poked_ids()
                if self._scan or time.monotonic() - self._last_scan >= self.interval_s:
                    self._scan, self._last_scan = False, time.monotonic()
                    while await self.step() >= self.batch:
                        pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("push relay step failed")  # the next scan finds what was not sent
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
