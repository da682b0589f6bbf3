"""Every index a migration creates by SQL is `CREATE [UNIQUE] INDEX IF NOT EXISTS` (docs/operations.md,
rolling deploys): on a big database the operator builds it first with `CONCURRENTLY` under the same
name, without blocking takes and submits, and the migration then finds it instead of failing."""

from __future__ import annotations

import re
from pathlib import Path

MIGRATIONS = Path(__file__).resolve().parents[2] / "models" / "migrations"
CREATE_INDEX = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?!IF\s+NOT\s+EXISTS\b)(?!CONCURRENTLY\b)\S+", re.I)


def test_every_index_statement_of_every_migration_tolerates_a_prebuilt_index():
    files = sorted(MIGRATIONS.glob("0*.py"))
    assert len(files) >= 14
    found = {f.name: CREATE_INDEX.findall(f.read_text(encoding="utf-8")) for f in files}
    assert not {name: hits for name, hits in found.items() if hits}


def test_the_check_sees_a_plain_create_index():
    assert CREATE_INDEX.findall('ops.RunSQL("CREATE INDEX orders_x ON orders (x)")')
    assert CREATE_INDEX.findall("CREATE UNIQUE INDEX outbox_y ON outbox (y)")
    assert not CREATE_INDEX.findall("CREATE INDEX IF NOT EXISTS orders_x ON orders (x)")
