"""An index for "has this publisher completed an order before?" (issue 12, the batched sweep).

`orders.invitees_qualify` / `invitees_qualify_many` (`referral_requires_first_order`) ask, for each
completion, whether its worker and its publisher completed an order before. The worker's question
has an index, (worker_id, status); the publisher's had none, so PostgreSQL answered it by reading
every completed order (`orders_completed_day`): ~2 ms per question at 10 000 completed orders,
growing with the table. This partial index answers it with one probe.

(Depends on 0015, the end of the chain when this was written; 0016 is reserved for another branch.)
"""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0015_fair_appeals")]

    initial = False

    operations = [
        ops.RunSQL(
            "CREATE INDEX IF NOT EXISTS orders_publisher_completed ON orders (publisher_id) WHERE status = 'completed'",
            reverse_sql="DROP INDEX orders_publisher_completed",
        ),
    ]
