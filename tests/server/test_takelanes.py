"""Take lanes (server/takelanes.py): a process's takes of one task go one database call at a time,
grouped when several wait; those queued behind the call that emptied the task lose without the
database; a slot that comes back lets them through. Runs on both backends (SQLite: the batch
is takes one after another), against the real domain calls.
"""

from __future__ import annotations

import asyncio

import pytest

from models import orders
from models.errors import SlotTaken
from models.orders import Order
from models.tasks import Task, TaskStatus
from server.takelanes import TakeLanes
from tests import personas as p
from tests.models.test_races import SLOT, books_clean, publish, workers

pytestmark = pytest.mark.asyncio


async def answers(lanes: TakeLanes, task_id: int, crew) -> list:
    return await asyncio.gather(*(lanes.take(task_id, w.id, None) for w in crew), return_exceptions=True)


async def test_a_crowd_in_one_process_goes_as_one_batch_and_the_rest_lose_without_the_database(database):
    alice = await p.publisher("alice", balance_fen=SLOT)
    task = await publish(alice, quantity=1)
    crew = await workers(12)
    lanes = TakeLanes(batch_max=4)

    results = await answers(lanes, task.id, crew)

    assert isinstance(results[0], Order) and results[0].worker_id == crew[0].id  # first come, first served
    assert all(isinstance(r, SlotTaken) for r in results[1:]), results
    # One call: four takes, one wins, three meet the full task in the database. The eight still
    # queued lose in the lane: no second call.
    assert lanes.calls == 1
    assert [getattr(r, "in_lane", False) for r in results[1:]] == [False] * 3 + [True] * 8
    assert lanes.waiting(task.id) == 0 and task.id not in lanes._lanes  # nothing outlives the burst
    assert await Order.filter(task_id=task.id).count() == 1
    assert (await Task.get(id=task.id)).status == TaskStatus.FULL
    await books_clean()


async def test_a_slot_that_comes_back_while_takes_wait_lets_them_through_to_the_database(database, monkeypatch):
    alice = await p.publisher("alice", balance_fen=SLOT)
    task = await publish(alice, quantity=1)
    bob, charlie, dave = await workers(3)
    lanes = TakeLanes(batch_max=1)  # one take per call
    real_take = orders.take

    async def take_then_give_back(task_id, worker_id, **kw):
        order = await real_take(task_id, worker_id, **kw)  # empties the task...
        if worker_id == bob.id:
            await orders.abandon(order.id, bob.id)  # ...and Bob gives the slot back at once
            lanes.slot_returned(task_id)
        return order

    monkeypatch.setattr(orders, "take", take_then_give_back)
    results = await answers(lanes, task.id, [bob, charlie, dave])

    assert isinstance(results[0], Order) and results[0].slots_left == 0
    # Charlie and Dave waited behind Bob's emptying take, yet Charlie went to the database and
    # won the slot Bob gave back; Dave, queued behind Charlie's emptying take, lost in the lane.
    assert isinstance(results[1], Order) and results[1].worker_id == charlie.id
    assert isinstance(results[2], SlotTaken) and getattr(results[2], "in_lane", False)
    assert lanes.calls == 2
    await books_clean()


async def test_a_take_cancelled_while_it_waits_leaves_the_lane_and_the_others_go_on(database, monkeypatch):
    alice = await p.publisher("alice", balance_fen=3 * SLOT)
    task = await publish(alice, quantity=3)
    bob, charlie, dave = await workers(3)
    lanes = TakeLanes()
    gate = asyncio.Event()
    real_take = orders.take

    async def slow_take(task_id, worker_id, **kw):
        await gate.wait()
        return await real_take(task_id, worker_id, **kw)

    monkeypatch.setattr(orders, "take", slow_take)
    first = asyncio.create_task(lanes.take(task.id, bob.id, None))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(lanes.take(task.id, charlie.id, None))
    last = asyncio.create_task(lanes.take(task.id, dave.id, None))
    for _ in range(100):
        if lanes.waiting(task.id) == 2:
            break
        await asyncio.sleep(0.01)
    cancelled.cancel()
    gate.set()
    assert (await first).worker_id == bob.id
    assert (await last).worker_id == dave.id  # alone: the cancelled take was skipped
    assert cancelled.cancelled()
    assert sorted(o.worker_id for o in await Order.filter(task_id=task.id)) == sorted([bob.id, dave.id])
    assert lanes.calls == 2
    await books_clean()


async def test_a_database_error_answers_every_take_of_the_call_and_the_lane_goes_on(database, monkeypatch):
    alice = await p.publisher("alice", balance_fen=3 * SLOT)
    task = await publish(alice, quantity=3)
    crew = await workers(4)
    lanes = TakeLanes()
    real_batch, failed = orders.take_batch, []

    async def failing_once(task_id, takers):
        if not failed:
            failed.append(takers)
            raise ConnectionResetError("the database went away")
        return await real_batch(task_id, takers)

    monkeypatch.setattr(orders, "take_batch", failing_once)
    results = await answers(lanes, task.id, crew)

    assert all(isinstance(r, ConnectionResetError) for r in results), results  # one call, one answer for all
    assert lanes.calls == 1 and task.id not in lanes._lanes
    again = await answers(lanes, task.id, crew)  # the next clicks are served normally
    assert [type(r) for r in again] == [Order, Order, Order, SlotTaken]
    await books_clean()


async def test_takes_beyond_the_slots_left_are_told_at_once_that_those_slots_are_being_taken(database, monkeypatch):
    alice = await p.publisher("alice", balance_fen=3 * SLOT)
    task = await publish(alice, quantity=3)
    crew = await workers(8)
    lanes = TakeLanes(batch_max=1)  # one take per call: the lane learns the slots left after the first
    gate = asyncio.Event()
    real_take = orders.take

    async def held_take(task_id, worker_id, **kw):
        await gate.wait()
        return await real_take(task_id, worker_id, **kw)

    monkeypatch.setattr(orders, "take", held_take)
    first = [asyncio.create_task(lanes.take(task.id, w.id, None)) for w in crew[:6]]  # before anything is known
    await asyncio.sleep(0.05)
    gate.set()
    assert isinstance(await first[0], Order)  # 2 slots left now: Bob's followers 2 and 3 keep their turn
    late = [asyncio.create_task(lanes.take(task.id, w.id, None)) for w in crew[6:]]  # arrive behind them
    results = await asyncio.gather(*first[1:], *late, return_exceptions=True)

    assert [type(r) for r in results[:2]] == [Order, Order]
    assert [r.code for r in results[2:]] == ["slots_being_taken"] * 5, results
    assert results[2].headers == {"Retry-After": "1"}
    assert lanes.calls == 3
    assert await Order.filter(task_id=task.id).count() == 3
    await books_clean()


async def test_a_take_turned_away_as_being_taken_wins_when_it_retries_after_a_take_ahead_failed(database):
    """The answer is honest: the slots left were being taken, and when one of those takes fails
    (here its worker was banned), the retry wins."""
    from models import users
    from tests.models._support import OPERATOR_ID

    alice = await p.publisher("alice", balance_fen=2 * SLOT)
    task = await publish(alice, quantity=2)
    bob, charlie, dave, erin = await workers(4)
    await users.set_banned(charlie.id, True, operator_id=OPERATOR_ID, reason="fraud")
    lanes = TakeLanes(batch_max=1)

    results = await answers(lanes, task.id, [bob, charlie, dave, erin])

    # Bob won, one slot left: Charlie's take keeps its turn, Dave and Erin are told it is being taken.
    assert [getattr(r, "code", "won") for r in results] == ["won", "user_banned", "slots_being_taken", "slots_being_taken"]
    retry = await lanes.take(task.id, dave.id, None)
    assert retry.worker_id == dave.id and retry.slots_left == 0
    await books_clean()


async def test_a_lane_stopped_mid_call_answers_every_take_it_held(database, monkeypatch):
    """Server shutdown cancels the lane's driver while its call runs: the take in the call and
    those waiting all get an answer (an error), none is left hanging."""
    alice = await p.publisher("alice", balance_fen=3 * SLOT)
    task = await publish(alice, quantity=3)
    crew = await workers(3)
    lanes = TakeLanes(batch_max=1)
    never = asyncio.Event()

    async def stuck_take(task_id, worker_id, **kw):
        await never.wait()

    monkeypatch.setattr(orders, "take", stuck_take)
    takes = [asyncio.create_task(lanes.take(task.id, w.id, None)) for w in crew]
    for _ in range(100):
        if lanes.waiting(task.id) == 2:
            break
        await asyncio.sleep(0.01)
    [driver] = lanes._drivers
    driver.cancel()
    results = await asyncio.wait_for(asyncio.gather(*takes, return_exceptions=True), 10)
    assert [str(r) for r in results] == ["take lane stopped"] * 3
    assert task.id not in lanes._lanes
