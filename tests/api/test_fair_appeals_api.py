"""A rejection by acceptance criterion, the appeal and the publisher's answer through the HTTP API
(issue 14 §2), as the two Mini Programs drive them: both sides read the whole exchange on the order,
and the answer reaches both sockets as `order.answered`."""

from __future__ import annotations

import json

import pytest

from models import db
from tests.api._support import assert_error, publish, upload

pytestmark = pytest.mark.asyncio
CRITERIA = ["截图须含公众号名称", "须关注满24小时"]


async def _pushed(event: str) -> list[tuple[int, dict]]:
    rows = await db.fetch("SELECT user_id, payload FROM outbox WHERE channel = 'push' AND event = $1 ORDER BY id", event)
    return [(r["user_id"], json.loads(r["payload"]) if isinstance(r["payload"], (str, bytes)) else r["payload"]) for r in rows]


async def test_a_rejection_by_criterion_the_appeal_and_the_answer_are_one_exchange_both_sides_see(live):
    alice = await live.login("publisher", "alice")
    await live.recharge(alice, 100_000)
    bob = await live.login("worker", "bob")
    task = await publish(live, alice, criteria=CRITERIA)
    evidence, picture = await upload(live, bob), await upload(live, alice)
    async with live.client(bob.token) as b, live.client(alice.token) as a:
        order = (await b.post(f"/api/v1/worker/tasks/{task['id']}/take")).json()
        oid = order["id"]
        assert order["task"]["criteria"] is None  # the take's own answer: read the order
        assert (await b.get(f"/api/v1/worker/orders/{oid}")).json()["task"]["criteria"] == CRITERIA
        assert (await b.post(f"/api/v1/worker/orders/{oid}/submit", json={"proof_text": "已关注"})).status_code == 200
        err = assert_error(await a.post(f"/api/v1/publisher/orders/{oid}/reject", json={"reason": "太短"}), 400, "invalid_input")
        assert set(err["details"]["fields"]) == {"reason"}
        r = await a.post(f"/api/v1/publisher/orders/{oid}/reject", json={"criterion": 1, "reason": "关注两小时就取关了"})
        assert r.status_code == 200, r.text
        assert_error(await a.post(f"/api/v1/publisher/orders/{oid}/answer", json={"text": "太早"}), 409, "invalid_transition")
        r = await b.post(f"/api/v1/worker/orders/{oid}/appeal", json={"reason": "我没有取关", "evidence": evidence})
        assert r.status_code == 200, r.text
        assert await _pushed("order.answered") == []
        r = await a.post(f"/api/v1/publisher/orders/{oid}/answer", json={"text": "取关记录见图", "image": picture})
        assert r.status_code == 200, r.text
        assert_error(await a.post(f"/api/v1/publisher/orders/{oid}/answer", json={"text": "再说一次"}), 409, "invalid_transition")
        seen = [(await b.get(f"/api/v1/worker/orders/{oid}")).json(), (await a.get(f"/api/v1/publisher/orders/{oid}")).json()]
    for view in seen:
        assert view["status"] == "appealing"
        assert (view["reject_criterion"], view["reject_reason"]) == (CRITERIA[1], "关注两小时就取关了")
        assert (view["appeal_reason"], view["appeal_evidence"], view["answer_text"], view["answer_image"]) == ("我没有取关", evidence, "取关记录见图", picture)
        assert view["appeal_evidence_url"] and view["answer_image_url"] and view["answered_at"]
    # One event per side, the second answer wrote none.
    answered = await _pushed("order.answered")
    assert sorted(u for u, _ in answered) == sorted([bob.id, alice.id])
    assert all(p == {"order_id": oid, "task_id": task["id"], "answered_at": seen[0]["answered_at"]} for _, p in answered)
