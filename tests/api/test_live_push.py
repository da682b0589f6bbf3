"""The WebSocket: the hall and each user's own changes arrive live; a reconnect catches up."""

from __future__ import annotations

import uuid

import asyncio
import contextlib
import json
import math

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
            task = (await a.post("/api/v1/publisher/tasks", json={"title": "Scan", "instructions": "x", "unit_price_fen": 500, "request_id": uuid.uuid4().hex})).json()
            appeared = await next_event(ws, "hall.task_published", task_id=task["id"])
            assert appeared["data"]["unit_price_fen"] == 500 and appeared["id"] > 0
            assert (await c.post(f"/api/v1/worker/tasks/{task['id']}/take")).status_code == 201
            gone = await next_event(ws, "hall.task_removed", task_id=task["id"])
            assert gone["id"] > appeared["id"]
            assert gone["data"] == {"task_id": task["id"], "slots_untaken": 0, "status": "full"}  # the same shape as expired/cancelled
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_an_expired_task_leaves_the_hall_live(live):
    alice, bob = await live.login("publisher", "alice"), await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    ws, _ = await connect(live, bob.token)
    try:
        async with live.client(alice.token) as a:
            task = (await a.post("/api/v1/publisher/tasks", json={"title": "Scan", "instructions": "x", "unit_price_fen": 500, "request_id": uuid.uuid4().hex})).json()
        await next_event(ws, "hall.task_published", task_id=task["id"])
        clock.advance(181)
        await sweeper.sweep_all()  # the scheduler process would do this
        gone = await next_event(ws, "hall.task_removed", task_id=task["id"])
        assert gone["data"] == {"task_id": task["id"], "slots_untaken": 0, "status": "expired"}
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_a_publisher_sees_their_order_move_to_awaiting_review(live):
    alice, bob = await live.login("publisher", "alice"), await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    ws, _ = await connect(live, alice.token)
    try:
        async with live.client(alice.token) as a, live.client(bob.token) as b:
            task = (await a.post("/api/v1/publisher/tasks", json={"title": "Scan", "instructions": "x", "unit_price_fen": 500, "request_id": uuid.uuid4().hex})).json()
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
            await a.post("/api/v1/publisher/tasks", json={"title": "Scan", "instructions": "x", "unit_price_fen": 500, "request_id": uuid.uuid4().hex})
        with pytest.raises(asyncio.TimeoutError):
            await next_event(ws, "hall.task_published", timeout=1.0)
    finally:
        await ws.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["url", "message"])
async def test_a_reconnecting_client_receives_what_it_missed(live, how):
    alice, bob = await live.login("publisher", "alice"), await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    ws, welcome = await connect(live, bob.token)
    last_seen = welcome["last_seq"]
    await ws.close()
    async with live.client(alice.token) as a:  # published while bob was away
        first = (await a.post("/api/v1/publisher/tasks", json={"title": "One", "instructions": "x", "unit_price_fen": 500, "request_id": uuid.uuid4().hex})).json()
        second = (await a.post("/api/v1/publisher/tasks", json={"title": "Two", "instructions": "x", "unit_price_fen": 600, "request_id": uuid.uuid4().hex})).json()
    await asyncio.sleep(0.5)  # let the relay deliver them live to nobody
    if how == "url":
        ws = await websockets.connect(f"ws://127.0.0.1:{live.port}/api/v1/ws?token={bob.token}&after_seq={last_seen}")
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
    else:
        ws, _ = await connect(live, bob.token)
        await ws.send(json.dumps({"type": "resume", "after_seq": last_seen}))
    try:
        replayed = []
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message["type"] == "resumed":
                break
            if message["type"] == "hall.task_published":
                replayed.append(message["data"]["task_id"])
                assert message["seq"] > last_seen
        assert replayed == [first["id"], second["id"]]
        assert message["last_seq"] > last_seen
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_an_app_that_resumes_by_event_id_reloads_instead_of_looping(live):
    """Apps from before the delivery log resume with `last_event_id`: no position in the log. They
    are told to reload by REST (replay_truncated, once) and go on live."""
    bob = await live.login("worker", "bob")
    ws, welcome = await connect(live, bob.token)
    try:
        await ws.send(json.dumps({"type": "resume", "last_event_id": 12}))
        answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert answer == {"type": "replay_truncated", "last_seq": welcome["last_seq"]}
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
        assert error["type"] == "error" and error["code"] == "invalid_input" and "type" in error["details"]["fields"]
        await ws.send(json.dumps({"type": "resume", "after_seq": -5}))
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
            task = (await a.post("/api/v1/publisher/tasks", json={"title": "Late", "instructions": "x", "unit_price_fen": 500, "request_id": uuid.uuid4().hex})).json()
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
    assert ended == {"type": "error", "code": "user_banned"}  # the code the REST API gives a banned user
    with pytest.raises(websockets.exceptions.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)


async def _until_not_heartbeat(ws) -> dict:
    message = json.loads(await asyncio.wait_for(ws.recv(), 5))
    while message["type"] == "heartbeat":
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return message


@pytest.mark.asyncio
async def test_a_logged_out_users_socket_is_told_and_closed_at_the_next_heartbeat(live, monkeypatch):
    from miniprogram_api import ws as ws_module

    monkeypatch.setattr(ws_module, "HEARTBEAT_S", 0.2)
    bob = await live.login("worker", "bob")
    ws, _ = await connect(live, bob.token)
    async with live.client(bob.token) as c:
        assert (await c.post("/api/v1/worker/logout")).status_code == 204
    assert await _until_not_heartbeat(ws) == {"type": "error", "code": "session_ended"}
    with pytest.raises(websockets.exceptions.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)


@pytest.mark.asyncio
async def test_a_socket_outlives_the_access_token_that_opened_it_while_its_session_lives(live, monkeypatch):
    import time as time_module

    from miniprogram_api import auth
    from miniprogram_api import ws as ws_module

    monkeypatch.setattr(ws_module, "HEARTBEAT_S", 0.2)
    bob = await live.login("worker", "bob")
    ws, _ = await connect(live, bob.token)
    try:
        later = time_module.time() + auth.ACCESS_TTL_S + 60
        monkeypatch.setattr(auth.time, "time", lambda: later)  # the token has expired now
        for _ in range(3):
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "heartbeat"
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_a_banned_users_old_token_is_refused_at_the_handshake_with_user_banned(live):
    from models.users import set_banned

    bob = await live.login("worker", "bob")
    await set_banned(bob.id, True, operator_id=1, reason="fraud")
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(f"ws://127.0.0.1:{live.port}/api/v1/ws?token={bob.token}", open_timeout=5):
            pass
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body)["error"]["code"] == "user_banned"


# --- heartbeats from one task per worker, and the busy answer (issues 12 item 7, 9) ----------------------

@pytest.mark.asyncio
async def test_one_heartbeat_visit_checks_every_session_of_its_sockets_with_one_query(live, monkeypatch):
    """No user lookup per socket: the sockets of a slice are checked together, then each gets its
    heartbeat; the banned user's socket is told user_banned, the logged-out one session_ended."""
    from miniprogram_api import ws as ws_module
    from models import db
    from models.users import set_banned
    from server import push

    users = [await live.login("worker", f"w{i}") for i in range(5)]

    class Sent:
        def __init__(self):
            self.sent = []

        async def send(self, text):
            self.sent.append(json.loads(text))

        async def close(self, code=1000, reason=""):
            self.sent.append({"closed": code})

    conns = [push.Connection(Sent(), u.id, wants_hall=True, token_version=0) for u in users]
    conns.append(push.Connection(Sent(), users[0].id, wants_hall=True, token_version=0))  # a second socket of w0
    await set_banned(users[1].id, True, operator_id=1, reason="fraud")
    async with live.client(users[2].token) as c:
        assert (await c.post("/api/v1/worker/logout")).status_code == 204
    queries = []
    real_fetch = db.fetch

    async def counting_fetch(sql, *args):
        queries.append(sql)
        return await real_fetch(sql, *args)

    monkeypatch.setattr(db, "fetch", counting_fetch)
    beats = ws_module.Heartbeats()
    await beats.visit(set(conns))
    assert len(queries) == 1 and "FROM users" in queries[0]
    await asyncio.sleep(1.2)  # the closing tasks
    kinds = [[m.get("type", m.get("code")) for m in c.ws.sent] for c in conns]
    assert kinds[0] == kinds[3] == kinds[4] == kinds[5] == ["heartbeat"]
    assert conns[1].ws.sent == [{"type": "error", "code": "user_banned"}, {"closed": 1008}] and conns[1].closed
    assert conns[2].ws.sent == [{"type": "error", "code": "session_ended"}, {"closed": 1008}] and conns[2].closed
    assert conns[0].ws.sent[0]["last_seq"] == conns[0].position


@pytest.mark.asyncio
async def test_the_heartbeats_of_many_sockets_are_spread_over_the_beat(live, monkeypatch):
    """The service visits one slice per HEARTBEAT_S / SLICES, so each socket has one heartbeat per
    HEARTBEAT_S, and the sessions of a slice's sockets cost one query per visit."""
    from miniprogram_api import ws as ws_module

    monkeypatch.setattr(ws_module, "HEARTBEAT_S", 0.5)
    bob, carol = await live.login("worker", "bob"), await live.login("worker", "carol")
    sockets = [(await connect(live, who.token))[0] for who in (bob, carol, bob)]
    beats = live.app.ctx.ws_heartbeats
    try:
        assert beats.connections == 3
        checks = beats.checks
        counts = [0, 0, 0]

        async def count(i, ws):
            with contextlib.suppress(asyncio.TimeoutError):
                async with asyncio.timeout(2.2):
                    while True:
                        counts[i] += json.loads(await ws.recv())["type"] == "heartbeat"

        await asyncio.gather(*(count(i, ws) for i, ws in enumerate(sockets)))
        assert all(2 <= n <= 5 for n in counts), counts  # ~4 in 2.2 s at one per 0.5 s (a loaded box may lag)
        occupied = sum(1 for s in beats.slices if s)
        assert beats.checks - checks <= occupied * (max(counts) + 1)  # one query per visit of an occupied slice
    finally:
        for ws in sockets:
            await ws.close()
    await asyncio.sleep(0.1)
    assert beats.connections == 0


@pytest.mark.asyncio
async def test_a_socket_that_stops_answering_pings_is_closed(live, monkeypatch):
    """The heartbeat service pings every socket (no keep-alive task per socket): a client that reads
    nothing and answers no ping is closed after two beats."""
    from miniprogram_api import ws as ws_module

    monkeypatch.setattr(ws_module, "HEARTBEAT_S", 0.3)
    bob = await live.login("worker", "bob")
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    writer.write((f"GET /api/v1/ws?token={bob.token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"HTTP/1.1 101")
    try:
        async with asyncio.timeout(5):
            while await reader.read(4096):  # frames (welcome, heartbeats, pings) and then the end
                pass
    finally:
        writer.close()
    await asyncio.sleep(0.1)
    assert live.app.ctx.hub.empty


@pytest.mark.asyncio
async def test_a_busy_worker_answers_the_upgrade_503_server_busy_with_retry_after(live, monkeypatch):
    from miniprogram_api import ws as ws_module

    bob = await live.login("worker", "bob")
    monkeypatch.setattr(ws_module, "HANDSHAKES_IN_FLIGHT_MAX", 0)
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(f"ws://127.0.0.1:{live.port}/api/v1/ws?token={bob.token}", open_timeout=5):
            pass
    response = refused.value.response
    assert response.status_code == 503
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= ws_module.RETRY_AFTER_MAX_S
    assert json.loads(response.body)["error"] == {
        "code": "server_busy", "message": f"服务器繁忙，请 {retry_after} 秒后再连接。", "details": {"retry_after_s": retry_after}}

    monkeypatch.setattr(ws_module, "HANDSHAKES_IN_FLIGHT_MAX", 1)
    gate = live.app.ctx.ws_gate
    for _ in range(3):  # each handshake gives its place back: the next one gets in
        ws, _ = await connect(live, bob.token)
        await ws.close()
    ws, _ = await connect(live, bob.token)
    try:
        assert gate.in_flight == 0  # welcomed: the socket holds no place
        # A refused token and a malformed upgrade give their places back too.
        with pytest.raises(websockets.exceptions.InvalidStatus):
            await websockets.connect(f"ws://127.0.0.1:{live.port}/api/v1/ws?token=nonsense", open_timeout=5)
        async with live.client() as c:
            r = await c.get(f"/api/v1/ws?token={bob.token}", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
            assert r.status_code >= 400
        assert gate.in_flight == 0
    finally:
        await ws.close()


@pytest.mark.asyncio
async def test_retry_after_grows_with_the_clients_turned_away():
    from miniprogram_api import ws as ws_module

    gate = ws_module.HandshakeGate()
    now = 1000.0
    assert gate.retry_after_s(now) == 1
    gate._refused.extend([now] * 800)  # 800 turned away, nothing measured yet: the assumed 200/s, 4 s
    assert gate.retry_after_s(now) == math.ceil(800 / ws_module.ASSUMED_HANDSHAKES_PER_S)
    gate._done.extend([now - 5 + i / 100 for i in range(500)])  # measured: 100 handshakes/s over 5 s: 8 s
    assert gate.retry_after_s(now) == 8
    gate._done.clear()
    gate._done.extend([now - 0.5 + i / 1000 for i in range(400)])  # a storm's first half second: 800/s
    assert gate.retry_after_s(now) == 1
    gate._refused.extend([now] * 100_000)
    assert gate.retry_after_s(now) == ws_module.RETRY_AFTER_MAX_S
