"""WeChat wiring of the server: the clients per worker, the sandbox, and WeChat Pay's callbacks.

`install(app)` (called by `create_app`):
1. Builds and validates the WeChat configuration at once, so a bad `wechat:` section — above all
   the sandbox in a production configuration — stops `create_app` before anything starts.
2. Mounts the sandbox blueprint at /sandbox when `wechat.sandbox` is on (it must be mounted before
   the app starts). Its base defaults to this server's own address (see `wechat_config`).
3. Per worker (`before_server_start`): `app.ctx.wechat = WeChatServices` — one httpx pool, one
   wechatpy thread pool, tokens in Redis when `redis_url` is set (shared by every process), else in
   memory. Closed again in `after_server_stop`.
4. The two notification endpoints WeChat Pay POSTs to. They are WeChat's callbacks, not part of the
   Mini Programs' API, so they are left out of the public OpenAPI document. They stream their body
   and stop at `CALLBACK_MAX_BYTES`: a notification is a few kB, and the server-wide limit
   (`REQUEST_MAX_SIZE`, sized for image uploads) would let anyone make them buffer 12 MB.
"""

from __future__ import annotations

import logging

from sanic import Blueprint, Request, Sanic
from sanic.exceptions import PayloadTooLarge
from sanic.response import empty, text
from sanic.response import json as json_response

from server.wechat_services import PAY_NOTIFY_PATH, TRANSFER_NOTIFY_PATH, WeChatServices, wechat_config

log = logging.getLogger("market.wechat")

CALLBACK_MAX_BYTES = 64 * 1024  # WeChat Pay notifications are 1–3 kB; generous headroom, far below uploads


def install(app: Sanic) -> None:
    """Mount the sandbox and the WeChat notification endpoints; build the clients per worker."""
    config = app.ctx.config
    cfg = wechat_config(config)  # raises WeChatConfigError: e.g. production + sandbox refuses to start
    app.ctx.wechat_config = cfg
    sandbox_bp = None
    if cfg.sandbox:
        from wechat.sandbox import create_sandbox_blueprint

        if config.workers > 1:
            log.warning("the WeChat sandbox keeps its state per process: run it with workers: 1")
        sandbox_bp = create_sandbox_blueprint(cfg)
        app.blueprint(sandbox_bp)
        log.warning("WeChat SANDBOX is on at %s: fake users and fake money", cfg.api_base.rsplit("/wx/", 1)[0])

    bp = Blueprint("wechat_callbacks")

    @bp.post(PAY_NOTIFY_PATH, stream=True)
    async def pay_notify(request: Request):
        """WeChat Pay payment result (TRANSACTION.SUCCESS). 204 = recorded; anything else = retry."""
        raw = await _small_body(request)
        if raw is None:
            return json_response({"code": "FAIL", "message": "body too large"}, status=413)
        status, body = await request.app.ctx.wechat.handle_payment_notification(request.headers, raw)
        return empty(status=status) if body is None else json_response(body, status=status)

    @bp.post(TRANSFER_NOTIFY_PATH, stream=True)
    async def transfer_notify(request: Request):
        """WeChat Pay merchant transfer result (MCHTRANSFER.BILL.FINISHED)."""
        raw = await _small_body(request)
        if raw is None:
            return json_response({"code": "FAIL", "message": "body too large"}, status=413)
        status, body = await request.app.ctx.wechat.handle_transfer_notification(request.headers, raw)
        return empty(status=status) if body is None else json_response(body, status=status)

    from server.wechat_content import MEDIA_CHECK_PATH

    @bp.post(MEDIA_CHECK_PATH, stream=True)
    async def media_check_notify(request: Request):
        """WeChat's message push with a mediaCheckAsync verdict (issue 14 §4)."""
        raw = await _small_body(request)
        if raw is None:
            return json_response({"code": "FAIL", "message": "body too large"}, status=413)
        args = {k: v[0] for k, v in request.args.items()}
        status, body = await request.app.ctx.wechat.handle_media_check(args, raw)
        return text(body, status=status)

    @bp.get(MEDIA_CHECK_PATH)
    async def media_check_verify(request: Request):
        """WeChat checks the push address when it is saved in the console (echostr)."""
        status, body = request.app.ctx.wechat.verify_push_address({k: v[0] for k, v in request.args.items()})
        return text(body, status=status)

    app.blueprint(bp)
    _exclude_from_openapi(bp, sandbox_bp)

    @app.before_server_start
    async def start_wechat(app: Sanic):
        redis = None
        if config.redis_url:
            import redis.asyncio as aioredis

            redis = aioredis.from_url(config.redis_url)
        app.ctx.wechat_redis = redis
        app.ctx.wechat = await WeChatServices.start(
            config, redis, cfg=cfg, sandbox_state=sandbox_bp.ctx.state if sandbox_bp else None)

    @app.after_server_stop
    async def stop_wechat(app: Sanic):
        services = getattr(app.ctx, "wechat", None)
        if services is not None:
            await services.aclose()
            if services.sandbox is not None:
                await services.sandbox.aclose()  # pending notification deliveries
        if getattr(app.ctx, "wechat_redis", None) is not None:
            await app.ctx.wechat_redis.aclose()


async def _small_body(request: Request, limit: int = CALLBACK_MAX_BYTES) -> bytes | None:
    """The body of a streaming route, or None when it is longer than `limit` (by its declared
    length, before reading anything, or as it arrives, for chunked bodies)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    stream = request.stream
    if hasattr(stream, "request_max_size"):  # Sanic's HTTP/1 stream enforces it while reading
        stream.request_max_size = min(stream.request_max_size, limit)
    try:
        await request.receive_body()
    except PayloadTooLarge:
        return None
    return request.body if len(request.body) <= limit else None


def _exclude_from_openapi(*bps: Blueprint | None) -> None:
    try:
        from sanic_ext.extensions.openapi import openapi
    except ImportError:  # sanic-ext not installed: there is no OpenAPI document to hide them from
        return
    for bp in bps:
        if bp is not None:
            openapi.exclude(bp=bp)
