"""Tortoise's SQLite engine, set up for several writing processes (the server and its scheduler,
`make run`): `models/db.py` names this module as the engine of every `sqlite://` URL.

SQLite lets one connection write at a time. Three settings make the others wait their turn instead
of failing with "database is locked":

1. WAL journal (Tortoise's default, kept): readers never block the writer nor the writer them.
2. A busy timeout (BUSY_TIMEOUT_MS): a connection that finds the write lock taken waits for it.
3. Write transactions start with `BEGIN IMMEDIATE`, which takes the write lock at once, waiting
   under the busy timeout. Tortoise's plain `BEGIN` is deferred: the transaction starts as a reader
   and asks for the write lock at its first write — and if another process has committed since the
   transaction's first read, SQLite refuses that upgrade at once (SQLITE_BUSY, "database is locked";
   the busy timeout does not apply, since waiting could not help: the snapshot is already stale).
   Most of our transactions read before they write (a settings change, a sweep's claim, the
   subscription drainer's claim), so that is what failed under load.

A connection's thread (aiosqlite runs each connection in its own thread) is a daemon: a connection
that its owner failed to close — a shutdown that skipped its last listeners — must never keep the
process alive after Ctrl-C. The database owes nothing to a clean close: with WAL, an exit with a
connection open is as safe as a crash, which SQLite is built to survive (committed transactions
are in the WAL file and are checkpointed at the next open). The server still closes its connections
(server/app.py, scheduler/runner.py); this is the guarantee when something goes wrong.

Read-only transactions that want one consistent snapshot (the ledger audit: `db.read_transaction`)
start deferred instead, so a long read never holds the write lock. Write transactions are kept short
(one row per sweep transaction, bounded batches elsewhere), because everyone else waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sqlite3

import aiosqlite
from tortoise.backends.base.client import NestedTransactionContext, TransactionContext
from tortoise.backends.sqlite.client import SqliteClient, SqliteTransactionContext, SqliteTransactionWrapper
from tortoise.connection import get_connections
from tortoise.exceptions import TransactionManagementError

BUSY_TIMEOUT_MS = 15_000
# Set by `db.read_transaction()`: the transaction begun in this context only reads.
read_only: contextvars.ContextVar[bool] = contextvars.ContextVar("sqlite_read_only_transaction", default=False)


class TransactionWrapper(SqliteTransactionWrapper):
    def _in_transaction(self) -> TransactionContext:
        return NestedTransactionContext(TransactionWrapper(self))  # a savepoint inside ours

    async def begin(self) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN" if read_only.get() else "BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransactionManagementError(exc) from exc


class TransactionContextSafe(SqliteTransactionContext):
    """Tortoise's, except when entering fails after the lock is taken. Tortoise's `__aenter__` takes
    the connection's lock and then runs BEGIN; a cancellation during BEGIN (a task stopped at that
    moment: the push relay when the server stops) leaves `__aexit__` unrun and the lock taken for
    ever, and every later query of the process waits on it. Here the lock is given back, after a
    rollback of whatever BEGIN managed to start (the connection's thread runs it before the next
    statement, so the next transaction starts clean)."""

    async def __aenter__(self):
        await self._trxlock.acquire()
        entered = False
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
            try:
                await self.connection.begin()
            except BaseException:
                get_connections().reset(self.token)
                raise
            entered = True
            return self.connection
        finally:
            if not entered:
                try:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self.connection._connection.rollback())
                finally:
                    self._trxlock.release()


class Client(SqliteClient):
    def __init__(self, file_path: str, **kwargs) -> None:
        kwargs.setdefault("busy_timeout", BUSY_TIMEOUT_MS)
        # With WAL, NORMAL syncs at checkpoints, not at every commit: commits (and so the time the
        # write lock is held) get much shorter; a power cut may lose the last commits, never corrupt
        # the file. SQLite is the development default only: production refuses it (server/config.py).
        kwargs.setdefault("synchronous", "NORMAL")
        super().__init__(file_path, **kwargs)

    def _in_transaction(self) -> TransactionContext:
        return TransactionContextSafe(TransactionWrapper(self), self._lock)

    async def create_connection(self, with_db: bool) -> None:
        """Tortoise's own (tortoise/backends/sqlite/client.py, 1.1.9), with a daemon thread."""
        if not self._connection:
            connection = aiosqlite.connect(self.filename, isolation_level=None)
            connection._thread.daemon = True  # not started yet: it starts when awaited
            self._connection = await connection
            self._connection._conn.row_factory = sqlite3.Row
            for pragma, val in self.pragmas.items():
                cursor = await self._connection.execute(f"PRAGMA {pragma}={val}")
                await cursor.close()
            await self._post_connect()


client_class = Client
