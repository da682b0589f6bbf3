"""The admin dashboard's day-by-day figures (issue 13): today against yesterday and the last 7 days
read date ranges of four tables; these indexes keep those reads small as the tables grow. Partial
where only one state is counted, so the hot paths pay for them only when a row reaches that state.

Scheduler job failures need no table: they live in `ops_status`, one row per job (scheduler/failures.py).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0010_wechat_payouts")]

    initial = False

    operations = [
        ops.RunSQL("CREATE INDEX IF NOT EXISTS users_created_at ON users (created_at)", reverse_sql="DROP INDEX users_created_at"),
        ops.RunSQL("CREATE INDEX IF NOT EXISTS recharges_paid_day ON recharges (paid_at) WHERE status = 'paid'",
                   reverse_sql="DROP INDEX recharges_paid_day"),
        ops.RunSQL("CREATE INDEX IF NOT EXISTS withdrawals_paid_day ON withdrawals (finished_at) WHERE status = 'paid'",
                   reverse_sql="DROP INDEX withdrawals_paid_day"),
        ops.RunSQL("CREATE INDEX IF NOT EXISTS orders_completed_day ON orders (finished_at) WHERE status = 'completed'",
                   reverse_sql="DROP INDEX orders_completed_day"),
    ]
