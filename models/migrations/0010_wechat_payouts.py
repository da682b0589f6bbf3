"""Payouts that never get stuck (issue 16): what a payout in flight knows of WeChat's bill, a hold for
an operator, a deadline for the payout checker, and the payee's real name for ¥2000 or more.

- `transfer_state`: WeChat's last known state of the bill (ACCEPTED, PROCESSING, WAIT_USER_CONFIRM,
  TRANSFERING, CANCELING ...); `payout_error`: the last transient trouble while retrying.
- `hold_reason` / `held_at`: WeChat refused the transfer for a reason no retry cures and holds no
  bill: the payout waits for an operator (the money stays in `withdrawing`).
- `payout_check_at` / `payout_checks`: the checker's deadline and backoff; `withdrawals_payout_due`
  indexes only the rows it sweeps. Payouts already in flight are due at once.
- `payee_real_name`: given with the request when WeChat needs it; erased when the withdrawal is final.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    # The chain: 0009_sessions lands first; until it is on main this follows 0008_operations.
    dependencies = [("models", "0009_sessions")]

    initial = False

    operations = [
        ops.AddField(model_name="Withdrawal", name="transfer_state", field=fields.CharField(max_length=32, null=True)),
        ops.AddField(model_name="Withdrawal", name="payee_real_name", field=fields.CharField(max_length=32, null=True)),
        ops.AddField(model_name="Withdrawal", name="hold_reason", field=fields.CharField(max_length=255, null=True)),
        ops.AddField(model_name="Withdrawal", name="held_at", field=fields.DatetimeField(null=True)),
        ops.AddField(model_name="Withdrawal", name="payout_error", field=fields.CharField(max_length=255, null=True)),
        ops.AddField(model_name="Withdrawal", name="payout_check_at", field=fields.DatetimeField(null=True)),
        ops.AddField(model_name="Withdrawal", name="payout_checks", field=fields.IntField(default=0)),
        ops.RunSQL(
            "UPDATE withdrawals SET payout_check_at = COALESCE(decided_at, created_at) WHERE status = 'paying'",
            reverse_sql="SELECT 1",
        ),
        ops.RunSQL(
            "CREATE INDEX IF NOT EXISTS withdrawals_payout_due ON withdrawals (payout_check_at) "
            "WHERE status = 'paying' AND hold_reason IS NULL",
            reverse_sql="DROP INDEX withdrawals_payout_due",
        ),
    ]
