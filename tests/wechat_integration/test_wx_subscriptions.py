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
    # Push rows are not ours: the drainer never claims one (the live server's relay does, so their
    # status is not ours to assert; only the drainer writes last_error).
    assert await Outbox.filter(channel=Channel.PUSH, last_error__isnull=False).count() == 0
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


@pytest.mark.asyncio
async def test_the_daily_quota_45009_fails_the_message_at_once_and_is_not_retried(live):
    alice = await one_event(live)
    live.state.inject_send_fault(45009, times=1)
    await drain(live)
    row = await subscribe_rows().get()
    assert row.status == OutboxStatus.FAILED and row.attempts == 1 and "45009" in row.last_error
    from models.outbox import Pending

    out = Pending()
    out.subscribe("order_taken", {"order_id": 2, "task_id": 2, "title": "again", "taken_at": clock.now().isoformat()}, alice.id)
    await out.write()
    clock.advance(3_600)
    await drain(live)
    assert live.state.send_attempts == 1  # the same day: WeChat is not called again
    assert await subscribe_rows().filter(status=OutboxStatus.FAILED).count() == 2
    assert live.state.messages == []


async def many_events(live, n: int):
    alice, _ = await cast(live)
    from models.outbox import Pending

    out = Pending()
    for i in range(n):
        out.subscribe("order_taken", {"order_id": i, "task_id": i, "title": f"task {i}", "taken_at": clock.now().isoformat()}, alice.id)
    await out.write()
    return alice


@pytest.mark.asyncio
async def test_a_row_left_claimed_by_a_dead_drainer_was_never_sent_so_it_is_sent(live):
    alice = await one_event(live)
    row = await subscribe_rows().get()
    await Outbox.filter(id=row.id).update(last_error=drainer.CLAIMED, attempts=1)  # claimed; died before sending
    clock.advance(drainer.LEASE_S + 1)
    await drain(live)
    row = await subscribe_rows().get()
    assert row.status == OutboxStatus.SENT and row.attempts == 1  # the claim that never sent does not count
    assert len(live.state.messages_to(alice.openid)) == 1


@pytest.mark.asyncio
async def test_a_drainer_claims_only_what_it_sends_now_and_a_stop_leaves_the_rest_unclaimed(live):
    alice = await many_events(live, 40)
    live.state.inject_send_fault(None, times=40, delay_s=0.1, record=True)  # slow, successful sends
    round_ = asyncio.create_task(drain(live))
    claimed_at_once = 0
    while not round_.done():
        held = await subscribe_rows().filter(last_error__in=[drainer.CLAIMED, INFLIGHT]).count()
        claimed_at_once = max(claimed_at_once, held)
        if await subscribe_rows().filter(status=OutboxStatus.SENT).count() >= 8:
            drainer.request_stop()  # SIGTERM reached the scheduler
        await asyncio.sleep(0.01)
    try:
        handled = await round_
    finally:
        drainer.allow_rounds()
    assert claimed_at_once <= drainer.SEND_CONCURRENCY
    assert 8 <= handled < 40
    assert await subscribe_rows().filter(status=OutboxStatus.SENT).count() == handled
    left = await subscribe_rows().filter(status=OutboxStatus.PENDING)
    assert len(left) == 40 - handled and all(r.last_error is None and r.attempts == 0 for r in left)  # never claimed
    await drain(live)
    assert await subscribe_rows().filter(status=OutboxStatus.SENT).count() == 40
    assert len(live.state.messages_to(alice.openid)) == 40


@pytest.mark.asyncio
async def test_a_round_cancelled_before_sending_gives_its_claims_back(live, monkeypatch):
    await many_events(live, 3)
    entered = asyncio.Event()

    async def stuck_enrich(event, payload):
        entered.set()
        await asyncio.sleep(60)

    monkeypatch.setattr(drainer, "enrich", stuck_enrich)
    round_ = asyncio.create_task(drain(live))
    await entered.wait()
    round_.cancel()  # the scheduler's grace ran out
    with pytest.raises(asyncio.CancelledError):
        await round_
    rows = await subscribe_rows()
    assert all(r.status == OutboxStatus.PENDING and r.last_error is None and r.attempts == 0 for r in rows), [(r.status, r.last_error, r.attempts) for r in rows]


@pytest.mark.asyncio
async def test_a_round_cancelled_while_looking_up_recipients_gives_its_claims_back(live, monkeypatch):
    """The cancel can land anywhere after the claim committed: here in the recipients' lookup, before
    any send began (this gap once kept the rows claimed for the whole lease)."""
    await many_events(live, 3)
    entered = asyncio.Event()

    class StuckUsers:
        @staticmethod
        def filter(**_):
            async def stuck():
                entered.set()
                await asyncio.sleep(60)
            return stuck()

    monkeypatch.setattr(drainer, "User", StuckUsers)
    round_ = asyncio.create_task(drain(live))
    await entered.wait()
    round_.cancel()
    with pytest.raises(asyncio.CancelledError):
        await round_
    rows = await subscribe_rows()
    assert len(rows) == 3
    assert all(r.status == OutboxStatus.PENDING and r.last_error is None and r.attempts == 0 for r in rows), [(r.status, r.last_error, r.attempts) for r in rows]
