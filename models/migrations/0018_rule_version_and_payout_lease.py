"""The rule that set an appeal's answer deadline decides it; one payout round at a time.

- orders: `answer_rule_version` and `answer_rule_params`, the publisher_loss_rate rule as it stood
  when it set `answer_due_at`. The automatic decision is recorded with them, not with whatever the
  rule has become since (null on orders appealed before this migration: the rule in force decides,
  as before).
- withdrawals: `payout_lease_until`, the lease of the payout round in flight (server/wechat_payouts.py):
  an operator's re-query takes the round only when no checker holds it, and a checker only when no
  re-query does (null: no round runs).

Expand-only. While a rolling deploy runs, a checker of the release before takes no lease, so a new
server's re-query can still meet its round (as it always could before); money stays safe either way
(every settlement is a conditional transition).
"""

import functools
from json import dumps, loads

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

_JSON = dict(encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads)


class Migration(migrations.Migration):
    dependencies = [("models", "0017_sweep_indexes")]

    initial = False

    operations = [
        ops.AddField(model_name="Order", name="answer_rule_version", field=fields.IntField(null=True)),
        ops.AddField(model_name="Order", name="answer_rule_params", field=fields.JSONField(null=True, **_JSON)),
        ops.AddField(model_name="Withdrawal", name="payout_lease_until", field=fields.DatetimeField(null=True)),
    ]
