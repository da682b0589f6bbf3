"""A lean WebSocket under Sanic: after the upgrade, the connection's transport is handed to `Socket`,
a small asyncio.Protocol that drives the `websockets` library's sans-I/O `ServerProtocol` (frame
parsing, masking, size limits, UTF-8 of close reasons, the close handshake: all the library's).

Why not Sanic's own WebSocket: its `WebsocketImplProtocol` costs 22–26 KiB per socket by itself
(asyncio Events, Queues and Locks with their deques, a handler task and a pending `recv()` task per
connection, the HTTP request and its headers kept twice); issue 12 item 7 allows 20 KiB per socket
in all (bench/README-http.md). Here a socket is one object with slots, the library's protocol object
and the transport: no task, no future, no event while it is open. What a client sends is handled
from `data_received` (`received`); writes go straight to the transport (`writable`), or wait in the
caller's backlog while the transport is paused (`pause_writing`/`resume_writing`, `send`).

Shutdown: a socket is in the server's set of connections, so Sanic's graceful shutdown closes it
(`close_if_idle`: a close frame 1001, the client answers, the TCP connection ends; `abort` after
the grace). A close the client does not answer ends the TCP connection after CLOSE_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import logging
import os

from sanic.exceptions import SanicException
from websockets.datastructures import Headers
from websockets.frames import CloseCode, Opcode
from websockets.http11 import Request as HandshakeRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

log = logging.getLogger("market.websocket")
# The library logs "connection open" / "connection closed" at INFO for every socket: not here.
_quiet = logging.getLogger("market.websocket.frames")
_quiet.setLevel(logging.WARNING)

CLOSE_TIMEOUT_S = 10.0  # a close handshake the client does not finish: the TCP connection is cut after this
MAX_SIZE = 2 ** 20  # the largest message a client may send (Sanic's default WEBSOCKET_MAX_SIZE)

_OPEN = State.OPEN
_TEXT, _BINARY, _CONT, _PONG = Opcode.TEXT, Opcode.BINARY, Opcode.CONT, Opcode.PONG


class Closed(ConnectionError):
    """The socket is closing or closed: nothing more can be sent."""


class Socket(asyncio.Protocol):
    """One upgraded connection. Subclasses handle messages (`received`) and the end (`lost`)."""

    __slots__ = ("transport", "proto", "registry", "paused", "_parts", "_waiter", "_pong_due", "_closer")

    def __init__(self, proto: ServerProtocol, transport: asyncio.Transport, registry: set) -> None:
        self.transport = transport
        self.proto = proto
        self.registry = registry  # the server's connections (graceful shutdown visits them)
        self.paused = False  # the transport's buffer is full: the client reads slowly
        self._parts: list[bytes] | None = None  # a fragmented message, so far (first opcode first)
        self._waiter: asyncio.Future | None = None  # `send`s waiting while paused
        self._pong_due: bytes | None = None  # the payload of our last ping, until its pong arrives
        self._closer: asyncio.TimerHandle | None = None

    # --- what a subclass does ----------------------------------------------------------------------

    def received(self, message: str | bytes) -> None:
        """A whole message from the client (text as str, binary as bytes)."""

    def lost(self) -> None:
        """The connection is gone (called once)."""

    # --- sending --------------------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        return self.proto.state is _OPEN

    def writable(self) -> asyncio.Transport | None:
        """The transport, if a frame can be written to it now: open and not paused; else None."""
        transport = self.transport
        if self.paused or self.proto.state is not _OPEN or transport.is_closing():
            return None
        return transport

    async def send(self, text: str) -> None:
        """Send a text message, waiting while the client reads slowly; `Closed` if it cannot go."""
        while self.paused and self.proto.state is _OPEN:
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._waiter)
        if self.writable() is None:
            raise Closed()
        self.proto.send_text(text.encode())
        self._write_pending()

    def ping(self, send: bool = True) -> bool:
        """False if the previous ping is still unanswered (the client is gone or stuck); else send a
        new one (when `send` and the socket can take it now) and True."""
        if self._pong_due is not None:
            return False
        if send and self.writable() is not None:
            data = os.urandom(4)
            self.proto.send_ping(data)
            self._write_pending()
            self._pong_due = data
        return True

    def begin_close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        """Start the close handshake: a close frame now; the client's answer ends the connection,
        or CLOSE_TIMEOUT_S does."""
        if self.proto.state is _OPEN and not self.transport.is_closing():
            self.proto.send_close(code, reason)
            self._write_pending()
            self._close_later()

    async def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> None:
        self.begin_close(code, reason)

    def fail_connection(self, code: int = CloseCode.ABNORMAL_CLOSURE, reason: str = "") -> bool:
        """Give up on the connection: a close frame if it can still go out now, then the TCP
        connection ends without waiting for the client (at once if its buffer is full)."""
        if self.transport.is_closing():
            return False
        if self.proto.state is _OPEN and not self.paused:
            self.proto.fail(code, reason)
            self._write_pending()  # the close frame, then the end
            self._close_later()
        else:
            self.transport.abort()
        return True

    def _close_later(self) -> None:
        if self._closer is None and not self.transport.is_closing():
            self._closer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self.transport.abort)

    def _write_pending(self) -> None:
        """Write what the library has for the client; its empty chunk means: end the TCP connection
        (the server closes first, after the close handshake or a failure)."""
        transport = self.transport
        for chunk in self.proto.data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                transport.close()

    # --- asyncio.Protocol ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        proto = self.proto
        proto.receive_data(data)
        self._write_pending()  # pongs, the close answer, a failure's close frame
        for frame in proto.events_received():
            opcode = frame.opcode
            if opcode is _TEXT or opcode is _BINARY or opcode is _CONT:
                if not frame.fin:  # the library checks the order of fragments and their total size
                    if self._parts is None:
                        self._parts = [bytes((opcode,))]
                    self._parts.append(frame.data)
                    continue
                if self._parts is not None:
                    opcode = Opcode(self._parts[0][0])
                    data, self._parts = b"".join(self._parts[1:]) + frame.data, None
                else:
                    data = frame.data
                if opcode is _TEXT:
                    try:
                        message = data.decode()
                    except UnicodeDecodeError as exc:
                        proto.fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                        self._write_pending()
                        return
                else:
                    message = data
                if proto.state is _OPEN:
                    try:
                        self.received(message)
                    except Exception:
                        log.exception("websocket message handler failed")
            elif opcode is _PONG:
                if frame.data == self._pong_due:
                    self._pong_due = None
        self._write_pending()

    def eof_received(self) -> bool | None:
        self.proto.receive_eof()
        self._write_pending()
        return None

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.discard(self)
        self.paused = False
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        if self.proto.state is not State.CLOSED:
            self.proto.receive_eof()
            self.proto.data_to_send()
        self._wake()
        try:
            self.lost()
        except Exception:
            log.exception("websocket cleanup failed")

    def _wake(self) -> None:
        if self._waiter is not None:
            if not self._waiter.done():
                self._waiter.set_result(None)
            self._waiter = None

    # --- Sanic's graceful shutdown (the server's set of connections) ---------------------------------

    def close_if_idle(self) -> bool:
        self.begin_close(CloseCode.GOING_AWAY, "server shutting down")
        return False

    def abort(self) -> None:
        self.transport.abort()


def upgrade(request, make, max_size: int | None = MAX_SIZE) -> Socket:
    """Answer the request's WebSocket upgrade (the library's handshake: 101, or an error raised as
    Sanic's would be) and hand the connection to `make(proto, transport, registry)`. Sanic's
    connection task then ends without touching the connection; the handler must return nothing
    (mark it `is_websocket = True`)."""
    transport = request.transport
    http = transport.get_protocol()
    # Born OPEN (as Sanic does it): the request was read by Sanic, so the parser starts at frames.
    proto = ServerProtocol(max_size=max_size, logger=_quiet, state=_OPEN)
    try:
        response = proto.accept(HandshakeRequest(path=request.path, headers=Headers(request.headers)))
    except Exception:
        raise SanicException("Failed to open a WebSocket connection.\nSee server log for more information.\n",
                             status_code=500) from None
    if response.status_code != 101:
        raise SanicException(response.body, response.status_code)
    registry = http.connections
    sock = make(proto, transport, registry)
    leftover = bytes(http.recv_buffer)  # anything the client sent right after the request
    http.recv_buffer.clear()
    registry.discard(http)
    http.transport = None  # Sanic's connection task ends without closing the connection
    transport.set_protocol(sock)
    registry.add(sock)
    transport.write(response.serialize())  # the 101
    transport.resume_reading()
    if leftover:
        sock.data_received(leftover)
    return sock
