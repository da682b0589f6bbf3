"""The integration's errors as the API renders them (server/errors.py renders every DomainError),
and the failure answers to WeChat's callbacks."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from models.errors import Conflict, DomainError
from wechat.errors import BadPayload, BadSignature, StaleNotification

log = logging.getLogger("market.wechat")


class InvalidLoginCode(DomainError):
    code, status = "invalid_login_code", 400
    message = "The login code is invalid or expired; call wx.login again."
    message_zh = "登录码无效或已过期，请重新调用 wx.login。"
    hint = "A wx.login code works once, for about 5 minutes: call wx.login() again and retry."


class LoginRefused(DomainError):
    code, status = "login_refused", 403
    message, message_zh = "WeChat refused this login.", "微信拒绝了此次登录。"
    hint = "WeChat flagged the user as high-risk (40226); nothing the app can do."


class WeChatUnavailable(DomainError):
    code, status = "wechat_unavailable", 503
    message, message_zh = "WeChat is not answering right now; try again shortly.", "微信服务暂时无响应，请稍后重试。"
    hint = "WeChat did not answer; retry later with the same request_id."


class RechargeNotPending(Conflict):
    code = "recharge_not_pending"
    message, message_zh = "This recharge is no longer waiting for payment.", "这笔充值已不在待支付状态。"
    hint = "Paid, closed or expired (details.status): start a new recharge with a new request_id."
    details_schema = {"status": {"type": "string"}, "recharge_id": {"type": "integer"}}


class PayoutStillAtWeChat(Conflict):
    """Operators' panel only (never sent to a Mini Program)."""

    code = "payout_still_at_wechat"
    message = "WeChat still holds a transfer bill that may pay this withdrawal; cancel it first."
    message_zh = "微信仍有一笔可能支付这笔提现的转账单，请先撤销。"
    hint = "The held payout's bill is still live at WeChat (details.state): cancel it or wait for its end."
    details_schema = {"state": {"type": "string", "description": "the bill's state at WeChat"}}


def fail_answer(message: str) -> dict[str, str]:
    """What a callback answers when WeChat should try again (with a 4xx/5xx status)."""
    return {"code": "FAIL", "message": message}


async def read_notification(pay, headers: Mapping[str, str], raw_body: bytes,
                            kind: str) -> tuple[dict[str, Any] | None, tuple[int, dict] | None]:
    """(notification, None), or (None, the answer that makes WeChat retry): 401 for a bad signature
    or a SIGNTEST probe, 400 for a stale timestamp (WeChat re-signs every retry, so a retry can pass
    if the delay was in transit) or a resource that does not decrypt."""
    try:
        return await pay.parse_notification(headers, raw_body), None
    except BadSignature as exc:
        log.warning("%s notification refused: %s", kind, exc)
        return None, (401, fail_answer("signature verification failed"))
    except StaleNotification as exc:
        log.warning("%s notification refused: %s", kind, exc)
        return None, (400, fail_answer("timestamp outside the allowed window"))
    except BadPayload as exc:
        log.error("%s notification unreadable: %s", kind, exc)
        return None, (400, fail_answer("resource cannot be decrypted"))
