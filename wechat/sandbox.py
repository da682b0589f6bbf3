"""A stand-in for WeChat, mounted on our own server under ``/sandbox`` when no real credentials exist.

SANDBOX ONLY. It fakes users, tokens and money. ``WeChatConfig.validate(production=True)`` refuses
``sandbox: true``, every response carries ``X-WeChat-Sandbox: 1`` and the developer page says so.

It speaks the real wire formats so the production clients (``miniprogram.py``, ``pay.py``) run
unmodified against it — only their base URLs differ:

  /sandbox/wx/sns/jscode2session                 GET   code2Session (no access token needed)
  /sandbox/wx/cgi-bin/stable_token               POST  getStableAccessToken
  /sandbox/wx/cgi-bin/message/subscribe/send     POST  subscribeMessage.send (recorded in memory)
  /sandbox/wx/wxa/getwxacodeunlimit              POST  wxacode.getUnlimited (a real PNG drawn from the scene)
  /sandbox/pay/v3/pay/transactions/jsapi          POST  prepay           (merchant signature checked)
  /sandbox/pay/v3/pay/transactions/out-trade-no/{no}[?mchid=]   GET query, POST .../close
  /sandbox/pay/v3/pay/transactions/id/{transaction_id}          GET
  /sandbox/pay/v3/fund-app/mch-transfer/transfer-bills          POST create
  /sandbox/pay/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{no}         GET, POST .../cancel
  /sandbox/pay/v3/fund-app/mch-transfer/transfer-bills/transfer-bill-no/{no}    GET
  /sandbox/pay/v3/bill/tradebill, .../fundflowbill, .../billdownload/file   daily bills (sandbox_bills.py)
  /sandbox/pay/_simulate/pay               POST {out_trade_no, wait?}        the user pays
  /sandbox/pay/_simulate/confirm_transfer  POST {out_bill_no, result: SUCCESS|FAIL, fail_reason?, wait?}
  /sandbox/_inspect                        GET   JSON dump of the state (for tests and demos)
  /sandbox/                                GET   developer page: pay pending orders, confirm transfers

Login code convention (``wx.login`` codes are whatever the demo/test sends):
  "invalid" → 40029, "used" → 40163, "busy" → -1, "ratelimit" → 45011, "risky" → 40226;
  any other code names a person by the part before the first "-": "alice-1", "alice-2" and "alice"
  all log in as alice. openid = deterministic per (AppID, name), so alice has different openids in
  the two Mini Programs; unionid = deterministic per name (the same person on both ends). With
  ``single_use_codes`` (default) a code works once, then answers 40163, as on WeChat.

State (orders, transfers, tokens, messages, used codes) lives IN MEMORY, PER PROCESS: run the
sandbox with one Sanic worker, and expect it to be empty after a restart. (The throwaway keys are
generated per process too, but inherited by child processes — see config._sandbox_material.) Payment/transfer notifications are POSTed to the ``notify_url`` the
merchant sent, re-signed for every attempt, repeated on the configured schedule until the merchant
answers 200/204, like WeChat does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sanic import Blueprint, HTTPResponse, Request
from sanic.response import html as html_response
from sanic.response import json as json_response
from sanic.response import redirect

from wechat import crypto, keywords
from wechat.config import (CHINA_TZ, ENDS, SANDBOX_PUBLIC_KEY_ID, WECHAT_NOTIFY_RETRY_SCHEDULE_S,
                           WECHAT_TRANSFER_NOTIFY_RETRY_SCHEDULE_S, WeChatConfig)

SANDBOX_HEADER = "X-WeChat-Sandbox"
SPECIAL_CODES = {"invalid": (40029, "invalid code"), "used": (40163, "code been used"),
                 "busy": (-1, "system error"), "ratelimit": (45011, "api minute-quota reach limit"),
                 "risky": (40226, "high risk user")}
TOKEN_TTL_S = 7200
TOKEN_EARLY_REFRESH_S = 300  # stable_token hands out a new token 5 min before the old one expires
FORCE_REFRESH_PER_DAY = 20
FORCE_REFRESH_GAP_S = 30
MAX_RECORDED = 1000  # messages / deliveries kept in memory
_OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-|*]{6,32}$")  # payments: digits, letters and _-|*
_OUT_BILL_NO = re.compile(r"^[0-9A-Za-z]{1,32}$")  # transfers: digits and letters only

__all__ = ["SandboxKeys", "SandboxState", "create_sandbox_blueprint", "make_notification",
           "make_payment_notification", "make_transfer_notification", "sign_notification"]


# ---- keys and notifications (usable without a running sandbox) --------------------------------

@dataclass(frozen=True)
class SandboxKeys:
    """WeChat's side of the key material: verifies merchants, signs answers, encrypts callbacks.

    WeChat signs with the 微信支付公钥 (``public_key_id``) or with a platform certificate
    (``platform_cert_serial``), as ``platform_key`` says: "public_key", "certificate", or
    "switching" (WeChat's 7-day switch: each message with either, the public key for
    ``switch_public_key_share`` of them)."""

    mchid: str
    merchant_serial_no: str
    merchant_public_key_pem: str
    platform_private_key_pem: str
    public_key_id: str
    apiv3_key: str
    platform_cert_private_key_pem: str = ""
    platform_cert_pem: str = ""
    platform_key: str = "public_key"
    switch_public_key_share: float = 0.5

    @classmethod
    def from_config(cls, cfg: WeChatConfig) -> "SandboxKeys":
        sb = cfg.sandbox_options
        if not cfg.sandbox or not sb.platform_private_key_pem:
            raise ValueError("SandboxKeys need a sandbox configuration (wechat.sandbox: true)")
        return cls(mchid=cfg.pay.mchid, merchant_serial_no=cfg.pay.merchant_serial_no,
                   merchant_public_key_pem=crypto.public_key_pem_of(cfg.pay.private_key_pem),
                   platform_private_key_pem=sb.platform_private_key_pem,
                   public_key_id=cfg.pay.public_key_id or SANDBOX_PUBLIC_KEY_ID, apiv3_key=cfg.pay.apiv3_key,
                   platform_cert_private_key_pem=sb.platform_cert_private_key_pem,
                   platform_cert_pem=sb.platform_cert_pem, platform_key=sb.platform_key,
                   switch_public_key_share=sb.switch_public_key_share)

    @property
    def platform_cert_serial(self) -> str:
        return crypto.certificate_serial(self.platform_cert_pem)

    def signer(self, key: str | None = None) -> tuple[str, str]:
        """(private key PEM, Wechatpay-Serial) for one message: ``key`` forces "public_key" or
        "certificate"; by default the mode decides (randomly per message while switching)."""
        key = key or self.platform_key
        if key == "switching":
            key = "public_key" if secrets.randbelow(10_000) < self.switch_public_key_share * 10_000 else "certificate"
        if key == "certificate":
            return self.platform_cert_private_key_pem, self.platform_cert_serial
        return self.platform_private_key_pem, self.public_key_id

    def decryption_key(self, serial: str) -> str | None:
        """The private key of the WeChat key named ``serial`` (to read a field a merchant encrypted)."""
        if serial == self.public_key_id and self.platform_key != "certificate":
            return self.platform_private_key_pem
        if self.platform_cert_pem and crypto.normalize_serial(serial) == self.platform_cert_serial \
                and self.platform_key != "public_key":
            return self.platform_cert_private_key_pem
        return None


def sign_notification(keys: SandboxKeys, body: bytes, timestamp: int | None = None,
                      nonce_str: str | None = None, key: str | None = None) -> dict[str, str]:
    """Wechatpay-* headers for a body, as WeChat sends them (response or notification)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce_str = nonce_str or crypto.nonce(32)
    private_key, serial = keys.signer(key)
    return {
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": nonce_str,
        "Wechatpay-Signature": crypto.rsa_sign(private_key, crypto.response_message(ts, nonce_str, body)),
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": crypto.AUTH_SCHEMA,
        "Request-ID": str(uuid.uuid4()),
        "Content-Type": "application/json",
    }


def make_notification(keys: SandboxKeys, event_type: str, summary: str, original_type: str,
                      resource: dict[str, Any], *, notification_id: str | None = None,
                      timestamp: int | None = None, key: str | None = None) -> tuple[dict[str, str], bytes]:
    """A signed, encrypted WeChat Pay callback: (headers, raw body)."""
    nonce12 = crypto.nonce(12)
    plain = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode()
    envelope = {
        "id": notification_id or str(uuid.uuid4()),
        "create_time": _now_rfc3339(),
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": summary,
        "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                     "ciphertext": crypto.aes_gcm_encrypt(keys.apiv3_key, nonce12, plain, original_type),
                     "associated_data": original_type, "nonce": nonce12},
    }
    body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
    return sign_notification(keys, body, timestamp, key=key), body


def make_payment_notification(keys: SandboxKeys, transaction: dict[str, Any], **kw) -> tuple[dict[str, str], bytes]:
    """TRANSACTION.SUCCESS callback for a paid transaction (the query API's SUCCESS shape)."""
    return make_notification(keys, "TRANSACTION.SUCCESS", "支付成功", "transaction", transaction, **kw)


def make_transfer_notification(keys: SandboxKeys, bill: dict[str, Any], **kw) -> tuple[dict[str, str], bytes]:
    """MCHTRANSFER.BILL.FINISHED callback (sent on SUCCESS, FAIL and CANCELLED)."""
    return make_notification(keys, "MCHTRANSFER.BILL.FINISHED", "商家转账单据终态通知", "mch_payment", bill, **kw)


# ---- state -----------------------------------------------------------------------------------

class Delivery:
    """One notification being pushed to a merchant, with every attempt recorded."""

    def __init__(self, url: str, body: bytes, event_type: str, key: str):
        self.url, self.body, self.event_type, self.key = url, body, event_type, key
        self.attempts: list[dict[str, Any]] = []
        self.delivered = False
        self.first_attempt: asyncio.Future = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task | None = None

    def view(self) -> dict[str, Any]:
        return {"url": self.url, "event_type": self.event_type, "key": self.key,
                "delivered": self.delivered, "attempts": self.attempts}


class SandboxState:
    """Everything the fake WeChat remembers — in memory, for this process only."""

    def __init__(self, cfg: WeChatConfig):
        self.cfg = cfg
        self.keys = SandboxKeys.from_config(cfg)
        self.apps = {cfg.app(end).appid: cfg.app(end) for end in ENDS}
        self.used_codes: set[tuple[str, str]] = set()
        self.code2session_calls: list[dict[str, Any]] = []
        self.stable_token_calls: list[dict[str, Any]] = []
        self.tokens: dict[str, dict[str, Any]] = {}  # token -> {appid, expires_at, revoked: errcode|None}
        self.current_token: dict[str, str] = {}  # appid -> token
        self.messages: list[dict[str, Any]] = []
        self.send_faults: list[dict[str, Any]] = []  # queued faults for subscribe/send (see inject_send_fault)
        self.send_attempts = 0  # every subscribe/send call that reached the sandbox
        self.wxacode_calls: list[dict[str, Any]] = []  # getwxacodeunlimit requests (scene, page)
        # Content security (issue 14 §4): a text containing one of these words gets that verdict
        # (suggest, label); anything else passes. Tests and demos set them (configurable verdicts).
        self.text_verdicts: dict[str, tuple[str, int]] = {"违禁测试": ("risky", 20001), "待复审测试": ("review", 20002)}
        self.sec_checks: list[dict[str, Any]] = []  # msg_sec_check requests
        # mediaCheckAsync: the verdict each media URL will get (default pass), and the checks asked for
        # (trace_id -> {media_url, openid, appid}); `media_check_event` builds the push WeChat would send.
        self.media_verdicts: dict[str, tuple[str, int]] = {}
        self.media_checks: dict[str, dict[str, Any]] = {}
        self.refused_openids: set[str] = {self.openid_for(a, name) for a in self.apps
                                          for name in cfg.sandbox_options.refused_users}
        self.orders: dict[str, dict[str, Any]] = {}  # out_trade_no -> order
        self.transfers: dict[str, dict[str, Any]] = {}  # out_bill_no -> bill
        self.merchant_balance_fen: int | None = None  # None = unlimited; else NOT_ENOUGH when short
        # Transfer bills: the states a new bill goes through (None = straight to WAIT_USER_CONFIRM).
        # The first is its state when created; each repeat of the same request (原单重试) moves it
        # to the next, as WeChat's processing does: e.g. ["ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM"].
        self.transfer_script: list[str] | None = None
        # (HTTP status, code, message) answered to every transfer creation: a configuration refusal
        # such as the IP allowlist (see refuse_transfers_from_this_ip).
        self.transfer_refusal: tuple[int, str, str] | None = None
        self.cancel_delay_s: float | None = 0.2  # CANCELING → CANCELLED after this; None = only finish_cancel()
        self.certificate_calls = 0  # GET /v3/certificates
        self.forced_refreshes: dict[str, list[float]] = {}  # appid -> times of stable_token force_refresh
        self.clock = time.time  # access tokens' time (tests move it to reach expiry or a new day)
        self.deliveries: list[Delivery] = []
        self.retry_schedule_s = cfg.sandbox_options.notify_retry_schedule_s  # empty: WeChat's, per kind
        self._http: httpx.AsyncClient | None = None
        self._timers: set[asyncio.Task] = set()

    def media_check_event(self, trace_id: str) -> dict[str, Any]:
        """The message push WeChat sends when a mediaCheckAsync verdict is ready (JSON mode)."""
        check = self.media_checks[trace_id]
        suggest, label = self.media_verdicts.get(check["media_url"], ("pass", 100))
        return {"ToUserName": "gh_sandbox", "FromUserName": check["openid"], "CreateTime": int(time.time()),
                "MsgType": "event", "Event": "wxa_media_check", "appid": check["appid"], "trace_id": trace_id,
                "version": 2, "detail": [{"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label}],
                "errcode": 0, "errmsg": "ok", "result": {"suggest": suggest, "label": label}}

    # identities
    @staticmethod
    def openid_for(appid: str, name: str) -> str:
        return "o" + _b64hash(f"openid:{appid}:{name}")[:27]

    @staticmethod
    def unionid_for(name: str) -> str:
        return "oU" + _b64hash(f"unionid:{name}")[:26]

    def refuse(self, openid: str) -> None:
        self.refused_openids.add(openid)

    def revoke_tokens(self, appid: str | None = None, errcode: int = 40001) -> None:
        """Make current tokens fail with ``errcode`` (40001 invalid / 42001 expired), as after a
        secret reset or a forced refresh elsewhere; the next non-forced fetch issues a new one."""
        for token, info in self.tokens.items():
            if appid is None or info["appid"] == appid:
                info["revoked"] = errcode
        for a in list(self.current_token):
            if appid is None or a == appid:
                del self.current_token[a]

    def inject_send_fault(self, errcode: int | None = -1, *, times: int = 1, delay_s: float = 0.0,
                          record: bool = False) -> None:
        """Make the next ``times`` subscription sends misbehave (tests and demos):
        ``errcode`` -1 (busy) / 45009 / 45011 is answered as such; ``delay_s`` sleeps before answering
        (longer than the client's timeout = a timeout); ``record`` True records the message anyway
        (the send did happen, only the answer was lost), as WeChat may do behind a timeout."""
        self.send_faults.extend({"errcode": errcode, "delay_s": delay_s, "record": record} for _ in range(times))

    def messages_to(self, openid: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["touser"] == openid]

    # payments and transfers driven by a "user"
    async def simulate_pay(self, out_trade_no: str) -> tuple[dict[str, Any], Delivery]:
        order = self.orders.get(out_trade_no)
        if order is None:
            raise LookupError("ORDER_NOT_EXIST")
        if order["trade_state"] != "NOTPAY":
            raise ValueError(f"order is {order['trade_state']}, not NOTPAY")
        if order.get("expires_at") and order["expires_at"] < time.time():
            raise ValueError("order expired (time_expire passed)")
        order.update(trade_state="SUCCESS", trade_state_desc="支付成功", bank_type="OTHERS",
                     transaction_id=f"42000{int(time.time())}{secrets.randbelow(10**10):010d}",
                     success_time=_now_rfc3339())
        tx = _transaction_view(order)
        delivery = self._dispatch(order["notify_url"], lambda: make_payment_notification(self.keys, tx,
                                  notification_id=order["notification_id"]), "TRANSACTION.SUCCESS", out_trade_no)
        return order, delivery

    # transfers driven by a test: WeChat's own progress, refusals and the user's choice
    def refuse_transfers_from_this_ip(self) -> None:
        """商家转账's IP allowlist: calls from an address not registered at the merchant platform."""
        self.transfer_refusal = (400, "INVALID_REQUEST", "此IP地址不允许调用该接口")

    def set_bill_state(self, out_bill_no: str, state: str, fail_reason: str | None = None) -> dict[str, Any]:
        """Move a bill as WeChat's side would (no notification; see confirm_transfer for that)."""
        bill = self.transfers[out_bill_no]
        bill.update(state=state, update_time=_now_rfc3339())
        if fail_reason:
            bill["fail_reason"] = fail_reason
        return bill

    def finish_cancel(self, out_bill_no: str) -> Delivery | None:
        """CANCELING → CANCELLED (final; the money never left), notified like every final state."""
        bill = self.transfers.get(out_bill_no)
        if bill is None or bill["state"] != "CANCELING":
            return None
        bill.update(state="CANCELLED", update_time=_now_rfc3339())
        return self._finish_transfer(bill)

    async def _finish_cancel_later(self, out_bill_no: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self.finish_cancel(out_bill_no)

    async def confirm_transfer(self, out_bill_no: str, result: str = "SUCCESS",
                               fail_reason: str | None = None) -> tuple[dict[str, Any], Delivery]:
        """The user confirms (SUCCESS) — only while WeChat waits for them — or WeChat fails the bill."""
        bill = self.transfers.get(out_bill_no)
        if bill is None:
            raise LookupError("NOT_FOUND")
        allowed = ("WAIT_USER_CONFIRM", "TRANSFERING") if result == "SUCCESS" else \
            ("ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM", "TRANSFERING")
        if bill["state"] not in allowed:
            raise ValueError(f"bill is {bill['state']}")
        if result == "SUCCESS":
            if self.merchant_balance_fen is not None:
                self.merchant_balance_fen -= bill["transfer_amount"]
            bill.update(state="SUCCESS")
        elif result == "FAIL":
            bill.update(state="FAIL", fail_reason=fail_reason or "SANDBOX_SIMULATED_FAIL")
        else:
            raise ValueError("result must be SUCCESS or FAIL")
        bill["update_time"] = _now_rfc3339()
        return bill, self._finish_transfer(bill)

    def _finish_transfer(self, bill: dict[str, Any]) -> Delivery:
        view = _bill_view(bill)
        # The notification's resource names the merchant "mchid"; the query answer, "mch_id".
        view["mchid"] = view.pop("mch_id")
        view.pop("appid")
        return self._dispatch(bill["notify_url"], lambda: make_transfer_notification(self.keys, view),
                              "MCHTRANSFER.BILL.FINISHED", bill["out_bill_no"])

    # notification sender
    def _dispatch(self, url: str, build, event_type: str, key: str) -> Delivery:
        headers, body = build()  # encrypt once; every attempt re-signs the same body with a fresh timestamp
        delivery = Delivery(url, body, event_type, key)
        self.deliveries = self.deliveries[-MAX_RECORDED + 1:] + [delivery]
        delivery.task = asyncio.create_task(self._deliver(delivery))
        return delivery

    async def _deliver(self, d: Delivery) -> None:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=5.0)
        schedule = self.retry_schedule_s or (WECHAT_TRANSFER_NOTIFY_RETRY_SCHEDULE_S if d.event_type.startswith("MCHTRANSFER")
                                             else WECHAT_NOTIFY_RETRY_SCHEDULE_S)
        for n, delay in enumerate(schedule, start=1):
            await asyncio.sleep(delay)
            attempt: dict[str, Any] = {"n": n, "at": _now_rfc3339()}
            try:
                r = await self._http.post(d.url, content=d.body, headers=sign_notification(self.keys, d.body))
                attempt["status"] = r.status_code
                d.delivered = r.status_code in (200, 204)
            except httpx.HTTPError as exc:
                attempt["error"] = exc.__class__.__name__
            d.attempts.append(attempt)
            if not d.first_attempt.done():
                d.first_attempt.set_result(attempt)
            if d.delivered:
                return

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until every scheduled notification is delivered or gave up (tests)."""
        tasks = [d.task for d in self.deliveries if d.task and not d.task.done()]
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout_s)

    async def aclose(self) -> None:
        for task in [*(d.task for d in self.deliveries), *self._timers]:
            if task and not task.done():
                task.cancel()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def inspect(self) -> dict[str, Any]:
        return {"sandbox": True, "messages": self.messages, "orders": list(self.orders.values()),
                "transfers": [_bill_view(b) for b in self.transfers.values()],
                "deliveries": [d.view() for d in self.deliveries],
                "stable_token_calls": len(self.stable_token_calls), "certificate_calls": self.certificate_calls}


# ---- the blueprint ---------------------------------------------------------------------------

def create_sandbox_blueprint(cfg: WeChatConfig, state: SandboxState | None = None,
                             url_prefix: str = "/sandbox", name: str = "wechat_sandbox") -> Blueprint:
    """The sandbox as one Blueprint; its state is ``bp.ctx.state``. Mount only when cfg.sandbox."""
    if not cfg.sandbox:
        raise RuntimeError("refusing to mount the WeChat sandbox: wechat.sandbox is off")
    st = state or SandboxState(cfg)
    bp = Blueprint(name, url_prefix=url_prefix)
    bp.ctx.state = st
    prefix = url_prefix.rstrip("/")

    @bp.on_response
    async def mark(request: Request, response: HTTPResponse):
        response.headers[SANDBOX_HEADER] = "1"

    # -- Mini Program server APIs (always HTTP 200, errors as errcode) --------------------------
    @bp.get("/wx/sns/jscode2session")
    async def jscode2session(request: Request):
        a = request.args
        appid, secret, code = a.get("appid", ""), a.get("secret", ""), a.get("js_code", "")
        st.code2session_calls.append({"appid": appid, "code": code, "with_access_token": "access_token" in a})
        if appid not in st.apps:
            return _wx_error(40013, "invalid appid")
        if st.apps[appid].secret != secret:
            return _wx_error(40125, "invalid appsecret")
        if a.get("grant_type") != "authorization_code":
            return _wx_error(40002, "invalid grant_type")
        if not code or code in SPECIAL_CODES:
            return _wx_error(*SPECIAL_CODES.get(code, (40029, "invalid code")))
        if st.cfg.sandbox_options.single_use_codes:
            if (appid, code) in st.used_codes:
                return _wx_error(40163, "code been used")
            st.used_codes.add((appid, code))
        name = code.split("-", 1)[0] or code
        answer = {"openid": st.openid_for(appid, name), "session_key": base64.b64encode(secrets.token_bytes(16)).decode()}
        if st.cfg.sandbox_options.unionid_bound:  # only Mini Programs bound to an Open Platform account get one
            answer["unionid"] = st.unionid_for(name)
        return json_response(answer)

    @bp.post("/wx/cgi-bin/stable_token")
    async def stable_token(request: Request):
        body = _json_or_none(request) or {}
        appid, force = body.get("appid", ""), bool(body.get("force_refresh"))
        st.stable_token_calls.append({"appid": appid, "force_refresh": force})
        if body.get("grant_type") != "client_credential":
            return _wx_error(40002, "invalid grant_type")
        if appid not in st.apps:
            return _wx_error(40013, "invalid appid")
        if st.apps[appid].secret != body.get("secret"):
            return _wx_error(40125, "invalid appsecret")
        now = st.clock()
        token = st.current_token.get(appid)
        if force:
            # Forced refreshes are limited to 20 a day, 30 s apart, and the token they replace stops
            # working at once (normal mode never invalidates a token: old and new overlap).
            today = datetime.fromtimestamp(now, CHINA_TZ).date()
            used = st.forced_refreshes[appid] = [t for t in st.forced_refreshes.get(appid, [])
                                                 if datetime.fromtimestamp(t, CHINA_TZ).date() == today]
            if len(used) >= FORCE_REFRESH_PER_DAY:
                return _wx_error(45009, "reach max api daily quota limit")
            if used and now - used[-1] < FORCE_REFRESH_GAP_S:
                return _wx_error(45011, "api minute-quota reach limit mustslower retry next minute")
            used.append(now)
            if token:
                st.tokens[token]["revoked"] = 40001
        if force or not token or st.tokens[token]["expires_at"] - now <= TOKEN_EARLY_REFRESH_S:
            # A new token 5 minutes before the old one expires; the old one works until then.
            token = f"sandbox-{appid}-{secrets.token_urlsafe(24)}"
            st.tokens[token] = {"appid": appid, "expires_at": now + TOKEN_TTL_S, "revoked": None}
            st.current_token[appid] = token
        return json_response({"access_token": token, "expires_in": int(st.tokens[token]["expires_at"] - now)})

    @bp.post("/wx/wxa/getwxacodeunlimit")
    async def wxacode_unlimited(request: Request):
        """wxacode.getUnlimited: a real PNG (a code-like pattern drawn from the scene), not a scannable code."""
        info = st.tokens.get(request.args.get("access_token", ""))
        if info is None or info["revoked"] == 40001:
            return _wx_error(40001, "invalid credential, access_token is invalid or not latest")
        if info["revoked"] or info["expires_at"] <= time.time():
            return _wx_error(42001, "access_token expired")
        body = _json_or_none(request) or {}
        scene = body.get("scene")
        st.wxacode_calls.append({"appid": info["appid"], "scene": scene, "page": body.get("page")})
        if not isinstance(scene, str) or not 1 <= len(scene) <= 32:
            return _wx_error(40169, "invalid length for scene, or the data is not json string")
        return HTTPResponse(body=sandbox_code_png(scene, str(body.get("page") or "")), content_type="image/png")

    def _token_ok(request: Request):
        info = st.tokens.get(request.args.get("access_token", ""))
        if info is None or info["revoked"] == 40001:
            return None, _wx_error(40001, "invalid credential, access_token is invalid or not latest")
        if info["revoked"] or info["expires_at"] <= time.time():
            return None, _wx_error(42001, "access_token expired")
        return info, None

    @bp.post("/wx/wxa/msg_sec_check")
    async def msg_sec_check(request: Request):
        """security.msgSecCheck v2: the verdict of the first configured word the content contains."""
        info, error = _token_ok(request)
        if error is not None:
            return error
        body = _json_or_none(request) or {}
        content = body.get("content")
        if not isinstance(content, str) or body.get("version") != 2 or not body.get("openid"):
            return _wx_error(47001, "data format error")
        st.sec_checks.append({"appid": info["appid"], "content": content, "openid": body["openid"]})
        suggest, label = "pass", 100
        for word, verdict in st.text_verdicts.items():
            if word in content or word in str(body.get("title") or ""):
                suggest, label = verdict
                break
        return json_response({"errcode": 0, "errmsg": "ok", "trace_id": secrets.token_hex(12),
                              "result": {"suggest": suggest, "label": label},
                              "detail": [{"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label}]})

    @bp.post("/wx/wxa/media_check_async")
    async def media_check_async(request: Request):
        """security.mediaCheckAsync v2: a trace_id now; the verdict is pushed later (media_check_event)."""
        info, error = _token_ok(request)
        if error is not None:
            return error
        body = _json_or_none(request) or {}
        if not isinstance(body.get("media_url"), str) or body.get("version") != 2 or not body.get("openid"):
            return _wx_error(47001, "data format error")
        trace_id = secrets.token_hex(12)
        st.media_checks[trace_id] = {"appid": info["appid"], "media_url": body["media_url"], "openid": body["openid"]}
        return json_response({"errcode": 0, "errmsg": "ok", "trace_id": trace_id})

    @bp.post("/wx/cgi-bin/message/subscribe/send")
    async def subscribe_send(request: Request):
        st.send_attempts += 1
        fault = st.send_faults.pop(0) if st.send_faults else None
        if fault is not None:
            if fault["delay_s"]:
                await asyncio.sleep(fault["delay_s"])
            if not fault["record"]:
                return _wx_error(fault["errcode"] if fault["errcode"] is not None else -1, "system error (injected)")
        token = request.args.get("access_token", "")
        info = st.tokens.get(token)
        if info is None or info["revoked"] == 40001:
            return _wx_error(40001, "invalid credential, access_token is invalid or not latest")
        if info["revoked"] or info["expires_at"] <= st.clock():
            return _wx_error(42001, "access_token expired")
        body = _json_or_none(request)
        if not isinstance(body, dict):
            return _wx_error(47001, "data format error")
        touser, template_id, data = body.get("touser"), body.get("template_id"), body.get("data")
        if not isinstance(touser, str) or not touser.startswith("o"):
            return _wx_error(40003, "invalid openid")
        if not template_id:
            return _wx_error(40037, "invalid template_id")
        if not isinstance(data, dict) or not data:
            return _wx_error(47003, "argument invalid! data is empty")
        if (bad := keywords.first_problem(data)) is not None:
            # WeChat checks every value against its keyword's rule and names the first bad field.
            return _wx_error(47003, f"argument invalid! data.{bad[0]}.value {bad[1]}")
        if body.get("miniprogram_state", "formal") not in ("developer", "trial", "formal"):
            return _wx_error(47003, "argument invalid! miniprogram_state")
        if touser in st.refused_openids:
            return _wx_error(43101, "user refuse to accept the msg")
        st.messages = st.messages[-MAX_RECORDED + 1:] + [{
            "appid": info["appid"], "touser": touser, "template_id": template_id, "page": body.get("page"),
            "data": data, "miniprogram_state": body.get("miniprogram_state"), "lang": body.get("lang"),
            "at": _now_rfc3339()}]
        return json_response({"errcode": 0, "errmsg": "ok", "msgid": secrets.randbelow(10**12)})

    # -- WeChat Pay v3 ----------------------------------------------------------------------
    def signed(status: int, obj: Any = None) -> HTTPResponse:
        body = b"" if obj is None else json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        headers = sign_notification(st.keys, body)
        if obj is None:
            headers.pop("Content-Type")
        return HTTPResponse(body, status=status, headers=headers,
                            content_type="application/json" if obj is not None else None)

    def pay_error(status: int, code: str, message: str) -> HTTPResponse:
        return signed(status, {"code": code, "message": message})

    def check_merchant(request: Request) -> HTTPResponse | None:
        """Verify the merchant Authorization exactly like WeChat: 401 SIGN_ERROR otherwise."""
        fields = crypto.parse_authorization(request.headers.get("authorization", ""))
        if fields is None:
            return pay_error(401, "SIGN_ERROR", "Authorization 头缺失或格式错误 (sandbox)")
        if fields["mchid"] != st.keys.mchid:
            return pay_error(401, "SIGN_ERROR", "mchid 与签名不匹配 (sandbox)")
        if fields["serial_no"] != st.keys.merchant_serial_no:
            return pay_error(401, "SIGN_ERROR", "商户证书序列号不匹配 (sandbox)")
        try:
            skew = abs(time.time() - int(fields["timestamp"]))
        except ValueError:
            skew = 10**9
        if skew > 300:
            return pay_error(401, "SIGN_ERROR", "timestamp 超出允许范围 (sandbox)")
        path = request.path[request.path.index("/v3/"):]
        path_q = path + ("?" + request.query_string if request.query_string else "")
        msg = crypto.request_message(request.method, path_q, fields["timestamp"], fields["nonce_str"], request.body)
        if not crypto.rsa_verify(st.keys.merchant_public_key_pem, msg, fields["signature"]):
            return pay_error(401, "SIGN_ERROR", "签名错误 (sandbox)")
        return None

    @bp.post("/pay/v3/pay/transactions/jsapi")
    async def jsapi(request: Request):
        if (bad := check_merchant(request)) is not None:
            return bad
        b = _json_or_none(request)
        if not isinstance(b, dict):
            return pay_error(400, "PARAM_ERROR", "body is not JSON")
        amount, payer = b.get("amount") or {}, b.get("payer") or {}
        problem = (
            "appid" if b.get("appid") not in st.apps else
            "mchid" if b.get("mchid") != st.keys.mchid else
            "out_trade_no" if not _OUT_TRADE_NO.match(str(b.get("out_trade_no", ""))) else
            "description" if not b.get("description") or len(b["description"]) > 127 else
            "notify_url" if not _notify_url_ok(b.get("notify_url")) else
            "amount.total" if not isinstance(amount.get("total"), int) or amount["total"] <= 0 else
            "amount.currency" if amount.get("currency", "CNY") != "CNY" else
            "payer.openid" if not payer.get("openid") else None)
        if problem:
            return pay_error(400, "PARAM_ERROR", f"参数错误: {problem} (sandbox)")
        expires_at = None
        if b.get("time_expire"):
            try:
                expire = datetime.fromisoformat(b["time_expire"])
            except (TypeError, ValueError):
                expire = None
            if expire is None or expire.tzinfo is None or "T" not in b["time_expire"]:
                # RFC 3339 with its zone, "2026-01-01T10:00:00+08:00": a time without one is refused.
                return pay_error(400, "PARAM_ERROR", "time_expire 格式错误，须为 yyyy-MM-DDTHH:mm:ss+TIMEZONE (sandbox)")
            expires_at = expire.timestamp()
        existing = st.orders.get(b["out_trade_no"])
        if existing is not None:
            if existing["trade_state"] == "SUCCESS":
                return pay_error(400, "ORDERPAID", "该订单已支付 (sandbox)")
            if existing["trade_state"] == "CLOSED":
                return pay_error(400, "ORDERCLOSED", "该订单已关闭 (sandbox)")
            if (existing["amount_total"], existing["openid"], existing["appid"]) != (
                    amount["total"], payer["openid"], b["appid"]):
                return pay_error(400, "INVALID_REQUEST", "201 商户订单号重复 (sandbox)")
            return signed(200, {"prepay_id": existing["prepay_id"]})
        order = {"appid": b["appid"], "mchid": b["mchid"], "out_trade_no": b["out_trade_no"],
                 "description": b["description"], "notify_url": b["notify_url"], "attach": b.get("attach", ""),
                 "amount_total": amount["total"], "openid": payer["openid"], "expires_at": expires_at,
                 "prepay_id": f"wx{datetime.now(CHINA_TZ):%d%H%M%S}{secrets.token_hex(12)}",
                 "trade_state": "NOTPAY", "trade_state_desc": "订单未支付", "created_at": _now_rfc3339(),
                 "notification_id": str(uuid.uuid4())}
        st.orders[b["out_trade_no"]] = order
        return signed(200, {"prepay_id": order["prepay_id"]})

    @bp.get("/pay/v3/pay/transactions/out-trade-no/<out_trade_no:str>")
    async def query_order(request: Request, out_trade_no: str):
        if (bad := check_merchant(request)) is not None:
            return bad
        if request.args.get("mchid") != st.keys.mchid:
            return pay_error(400, "PARAM_ERROR", "mchid 参数错误 (sandbox)")
        order = st.orders.get(out_trade_no)
        if order is None:
            return pay_error(404, "ORDER_NOT_EXIST", "订单不存在 (sandbox)")
        return signed(200, _transaction_view(order))

    @bp.get("/pay/v3/pay/transactions/id/<transaction_id:str>")
    async def query_by_id(request: Request, transaction_id: str):
        if (bad := check_merchant(request)) is not None:
            return bad
        for order in st.orders.values():
            if order.get("transaction_id") == transaction_id:
                return signed(200, _transaction_view(order))
        return pay_error(404, "ORDER_NOT_EXIST", "订单不存在 (sandbox)")

    @bp.post("/pay/v3/pay/transactions/out-trade-no/<out_trade_no:str>/close")
    async def close_order(request: Request, out_trade_no: str):
        if (bad := check_merchant(request)) is not None:
            return bad
        order = st.orders.get(out_trade_no)
        if order is None:
            return pay_error(404, "ORDER_NOT_EXIST", "订单不存在 (sandbox)")
        if order["trade_state"] == "SUCCESS":
            return pay_error(400, "ORDERPAID", "该订单已支付 (sandbox)")
        order.update(trade_state="CLOSED", trade_state_desc="已关闭")
        return signed(204)

    @bp.get("/pay/v3/certificates")
    async def certificates(request: Request):
        """The platform certificates, encrypted with the API v3 key (merchants that have not moved
        to the 微信支付公钥 download them; a merchant on the public key alone has none)."""
        if (bad := check_merchant(request)) is not None:
            return bad
        st.certificate_calls += 1
        if st.keys.platform_key == "public_key":
            return pay_error(404, "NOT_FOUND", "商户未申请平台证书，请使用微信支付公钥 (sandbox)")
        nonce12 = crypto.nonce(12)
        start, end = crypto.certificate_validity(st.keys.platform_cert_pem)
        return signed(200, {"data": [{
            "serial_no": st.keys.platform_cert_serial,
            "effective_time": datetime.fromtimestamp(start, CHINA_TZ).isoformat(timespec="seconds"),
            "expire_time": datetime.fromtimestamp(end, CHINA_TZ).isoformat(timespec="seconds"),
            "encrypt_certificate": {"algorithm": "AEAD_AES_256_GCM", "nonce": nonce12, "associated_data": "certificate",
                                    "ciphertext": crypto.aes_gcm_encrypt(st.keys.apiv3_key, nonce12,
                                                                         st.keys.platform_cert_pem.encode(), "certificate")},
        }]})

    @bp.post("/pay/v3/fund-app/mch-transfer/transfer-bills")
    async def create_bill(request: Request):
        if (bad := check_merchant(request)) is not None:
            return bad
        b = _json_or_none(request)
        if not isinstance(b, dict):
            return pay_error(400, "PARAM_ERROR", "body is not JSON")
        if st.transfer_refusal is not None:
            return pay_error(*st.transfer_refusal)
        amount = b.get("transfer_amount")
        problem = (
            "appid" if b.get("appid") not in st.apps else
            "out_bill_no" if not _OUT_BILL_NO.match(str(b.get("out_bill_no", ""))) else
            "transfer_scene_id" if not b.get("transfer_scene_id") else
            "openid" if not b.get("openid") else
            "transfer_amount" if not isinstance(amount, int) or amount <= 0 else
            "transfer_remark" if not b.get("transfer_remark") or len(b["transfer_remark"]) > 32 else
            "notify_url" if "notify_url" in b and not _notify_url_ok(b["notify_url"]) else
            "transfer_scene_report_infos" if not b.get("transfer_scene_report_infos") else None)
        if problem:
            return pay_error(400, "PARAM_ERROR", f"参数错误: {problem} (sandbox)")
        if amount >= 200_000 and not b.get("user_name"):
            return pay_error(400, "PARAM_ERROR", "转账金额 >= 2000 元时必须填写 user_name (sandbox)")
        real_name = None
        if b.get("user_name"):
            if amount < 30:
                return pay_error(400, "PARAM_ERROR", "0.3元以下不允许输入姓名校验 (sandbox)")
            # The name is encrypted with the WeChat key that Wechatpay-Serial names.
            key = st.keys.decryption_key(request.headers.get("wechatpay-serial", ""))
            if key is None:
                return pay_error(400, "PARAM_ERROR", "Wechatpay-Serial 与加密公钥不匹配 (sandbox)")
            try:
                real_name = crypto.rsa_oaep_decrypt(key, b["user_name"])
            except ValueError:
                return pay_error(400, "PARAM_ERROR", "user_name 解密失败 (sandbox)")
        same = ("appid", "openid", "transfer_amount", "transfer_remark", "transfer_scene_id")
        existing = st.transfers.get(b["out_bill_no"])
        if existing is not None:
            if any(existing[k] != b.get(k) for k in same) or existing.get("real_name") != real_name:
                return pay_error(400, "INVALID_REQUEST", "商户单号重复且参数不一致 (sandbox)")
            if existing["state"] in ("ACCEPTED", "PROCESSING") and existing["script"]:
                existing.update(state=existing["script"].pop(0), update_time=_now_rfc3339())  # 原单重试
            return signed(200, _bill_created_view(existing))
        if st.merchant_balance_fen is not None and amount > st.merchant_balance_fen:
            return pay_error(403, "NOT_ENOUGH", "商户运营账户资金不足 (sandbox)")
        script = list(st.transfer_script or ["WAIT_USER_CONFIRM"])
        bill = {"mch_id": st.keys.mchid, "appid": b["appid"], "out_bill_no": b["out_bill_no"],
                "transfer_bill_no": f"1330000{int(time.time())}{secrets.randbelow(10**8):08d}",
                "openid": b["openid"], "transfer_amount": amount, "transfer_remark": b["transfer_remark"],
                "transfer_scene_id": b["transfer_scene_id"], "notify_url": b.get("notify_url", ""),
                "real_name": real_name, "state": script.pop(0), "script": script,
                "package_info": "sandbox_" + secrets.token_urlsafe(24),
                "create_time": _now_rfc3339(), "update_time": _now_rfc3339()}
        st.transfers[bill["out_bill_no"]] = bill
        return signed(200, _bill_created_view(bill))

    @bp.get("/pay/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/<out_bill_no:str>")
    async def query_bill(request: Request, out_bill_no: str):
        if (bad := check_merchant(request)) is not None:
            return bad
        bill = st.transfers.get(out_bill_no)
        return signed(200, _bill_view(bill)) if bill else pay_error(404, "NOT_FOUND", "记录不存在 (sandbox)")

    @bp.get("/pay/v3/fund-app/mch-transfer/transfer-bills/transfer-bill-no/<transfer_bill_no:str>")
    async def query_bill_by_id(request: Request, transfer_bill_no: str):
        if (bad := check_merchant(request)) is not None:
            return bad
        for bill in st.transfers.values():
            if bill["transfer_bill_no"] == transfer_bill_no:
                return signed(200, _bill_view(bill))
        return pay_error(404, "NOT_FOUND", "记录不存在 (sandbox)")

    @bp.post("/pay/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/<out_bill_no:str>/cancel")
    async def cancel_bill(request: Request, out_bill_no: str):
        """撤销转账: no request body. Answers CANCELING; CANCELLED (final, notified) comes later."""
        if (bad := check_merchant(request)) is not None:
            return bad
        if request.body:
            return pay_error(400, "PARAM_ERROR", "撤销转账接口无请求体 (sandbox)")
        bill = st.transfers.get(out_bill_no)
        if bill is None:
            return pay_error(404, "NOT_FOUND", "记录不存在 (sandbox)")
        if bill["state"] not in ("ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM", "CANCELING"):
            return pay_error(400, "INVALID_REQUEST", f"单据状态为 {bill['state']}，不可撤销 (sandbox)")
        if bill["state"] != "CANCELING":
            bill.update(state="CANCELING", update_time=_now_rfc3339())
            if st.cancel_delay_s is not None:
                timer = asyncio.create_task(st._finish_cancel_later(out_bill_no, st.cancel_delay_s))
                st._timers.add(timer)
                timer.add_done_callback(st._timers.discard)
        return signed(200, {"out_bill_no": bill["out_bill_no"], "transfer_bill_no": bill["transfer_bill_no"],
                            "state": bill["state"], "update_time": bill["update_time"]})

    # -- simulation endpoints (the "user" side) ---------------------------------------------------
    @bp.post("/pay/_simulate/pay")
    async def simulate_pay(request: Request):
        args, from_form = _sim_args(request)
        try:
            order, delivery = await st.simulate_pay(str(args.get("out_trade_no", "")))
        except LookupError:
            return json_response({"error": "ORDER_NOT_EXIST"}, status=404)
        except ValueError as exc:
            return json_response({"error": "INVALID_STATE", "message": str(exc)}, status=409)
        if from_form:
            return redirect(prefix + "/")
        result = {"out_trade_no": order["out_trade_no"], "transaction_id": order["transaction_id"],
                  "trade_state": order["trade_state"]}
        if args.get("wait"):
            result["notification"] = await asyncio.wait_for(asyncio.shield(delivery.first_attempt), 15)
        return json_response(result)

    @bp.post("/pay/_simulate/confirm_transfer")
    async def simulate_confirm(request: Request):
        args, from_form = _sim_args(request)
        try:
            bill, delivery = await st.confirm_transfer(str(args.get("out_bill_no", "")),
                                                       str(args.get("result") or "SUCCESS"), args.get("fail_reason"))
        except LookupError:
            return json_response({"error": "NOT_FOUND"}, status=404)
        except ValueError as exc:
            return json_response({"error": "INVALID_STATE", "message": str(exc)}, status=409)
        if from_form:
            return redirect(prefix + "/")
        result = {"out_bill_no": bill["out_bill_no"], "state": bill["state"]}
        if args.get("wait"):
            result["notification"] = await asyncio.wait_for(asyncio.shield(delivery.first_attempt), 15)
        return json_response(result)

    @bp.get("/_inspect")
    async def inspect(request: Request):
        return json_response(st.inspect())

    @bp.get("/", strict_slashes=False)
    async def page(request: Request):
        return html_response(_render_page(st, prefix))

    from wechat import sandbox_bills  # the daily trade and fund-flow bills, built from the state above

    sandbox_bills.add_routes(bp, st, signed, pay_error, check_merchant, prefix)
    return bp


# ---- helpers ---------------------------------------------------------------------------------

def sandbox_code_png(scene: str, page: str, modules: int = 25, scale: int = 12) -> bytes:
    """A PNG that stands in for a Mini Program code: a square of modules drawn from a hash of the
    scene and page (the same input always gives the same image), with three finder squares."""
    import struct
    import zlib

    bits = "".join(f"{b:08b}" for b in hashlib.sha256(f"{scene}|{page}".encode()).digest() * 3)

    def dark(x: int, y: int) -> bool:
        for fx, fy in ((0, 0), (modules - 7, 0), (0, modules - 7)):
            if fx <= x < fx + 7 and fy <= y < fy + 7:
                dx, dy = x - fx, y - fy
                return dx in (0, 6) or dy in (0, 6) or (2 <= dx <= 4 and 2 <= dy <= 4)
        return bits[(y * modules + x) % len(bits)] == "1"

    size = modules * scale
    rows = []
    for y in range(size):
        row = bytearray([0])
        for x in range(size):
            row.append(0 if dark(x // scale, y // scale) else 255)
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


def _wx_error(errcode: int, errmsg: str) -> HTTPResponse:
    return json_response({"errcode": errcode, "errmsg": f"{errmsg} (sandbox) rid: {secrets.token_hex(4)}"})


def _notify_url_ok(url: Any) -> bool:
    """WeChat Pay accepts only https:// notify URLs, without a query string. The sandbox also takes
    http:// to this machine or a private network (there is no certificate on a development box);
    anything else over http:// is refused as WeChat refuses it."""
    import ipaddress
    from urllib.parse import urlsplit

    if not isinstance(url, str) or len(url) > 256:
        return False
    parts = urlsplit(url)
    if parts.query or not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if parts.hostname == "localhost":
        return True
    try:
        address = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return False
    return address.is_loopback or address.is_private


def _json_or_none(request: Request) -> Any:
    try:
        return json.loads(request.body or b"null")
    except ValueError:
        return None


def _sim_args(request: Request) -> tuple[dict[str, Any], bool]:
    if request.content_type.startswith("application/x-www-form-urlencoded"):
        return {k: v[0] for k, v in request.form.items()}, True
    body = _json_or_none(request)
    return (body if isinstance(body, dict) else {}), False


def _now_rfc3339() -> str:
    return datetime.now(CHINA_TZ).isoformat(timespec="seconds")


def _b64hash(text: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).decode().rstrip("=").replace("-", "x").replace("_", "y")


def _transaction_view(o: dict[str, Any]) -> dict[str, Any]:
    """The transaction object of the query API and of the TRANSACTION.SUCCESS resource."""
    view = {"appid": o["appid"], "mchid": o["mchid"], "out_trade_no": o["out_trade_no"],
            "trade_type": "JSAPI", "trade_state": o["trade_state"], "trade_state_desc": o["trade_state_desc"],
            "attach": o.get("attach", ""), "payer": {"openid": o["openid"]},
            "amount": {"total": o["amount_total"], "currency": "CNY"}}
    if o["trade_state"] == "SUCCESS":
        view.update(transaction_id=o["transaction_id"], bank_type=o["bank_type"], success_time=o["success_time"])
        view["amount"].update(payer_total=o["amount_total"], payer_currency="CNY")
    return view


def _bill_created_view(b: dict[str, Any]) -> dict[str, Any]:
    view = {k: b[k] for k in ("out_bill_no", "transfer_bill_no", "create_time", "state")}
    if b["state"] == "WAIT_USER_CONFIRM":
        view["package_info"] = b["package_info"]
    return view


def _bill_view(b: dict[str, Any]) -> dict[str, Any]:
    keys = ("mch_id", "out_bill_no", "transfer_bill_no", "appid", "state", "transfer_amount", "transfer_remark",
            "openid", "create_time", "update_time")
    view = {k: b[k] for k in keys}
    if b.get("fail_reason"):
        view["fail_reason"] = b["fail_reason"]
    return view


def _render_page(st: SandboxState, prefix: str) -> str:
    e = html.escape
    orders = "".join(
        f"<tr><td>{e(o['out_trade_no'])}</td><td>{o['amount_total'] / 100:.2f}</td><td>{e(o['description'])}</td>"
        f"<td>{e(o['trade_state'])}</td><td>"
        + (f"<form method=post action='{e(prefix)}/pay/_simulate/pay'><input type=hidden name=out_trade_no "
           f"value='{e(o['out_trade_no'])}'><button>Pay</button></form>" if o["trade_state"] == "NOTPAY" else "")
        + "</td></tr>" for o in reversed(list(st.orders.values())))
    bills = "".join(
        f"<tr><td>{e(b['out_bill_no'])}</td><td>{b['transfer_amount'] / 100:.2f}</td><td>{e(b['transfer_remark'])}</td>"
        f"<td>{e(b['state'])}</td><td>"
        + ("".join(f"<form method=post action='{e(prefix)}/pay/_simulate/confirm_transfer' style='display:inline'>"
                   f"<input type=hidden name=out_bill_no value='{e(b['out_bill_no'])}'>"
                   f"<input type=hidden name=result value={r}><button>{label}</button></form>"
                   for r, label in (("SUCCESS", "Confirm (receive)"), ("FAIL", "Fail")))
           if b["state"] == "WAIT_USER_CONFIRM" else "")
        + "</td></tr>" for b in reversed(list(st.transfers.values())))
    msgs = "".join(
        f"<tr><td>{e(m['at'])}</td><td>{e(m['touser'])}</td><td>{e(m['template_id'])}</td><td>{e(str(m['page']))}</td>"
        f"<td><code>{e(json.dumps(m['data'], ensure_ascii=False))}</code></td></tr>" for m in reversed(st.messages[-50:]))
    deliveries = "".join(
        f"<tr><td>{e(d.event_type)}</td><td>{e(d.key)}</td><td>{e(d.url)}</td><td>{'yes' if d.delivered else 'no'}</td>"
        f"<td>{len(d.attempts)}</td></tr>" for d in reversed(st.deliveries[-50:]))
    return f"""<!doctype html><html><head><meta charset=utf-8><title>WeChat SANDBOX</title>
<style>body{{font-family:sans-serif;margin:1.5em}} .banner{{background:#c00;color:#fff;padding:.6em;font-weight:bold}}
table{{border-collapse:collapse;margin-bottom:1.5em}} td,th{{border:1px solid #ccc;padding:.3em .6em}}</style></head>
<body><div class=banner>WECHAT SANDBOX — not WeChat. Fake users, fake money, state in memory of this process only.</div>
<h2>Payments (prepay orders)</h2><table><tr><th>out_trade_no</th><th>yuan</th><th>description</th><th>state</th><th></th></tr>{orders}</table>
<h2>Merchant transfers (payouts)</h2><table><tr><th>out_bill_no</th><th>yuan</th><th>remark</th><th>state</th><th></th></tr>{bills}</table>
<h2>Subscription messages sent</h2><table><tr><th>at</th><th>touser</th><th>template</th><th>page</th><th>data</th></tr>{msgs}</table>
<h2>Notification deliveries</h2><table><tr><th>event</th><th>key</th><th>url</th><th>delivered</th><th>attempts</th></tr>{deliveries}</table>
<p>Login codes: "alice-1" logs in as alice (openid per AppID); "invalid" → 40029, "used" → 40163, "busy" → -1, "ratelimit" → 45011.
 <a href="{e(prefix)}/_inspect">JSON state</a></p></body></html>"""
