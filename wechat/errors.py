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


class QuotaExhausted(WeChatError):
    """45009: the AppID used up this API's daily quota. Nothing helps until the quota resets at
    midnight (Beijing time), so it is not retryable; the client stops calling that API until then."""


class TemplateDataInvalid(WeChatError):
    """A subscription message that WeChat would refuse with 47003 (an empty value, a value that
    breaks its keyword's rule, a field naming a value the payload lacks). Found before sending;
    sending it again cannot help."""


# ---- WeChat Pay API v3 ----------------------------------------------------------------------

class PayError(WeChatIntegrationError):
    """Base of WeChat Pay failures."""


class PayApiError(PayError):
    """WeChat Pay answered an error status with ``{"code", "message"}``.

    ``retryable`` is true for 5xx and the codes WeChat documents as transient; a 4xx business code
    (``ORDERPAID``, ``NOT_ENOUGH``, ``PARAM_ERROR`` ...) will fail the same way again.
    """

    # API v3's transient codes: "系统异常，请使用相同参数稍后重新调用" (SYSTEM_ERROR), the bank's side
    # (BANK_ERROR), rate limits. Anything else with a 4xx is WeChat's definite answer for this request.
    TRANSIENT_CODES = frozenset({"SYSTEM_ERROR", "BANK_ERROR", "FREQUENCY_LIMITED", "FREQUENCY_LIMIT_EXCEED",
                                 "RATELIMIT_EXCEEDED"})

    # "No such order / bill", in every spelling the v3 APIs use: ORDER_NOT_EXIST (payments),
    # ORDERNOTEXIST (the older documented spelling), NOT_FOUND (transfer bills). Judged by the code,
    # never by a bare 404 status: a wrong pay_base also answers 404, and believing it would close
    # recharges that were paid.
    NOT_FOUND_CODES = frozenset({"ORDER_NOT_EXIST", "ORDERNOTEXIST", "NOT_FOUND", "RESOURCE_NOT_EXISTS"})

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"WeChat Pay {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status >= 500 or self.status == 429 or self.code in self.TRANSIENT_CODES

    @property
    def not_found(self) -> bool:
        return self.code in self.NOT_FOUND_CODES


class PayRetryableError(PayError):
    """The request may or may not have reached WeChat (timeout, connection reset). Safe to repeat
    with the same out_trade_no / out_bill_no, which WeChat treats idempotently."""

    retryable = True


class PayTimeout(PayRetryableError):
    pass


class PayConnectionError(PayRetryableError):
    pass


class StaleResponse(PayRetryableError):
    """An answer whose Wechatpay-Timestamp is more than 5 minutes away from now: not believed (it
    may be a replay). The request may have taken effect, so it is repeated later, as after a timeout."""


class BadSignature(PayError):
    """A response or notification whose WeChat signature does not verify (or is a SIGNTEST probe)."""


class StaleNotification(PayError):
    """A notification whose Wechatpay-Timestamp is more than 5 minutes away from now (replay guard)."""


class BadPayload(PayError):
    """A notification that verifies but cannot be decrypted or parsed."""
