"""GET /publisher/orders: what waits for the publisher across all their tasks (orders to review,
appeals to answer), however old the task and however many orders it has — the Publisher Mini
Program's review queue reads it instead of the latest tasks' details, so an order awaiting review
is never auto-approved unseen because its task was old or crowded."""

from __future__ import annotations

import pytest

from models import appeals, clock, orders, tasks
from models.users import User
from tests import personas as p
from tests.api import _support as S
from tests.conftest import TEST_SETTINGS

pytestmark = pytest.mark.asyncio
WAITING = "/api/v1/publisher/orders"


async def _walk(c, params: dict, limit: int) -> list[dict]:
    """Every page, following next_cursor; each order once."""
    seen: list[dict] = []
    cursor = None
    while True:
        r = await c.get(WAITING, params=params | {"limit": limit} | ({"cursor": cursor} if cursor else {}))
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= limit
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


async def _publish(publisher_id: int, title: str, quantity: int = 1):
    return await tasks.publish(publisher_id, title=title, instructions="Scan the code", unit_price_fen=100, quantity=quantity)


async def test_every_order_awaiting_my_review_is_listed_soonest_deadline_first_however_old_its_task(live):
    pub = await live.login("publisher", "alice")
    other = await live.login("publisher", "carol")
    await p.fund(await User.get(id=pub.id), 100_000)
    await p.fund(await User.get(id=other.id), 10_000)
    w1, w2, w3 = [await User.get(id=(await live.login("worker", n)).id) for n in ("bob", "dan", "eve")]

    old = await _publish(pub.id, "the oldest task")
    crowded = await _publish(pub.id, "crowded", quantity=3)
    for i in range(55):  # more tasks than the app's old queue looked at (the latest 50)
        await _publish(pub.id, f"newer {i}")
    theirs = await _publish(other.id, "not alice's")

    a = await orders.take(old.id, w1.id)
    b = await orders.take(crowded.id, w2.id)
    c_ = await orders.take(crowded.id, w3.id)
    x = await orders.take(theirs.id, w2.id)
    still_working = await orders.take(crowded.id, w1.id)
    # Submitted in the order b, a, c: b's review deadline is the soonest though its id is not the lowest.
    for o, worker in ((b, w2), (a, w1), (c_, w3), (x, w2)):
        await orders.submit(o.id, worker.id, proof_text="done")
        clock.advance(10)

    async with live.client(pub.token) as c:
        listed = await _walk(c, {}, limit=2)
        assert [o["id"] for o in listed] == [b.id, a.id, c_.id]  # not x (carol's), not still_working (in progress)
        assert [o["review_deadline_at"] for o in listed] == sorted(o["review_deadline_at"] for o in listed)
        first = listed[1]
        assert first["status"] == "awaiting_review" and first["task"]["title"] == "the oldest task"
        assert first["worker_id"] == w1.id and "worker_record" in first and first["proof_text"] == "done"
        ids = [o["id"] for o in listed]
        assert [o["id"] for o in await _walk(c, {"need": "review"}, limit=50)] == ids  # review is the default

        # Decided orders leave the list; the rest keep their order.
        r = await c.post(f"/api/v1/publisher/orders/{a.id}/approve")
        assert r.status_code == 200, r.text
        assert [o["id"] for o in await _walk(c, {}, limit=1)] == [b.id, c_.id]

        # A cursor is after its order even when that order has left the list since.
        r = await c.get(WAITING, params={"limit": 1})
        cursor = r.json()["next_cursor"]
        assert cursor == str(b.id)
        await orders.approve(b.id, pub.id)
        r = await c.get(WAITING, params={"limit": 1, "cursor": cursor})
        assert [o["id"] for o in r.json()["items"]] == [c_.id]

        # Timers are settled before listing: c's review window ended (approved automatically, gone);
        # still_working's countdown ended, which opens its review window now (a whole one).
        clock.advance(TEST_SETTINGS["review_window_s"] + 1)
        late = await _walk(c, {}, limit=50)
        assert [(o["id"], o["status"]) for o in late] == [(still_working.id, "awaiting_review")]
    assert (await orders.get_order(c_.id)).status.value == "completed"


async def test_appeals_wait_for_my_answer_until_i_answer_them(live):
    pub = await live.login("publisher", "alice")
    await p.fund(await User.get(id=pub.id), 10_000)
    w1, w2 = [await User.get(id=(await live.login("worker", n)).id) for n in ("bob", "dan")]
    task = await _publish(pub.id, "appealed", quantity=2)
    first = await orders.take(task.id, w1.id)
    second = await orders.take(task.id, w2.id)
    for o, w in ((first, w1), (second, w2)):
        await orders.submit(o.id, w.id, proof_text="done")
        await orders.reject(o.id, pub.id, reason="the photo is blurry and unreadable")
        await orders.appeal(o.id, w.id, reason="it was sharp")
        clock.advance(5)

    async with live.client(pub.token) as c:
        assert await _walk(c, {"need": "review"}, limit=50) == []
        listed = await _walk(c, {"need": "answer"}, limit=1)
        assert [o["id"] for o in listed] == [first.id, second.id]  # the oldest appeal first
        assert all(o["status"] == "appealing" and o["answered_at"] is None for o in listed)
        await appeals.answer(first.id, pub.id, text="the QR code is not in the photo")
        assert [o["id"] for o in await _walk(c, {"need": "answer"}, limit=50)] == [second.id]


async def test_the_list_refuses_what_it_does_not_know_and_shows_nobody_elses_orders(live):
    pub = await live.login("publisher", "alice")
    other = await live.login("publisher", "carol")
    await p.fund(await User.get(id=other.id), 10_000)
    worker = await User.get(id=(await live.login("worker", "bob")).id)
    theirs = await orders.take((await _publish(other.id, "carol's")).id, worker.id)
    await orders.submit(theirs.id, worker.id, proof_text="done")

    async with live.client(pub.token) as c:
        S.assert_error(await c.get(WAITING, params={"need": "everything"}), 400, "invalid_input")
        # Another publisher's order as a cursor is not a cursor this server gave alice.
        err = S.assert_error(await c.get(WAITING, params={"cursor": str(theirs.id)}), 400, "invalid_input")
        assert list(err["details"]["fields"]) == ["cursor"], err
        S.assert_error(await c.get(WAITING, params={"limit": 0}), 400, "invalid_input")
        assert (await c.get(WAITING)).json() == {"items": [], "next_cursor": None}
    async with live.client(other.token) as c:
        assert [o["id"] for o in (await c.get(WAITING)).json()["items"]] == [theirs.id]
    wk = await live.login("worker", "dan")
    async with live.client(wk.token) as c:
        assert (await c.get(WAITING)).status_code == 403


async def test_the_overview_counts_over_all_my_tasks_and_its_escrow_is_the_ledgers(live):
    from models.ledger import AccountKind

    pub = await live.login("publisher", "alice")
    await p.fund(await User.get(id=pub.id), 1_000_000)
    w1, w2 = [await User.get(id=(await live.login("worker", n)).id) for n in ("bob", "dan")]
    many = [await _publish(pub.id, f"task {i}", quantity=2) for i in range(60)]  # more than a page of tasks
    reviewed = await orders.take(many[0].id, w1.id)
    await orders.submit(reviewed.id, w1.id, proof_text="done")
    appealed = await orders.take(many[1].id, w2.id)
    await orders.submit(appealed.id, w2.id, proof_text="done")
    await orders.reject(appealed.id, pub.id, reason="the photo is blurry and unreadable")
    await orders.appeal(appealed.id, w2.id, reason="it was sharp")
    await tasks.cancel(many[2].id, pub.id)  # its slots come back: nothing held, not running

    async with live.client(pub.token) as c:
        r = await c.get("/api/v1/publisher/overview")
        assert r.status_code == 200, r.text
        o = r.json()
        listed = await _walk_tasks(c)
    assert len(listed) == 60
    assert o["running_tasks"] == sum(t["status"] in ("open", "full") for t in listed) == 59
    assert o["held_fen"] == sum(t["held_fen"] for t in listed) == await p.platform(AccountKind.ESCROW)
    assert (o["awaiting_review"], o["appeals_to_answer"]) == (1, 1)
    await appeals.answer(appealed.id, pub.id, text="the QR code is not in the photo")
    async with live.client(pub.token) as c:
        assert (await c.get("/api/v1/publisher/overview")).json()["appeals_to_answer"] == 0


async def _walk_tasks(c) -> list[dict]:
    out, cursor = [], None
    while True:
        page = (await c.get("/api/v1/publisher/tasks", params={"limit": 50} | ({"cursor": cursor} if cursor else {}))).json()
        out += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return out
