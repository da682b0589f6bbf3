"""The backup procedure of docs/operations.md, run for real: `pg_dump -Fc` of a live database,
`pg_restore` into a new one, then the ledger audit on the restored copy proves the books whole."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from models import orders, tasks
from tests import personas as p
from tests.conftest import TEST_DATABASE_URL

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]


async def test_a_dump_restores_into_a_database_whose_ledger_audit_is_clean(database, tmp_path):
    if not shutil.which("pg_dump") or not shutil.which("pg_restore"):
        pytest.skip("pg_dump / pg_restore not installed")
    alice = await p.publisher("alice", balance_fen=50_000)
    bob = await p.worker("bob")
    task = await tasks.publish(alice.id, title="t", instructions="i", unit_price_fen=1_000, quantity=3)
    order = await orders.take(task.id, bob.id)
    await orders.submit(order.id, bob.id)
    await orders.approve(order.id, alice.id)
    balances = (await p.available(alice), await p.available(bob))

    source = database.split("?")[0]
    dump = tmp_path / "market.dump"
    subprocess.run(["pg_dump", "-Fc", "--no-owner", "-f", str(dump), source], check=True, timeout=120)
    base, _, _ = TEST_DATABASE_URL.rpartition("/")
    name = f"market_restore_{uuid.uuid4().hex[:8]}"
    import asyncpg

    admin = await asyncpg.connect(TEST_DATABASE_URL.split("?")[0])
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "-d", f"{base}/{name}", str(dump)], check=True, timeout=120)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MARKET")} | {"DATABASE_URL": f"{base}/{name}"}
        audit = subprocess.run([sys.executable, "-m", "server", "ledger-audit"], env=env, capture_output=True, text=True, timeout=120)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert "CLEAN" in audit.stdout
        restored = await asyncpg.connect(f"{base}/{name}")
        try:
            got = [await restored.fetchval("SELECT balance_fen FROM accounts WHERE code = $1", f"u:{u.id}:available")
                   for u in (alice, bob)]
        finally:
            await restored.close()
        assert tuple(got) == balances
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
