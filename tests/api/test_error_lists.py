"""The error codes an operation lists are read from its code (miniprogram_api/raises.py): the reader
follows calls, honours `except`, and the hand-written exceptions to it stay true."""

from __future__ import annotations

from miniprogram_api.docs import contracts, operation_errors
from miniprogram_api.raises import raises
from models import orders, tasks
from models.errors import (AlreadyTookTask, DeadlinePassed, IdempotencyConflict, InsufficientBalance, InvalidTransition,
                           OwnTask, PriceOutOfRange, SlotTaken, TaskClosed, TooManyOrdersInProgress)
from server.app import create_app
from server.config import load_config


def test_it_follows_calls_into_the_domain():
    assert {SlotTaken, TaskClosed, AlreadyTookTask, TooManyOrdersInProgress, OwnTask} <= raises(orders.take)
    assert {PriceOutOfRange, IdempotencyConflict} <= raises(tasks.publish)


def test_an_except_around_a_call_removes_what_it_catches():
    # settle_due swallows a lost timer (`except DomainError: pass`): reading never answers 409.
    assert not {InvalidTransition, DeadlinePassed} & raises(orders.settle_due)
    assert {InvalidTransition, DeadlinePassed} <= raises(orders.apply_timer)


def test_the_ledger_s_overdraft_is_listed_only_where_a_user_s_balance_is_debited():
    app = create_app(load_config(path="/nonexistent/config.yaml", env={}), manage_db=False)
    with_overdraft = {path for method, path, c, params in contracts(app)
                      if "insufficient_balance" in operation_errors(c, [p for p, _ in params])}
    assert with_overdraft == {"/api/v1/publisher/tasks", "/api/v1/publisher/withdrawals", "/api/v1/worker/withdrawals"}
    assert InsufficientBalance not in raises(orders.approve)  # escrow pays: it cannot run short while the books are right


def test_what_an_operation_says_it_cannot_reach_is_really_in_its_code():
    """A stale `unreachable=` would hide nothing and mislead the reader: each must name an error the
    code shows."""
    app = create_app(load_config(path="/nonexistent/config.yaml", env={}), manage_db=False)
    for method, path, c, _ in contracts(app):
        for cls in c.unreachable:
            assert cls in raises(c.handler), f"{method} {path}: {cls.__name__} is not raised there; drop it from unreachable"
