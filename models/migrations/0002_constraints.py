"""CHECK constraints and partial indexes that the models declare but Tortoise does not create.

Tortoise 1.1.9 records `Meta.constraints` in the migration state but emits no CHECK for them
(tortoise/tortoise-orm#2272), so without this migration the database would accept, for example, a
negative balance written behind the code's back. On PostgreSQL they become real CHECK constraints
(ALTER TABLE ... ADD CONSTRAINT). SQLite cannot add a constraint to an existing table, and
Tortoise's fallback there (rebuilding the table) silently drops the table's indexes, unique ones
included; so on SQLite each CHECK becomes a pair of BEFORE INSERT / BEFORE UPDATE triggers that
abort with the constraint's name, which SQLite reports as a constraint violation. The partial indexes keep the sweeps and the hall cheap: they
only cover rows that can still be due.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

CHECKED_MODELS = ("Account", "Posting", "User", "Task", "Order", "ReferralReward", "Withdrawal")

PARTIAL_INDEXES = [
    ("orders_due", "orders (due_at) WHERE due_at IS NOT NULL"),
    ("tasks_open_by_deadline", "tasks (take_deadline_at) WHERE status = 'open'"),
    ("tasks_open_newest", "tasks (id) WHERE status = 'open'"),
    ("outbox_pending", "outbox (next_attempt_at) WHERE status = 'pending'"),
    ("outbox_push_pending", "outbox (id) WHERE channel = 'push' AND status = 'pending'"),
    ("referral_rewards_unsettled", "referral_rewards (id) WHERE settled_entry_id IS NULL"),
    ("withdrawals_paying", "withdrawals (id) WHERE status = 'paying'"),
    ("recharges_pending", "recharges (expires_at) WHERE status = 'pending'"),
]


def _checks(apps):
    for name in CHECKED_MODELS:
        model = apps.get_model("models", name)
        for constraint in model._meta.constraints:
            yield model, constraint


def _new_row(check: str, table_columns) -> str:
    """Rewrite a CHECK expression to read the row being written (NEW.column) in a trigger."""
    import re

    return re.sub(r"\b(" + "|".join(sorted(table_columns, key=len, reverse=True)) + r")\b", r"NEW.\1", check)


async def add_checks(apps, schema_editor) -> None:
    for model, constraint in _checks(apps):
        if schema_editor.DIALECT != "sqlite":
            await schema_editor.add_constraint(model, constraint)
            continue
        table = model._meta.db_table
        condition = _new_row(constraint.check, model._meta.fields_db_projection.values())
        for op in ("INSERT", "UPDATE"):
            await schema_editor.client.execute_script(
                f'CREATE TRIGGER "{constraint.name}_{op.lower()}" BEFORE {op} ON "{table}" '
                f"WHEN NOT ({condition}) BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {constraint.name}'); END;"
            )


async def drop_checks(apps, schema_editor) -> None:
    for model, constraint in _checks(apps):
        if schema_editor.DIALECT != "sqlite":
            await schema_editor.remove_constraint(model, constraint)
            continue
        for op in ("insert", "update"):
            await schema_editor.client.execute_script(f'DROP TRIGGER IF EXISTS "{constraint.name}_{op}"')


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    initial = False

    operations = [
        ops.RunPython(add_checks, drop_checks),
        *(
            ops.RunSQL(f"CREATE INDEX IF NOT EXISTS {name} ON {definition}", reverse_sql=f"DROP INDEX {name}")
            for name, definition in PARTIAL_INDEXES
        ),
    ]
