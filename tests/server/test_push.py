"""The push relay and replay at the database level."""

from __future__ import annotations

import datetime as dt

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
