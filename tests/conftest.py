"""Test fixtures: a migrated database per test (SQLite by default, PostgreSQL with
TEST_DATABASE_URL), personas, and a movable clock.

The schema is built by the real migrations (so the CHECK constraints and partial indexes under test
are the ones production has), once per session; each test then starts from empty tables: a fresh
copy of the migrated SQLite file, or TRUNCATE on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid

import pytest
import pytest_asyncio
from sanic import Sanic
from tortoise import Tortoise

from models import clock, db
from models import settings as market_settings

Sanic.test_mode = True

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
USE_POSTGRES = TEST_DATABASE_URL.startswith(("postgres://", "asyncpg://"))

# Settings used by the tests: round numbers that make the arithmetic easy to check by hand.
TEST_SETTINGS = dict(
    referral_requires_first_order=0,  # the money tests state the base rule; tests/models/test_compliance.py turns it on
    min_unit_price_fen=100,
    max_unit_price_fen=100_000,
    max_quantity=1_000,
    publish_fee_bp=1_000,
    worker_invite_bp=500,
    publisher_invite_bp=2_000,
    withdraw_fee_bp=100,
    min_withdraw_fen=100,
    daily_withdraw_cap_fen=1_000_000,
    max_orders_in_progress=3,
    take_window_s=180,
    countdown_s=300,
    review_window_s=1_200,
    appeal_window_s=600,
)


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres: needs PostgreSQL (concurrency); skipped on SQLite")


# Tests that start real processes (servers, schedulers, a browser) and wait on them: the operating
# system's scheduling on a busy 2-core machine can delay them past a deadline. Each may run once
# more after a failure (pytest-rerunfailures; the report shows it as "R"); a test that fails twice
# fails the run. Logic tests never rerun.
RERUN_ONCE = (
    "tests/api/test_flash_crowd.py", "tests/api/test_push_across_processes.py", "tests/api/test_push_exact.py",
    "tests/api/test_settings_across_processes.py", "tests/deploy/", "tests/scheduler/test_subscriptions_across_stops.py",
    "tests/server/test_config_values.py", "tests/server/test_ctrl_c.py", "tests/server/test_keys.py",
    "tests/server/test_sqlite_writers.py", "tests/admin/browser/",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(RERUN_ONCE):
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))
    if USE_POSTGRES:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set TEST_DATABASE_URL")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


def _admin_url(url: str) -> tuple[str, str]:
    base, _, name = url.rpartition("/")
    return base, name.split("?")[0]


@pytest.fixture(scope="session")
def database_template(tmp_path_factory):
    """Migrate one database for the whole session; yield the URL tests connect to."""
    if USE_POSTGRES:
        base, _ = _admin_url(TEST_DATABASE_URL)
        name = f"market_test_{uuid.uuid4().hex[:8]}"
        url = f"{base}/{name}"

        async def create():
            import asyncpg

            conn = await asyncpg.connect(TEST_DATABASE_URL.replace("asyncpg://", "postgres://").split("?")[0])
            await conn.execute(f'CREATE DATABASE "{name}"')
            await conn.close()
            await db.migrate_db(url)

        asyncio.run(create())
        yield url

        async def drop():
            import asyncpg

            conn = await asyncpg.connect(TEST_DATABASE_URL.replace("asyncpg://", "postgres://").split("?")[0])
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.close()

        asyncio.run(drop())
    else:
        path = tmp_path_factory.mktemp("db") / "template.sqlite3"
        asyncio.run(db.migrate_db(f"sqlite://{path}"))
        yield str(path)


TABLES = (
    "postings", "journal_entries", "referral_rewards", "orders", "tasks", "withdrawals", "recharges",
    "accounts", "outbox", "audit_log", "market_settings", "uploads", "users",
    "reconciliation_runs", "reconciliation_differences", "ops_status",
    "operators", "operator_login_throttle", "api_sessions", "operator_sessions", "push_sequence",
    "user_records", "publisher_blocks",
    "appeal_rules", "appeal_auto_decisions", "compliance_terms", "content_checks",
)


@pytest_asyncio.fixture
async def database(database_template, tmp_path):
    """A connected, empty, seeded database for one test; yields its URL."""
    clock.reset()
    from scheduler import sweeper

    sweeper._task_backoff.clear()  # ids restart with every test's empty tables
    from scheduler import outbox as subscription_outbox

    subscription_outbox.allow_rounds()  # a scheduler stopped by an earlier test asked its rounds to stop
    if USE_POSTGRES:
        url = f"{database_template}?maxsize=40"
        await Tortoise.init(config=db.tortoise_config(url))
        await db.conn().execute_script(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        await _forget_redis_keys_of(url)  # ids restart: an earlier test's rate limits and marks must not apply
    else:
        path = tmp_path / "test.sqlite3"
        shutil.copy(database_template, path)
        url = f"sqlite://{path}"
        await Tortoise.init(config=db.tortoise_config(url))
    market_settings.set_seed(TEST_SETTINGS)
    market_settings.invalidate_cache()
    from models.ledger import ensure_platform_accounts

    await ensure_platform_accounts()
    await market_settings.ensure_settings_row()
    try:
        yield url
    finally:
        market_settings.invalidate_cache()
        clock.reset()
        await Tortoise.close_connections()


TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def _forget_redis_keys_of(database_url: str) -> None:
    """Delete the test Redis keys under the namespace server processes derive from `database_url`
    (every PostgreSQL test shares one database, so one namespace: a test's users would otherwise
    inherit the rate-limit counters of an earlier test's users with the same ids)."""
    from redis import asyncio as redis_asyncio

    from server.config import default_redis_namespace

    r = redis_asyncio.from_url(TEST_REDIS_URL)
    try:
        keys = [k async for k in r.scan_iter(match=f"{default_redis_namespace(database_url)}:*", count=1000)]
        if keys:
            await r.delete(*keys)
    except (OSError, redis_asyncio.RedisError):  # no Redis here: the tests that need one skip
        pass
    finally:
        await r.aclose()


async def connect_test_redis():
    """A redis.asyncio client on TEST_REDIS_URL (the caller closes it); skips the test when no
    Redis answers there."""
    from redis import asyncio as redis_asyncio

    r = redis_asyncio.from_url(TEST_REDIS_URL)
    try:
        await r.ping()
    except Exception:  # noqa: BLE001
        await r.aclose()
        pytest.skip("no Redis at TEST_REDIS_URL")
    return r
