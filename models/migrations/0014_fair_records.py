"""Fair by construction, records and blocks (issue 14, parts 1 and 3).

1. `user_records`: each user's record over the window (models/records.py), refreshed by the
   scheduler; the take reads the worker's row (limits, qualification) by primary key.
2. `publisher_blocks`: a publisher's blocked workers (models/blocks.py). Unique (publisher_id,
   worker_id) is the take's probe; (worker_id) serves the hall; (publisher_id, id) the list pages.
3. `tasks.min_approval_bp`, `tasks.min_completed_orders`: who may take the task (0 = anybody).
4. `market_take` (PostgreSQL) is replaced as a whole (DROP + CREATE: a function's result type
   cannot change in place), with the same arguments and one more result column at the end,
   `slots_untaken` (the slots left after this take: the take that empties a task sets the sold-out
   mark); a release that does not know it reads the other columns by name (`SELECT *`, models/orders.py)
   and ignores it. The worker's UPDATE also requires no running limit, the slot's UPDATE also requires no block by the
   task's publisher and a record meeting the task's minimums. Losing for these reasons raises the
   usual MKT01 / MKT02; models/orders.py explains which. The reverse puts 0007's body back.
"""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


TAKE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION market_take(
    p_task bigint, p_worker bigint, p_token_version integer, p_max_in_progress integer, p_now timestamptz
) RETURNS TABLE (
    id bigint, submit_deadline_at timestamptz, publisher_id bigint, unit_price_fen bigint, fee_fen bigint,
    worker_invite_bp integer, publisher_invite_bp integer, worker_inviter_id bigint,
    publisher_inviter_id bigint, review_window_s integer, appeal_window_s integer,
    title varchar, instructions text, attachment_kind varchar, attachment varchar, push_ids bigint[],
    slots_untaken integer
) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    w record;
    t record;
    v_order bigint;
    v_deadline timestamptz;
    v_info jsonb;
    v_push_ids bigint[];
BEGIN
    -- 1. The worker may take (right end, not banned, session still valid, under the limit of
    --    orders in progress, no automatic limit running: models/records.py).
    UPDATE users u SET orders_in_progress = u.orders_in_progress + 1
     WHERE u.id = p_worker AND u."end" = 'worker' AND NOT u.banned
       AND (p_token_version IS NULL OR u.token_version = p_token_version)
       AND u.orders_in_progress < p_max_in_progress
       AND NOT EXISTS (SELECT 1 FROM user_records r WHERE r.user_id = p_worker AND r.limited_until > p_now)
    RETURNING u.inviter_id, u.unionid INTO w;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'take lost: worker' USING ERRCODE = 'MKT01';
    END IF;
    -- 2. One slot, one worker: the conditional decrement is the whole race. A block by the task's
    --    publisher (one probe of the unique index) and the task's minimums are part of it, so a
    --    block committed before this statement began always wins.
    UPDATE tasks k SET slots_untaken = k.slots_untaken - 1, orders_live = k.orders_live + 1,
           status = CASE WHEN k.slots_untaken = 1 THEN 'full' ELSE 'open' END
     WHERE k.id = p_task AND k.status = 'open' AND k.slots_untaken > 0 AND k.take_deadline_at > p_now
       AND (k.publisher_unionid IS NULL OR w.unionid IS NULL OR k.publisher_unionid <> w.unionid)
       AND NOT EXISTS (SELECT 1 FROM publisher_blocks b WHERE b.publisher_id = k.publisher_id AND b.worker_id = p_worker)
       AND ((k.min_approval_bp = 0 AND k.min_completed_orders = 0)
            OR EXISTS (SELECT 1 FROM user_records r WHERE r.user_id = p_worker
                         AND r.completed_n >= k.min_completed_orders
                         AND (k.min_approval_bp = 0 OR r.approval_bp >= k.min_approval_bp)))
    RETURNING k.* INTO t;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'take lost: task' USING ERRCODE = 'MKT02';
    END IF;
    v_deadline := p_now + make_interval(secs => t.countdown_s);
    INSERT INTO orders (task_id, worker_id, publisher_id, status, unit_price_fen, fee_fen,
                        worker_invite_bp, publisher_invite_bp, worker_inviter_id, publisher_inviter_id,
                        review_window_s, appeal_window_s, taken_at, submit_deadline_at, due_at, sweep_failures)
    VALUES (p_task, p_worker, t.publisher_id, 'in_progress', t.unit_price_fen, t.fee_fen,
            t.worker_invite_bp, t.publisher_invite_bp, w.inviter_id, t.publisher_inviter_id,
            t.review_window_s, t.appeal_window_s, p_now, v_deadline, v_deadline, 0)
    RETURNING orders.id INTO v_order;
    -- 3. What the hall, the publisher and the worker are told (models.orders.take_events).
    v_info := jsonb_build_object('order_id', v_order, 'task_id', p_task, 'title', t.title,
                                 'taken_at', to_char(p_now AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
    WITH pushed AS (
        INSERT INTO outbox (channel, event, user_id, payload, status, attempts, next_attempt_at, created_at) VALUES
            ('push', CASE WHEN t.slots_untaken = 0 THEN 'hall.task_removed' ELSE 'hall.task_changed' END, NULL,
             jsonb_build_object('task_id', p_task, 'slots_untaken', t.slots_untaken, 'status', t.status), 'pending', 0, p_now, p_now),
            ('push', 'order.taken', t.publisher_id, v_info, 'pending', 0, p_now, p_now),
            ('subscribe', 'order_taken', t.publisher_id, v_info, 'pending', 0, p_now, p_now),
            ('push', 'order.changed', p_worker,
             jsonb_build_object('order_id', v_order, 'task_id', p_task, 'status', 'in_progress', 'event', 'take',
                                'deadline_at', to_char(v_deadline AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
             'pending', 0, p_now, p_now)
        RETURNING outbox.id, outbox.channel
    )
    SELECT array_agg(pushed.id ORDER BY pushed.id) FILTER (WHERE pushed.channel = 'push') INTO v_push_ids FROM pushed;
    INSERT INTO audit_log (actor_kind, actor_id, action, target_kind, target_id, data, reason, created_at)
    VALUES ('user', p_worker, 'order.take', 'order', v_order, jsonb_build_object('task_id', p_task), NULL, p_now);
    RETURN QUERY SELECT v_order, v_deadline, t.publisher_id, t.unit_price_fen, t.fee_fen, t.worker_invite_bp,
        t.publisher_invite_bp, w.inviter_id, t.publisher_inviter_id, t.review_window_s, t.appeal_window_s,
        t.title, t.instructions, t.attachment_kind, t.attachment, v_push_ids, t.slots_untaken;
END
$fn$
"""


DROP_FUNCTION = "DROP FUNCTION IF EXISTS market_take(bigint, bigint, integer, integer, timestamptz);\n"


async def create_function(apps, schema_editor) -> None:
    if schema_editor.DIALECT == "postgres":
        # The result gains the slots left (the sold-out mark: server/soldout.py): a new row type.
        await schema_editor.client.execute_script(DROP_FUNCTION + TAKE_FUNCTION)


async def restore_function(apps, schema_editor) -> None:
    if schema_editor.DIALECT == "postgres":
        import importlib

        old = importlib.import_module("models.migrations.0007_contract_payloads").TAKE_FUNCTION
        await schema_editor.client.execute_script(DROP_FUNCTION + old)


class Migration(migrations.Migration):
    dependencies = [("models", "0013_push")]

    initial = False

    operations = [
        ops.AddField(model_name="Task", name="min_approval_bp", field=fields.IntField(default=0, db_default=0)),
        ops.AddField(model_name="Task", name="min_completed_orders", field=fields.IntField(default=0, db_default=0)),
        ops.CreateModel(
            name="UserRecord",
            fields=[
                ("user_id", fields.BigIntField(primary_key=True, generated=False, unique=True, db_index=True)),
                ("end", fields.CharField(max_length=16)),
                ("orders_n", fields.IntField(default=0)),
                ("reviewed_n", fields.IntField(default=0)),
                ("approved_n", fields.IntField(default=0)),
                ("auto_approved_n", fields.IntField(default=0)),
                ("rejected_n", fields.IntField(default=0)),
                ("appealed_n", fields.IntField(default=0)),
                ("appeals_worker_won_n", fields.IntField(default=0)),
                ("appeals_publisher_won_n", fields.IntField(default=0)),
                ("completed_n", fields.IntField(default=0)),
                ("failed_n", fields.IntField(default=0)),
                ("abandoned_n", fields.IntField(default=0)),
                ("tasks_n", fields.IntField(default=0)),
                ("median_review_s", fields.IntField(null=True)),
                ("approval_bp", fields.IntField(null=True)),
                ("limited_until", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ("limited_reason", fields.CharField(null=True, max_length=16)),
                ("limited_count", fields.IntField(null=True)),
                ("computed_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={"table": "user_records", "app": "models", "pk_attr": "user_id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="PublisherBlock",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("publisher", fields.ForeignKeyField("models.User", source_field="publisher_id", db_constraint=True, to_field="id",
                                                     related_name="blocks_made", on_delete=OnDelete.CASCADE)),
                ("worker", fields.ForeignKeyField("models.User", source_field="worker_id", db_constraint=True, to_field="id",
                                                  related_name="blocks_received", on_delete=OnDelete.CASCADE)),
                ("reason", fields.CharField(max_length=200)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={"table": "publisher_blocks", "app": "models", "pk_attr": "id",
                     "unique_together": (("publisher_id", "worker_id"),),
                     "indexes": [Index(fields=["worker_id"]), Index(fields=["publisher_id", "id"])]},
            bases=["Model"],
        ),
        ops.RunPython(create_function, restore_function),
    ]
