"""Several takes of one task in one call (`orders.take_batch`, migration 0019's `market_take_batch`):
each take wins or loses exactly as alone, and batches side by side neither deadlock nor oversell.

The first test runs on both backends (SQLite takes one after another); the races run on PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import pytest

from models import orders, users
from models.audit import AuditLog
from models.errors import DomainError
from models.orders import Order
from models.outbox import Outbox
from models.tasks import Task, TaskStatus
from models.users import User
from tests import personas as p
from tests.models.test_races import SLOT, books_clean, codes, crowd, publish, split, workers
from tests.models._support import OPERATOR_ID

pytestmark = pytest.mark.asyncio


async def test_a_batch_wins_exactly_the_slots_left_and_each_loser_learns_why_as_if_alone(database):
    alice = await p.publisher("alice", balance_fen=3 * SLOT)
    task = await publish(alice, quantity=3)
    bob, charlie, dave, erin, frank = [await p.worker(n) for n in ("bob", "charlie", "dave", "erin", "frank")]
    await users.set_banned(frank.id, True, operator_id=OPERATOR_ID, reason="fraud")

    results = await orders.take_batch(task.id, [(bob.id, None), (charlie.id, None), (bob.id, None), (frank.id, None),
                                                (dave.id, None), (erin.id, None)])

    outcome = [r.worker_id if isinstance(r, Order) else r.code for r in results]
    assert outcome == [bob.id, charlie.id, "already_took_task", "user_banned", dave.id, "slot_taken"]
    assert [r.slots_left for r in results if isinstance(r, Order)] == [2, 1, 0]  # Dave emptied it: the API marks it
    assert getattr(results[-1], "sold_out", False)
    assert sorted(o.worker_id for o in await Order.filter(task_id=task.id)) == sorted([bob.id, charlie.id, dave.id])
    task = await Task.get(id=task.id)
    assert (task.status, task.slots_untaken, task.orders_live) == (TaskStatus.FULL, 0, 3)
    counters = dict(await User.filter(id__in=[bob.id, charlie.id, dave.id, erin.id, frank.id]).values_list("id", "orders_in_progress"))
    assert counters == {bob.id: 1, charlie.id: 1, dave.id: 1, erin.id: 0, frank.id: 0}
    # Each winner wrote its four outbox rows and its audit row, as a take alone does; losers none.
    winners = [r for r in results if isinstance(r, Order)]
    for order in winners:
        rows = [r for r in await Outbox.filter(id__in=order.push_ids)]
        assert sorted(r.event for r in rows) == sorted(["order.taken", "order.changed",
                                                         "hall.task_removed" if order.slots_left == 0 else "hall.task_changed"])
    assert await Outbox.filter(event="order_taken").count() == 3
    assert await AuditLog.filter(action="order.take").count() == 3
    await books_clean()


@pytest.mark.postgres
async def test_batches_and_single_takes_at_once_on_one_task_make_exactly_one_order_per_slot(database):
    """Five batches of twelve and forty single takes at once on 25 slots; every worker of the first
    batch also clicks again in another batch (a double click reaching both server processes)."""
    alice = await p.publisher("alice", balance_fen=25 * SLOT)
    task = await publish(alice, quantity=25)
    crew = await workers(100)
    batches = [[(w.id, None) for w in crew[i * 12:(i + 1) * 12]] for i in range(5)]
    batches[4][:6] = [(w.id, None) for w in crew[:6]]  # six of batch 0's workers again

    results = await crowd([orders.take_batch(task.id, b) for b in batches]
                          + [orders.take(task.id, w.id) for w in crew[60:]])

    answers = [r for rs in results[:5] for r in rs] + results[5:]
    wins, losses = split(answers)
    assert len(wins) == 25
    assert set(codes(losses)) <= {"slot_taken", "already_took_task"}, codes(losses)
    assert Counter(o.worker_id for o in wins).most_common(1)[0][1] == 1  # nobody won twice
    assert await Order.filter(task_id=task.id).count() == 25
    task = await Task.get(id=task.id)
    assert (task.status, task.slots_untaken, task.orders_live) == (TaskStatus.FULL, 0, 25)
    counters = dict(await User.filter(id__in=[w.id for w in crew]).values_list("id", "orders_in_progress"))
    assert counters == {w.id: int(w.id in {o.worker_id for o in wins}) for w in crew}
    await books_clean()


@pytest.mark.postgres
async def test_a_batch_waits_for_a_workers_row_before_it_holds_the_tasks_so_a_settlement_holding_both_in_the_other_order_is_no_deadlock(database):
    """A settlement (an abandon, a countdown end) holds a worker's row and then wants the task's
    row. A batch containing that worker locks all its workers' rows first, so it waits before it
    holds the task's row: the settlement goes on, then the batch. (Holding the task's row from its
    first take, the batch would deadlock with it; PostgreSQL would abort one after a second.)"""
    alice = await p.publisher("alice", balance_fen=2 * SLOT)
    task = await publish(alice, quantity=2)
    bob, charlie = await p.worker("bob"), await p.worker("charlie")
    holder = await asyncpg.connect(database.split("?")[0])
    admin = await asyncpg.connect(database.split("?")[0])  # pg_stat_activity is read once per transaction
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("UPDATE users SET orders_in_progress = orders_in_progress WHERE id = $1", charlie.id)
        # Bob's take first: alone, it would hold the task's row when it came to Charlie's.
        batch = asyncio.create_task(orders.take_batch(task.id, [(bob.id, None), (charlie.id, None)]))
        for _ in range(600):  # until the batch waits for Charlie's row
            if await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%market_take_batch%' "
                                     "AND wait_event_type = 'Lock' AND datname = current_database()"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the batch never waited for Charlie's row")
        # The settlement's second step: the task's row. It must not wait for the batch.
        await asyncio.wait_for(holder.execute("UPDATE tasks SET orders_live = orders_live WHERE id = $1", task.id), 0.9)
        await tx.commit()
        results = await asyncio.wait_for(batch, 30)
    finally:
        await holder.close()
        await admin.close()
    assert all(isinstance(r, Order) for r in results), results
    assert (await Task.get(id=task.id)).status == TaskStatus.FULL
    await books_clean()


@pytest.mark.postgres
async def test_a_batch_refuses_nothing_because_of_another_takes_failure(database):
    """A take that fails for a reason the batch does not catch (here: a worker who does not exist
    is refused as MKT01) rolls back alone; a database error outside the takes fails the call."""
    alice = await p.publisher("alice", balance_fen=2 * SLOT)
    task = await publish(alice, quantity=2)
    bob = await p.worker("bob")
    results = await orders.take_batch(task.id, [(10**12, None), (bob.id, None)])
    assert isinstance(results[0], DomainError) and results[0].code == "user_not_found"
    assert isinstance(results[1], Order)
    with pytest.raises(ValueError):
        await orders.take_batch(task.id, [(bob.id, None)] * (orders.TAKE_BATCH_MAX + 1))
    await books_clean()
