"""The take locks its task's row last, for the shortest time (issue 12 item 5, the flash crowd).

`market_take` (0014) updated the task's row second — right after the worker's row — and then wrote
the order, four outbox rows and the audit row while holding that row's lock until its commit. All
takes of one task queue on that one row, so a flash crowd's winners ran one after another, each
holding the lock for its whole function (~6 ms on a busy 2-core machine: the 100th winner of a
100-slot task answered after ~0.6 s, and every loser that reached PostgreSQL queued behind them).

Now the same function (same arguments, same result columns, same rows written) runs:
1. the worker's conditional UPDATE (unchanged: the worker's row, then nothing else of the worker);
2. a plain SELECT of the task (no lock; READ COMMITTED: the latest committed row) that refuses at
   once a task that is not open, has no slot, is past its take window, or is the worker's own —
   no write happens for such a loser;
3. the order INSERT (its foreign key takes only a KEY SHARE lock on the task, which does not
   conflict with the slot UPDATE's lock), three of the four outbox rows and the audit row;
4. LAST, one statement: the task's conditional slot UPDATE — with everything the earlier steps
   copied from the SELECT repeated in its WHERE, so a value read in step 2 can never be stale in
   a committed take — and the hall's outbox row, which carries the slots left after this take
   (known only now). No row: RAISE MKT02, which rolls back steps 1–3 as before.

So a task's row is locked from step 4 to the commit only: the queue of takes on one task moves
one short statement and a commit at a time. The block and minimums checks stay inside the slot
UPDATE, as before. The SQLite steps (models/orders.py `_take_steps`) follow the same order.

The hall row is now written after the take's other outbox rows (a larger id): the relay delivers
by id per audience, and the hall's events of one task are still in the order of their takes (each
is written while that task's row is locked).

`market_take_batch(task, workers[], token_versions[], max_in_progress, now)` (new): several takes
of one task in one call and one commit, for the server's take lanes (server/takelanes.py). It
locks all the workers' rows first, in id order — so it holds the task's row only once it will
wait for nothing else: no deadlock with another batch, a single take (worker, then task) or a
settlement (worker, then task) — then runs `market_take` for each worker in its own
subtransaction (a lost take rolls back alone) and returns one row per worker, in order: the take's
columns, or `lost` = 'worker' (MKT01), 'task' (MKT02), 'full' (MKT02 and no slot is left: the rest
of the batch is not run) or 'already' (unique violation: the worker holds an order of the task).

Expand-only: the old release calls `market_take` with the same arguments and reads the same
columns; it never calls the batch. The reverse drops the batch and puts 0014's body back.
"""

from tortoise import migrations
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
    v_hall record;
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
    -- 2. The task as last committed, without a lock. A task nobody can take now is refused here,
    --    before any write (the slot UPDATE in step 4 checks all of this again).
    SELECT k.publisher_id, k.unit_price_fen, k.fee_fen, k.worker_invite_bp, k.publisher_invite_bp,
           k.publisher_inviter_id, k.countdown_s, k.review_window_s, k.appeal_window_s,
           k.title, k.instructions, k.attachment_kind, k.attachment
      INTO t FROM tasks k
     WHERE k.id = p_task AND k.status = 'open' AND k.slots_untaken > 0 AND k.take_deadline_at > p_now
       AND (k.publisher_unionid IS NULL OR w.unionid IS NULL OR k.publisher_unionid <> w.unionid);
    IF NOT FOUND THEN
        RAISE EXCEPTION 'take lost: task' USING ERRCODE = 'MKT02';
    END IF;
    -- 3. The order and what the publisher and the worker are told (models.orders.take_events).
    v_deadline := p_now + make_interval(secs => t.countdown_s);
    INSERT INTO orders (task_id, worker_id, publisher_id, status, unit_price_fen, fee_fen,
                        worker_invite_bp, publisher_invite_bp, worker_inviter_id, publisher_inviter_id,
                        review_window_s, appeal_window_s, taken_at, submit_deadline_at, due_at, sweep_failures)
    VALUES (p_task, p_worker, t.publisher_id, 'in_progress', t.unit_price_fen, t.fee_fen,
            t.worker_invite_bp, t.publisher_invite_bp, w.inviter_id, t.publisher_inviter_id,
            t.review_window_s, t.appeal_window_s, p_now, v_deadline, v_deadline, 0)
    RETURNING orders.id INTO v_order;
    v_info := jsonb_build_object('order_id', v_order, 'task_id', p_task, 'title', t.title,
                                 'taken_at', to_char(p_now AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'));
    WITH pushed AS (
        INSERT INTO outbox (channel, event, user_id, payload, status, attempts, next_attempt_at, created_at) VALUES
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
    -- 4. One slot, one worker: the conditional decrement is the whole race, and the task's row is
    --    locked from here to the commit only. A block by the task's publisher (one probe of the
    --    unique index) and the task's minimums are part of it, so a block committed before this
    --    statement began always wins. Every value steps 2–3 copied is repeated: a task changed
    --    since the SELECT loses here (and the take with it) instead of leaving a stale copy.
    WITH slot AS (
        UPDATE tasks k SET slots_untaken = k.slots_untaken - 1, orders_live = k.orders_live + 1,
               status = CASE WHEN k.slots_untaken = 1 THEN 'full' ELSE 'open' END
         WHERE k.id = p_task AND k.status = 'open' AND k.slots_untaken > 0 AND k.take_deadline_at > p_now
           AND (k.publisher_unionid IS NULL OR w.unionid IS NULL OR k.publisher_unionid <> w.unionid)
           AND NOT EXISTS (SELECT 1 FROM publisher_blocks b WHERE b.publisher_id = k.publisher_id AND b.worker_id = p_worker)
           AND ((k.min_approval_bp = 0 AND k.min_completed_orders = 0)
                OR EXISTS (SELECT 1 FROM user_records r WHERE r.user_id = p_worker
                             AND r.completed_n >= k.min_completed_orders
                             AND (k.min_approval_bp = 0 OR r.approval_bp >= k.min_approval_bp)))
           AND (k.publisher_id, k.unit_price_fen, k.fee_fen, k.worker_invite_bp, k.publisher_invite_bp,
                k.publisher_inviter_id, k.countdown_s, k.review_window_s, k.appeal_window_s,
                k.title, k.instructions, k.attachment_kind, k.attachment)
               IS NOT DISTINCT FROM
               (t.publisher_id, t.unit_price_fen, t.fee_fen, t.worker_invite_bp, t.publisher_invite_bp,
                t.publisher_inviter_id, t.countdown_s, t.review_window_s, t.appeal_window_s,
                t.title, t.instructions, t.attachment_kind, t.attachment)
        RETURNING k.slots_untaken, k.status
    ), hall AS (
        INSERT INTO outbox (channel, event, user_id, payload, status, attempts, next_attempt_at, created_at)
        SELECT 'push', CASE WHEN slot.slots_untaken = 0 THEN 'hall.task_removed' ELSE 'hall.task_changed' END, NULL,
               jsonb_build_object('task_id', p_task, 'slots_untaken', slot.slots_untaken, 'status', slot.status),
               'pending', 0, p_now, p_now
          FROM slot
        RETURNING outbox.id
    )
    SELECT slot.slots_untaken, hall.id AS hall_id INTO v_hall FROM slot, hall;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'take lost: task' USING ERRCODE = 'MKT02';
    END IF;
    RETURN QUERY SELECT v_order, v_deadline, t.publisher_id, t.unit_price_fen, t.fee_fen, t.worker_invite_bp,
        t.publisher_invite_bp, w.inviter_id, t.publisher_inviter_id, t.review_window_s, t.appeal_window_s,
        t.title, t.instructions, t.attachment_kind, t.attachment, v_push_ids || v_hall.hall_id, v_hall.slots_untaken;
END
$fn$
"""


BATCH_FUNCTION = r"""
CREATE OR REPLACE FUNCTION market_take_batch(
    p_task bigint, p_workers bigint[], p_token_versions integer[], p_max_in_progress integer, p_now timestamptz
) RETURNS TABLE (
    worker_id bigint, lost text,
    id bigint, submit_deadline_at timestamptz, publisher_id bigint, unit_price_fen bigint, fee_fen bigint,
    worker_invite_bp integer, publisher_invite_bp integer, worker_inviter_id bigint,
    publisher_inviter_id bigint, review_window_s integer, appeal_window_s integer,
    title varchar, instructions text, attachment_kind varchar, attachment varchar, push_ids bigint[],
    slots_untaken integer
) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    i integer;
    v_full boolean := false;
BEGIN
    -- 1. The workers' rows first, all of them, in id order: the batch then holds its task's row
    --    without ever waiting for another row (no deadlock with another batch, a single take, or
    --    a sweep that holds a worker's row and wants the task's).
    PERFORM 1 FROM users u WHERE u.id = ANY(p_workers) ORDER BY u.id FOR NO KEY UPDATE;
    -- 2. Each take as its own subtransaction: a lost take rolls back alone. Once the task is
    --    full, the rest lose without running.
    FOR i IN 1 .. coalesce(array_length(p_workers, 1), 0) LOOP
        worker_id := p_workers[i];
        IF v_full THEN
            lost := 'full';
            RETURN NEXT;
            CONTINUE;
        END IF;
        BEGIN
            RETURN QUERY SELECT p_workers[i], NULL::text, m.*
                FROM market_take(p_task, p_workers[i], p_token_versions[i], p_max_in_progress, p_now) m;
        EXCEPTION
            WHEN SQLSTATE 'MKT01' THEN
                lost := 'worker';
                RETURN NEXT;
            WHEN SQLSTATE 'MKT02' THEN
                SELECT k.slots_untaken = 0 OR k.status IN ('full', 'finished') INTO v_full FROM tasks k WHERE k.id = p_task;
                v_full := coalesce(v_full, false);
                lost := CASE WHEN v_full THEN 'full' ELSE 'task' END;
                RETURN NEXT;
            WHEN unique_violation THEN
                lost := 'already';
                RETURN NEXT;
        END;
    END LOOP;
END
$fn$
"""


async def create_function(apps, schema_editor) -> None:
    if schema_editor.DIALECT == "postgres":
        await schema_editor.client.execute_script(TAKE_FUNCTION)  # same arguments and result: in place
        await schema_editor.client.execute_script(BATCH_FUNCTION)


async def restore_function(apps, schema_editor) -> None:
    if schema_editor.DIALECT == "postgres":
        import importlib

        old = importlib.import_module("models.migrations.0014_fair_records").TAKE_FUNCTION
        await schema_editor.client.execute_script(
            "DROP FUNCTION IF EXISTS market_take_batch(bigint, bigint[], integer[], integer, timestamptz);\n" + old)


class Migration(migrations.Migration):
    dependencies = [("models", "0018_rule_version_and_payout_lease")]

    initial = False

    operations = [ops.RunPython(create_function, restore_function)]
