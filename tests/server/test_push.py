"""The push delivery log at the database level: stamping, replay, publish-then-mark, the hub's
ordering and gap filling, and a socket's hand-over from replay to live (server/push.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from models import clock, db
from models.outbox import Outbox, OutboxStatus
from server import push

pytestmark = pytest.mark.asyncio


async def row(event: str, user_id: int | None, created_at: dt.datetime | None = None) -> Outbox:
    at = created_at or clock.now()
    return await Outbox.create(channel="push", event=event, user_id=user_id, payload={"e": event},
                               next_attempt_at=at, created_at=at)


async def test_stamping_gives_committed_push_rows_contiguous_seqs_in_id_order_once(database):
    rows = [await row(f"e{i}", None) for i in range(5)]
    sub = await Outbox.create(channel="subscribe", event="sub", user_id=1, payload={}, next_attempt_at=clock.now(),
                              created_at=clock.now())
    first = await push.stamp(3)
    second = await push.stamp(10)
    assert [(e["id"], e["seq"]) for e in first + second] == [(r.id, n) for n, r in enumerate(rows, 1)]
    assert await push.stamp(10) == []  # never twice; subscription rows are not the log's
    assert (await Outbox.get(id=sub.id)).seq is None
    assert await push.last_seq() == 5


async def test_an_event_that_commits_after_a_newer_one_comes_after_it_in_the_log(database):
    """Ids are handed out at INSERT, seqs after commit: the row inserted first but committed last
    (`late`) gets the larger seq, so a client that has seen `early` resumes and gets `late`."""
    late = await row("late", 7)
    early = await row("early", 7)
    assert [e["seq"] for e in await push.stamp(ids=[early.id])] == [1]
    assert [e["seq"] for e in await push.stamp(ids=[late.id])] == [2]
    assert [e["id"] for e in await push.replay(7, True, 0)] == [early.id, late.id]
    assert [e["id"] for e in await push.replay(7, True, 1)] == [late.id]


async def test_a_replay_reads_the_users_events_and_the_halls_in_seq_order_page_by_page(database):
    for i in range(25):
        await row(f"e{i}", [7, 8, None][i % 3])
    await push.stamp(100)
    mine = []
    after = 0
    while True:
        page = await push.replay(7, True, after, limit=4)
        mine += page
        if len(page) < 4:
            break
        after = page[-1]["seq"]
    assert [e["seq"] for e in mine] == [s for s in range(1, 26) if s % 3 != 2]  # 7's and the hall's, each once
    assert {e["user_id"] for e in await push.replay(8, False, 0)} == {8}


async def test_a_stamped_event_on_the_wire_is_the_event_a_replay_gives(database):
    """The relay splices the stored payload into its message; a replay decodes it: same event."""
    now = clock.now()
    hall = await Outbox.create(channel="push", event="hall.task_published", user_id=None, created_at=now, next_attempt_at=now,
                               payload={"task_id": 7, "title": "扫码 \"quoted\" \\ back", "price": 150, "tags": [1, None]})
    mine = await row("order.changed", 42, now)
    wired = await push.stamp(ids=[hall.id, mine.id])
    message = push.wire_message(wired)
    head, _, body = message.partition(" ")
    assert int(head) == 2 and json.loads(body) == await push.replay(42, True, 0)


class _Bus:
    def __init__(self, fail: bool = False) -> None:
        self.published: list[int] = []
        self.fail = fail

    async def publish(self, events) -> None:
        if self.fail:
            raise ConnectionError("the bus is down")
        self.published += [e["seq"] for e in events]


async def test_a_relay_marks_rows_sent_only_after_publishing_them(database):
    rows = [await row(f"e{i}", 1) for i in range(3)]
    relay = push.Relay(_Bus(fail=True))
    with pytest.raises(ConnectionError):
        await relay.step()
    assert await Outbox.filter(status=OutboxStatus.PENDING, seq__isnull=False).count() == 3  # stamped, not sent
    relay.bus = bus = _Bus()
    assert await relay.step() == 0  # still leased to the failed attempt
    clock.advance(push.LEASE_S + 0.1)
    assert await relay.step() == 3  # the lease ran out: republished, then marked
    assert bus.published == [1, 2, 3]
    assert await Outbox.filter(id__in=[r.id for r in rows], status=OutboxStatus.SENT).count() == 3


async def test_a_relay_that_died_between_publish_and_mark_is_republished_and_hubs_drop_the_repeat(database):
    hub, got = push.Hub(gap_wait_s=0.01), []
    await hub.start()
    try:
        hub.add(_Sink(got, 1, False))
        await row("e", 1)
        stamped = await push.stamp(10)
        hub.receive(push.wire_message(stamped))  # published; the relay died before marking
        clock.advance(push.LEASE_S + 0.1)
        again = await push.claim_stale(10)
        assert [e["seq"] for e in again] == [1]
        hub.receive(push.wire_message(again))
        assert [m["seq"] for m in got] == [1]
    finally:
        await hub.stop()


class _Sink:
    """A socket stand-in: records what the hub gives it."""

    def __init__(self, got: list, user_id: int, wants_hall: bool) -> None:
        self.got, self.user_id, self.wants_hall, self.position = got, user_id, wants_hall, 0

    def live(self, seq: int, text: str, frame: bytes | None = None) -> None:
        self.position = seq
        self.got.append(json.loads(text))


async def _until(predicate, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_hub_delivers_in_seq_order_and_reads_a_missing_seq_from_the_database(database):
    hub, got = push.Hub(gap_wait_s=0.05, tick_s=60), []
    await hub.start()
    try:
        hub.add(_Sink(got, 7, True))
        for i in range(6):
            await row(f"e{i}", 7 if i % 2 else None)
        a, b, c = await push.stamp(2), await push.stamp(2), await push.stamp(2)
        hub.receive(push.wire_message(c))  # seqs 5, 6 first: they wait
        hub.receive(push.wire_message(a))
        assert [m["seq"] for m in got] == [1, 2]
        await _until(lambda: len(got) == 6)  # 3, 4 never came on the bus: read from the database
        assert [m["seq"] for m in got] == [1, 2, 3, 4, 5, 6] and hub.filled == 2
        hub.receive(push.wire_message(b))  # late, already delivered
        assert len(got) == 6 and "user_id" not in got[0]
    finally:
        await hub.stop()


async def test_a_hub_finds_a_lost_last_publish_by_its_tick(database):
    hub, got = push.Hub(gap_wait_s=0.05, tick_s=0.05), []
    await hub.start()
    try:
        hub.add(_Sink(got, 7, False))
        await row("lost", 7)
        await push.stamp(10)  # stamped and committed; its relay died before publishing
        await _until(lambda: len(got) == 1)
        assert got[0]["type"] == "lost"
    finally:
        await hub.stop()


class _Socket:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))
        await asyncio.sleep(0)


async def test_a_replay_hands_over_to_live_without_losing_or_repeating_an_event(database, monkeypatch):
    """Live events keep coming while a socket replays a long backlog page by page; some arrive on
    the bus before the replay reads them, some after; more than a socket may hold arrive during the
    replay (dropped, read from the database instead). Each event of the user goes out once, in
    seq order."""
    monkeypatch.setattr(push, "PAGE", 50)
    hub = push.Hub(gap_wait_s=0.01, tick_s=60)
    await hub.start()
    for i in range(400):
        await row(f"old{i}", 7 if i % 2 else None)
    backlog = await push.stamp(1000)
    hub.receive(push.wire_message(backlog))
    ws = _Socket()
    conn = push.Connection(ws, 7, wants_hall=True)
    conn.hold()
    hub.add(conn)

    async def produce():
        for i in range(1_300):
            await row(f"new{i}", 7 if i % 3 else 9)
            if i % 10 == 9:
                hub.receive(push.wire_message(await push.stamp(100)))
            await asyncio.sleep(0)

    producer = asyncio.create_task(produce())
    assert await conn.replay_from(0)
    await producer
    rest = await push.stamp(1000)
    if rest:
        hub.receive(push.wire_message(rest))
    await _until(lambda: conn.pending == 0)
    await asyncio.sleep(0.05)
    expected = [e["seq"] for e in await db_events_for(7)]
    assert [m["seq"] for m in ws.sent] == expected
    conn.stop()
    await hub.stop()


async def db_events_for(user_id: int) -> list[dict]:
    rows = await db.fetch("SELECT seq FROM outbox WHERE seq IS NOT NULL AND (user_id = $1 OR user_id IS NULL) ORDER BY seq",
                          user_id)
    return rows


async def test_pruning_records_the_highest_pruned_seq(database):
    old = clock.now() - dt.timedelta(days=30)
    for i in range(5):
        await row(f"old{i}", 1, old)
    await row("new", 1)
    await push.stamp(10)
    assert await push.prune(clock.now() - dt.timedelta(days=7)) == 5
    assert await push.positions() == (6, 5)
    assert [e["type"] for e in await push.replay(1, False, 0)] == ["new"]


@pytest.mark.postgres
async def test_stampers_racing_with_writers_hand_out_every_seq_once_and_in_visible_order(database):
    """Six relays stamping while writers commit: every row gets one seq, seqs are 1..n with no
    hole, and a reader that saw seq S saw every seq below it (checked at every read)."""
    from tortoise.transactions import in_transaction

    stop = asyncio.Event()
    problems: list[str] = []

    async def writer(k: int) -> None:
        for i in range(60):
            async with in_transaction():
                await row(f"w{k}-{i}", k)
                await asyncio.sleep(0.001 * (i % 3))  # commits land out of id order
                await row(f"w{k}-{i}b", None)

    async def stamper() -> None:
        while not stop.is_set():
            await push.stamp(7)
            await asyncio.sleep(0)

    async def reader() -> None:
        while not stop.is_set():
            seqs = [r["seq"] for r in await db.fetch("SELECT seq FROM outbox WHERE seq IS NOT NULL ORDER BY seq")]
            if seqs != list(range(1, len(seqs) + 1)):
                problems.append(f"a hole: {seqs[:5]}...")
            await asyncio.sleep(0.002)

    stampers = [asyncio.create_task(stamper()) for _ in range(6)]
    readers = [asyncio.create_task(reader()) for _ in range(2)]
    await asyncio.gather(*(writer(k) for k in range(1, 5)))
    while await push.stamp(500):
        pass
    stop.set()
    await asyncio.gather(*stampers, *readers)
    seqs = [r["seq"] for r in await db.fetch("SELECT seq FROM outbox ORDER BY seq")]
    assert seqs == list(range(1, 481)) and not problems
    assert await push.last_seq() == 480


class _SlowSocket:
    """A socket that takes a message only when the test lets it."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.go = asyncio.Event()

    async def send(self, text: str) -> None:
        await self.go.wait()
        self.sent.append(text)


async def test_a_socket_that_cannot_take_messages_now_gets_them_later_in_order_and_a_too_slow_one_is_dropped(monkeypatch):
    """No task per socket while it keeps up; a backlog, drained in order by one short-lived task,
    while it does not; more than QUEUE_MAX waiting drops it."""
    monkeypatch.setattr(push, "QUEUE_MAX", 50)
    ws = _SlowSocket()
    conn = push.Connection(ws, 7, wants_hall=True)
    for seq in range(1, 31):
        conn.live(seq, f'{{"seq":{seq}}}')
    conn.offer({"type": "heartbeat", "last_seq": 30})
    assert conn.pending == 31 and conn._flusher is not None
    ws.go.set()
    await _until(lambda: conn.pending == 0)
    await asyncio.sleep(0)
    assert ws.sent == [f'{{"seq":{seq}}}' for seq in range(1, 31)] + ['{"type":"heartbeat","last_seq":30}']
    assert conn._flusher is None and conn._backlog is None  # idle again: nothing per socket but its state

    ws.go.clear()
    for seq in range(31, 31 + 51):
        conn.live(seq, f'{{"seq":{seq}}}')
    assert conn.closed and conn.pending == 0  # too slow: dropped, nothing more goes out
    conn.live(200, '{"seq":200}')
    assert conn.pending == 0
    conn.stop()


async def test_a_replay_waits_while_the_socket_is_behind(database, monkeypatch):
    monkeypatch.setattr(push, "PAGE", 20)
    monkeypatch.setattr(push, "REPLAY_HIGH", 10)
    for i in range(60):
        await row(f"e{i}", 7)
    await push.stamp(100)
    ws = _SlowSocket()
    conn = push.Connection(ws, 7, wants_hall=False)
    replay = asyncio.create_task(conn.replay_from(0))
    await asyncio.sleep(0.2)
    assert not replay.done() and conn.pending <= 10  # bounded while the socket takes nothing
    ws.go.set()
    assert await asyncio.wait_for(replay, 5)
    await _until(lambda: conn.pending == 0)
    assert [json.loads(m)["seq"] for m in ws.sent] == list(range(1, 61))
    conn.stop()


async def test_an_event_is_framed_once_as_the_websocket_library_would_frame_it():
    from websockets.frames import Frame, Opcode

    for size in (0, 1, 125, 126, 65535, 65536, 200_000):
        text = "é" * (size // 2) + "x" * (size % 2)
        assert push.ws_frame(text) == Frame(Opcode.TEXT, text.encode()).serialize(mask=False, extensions=[])


async def test_a_hub_answers_a_resume_from_memory_exactly_as_the_log_would(database, monkeypatch):
    """The events a hub delivered last (every audience, even with no socket here) answer a replay
    page for page as the database does; a position its memory does not reach goes to the log."""
    monkeypatch.setattr(push, "RECENT_MAX", 40)
    hub = push.Hub(gap_wait_s=0.01, tick_s=60)
    await hub.start()
    for i in range(30):  # before anything is in memory
        await row(f"early{i}", 7 if i % 2 else None)
    early = await push.stamp(1000)
    hub.receive(push.wire_message(early))  # nobody here: recorded, not read
    for i in range(100):
        await row(f"e{i}", (7, 8, None)[i % 3])
        if i % 7 == 6:
            hub.receive(push.wire_message(await push.stamp(1000)))
    hub.receive(push.wire_message(await push.stamp(1000)))
    assert hub.position == 130 and hub.filled == 0
    assert hub.recent(7, True, 10) is None  # memory holds the last 40..80 only
    for user, hall in ((7, True), (8, False), (9, True)):
        for after in (hub._recent_first - 1, 100, 129, 130, 150):
            for limit in (3, 1000):
                memory = hub.recent(user, hall, after, limit)
                log_page = await push.replay(user, hall, after, limit)
                assert [(e["seq"], e["text"]) for e in memory] == [(e["seq"], push.client_text(e)) for e in log_page], (user, after, limit)
                assert all(e["frame"] == push.ws_frame(e["text"]) for e in memory)
    before = hub.replays_from_memory
    assert [e["seq"] for e in await hub.replay(7, True, 5)] == [e["seq"] for e in await push.replay(7, True, 5)]
    assert hub.replays_from_memory == before  # from the log

    # A gap the hub skips (nobody here) makes it forget: memory is contiguous or nothing.
    for i in range(3):
        await row(f"g{i}", None)
    stamped = await push.stamp(1000)
    hub.receive(push.wire_message(stamped[1:]))
    assert hub.position == 133 and hub.recent(7, True, 129) is None
    await hub.stop()


async def test_a_replay_from_memory_hands_over_to_live_without_losing_or_repeating(database):
    hub = push.Hub(gap_wait_s=0.01, tick_s=60)
    await hub.start()
    for i in range(50):
        await row(f"old{i}", 7 if i % 2 else None)
    hub.receive(push.wire_message(await push.stamp(1000)))
    ws = _Socket()
    conn = push.Connection(ws, 7, wants_hall=True)
    conn.hold()
    hub.add(conn)

    async def produce():
        for i in range(60):
            await row(f"new{i}", 7 if i % 3 else 9)
            hub.receive(push.wire_message(await push.stamp(100)))
            await asyncio.sleep(0)

    producer = asyncio.create_task(produce())
    assert await conn.replay_from(10, read=hub.replay)
    await producer
    await _until(lambda: conn.pending == 0)
    await asyncio.sleep(0.05)
    assert hub.replays_from_memory >= 1
    assert [m["seq"] for m in ws.sent] == [e["seq"] for e in await db_events_for(7) if e["seq"] > 10]
    conn.stop()
    await hub.stop()
