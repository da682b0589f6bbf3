"""The take locks its task's row last (migration 0019): the races on that row, on PostgreSQL.

A take writes its order, outbox and audit rows first, and only then the task's conditional slot
UPDATE, so the row every take of a task queues on is locked from that UPDATE to the commit only.
Here another transaction holds the task's row while Bob's take runs: Bob's take has written its
rows and waits for the row; what it finds there decides whether all of it commits or none of it.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from models import clock, orders, tasks
from models.audit import AuditLog
from models.errors import SlotTaken
from models.orders import Order
from models.outbox import Outbox
from models.tasks import Task, TaskStatus
from models.users import User
from tests import personas as p
from tests.models._support import PRICE

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]


async def waiting_take(admin: asyncpg.Connection, other_pid: int) -> int:
    """The pid of the backend running a take that waits for a lock (polled: a loaded machine)."""
    for _ in range(600):
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE query LIKE '%market_take%' AND wait_event_type = 'Lock' "
            "AND pid <> $1 AND pid <> pg_backend_pid() AND datname = current_database()", other_pid)
        if pid is not None:
            return pid
        await asyncio.sleep(0.05)
    raise AssertionError("the take never waited for the task's row")


async def tables_written(admin: asyncpg.Connection, pid: int) -> set[str]:
    """The tables the backend `pid` has written in its open transaction (its RowExclusiveLocks)."""
    rows = await admin.fetch(
        "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE l.pid = $1 AND l.mode = 'RowExclusiveLock' AND l.granted AND c.relkind = 'r'", pid)
    return {r["relname"] for r in rows}


async def a_task_and_two_workers(quantity: int = 1):
    alice = await p.publisher("alice", balance_fen=quantity * 2 * PRICE)
    task = await tasks.publish(alice.id, title="Scan the code", instructions="Scan it", unit_price_fen=PRICE, quantity=quantity)
    return task, await p.worker("bob"), await p.worker("charlie")


async def test_a_take_waiting_for_the_last_slot_has_written_its_rows_and_loses_all_of_them(database):
    task, bob, charlie = await a_task_and_two_workers()
    holder = await asyncpg.connect(database.split("?")[0])
    admin = await asyncpg.connect(database.split("?")[0])
    try:
        # Charlie's take of the last slot, not yet committed: it holds the task's row.
        tx = holder.transaction()
        await tx.start()
        await holder.fetchrow("SELECT * FROM market_take($1, $2, NULL, 5, $3)", task.id, charlie.id, clock.now())
        bobs = asyncio.create_task(orders.take(task.id, bob.id))
        pid = await waiting_take(admin, await holder.fetchval("SELECT pg_backend_pid()"))
        # Bob's take waits for the task's row only after writing everything else.
        assert {"users", "orders", "outbox", "audit_log"} <= await tables_written(admin, pid)
        assert await admin.fetchval("SELECT wait_event FROM pg_stat_activity WHERE pid = $1", pid) in ("transactionid", "tuple")
        await tx.commit()

        with pytest.raises(SlotTaken) as lost:
            await asyncio.wait_for(bobs, 30)
        assert getattr(lost.value, "sold_out", False)  # the API marks the task sold out
    finally:
        await holder.close()
        await admin.close()
    [order] = await Order.filter(task_id=task.id)
    assert order.worker_id == charlie.id
    assert (await User.get(id=bob.id)).orders_in_progress == 0  # Bob's counter rolled back with his rows
    assert await AuditLog.filter(action="order.take").count() == 1
    assert not [r for r in await Outbox.all() if r.user_id == bob.id or r.payload.get("order_id") not in (None, order.id)]
    assert await Outbox.filter(event="hall.task_removed").count() == 1
    task = await Task.get(id=task.id)
    assert (task.status, task.slots_untaken, task.orders_live) == (TaskStatus.FULL, 0, 1)
    await p.assert_books_clean()


async def test_a_take_waiting_for_a_slot_that_is_given_back_wins_it(database):
    task, bob, charlie = await a_task_and_two_workers()
    holder = await asyncpg.connect(database.split("?")[0])
    admin = await asyncpg.connect(database.split("?")[0])
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.fetchrow("SELECT * FROM market_take($1, $2, NULL, 5, $3)", task.id, charlie.id, clock.now())
        bobs = asyncio.create_task(orders.take(task.id, bob.id))
        await waiting_take(admin, await holder.fetchval("SELECT pg_backend_pid()"))
        await tx.rollback()  # Charlie's take fails after all (say its connection drops)
        order = await asyncio.wait_for(bobs, 30)
    finally:
        await holder.close()
        await admin.close()
    assert order.slots_left == 0  # Bob emptied the task: the API sets the sold-out mark
    assert [o.worker_id for o in await Order.filter(task_id=task.id)] == [bob.id]
    assert (await User.get(id=charlie.id)).orders_in_progress == 0
    # The hall is told what the slot UPDATE left, after Bob's other rows.
    rows = await Outbox.filter(channel="push").order_by("id")
    assert [r.event for r in rows][-1] == "hall.task_removed" and rows[-1].payload == {
        "task_id": task.id, "slots_untaken": 0, "status": "full"}
    assert order.push_ids == [r.id for r in rows if r.payload.get("order_id") == order.id or r.event == "hall.task_removed"]
    await p.assert_books_clean()


async def test_a_take_whose_task_changed_while_it_waited_loses_rather_than_copy_a_stale_value(database):
    """Today nothing changes a published task's copied columns; the slot UPDATE repeats them all so
    that a change made between the take's read and its UPDATE can never leave a stale copy."""
    task, bob, _ = await a_task_and_two_workers(quantity=2)
    holder = await asyncpg.connect(database.split("?")[0])
    admin = await asyncpg.connect(database.split("?")[0])
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("UPDATE tasks SET title = 'Scan the new code' WHERE id = $1", task.id)
        bobs = asyncio.create_task(orders.take(task.id, bob.id))
        await waiting_take(admin, await holder.fetchval("SELECT pg_backend_pid()"))
        await tx.commit()
        with pytest.raises(SlotTaken):  # a slot is left: "try again"
            await asyncio.wait_for(bobs, 30)
    finally:
        await holder.close()
        await admin.close()
    assert not await Order.filter(task_id=task.id).exists()
    assert (await User.get(id=bob.id)).orders_in_progress == 0
    order = await orders.take(task.id, bob.id)  # again: now with what the task says
    assert order.taken_task.title == "Scan the new code"
    [taken] = await Outbox.filter(event="order.taken")
    assert taken.payload["title"] == "Scan the new code"
    await p.assert_books_clean()
