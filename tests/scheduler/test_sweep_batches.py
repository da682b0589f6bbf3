"""Sweep batches at scale (issue 12): a lane's batches grow while a backlog keeps them full, and
people who meet rows a batch holds wait for it and lose quietly, never half-applied.

The growth test runs on SQLite (where batches keep their size) and on PostgreSQL; the races are
PostgreSQL only. Batches are paused at a step before their commit with `timer_batch._checkpoint`.
"""

from __future__ import annotations

import asyncio

import pytest

from models import db, orders
from models.errors import DomainError
from models.orders import Order, OrderStatus
from models.users import User
from scheduler import sweeper
from tests import personas as p
from tests.scheduler.test_sweeper import SLOT, advance_to, books_clean, entries, publish, submitted, taken

pytestmark = pytest.mark.asyncio


async def audit_rows(action: str, target_id: int) -> int:
    row = await db.fetch_one("SELECT COUNT(*) AS n FROM audit_log WHERE action = $1 AND target_id = $2", action, target_id)
    return int(row["n"])


def record_batches(monkeypatch) -> list[tuple[int, int]]:
    """(size asked, rows claimed) of every order batch from now on."""
    from models import timer_batch

    seen: list[tuple[int, int]] = []
    real = timer_batch.settle_orders

    async def recording(size: int) -> int:
        n = await real(size)
        seen.append((size, n))
        return n

    monkeypatch.setattr(timer_batch, "settle_orders", recording)
    return seen


def pause_batch_at(monkeypatch, step: str) -> tuple[asyncio.Event, asyncio.Event]:
    """Stop the first batch that reaches `step` until `go` is set; `paused` says it got there."""
    from models import timer_batch

    paused, go = asyncio.Event(), asyncio.Event()

    async def checkpoint(name: str) -> None:
        if name == step and not paused.is_set():
            paused.set()
            await asyncio.wait_for(go.wait(), 10)

    monkeypatch.setattr(timer_batch, "_checkpoint", checkpoint)
    return paused, go


async def test_a_lanes_batches_grow_while_a_backlog_keeps_them_full(database, monkeypatch):
    _, os = await submitted(60)
    advance_to(max(o.review_deadline_at for o in os), plus_s=1)
    batches = record_batches(monkeypatch)

    assert await sweeper.sweep_all(batch=5, lanes=1) == 60

    if db.is_postgres():  # doubled while full, up to BATCH_GROWTH x the batch
        assert batches == [(5, 5), (10, 10), (20, 20), (20, 20), (20, 5)]
    else:  # one writer: batches keep their size
        assert {size for size, _ in batches} == {5} and sum(n for _, n in batches) == 60
    for o in os:
        assert (await Order.get(id=o.id)).status == OrderStatus.COMPLETED
        assert await entries(f"order:{o.id}:complete") == 1
        assert await audit_rows("order.review_timeout", o.id) == 1
    await books_clean()


async def test_a_batch_that_is_not_full_starts_the_next_sweep_at_the_configured_size(database, monkeypatch):
    _, os = await submitted(12)
    advance_to(max(o.review_deadline_at for o in os), plus_s=1)
    batches = record_batches(monkeypatch)

    assert await sweeper.sweep_all(batch=5, lanes=1) == 12
    assert await sweeper.sweep_all(batch=5, lanes=1) == 0

    expected = [(5, 5), (10, 7), (5, 0)] if db.is_postgres() else [(5, 5), (5, 5), (5, 2), (5, 0)]
    assert batches == expected
    await books_clean()


@pytest.mark.postgres
@pytest.mark.parametrize("step", ["written", "locked"])
async def test_a_reader_of_an_order_a_batch_holds_waits_and_sees_the_batchs_outcome(database, monkeypatch, step):
    """Bob reads his order (the read applies an overdue timer itself) while a batch has claimed it:
    his read waits for the batch, then finds the timer applied and shows it; paid once."""
    alice, os = await submitted(6)
    advance_to(max(o.review_deadline_at for o in os), plus_s=1)
    paused, go = pause_batch_at(monkeypatch, step)
    bob_order = os[3]

    sweep = asyncio.create_task(sweeper.sweep_orders(batch=10))
    await paused.wait()
    read = asyncio.create_task(orders.get_order(bob_order.id, worker_id=bob_order.worker_id))
    await asyncio.sleep(0.3)
    assert not read.done(), "the read went past a row the batch holds"
    go.set()
    swept, seen = await asyncio.gather(sweep, read)

    assert swept == 6
    assert seen.status == OrderStatus.COMPLETED and seen.finished_by == "review_timeout"
    assert await entries(f"order:{bob_order.id}:complete") == 1
    assert await audit_rows("order.review_timeout", bob_order.id) == 1
    assert await p.available(bob_order.worker_id) == bob_order.unit_price_fen
    await books_clean()


@pytest.mark.postgres
async def test_a_publisher_approving_an_order_a_batch_holds_loses_to_the_timer(database, monkeypatch):
    """Alice approves an order whose review window has just ended while a batch holds it: she waits
    for the batch and is answered that the deadline passed; the worker is paid once, by the timer."""
    alice, os = await submitted(6)
    advance_to(max(o.review_deadline_at for o in os), plus_s=1)
    paused, go = pause_batch_at(monkeypatch, "written")
    target = os[0]

    sweep = asyncio.create_task(sweeper.sweep_orders(batch=10))
    await paused.wait()
    approve = asyncio.create_task(orders.approve(target.id, alice.id))
    await asyncio.sleep(0.3)
    go.set()
    swept, approved = await asyncio.gather(sweep, approve, return_exceptions=True)

    assert swept == 6
    assert isinstance(approved, DomainError), repr(approved)
    assert approved.code in {"deadline_passed", "invalid_transition"}, approved.code
    assert (await Order.get(id=target.id)).finished_by == "review_timeout"
    assert await entries(f"order:{target.id}:complete") == 1
    assert await audit_rows("order.approve", target.id) == 0
    await books_clean()


@pytest.mark.postgres
@pytest.mark.parametrize("step", ["written", "locked"])
async def test_a_worker_taking_a_task_while_a_batch_settles_his_order_keeps_an_exact_count(database, monkeypatch, step):
    """Bob's countdown ends in a batch when he takes another task: before the batch writes his
    in-progress counter ("written") his take goes first and the batch's UPDATE waits for it; after
    ("locked": his user row is the batch's) his take waits. Either way both count."""
    alice, [o] = await taken(1)
    bob = await User.get(id=o.worker_id)
    advance_to(o.submit_deadline_at, plus_s=1)
    await p.fund(alice, SLOT)
    other = await publish(alice)
    paused, go = pause_batch_at(monkeypatch, step)

    sweep = asyncio.create_task(sweeper.sweep_orders(batch=10))
    await paused.wait()
    take = asyncio.create_task(orders.take(other.id, bob.id))
    await asyncio.sleep(0.3)
    go.set()
    swept, new_order = await asyncio.gather(sweep, take, return_exceptions=True)

    assert swept == 1
    assert isinstance(new_order, Order), repr(new_order)
    assert (await Order.get(id=o.id)).status == OrderStatus.AWAITING_REVIEW
    assert (await User.get(id=bob.id)).orders_in_progress == 1
    await books_clean()
