"""The WebSocket the Mini Programs keep open: `GET /api/v1/ws` (see docs/api.md for the protocol).

The token is checked in the handshake, before the socket is accepted (`Authorization: Bearer` or
`?token=`). Server → client messages: `welcome`, events `{id, type, data, at}`, `resumed`,
`replay_truncated`, `pong`, `heartbeat`, `error`. Client → server: `resume {last_event_id}`, `ping`.
A heartbeat every `HEARTBEAT_S` also re-checks the session, so a banned user's socket is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from sanic import Blueprint
from sanic.request import Request
from sanic_ext import openapi

from miniprogram_api.auth import authenticate
from miniprogram_api.common import now_iso
from models.errors import DomainError
from models.users import End
from server import push

HEARTBEAT_S = 25

bp = Blueprint("mp_ws", url_prefix="/api/v1")


@bp.websocket("/ws")
@openapi.exclude()
async def live(request: Request, ws):
    session = request.ctx.ws_session
    user = session.user
    hub: push.Hub = request.app.ctx.hub
    conn = push.Connection(ws, user.id, wants_hall=user.end == End.WORKER)
    hub.add(conn)
    writer = asyncio.create_task(conn.writer())
    beats = asyncio.create_task(_heartbeat(request, conn))
    conn.offer({"type": "welcome", "user_id": user.id, "end": user.end.value, "last_event_id": await push.last_event_id(), "now": now_iso()})
    try:
        # recv() is never cancelled (Sanic's frame assembler cannot take a cancelled read); the
        # heartbeat runs beside it and closes the connection when the session ends.
        while not conn.closed.is_set():
            raw = await ws.recv()
            if raw is None:
                break
            await _handle(conn, user, raw)
    finally:
        beats.cancel()
        hub.remove(conn)
        conn.closed.set()
        with contextlib.suppress(asyncio.QueueFull):
            conn.queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer, 2)
        writer.cancel()


async def _heartbeat(request: Request, conn: push.Connection) -> None:
    """Every HEARTBEAT_S: re-check the session (a banned user's socket is closed), send the time."""
    while not conn.closed.is_set():
        await asyncio.sleep(HEARTBEAT_S)
        try:
            await authenticate(request, None)
        except DomainError:
            conn.offer({"type": "error", "code": "session_ended"})
            await asyncio.sleep(0.2)  # let the writer send it
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1008, reason="session ended")
            conn.closed.set()
            return
        conn.offer({"type": "heartbeat", "now": now_iso()})


async def _handle(conn: push.Connection, user, raw) -> None:
    try:
        message = json.loads(raw)
        kind = message.get("type") if isinstance(message, dict) else None
    except (ValueError, TypeError):
        kind = None
    if kind == "ping":
        conn.offer({"type": "pong", "now": now_iso()})
    elif kind == "resume":
        after = message.get("last_event_id")
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            conn.offer({"type": "error", "code": "invalid_input", "message": "last_event_id must be a non-negative integer"})
            return
        if 0 < after < await push.oldest_event_id() - 1:  # what it missed was pruned: reload by REST
            conn.offer({"type": "replay_truncated", "last_event_id": await push.last_event_id()})
            return
        events = await push.replay(user.id, user.end == End.WORKER, after)
        for event in events:
            conn.offer({k: v for k, v in event.items() if k != "user_id"})
        if len(events) == push.REPLAY_MAX:
            conn.offer({"type": "replay_truncated", "last_event_id": events[-1]["id"]})
        else:
            conn.offer({"type": "resumed", "last_event_id": events[-1]["id"] if events else after})
    else:
        conn.offer({"type": "error", "code": "invalid_input", "message": "unknown message type"})


@bp.on_request
async def check_handshake(request: Request):
    """Refuse the upgrade before it happens when the session is not valid (401/403 JSON)."""
    if request.path == "/api/v1/ws":
        request.ctx.ws_session = await authenticate(request, None)
