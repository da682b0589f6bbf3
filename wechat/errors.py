"""Typed outcomes of talking to WeChat, so callers branch on classes, not on numbers.

Two families, because the two APIs report failure differently:
- Mini Program server APIs answer ``{"errcode", "errmsg"}``  -> ``WeChatError`` and subclasses.
- WeChat Pay v3 answers HTTP status + ``{"code", "message"}`` -> ``PayError`` and subclasses.

``retryable`` tells an outbox drainer or a sweeper whether trying again later can help.
"""

from __future__ import annotations


class WeChatIntegrationError(Exception):
    """Base of everything raised by the wechat package."""

    retryable = False


# ---- Mini Program server APIs ----------------------------------------------------------------

class WeChatError(WeChatIntegrationError):
    """A non-zero errcode not covered by a subclass below (or an unreadable answer)."""

    def __init__(self, errcode: int | None, errmsg: str):
        super().__init__(f"WeChat error {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg


class InvalidCode(WeChatError):
    """40029 / 40163: the wx.login code is wrong, expired or used. The client should log in again."""


class Retryable(WeChatError):
    """45011 rate limit, -1 system busy, timeouts and connection failures: try again later."""

    retryable = True


class UserRefused(WeChatError):
    """43101: the user did not subscribe (or used up the one-time quota). Record it; never retry."""


class AccessTokenInvalid(WeChatError):
    """40001 / 42001 / 40014: the access token was rejected (handled internally by one refresh)."""


# ---- WeChat Pay API v3 ----------------------------------------------------------------------

class PayError(WeChatIntegrationError):
    """Base of WeChat Pay failures."""


class PayApiError(PayError):
    """WeChat Pay answered an error status with ``{"code", "message"}``.

    ``retryable`` is true for 5xx and the codes WeChat documents as transient; a 4xx business code
    (``ORDERPAID``, ``NOT_ENOUGH``, ``PARAM_ERROR`` ...) will fail the same way again.
    """

    TRANSIENT_CODES = frozenset({"SYSTEM_ERROR", "SYSTEMERROR", "FREQUENCY_LIMITED", "FREQUENCY_LIMIT_EXCEED",
                                 "BANKERROR", "RATELIMIT_EXCEEDED"})

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"WeChat Pay {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status >= 500 or self.status == 429 or self.code in self.TRANSIENT_CODES


class PayRetryableError(PayError):
    """The request may or may not have reached WeChat (timeout, connection reset). Safe to repeat
    with the same out_trade_no / out_bill_no, which WeChat treats idempotently."""

    retryable = True


class PayTimeout(PayRetryableError):
    pass


class PayConnectionError(PayRetryableError):
    pass


class BadSignature(PayError):
    """A response or notification whose WeChat signature does not verify (or is a SIGNTEST probe)."""


class StaleNotification(PayError):
    """A notification whose Wechatpay-Timestamp is more than 5 minutes away from now (replay guard)."""


class BadPayload(PayError):
    """A notification that verifies but cannot be decrypted or parsed."""
