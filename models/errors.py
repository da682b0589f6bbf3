"""Typed domain errors: one class per failure, each with a stable `code` and the HTTP status it maps to.

The domain raises these and knows nothing of HTTP; `server/errors.py` renders any of them as
`{"error": {"code", "message"}}` with `status`. A losing or invalid call raises before its
transaction commits, so it changes nothing.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"
    status = 400
    message = "The request could not be completed."

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or self.message
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


# --- 400: the request itself is wrong -------------------------------------------------------------
class InvalidInput(DomainError):
    code, status, message = "invalid_input", 400, "The input is not valid."


class InvalidSettings(DomainError):
    code, status, message = "invalid_settings", 400, "These settings are not valid."


class InsufficientBalance(DomainError):
    code, status, message = "insufficient_balance", 400, "The available balance is not enough."


class PriceOutOfRange(DomainError):
    code, status, message = "price_out_of_range", 400, "The unit price is outside the allowed range."


class WithdrawalOutOfRange(DomainError):
    code, status, message = "withdrawal_out_of_range", 400, "The withdrawal amount is not allowed."


class DailyWithdrawalCapReached(DomainError):
    code, status, message = "daily_withdrawal_cap", 400, "This would exceed today's withdrawal cap."


class InvalidInviteCode(DomainError):
    code, status, message = "invalid_invite_code", 400, "The invite code is not valid."


# --- 401: who is asking is not known (any more) ----------------------------------------------------
class SessionRevoked(DomainError):
    """The session token's version is older than the user's (banned, or logged out everywhere)."""

    code, status, message = "unauthorized", 401, "This session is no longer valid; log in again."


# --- 403: who is asking may not do this -----------------------------------------------------------
class Forbidden(DomainError):
    code, status, message = "forbidden", 403, "You may not do this."


class UserBanned(DomainError):
    code, status, message = "user_banned", 403, "This account is banned."


class OwnTask(DomainError):
    code, status, message = "own_task", 403, "You cannot take your own task."


class WrongEnd(DomainError):
    code, status, message = "wrong_end", 403, "This account belongs to the other Mini Program."


# --- 404 ------------------------------------------------------------------------------------------
class NotFound(DomainError):
    code, status, message = "not_found", 404, "Not found."


class TaskNotFound(NotFound):
    code, message = "task_not_found", "No such task."


class OrderNotFound(NotFound):
    code, message = "order_not_found", "No such order."


class UserNotFound(NotFound):
    code, message = "user_not_found", "No such user."


class WithdrawalNotFound(NotFound):
    code, message = "withdrawal_not_found", "No such withdrawal."


class RechargeNotFound(NotFound):
    code, message = "recharge_not_found", "No such recharge."


# --- 409: somebody (or a timer) got there first, or the row is in another state -------------------
class Conflict(DomainError):
    code, status, message = "conflict", 409, "The request conflicts with the current state."


class InvalidTransition(Conflict):
    code, message = "invalid_transition", "This action is not allowed in the current state."


class SlotTaken(Conflict):
    code, message = "slot_taken", "Every slot of this task has been taken."


class TaskClosed(Conflict):
    code, message = "task_closed", "This task no longer accepts takers."


class AlreadyTookTask(Conflict):
    code, message = "already_took_task", "You have already taken this task."


class TooManyOrdersInProgress(Conflict):
    code, message = "too_many_orders_in_progress", "Finish an order in progress before taking another."


class DeadlinePassed(Conflict):
    code, message = "deadline_passed", "The time for this action has run out."


class AlreadyDecided(Conflict):
    code, message = "already_decided", "This has already been decided."


class IdempotencyConflict(Conflict):
    code, message = "idempotency_conflict", "This request id was already used for a different request."
