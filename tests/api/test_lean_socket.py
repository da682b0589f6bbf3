"""The WebSocket layer under /api/v1/ws (server/sockets.py): the websockets library's sans-I/O
protocol on the connection's transport, no task per socket. What it must do as any WebSocket
server does: the close handshake both ways, frames the protocol forbids answered by a close with
the right code, a slow reader's backlog kept in order and dropped when it overflows, every socket
closed when the server stops."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from server import push, sockets
from tests.api.conftest import start_live, stop_live

pytestmark = pytest.mark.asyncio


async def _until(predicate, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


class Raw:
    """A client on a plain TCP connection: the handshake by hand, frames made and read by the
    websockets library (so the test can send what a well-behaved client never would)."""

    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer
        self.proto = ClientProtocol(parse_uri("ws://x/"), state=State.OPEN, max_size=None)
        self.frames: list[Frame] = []
        self.ended = False

    @classmethod
    async def open(cls, live, token: str, rcvbuf: int | None = None, early: bytes = b"") -> "Raw":
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", live.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=2 ** 16)
        writer.write((f"GET /api/v1/ws?token={token} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode() + early)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        raw = cls(reader, writer)
        welcome = await raw.message()
        assert welcome["type"] == "welcome"
        return raw

    def send(self, opcode: Opcode, data: bytes, fin: bool = True, mask: bool = True) -> None:
        self.writer.write(Frame(opcode, data, fin).serialize(mask=mask, extensions=[]))

    async def frame(self, timeout: float = 10.0) -> Frame | None:
        """The next frame from the server (None: the server ended the TCP connection)."""
        async with asyncio.timeout(timeout):
            while not self.frames:
                if self.ended:
                    return None
                data = await self.reader.read(2 ** 16)
                if not data:
                    self.ended = True
                    self.proto.receive_eof()
                else:
                    self.proto.receive_data(data)
                self.frames += [e for e in self.proto.events_received() if isinstance(e, Frame)]
            return self.frames.pop(0)

    async def message(self) -> dict:
        while True:
            frame = await self.frame()
            assert frame is not None, "closed"
            if frame.opcode is Opcode.TEXT:
                return json.loads(frame.data)

    async def close_code(self) -> int | None:
        """Read on to the server's close frame: its code; and the TCP connection must end."""
        code = None
        while (frame := await self.frame()) is not None:
            if frame.opcode is Opcode.CLOSE:
                code = Close.parse(frame.data).code
        return code

    def end(self) -> None:
        self.writer.transport.abort()


def _conn(live, user_id: int) -> push.Connection:
    (conn,) = live.app.ctx.hub.by_user[user_id]
    return conn


async def test_the_close_handshake_goes_both_ways_and_the_socket_is_forgotten(live, monkeypatch):
    bob = await live.login("worker", "bob")
    hub = live.app.ctx.hub

    # The client closes: the server echoes the code, ends the TCP connection, and forgets the socket.
    ws = await websockets.connect(f"ws://127.0.0.1:{live.port}/api/v1/ws?token={bob.token}")
    assert json.loads(await ws.recv())["type"] == "welcome"
    sock = _conn(live, bob.id).ws
    assert isinstance(sock, sockets.Socket) and sock in sock.registry  # Sanic's shutdown visits it
    await asyncio.wait_for(ws.close(code=4000, reason="bye"), 10)
    assert ws.protocol.close_rcvd.code == 4000 and ws.protocol.close_rcvd_then_sent is False
    await _until(lambda: hub.empty and sock not in sock.registry)

    # The server closes (a session that ended): the client gets the code and answers.
    ws = await websockets.connect(f"ws://127.0.0.1:{live.port}/api/v1/ws?token={bob.token}")
    assert json.loads(await ws.recv())["type"] == "welcome"
    await _conn(live, bob.id).ws.close(1008, "session ended")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd.code == 1008 and closed.value.rcvd.reason == "session ended"
    await _until(lambda: hub.empty)

    # The server closes and the client never answers: the TCP connection ends after CLOSE_TIMEOUT_S.
    monkeypatch.setattr(sockets, "CLOSE_TIMEOUT_S", 0.3)
    raw = await Raw.open(live, bob.token)
    _conn(live, bob.id).ws.begin_close(1001, "going away")
    assert await raw.close_code() == 1001  # read, never answered; the server cut the connection
    await _until(lambda: hub.empty)
    raw.end()


@pytest.mark.parametrize("case, expected", [
    ("too large", 1009),
    ("too large in fragments", 1009),
    ("not masked", 1002),
    ("continuation out of the blue", 1002),
    ("text not UTF-8", 1007),
    ("reserved opcode", 1002),
])
async def test_a_frame_the_protocol_forbids_closes_the_socket_with_its_code(live, case, expected):
    bob = await live.login("worker", "bob")
    live.app.config.WEBSOCKET_MAX_SIZE = 1_000  # read at each upgrade
    raw = await Raw.open(live, bob.token)
    try:
        if case == "too large":
            raw.send(Opcode.TEXT, b"x" * 1_001)
        elif case == "too large in fragments":
            raw.send(Opcode.TEXT, b"x" * 600, fin=False)
            raw.send(Opcode.CONT, b"x" * 600)
        elif case == "not masked":
            raw.send(Opcode.TEXT, b'{"type":"ping"}', mask=False)
        elif case == "continuation out of the blue":
            raw.send(Opcode.CONT, b"x")
        elif case == "text not UTF-8":
            raw.send(Opcode.TEXT, b'{"type":"\xff"}')
        else:
            raw.writer.write(b"\x83\x80abcd")  # FIN, opcode 3 (reserved), masked, empty
        assert await raw.close_code() == expected
        await _until(lambda: live.app.ctx.hub.empty)
    finally:
        raw.end()


async def test_a_fragmented_message_and_pings_of_the_client_are_answered(live):
    bob = await live.login("worker", "bob")
    raw = await Raw.open(live, bob.token)
    try:
        raw.send(Opcode.PING, b"hi")
        frame = await raw.frame()
        assert frame.opcode is Opcode.PONG and frame.data == b"hi"
        raw.send(Opcode.TEXT, b'{"type":', fin=False)
        raw.send(Opcode.PING, b"mid")  # a control frame between fragments is allowed
        raw.send(Opcode.CONT, b'"ping"}')
        frame = await raw.frame()
        assert frame.opcode is Opcode.PONG and frame.data == b"mid"
        assert (await raw.message())["type"] == "pong"
        raw.send(Opcode.BINARY, b'{"type":"ping"}')  # binary JSON is read as well (as before)
        assert (await raw.message())["type"] == "pong"
    finally:
        raw.end()


async def test_a_message_sent_with_the_upgrade_request_is_answered_after_the_welcome(live):
    bob = await live.login("worker", "bob")
    ping = Frame(Opcode.TEXT, b'{"type":"ping"}').serialize(mask=True, extensions=[])
    raw = await Raw.open(live, bob.token, early=ping)  # the welcome first (checked by open)
    try:
        assert (await raw.message())["type"] == "pong"
    finally:
        raw.end()


async def test_a_slow_reader_gets_its_backlog_in_order_and_one_too_slow_is_dropped(live, monkeypatch):
    """While the client does not read, the transport pauses the socket and messages wait (in order,
    no task per socket but the drain); more than QUEUE_MAX waiting drops the client."""
    monkeypatch.setattr(push, "QUEUE_MAX", 30)
    bob = await live.login("worker", "bob")
    raw = await Raw.open(live, bob.token, rcvbuf=4096)
    conn = _conn(live, bob.id)
    filler = "y" * 16_000
    sent = 0
    while conn.pending == 0:  # until the transport paused the socket
        assert sent < 10_000, "the transport never paused"
        conn.offer({"n": sent, "f": filler})
        sent += 1
    assert conn.ws.paused
    for _ in range(10):
        conn.offer({"n": sent, "f": filler})
        sent += 1
    got = []
    while len(got) < sent:  # now the client reads: everything, in order
        got.append((await raw.message())["n"])
    assert got == list(range(sent))
    await _until(lambda: conn.pending == 0 and not conn.ws.paused)
    assert not conn.closed

    n = 0  # and now it stops reading for good
    while not conn.closed:
        assert n < 10_000, "never dropped"
        conn.offer({"n": n, "f": filler})
        n += 1
    assert n > push.QUEUE_MAX
    await _until(lambda: live.app.ctx.hub.empty)  # the connection was cut
    raw.end()


async def test_no_task_per_socket(live):
    bob = await live.login("worker", "bob")
    first = await Raw.open(live, bob.token)  # the worker's heartbeat task starts with its first socket
    await asyncio.sleep(0.1)
    before = len(asyncio.all_tasks())
    raws = [await Raw.open(live, bob.token) for _ in range(20)]
    for raw in raws:
        raw.send(Opcode.TEXT, b'{"type":"ping"}')
    for raw in raws:
        assert (await raw.message())["type"] == "pong"
    assert len(asyncio.all_tasks()) <= before
    assert live.app.ctx.hub.connections == 21
    for raw in [first, *raws]:
        raw.end()
    await _until(lambda: live.app.ctx.hub.empty)


async def test_a_stopping_server_closes_every_socket_with_going_away(database, tmp_path):
    live, server = await start_live(database, tmp_path)
    stopped = False
    try:
        bob = await live.login("worker", "bob")
        clients = [await websockets.connect(f"ws://127.0.0.1:{live.port}/api/v1/ws?token={bob.token}") for _ in range(3)]
        for ws in clients:
            assert json.loads(await ws.recv())["type"] == "welcome"
        socks = [c.ws for c in live.app.ctx.hub.by_user[bob.id]]
        await asyncio.wait_for(stop_live(server), 20)
        stopped = True
        for ws in clients:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd.code == 1001
        await _until(lambda: live.app.ctx.hub.empty and not any(s in s.registry for s in socks))
    finally:
        if not stopped:
            await stop_live(server)


async def test_what_the_client_sends_during_a_resume_is_answered_after_it_in_order(live):
    import uuid

    alice, bob = await live.login("publisher", "alice"), await live.login("worker", "bob")
    await live.recharge(alice, 10_000)
    raw = await Raw.open(live, bob.token)
    raw.end()
    async with live.client(alice.token) as a:  # published while bob was away
        for title in ("One", "Two"):
            r = await a.post("/api/v1/publisher/tasks", json={"title": title, "instructions": "x", "unit_price_fen": 500,
                                                              "request_id": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
    delivered = lambda: [t for _, uid, t, _ in live.app.ctx.hub._recent if uid is None and "hall.task_published" in t]  # noqa: E731
    await _until(lambda: len(delivered()) == 2)  # both in the log and delivered (to nobody)
    raw = await Raw.open(live, bob.token)
    try:
        raw.writer.write(b"".join(Frame(Opcode.TEXT, m).serialize(mask=True, extensions=[])  # one segment: read at once
                                  for m in (b'{"type":"resume","after_seq":0}', b'{"type":"ping"}', b'{"type":"nonsense"}')))
        kinds = []
        while not kinds or kinds[-1] != "error":
            message = await raw.message()
            kinds.append(message["type"] if message["type"] != "hall.task_published" else message["data"]["title"])
        assert kinds[-4:] == ["Two", "resumed", "pong", "error"] and "One" in kinds, kinds
    finally:
        raw.end()
