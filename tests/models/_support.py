"""Helpers shared by the model tests: a cast of personas, money views, whole-database snapshots,
and orders driven through the real API into each state of their lifecycle.

Kept beside the tests (not in tests/personas.py) so that these modules own what they rely on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest_asyncio

from models import clock, db, ledger, orders, tasks
from models.ledger import AccountKind
from models.orders import OrderStatus
from models.users import User
from tests import personas as p

OPERATOR_ID = 9_001  # an operator deciding appeals and withdrawals (operators are not users)

# Every table a domain call could write to; a refused call must leave all of them exactly as they were.
SNAPSHOT_TABLES = (
    "users", "accounts", "journal_entries", "postings", "tasks", "orders", "referral_rewards",
    "withdrawals", "recharges", "outbox", "audit_log", "market_settings",
)
PLATFORM_VIEW = {
    "escrow": AccountKind.ESCROW,
    "fees": AccountKind.FEES,
    "referral_payable": AccountKind.REFERRAL_PAYABLE,
    "wechatpay": AccountKind.WECHATPAY,
    "payouts": AccountKind.PAYOUTS,
    "adjustments": AccountKind.ADJUSTMENTS,
}


# --- money -----------------------------------------------------------------------------------------
async def balances(**people: User) -> dict[str, int]:
    """Everybody's money by name: `<name>` is available, `<name>.withdrawing` the money in flight,
    plus every platform account (summed over its shards)."""
    view: dict[str, int] = {}
    for name, person in people.items():
        view[name] = await p.available(person)
        view[f"{name}.withdrawing"] = await p.withdrawing(person)
    for name, kind in PLATFORM_VIEW.items():
        view[name] = await ledger.platform_balance(kind)
    return view


def changes(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Only what moved, as signed deltas: compare against the exact money a flow must move."""
    return {k: after[k] - before[k] for k in after if after[k] != before.get(k)}


async def journal_count(kind: ledger.EntryKind | None = None) -> int:
    if kind is None:
        row = await db.fetch_one("SELECT COUNT(*) AS n FROM journal_entries")
    else:
        row = await db.fetch_one("SELECT COUNT(*) AS n FROM journal_entries WHERE kind = $1", kind.value)
    return int(row["n"])


async def running_balances_hold(user: User) -> None:
    """Each posting of the user's accounts says the balance right after it (what the user sees)."""
    for kind in ledger.USER_KINDS:
        code = ledger.user_account(user.id, kind)
        rows = await db.fetch(
            "SELECT p.amount_fen, p.balance_after_fen FROM postings p JOIN accounts a ON a.id = p.account_id "
            "WHERE a.code = $1 ORDER BY p.id",
            code,
        )
        running = 0
        for row in rows:
            running += row["amount_fen"]
            assert row["balance_after_fen"] == running, f"{code}: a posting says {row['balance_after_fen']}, running is {running}"
        assert await ledger.balance(code) == running


# --- snapshots -------------------------------------------------------------------------------------
async def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every row of every domain table (including counts of journal, outbox and audit rows)."""
    return {table: await db.fetch(f"SELECT * FROM {table} ORDER BY id") for table in SNAPSHOT_TABLES}


async def assert_unchanged(before: dict[str, list[dict[str, Any]]]) -> None:
    after = await snapshot()
    moved = [t for t in SNAPSHOT_TABLES if before[t] != after[t]]
    assert not moved, f"a refused call changed {moved}: " + "; ".join(
        f"{t}: {len(before[t])} -> {len(after[t])} rows" for t in moved
    )


# --- time ------------------------------------------------------------------------------------------
def advance_to(moment: dt.datetime, *, plus_s: float = 0.0) -> None:
    """Move the clock to `moment` (+ plus_s); never backwards."""
    seconds = (moment - clock.now()).total_seconds() + plus_s
    if seconds > 0:
        clock.advance(seconds)


# --- a cast and an order in any state --------------------------------------------------------------
PRICE = 1_000  # P; with TEST_SETTINGS: F = 100, R_w = 50, R_p = 20, fees keep 30
FEE = 100
R_W, R_P = 50, 20


@dataclasses.dataclass
class Cast:
    alice: User  # publisher
    bob: User  # worker
    carol: User  # invited Alice (publisher end)
    dave: User  # invited Bob (worker end)
    charlie: User  # another worker, an outsider to Alice's task
    erin: User  # another publisher, an outsider to it too

    def people(self) -> dict[str, User]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


async def cast(*, alice_balance_fen: int = 100_000) -> Cast:
    carol = await p.publisher("carol")
    dave = await p.worker("dave")
    return Cast(
        alice=await p.publisher("alice", balance_fen=alice_balance_fen, inviter=carol),
        bob=await p.worker("bob", inviter=dave),
        carol=carol,
        dave=dave,
        charlie=await p.worker("charlie"),
        erin=await p.publisher("erin", balance_fen=10_000),
    )


async def publish(c: Cast, *, price: int = PRICE, quantity: int = 1, title: str = "Scan the code") -> tasks.Task:
    return await tasks.publish(c.alice.id, title=title, instructions="Scan the QR code and confirm", unit_price_fen=price, quantity=quantity)


# How each state is reached from the one before it (by the people who may act there).
PATH: dict[OrderStatus, tuple[OrderStatus | None, str]] = {
    OrderStatus.IN_PROGRESS: (None, "take"),
    OrderStatus.AWAITING_REVIEW: (OrderStatus.IN_PROGRESS, "submit"),
    OrderStatus.ABANDONED: (OrderStatus.IN_PROGRESS, "abandon"),
    OrderStatus.REJECTED: (OrderStatus.AWAITING_REVIEW, "reject"),
    OrderStatus.COMPLETED: (OrderStatus.AWAITING_REVIEW, "approve"),
    OrderStatus.APPEALING: (OrderStatus.REJECTED, "appeal"),
    OrderStatus.FAILED: (OrderStatus.REJECTED, "accept_rejection"),
}


async def order_in(state: OrderStatus, c: Cast, task: tasks.Task | None = None, *, worker: User | None = None) -> orders.Order:
    """An order of Alice's task, taken by Bob (or `worker`), driven through the real API to `state`."""
    worker = worker or c.bob
    previous, step = PATH[state]
    if previous is None:
        task = task or await publish(c)
        return await orders.take(task.id, worker.id)
    order = await order_in(previous, c, task, worker=worker)
    if step == "submit":
        return await orders.submit(order.id, worker.id, proof_text="done, screenshot attached")
    if step == "abandon":
        return await orders.abandon(order.id, worker.id)
    if step == "reject":
        return await orders.reject(order.id, c.alice.id, reason="the screenshot is blurry")
    if step == "approve":
        return await orders.approve(order.id, c.alice.id)
    if step == "appeal":
        return await orders.appeal(order.id, worker.id, reason="it is sharp on my phone")
    if step == "accept_rejection":
        return await orders.accept_rejection(order.id, worker.id)
    raise AssertionError(step)


@pytest_asyncio.fixture
async def books_stay_clean(database):
    """After the test, the ledger audit must still prove the books."""
    yield
    await p.assert_books_clean()
