"""Database wiring: the Tortoise config, schema migrations, and a tiny raw-SQL helper.

Most queries go through the ORM. A handful of hot statements need `UPDATE ... RETURNING` (to learn
what a conditional update changed without reading first), which Tortoise's query builder does not
offer; `fetch()` runs those on the connection of the current transaction, with `$1`-style
placeholders on both backends (SQLite understands `?1`, which we rewrite to).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient

MODEL_MODULES = [
    "models.users",
    "models.settings",
    "models.ledger",
    "models.tasks",
    "models.orders",
    "models.referrals",
    "models.withdrawals",
    "models.recharges",
    "models.outbox",
    "models.audit",
    "models.uploads",
    "models.operators",
    "models.sessions",
    "models.reconciliation",
    "models.ops_status",
    "models.records",
    "models.blocks",
    "models.appeals",
    "models.compliance",
]

_PLACEHOLDER = re.compile(r"\$(\d+)")


async def _keep_session(connection) -> None:
    """Hand a connection back to the pool as it is (asyncpg's pool `reset`).

    asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`
    on every release: one more round trip per query outside a transaction. This application leaves
    no session state behind (no advisory locks, cursors, LISTEN or session-level SET; the one SET
    is `SET TRANSACTION`), and asyncpg still rolls back a transaction left open before this runs.
    """


def tortoise_config(db_url: str) -> dict[str, Any]:
    from tortoise.backends.base.config_generator import expand_db_url

    connection: Any = db_url
    if db_url.startswith(("postgres://", "asyncpg://")):
        connection = expand_db_url(db_url)
        connection["credentials"]["reset"] = _keep_session
    elif db_url.startswith("sqlite://"):
        # Our engine: WAL, a busy timeout, BEGIN IMMEDIATE (models/sqlite_engine.py). Pragmas in the
        # URL's query string (?busy_timeout=30000) still override its defaults.
        connection = expand_db_url(db_url)
        connection["engine"] = "models.sqlite_engine"
    return {
        "connections": {"default": connection},
        "apps": {
            "models": {
                "models": MODEL_MODULES,
                "default_connection": "default",
                "migrations": "models.migrations",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


async def init_db(db_url: str, *, migrate: bool = True) -> None:
    """Open the connections and bring the schema up to date with the migrations."""
    if migrate:
        await migrate_db(db_url)
    # The global fallback makes the connections visible to every task of the process (Sanic's
    # request handlers run in tasks that do not inherit the listener's context).
    await Tortoise.init(config=tortoise_config(db_url), _enable_global_fallback=True)
    from models.ledger import ensure_platform_accounts
    from models.settings import ensure_settings_row

    await ensure_platform_accounts()
    await ensure_settings_row()


async def migrate_db(db_url: str) -> None:
    from tortoise.migrations.api import migrate

    await migrate(config=tortoise_config(db_url))
    await Tortoise.close_connections()


async def close_db() -> None:
    await Tortoise.close_connections()


@contextlib.asynccontextmanager
async def read_transaction():
    """A transaction that only reads, for one consistent snapshot across several queries:
    REPEATABLE READ READ ONLY on PostgreSQL; on SQLite a deferred transaction, so that a long read
    never holds the write lock every writer waits for (models/sqlite_engine.py)."""
    from tortoise.transactions import in_transaction

    from models import sqlite_engine

    token = sqlite_engine.read_only.set(True)
    try:
        async with in_transaction() as connection:
            if connection.capabilities.dialect == "postgres":
                await execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield connection
    finally:
        sqlite_engine.read_only.reset(token)


def conn() -> BaseDBAsyncClient:
    """The connection of the current transaction, if one is open in this context, else the pool."""
    return connections.get("default")


def dialect() -> str:
    return conn().capabilities.dialect


def is_postgres() -> bool:
    return dialect() == "postgres"


async def fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
    """Run one statement with `$n` placeholders and return its rows as dicts."""
    c = conn()
    if c.capabilities.dialect != "postgres":
        sql = _PLACEHOLDER.sub(r"?\1", sql)
    # execute_query_dict always fetches (execute_query drops the rows of UPDATE/INSERT ... RETURNING
    # on asyncpg).
    return await c.execute_query_dict(sql, list(args))


async def fetch_one(sql: str, *args: Any) -> dict[str, Any] | None:
    rows = await fetch(sql, *args)
    return rows[0] if rows else None


async def fetch_row_postgres(sql: str, *args: Any):
    """PostgreSQL only: one statement straight on asyncpg (the transaction's connection, if one is
    open, else one from the pool), without the ORM's layers; asyncpg's own exceptions come through,
    SQLSTATE included. For the hottest statements (the take)."""
    async with conn().acquire_connection() as connection:
        return await connection.fetchrow(sql, *args)


async def fetch_postgres(sql: str, *args: Any) -> list:
    """PostgreSQL only: `fetch_row_postgres` for a statement that returns several rows (asyncpg Records)."""
    async with conn().acquire_connection() as connection:
        return await connection.fetch(sql, *args)


async def execute(sql: str, *args: Any) -> int:
    """Run one statement and return the number of rows it touched."""
    c = conn()
    if c.capabilities.dialect != "postgres":
        sql = _PLACEHOLDER.sub(r"?\1", sql)
    n, _ = await c.execute_query(sql, list(args))
    return n


# For the `tortoise` CLI (makemigrations / sqlmigrate): `tortoise -c models.db.TORTOISE_ORM ...`
def _cli_url() -> str:
    import os

    return os.environ.get("DATABASE_URL", "sqlite:///tmp/market-makemigrations.sqlite3")


TORTOISE_ORM = tortoise_config(_cli_url())
