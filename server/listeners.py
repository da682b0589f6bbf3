"""Per-worker services opened and closed with the server: Redis, push fan-out, rate limiter, storage.

`app.ctx` after start: `redis` (or None), `hub`, `bus`, `relay`, `ratelimiter`, `storage`, `soldout`, `take_lanes`,
`keys` (the key ring that signs tokens and cookies, `server/keys.py`). With Redis the push bus and rate limits are shared by every process and node
(every key and channel under `config.redis_namespace`); without
it they are in-process, which is right for the default single-process run only — `server/config.py`
refuses several workers without Redis.
"""

from __future__ import annotations

from sanic import Sanic

from server import push
from server.config import Config, key_ring
from server.ratelimit import MemoryLimiter, RedisLimiter
from server.soldout import SoldOutMarks
from server.storage import LocalDiskStorage
from server.takelanes import TakeLanes


def install(app: Sanic, config: Config, *, run_relay: bool = True) -> None:
    app.ctx.keys = key_ring(config)
    app.ctx.storage = LocalDiskStorage(config.uploads_dir)
    app.ctx.redis = None
    app.ctx.hub = push.Hub()
    app.ctx.ratelimiter = MemoryLimiter()
    app.ctx.bus = push.InProcessBus(app.ctx.hub)
    app.ctx.relay = None
    app.ctx.soldout = None  # the sold-out marks need Redis (server/soldout.py)
    app.ctx.take_lanes = TakeLanes()  # one take of a task at a time from this process (server/takelanes.py)

    @app.before_server_start
    async def open_services(app):
        if config.redis_url:
            from redis import asyncio as aioredis

            app.ctx.redis = aioredis.from_url(config.redis_url, decode_responses=True, max_connections=50)
            app.ctx.ratelimiter = RedisLimiter(app.ctx.redis, prefix=f"{config.redis_namespace}:ratelimit:")
            app.ctx.bus = push.RedisBus(app.ctx.hub, app.ctx.redis, push.channel_name(config.redis_namespace))
            app.ctx.soldout = SoldOutMarks(app.ctx.redis, config.redis_namespace)

    @app.after_server_start
    async def start_push(app):
        await app.ctx.hub.start()
        await app.ctx.bus.start()
        if run_relay:
            app.ctx.relay = push.Relay(app.ctx.bus)
            app.ctx.relay.start()

    @app.before_server_stop
    async def stop_push(app):
        if app.ctx.relay is not None:
            await app.ctx.relay.stop()
        await app.ctx.bus.stop()
        await app.ctx.hub.stop()

    @app.after_server_stop
    async def close_services(app):
        if app.ctx.redis is not None:
            await app.ctx.redis.aclose()
