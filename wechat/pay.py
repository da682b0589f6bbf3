"""Async WeChat Pay API v3 client (JSAPI/Mini Program payments and merchant transfers).

Our own ~300 lines on httpx + cryptography rather than a SDK (STACK-NOTES §5): wechatpy has no v3,
wechatpayv3's gateway is a hard-coded attribute, and we want typed errors and a replay window.
``wechatpayv3`` is still used in the tests as an independent oracle for the wire format.

Rules this module keeps:
- Sign the exact bytes sent: the body is serialized once and sent with ``content=``; the signed URL
  is the path + query relative to the gateway ("/v3/..."), never the host.
- Every 2xx answer is verified against the WeChat Pay public key before we believe it.
- Notifications are verified, checked for freshness (±5 min) and decrypted here; deduplication by
  notification id / transaction id is the caller's job (it owns the database).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, Mapping
from urllib.parse import quote, urlencode

import httpx

from wechat import crypto
from wechat.config import CHINA_TZ, PayConfig, WeChatConfig
from wechat.errors import (BadPayload, BadSignature, PayApiError, PayConnectionError, PayTimeout,
                           StaleNotification)

NOTIFICATION_MAX_SKEW_S = 300  # WeChat's documented replay window
TRANSFER_REMARK_MAX_CHARS = 32
TRANSFER_USER_NAME_REQUIRED_FEN = 200_000  # 2000 CNY and above: real name is mandatory

__all__ = ["PayClient", "NOTIFICATION_MAX_SKEW_S"]


class PayClient:
    """One merchant account. Create one per process (it holds an httpx connection pool)."""

    def __init__(self, pay: PayConfig, base_url: str, http: httpx.AsyncClient | None = None, *, clock=time.time):
        self.cfg = pay
        self.base_url = base_url.rstrip("/")
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=pay.timeout_s)
        self._clock = clock

    @classmethod
    def from_config(cls, cfg: WeChatConfig, http: httpx.AsyncClient | None = None) -> "PayClient":
        return cls(cfg.pay, cfg.pay_base, http)

    async def aclose(self) -> None:
        """Close the HTTP pool (if we created it). Not to be confused with ``close`` (an order)."""
        if self._own_http:
            await self._http.aclose()

    # ---- payments ------------------------------------------------------------------------------
    async def jsapi_prepay(self, appid: str, out_trade_no: str, description: str, amount_fen: int, openid: str,
                           notify_url: str | None = None, time_expire: datetime | None = None,
                           attach: str | None = None) -> str:
        """Create a JSAPI / Mini Program prepayment; returns ``prepay_id`` (valid 2 h on WeChat)."""
        if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
            raise ValueError("amount_fen must be a positive int")
        body: dict[str, Any] = {
            "appid": appid,
            "mchid": self.cfg.mchid,
            "description": description[:127],
            "out_trade_no": out_trade_no,
            "notify_url": notify_url or self.cfg.notify_url,
            "amount": {"total": amount_fen, "currency": "CNY"},
            "payer": {"openid": openid},
        }
        if time_expire is not None:
            body["time_expire"] = _rfc3339(time_expire)
        if attach:
            body["attach"] = attach
        data = await self._request("POST", "/v3/pay/transactions/jsapi", body=body)
        return data["prepay_id"]

    def request_payment_params(self, appid: str, prepay_id: str) -> dict[str, str]:
        """The object the Mini Program passes to ``wx.requestPayment`` (signType RSA)."""
        ts = str(int(self._clock()))
        nonce_str = crypto.nonce(32)
        package = f"prepay_id={prepay_id}"
        pay_sign = crypto.rsa_sign(self.cfg.private_key_pem, f"{appid}\n{ts}\n{nonce_str}\n{package}\n")
        return {"timeStamp": ts, "nonceStr": nonce_str, "package": package, "signType": "RSA", "paySign": pay_sign}

    async def query_by_out_trade_no(self, out_trade_no: str) -> dict[str, Any]:
        """The order as WeChat sees it; ``trade_state`` SUCCESS means paid (use it when no notification came)."""
        return await self._request(
            "GET", f"/v3/pay/transactions/out-trade-no/{_seg(out_trade_no)}", query={"mchid": self.cfg.mchid})

    async def close(self, out_trade_no: str) -> None:
        """Close an unpaid order (so it can no longer be paid). ORDERPAID -> PayApiError."""
        await self._request("POST", f"/v3/pay/transactions/out-trade-no/{_seg(out_trade_no)}/close",
                            body={"mchid": self.cfg.mchid})

    # ---- merchant transfers (商家转账, user-confirm mode) ---------------------------------------
    async def create_transfer_bill(self, appid: str, out_bill_no: str, openid: str, amount_fen: int, remark: str,
                                   notify_url: str | None = None, scene_id: str | None = None,
                                   scene_report_infos: list[tuple[str, str]] | tuple | None = None,
                                   user_name: str | None = None,
                                   user_recv_perception: str | None = None) -> dict[str, Any]:
        """Start a transfer to the user's WeChat balance.

        Returns ``{out_bill_no, transfer_bill_no, create_time, state, package_info}``; with state
        WAIT_USER_CONFIRM the Mini Program must call ``wx.requestMerchantTransfer`` with
        ``package_info``. Repeating the call with the same ``out_bill_no`` is safe.
        """
        if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
            raise ValueError("amount_fen must be a positive int")
        if amount_fen >= TRANSFER_USER_NAME_REQUIRED_FEN and not user_name:
            raise ValueError("transfers of 2000 CNY or more need the user's real name (user_name)")
        infos = scene_report_infos if scene_report_infos is not None else self.cfg.transfer_scene_report_infos
        body: dict[str, Any] = {
            "appid": appid,
            "out_bill_no": out_bill_no,
            "transfer_scene_id": scene_id or self.cfg.transfer_scene_id,
            "openid": openid,
            "transfer_amount": amount_fen,
            "transfer_remark": remark[:TRANSFER_REMARK_MAX_CHARS],
            "notify_url": notify_url or self.cfg.transfer_notify_url,
            "transfer_scene_report_infos": [_report_info(i) for i in infos],
        }
        perception = user_recv_perception or self.cfg.transfer_user_recv_perception
        if perception:
            body["user_recv_perception"] = perception
        if user_name:
            body["user_name"] = crypto.rsa_oaep_encrypt(self.cfg.public_key_pem, user_name)
        return await self._request("POST", "/v3/fund-app/mch-transfer/transfer-bills", body=body)

    async def query_transfer_bill(self, out_bill_no: str) -> dict[str, Any]:
        return await self._request("GET", f"/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{_seg(out_bill_no)}")

    async def cancel_transfer_bill(self, out_bill_no: str) -> dict[str, Any]:
        """Only possible before the user confirmed (ACCEPTED/PROCESSING/WAIT_USER_CONFIRM)."""
        return await self._request(
            "POST", f"/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{_seg(out_bill_no)}/cancel", body={})

    # ---- notifications -------------------------------------------------------------------------
    def parse_notification(self, headers: Mapping[str, str], raw_body: bytes,
                           now: float | datetime | None = None) -> dict[str, Any]:
        """Verify, check freshness and decrypt a WeChat Pay callback.

        Returns ``{"id", "event_type", "resource_type", "create_time", "summary", "resource"}`` where
        ``resource`` is the decrypted JSON object (a transaction or a transfer bill). Raises
        BadSignature (including SIGNTEST probes), StaleNotification or BadPayload. Answer WeChat 200/204
        only after the caller has durably recorded the result; anything else makes WeChat retry.
        """
        h = {k.lower(): v for k, v in headers.items()}
        self._verify(h, raw_body)
        ts = int(h["wechatpay-timestamp"])
        now_s = now.timestamp() if isinstance(now, datetime) else (self._clock() if now is None else float(now))
        if abs(now_s - ts) > NOTIFICATION_MAX_SKEW_S:
            raise StaleNotification(f"notification timestamp {ts} is {int(now_s - ts)} s away from now")
        try:
            envelope = json.loads(raw_body)
            resource = envelope["resource"]
            if resource.get("algorithm") != "AEAD_AES_256_GCM":
                raise BadPayload(f"unsupported algorithm {resource.get('algorithm')!r}")
            plain = crypto.aes_gcm_decrypt(self.cfg.apiv3_key, resource["nonce"], resource["ciphertext"],
                                           resource.get("associated_data") or "")
            decrypted = json.loads(plain)
        except BadPayload:
            raise
        except (crypto.InvalidTag, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadPayload(f"notification cannot be decrypted or parsed: {exc.__class__.__name__}") from exc
        return {
            "id": envelope.get("id"),
            "event_type": envelope.get("event_type"),
            "resource_type": envelope.get("resource_type"),
            "create_time": envelope.get("create_time"),
            "summary": envelope.get("summary"),
            "resource": decrypted,
        }

    # ---- plumbing ------------------------------------------------------------------------------
    def _verify(self, h: Mapping[str, str], raw_body: bytes) -> None:
        """Check a WeChat → merchant message (response or notification); headers lower-cased."""
        try:
            ts, nonce_str, sig, serial = (h["wechatpay-timestamp"], h["wechatpay-nonce"],
                                          h["wechatpay-signature"], h["wechatpay-serial"])
            int(ts)
        except (KeyError, ValueError) as exc:
            raise BadSignature("missing or malformed Wechatpay-* headers") from exc
        if sig.startswith(crypto.SIGNTEST_PREFIX):
            raise BadSignature("WeChat signature probe (WECHATPAY/SIGNTEST/) must not verify")
        if serial != self.cfg.public_key_id:
            raise BadSignature(f"unknown Wechatpay-Serial {serial!r}")
        if not crypto.rsa_verify(self.cfg.public_key_pem, crypto.response_message(ts, nonce_str, raw_body), sig):
            raise BadSignature("Wechatpay-Signature does not verify")

    async def _request(self, method: str, path: str, *, body: dict | None = None,
                       query: dict[str, str] | None = None) -> dict[str, Any]:
        path_q = path + ("?" + urlencode(query) if query else "")
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        ts, nonce_str = str(int(self._clock())), crypto.nonce(32)
        sig = crypto.rsa_sign(self.cfg.private_key_pem, crypto.request_message(method, path_q, ts, nonce_str, raw))
        headers = {
            "Authorization": crypto.authorization_header(self.cfg.mchid, self.cfg.merchant_serial_no, nonce_str, ts, sig),
            "Accept": "application/json",
            "Wechatpay-Serial": self.cfg.public_key_id,
            "User-Agent": "task-market-wechat/1",
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            resp = await self._http.request(method, self.base_url + path_q, content=raw if body is not None else None,
                                            headers=headers)
        except httpx.TimeoutException as exc:
            raise PayTimeout(f"{method} {path}: timed out") from exc
        except httpx.TransportError as exc:
            raise PayConnectionError(f"{method} {path}: {exc.__class__.__name__}") from exc
        if not 200 <= resp.status_code < 300:
            try:
                err = resp.json()
                code, message = str(err.get("code") or f"HTTP_{resp.status_code}"), str(err.get("message") or "")
            except (ValueError, AttributeError):
                code, message = f"HTTP_{resp.status_code}", resp.text[:200]
            raise PayApiError(resp.status_code, code, message)
        self._verify({k.lower(): v for k, v in resp.headers.items()}, resp.content)
        if not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError as exc:
            raise BadPayload(f"{method} {path}: answer is not JSON") from exc


def _seg(value: str) -> str:
    return quote(value, safe="")


def _rfc3339(dt: datetime) -> str:
    if dt.tzinfo is None:
        raise ValueError("time_expire must be timezone-aware")
    return dt.astimezone(CHINA_TZ).isoformat(timespec="seconds")


def _report_info(info: Any) -> dict[str, str]:
    if isinstance(info, Mapping):
        return {"info_type": str(info["info_type"]), "info_content": str(info["info_content"])}
    info_type, info_content = info
    return {"info_type": str(info_type), "info_content": str(info_content)}
