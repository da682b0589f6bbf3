"""The drainer's index covers only the rows it drains: pending subscription messages.

`outbox_pending` (migration 0002) indexed every pending row, push rows included, although only
the subscription drainer reads it (`channel = 'subscribe'`); the push relay has its own index
(`outbox_push_pending`). Each push row therefore cost one more index entry at insert, and three
per take. The replacement holds the subscription rows alone.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0005_take_function")]

    initial = False

    operations = [
        ops.RunSQL(
            "DROP INDEX outbox_pending",
            reverse_sql="CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (next_attempt_at) WHERE status = 'pending'",
        ),
        ops.RunSQL(
            "CREATE INDEX IF NOT EXISTS outbox_subscribe_due ON outbox (next_attempt_at) WHERE channel = 'subscribe' AND status = 'pending'",
            reverse_sql="DROP INDEX outbox_subscribe_due",
        ),
    ]
