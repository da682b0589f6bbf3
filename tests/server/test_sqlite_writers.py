"""The embedded default (SQLite) with two writing processes — the server and its scheduler, as in
`make run` — never answers "database is locked" (issue 17 item 16).

Two real processes hammer one SQLite file with the domain's own write transactions (publish, take,
submit, adjust, settings changes; sweeps, referral settlement, the subscription drainer), many of
which read before they write. Every database error either process meets is a failure; afterwards
the books are clean.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from models import ledger
from tests import personas as p
from tests.conftest import USE_POSTGRES

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 60

pytestmark = [pytest.mark.asyncio, pytest.mark.skipif(USE_POSTGRES, reason="SQLite's locking: PostgreSQL has row locks")]


async def run_role(path: str, role: str, alice_id: int, bob_id: int) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.server.sqlite_hammer", path, role, str(ROUNDS), str(alice_id), str(bob_id),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 300)
    lines = out.decode().strip().splitlines()
    assert proc.returncode == 0 and lines, f"{role}: exit {proc.returncode}\n{err.decode()[-3000:]}"
    return json.loads(lines[-1])


async def test_the_server_and_the_scheduler_write_side_by_side_without_lock_errors(database):
    path = database[len("sqlite://"):]
    alice = await p.publisher("alice", balance_fen=10_000_000)
    bob = await p.worker("bob")
    server, scheduler = await asyncio.gather(run_role(path, "server", alice.id, bob.id), run_role(path, "scheduler", alice.id, bob.id))
    errors = server["errors"] + scheduler["errors"]
    assert not errors, f"{len(errors)} database errors, e.g.:\n" + "\n".join(errors[:15])
    assert server["done"] == 4 * ROUNDS and scheduler["done"] == 4 * scheduler["rounds"] + 2, (server, scheduler)
    assert scheduler["worked"] > ROUNDS, scheduler  # its sweeps and drains really wrote (expiries, approvals, messages)
    assert await p.available(bob) == ROUNDS + scheduler["rounds"]  # every adjustment of both processes, once
    report = await ledger.audit()
    assert report.ok, report.text()
