"""Records, blocks, restrictions and limits through the HTTP API (issue 14, parts 1 and 3)."""

from __future__ import annotations

import pytest

from models import records
from models import settings as market_settings
from tests.api._support import assert_error, publish

pytestmark = pytest.mark.asyncio


async def _take(live, who, task_id):
    async with live.client(who.token) as c:
        return await c.post(f"/api/v1/worker/tasks/{task_id}/take")


async def _finish(live, publisher, worker, task_id, outcome="approve") -> dict:
    r = await _take(live, worker, task_id)
    assert r.status_code == 201, r.text
    order = r.json()
    async with live.client(worker.token) as w, live.client(publisher.token) as p:
        assert (await w.post(f"/api/v1/worker/orders/{order['id']}/submit", json={"proof_text": "done"})).status_code == 200
        if outcome == "approve":
            r = await p.post(f"/api/v1/publisher/orders/{order['id']}/approve")
        else:
            r = await p.post(f"/api/v1/publisher/orders/{order['id']}/reject", json={"reason": "blurry"})
        assert r.status_code == 200, r.text
        return r.json()


async def test_every_task_in_the_hall_and_its_detail_carry_the_publishers_record(live):
    await market_settings.update({"record_min_sample": 2}, operator_id=1)
    alice = await live.login("publisher", "alice")
    await live.recharge(alice, 100_000)
    bob, carl = await live.login("worker", "bob"), await live.login("worker", "carl")
    first = await publish(live, alice, quantity=2)
    async with live.client(bob.token) as b:
        hall = (await b.get("/api/v1/worker/hall")).json()
        rec = hall["items"][0]["publisher_record"]
        assert rec["new"] is True and rec["approval_bp"] is None and rec["min_sample"] == 2
    await _finish(live, alice, bob, first["id"])
    await _finish(live, alice, carl, first["id"], outcome="reject")
    await records.refresh_changed()
    task = await publish(live, alice, min_approval_bp=0)
    async with live.client(bob.token) as b:
        hall = (await b.get("/api/v1/worker/hall")).json()
        rec = hall["items"][0]["publisher_record"]
        assert rec == rec | {"new": False, "tasks": 1, "orders": 2, "reviewed": 2, "approval_bp": 5_000, "rejection_bp": 5_000}
        detail = (await b.get(f"/api/v1/worker/tasks/{task['id']}")).json()
        assert detail["publisher_record"] == rec and detail["min_approval_bp"] == 0


async def test_a_publisher_sees_the_workers_record_blocks_and_unblocks_them(live):
    alice = await live.login("publisher", "alice")
    await live.recharge(alice, 100_000)
    bob = await live.login("worker", "bob")
    task = await publish(live, alice)
    order = await _finish(live, alice, bob, task["id"])
    assert order["worker_id"] == bob.id and order["worker_record"]["new"] is True
    later = await publish(live, alice)
    async with live.client(alice.token) as a, live.client(bob.token) as b:
        detail = (await a.get(f"/api/v1/publisher/tasks/{task['id']}")).json()
        assert detail["orders"][0]["worker_id"] == bob.id and "worker_record" in detail["orders"][0]

        assert_error(await a.post("/api/v1/publisher/blocks", json={"reason": "x"}), 400, "invalid_input")
        r = await a.post("/api/v1/publisher/blocks", json={"order_id": order["id"], "reason": "copied proofs"})
        assert r.status_code == 201 and r.json()["worker_id"] == bob.id and r.json()["replayed"] is False
        r = await a.post("/api/v1/publisher/blocks", json={"worker_id": bob.id, "reason": "again"})
        assert r.status_code == 200 and r.json()["replayed"] is True and r.json()["reason"] == "copied proofs"
        listed = (await a.get("/api/v1/publisher/blocks")).json()
        assert [(x["worker_id"], x["nickname"], x["reason"]) for x in listed["items"]] == [(bob.id, "bob", "copied proofs")]

        assert (await b.get("/api/v1/worker/hall")).json()["items"] == []  # Alice's tasks left Bob's hall
        assert_error(await b.get(f"/api/v1/worker/tasks/{later['id']}"), 403, "blocked_by_publisher")
        err = assert_error(await b.post(f"/api/v1/worker/tasks/{later['id']}/take"), 403, "blocked_by_publisher")
        assert "屏蔽" in err["message"]

        assert (await a.delete(f"/api/v1/publisher/blocks/{bob.id}")).status_code == 204
        assert_error(await a.delete(f"/api/v1/publisher/blocks/{bob.id}"), 404, "block_not_found")
        assert [t["id"] for t in (await b.get("/api/v1/worker/hall")).json()["items"]] == [later["id"]]
        assert (await b.post(f"/api/v1/worker/tasks/{later['id']}/take")).status_code == 201


async def test_a_restricted_task_answers_not_qualified_and_a_limited_worker_sees_why(live):
    await market_settings.update({"limit_max_abandons": 1}, operator_id=1)
    alice = await live.login("publisher", "alice")
    await live.recharge(alice, 100_000)
    bob = await live.login("worker", "bob")
    strict = await publish(live, alice, min_approval_bp=9_000, min_completed_orders=3)
    assert (strict["min_approval_bp"], strict["min_completed_orders"]) == (9_000, 3)
    err = assert_error(await _take(live, bob, strict["id"]), 403, "not_qualified")
    assert err["details"]["min_completed_orders"] == 3 and "90%" in err["message"]

    other = await publish(live, alice)
    order = (await _take(live, bob, other["id"])).json()
    async with live.client(bob.token) as b:
        assert (await b.post(f"/api/v1/worker/orders/{order['id']}/abandon")).status_code == 200
        await records.refresh_changed()
        mine = (await b.get("/api/v1/worker/record")).json()
        assert mine["record"]["abandoned"] == 1 and mine["record"]["limited"]["reason"] == "abandons"
    err = assert_error(await _take(live, bob, (await publish(live, alice))["id"]), 403, "worker_limited")
    assert err["details"]["reason"] == "abandons" and "暂停接单" in err["message"]


async def test_the_config_names_the_record_and_limit_settings(live):
    bob = await live.login("worker", "bob")
    async with live.client(bob.token) as b:
        cfg = (await b.get("/api/v1/worker/config")).json()
    assert cfg == cfg | {"record_window_days": 90, "record_min_sample": 10, "limit_window_days": 7,
                         "limit_max_abandons": 5, "limit_max_appeals_lost": 3}
