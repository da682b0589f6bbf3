"""The WebSocket the Mini Programs keep open: `GET /api/v1/ws` (see docs/api.md for the protocol).

The token is checked in the handshake, before the socket is accepted (`Authorization: Bearer` or
`?token=`). `?after_seq=N` resumes in the handshake: the events after seq N, then `resumed`, then
live, with nothing live before the replay. Server → client messages: `welcome`, events
`{id, seq, type, data, at}`, `resumed`, `replay_truncated`, `pong`, `heartbeat`, `error`.
Client → server: `resume {after_seq}`, `ping`. (docs/push.md: why this is exact.)

Heartbeats: one task per worker process (`Heartbeats`), not one per socket. The sockets are spread
over `SLICES` slices; every `HEARTBEAT_S / SLICES` one slice is visited, so each socket is visited
every `HEARTBEAT_S`. A visit re-checks the sessions of the slice's sockets with ONE query for all of
them (their users' `banned` and `token_version`), closes the socket of a user who is banned
(`error` code `user_banned`) or whose session ended (logout, ban: `session_ended`), and sends the
others a `heartbeat` and a protocol ping; a socket that has not answered the previous beat's ping
is closed (this replaces Sanic's keep-alive task per socket). The access token that opened the socket may expire meanwhile: an open socket
lives as long as its session.

The socket under this protocol is `server/sockets.py` (not Sanic's WebSocket): after the 101 the
connection's transport belongs to a `LiveSocket`, which handles what the client sends as it arrives
(`received`, no task per socket; a resume is a short-lived task, and the socket reads nothing more
until it is done, so answers keep their order). Its end (`lost`) unregisters it.

A busy node: a worker with `HANDSHAKES_IN_FLIGHT_MAX` handshakes in progress answers the next
upgrade at once with `503 server_busy` and `Retry-After` (no database work), instead of letting
thousands of reconnecting phones queue behind each other until the listen backlog overflows. The
Retry-After is this worker's estimate of how long the ones it turned away need to be served.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import time
from types import SimpleNamespace

from sanic import Blueprint
from sanic.request import Request
from sanic_ext import openapi

from miniprogram_api.auth import Unauthorized, check_user, read_token, token_from
from miniprogram_api.common import now_iso
from models import db, inputs
from models.errors import DomainError, InvalidInput
from models.users import End
from server import push, sockets

HEARTBEAT_S = 25
SLICES = 25  # the sockets' heartbeats are spread over this many visits per HEARTBEAT_S
CHECK_CHUNK = 500  # user ids per session-check query
HANDSHAKES_IN_FLIGHT_MAX = 64  # per worker process: more at once and the next is told 503 server_busy
RETRY_AFTER_MAX_S = 30
# Handshakes per second a worker is assumed to finish before it has finished enough to measure
# (bench/README-http.md: ~1 ms of CPU each on the 2-core machine, replay from memory included).
ASSUMED_HANDSHAKES_PER_S = 200.0
_RATE_WINDOW_S = 5.0

bp = Blueprint("mp_ws", url_prefix="/api/v1")


class ServerBusy(DomainError):
    code, status = "server_busy", 503
    message, message_zh = "The server is busy; connect again in {retry_after_s} s.", "服务器繁忙，请 {retry_after_s} 秒后再连接。"
    hint = ("Answered to a WebSocket upgrade by a node with too many handshakes in progress (after another node "
            "went away, thousands of phones reconnect at once). Wait the Retry-After header's seconds "
            "(details.retry_after_s) plus a random part up to as long again, then connect again.")
    details_schema = {"retry_after_s": {"type": "integer", "minimum": 1, "maximum": RETRY_AFTER_MAX_S}}

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(retry_after_s=retry_after_s)
        self.headers = {"Retry-After": str(retry_after_s)}


class HandshakeGate:
    """The handshakes this worker has in progress (from the upgrade request to the welcome, and the
    replay when the client resumes), and how fast it finishes them."""

    def __init__(self) -> None:
        self.in_flight = 0
        self._done: collections.deque[float] = collections.deque()
        self._refused: collections.deque[float] = collections.deque()

    def _forget(self, now: float) -> None:
        for times in (self._done, self._refused):
            while times and times[0] < now - _RATE_WINDOW_S:
                times.popleft()

    def enter(self) -> None:
        """Take a place, or raise ServerBusy."""
        if self.in_flight >= HANDSHAKES_IN_FLIGHT_MAX:
            now = time.monotonic()
            self._forget(now)
            self._refused.append(now)
            raise ServerBusy(self.retry_after_s(now))
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        now = time.monotonic()
        self._done.append(now)
        if len(self._done) > 10_000:
            self._forget(now)

    def retry_after_s(self, now: float) -> int:
        """The clients turned away lately, over the handshakes finished per second lately (over
        the time since the oldest one remembered: a storm's first second counts at its own pace):
        the seconds they need to be served if they come back spread out (at least 1)."""
        done = self._done
        if len(done) >= 64:  # enough to measure
            rate = max(len(done) / max(now - done[0], 0.5), 20.0)
        else:  # a storm's first moments: no measure yet, assume what a worker does here
            rate = ASSUMED_HANDSHAKES_PER_S
        return max(1, min(RETRY_AFTER_MAX_S, math.ceil(len(self._refused) / rate)))


def _gate(app) -> HandshakeGate:
    gate = getattr(app.ctx, "ws_gate", None)
    if gate is None:
        gate = app.ctx.ws_gate = HandshakeGate()
    return gate


def _leave_gate(request: Request) -> None:
    """Give the handshake's place back (once, however often called)."""
    if getattr(request.ctx, "ws_in_gate", False):
        request.ctx.ws_in_gate = False
        _gate(request.app).leave()


_resumes: set[asyncio.Task] = set()  # resumes asked for by a message, in progress


class LiveSocket(sockets.Socket):
    """A Mini Program's socket (server/sockets.py): what it sends is handled as it arrives, with no
    task of its own; a resume (database reads) runs as a short-lived task, and what the client
    sends meanwhile waits for it (read no further until it is done), so messages are answered in
    order."""

    __slots__ = ("conn", "hub", "beats", "busy", "inbox")

    def __init__(self, proto, transport, registry, conn: push.Connection, hub: push.Hub, beats: "Heartbeats") -> None:
        super().__init__(proto, transport, registry)
        self.conn, self.hub, self.beats = conn, hub, beats
        self.busy = True  # the handshake (welcome, a resume) is not done yet
        self.inbox: list | None = None  # messages that arrived while busy

    def received(self, message) -> None:
        if self.busy:
            if self.inbox is None:
                self.inbox = []
                self.transport.pause_reading()  # the rest stays unread until `ready`: no unbounded inbox
            self.inbox.append(message)
            return
        after = _message(self.conn, message)
        if after is not None:
            self.busy = True
            self.transport.pause_reading()
            task = asyncio.get_running_loop().create_task(self._resume(after))
            _resumes.add(task)  # the loop keeps weak references only
            task.add_done_callback(_resumes.discard)

    async def _resume(self, after: int) -> None:
        try:
            await _resume(self.conn, after, self.hub)
        except Exception:
            push.log.exception("websocket resume failed")
            self.fail_connection(1011, "resume failed")
        finally:
            self.ready()

    def ready(self) -> None:
        """Not busy any more: handle what waited, then read on."""
        self.busy = False
        while self.inbox and not self.busy:
            self.received(self.inbox.pop(0))
        if not self.busy:
            self.inbox = None
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def lost(self) -> None:
        self.beats.remove(self.conn)
        self.hub.remove(self.conn)
        self.conn.stop()


@bp.get("/ws")
@openapi.exclude()
async def live(request: Request):
    session = request.ctx.ws_session
    request.ctx.ws_session = None
    hub: push.Hub = request.app.ctx.hub
    beats = heartbeats(request.app)
    conn = push.Connection(None, session.user_id, wants_hall=session.end == End.WORKER, token_version=session.token_version)
    after = _after_seq_in_url(request)
    try:
        # The 101, and from here on the connection is the socket's (Sanic's request ends with no response).
        sock = sockets.upgrade(request, lambda proto, transport, registry: LiveSocket(proto, transport, registry, conn, hub, beats),
                               max_size=request.app.config.WEBSOCKET_MAX_SIZE)
        conn.ws = sock
        try:
            if after is not None:
                conn.hold()  # registered below, but nothing live goes out before the replay
            hub.add(conn)
            beats.add(conn)
            conn.offer('{"type":"welcome","user_id":%d,"end":"%s","last_seq":%d,"now":"%s"}'
                       % (session.user_id, session.end.value, conn.position, now_iso()))
            if after == -1:
                conn.release()
                conn.offer(_invalid("after_seq must be a non-negative integer.", "after_seq 必须是非负整数。", "after_seq"))
            elif after is not None:
                await _resume(conn, after, hub)
        except Exception:  # no HTTP error response can follow a 101: the socket is closed instead
            push.log.exception("websocket handshake failed after the upgrade")
            sock.fail_connection(1011, "server error")
        sock.ready()
    finally:
        _leave_gate(request)


live.is_websocket = True  # Sanic: the handler answers the request itself (the 101) and returns nothing


def _after_seq_in_url(request: Request) -> int | None:
    """`?after_seq=N` (None when absent, -1 when not a non-negative integer)."""
    text = request.args.get("after_seq")
    if text is None:
        return None
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 19 else -1


async def _resume(conn: push.Connection, after: int, hub: push.Hub) -> None:
    """Everything of this socket's audience after seq `after`, then `resumed` and live; or, when the
    log no longer holds what comes after `after` (pruned, or a position this log never gave),
    `replay_truncated` and live from now. The replay comes from the hub's memory of the events it
    delivered last when that reaches back to `after` (the usual reconnect), else from the log."""
    conn.hold()
    last, pruned = await push.positions()
    if after < pruned or after > last:
        conn.release()
        conn.offer({"type": "replay_truncated", "last_seq": conn.position})
        return
    if await conn.replay_from(after, read=hub.replay):
        conn.offer({"type": "resumed", "last_seq": conn.position})


# --- heartbeats ---------------------------------------------------------------------------------------

_SESSIONS = 'SELECT id, banned, token_version FROM users WHERE id IN (%s)'


async def session_states(user_ids: list[int]) -> dict[int, tuple[bool, int]]:
    """{user id: (banned, token_version)} of these users, in one query per CHECK_CHUNK ids (a
    missing id: the user is gone)."""
    states: dict[int, tuple[bool, int]] = {}
    for i in range(0, len(user_ids), CHECK_CHUNK):
        chunk = user_ids[i:i + CHECK_CHUNK]
        rows = await db.fetch(_SESSIONS % ", ".join(f"${n}" for n in range(1, len(chunk) + 1)), *chunk)
        for row in rows:
            states[int(row["id"])] = (bool(row["banned"]), int(row["token_version"]))
    return states


class Heartbeats:
    """The heartbeats and session checks of one worker's sockets, by one task (see the module's
    docstring)."""

    def __init__(self) -> None:
        self.slices: list[set[push.Connection]] = [set() for _ in range(SLICES)]
        self.at = 0  # the slice visited last
        self.checks = 0  # session-check queries made (tests)
        self._task: asyncio.Task | None = None

    def add(self, conn: push.Connection) -> None:
        # Into the slice just visited: its next visit is a whole HEARTBEAT_S away.
        conn.bucket = self.at
        self.slices[self.at].add(conn)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ws-heartbeats")

    def remove(self, conn: push.Connection) -> None:
        if 0 <= conn.bucket < len(self.slices):
            self.slices[conn.bucket].discard(conn)
        conn.bucket = -1

    @property
    def connections(self) -> int:
        return sum(len(s) for s in self.slices)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S / SLICES)
            self.at = (self.at + 1) % SLICES
            try:
                await self.visit(self.slices[self.at])
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is away: no socket is closed for that; the next visit checks
                push.log.exception("websocket heartbeat failed")

    async def visit(self, conns: set[push.Connection]) -> None:
        """Check the sessions of these sockets (one query for all), close the ended ones, send the
        others a heartbeat."""
        live = [c for c in conns if not c.closed]
        if not live:
            return
        self.checks += 1
        states = await session_states(sorted({c.user_id for c in live}))
        beat = '{"type":"heartbeat","now":"%s","last_seq":%%d}' % now_iso()
        for conn in live:
            if conn.closed:
                continue
            state = states.get(conn.user_id)
            if state is None or state[0] or (conn.token_version is not None and state[1] != conn.token_version):
                end_session(conn, "user_banned" if state is not None and state[0] else "session_ended")
            elif not conn.probe():
                conn.drop("no pong")  # the previous beat's ping is unanswered: the client is gone
            else:
                # Every event of this socket's audience up to last_seq went out before this: a safe position.
                conn.offer(beat % conn.position)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def end_session(conn: push.Connection, code: str) -> None:
    """Tell the socket why (`user_banned`, `session_ended`) and close it (policy violation)."""
    conn.offer({"type": "error", "code": code})
    conn.closed = True  # nothing after the error

    async def close() -> None:
        await conn.drained(1)
        with contextlib.suppress(Exception):
            await conn.ws.close(code=1008, reason="session ended")

    asyncio.get_running_loop().create_task(close())


def heartbeats(app) -> Heartbeats:
    beats = getattr(app.ctx, "ws_heartbeats", None)
    if beats is None:
        beats = app.ctx.ws_heartbeats = Heartbeats()
    return beats


@bp.before_server_stop
async def stop_heartbeats(app):
    """The server stops: no more beats, and every socket is told so (close 1001, going away; the
    apps reconnect, to another node). Sanic's graceful shutdown then waits for the close handshakes
    (server/sockets.py)."""
    beats = getattr(app.ctx, "ws_heartbeats", None)
    if beats is not None:
        await beats.stop()
        for part in beats.slices:
            for conn in list(part):
                close = getattr(conn.ws, "close_if_idle", None)
                if close is not None:
                    close()


# --- what the client sends ----------------------------------------------------------------------------

def _has_control_characters(message) -> bool:
    """Any string in the message (keys included) that breaks the text rule of models/inputs.py.
    Iterative: a deeply nested message must not exhaust the stack."""
    stack = [message]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if inputs.forbidden_character(node) is not None:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _message(conn: push.Connection, raw) -> int | None:
    """Answer a client's message; for a valid `resume`, the position to resume from (the caller
    runs `_resume`), else None."""
    try:
        message = json.loads(raw)
        kind = message.get("type") if isinstance(message, dict) else None
    except (ValueError, TypeError, RecursionError):
        kind = None
    else:
        if _has_control_characters(message):
            conn.offer(_invalid("Messages must not contain control characters.", "消息不能包含控制字符。", "body"))
            return None
    if kind == "ping":
        conn.offer('{"type":"pong","now":"%s"}' % now_iso())
    elif kind == "resume":
        after = message.get("after_seq")
        if after is None and "last_event_id" in message:
            # An app from before the delivery log: its event ids are no position in it. It reloads
            # by REST and goes on live (never a second resume: no loop).
            conn.offer({"type": "replay_truncated", "last_seq": conn.position})
            return None
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            conn.offer(_invalid("after_seq must be a non-negative integer.", "after_seq 必须是非负整数。", "after_seq"))
            return None
        return after
    else:
        conn.offer(_invalid("Unknown message type: send a JSON object with type ping or resume.",
                            "未知的消息类型：请发送 type 为 ping 或 resume 的 JSON 对象。", "type"))
    return None


def _invalid(message: str, zh: str, field: str) -> dict:
    """The REST API's invalid_input (code, message, details.fields) as a socket message (Chinese)."""
    return {"type": "error", **InvalidInput(message, zh=zh, field=field).to_dict()}


# --- the handshake --------------------------------------------------------------------------------------

_USER = 'SELECT id, "end", banned, token_version FROM users WHERE id = $1'


async def authenticate_socket(request: Request) -> SimpleNamespace:
    """The same rules as `auth.authenticate` (a valid, unexpired token; the user's row: banned
    first, then the session version), with one plain query instead of the ORM's model: the
    handshake is what thousands of phones do at once when a node goes away."""
    token = token_from(request)
    if not token:
        raise Unauthorized()
    claims = read_token(request.app.ctx.keys, token)
    uid = claims["uid"]
    row = None
    if isinstance(uid, int) and not isinstance(uid, bool) and -2**63 <= uid < 2**63:
        # PostgreSQL: straight on asyncpg, without the ORM client's layers (a third of a handshake's CPU).
        row = await (db.fetch_row_postgres(_USER, uid) if db.is_postgres() else db.fetch_one(_USER, uid))
    user = None if row is None else SimpleNamespace(id=int(row["id"]), end=End(row["end"]), banned=bool(row["banned"]),
                                                    token_version=int(row["token_version"]))
    check_user(user, claims)
    return SimpleNamespace(user_id=user.id, end=user.end, token_version=user.token_version)


@bp.on_request
async def check_handshake(request: Request):
    """Refuse the upgrade before it happens: 503 `server_busy` when this worker has too many
    handshakes in progress; 401/403 JSON when the session is not valid."""
    if request.path == "/api/v1/ws":
        if request.headers.get("upgrade", "").lower() == "websocket":
            _gate(request.app).enter()
            request.ctx.ws_in_gate = True
        try:
            request.ctx.ws_session = await authenticate_socket(request)
        except BaseException:
            _leave_gate(request)
            raise


@bp.on_response
async def after_handshake(request: Request, response):
    """A handshake that failed after the check (a malformed upgrade) gives its place back too."""
    if request.path == "/api/v1/ws":
        _leave_gate(request)
