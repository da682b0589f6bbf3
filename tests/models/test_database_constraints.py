"""The database itself refuses what the code promises never to do, even when a statement is written
behind the code's back: overdrafts, negative counters, impossible slots, zero postings, and a second
journal entry under an idempotency key already used. On SQLite the CHECKs are triggers (migration
0002); on PostgreSQL they are real CHECK constraints. Both surface as tortoise's IntegrityError.
"""

from __future__ import annotations

import pytest
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models import clock, db, ledger, orders, withdrawals
from models.errors import InsufficientBalance
from models.ledger import AccountKind, EntryKind, Leg
from tests import personas as p
from tests.models._support import assert_unchanged, cast, publish, snapshot


async def world():
    """Alice's task of two slots: Bob's order completed (Dave earned a reward), Charlie's in
    progress; Bob has asked to withdraw 500."""
    c = await cast()
    task = await publish(c, quantity=2)
    done = await orders.take(task.id, c.bob.id)
    await orders.submit(done.id, c.bob.id)
    await orders.approve(done.id, c.alice.id)
    running = await orders.take(task.id, c.charlie.id)
    w = await withdrawals.request(c.bob.id, 500, request_id="wd-1")
    reward = await db.fetch_one("SELECT id FROM referral_rewards WHERE order_id = $1", done.id)
    posting = await db.fetch_one("SELECT entry_id, account_id FROM postings ORDER BY id DESC LIMIT 1")
    return dict(c=c, task=task.id, done=done.id, running=running.id, withdrawal=w.id, reward=reward["id"], posting=posting)


def bob_account(kind: AccountKind):
    return lambda w: ledger.user_account(w["c"].bob.id, kind)


# (what is attempted, the statement, its arguments from the world)
FORBIDDEN_WRITES = {
    "a worker's available balance below zero": (
        "UPDATE accounts SET balance_fen = -1 WHERE code = $1", lambda w: [ledger.user_account(w["c"].bob.id)]),
    "a publisher's available balance below zero": (
        "UPDATE accounts SET balance_fen = -1 WHERE code = $1", lambda w: [ledger.user_account(w["c"].alice.id)]),
    "a withdrawing balance below zero": (
        "UPDATE accounts SET balance_fen = balance_fen - 501 WHERE code = $1",
        lambda w: [ledger.user_account(w["c"].bob.id, AccountKind.WITHDRAWING)]),
    "an escrow shard below zero": (
        "UPDATE accounts SET balance_fen = -1 WHERE kind = 'escrow' AND shard = 0", lambda w: []),
    "a fees shard below zero": (
        "UPDATE accounts SET balance_fen = -1 WHERE kind = 'fees' AND shard = 3", lambda w: []),
    "a referral payable shard below zero": (
        "UPDATE accounts SET balance_fen = -1 WHERE kind = 'referral_payable' AND shard = 5", lambda w: []),
    "a new account born negative": (
        "INSERT INTO accounts (code, kind, shard, balance_fen, may_go_negative) VALUES ('x:1', 'available', 0, -5, false)",
        lambda w: []),
    "orders in progress below zero": (
        "UPDATE users SET orders_in_progress = -1 WHERE id = $1", lambda w: [w["c"].bob.id]),
    "withdrawn today below zero": (
        "UPDATE users SET withdrawn_today_fen = -1 WHERE id = $1", lambda w: [w["c"].bob.id]),
    "untaken slots below zero": (
        "UPDATE tasks SET slots_untaken = slots_untaken - 1 WHERE id = $1", lambda w: [w["task"]]),
    "more untaken slots than the quantity": (
        "UPDATE tasks SET slots_untaken = quantity + 1 WHERE id = $1", lambda w: [w["task"]]),
    "live orders below zero": (
        "UPDATE tasks SET orders_live = -1 WHERE id = $1", lambda w: [w["task"]]),
    "a task of quantity zero": (
        "UPDATE tasks SET quantity = 0, slots_untaken = 0 WHERE id = $1", lambda w: [w["task"]]),
    "a task priced at zero": (
        "UPDATE tasks SET unit_price_fen = 0 WHERE id = $1", lambda w: [w["task"]]),
    "a task with a negative fee": (
        "UPDATE tasks SET fee_fen = -1 WHERE id = $1", lambda w: [w["task"]]),
    "an order priced at zero": (
        "UPDATE orders SET unit_price_fen = 0 WHERE id = $1", lambda w: [w["running"]]),
    "an order with a negative fee": (
        "UPDATE orders SET fee_fen = -1 WHERE id = $1", lambda w: [w["running"]]),
    "a posting of zero": (
        "INSERT INTO postings (entry_id, account_id, amount_fen, balance_after_fen, created_at) VALUES ($1, $2, 0, 0, $3)",
        lambda w: [w["posting"]["entry_id"], w["posting"]["account_id"], clock.now()]),
    "a referral reward of zero": (
        "UPDATE referral_rewards SET amount_fen = 0 WHERE id = $1", lambda w: [w["reward"]]),
    "a withdrawal of zero": (
        "UPDATE withdrawals SET amount_fen = 0, fee_fen = 0 WHERE id = $1", lambda w: [w["withdrawal"]]),
    "a withdrawal fee that eats the whole amount": (
        "UPDATE withdrawals SET fee_fen = amount_fen WHERE id = $1", lambda w: [w["withdrawal"]]),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("attempt", list(FORBIDDEN_WRITES))
async def test_the_database_refuses(database, attempt):
    sql, args = FORBIDDEN_WRITES[attempt]
    w = await world()
    before = await snapshot()
    with pytest.raises(IntegrityError):
        await db.execute(sql, *args(w))
    await assert_unchanged(before)
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_the_database_refuses_an_overdraft_inside_a_transaction_too(database):
    w = await world()
    bob = ledger.user_account(w["c"].bob.id)
    before = await ledger.balance(bob)
    with pytest.raises(IntegrityError):
        async with in_transaction():
            await db.execute("UPDATE accounts SET balance_fen = balance_fen + 100 WHERE code = $1", bob)
            await db.execute("UPDATE accounts SET balance_fen = -100 WHERE code = $1", bob)
    assert await ledger.balance(bob) == before  # the whole transaction is gone


@pytest.mark.asyncio
async def test_outside_counterparties_may_go_negative(database):
    """WeChat Pay's account is negative by what users paid in; that is allowed, by design."""
    await cast()
    assert await ledger.platform_balance(AccountKind.WECHATPAY) < 0
    assert await db.execute("UPDATE accounts SET balance_fen = balance_fen - 1 WHERE kind = 'adjustments' AND shard = 0") == 1
    await db.execute("UPDATE accounts SET balance_fen = balance_fen + 1 WHERE kind = 'adjustments' AND shard = 0")
    await p.assert_books_clean()


# --- idempotency keys -----------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_a_second_entry_under_the_same_key_is_refused_and_moves_no_money(database):
    alice = await p.publisher("alice", balance_fen=1_000)
    legs = [Leg(ledger.user_account(alice.id), -300), Leg(ledger.platform_account(AccountKind.ADJUSTMENTS, alice.id), 300)]
    async with in_transaction():
        await ledger.post("test:once", EntryKind.ADJUSTMENT, legs, memo="first")
    assert await p.available(alice) == 700
    before = await snapshot()
    with pytest.raises(ledger.DuplicateEntry) as dup:
        async with in_transaction():
            await ledger.post("test:once", EntryKind.ADJUSTMENT, legs, memo="second")
    assert dup.value.key == "test:once"
    await assert_unchanged(before)
    assert await p.available(alice) == 700
    await p.assert_books_clean()


@pytest.mark.asyncio
async def test_the_unique_key_holds_even_for_a_raw_insert(database):
    await p.publisher("alice", balance_fen=1_000)
    key = (await db.fetch_one("SELECT key FROM journal_entries ORDER BY id LIMIT 1"))["key"]
    before = await snapshot()
    with pytest.raises(IntegrityError):
        await db.execute(
            "INSERT INTO journal_entries (key, kind, created_at) VALUES ($1, 'recharge', $2)", key, clock.now()
        )
    await assert_unchanged(before)


@pytest.mark.asyncio
async def test_a_completion_cannot_be_posted_twice(database):
    c = await cast()
    task = await publish(c)
    order = await orders.take(task.id, c.bob.id)
    await orders.submit(order.id, c.bob.id)
    await orders.approve(order.id, c.alice.id)
    before = await snapshot()
    with pytest.raises(ledger.DuplicateEntry):
        async with in_transaction():
            await ledger.post(
                f"order:{order.id}:complete", EntryKind.ORDER_COMPLETE,
                [Leg(ledger.platform_account(AccountKind.ESCROW, task.id), -1), Leg(ledger.user_account(c.bob.id), 1)],
            )
    await assert_unchanged(before)


@pytest.mark.asyncio
async def test_an_overdrawing_entry_is_refused_and_leaves_nothing_behind(database):
    alice = await p.publisher("alice", balance_fen=1_000)
    before = await snapshot()
    with pytest.raises(InsufficientBalance):
        async with in_transaction():
            await ledger.post(
                "test:overdraw", EntryKind.ADJUSTMENT,
                [Leg(ledger.user_account(alice.id), -1_001), Leg(ledger.platform_account(AccountKind.ADJUSTMENTS, 0), 1_001)],
            )
    await assert_unchanged(before)


@pytest.mark.asyncio
async def test_an_unbalanced_entry_is_refused_before_it_touches_the_database(database):
    alice = await p.publisher("alice", balance_fen=1_000)
    before = await snapshot()
    with pytest.raises(ValueError):
        async with in_transaction():
            await ledger.post("test:unbalanced", EntryKind.ADJUSTMENT, [Leg(ledger.user_account(alice.id), 5)])
    await assert_unchanged(before)
