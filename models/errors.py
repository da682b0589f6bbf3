"""Typed domain errors: one class per failure, each with a stable `code` and the HTTP status it maps to.

The domain raises these and knows nothing of HTTP; `server/errors.py` renders any of them as
`{"error": {"code", "message", "details"?}}` with `status`. A losing or invalid call raises before its
transaction commits, so it changes nothing.

People read Chinese (SPEC §9): every error carries its message in English (`message`) and in
Chinese (`message_zh`), as templates over its `details`. The renderer picks one by the request's
`Accept-Language` (Chinese by default). In a message, a detail named `*_fen` is shown in yuan
(`¥10.00`); the detail itself stays an integer number of fen for programs. A raise site that says
more than the class's own message passes both texts: `InvalidInput("...", zh="...", field=...)`
(a test checks every raise site does).

Each class also declares what a client should know: `hint` (what it means, what to do) and
`details_schema` (the JSON Schema of its `details`). The error catalog (`models/error_catalog.py`,
`GET /api/v1/errors`, `docs/errors.json`) is generated from these classes, so it cannot drift.
"""

from __future__ import annotations

import string
from typing import Any

LANGS = ("zh-CN", "en")
DEFAULT_LANG = "zh-CN"

# Words a Chinese message shows for values the domain names in English (states and actions).
ZH_WORDS = {
    "in_progress": "进行中", "awaiting_review": "待审核", "rejected": "已驳回", "appealing": "申诉中",
    "completed": "已完成", "failed": "已失败", "abandoned": "已放弃", "open": "可接单", "full": "已接满",
    "expired": "已过期", "cancelled": "已取消", "finished": "已结束", "pending": "待处理", "paying": "打款中",
    "paid": "已打款", "closed": "已关闭",
    "submit": "提交", "abandon": "放弃", "approve": "通过", "reject": "驳回", "accept_rejection": "接受驳回",
    "appeal": "申诉", "arbitrate_worker": "仲裁", "arbitrate_publisher": "仲裁", "countdown_end": "倒计时结束",
    "review_timeout": "审核超时", "appeal_timeout": "申诉超时", "take": "接单",
    "worker": "接单端", "publisher": "发单端",
}


def yuan(fen: int) -> str:
    """Integer fen as people read it: ¥1,234.50 (negative: -¥3.00)."""
    sign = "-" if fen < 0 else ""
    fen = abs(int(fen))
    return f"{sign}¥{fen // 100:,}.{fen % 100:02d}"


class _Values(dict):
    """Template values: `*_fen` integers in yuan, states in the reader's language, unknown names kept."""

    def __init__(self, details: dict[str, Any], lang: str) -> None:
        super().__init__(details)
        self.lang = lang

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key) if key in self else self.__missing__(key)
        if key.endswith("_fen") and isinstance(value, int) and not isinstance(value, bool):
            return yuan(value)
        if self.lang != "en" and isinstance(value, str) and value in ZH_WORDS:
            return ZH_WORDS[value]
        return value


def render(template: str, details: dict[str, Any], lang: str) -> str:
    return string.Formatter().vformat(template, (), _Values(details, lang))


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


class DomainError(Exception):
    code = "error"
    status = 400
    message = "The request could not be completed."
    message_zh = "请求未能完成。"
    hint = "A generic refusal; the message says why."
    details_schema: dict[str, Any] = {}  # property name -> JSON Schema of that detail

    def __init__(self, message: str | None = None, *, zh: str | None = None, **details: Any) -> None:
        # `message`/`zh` are templates over `details` ({min_fen} shows as ¥1.00).
        self.template_en = message or type(self).message
        self.template_zh = zh or type(self).message_zh  # a raise site's own text always comes with zh=
        self.details = details
        self.message = render(self.template_en, details, "en")
        super().__init__(self.message)

    def text(self, lang: str = DEFAULT_LANG) -> str:
        return render(self.template_en if lang == "en" else self.template_zh, self.details, lang)

    def to_dict(self, lang: str = DEFAULT_LANG) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.text(lang)}
        if self.details:
            body["details"] = _localized(self.details, lang)
        return body


class Text:
    """A detail shown to people in either language (e.g. the reason for one bad field)."""

    def __init__(self, en: str, zh: str, **values: Any) -> None:
        self.en, self.zh, self.values = en, zh, values

    def render(self, lang: str) -> str:
        return render(self.en if lang == "en" else self.zh, self.values, lang)

    def __str__(self) -> str:
        return self.render("en")

    def __repr__(self) -> str:
        return f"Text({self.render('en')!r})"

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other) if isinstance(other, (str, Text)) else NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))


def _localized(value: Any, lang: str) -> Any:
    if isinstance(value, Text):
        return value.render(lang)
    if isinstance(value, dict):
        return {k: _localized(v, lang) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_localized(v, lang) for v in value]
    return value


_FIELDS = {"fields": {"type": "object", "additionalProperties": {"type": "string"},
                      "description": "field name → what is wrong with it"}}
_STATUS = {"status": {"type": "string", "description": "the state the object is in now"}}
_RANGE = {"min_fen": {"type": "integer"}, "max_fen": {"type": "integer"}}


# --- 400: the request itself is wrong -------------------------------------------------------------
class InvalidInput(DomainError):
    """Bad input, always as `details.fields = {field: reason}`: one shape for every raise (issue 17,
    item 13). Give `fields=` for several (reasons already worded), `field=` for one (its reason is
    the message), or neither when the whole body is wrong (field "body"). Other keywords (`max_len`,
    `low`, `high`, `character`, `where`, ...) are values for the message's template only."""

    code, status = "invalid_input", 400
    message, message_zh = "The input is not valid.", "输入无效。"
    hint = "A field is missing, of the wrong type or out of range: details.fields names each one and what is wrong with it."
    details_schema = {"fields": {**_FIELDS["fields"], "minProperties": 1,
                                 "description": "field name → what is wrong with it, in the reader's language; \"body\" for the whole body"}}

    def __init__(self, message: str | None = None, *, zh: str | None = None, field: str | None = None,
                 fields: dict[str, Any] | None = None, **values: Any) -> None:
        if field is not None:
            values["field"] = field
        super().__init__(message, zh=zh, **values)
        self.values = self.details  # what the templates read
        reason = Text(self.template_en, self.template_zh, **self.values)
        self.details = {"fields": dict(fields) if fields else {field or "body": reason}}

    def text(self, lang: str = DEFAULT_LANG) -> str:
        return render(self.template_en if lang == "en" else self.template_zh, self.values, lang)


class InvalidSettings(DomainError):
    code, status = "invalid_settings", 400
    message, message_zh = "These settings are not valid.", "这些设置无效。"
    hint = "Admin panel only: the market settings were refused (details.fields says why)."
    details_schema = _FIELDS


class InsufficientBalance(DomainError):
    code, status = "insufficient_balance", 400
    message, message_zh = "The available balance is not enough.", "可用余额不足。"
    hint = "Recharge first (publisher), or ask for less."
    details_schema = {"account": {"type": "string", "enum": ["available", "withdrawing"], "description": "the balance that is short"}}


class PriceOutOfRange(DomainError):
    code, status = "price_out_of_range", 400
    message = "The unit price must be between {min_fen} and {max_fen}."
    message_zh = "单价必须在 {min_fen} 到 {max_fen} 之间。"
    hint = "The unit price is outside the market's range (GET /config: min/max_unit_price_fen)."
    details_schema = _RANGE


class WithdrawalOutOfRange(DomainError):
    code, status = "withdrawal_out_of_range", 400
    message = "A withdrawal must be between {min_fen} and {max_fen}."
    message_zh = "提现金额必须在 {min_fen} 到 {max_fen} 之间。"
    hint = "Below the minimum withdrawal or above the daily cap (GET /config)."
    details_schema = _RANGE


class DailyWithdrawalCapReached(DomainError):
    code, status = "daily_withdrawal_cap", 400
    message = "This would exceed today's withdrawal cap of {cap_fen}."
    message_zh = "超出今日提现上限 {cap_fen}。"
    hint = "The day's cap (Beijing day) is used up; try a smaller amount or tomorrow."
    details_schema = {"cap_fen": {"type": "integer"}}


class RealNameRequired(DomainError):
    code, status = "real_name_required", 400
    message = "A withdrawal paying {threshold_fen} or more needs the payee's real name (real_name)."
    message_zh = "到账金额达到 {threshold_fen} 的提现需要填写收款人真实姓名（real_name）。"
    hint = ("WeChat Pay needs the payee's real name, as on their WeChat account, for a transfer of ¥2000 or "
            "more (amount minus the fee): ask for it and send the request again with real_name.")
    details_schema = {"threshold_fen": {"type": "integer", "description": "the payout (A − W) from which the name is needed"},
                      "field": {"type": "string", "enum": ["real_name"], "description": "the body field to fill in"}}


class InvalidInviteCode(DomainError):
    code, status = "invalid_invite_code", 400
    message, message_zh = "The invite code is not valid.", "邀请码无效。"
    hint = "Could not set up the account's invite code; log in again."


# --- 401: who is asking is not known (any more) ----------------------------------------------------
class SessionRevoked(DomainError):
    """The session token's version is older than the user's (banned, or logged out everywhere)."""

    code, status = "unauthorized", 401
    message, message_zh = "This session is no longer valid; log in again.", "登录已失效，请重新登录。"
    hint = "No valid session token: log in again (wx.login, then POST /login)."


# --- 403: who is asking may not do this -----------------------------------------------------------
class Forbidden(DomainError):
    code, status = "forbidden", 403
    message, message_zh = "You may not do this.", "你无权执行此操作。"
    hint = "Not allowed for this account."


class UserBanned(DomainError):
    code, status = "user_banned", 403
    message, message_zh = "This account is banned.", "该账号已被封禁。"
    hint = "The account is banned by an operator; show the message and stop."


class OwnTask(DomainError):
    code, status = "own_task", 403
    message, message_zh = "You cannot take your own task.", "不能领取自己发布的任务。"
    hint = "The worker is the same WeChat user as the task's publisher."


class WrongEnd(DomainError):
    code, status = "wrong_end", 403
    message = "This account belongs to the other Mini Program."
    message_zh = "该账号属于另一个小程序。"
    hint = "A worker token on a publisher path or the other way round: each Mini Program has its own account."
    details_schema = {"end": {"type": "string", "enum": ["worker", "publisher"], "description": "the end the path belongs to"}}


# --- 404 ------------------------------------------------------------------------------------------
class NotFound(DomainError):
    code, status = "not_found", 404
    message, message_zh = "Not found.", "未找到。"
    hint = "No such thing, or not yours (another user's things are reported as not found)."


class TaskNotFound(NotFound):
    code, message, message_zh = "task_not_found", "No such task.", "没有这个任务。"
    hint = "No such task, or (publisher) not one of yours."


class OrderNotFound(NotFound):
    code, message, message_zh = "order_not_found", "No such order.", "没有这个订单。"
    hint = "No such order, or not one of yours."


class UserNotFound(NotFound):
    code, message, message_zh = "user_not_found", "No such user.", "没有这个用户。"
    hint = "The account no longer exists."


class WithdrawalNotFound(NotFound):
    code, message, message_zh = "withdrawal_not_found", "No such withdrawal.", "没有这笔提现。"
    hint = "No such withdrawal, or not yours."


class RechargeNotFound(NotFound):
    code, message, message_zh = "recharge_not_found", "No such recharge.", "没有这笔充值。"
    hint = "No such recharge, or not yours."


# --- 409: somebody (or a timer) got there first, or the row is in another state -------------------
class Conflict(DomainError):
    code, status = "conflict", 409
    message = "The request conflicts with the current state."
    message_zh = "请求与当前状态冲突。"
    hint = "Somebody changed the same thing at the same moment; reload and retry."


class InvalidTransition(Conflict):
    code = "invalid_transition"
    message, message_zh = "This action is not allowed in the current state.", "当前状态下不能执行此操作。"
    hint = "The object is in another state (details.status); reload it and show what is possible now."
    details_schema = {**_STATUS, "event": {"type": "string"}}


class SlotTaken(Conflict):
    code = "slot_taken"
    message, message_zh = "Every slot of this task has been taken.", "该任务的名额已被领完。"
    hint = "Another worker was faster; the task leaves the hall."


class SlotsBeingTaken(Conflict):
    code = "slots_being_taken"
    message = "Every slot left is being taken by workers who clicked before you; try again in a moment."
    message_zh = "剩余名额正在被先到的人领取，请稍后再试。"
    hint = ("A flash crowd: as many takes as the task has slots left are ahead of this one. Retry after "
            "Retry-After seconds: a slot is left if one of them fails; else the answer is slot_taken.")

    def __init__(self) -> None:
        super().__init__()
        self.headers = {"Retry-After": "1"}


class TaskClosed(Conflict):
    code = "task_closed"
    message, message_zh = "This task no longer accepts takers.", "该任务已停止接单。"
    hint = "The task expired, was cancelled or finished (details.status)."
    details_schema = _STATUS


class AlreadyTookTask(Conflict):
    code = "already_took_task"
    message, message_zh = "You have already taken this task.", "你已经领取过这个任务。"
    hint = "A worker takes a task at most once, even after abandoning it."


class TooManyOrdersInProgress(Conflict):
    code = "too_many_orders_in_progress"
    message = "Finish an order in progress before taking another (at most {limit} at a time)."
    message_zh = "请先完成进行中的订单再接新单（最多同时 {limit} 单）。"
    hint = "The worker holds the maximum of orders in progress (GET /config: max_orders_in_progress)."
    details_schema = {"limit": {"type": "integer", "description": "orders a worker may hold in progress"}}


class DeadlinePassed(Conflict):
    code = "deadline_passed"
    message, message_zh = "The time for this action has run out.", "此操作的时限已过。"
    hint = "The deadline passed and the timer has been applied; reload the object (details.status)."
    details_schema = {**_STATUS, "event": {"type": "string"}, "deadline_at": {"type": "string", "format": "date-time"}}


class AlreadyDecided(Conflict):
    code = "already_decided"
    message, message_zh = "This has already been decided.", "已经处理过了。"
    hint = "Someone decided first (details.status)."
    details_schema = _STATUS


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"
    message = "This request id was already used for a different request."
    message_zh = "该 request_id 已用于另一个不同的请求。"
    hint = "A request_id was reused with other values: use a new request_id for a new request."


class ProhibitedContent(DomainError):
    code, status = "prohibited_content", 422
    message = "The task contains \"{term}\", which the platform does not allow ({category})."
    message_zh = "任务内容包含平台禁止的“{term}”（{category_zh}），不能发布。"
    hint = ("The title, instructions or attachment text matched a prohibited term (WeChat's rules for Mini Programs: "
            "paid registration or unblocking help, paid votes, induced sharing, gambling, adult content, investment schemes). "
            "Change the task; nothing was charged.")
    details_schema = {
        "field": {"type": "string", "enum": ["title", "instructions", "attachment", "criteria"]},
        "term": {"type": "string"},
        "category": {"type": "string"},
        "category_zh": {"type": "string"},
    }


class AppealsPaused(DomainError):
    code, status = "appeals_paused", 403
    message = "Your last {streak} appeals were all lost: you may appeal again after {until}."
    message_zh = "你最近 {streak} 次申诉均未成功，{until} 之后才能再次申诉。"
    hint = "An automatic rule (worker_losing_streak) pauses appeals after a run of lost ones; the order can still be accepted."
    details_schema = {"streak": {"type": "integer"}, "until": {"type": "string", "format": "date-time"}}


class TaskNotHeld(Conflict):
    code = "task_not_held"
    message, message_zh = "This task is not waiting for a compliance decision.", "该任务不在合规待审队列中。"
    hint = "Another operator decided first, or the task was never held (details.status)."
    details_schema = _STATUS
