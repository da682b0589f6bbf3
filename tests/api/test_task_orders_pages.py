"""A task's orders beyond the ones its detail lists: GET /publisher/tasks/{id} gives the newest
DETAIL_ORDERS (200) and `orders_next_cursor`; GET /publisher/tasks/{id}/orders pages the rest, so a
publisher sees every order of a task with a thousand slots."""

from __future__ import annotations

import pytest

from miniprogram_api import publisher as publisher_api
from models import orders, tasks
from models.users import User
from tests import personas as p
from tests.api import _support as S

pytestmark = pytest.mark.asyncio


async def test_the_detail_lists_the_newest_orders_and_the_rest_come_a_page_at_a_time(live, monkeypatch):
    monkeypatch.setattr(publisher_api, "DETAIL_ORDERS", 3)
    pub = await live.login("publisher", "alice")
    await p.fund(await User.get(id=pub.id), 10_000)
    task = await tasks.publish(pub.id, title="Many", instructions="Scan the code", unit_price_fen=100, quantity=6)
    taken = []
    for i in range(5):
        w = await User.get(id=(await live.login("worker", f"w{i}")).id)
        o = await orders.take(task.id, w.id)
        if i % 2 == 0:
            await orders.submit(o.id, w.id, proof_text="done")
        taken.append(o.id)
    newest_first = sorted(taken, reverse=True)

    async with live.client(pub.token) as c:
        detail = (await c.get(f"/api/v1/publisher/tasks/{task.id}")).json()
        assert [o["id"] for o in detail["orders"]] == newest_first[:3]
        assert detail["orders_next_cursor"] == str(newest_first[2])
        r = await c.get(f"/api/v1/publisher/tasks/{task.id}/orders", params={"cursor": detail["orders_next_cursor"]})
        assert r.status_code == 200, r.text
        rest = r.json()
        assert [o["id"] for o in rest["items"]] == newest_first[3:] and rest["next_cursor"] is None
        assert all("worker_record" in o and "task" not in o for o in rest["items"])

        walked, cursor = [], None
        while True:
            page = (await c.get(f"/api/v1/publisher/tasks/{task.id}/orders",
                                params={"limit": 2} | ({"cursor": cursor} if cursor else {}))).json()
            walked += [o["id"] for o in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert walked == newest_first
        waiting = (await c.get(f"/api/v1/publisher/tasks/{task.id}/orders", params={"status": "awaiting_review"})).json()
        assert [o["id"] for o in waiting["items"]] == [taken[4], taken[2], taken[0]]
        S.assert_error(await c.get(f"/api/v1/publisher/tasks/{task.id}/orders", params={"status": "done"}), 400, "invalid_input")

    monkeypatch.setattr(publisher_api, "DETAIL_ORDERS", 5)
    async with live.client(pub.token) as c:
        assert (await c.get(f"/api/v1/publisher/tasks/{task.id}")).json()["orders_next_cursor"] is None  # all listed


async def test_nobody_else_pages_my_tasks_orders(live):
    pub = await live.login("publisher", "alice")
    await p.fund(await User.get(id=pub.id), 10_000)
    task = await tasks.publish(pub.id, title="Mine", instructions="Scan the code", unit_price_fen=100, quantity=1)
    other = await live.login("publisher", "carol")
    worker = await live.login("worker", "bob")
    async with live.client(other.token) as c:
        S.assert_error(await c.get(f"/api/v1/publisher/tasks/{task.id}/orders"), 404, "task_not_found")
    async with live.client(worker.token) as c:
        assert (await c.get(f"/api/v1/publisher/tasks/{task.id}/orders")).status_code == 403
