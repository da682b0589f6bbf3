"""The push delivery log (issue 9): a delivery sequence stamped after commit, in commit order.

- `outbox.seq`: a push row's place in the deployment's delivery log, stamped by a relay after the
  row's transaction committed (server/push.py `stamp`). Null until then; never changes after.
- `push_sequence`: one row holding the last seq handed out (`last_seq`) and the highest seq pruned
  (`pruned_seq`, a resume from below it answers `replay_truncated`). Stampers lock this row, so
  seqs are handed out one stamping transaction after another and become visible in order: when a
  reader sees seq S it sees every seq below S.
- `outbox_push_seq` (unique): the log in order (a hub filling a gap, the hall part of a replay);
  `outbox_push_user_seq`: one user's part of a replay. Both are partial: an unstamped row (the
  INSERT of every transition) costs no entry in them.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    # Reserved name for the push branch; the lead re-chains at merge.
    dependencies = [("models", "0011_admin_a")]

    initial = False

    operations = [
        ops.AddField(model_name="Outbox", name="seq", field=fields.BigIntField(null=True)),
        ops.RunSQL(
            "CREATE TABLE push_sequence (id SMALLINT NOT NULL PRIMARY KEY, last_seq BIGINT NOT NULL, "
            "pruned_seq BIGINT NOT NULL)",
            reverse_sql="DROP TABLE push_sequence",
        ),
        ops.RunSQL("INSERT INTO push_sequence (id, last_seq, pruned_seq) VALUES (1, 0, 0)",
                   reverse_sql="SELECT 1"),
        ops.RunSQL("CREATE UNIQUE INDEX IF NOT EXISTS outbox_push_seq ON outbox (seq) WHERE seq IS NOT NULL",
                   reverse_sql="DROP INDEX outbox_push_seq"),
        ops.RunSQL("CREATE INDEX IF NOT EXISTS outbox_push_user_seq ON outbox (user_id, seq) WHERE seq IS NOT NULL",
                   reverse_sql="DROP INDEX outbox_push_user_seq"),
    ]
