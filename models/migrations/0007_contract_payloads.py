"""The contract's payloads (issue 10), and the users' avatars.

1. `market_take` (migration 0005) writes the take's events in the form every other emitter uses
   (models/events.py): times end in `Z` (`2026-11-25T18:52:42.162808Z`, as the REST API writes them),
   and the worker's `order.changed` carries `event: "take"` and `deadline_at` like every other
   `order.changed`, instead of `submit_deadline_at`. The function is replaced as a whole; the
   reverse puts 0005's body back.
2. `users.avatar`: the upload ref of the profile picture a user chose (`PUT /me/avatar`).
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

TAKE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION market_take(
    p_task bigint, p_worker bigint, p_token_version integer, p_max_in_progress integer, p_now timestamptz
) RETURNS TABLE (
    id bigint, submit_deadline_at timestamptz, publisher_id bigint, unit_price_fen bigint, fee_fen bigint,
    worker_invite_bp integer, publisher_invite_bp integer, worker_inviter_id bigint,
    publisher_inviter_id bigint, review_window_s integer, appeal_window_s integer,
    title varchar, instructions text, attachment_kind varchar, attachment varchar, push_ids bigint[]
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
    -- 1. The worker may take (right end, not banned, session still valid, under the limit).
    UPDATE users u SET orders_in_progress = u.orders_in_progress + 1
     WHERE u.id = p_worker AND u."end" = 'worker' AND NOT u.banned
       AND (p_token_version IS NULL OR u.token_version = p_token_version)
       AND u.orders_in_progress < p_max_in_progress
    RETURNING u.inviter_id, u.unionid INTO w;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'take lost: worker' USING ERRCODE = 'MKT01';
    END IF;
    -- 2. One slot, one worker: the conditional decrement is the whole race.
    UPDATE tasks k SET slots_untaken = k.slots_untaken - 1, orders_live = k.orders_live + 1,
           status = CASE WHEN k.slots_untaken = 1 THEN 'full' ELSE 'open' END
     WHERE k.id = p_task AND k.status = 'open' AND k.slots_untaken > 0 AND k.take_deadline_at > p_now
       AND (k.publisher_unionid IS NULL OR w.unionid IS NULL OR k.publisher_unionid <> w.unionid)
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
        t.title, t.instructions, t.attachment_kind, t.attachment, v_push_ids;
END
$fn$
"""


OLD_TAKE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION market_take(
    p_task bigint, p_worker bigint, p_token_version integer, p_max_in_progress integer, p_now timestamptz
) RETURNS TABLE (
    id bigint, submit_deadline_at timestamptz, publisher_id bigint, unit_price_fen bigint, fee_fen bigint,
    worker_invite_bp integer, publisher_invite_bp integer, worker_inviter_id bigint,
    publisher_inviter_id bigint, review_window_s integer, appeal_window_s integer,
    title varchar, instructions text, attachment_kind varchar, attachment varchar, push_ids bigint[]
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
    -- 1. The worker may take (right end, not banned, session still valid, under the limit).
    UPDATE users u SET orders_in_progress = u.orders_in_progress + 1
     WHERE u.id = p_worker AND u."end" = 'worker' AND NOT u.banned
       AND (p_token_version IS NULL OR u.token_version = p_token_version)
       AND u.orders_in_progress < p_max_in_progress
    RETURNING u.inviter_id, u.unionid INTO w;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'take lost: worker' USING ERRCODE = 'MKT01';
    END IF;
    -- 2. One slot, one worker: the conditional decrement is the whole race.
    UPDATE tasks k SET slots_untaken = k.slots_untaken - 1, orders_live = k.orders_live + 1,
           status = CASE WHEN k.slots_untaken = 1 THEN 'full' ELSE 'open' END
     WHERE k.id = p_task AND k.status = 'open' AND k.slots_untaken > 0 AND k.take_deadline_at > p_now
       AND (k.publisher_unionid IS NULL OR w.unionid IS NULL OR k.publisher_unionid <> w.unionid)
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
                                 'taken_at', to_char(p_now AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'));
    WITH pushed AS (
        INSERT INTO outbox (channel, event, user_id, payload, status, attempts, next_attempt_at, created_at) VALUES
            ('push', CASE WHEN t.slots_untaken = 0 THEN 'hall.task_removed' ELSE 'hall.task_changed' END, NULL,
             jsonb_build_object('task_id', p_task, 'slots_untaken', t.slots_untaken, 'status', t.status), 'pending', 0, p_now, p_now),
            ('push', 'order.taken', t.publisher_id, v_info, 'pending', 0, p_now, p_now),
            ('subscribe', 'order_taken', t.publisher_id, v_info, 'pending', 0, p_now, p_now),
            ('push', 'order.changed', p_worker,
             jsonb_build_object('order_id', v_order, 'task_id', p_task, 'status', 'in_progress', 'submit_deadline_at',
                                to_char(v_deadline AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')),
             'pending', 0, p_now, p_now)
        RETURNING outbox.id, outbox.channel
    )
    SELECT array_agg(pushed.id ORDER BY pushed.id) FILTER (WHERE pushed.channel = 'push') INTO v_push_ids FROM pushed;
    INSERT INTO audit_log (actor_kind, actor_id, action, target_kind, target_id, data, reason, created_at)
    VALUES ('user', p_worker, 'order.take', 'order', v_order, jsonb_build_object('task_id', p_task), NULL, p_now);
    RETURN QUERY SELECT v_order, v_deadline, t.publisher_id, t.unit_price_fen, t.fee_fen, t.worker_invite_bp,
        t.publisher_invite_bp, w.inviter_id, t.publisher_inviter_id, t.review_window_s, t.appeal_window_s,
        t.title, t.instructions, t.attachment_kind, t.attachment, v_push_ids;
END
$fn$
"""


async def create_function(apps, schema_editor) -> None:
    if schema_editor.DIALECT == "postgres":
        await schema_editor.client.execute_script(TAKE_FUNCTION)


async def restore_function(apps, schema_editor) -> None:
    if schema_editor.DIALECT == "postgres":
        await schema_editor.client.execute_script(OLD_TAKE_FUNCTION)


class Migration(migrations.Migration):
    dependencies = [("models", "0006_outbox_subscribe_due")]

    initial = False

    operations = [
        ops.RunPython(create_function, restore_function),
        ops.AddField(model_name="User", name="avatar", field=fields.CharField(max_length=40, null=True)),
    ]
