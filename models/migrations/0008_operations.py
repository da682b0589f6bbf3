"""Operations (issue 15): request ids on audit and outbox rows, the reconciliation with WeChat Pay's
bills (runs and the differences queue), and the small status table the metrics read.

Additive only (new nullable columns, new tables), so it is an "expand" step: servers of the previous
release keep working beside it during a rolling deploy (docs/operations.md).
"""

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0007_contract_payloads")]

    initial = False

    operations = [
        ops.AddField(model_name="AuditLog", name="request_id", field=fields.CharField(max_length=64, null=True)),
        ops.AddField(model_name="Outbox", name="request_id", field=fields.CharField(max_length=64, null=True)),
        ops.CreateModel(
            name="ReconciliationRun",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("bill_date", fields.DateField(unique=True)),
                ("status", fields.CharField(max_length=16)),
                ("attempts", fields.IntField(default=1)),
                ("trade_rows", fields.IntField(default=0)),
                ("fund_rows", fields.IntField(default=0)),
                ("differences", fields.IntField(default=0)),
                ("error", fields.CharField(max_length=255, null=True)),
                ("started_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("finished_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={"table": "reconciliation_runs", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Difference",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("key", fields.CharField(unique=True, max_length=128)),
                ("bill_date", fields.DateField()),
                ("kind", fields.CharField(max_length=24)),
                ("ref_kind", fields.CharField(max_length=16, null=True)),
                ("ref_id", fields.BigIntField(null=True)),
                ("wechat_ref", fields.CharField(max_length=64, null=True)),
                ("our_amount_fen", fields.BigIntField(null=True)),
                ("wechat_amount_fen", fields.BigIntField(null=True)),
                ("details", fields.JSONField(null=True)),
                ("status", fields.CharField(max_length=16, default="open")),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("resolved_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("resolved_by", fields.BigIntField(null=True)),
                ("note", fields.CharField(max_length=500, null=True)),
            ],
            options={"table": "reconciliation_differences", "app": "models", "pk_attr": "id",
                     "indexes": [Index(fields=["status", "id"])]},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="OpsStatus",
            fields=[
                ("key", fields.CharField(primary_key=True, max_length=64)),
                ("ok", fields.BooleanField(null=True)),
                ("at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("detail", fields.JSONField(null=True)),
            ],
            options={"table": "ops_status", "app": "models", "pk_attr": "key"},
            bases=["Model"],
        ),
    ]
