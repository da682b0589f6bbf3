import uuid
import pytest


@pytest.mark.asyncio
async def test_a_publisher_and_a_worker_complete_an_order_over_http(live):
    alice = await live.login("publisher", "alice")
    bob = await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    async with live.client(alice.token) as a, live.client(bob.token) as b:
        assert (await a.get("/api/v1/publisher/wallet")).json()["available_fen"] == 10_000
        r = await a.post("/api/v1/publisher/tasks", json={"title": "Scan", "instructions": "Scan it", "unit_price_fen": 1000, "request_id": uuid.uuid4().hex})
        assert r.status_code == 201, r.text
        task_id = r.json()["id"]
        hall = (await b.get("/api/v1/worker/hall")).json()
        assert [t["id"] for t in hall["items"]] == [task_id]
        r = await b.post(f"/api/v1/worker/tasks/{task_id}/take")
        assert r.status_code == 201, r.text
        order_id = r.json()["id"]
        r = await b.post(f"/api/v1/worker/orders/{order_id}/submit", json={"proof_text": "done"})
        assert r.json()["status"] == "awaiting_review"
        r = await a.post(f"/api/v1/publisher/orders/{order_id}/approve")
        assert r.json()["status"] == "completed", r.text
        assert (await b.get("/api/v1/worker/wallet")).json()["available_fen"] == 1000
