"""Reasoned rejections, answered appeals, automatic appeal rules and the compliance gate (issue 14 §2, §4).

- tasks: `criteria` (acceptance criteria), `hold_reason`/`held_at` (the compliance gate holds a task
  for an operator; status `held`, then `open` or `refused`).
- orders: `reject_criterion`; the publisher's answer to an appeal (`answer_text`, `answer_image`,
  `answered_at`) and `answer_due_at`, the deadline a rule set for it (swept through a partial index).
- appeal_rules / appeal_auto_decisions: the rules deciding appeals without an operator, and each
  decision they made with the rule as it stood.
- compliance_terms: prohibited words (defaults inserted on first use, models/compliance.py);
  content_checks: WeChat content security verdicts per task.
"""

import functools
from json import dumps, loads

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

_JSON = dict(encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads)


class Migration(migrations.Migration):
    dependencies = [("models", "0014_fair_records")]

    initial = False

    operations = [
        ops.AddField(model_name="Task", name="criteria", field=fields.JSONField(null=True, **_JSON)),
        ops.AddField(model_name="Task", name="hold_reason", field=fields.CharField(max_length=255, null=True)),
        ops.AddField(model_name="Task", name="held_at", field=fields.DatetimeField(null=True)),
        ops.AddField(model_name="Order", name="reject_criterion", field=fields.CharField(max_length=100, null=True)),
        ops.AddField(model_name="Order", name="answer_text", field=fields.CharField(max_length=500, null=True)),
        ops.AddField(model_name="Order", name="answer_image", field=fields.CharField(max_length=255, null=True)),
        ops.AddField(model_name="Order", name="answered_at", field=fields.DatetimeField(null=True)),
        ops.AddField(model_name="Order", name="answer_due_at", field=fields.DatetimeField(null=True)),
        ops.RunSQL(
            "CREATE INDEX IF NOT EXISTS orders_answer_due ON orders (answer_due_at) WHERE status = 'appealing' AND answered_at IS NULL",
            reverse_sql="DROP INDEX orders_answer_due",
        ),
        ops.RunSQL("CREATE INDEX IF NOT EXISTS tasks_held ON tasks (held_at) WHERE status = 'held'", reverse_sql="DROP INDEX tasks_held"),
        ops.CreateModel(
            name="AppealRule",
            fields=[
                ("id", fields.IntField(primary_key=True, unique=True, db_index=True)),
                ("kind", fields.CharField(max_length=32, unique=True)),
                ("enabled", fields.BooleanField(default=False)),
                ("params", fields.JSONField(**_JSON)),
                ("version", fields.IntField(default=1)),
                ("updated_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={"table": "appeal_rules", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="AppealAutoDecision",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("order_id", fields.BigIntField(db_index=True)),
                ("user_id", fields.BigIntField(null=True)),
                ("rule_kind", fields.CharField(max_length=32)),
                ("rule_version", fields.IntField()),
                ("rule_params", fields.JSONField(**_JSON)),
                ("outcome", fields.CharField(max_length=32)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={"table": "appeal_auto_decisions", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ComplianceTerm",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("category", fields.CharField(max_length=32)),
                ("term", fields.CharField(max_length=64, unique=True)),
                ("enabled", fields.BooleanField(default=True)),
                ("shipped", fields.BooleanField(default=False)),
                ("updated_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={"table": "compliance_terms", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ContentCheck",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("task_id", fields.BigIntField(db_index=True)),
                ("kind", fields.CharField(max_length=8)),
                ("trace_id", fields.CharField(max_length=64, null=True, unique=True)),
                ("suggest", fields.CharField(max_length=16)),
                ("label", fields.IntField(null=True)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("decided_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={"table": "content_checks", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
    ]
