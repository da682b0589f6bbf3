"""A task cancelled while its SQLite transaction is beginning gives the connection back
(models/sqlite_engine.py `TransactionContextSafe`): Tortoise's own context kept the lock for ever,
and the next query of the process (a server's shutdown, the next test) waited on it."""

from __future__ import annotations

import asyncio

import pytest
from tortoise.transactions import in_transaction

from models import db, sqlite_engine
from tests.conftest import USE_POSTGRES

pytestmark = pytest.mark.skipif(USE_POSTGRES, reason="the SQLite engine's transaction context")


@pytest.mark.asyncio
async def test_a_transaction_cancelled_during_begin_gives_the_connection_back(database, monkeypatch):
    real_begin = sqlite_engine.TransactionWrapper.begin
    started = asyncio.Event()

    async def slow_begin(self):
        await real_begin(self)  # BEGIN ran on the connection's thread ...
        started.set()
        await asyncio.sleep(60)  # ... and the task is stopped before it gets its connection back

    monkeypatch.setattr(sqlite_engine.TransactionWrapper, "begin", slow_begin)

    async def writer():
        async with in_transaction():
            await db.execute("UPDATE users SET nickname = 'never' WHERE id = -1")

    task = asyncio.create_task(writer())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.setattr(sqlite_engine.TransactionWrapper, "begin", real_begin)

    async def next_transaction():
        async with in_transaction():
            return await db.fetch("SELECT COUNT(*) AS n FROM users")

    rows = await asyncio.wait_for(next_transaction(), timeout=5)  # not waiting for ever on the lock
    assert rows[0]["n"] >= 0
