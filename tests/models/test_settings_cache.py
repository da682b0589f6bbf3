"""The settings cache (issue 17, item 7): a change made by any process is in force in every process
within `CACHE_TTL_S` (1 s) — for every request, not only for the one that happens to refresh the
cache (the others used to get the old value meanwhile, however old)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from tortoise.expressions import F

from models import settings as market_settings
from models.settings import SettingsRow


async def change_elsewhere(**changes) -> None:
    """What another server process does: write the row, without touching this process's cache."""
    row = await SettingsRow.get(id=1)
    await SettingsRow.filter(id=1).update(values=row.values | changes, version=F("version") + 1)


@pytest.mark.asyncio
async def test_after_the_bound_every_concurrent_reader_gets_the_new_value(database, monkeypatch):
    monkeypatch.setattr(market_settings, "CACHE_TTL_S", 0.05)
    old = (await market_settings.current()).countdown_s
    await change_elsewhere(countdown_s=old - 60)
    await asyncio.sleep(0.06)  # past the bound
    seen = await asyncio.gather(*(market_settings.current() for _ in range(8)))
    assert [s.countdown_s for s in seen] == [old - 60] * 8


@pytest.mark.asyncio
async def test_within_the_bound_readers_share_one_database_read(database, monkeypatch):
    monkeypatch.setattr(market_settings, "CACHE_TTL_S", 30)
    reads = []
    real = market_settings._read

    async def counted():
        reads.append(1)
        return await real()

    monkeypatch.setattr(market_settings, "_read", counted)
    market_settings.invalidate_cache()
    first = await asyncio.gather(*(market_settings.current() for _ in range(20)))
    again = await market_settings.current()
    assert len(reads) == 1 and all(s == again for s in first)


@pytest.mark.asyncio
async def test_a_slow_read_that_began_before_the_bound_is_not_handed_to_later_readers(database, monkeypatch):
    """A read started before a change and still running after the bound must not serve callers
    who arrive after the bound: they start their own read."""
    monkeypatch.setattr(market_settings, "CACHE_TTL_S", 0.05)
    real = market_settings._read
    gate = asyncio.Event()

    async def slow_first_read():
        value = await real()
        await gate.wait()
        return value

    market_settings.invalidate_cache()
    monkeypatch.setattr(market_settings, "_read", slow_first_read)
    before = asyncio.ensure_future(market_settings.current())
    await asyncio.sleep(0.01)
    monkeypatch.setattr(market_settings, "_read", real)
    old = (await SettingsRow.get(id=1)).values["countdown_s"]
    await change_elsewhere(countdown_s=old - 30)
    await asyncio.sleep(0.06)
    late = await asyncio.wait_for(market_settings.current(), 5)
    assert late.countdown_s == old - 30
    gate.set()
    assert (await before).countdown_s == old  # the early caller got the value of its own time
    assert (await market_settings.current()).countdown_s == old - 30  # and it did not overwrite the cache


@pytest.mark.asyncio
async def test_the_process_that_makes_a_change_sees_it_at_once(database):
    s = await market_settings.current()
    await market_settings.update({"countdown_s": s.countdown_s - 1}, operator_id=1)
    assert (await market_settings.current()).countdown_s == s.countdown_s - 1


@pytest.mark.asyncio
async def test_a_cancelled_caller_does_not_fail_the_others_waiting_on_the_same_read(database, monkeypatch):
    monkeypatch.setattr(market_settings, "CACHE_TTL_S", 30)
    real = market_settings._read
    gate = asyncio.Event()

    async def slow():
        await gate.wait()
        return await real()

    market_settings.invalidate_cache()
    monkeypatch.setattr(market_settings, "_read", slow)
    first = asyncio.ensure_future(market_settings.current())
    await asyncio.sleep(0.01)
    second = asyncio.ensure_future(market_settings.current())
    await asyncio.sleep(0.01)
    first.cancel()
    gate.set()
    assert dataclasses.is_dataclass(await asyncio.wait_for(second, 5))
