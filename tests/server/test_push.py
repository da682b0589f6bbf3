"""The push relay and replay at the database level."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from models import clock
from models.outbox import Outbox, OutboxStatus
from server import push

pytestmark = pytest.mark.asyncio


async def row(event: str, user_id: int | None, created_at: dt.datetime, status=OutboxStatus.PENDING) -> Outbox:
    return await Outbox.create(channel="push", event=event, user_id=user_id, payload={"e": event}, status=status,
                               next_attempt_at=created_at, created_at=created_at)


async def test_each_pending_push_row_is_claimed_once_in_id_order(database):
    now = clock.now()
    rows = [await row(f"e{i}", None, now) for i in range(5)]
    await Outbox.create(channel="subscribe", event="sub", user_id=1, payload={}, next_attempt_at=now, created_at=now)
    first = await push.claim(3)
    second = await push.claim(10)
    assert [e["id"] for e in first] == [r.id for r in rows[:3]]
    assert [e["id"] for e in second] == [r.id for r in rows[3:]]
    assert await push.claim(10) == []  # subscription rows are not the relay's


async def test_a_replay_covers_an_event_that_committed_after_a_newer_one_was_seen(database):
    now = clock.now()
    late = await row("late", 7, now)  # its transaction inserted first but committed last
    seen = await row("seen", 7, now + dt.timedelta(seconds=1), OutboxStatus.SENT)
    other = await row("other", 8, now)
    hall = await row("hall", None, now + dt.timedelta(seconds=2))
    replayed = await push.replay(7, True, seen.id)
    assert [e["id"] for e in replayed] == [late.id, seen.id, hall.id]  # the client drops `seen` by id
    assert other.id not in [e["id"] for e in await push.replay(7, True, 0)]
    assert [e["id"] for e in await push.replay(7, False, 0)] == [late.id, seen.id]


async def test_the_overlap_does_not_reach_back_further_than_its_window(database):
    now = clock.now()
    old = await row("old", 7, now - dt.timedelta(seconds=push.REPLAY_OVERLAP_S + 5), OutboxStatus.SENT)
    seen = await row("seen", 7, now, OutboxStatus.SENT)
    assert old.id not in [e["id"] for e in await push.replay(7, True, seen.id)]


async def test_a_claim_by_ids_takes_exactly_those_pending_push_rows_once(database):
    now = clock.now()
    rows = [await row(f"e{i}", None, now) for i in range(4)]
    sent = await row("sent", None, now, OutboxStatus.SENT)
    sub = await Outbox.create(channel="subscribe", event="sub", user_id=1, payload={}, next_attempt_at=now, created_at=now)
    claimed = await push.claim_ids([rows[2].id, rows[0].id, sent.id, sub.id, 987_654])
    assert [e["id"] for e in claimed] == [rows[0].id, rows[2].id]  # in id order; sent/subscribe/unknown ignored
    assert await push.claim_ids([rows[0].id, rows[2].id]) == []  # never twice
    assert [e["id"] for e in await push.claim(10)] == [rows[1].id, rows[3].id]  # the scan finds the rest
    assert (await Outbox.get(id=sub.id)).status == OutboxStatus.PENDING


class _Bus:
    def __init__(self) -> None:
        self.published: list[int] = []

    async def publish(self, events) -> None:
        self.published += [e["id"] for e in events]


async def _until(predicate, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_the_relay_claims_poked_ids_at_once_and_finds_unannounced_rows_by_its_periodic_scan(database):
    bus = _Bus()
    relay = push.Relay(bus, interval_s=0.3, gather_s=0.0)
    relay.start()
    try:
        await _until(lambda: relay._last_scan > 0)  # the first scan (nothing pending) is done
        now = clock.now()
        announced = [await row("a", 1, now), await row("b", None, now)]
        unannounced = await row("c", 2, now)
        relay.poke([r.id for r in announced])
        await _until(lambda: len(bus.published) >= 2, timeout_s=0.25)  # well before the next scan
        assert bus.published == [r.id for r in announced]
        await _until(lambda: unannounced.id in bus.published)  # the periodic scan, ids or not
        keep_poking = asyncio.create_task(_poke_forever(relay))  # a busy relay still scans
        try:
            late = await row("d", 3, clock.now())
            await _until(lambda: late.id in bus.published)
        finally:
            keep_poking.cancel()
        assert sorted(bus.published) == sorted(set(bus.published))  # nothing published twice
    finally:
        await relay.stop()


async def _poke_forever(relay) -> None:
    while True:
        relay.poke([])
        await asyncio.sleep(0.01)


async def test_a_claimed_event_on_the_wire_is_the_event_a_replay_gives(database):
    """The relay splices the stored payload into its message; a replay decodes it: same event."""
    now = clock.now()
    hall = await Outbox.create(channel="push", event="hall.task_published", user_id=None, created_at=now, next_attempt_at=now,
                               payload={"task_id": 7, "title": "扫码 \"quoted\" \\ back", "price": 150, "tags": [1, None]})
    mine = await row("order.changed", 42, now)
    wired = await push.claim_ids([hall.id, mine.id])
    replayed = await push.replay(42, True, 0)
    assert json.loads(push.wire_message(wired)) == replayed
    assert replayed[0]["data"]["title"] == "扫码 \"quoted\" \\ back" and replayed[1]["user_id"] == 42


async def test_the_in_process_bus_delivers_the_wire_events_to_the_sockets_that_want_them(database):
    hub = push.Hub()
    bus = push.InProcessBus(hub)
    got: dict[str, list] = {"hall": [], "u7": [], "u8": []}

    class Sink:
        def __init__(self, name, user_id, wants_hall):
            self.name, self.user_id, self.wants_hall = name, user_id, wants_hall

        def offer(self, message):
            got[self.name].append(message)

    hub.add(Sink("hall", 5, True))
    hub.add(Sink("u7", 7, False))
    hub.add(Sink("u8", 8, False))
    now = clock.now()
    rows = [await row("hall.x", None, now), await row("mine", 7, now)]
    await bus.publish(await push.claim_ids([r.id for r in rows]))
    assert [m["type"] for m in got["hall"]] == ["hall.x"] and [m["type"] for m in got["u7"]] == ["mine"]
    assert got["u8"] == [] and "user_id" not in got["u7"][0] and got["u7"][0]["data"] == {"e": "mine"}


@pytest.mark.postgres
async def test_relays_racing_by_scan_and_by_id_claim_every_row_exactly_once(database):
    """The losing side of the relay race: two workers' scans and id claims over the same rows at
    once (PostgreSQL: SKIP LOCKED on the scan, the id claim waits and re-checks the status)."""
    now = clock.now()
    rows = [await row(f"e{i}", i % 5 or None, now) for i in range(300)]
    ids = [r.id for r in rows]
    claims = [push.claim(40) for _ in range(6)]
    claims += [push.claim_ids(ids[i::3]) for i in range(3)]
    claims += [push.claim_ids(ids[::-7])]
    results = await asyncio.gather(*claims)
    leftovers = await push.claim(500)
    claimed = [e["id"] for batch in results for e in batch] + [e["id"] for e in leftovers]
    assert sorted(claimed) == ids  # each row once: none lost, none twice
    assert await Outbox.filter(id__in=ids, status=OutboxStatus.PENDING).count() == 0
