"""The WebSocket: the hall and each user's own changes arrive live; a reconnect catches up."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from models import clock
from scheduler import sweeper


async def connect(live, token: str):
    ws = await websockets.connect(f"ws://127.0.0.1:{live.port}/api/v1/ws?token={token}")
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome["type"] == "welcome"
    return ws, welcome


async def next_event(ws, type_: str, timeout: float = 5.0, **match) -> dict:
    """The next message of this type (and matching data fields), skipping others."""
    async def wait():
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") == type_ and all(message.get("data", {}).get(k) == v for k, v in match.items()):
                return message

    return await asyncio.wait_for(wait(), timeout)


@pytest.mark.asyncio
async def test_a_worker_sees_a_task_appear_and_disappear_in_the_hall(live):
    alice = await live.login("publisher", "alice")
    bob, carol = await live.login("worker", "bob"), await live.login("worker", "carol")
    await live.recharge(alice, 10_000)
    ws, _ = await connect(live, bob.token)
    try:
        async with live.client(alice.token) as a, live.client(carol.token) as c:
            task = (await a.post("/api/v1/publisher/tasks", json={"title": "Scan", "instructions": "x", "unit_price_fen": 500})).json()
            appeared = await next_event(ws, "hall.task_published", task_id=task["id"])
            assert appeared["data"]["unit_price_fen"] == 500 and appeared["id"] > 0
            assert (await c.post(f"/api/v1/worker/tasks/{task['id']}/take")).status_code == 201
            gone = await next_event(ws, "hall.task_removed", task_id=task["id"])
            assert gone["id"] > appeared["id"]
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_an_expired_task_leaves_the_hall_live(live):
    alice, bob = await live.login("publisher", "alice"), await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    ws, _ = await connect(live, bob.token)
    try:
        async with live.client(alice.token) as a:
            task = (await a.post("/api/v1/publisher/tasks", json={"title": "Scan", "instructions": "x", "unit_price_fen": 500})).json()
        await next_event(ws, "hall.task_published", task_id=task["id"])
        clock.advance(181)
        await sweeper.sweep_all()  # the scheduler process would do this
        gone = await next_event(ws, "hall.task_removed", task_id=task["id"])
        assert gone["data"]["reason"] == "expired"
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_a_publisher_sees_their_order_move_to_awaiting_review(live):
    alice, bob = await live.login("publisher", "alice"), await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    ws, _ = await connect(live, alice.token)
    try:
        async with live.client(alice.token) as a, live.client(bob.token) as b:
            task = (await a.post("/api/v1/publisher/tasks", json={"title": "Scan", "instructions": "x", "unit_price_fen": 500})).json()
            order = (await b.post(f"/api/v1/worker/tasks/{task['id']}/take")).json()
            await next_event(ws, "order.taken", order_id=order["id"])
            await b.post(f"/api/v1/worker/orders/{order['id']}/submit", json={"proof_text": "done"})
            moved = await next_event(ws, "order.changed", order_id=order["id"], status="awaiting_review")
            assert moved["data"]["event"] == "submit"
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_publishers_do_not_receive_the_hall_nor_other_users_events(live):
    alice, dave = await live.login("publisher", "alice"), await live.login("publisher", "dave")
    await live.recharge(alice, 10_000)
    ws, _ = await connect(live, dave.token)
    try:
        async with live.client(alice.token) as a:
            await a.post("/api/v1/publisher/tasks", json={"title": "Scan", "instructions": "x", "unit_price_fen": 500})
        with pytest.raises(asyncio.TimeoutError):
            await next_event(ws, "hall.task_published", timeout=1.0)
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_a_reconnecting_client_receives_what_it_missed(live):
    alice, bob = await live.login("publisher", "alice"), await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    ws, welcome = await connect(live, bob.token)
    last_seen = welcome["last_event_id"]
    await ws.close()
    async with live.client(alice.token) as a:  # published while bob was away
        first = (await a.post("/api/v1/publisher/tasks", json={"title": "One", "instructions": "x", "unit_price_fen": 500})).json()
        second = (await a.post("/api/v1/publisher/tasks", json={"title": "Two", "instructions": "x", "unit_price_fen": 600})).json()
    await asyncio.sleep(0.5)  # let the relay deliver them live to nobody
    ws, _ = await connect(live, bob.token)
    try:
        await ws.send(json.dumps({"type": "resume", "last_event_id": last_seen}))
        replayed = []
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message["type"] == "resumed":
                break
            if message["type"] == "hall.task_published":
                replayed.append(message["data"]["task_id"])
        assert replayed == [first["id"], second["id"]]
        assert message["last_event_id"] >= last_seen
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_the_handshake_refuses_a_missing_or_bad_token(live):
    for query in ("", "?token=nonsense"):
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            await websockets.connect(f"ws://127.0.0.1:{live.port}/api/v1/ws{query}")
        assert refused.value.response.status_code == 401


@pytest.mark.asyncio
async def test_ping_gets_pong_with_server_time_and_garbage_gets_an_error(live):
    bob = await live.login("worker", "bob")
    ws, _ = await connect(live, bob.token)
    try:
        await ws.send(json.dumps({"type": "ping"}))
        pong = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert pong["type"] == "pong" and pong["now"].endswith("Z")
        await ws.send("not json")
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error == {"type": "error", "code": "invalid_input", "message": "unknown message type"}
        await ws.send(json.dumps({"type": "resume", "last_event_id": -5}))
        error = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert error["code"] == "invalid_input"
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_an_idle_socket_survives_its_heartbeats_and_still_gets_events(live, monkeypatch):
    from miniprogram_api import ws as ws_module

    monkeypatch.setattr(ws_module, "HEARTBEAT_S", 0.2)
    alice, bob = await live.login("publisher", "alice"), await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    ws, _ = await connect(live, bob.token)
    try:
        beats = 0
        while beats < 3:  # the client sends nothing at all
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            beats += message["type"] == "heartbeat"
        async with live.client(alice.token) as a:
            task = (await a.post("/api/v1/publisher/tasks", json={"title": "Late", "instructions": "x", "unit_price_fen": 500})).json()
        await next_event(ws, "hall.task_published", task_id=task["id"])
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_a_banned_users_socket_is_told_and_closed_at_the_next_heartbeat(live, monkeypatch):
    from miniprogram_api import ws as ws_module
    from models.users import set_banned

    monkeypatch.setattr(ws_module, "HEARTBEAT_S", 0.2)
    bob = await live.login("worker", "bob")
    ws, _ = await connect(live, bob.token)
    await set_banned(bob.id, True, operator_id=1, reason="fraud")
    ended = json.loads(await asyncio.wait_for(ws.recv(), 5))
    while ended["type"] == "heartbeat":
        ended = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert ended == {"type": "error", "code": "session_ended"}
    with pytest.raises(websockets.exceptions.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
