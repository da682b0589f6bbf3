"""Mini Program server APIs for both ends: login (code2Session), stable access token, subscription
messages — on wechatpy (the project's mandated SDK), run in a small thread pool because wechatpy is
synchronous (requests) and must never block the event loop.

What we take from wechatpy: its HTTP session, URL building, JSON handling and error parsing
(``WeChatClientException``). What we do ourselves, and why:
- the access token: wechatpy only knows ``GET cgi-bin/token`` and a per-process cache. We use
  ``POST cgi-bin/stable_token`` cached in a shared ``TokenStore`` (token_store.py) and always pass
  the token explicitly, with wechatpy's own token logic and auto-retry switched off;
- code2Session without an access token (see ``_code2session_sync``);
- the subscription message body, because ``wxa.send_subscribe_message`` has no
  ``miniprogram_state`` / ``lang``.
Base URLs are overridable (real WeChat or our sandbox) in the three places STACK-NOTES §4 lists.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import functools
import time
from typing import Any, Callable, Mapping

import requests
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from wechat.config import CHINA_TZ, ENDS, WeChatConfig
from wechat.errors import AccessTokenInvalid, InvalidCode, QuotaExhausted, Retryable, UserRefused, WeChatError
from wechat.token_store import AccessTokenCache, MemoryTokenStore, TokenStore

INVALID_CODE = frozenset({40029, 40163})
RETRYABLE = frozenset({45011, -1})  # per-minute rate limit, system busy
DAILY_QUOTA = 45009  # the API's daily quota is used up: nothing helps before midnight (Beijing time)
TOKEN_REJECTED = frozenset({40001, 42001, 40014})
USER_REFUSED = 43101
THREADS = 8  # cap on concurrent blocking wechatpy calls per process

__all__ = ["MiniProgramClient"]


class _Client(WeChatClient):
    """wechatpy client whose base URL can point at the sandbox. Its classic token fetch is disabled:
    every call that needs a token gets one passed in ``params``."""

    def __init__(self, appid: str, secret: str, api_base: str, timeout: float):
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        self.api_base = api_base
        self.API_BASE_URL = api_base + "cgi-bin/"  # instance attribute shadows the class one
        self.wxa.API_BASE_URL = api_base

    def fetch_access_token(self):  # pragma: no cover - guarded against, never expected
        raise RuntimeError("wechatpy's own access-token fetch is disabled; use MiniProgramClient.access_token()")


class MiniProgramClient:
    """Both Mini Programs (``end`` is 'worker' or 'publisher'). One instance per process."""

    def __init__(self, cfg: WeChatConfig, store: TokenStore | None = None,
                 executor: concurrent.futures.Executor | None = None, *, clock: Callable[[], float] = time.time):
        self.cfg = cfg
        self._clock = clock
        # end -> the time (epoch s) before which subscribeMessage.send is not called again, after
        # WeChat answered 45009 (daily quota used up): every call until midnight would fail the same.
        self._send_quota_until: dict[str, float] = {}
        self._executor = executor or concurrent.futures.ThreadPoolExecutor(THREADS, thread_name_prefix="wechatpy")
        self._own_executor = executor is None
        self._clients = {end: _Client(cfg.app(end).appid, cfg.app(end).secret, cfg.api_base, cfg.http_timeout_s)
                         for end in ENDS}
        store = store or MemoryTokenStore()
        self._tokens = {end: AccessTokenCache(store, f"stable:{cfg.app(end).appid}",
                                              functools.partial(self._fetch_stable_token, end))
                        for end in ENDS}

    @classmethod
    def from_config(cls, cfg: WeChatConfig, store: TokenStore | None = None) -> "MiniProgramClient":
        return cls(cfg, store)

    def close(self) -> None:
        if self._own_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- login ---------------------------------------------------------------------------------
    async def code2session(self, end: str, code: str) -> tuple[str, str | None]:
        """``wx.login`` code → (openid, unionid or None). The session_key is dropped on purpose:
        we never use it and it must never reach a client."""
        if not code or len(code) > 128:
            raise InvalidCode(40029, "invalid code")
        result = await self._run(end, self._code2session_sync, end, code)
        openid = result.get("openid")
        if not openid:
            raise WeChatError(result.get("errcode"), "code2Session answered without openid")
        return openid, result.get("unionid") or None

    def _code2session_sync(self, end: str, code: str) -> dict:
        app = self.cfg.app(end)
        # wechatpy's ``_request`` appends ``access_token`` whenever ``params`` is a dict, which makes
        # ``wxa.code_to_session`` fetch a token first — a needless call and failure point for login.
        # Passing params as a list of pairs skips that branch, so jscode2session goes out without it.
        return self._clients[end].get(
            "sns/jscode2session",
            api_base_url=self.cfg.api_base,
            params=[("appid", app.appid), ("secret", app.secret), ("js_code", code),
                    ("grant_type", "authorization_code")],
        )

    # ---- access token --------------------------------------------------------------------------
    async def access_token(self, end: str) -> str:
        return await self._tokens[end].get()

    async def _fetch_stable_token(self, end: str, force_refresh: bool) -> tuple[str, int]:
        app = self.cfg.app(end)
        body = {"grant_type": "client_credential", "appid": app.appid, "secret": app.secret,
                "force_refresh": force_refresh}
        # params=[] (not a dict) so wechatpy does not try to add a token to the token request itself.
        try:
            result = await self._run(end, self._clients[end].post, "stable_token", data=body, params=[])
        except QuotaExhausted as exc:
            # Forced refreshes are limited to 20 a day. Not a reason to give up on sending: the
            # token WeChat hands out renews by itself before it expires, so try again later.
            raise Retryable(exc.errcode, f"stable_token: {exc.errmsg}") from exc
        return result["access_token"], int(result.get("expires_in", 7200))

    async def _with_token(self, end: str, call):
        """Run ``call(token)`` (blocking); on a rejected token refresh once and retry once."""
        token = await self.access_token(end)
        try:
            return await self._run(end, call, token)
        except AccessTokenInvalid:
            token = await self._tokens[end].refresh_after_rejection(token)
            return await self._run(end, call, token)

    # ---- subscription messages -----------------------------------------------------------------
    async def send_subscribe_message(self, end: str, openid: str, template_id: str,
                                     data: Mapping[str, Mapping[str, str]], page: str | None = None,
                                     miniprogram_state: str | None = None, lang: str | None = None) -> None:
        """Send one subscription message. UserRefused (43101) is a normal outcome: record it."""
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {k: {"value": str(v["value"])} for k, v in data.items()},
            "miniprogram_state": miniprogram_state or self.cfg.miniprogram_state,
            "lang": lang or self.cfg.lang,
        }
        if page:
            body["page"] = page

        def call(token: str):
            # The token goes in the URL, never the body (WeChat ignores it there).
            return self._clients[end].post("message/subscribe/send", params={"access_token": token}, data=body)

        if self._send_quota_until.get(end, 0) > self._clock():
            raise QuotaExhausted(DAILY_QUOTA, "subscribeMessage.send daily quota used up; not called again before "
                                              "midnight Beijing time")
        try:
            await self._with_token(end, call)
        except QuotaExhausted:
            self._send_quota_until[end] = _next_beijing_midnight(self._clock())
            raise

    async def send_event(self, end: str, event: str, openid: str, payload: Mapping[str, Any]) -> bool:
        """Render the configured template for (end, event) and send it.

        Returns False when no template is configured for that event (nothing to send)."""
        template = self.cfg.template(end, event)
        if template is None:
            return False
        page, data = template.render(payload)
        await self.send_subscribe_message(end, openid, template.template_id, data, page or None)
        return True

    # ---- Mini Program codes (小程序码) -----------------------------------------------------------
    async def unlimited_code(self, end: str, scene: str, page: str, *, width: int = 430, check_path: bool = True) -> bytes:
        """wxacode.getUnlimited: the PNG of a Mini Program code that opens `page` with `scene`
        (≤ 32 visible characters). WeChat answers the image, or JSON with an errcode."""
        body = {"scene": scene, "page": page, "width": width, "check_path": check_path,
                "env_version": {"developer": "develop", "trial": "trial"}.get(self.cfg.miniprogram_state, "release")}

        def call(token: str):
            # The wechatpy client's wxa.get_wxa_code_unlimited would fetch its own token; pass ours.
            return self._clients[end].post("wxa/getwxacodeunlimit", api_base_url=self.cfg.api_base,
                                           params={"access_token": token}, data=body)

        result = await self._with_token(end, call)
        content = getattr(result, "content", None)
        if not isinstance(content, bytes) or not content.startswith(b"\x89PNG"):
            raise WeChatError(None, "getwxacodeunlimit answered no PNG")
        return content

    # ---- content security (内容安全, issue 14 §4) -------------------------------------------------
    async def msg_sec_check(self, end: str, openid: str, content: str, *, scene: int = 3, title: str | None = None) -> dict:
        """security.msgSecCheck v2 on one text (scene 3: forum/posted content). Returns
        `{"suggest": "pass"|"review"|"risky", "label": int, "trace_id": str}`; label 100 is normal."""
        body: dict[str, Any] = {"content": content[:2500], "version": 2, "scene": scene, "openid": openid}
        if title:
            body["title"] = title

        def call(token: str):
            return self._clients[end].post("wxa/msg_sec_check", api_base_url=self.cfg.api_base,
                                           params={"access_token": token}, data=body)

        result = await self._with_token(end, call)
        verdict = (result or {}).get("result") or {}
        return {"suggest": str(verdict.get("suggest") or "review"), "label": int(verdict.get("label") or 0),
                "trace_id": str((result or {}).get("trace_id") or "")}

    async def media_check_async(self, end: str, openid: str, media_url: str, *, scene: int = 3) -> str:
        """security.mediaCheckAsync v2 on an image (media_type 2): the verdict comes later, as the
        message push event `wxa_media_check` (server/wechat_content.py); returns its trace_id."""
        body = {"media_url": media_url, "media_type": 2, "version": 2, "scene": scene, "openid": openid}

        def call(token: str):
            return self._clients[end].post("wxa/media_check_async", api_base_url=self.cfg.api_base,
                                           params={"access_token": token}, data=body)

        result = await self._with_token(end, call)
        trace_id = str((result or {}).get("trace_id") or "")
        if not trace_id:
            raise WeChatError(None, "media_check_async answered no trace_id")
        return trace_id

    # ---- plumbing ------------------------------------------------------------------------------
    async def _run(self, end: str, fn, *args, **kwargs):
        if end not in ENDS:
            raise ValueError(f"unknown end {end!r}")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        except WeChatClientException as exc:
            raise _classify(exc) from exc
        except requests.Timeout as exc:
            raise Retryable(None, f"timeout: {exc.__class__.__name__}") from exc
        except requests.RequestException as exc:
            raise Retryable(None, f"network: {exc.__class__.__name__}") from exc


def _classify(exc: WeChatClientException) -> WeChatError:
    code, msg = exc.errcode, str(exc.errmsg or "")
    if code is None:  # wechatpy raises errcode=None for HTTP errors (raise_for_status)
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return Retryable(None, f"HTTP {status}") if status is None or status >= 500 or status == 429 \
            else WeChatError(None, f"HTTP {status}")
    try:
        code = int(code)
    except (TypeError, ValueError):
        return WeChatError(None, msg)
    if code in INVALID_CODE:
        return InvalidCode(code, msg)
    if code in RETRYABLE:
        return Retryable(code, msg)
    if code == DAILY_QUOTA:
        return QuotaExhausted(code, msg)
    if code == USER_REFUSED:
        return UserRefused(code, msg)
    if code in TOKEN_REJECTED:
        return AccessTokenInvalid(code, msg)
    return WeChatError(code, msg)


def _next_beijing_midnight(now_s: float) -> float:
    """WeChat's daily quotas reset at 00:00 China time."""
    today = dt.datetime.fromtimestamp(now_s, CHINA_TZ).date()
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), CHINA_TZ).timestamp()
