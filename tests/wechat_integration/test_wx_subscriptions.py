"""Subscription messages: outbox rows written by transitions → the drainer → the sandbox's record."""

from __future__ import annotations

import asyncio

import pytest

from models import clock, orders, tasks
from models.outbox import Channel, Outbox, OutboxStatus
from models.users import End
from scheduler import outbox as drainer
from scheduler.outbox import INFLIGHT
from tests import personas as p


async def cast(live):
    alice, _ = await live.services.login(End.PUBLISHER, "alice-1")
    bob, _ = await live.services.login(End.WORKER, "bob-1")
    await p.fund(alice, 10_000)
    return alice, bob


async def drain(live, **kw):
    return await drainer.drain_subscriptions(live.services.mp, **kw)


def subscribe_rows():
    return Outbox.filter(channel=Channel.SUBSCRIBE)


@pytest.mark.asyncio
async def test_an_order_awaiting_review_messages_the_publisher_with_its_template_and_page(live):
    alice, bob = await cast(live)
    task = await tasks.publish(alice.id, title="Scan the QR code and follow", instructions="do it", unit_price_fen=500)
    order = await orders.take(task.id, bob.id)
    await orders.submit(order.id, bob.id, proof_text="done")
    await drain(live)
    msgs = live.state.messages_to(alice.openid)
    assert sorted(m["template_id"] for m in msgs) == ["REPLACE-publisher-awaiting-review", "REPLACE-publisher-order-taken"]
    (review,) = [m for m in msgs if m["template_id"] == "REPLACE-publisher-awaiting-review"]
    assert review["page"] == f"pages/order/review?id={order.id}"
    assert review["data"]["thing1"]["value"] == "Scan the QR code an…"  # thing ≤ 20 characters
    assert review["data"]["time2"]["value"].count(":") == 1  # Beijing time "YYYY-MM-DD HH:MM"
    assert await subscribe_rows().filter(status=OutboxStatus.SENT).count() == 2
    assert await Outbox.filter(channel=Channel.PUSH).exclude(status=OutboxStatus.PENDING).count() == 0  # not ours
    await drain(live)
    assert len(live.state.messages_to(alice.openid)) == 2  # never twice


@pytest.mark.asyncio
async def test_a_task_expiring_tells_the_publisher_what_came_back(live):
    alice, bob = await cast(live)
    task = await tasks.publish(alice.id, title="Like a post", instructions="x", unit_price_fen=1_000, quantity=2)
    clock.advance(181)
    assert await tasks.expire_due(task.id)
    await drain(live)
    (msg,) = live.state.messages_to(alice.openid)
    assert msg["template_id"] == "REPLACE-publisher-task-expired"
    assert msg["page"] == f"pages/task/detail?id={task.id}"
    assert msg["data"]["amount2"]["value"] == "22.00元"  # 2 × (10.00 + 1.00)


@pytest.mark.asyncio
async def test_a_user_who_refused_is_recorded_and_not_retried(live):
    rita, _ = await live.services.login(End.PUBLISHER, "rita-1")
    await p.fund(rita, 5_000)
    await tasks.publish(rita.id, title="T", instructions="x", unit_price_fen=1_000)
    clock.advance(181)
    from scheduler import sweeper

    await sweeper.sweep_all()
    await drain(live)
    row = await subscribe_rows().get()
    assert row.status == OutboxStatus.REFUSED and row.attempts == 1 and "43101" in row.last_error
    clock.advance(10_000)
    await drain(live)
    assert (await subscribe_rows().get()).attempts == 1
    assert live.state.messages == []


async def one_event(live):
    alice, bob = await cast(live)
    task = await tasks.publish(alice.id, title="Share", instructions="x", unit_price_fen=500)
    await orders.take(task.id, bob.id)
    return alice


@pytest.mark.asyncio
async def test_a_busy_wechat_is_retried_with_backoff_and_sent_once(live):
    alice = await one_event(live)
    live.state.inject_send_fault(-1, times=2)
    await drain(live)
    row = await subscribe_rows().get()
    assert row.status == OutboxStatus.PENDING and row.attempts == 1
    assert (row.next_attempt_at - clock.now()).total_seconds() > 5  # backed off
    await drain(live)
    assert (await subscribe_rows().get()).attempts == 1  # not due yet
    clock.advance(11)
    await drain(live)
    clock.advance(21)
    await drain(live)
    row = await subscribe_rows().get()
    assert row.status == OutboxStatus.SENT and row.attempts == 3
    assert len(live.state.messages_to(alice.openid)) == 1


@pytest.mark.asyncio
async def test_it_gives_up_after_the_attempt_cap(live):
    await one_event(live)
    live.state.inject_send_fault(45011, times=10)
    for _ in range(3):
        await drain(live, max_attempts=3)
        clock.advance(3_600)
    row = await subscribe_rows().get()
    assert row.status == OutboxStatus.FAILED and row.attempts == 3


@pytest.mark.asyncio
async def test_a_timeout_is_not_resent_because_it_may_have_been_delivered(live):
    alice = await one_event(live)
    live.state.inject_send_fault(delay_s=1.5, record=True)  # WeChat got it; its answer comes too late
    await drain(live)
    row = await subscribe_rows().get()
    assert row.status == OutboxStatus.FAILED and "outcome unknown" in row.last_error
    clock.advance(10_000)
    await drain(live)
    assert live.state.send_attempts == 1  # one try only: at most once
    assert len(live.state.messages_to(alice.openid)) <= 1


@pytest.mark.asyncio
async def test_an_expired_token_is_refreshed_and_the_message_sent_once(live):
    alice = await one_event(live)
    await live.services.mp.access_token("publisher")
    live.state.revoke_tokens(live.services.cfg.publisher.appid, errcode=40001)
    await drain(live)
    assert (await subscribe_rows().get()).status == OutboxStatus.SENT
    assert len(live.state.messages_to(alice.openid)) == 1


@pytest.mark.asyncio
async def test_a_row_left_in_flight_by_a_dead_drainer_is_not_resent(live):
    alice = await one_event(live)
    row = await subscribe_rows().get()
    await Outbox.filter(id=row.id).update(last_error=INFLIGHT, attempts=1)  # claimed, then the process died
    clock.advance(drainer.LEASE_S + 1)
    await drain(live)
    row = await subscribe_rows().get()
    assert row.status == OutboxStatus.FAILED and "outcome unknown" in row.last_error
    assert live.state.messages_to(alice.openid) == []


@pytest.mark.asyncio
async def test_an_event_without_a_template_is_marked_sent(live):
    alice, bob = await cast(live)
    from models.outbox import Pending

    out = Pending()
    out.subscribe("something_new", {"x": 1}, alice.id)
    await out.write()
    await drain(live)
    row = await subscribe_rows().get()
    assert row.status == OutboxStatus.SENT and "no template" in row.last_error
    assert live.state.messages == []


@pytest.mark.asyncio
@pytest.mark.postgres
async def test_two_drainers_at_once_send_each_message_once(live):
    alice, bob = await cast(live)
    from models.outbox import Pending

    out = Pending()
    for i in range(40):
        out.subscribe("order_taken", {"order_id": i, "task_id": i, "title": f"task {i}", "taken_at": clock.now().isoformat()}, alice.id)
    await out.write()
    claimed = await asyncio.gather(drain(live, batch=25), drain(live, batch=25), drain(live, batch=25))
    assert sum(claimed) == 40
    assert len(live.state.messages_to(alice.openid)) == 40
    assert sorted(m["page"] for m in live.state.messages) == sorted(f"pages/task/detail?id={i}" for i in range(40))
    assert await subscribe_rows().filter(status=OutboxStatus.SENT).count() == 40
