"""Records, blocks, task restrictions and automatic limits (issue 14, parts 1 and 3), on both
databases; the take races of a blocked worker are at the end (PostgreSQL only)."""

from __future__ import annotations

import asyncio

import pytest

from models import blocks, clock, orders, records, tasks
from models import settings as market_settings
from models.blocks import BlockedByPublisher, NotQualified, PublisherBlock
from models.errors import DomainError
from models.orders import Order, OrderStatus
from models.records import UserRecord, WorkerLimited
from models.users import User
from tests import personas as p
from tests.models._support import OPERATOR_ID, books_stay_clean, cast, order_in, publish  # noqa: F401

pytestmark = pytest.mark.asyncio


async def _reviewed_orders(c, outcomes: list[str], *, quantity: int | None = None) -> list[Order]:
    """One order per outcome, each by a new worker on one task of Alice's, driven to the outcome."""
    task = await publish(c, quantity=quantity or len(outcomes))
    done = []
    for i, outcome in enumerate(outcomes):
        w = await p.worker(f"w{i}")
        o = await orders.take(task.id, w.id)
        if outcome == "abandon":
            done.append(await orders.abandon(o.id, w.id))
            continue
        o = await orders.submit(o.id, w.id, proof_text="done")
        if outcome == "approve":
            o = await orders.approve(o.id, c.alice.id)
        elif outcome in ("reject", "appeal_won", "appeal_lost"):
            o = await orders.reject(o.id, c.alice.id, reason="blurry")
            if outcome != "reject":
                await orders.appeal(o.id, w.id, reason="it is sharp")
                o = await orders.arbitrate(o.id, OPERATOR_ID, worker_wins=outcome == "appeal_won", note="checked")
        done.append(o)
    return done


async def _settings(**changes) -> market_settings.MarketSettings:
    return await market_settings.update(changes, operator_id=OPERATOR_ID)


# --- part 1: records ---------------------------------------------------------------------------------
async def test_a_publishers_record_counts_outcomes_and_is_new_below_the_minimum_sample(database):
    c = await cast()
    await _settings(record_min_sample=4)
    await _reviewed_orders(c, ["approve", "approve", "reject", "appeal_won", "appeal_lost", "abandon"])
    await records.refresh_all()
    s = await market_settings.current()
    rec = records.publisher_record((await records.get_records([c.alice.id]))[c.alice.id], s)
    assert rec["new"] is False
    assert (rec["tasks"], rec["orders"], rec["reviewed"]) == (1, 6, 5)
    assert rec["approval_bp"] == 4_000  # 2 of 5 reviewed
    assert rec["rejection_bp"] == 6_000
    assert rec["appeal_bp"] == 6_666  # 2 of 3 rejections appealed
    assert rec["appeals_decided"] == 2 and rec["appeals_lost_bp"] == 5_000
    assert rec["auto_approve_bp"] == 0
    assert rec["median_review_s"] == 0  # reviewed at once (the clock did not move)

    await _settings(record_min_sample=6)
    await records.refresh_all()
    rec = records.publisher_record((await records.get_records([c.alice.id]))[c.alice.id], await market_settings.current())
    assert rec["new"] is True and rec["approval_bp"] is None and rec["orders"] == 6


async def test_a_publisher_who_never_reviews_shows_auto_approvals_and_review_time(database):
    c = await cast()
    await _settings(record_min_sample=1)
    task = await publish(c, quantity=2)
    o1 = await orders.take(task.id, c.bob.id)
    await orders.submit(o1.id, c.bob.id)
    o2 = await orders.take(task.id, c.charlie.id)
    await orders.submit(o2.id, c.charlie.id)
    clock.advance(60)
    await orders.approve(o1.id, c.alice.id)
    clock.advance(1_200)  # the review window of o2 ends: approved by the timer
    await orders.settle_due_for(c.alice.id)
    await records.refresh_all()
    rec = records.publisher_record((await records.get_records([c.alice.id]))[c.alice.id], await market_settings.current())
    assert rec["auto_approve_bp"] == 5_000 and rec["approval_bp"] == 10_000
    assert rec["median_review_s"] == 60  # only reviews made in person count


async def test_a_publisher_without_orders_is_new_with_zero_counts(database):
    c = await cast()
    rec = records.publisher_record(None, await market_settings.current())
    assert rec["new"] is True and rec["orders"] == 0 and rec["approval_bp"] is None
    await publish(c)
    await records.refresh_all()
    rec = records.publisher_record((await records.get_records([c.alice.id])).get(c.alice.id), await market_settings.current())
    assert rec["tasks"] == 1 and rec["orders"] == 0


async def test_a_workers_record_counts_completions_failures_abandons_and_appeals(database):
    c = await cast()
    await _settings(record_min_sample=2)
    task = await publish(c, quantity=1)
    o = await orders.take(task.id, c.bob.id)
    await orders.abandon(o.id, c.bob.id)  # the slot goes back to the hall
    for outcome in ("approve", "appeal_won", "appeal_lost"):
        t = await publish(c)
        await order_in(OrderStatus.COMPLETED if outcome == "approve" else OrderStatus.APPEALING, c, t)
        if outcome != "approve":
            order = await Order.get(task_id=t.id, worker_id=c.bob.id)
            await orders.arbitrate(order.id, OPERATOR_ID, worker_wins=outcome == "appeal_won", note="checked")
    await records.refresh_all()
    rec = records.worker_record((await records.get_records([c.bob.id]))[c.bob.id], await market_settings.current())
    assert (rec["orders"], rec["completed"], rec["failed"], rec["abandoned"]) == (4, 2, 1, 1)
    assert rec["approval_bp"] == 6_666 and rec["abandon_bp"] == 2_500
    assert (rec["appeals_won"], rec["appeals_lost"]) == (1, 1)
    assert rec["limited"] is None


async def test_orders_older_than_the_window_age_out_at_the_next_full_refresh(database):
    c = await cast()
    await _reviewed_orders(c, ["approve"])
    await records.refresh_all()
    assert (await UserRecord.get(user_id=c.alice.id)).orders_n == 1
    clock.advance(91 * 86_400)
    await records.refresh_all()
    assert await UserRecord.get_or_none(user_id=c.alice.id) is None  # nothing left in the window


async def test_the_incremental_refresh_recomputes_only_the_users_who_moved(database):
    c = await cast()
    await _reviewed_orders(c, ["approve"])
    assert await records.refresh_changed() >= 2  # Alice and the worker
    assert (await UserRecord.get(user_id=c.alice.id)).approved_n == 1
    other = await p.publisher("olga", balance_fen=10_000)
    t = await tasks.publish(other.id, title="t", instructions="i", unit_price_fen=1_000)
    await orders.take(t.id, c.bob.id)
    await records.refresh_changed()
    assert (await UserRecord.get(user_id=other.id)).orders_n == 1
    assert (await UserRecord.get(user_id=c.bob.id)).orders_n == 1


# --- part 3: blocks ----------------------------------------------------------------------------------
async def test_a_blocked_worker_cannot_take_the_publishers_tasks_but_others_can(database, books_stay_clean):
    c = await cast()
    first = await order_in(OrderStatus.COMPLETED, c)
    _, new = await blocks.block(c.alice.id, order_id=first.id, reason="copied proofs")
    assert new is True
    task = await publish(c, quantity=2)
    with pytest.raises(BlockedByPublisher) as refused:
        await orders.take(task.id, c.bob.id)
    assert refused.value.status == 403 and refused.value.code == "blocked_by_publisher"
    assert (await tasks.Task.get(id=task.id)).slots_untaken == 2
    assert (await User.get(id=c.bob.id)).orders_in_progress == 0  # the worker's counter rolled back
    await orders.take(task.id, c.charlie.id)  # another worker still can
    other = await tasks.publish(c.erin.id, title="t", instructions="i", unit_price_fen=1_000)
    await orders.take(other.id, c.bob.id)  # and Bob still takes other publishers' tasks


async def test_blocking_twice_keeps_the_first_reason_and_unblocking_lets_the_worker_back(database):
    c = await cast()
    first = await order_in(OrderStatus.COMPLETED, c)
    await blocks.block(c.alice.id, order_id=first.id, reason="first reason")
    row, new = await blocks.block(c.alice.id, worker_id=c.bob.id, reason="second reason")
    assert new is False and row.reason == "first reason"
    await blocks.unblock(c.alice.id, c.bob.id)
    with pytest.raises(blocks.BlockNotFound):
        await blocks.unblock(c.alice.id, c.bob.id)
    task = await publish(c)
    await orders.take(task.id, c.bob.id)


async def test_a_publisher_blocks_only_workers_who_worked_for_them(database):
    c = await cast()
    with pytest.raises(blocks.NotMyWorker):
        await blocks.block(c.alice.id, worker_id=c.charlie.id, reason="never met")
    other = await tasks.publish(c.erin.id, title="t", instructions="i", unit_price_fen=1_000)
    erins = await orders.take(other.id, c.bob.id)
    with pytest.raises(DomainError) as refused:
        await blocks.block(c.alice.id, order_id=erins.id, reason="not my order")
    assert refused.value.code == "order_not_found"
    assert await PublisherBlock.all().count() == 0


async def test_a_block_leaves_orders_already_taken_running(database):
    c = await cast()
    order = await order_in(OrderStatus.IN_PROGRESS, c)
    await blocks.block(c.alice.id, order_id=order.id, reason="rude")
    done = await orders.submit(order.id, c.bob.id, proof_text="done")
    assert done.status == OrderStatus.AWAITING_REVIEW


# --- part 3: restrictions ----------------------------------------------------------------------------
async def test_a_restricted_task_refuses_workers_below_its_minimums(database):
    c = await cast()
    await _settings(record_min_sample=1)
    task = await tasks.publish(c.alice.id, title="t", instructions="i", unit_price_fen=1_000, quantity=3,
                               min_approval_bp=9_000, min_completed_orders=1)
    assert (task.min_approval_bp, task.min_completed_orders) == (9_000, 1)
    with pytest.raises(NotQualified) as refused:
        await orders.take(task.id, c.bob.id)  # no record at all
    assert refused.value.details == {"min_approval_bp": 9_000, "min_approval_percent": "90%", "min_completed_orders": 1,
                                     "approval_bp": None, "completed_orders": 0}
    assert "90%" in refused.value.text("zh-CN")
    other = await tasks.publish(c.erin.id, title="t", instructions="i", unit_price_fen=1_000)
    o = await orders.take(other.id, c.bob.id)
    await orders.submit(o.id, c.bob.id)
    await orders.approve(o.id, c.erin.id)
    await records.refresh_changed()
    await orders.take(task.id, c.bob.id)  # 1 completed, 100 %: qualified now


async def test_restrictions_are_validated_at_publish(database):
    c = await cast()
    for bad in ({"min_approval_bp": 10_001}, {"min_approval_bp": -1}, {"min_completed_orders": -1}, {"min_completed_orders": 1.5}):
        with pytest.raises(DomainError) as refused:
            await tasks.publish(c.alice.id, title="t", instructions="i", unit_price_fen=1_000, **bad)
        assert refused.value.code == "invalid_input" and set(refused.value.details["fields"]) == set(bad)


# --- part 3: automatic limits ------------------------------------------------------------------------
async def test_a_worker_who_abandons_too_often_is_limited_with_the_reason_until_the_oldest_leaves_the_window(database):
    c = await cast()
    await _settings(limit_max_abandons=2, limit_window_days=7)
    first_abandon_at = None
    for i in range(2):
        task = await publish(c)
        o = await orders.take(task.id, c.bob.id)
        await orders.abandon(o.id, c.bob.id)
        first_abandon_at = first_abandon_at or clock.now()
        clock.advance(3_600)
    await records.refresh_changed()
    task = await publish(c)
    with pytest.raises(WorkerLimited) as refused:
        await orders.take(task.id, c.bob.id)
    d = refused.value.details
    assert refused.value.status == 403 and (d["reason"], d["count"], d["max"], d["window_days"]) == ("abandons", 2, 2, 7)
    assert "放弃订单 2 次" in refused.value.text("zh-CN") and "北京时间" in refused.value.text("zh-CN")
    rec = records.worker_record(await UserRecord.get(user_id=c.bob.id), await market_settings.current())
    assert rec["limited"]["reason"] == "abandons"
    clock.advance(7 * 86_400 - 2 * 3_600 + 60)  # the first abandon left the window
    await records.refresh_all()
    task = await publish(c)
    await orders.take(task.id, c.bob.id)


async def test_a_worker_who_lost_too_many_appeals_is_limited(database):
    c = await cast()
    await _settings(limit_max_appeals_lost=1)
    order = await order_in(OrderStatus.APPEALING, c)
    await orders.arbitrate(order.id, OPERATOR_ID, worker_wins=False, note="the proof is fake")
    await records.refresh_changed()
    task = await publish(c)
    with pytest.raises(WorkerLimited) as refused:
        await orders.take(task.id, c.bob.id)
    assert refused.value.details["reason"] == "appeals_lost"
    await _settings(limit_max_appeals_lost=0)  # off: the next refresh lifts it
    await records.refresh_all()
    await orders.take(task.id, c.bob.id)


async def test_the_limit_settings_are_validated(database):
    for bad in ({"record_window_days": 0}, {"record_min_sample": 0}, {"limit_window_days": 400}, {"limit_max_abandons": -1}):
        with pytest.raises(DomainError) as refused:
            await _settings(**bad)
        assert set(refused.value.details["fields"]) == set(bad)


# --- races (PostgreSQL) ------------------------------------------------------------------------------
@pytest.mark.postgres
async def test_in_a_crowd_the_blocked_workers_lose_with_their_reason_and_the_slots_go_to_the_others(database, books_stay_clean):
    c = await cast()
    crowd = [await p.worker(f"crowd{i}") for i in range(24)]
    history = await tasks.publish(c.alice.id, title="h", instructions="i", unit_price_fen=1_000, quantity=12)
    blocked = crowd[:12]
    for w in blocked:
        o = await orders.take(history.id, w.id)
        await blocks.block(c.alice.id, order_id=o.id, reason="spam")
        await orders.abandon(o.id, w.id)
    task = await tasks.publish(c.alice.id, title="t", instructions="i", unit_price_fen=1_000, quantity=6)

    async def attempt(w):
        try:
            await orders.take(task.id, w.id)
            return "won"
        except DomainError as e:
            return e.code

    results = await asyncio.gather(*(attempt(w) for w in crowd))
    assert [r for r in results[:12]] == ["blocked_by_publisher"] * 12
    assert sorted(results[12:]) == ["slot_taken"] * 6 + ["won"] * 6
    assert await Order.filter(task_id=task.id).count() == 6
    assert not await Order.filter(task_id=task.id, worker_id__in=[w.id for w in blocked]).exists()


@pytest.mark.postgres
async def test_a_block_and_the_blocked_workers_takes_at_the_same_moment(database, books_stay_clean):
    """Whichever commits first decides: the worker either got the slot before the block, or is
    refused for it; never an order taken after the block was committed."""
    c = await cast()
    for round_ in range(10):
        w = await p.worker(f"racer{round_}")
        past = await publish(c)
        o = await orders.take(past.id, w.id)
        await orders.abandon(o.id, w.id)
        task = await publish(c)

        async def take():
            try:
                return await orders.take(task.id, w.id)
            except DomainError as e:
                return e.code

        async def block():
            row, _ = await blocks.block(c.alice.id, worker_id=w.id, reason="race")
            return row

        took, row = await asyncio.gather(take(), block())
        if not isinstance(took, Order):
            assert took == "blocked_by_publisher"
            assert (await tasks.Task.get(id=task.id)).slots_untaken == 1
        # After the block committed, a take always loses.
        again = await publish(c)
        with pytest.raises(BlockedByPublisher):
            await orders.take(again.id, w.id)
