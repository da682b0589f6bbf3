"""Async WeChat Pay API v3 client (JSAPI/Mini Program payments and merchant transfers).

Our own ~300 lines on httpx + cryptography rather than a SDK (STACK-NOTES §5): wechatpy has no v3,
wechatpayv3's gateway is a hard-coded attribute, and we want typed errors and a replay window.
``wechatpayv3`` is still used in the tests as an independent oracle for the wire format.

Rules this module keeps:
- Sign the exact bytes sent: the body is serialized once and sent with ``content=``; the signed URL
  is the path + query relative to the gateway ("/v3/..."), never the host.
- Every 2xx answer and every notification is verified before we believe it: with the key its
  ``Wechatpay-Serial`` names — the 微信支付公钥 (``PUB_KEY_ID_...``) or a platform certificate
  downloaded from ``/v3/certificates`` (refreshed twice a day, and when an unknown serial shows up,
  at most once a minute), as wechatpayv3 does — and within ±5 minutes of its timestamp.
- Notifications are decrypted here; deduplication by notification id / transaction id is the
  caller's job (it owns the database).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime
from typing import Any, Mapping
from urllib.parse import quote, urlencode

import httpx

from wechat import crypto
from wechat.config import CHINA_TZ, PayConfig, WeChatConfig
from wechat.errors import (BadPayload, BadSignature, PayApiError, PayConnectionError, PayTimeout,
                           StaleNotification, StaleResponse)

log = logging.getLogger("market.wechat.pay")

NOTIFICATION_MAX_SKEW_S = 300  # WeChat's documented replay window (answers and notifications alike)
CERTIFICATE_REFRESH_S = 12 * 3600  # platform certificates are renewed ahead of expiry: look twice a day
UNKNOWN_SERIAL_REFETCH_S = 60  # an unknown serial downloads certificates at most this often (forged serials cannot make us hammer WeChat)
TRANSFER_REMARK_MAX_CHARS = 32
TRANSFER_USER_NAME_REQUIRED_FEN = 200_000  # 2000 CNY and above: the payee's real name is mandatory

__all__ = ["PayClient", "NOTIFICATION_MAX_SKEW_S"]


class PayClient:
    """One merchant account. Create one per process (it holds an httpx connection pool)."""

    def __init__(self, pay: PayConfig, base_url: str, http: httpx.AsyncClient | None = None, *, clock=time.time):
        self.cfg = pay
        self.base_url = base_url.rstrip("/")
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=pay.timeout_s)
        self._clock = clock
        # Platform certificates: normalized serial -> (certificate PEM, not before, not after).
        self._certs: dict[str, tuple[str, float, float]] = {}
        self._certs_fetched_at: float | None = None
        self._certs_attempted_at = float("-inf")
        self._certs_lock = asyncio.Lock()
        self.certificate_downloads = 0  # how often /v3/certificates was asked (tests, metrics)

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
        serial = None
        if user_name:
            # Sensitive fields are encrypted with WeChat's key, and Wechatpay-Serial names that key.
            serial, key_pem = await self._encryption_key()
            body["user_name"] = crypto.rsa_oaep_encrypt(key_pem, user_name)
        return await self._request("POST", "/v3/fund-app/mch-transfer/transfer-bills", body=body, serial=serial)

    async def query_transfer_bill(self, out_bill_no: str) -> dict[str, Any]:
        """The bill as WeChat sees it. NOT_FOUND (PayApiError.not_found) = never created."""
        return await self._request("GET", f"/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{_seg(out_bill_no)}")

    async def cancel_transfer_bill(self, out_bill_no: str) -> dict[str, Any]:
        """Ask WeChat to cancel a bill the user has not confirmed yet (ACCEPTED / PROCESSING /
        WAIT_USER_CONFIRM). The request has no body. WeChat answers ``state: CANCELING``, which is
        not final: the bill is CANCELLED (final, money never left) only when the notification or a
        query says so."""
        return await self._request(
            "POST", f"/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{_seg(out_bill_no)}/cancel")

    # ---- notifications -------------------------------------------------------------------------
    async def parse_notification(self, headers: Mapping[str, str], raw_body: bytes,
                                 now: float | datetime | None = None) -> dict[str, Any]:
        """Verify, check freshness and decrypt a WeChat Pay callback.

        Returns ``{"id", "event_type", "resource_type", "create_time", "summary", "resource"}`` where
        ``resource`` is the decrypted JSON object (a transaction or a transfer bill). Raises
        BadSignature (including SIGNTEST probes), StaleNotification or BadPayload. Answer WeChat 200/204
        only after the caller has durably recorded the result; anything else makes WeChat retry.
        """
        h = {k.lower(): v for k, v in headers.items()}
        await self._verify(h, raw_body)
        now_s = now.timestamp() if isinstance(now, datetime) else (self._clock() if now is None else float(now))
        if (skew := _skew(h, now_s)) is not None:
            raise StaleNotification(f"notification timestamp is {skew} s away from now")
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

    # ---- WeChat's keys ------------------------------------------------------------------------
    async def refresh_certificates(self) -> int:
        """Download the platform certificates (``GET /v3/certificates``); returns how many are valid.

        The answer is signed like any other, but by a key we may not have yet: it is verified with
        the public key when its serial names it, else with the downloaded certificate of that
        serial — which we can trust because it arrived encrypted with our API v3 key, known only
        to WeChat and us."""
        self._certs_attempted_at = self._clock()
        self.certificate_downloads += 1
        resp = await self._send("GET", "/v3/certificates")
        h = {k.lower(): v for k, v in resp.headers.items()}
        try:
            entries = resp.json()["data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise BadPayload("/v3/certificates: answer is not the certificate list") from exc
        found: dict[str, tuple[str, float, float]] = {}
        now = self._clock()
        for entry in entries or ():
            try:
                enc = entry["encrypt_certificate"]
                pem = crypto.aes_gcm_decrypt(self.cfg.apiv3_key, enc["nonce"], enc["ciphertext"],
                                             enc.get("associated_data") or "").decode()
                serial = crypto.certificate_serial(pem)
                not_before, not_after = crypto.certificate_validity(pem)
            except (crypto.InvalidTag, ValueError, KeyError, TypeError) as exc:
                log.error("a WeChat Pay platform certificate could not be read: %s", exc.__class__.__name__)
                continue
            if serial != crypto.normalize_serial(str(entry.get("serial_no", ""))):
                log.error("platform certificate %s does not match its serial_no; ignored", serial)
                continue
            if not_before <= now <= not_after:
                found[serial] = (pem, not_before, not_after)
        serial = h.get("wechatpay-serial", "")
        key = (self.cfg.public_key_pem if self.cfg.public_key_id and serial == self.cfg.public_key_id
               else found.get(crypto.normalize_serial(serial), (None,))[0])
        self._check_signature(h, resp.content, key)
        if (skew := _skew(h, now)) is not None:
            raise StaleResponse(f"GET /v3/certificates: answer timestamp is {skew} s away from now")
        self._certs = found
        self._certs_fetched_at = now
        return len(found)

    async def _key_for(self, serial: str) -> str | None:
        """The PEM that verifies a message signed under ``serial``, or None if WeChat has no such key."""
        if self.cfg.public_key_id and serial == self.cfg.public_key_id:
            return self.cfg.public_key_pem
        serial = crypto.normalize_serial(serial)
        now = self._clock()
        cert = self._certs.get(serial)
        stale = self._certs_fetched_at is None or now - self._certs_fetched_at > CERTIFICATE_REFRESH_S
        if (cert is None or stale) and now - self._certs_attempted_at >= UNKNOWN_SERIAL_REFETCH_S:
            async with self._certs_lock:  # one download for every caller that saw the same serial
                if self._certs.get(serial) is None or stale:
                    if now - self._certs_attempted_at >= UNKNOWN_SERIAL_REFETCH_S:
                        try:
                            await self.refresh_certificates()
                        except (PayApiError, BadSignature, BadPayload, PayConnectionError, PayTimeout,
                                StaleResponse) as exc:
                            log.warning("platform certificates not refreshed: %s", exc)
            cert = self._certs.get(serial)
        if cert is None or not cert[1] <= now <= cert[2]:
            return None
        return cert[0]

    async def _encryption_key(self) -> tuple[str, str]:
        """(serial, PEM) to encrypt sensitive fields with: the public key, else the newest certificate."""
        if self.cfg.public_key_id:
            return self.cfg.public_key_id, self.cfg.public_key_pem
        if not self._certs or self._certs_fetched_at is None or \
                self._clock() - self._certs_fetched_at > CERTIFICATE_REFRESH_S:
            async with self._certs_lock:
                await self.refresh_certificates()
        if not self._certs:
            raise BadPayload("no valid WeChat Pay platform certificate to encrypt with")
        serial, (pem, _, _) = max(self._certs.items(), key=lambda item: item[1][2])
        return serial, pem

    # ---- plumbing ------------------------------------------------------------------------------
    async def _verify(self, h: Mapping[str, str], raw_body: bytes) -> None:
        """Check a WeChat → merchant message (answer or notification); headers lower-cased."""
        serial = h.get("wechatpay-serial", "")
        key = await self._key_for(serial) if serial else None
        self._check_signature(h, raw_body, key)

    def _check_signature(self, h: Mapping[str, str], raw_body: bytes, key_pem: str | None) -> None:
        try:
            ts, nonce_str, sig, serial = (h["wechatpay-timestamp"], h["wechatpay-nonce"],
                                          h["wechatpay-signature"], h["wechatpay-serial"])
            int(ts)
        except (KeyError, ValueError) as exc:
            raise BadSignature("missing or malformed Wechatpay-* headers") from exc
        if sig.startswith(crypto.SIGNTEST_PREFIX):
            raise BadSignature("WeChat signature probe (WECHATPAY/SIGNTEST/) must not verify")
        if key_pem is None:
            raise BadSignature(f"unknown Wechatpay-Serial {serial!r} (neither our public key id nor a platform certificate)")
        if not crypto.rsa_verify(key_pem, crypto.response_message(ts, nonce_str, raw_body), sig):
            raise BadSignature("Wechatpay-Signature does not verify")

    async def _send(self, method: str, path: str, *, body: dict | None = None, query: dict[str, str] | None = None,
                    serial: str | None = None) -> httpx.Response:
        """Sign and send; a non-2xx answer raises PayApiError. The answer is not verified here."""
        path_q = path + ("?" + urlencode(query) if query else "")
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        ts, nonce_str = str(int(self._clock())), crypto.nonce(32)
        sig = crypto.rsa_sign(self.cfg.private_key_pem, crypto.request_message(method, path_q, ts, nonce_str, raw))
        headers = {
            "Authorization": crypto.authorization_header(self.cfg.mchid, self.cfg.merchant_serial_no, nonce_str, ts, sig),
            "Accept": "application/json",
            "User-Agent": "task-market-wechat/1",
        }
        if serial or self.cfg.public_key_id:  # which WeChat key we expect (and encrypted with, if any)
            headers["Wechatpay-Serial"] = serial or self.cfg.public_key_id
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
        return resp

    async def _request(self, method: str, path: str, *, body: dict | None = None,
                       query: dict[str, str] | None = None, serial: str | None = None) -> dict[str, Any]:
        resp = await self._send(method, path, body=body, query=query, serial=serial)
        h = {k.lower(): v for k, v in resp.headers.items()}
        await self._verify(h, resp.content)
        if (skew := _skew(h, self._clock())) is not None:
            raise StaleResponse(f"{method} {path}: answer timestamp is {skew} s away from now")
        if not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError as exc:
            raise BadPayload(f"{method} {path}: answer is not JSON") from exc


def _skew(h: Mapping[str, str], now_s: float) -> int | None:
    """Seconds between a verified message's timestamp and now, when beyond the ±5 min window."""
    skew = now_s - int(h["wechatpay-timestamp"])
    return round(skew) if abs(skew) > NOTIFICATION_MAX_SKEW_S else None


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
