"""Property test: random programs of everything people, timers, operators and WeChat can do, with
random (sometimes wrong) actors, replayed on a fresh database; after every step the books must balance.

Domain errors (a typed `DomainError`) are allowed outcomes of any step; any other exception fails.
Invariants checked after each step:
- the ledger audit is clean (balances = postings, entries sum to zero, running balances, no negative
  balance, escrow = unresolved holds, referral payable = unsettled rewards, withdrawing = in flight);
- conservation: users' available + withdrawing + escrow + fees + referral payable
  == −(wechatpay + adjustments + payouts), i.e. all balances sum to zero;
- the counters the rules rely on agree with the rows: each worker's `orders_in_progress` and each
  task's `orders_live`.
Runs on both backends.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from models import clock, db, ledger, orders, recharges, referrals, tasks, withdrawals
from models import settings as market_settings
from models.errors import DomainError
from models.ledger import AccountKind
from models.users import User
from scheduler import sweeper
from tests import personas as p

OPERATOR_ID = 9_001
TABLES = (
    "postings", "journal_entries", "referral_rewards", "orders", "tasks", "withdrawals", "recharges",
    "accounts", "outbox", "audit_log", "market_settings", "users",
)
# Edge prices around the configured range (100..100 000 fen) and the rounding of F = floor(P × 10 %).
PRICES = st.one_of(st.sampled_from([-1, 0, 99, 100, 101, 109, 110, 999, 1_000, 1_009, 99_999, 100_000, 100_001]), st.integers(100, 5_000))
AMOUNTS = st.one_of(st.sampled_from([-1, 0, 1, 99, 100, 101, 10_000, 1_000_000, 1_000_001]), st.integers(100, 50_000))
idx = st.integers(0, 50)

OPS = st.one_of(
    st.tuples(st.just("publish"), idx, PRICES, st.integers(0, 4)),
    *[st.tuples(st.just("publish"), idx, st.integers(100, 2_000), st.integers(1, 3))] * 2,
    *[st.tuples(st.just("take"), idx, idx, st.integers(0, 4))] * 4,  # mostly a worker; sometimes anyone
    *[st.tuples(st.just("submit"), idx, idx, st.booleans())] * 2,
    st.tuples(st.just("approve"), idx, idx, st.booleans()),
    st.tuples(st.just("reject"), idx, idx, st.booleans()),
    st.tuples(st.just("abandon"), idx, idx, st.booleans()),
    st.tuples(st.just("approve"), idx, idx, st.booleans()),
    st.tuples(st.just("reject"), idx, idx, st.booleans()),
    st.tuples(st.just("accept_rejection"), idx, idx, st.booleans()),
    st.tuples(st.just("appeal"), idx, idx, st.booleans()),
    st.tuples(st.just("arbitrate"), idx, st.booleans()),
    st.tuples(st.just("cancel"), idx, idx, st.booleans()),
    st.tuples(st.just("withdraw"), idx, st.integers(0, 5), AMOUNTS),
    st.tuples(st.sampled_from(["w_approve", "w_mark_paid", "w_reject", "w_paid", "w_failed"]), idx),
    st.tuples(st.just("recharge"), idx, AMOUNTS, st.booleans()),
    st.tuples(st.just("adjust"), idx, AMOUNTS, st.booleans(), st.booleans()),
    st.tuples(st.just("advance"), st.integers(0, 2_000)),
    st.tuples(st.just("settle"),),
)
PROGRAMS = st.lists(OPS, min_size=15, max_size=40)


async def fresh_database() -> None:
    """Empty every table and reseed, as the `database` fixture does, for each generated program."""
    clock.reset()
    if db.is_postgres():
        await db.conn().execute_script(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    else:
        await db.execute("UPDATE users SET inviter_id = NULL")  # invitations point at other users
        for table in TABLES:
            await db.execute(f"DELETE FROM {table}")
    market_settings.invalidate_cache()
    await ledger.ensure_platform_accounts()
    await market_settings.ensure_settings_row()


@dataclasses.dataclass
class World:
    publishers: list[User]
    workers: list[User]
    task_ids: list[int] = dataclasses.field(default_factory=list)
    order_ids: list[int] = dataclasses.field(default_factory=list)
    withdrawal_ids: list[int] = dataclasses.field(default_factory=list)
    seq: itertools.count = dataclasses.field(default_factory=lambda: itertools.count(1))

    @property
    def users(self) -> list[User]:
        return self.publishers + self.workers

    @classmethod
    async def create(cls) -> "World":
        carol = await p.publisher("carol")
        dave = await p.worker("dave")
        alice = await p.publisher("alice", balance_fen=1_000_000, inviter=carol, unionid="union-alice")
        erin = await p.publisher("erin", balance_fen=50_000)
        bob = await p.worker("bob", inviter=dave)
        frank = await p.worker("frank")
        alice_w = await p.worker("alice-as-worker", unionid="union-alice")  # may not take Alice's tasks
        world = cls(publishers=[alice, erin, carol], workers=[bob, frank, alice_w, dave])
        # A market already in motion, so that early steps have orders to act on.
        for price, quantity in ((1_000, 3), (101, 2)):
            t = await tasks.publish(alice.id, title="seed", instructions="do it", unit_price_fen=price, quantity=quantity)
            world.task_ids.append(t.id)
            for w in (bob, frank):
                world.order_ids.append((await orders.take(t.id, w.id)).id)
        return world

    @staticmethod
    def pick(items: list, i: int):
        return items[i % len(items)] if items else None

    async def order(self, i: int) -> orders.Order | None:
        oid = self.pick(self.order_ids, i)
        return None if oid is None else await orders.Order.get(id=oid)

    async def run(self, op: tuple) -> str:
        """Do one step; 'skipped' when there is nothing yet for it to act on."""
        name, *a = op
        if name in ("take", "cancel") and not self.task_ids or name.startswith("w_") and not self.withdrawal_ids:
            return "skipped"
        if name in ("submit", "abandon", "accept_rejection", "appeal", "approve", "reject", "arbitrate") and not self.order_ids:
            return "skipped"
        n = next(self.seq)
        if name == "publish":
            pub, price, quantity = self.pick(self.publishers, a[0]), a[1], a[2]
            t = await tasks.publish(pub.id, title=f"task {n}", instructions="do it", unit_price_fen=price, quantity=quantity)
            self.task_ids.append(t.id)
        elif name == "take":
            tid = self.pick(self.task_ids, a[0])
            if tid is not None:
                o = await orders.take(tid, self.pick(self.workers if a[2] else self.users, a[1]).id)
                self.order_ids.append(o.id)
        elif name in ("submit", "abandon", "accept_rejection", "appeal"):
            o = await self.order(a[0])
            if o is not None:
                actor = o.worker_id if a[2] else self.pick(self.users, a[1]).id
                if name == "submit":
                    await orders.submit(o.id, actor, proof_text="done")
                elif name == "abandon":
                    await orders.abandon(o.id, actor)
                elif name == "accept_rejection":
                    await orders.accept_rejection(o.id, actor)
                else:
                    await orders.appeal(o.id, actor, reason="it was done")
        elif name in ("approve", "reject"):
            o = await self.order(a[0])
            if o is not None:
                actor = o.publisher_id if a[2] else self.pick(self.users, a[1]).id
                if name == "approve":
                    await orders.approve(o.id, actor)
                else:
                    await orders.reject(o.id, actor, reason="not done")
        elif name == "arbitrate":
            o = await self.order(a[0])
            if o is not None:
                await orders.arbitrate(o.id, OPERATOR_ID, worker_wins=a[1], note="decided")
        elif name == "cancel":
            tid = self.pick(self.task_ids, a[0])
            if tid is not None:
                t = await tasks.Task.get(id=tid)
                await tasks.cancel(tid, t.publisher_id if a[2] else self.pick(self.users, a[1]).id)
        elif name == "withdraw":
            user, share, amount = self.pick(self.users, a[0]), a[1], a[2]
            if share:  # a share of what the user has (5/4 of it must be refused)
                amount = await p.available(user) * share // 4
            w = await withdrawals.request(user.id, amount, request_id=f"wd-{n}")
            self.withdrawal_ids.append(w.id)
        elif name.startswith("w_"):
            wid = self.pick(self.withdrawal_ids, a[0])
            if wid is not None:
                if name == "w_approve":
                    await withdrawals.approve(wid, OPERATOR_ID)
                elif name == "w_mark_paid":
                    await withdrawals.mark_paid(wid, OPERATOR_ID, reference=f"bank-{n}")
                elif name == "w_reject":
                    await withdrawals.reject(wid, OPERATOR_ID, reason="no")
                elif name == "w_paid":
                    await withdrawals.payout_succeeded(wid, transfer_bill_no=f"T{n}")
                else:
                    await withdrawals.payout_failed(wid, reason="declined")
        elif name == "recharge":
            user, amount, repeat = self.pick(self.users, a[0]), a[1], a[2]
            r = await recharges.create(user.id, amount, request_id=f"rc-{n}")
            for _ in range(2 if repeat else 1):  # WeChat repeating its notification
                await recharges.credit(r.out_trade_no, transaction_id=f"tx-{n}", amount_fen=amount)
        elif name == "adjust":
            user, amount, negative, repeat = self.pick(self.users, a[0]), a[1], a[2], a[3]
            for _ in range(2 if repeat else 1):
                await ledger.adjust(user.id, -amount if negative else amount, operator_id=OPERATOR_ID, reason="fix", request_id=f"adj-{n}")
        elif name == "advance":
            clock.advance(a[0])
            await sweeper.sweep_all(batch=7)
        elif name == "settle":
            await referrals.settle()
        else:  # pragma: no cover
            raise AssertionError(name)
        return "done"


async def assert_invariants(step: str) -> None:
    report = await ledger.audit()
    assert report.ok, f"after {step}:\n{report.text()}"
    sums = {
        row["kind"]: int(row["s"])
        for row in await db.fetch("SELECT kind, COALESCE(SUM(balance_fen), 0) AS s FROM accounts GROUP BY kind")
    }
    held = sum(sums.get(k.value, 0) for k in (AccountKind.AVAILABLE, AccountKind.WITHDRAWING, AccountKind.ESCROW, AccountKind.FEES, AccountKind.REFERRAL_PAYABLE))
    outside = sum(sums.get(k.value, 0) for k in ledger.EXTERNAL_KINDS)
    assert held == -outside, f"after {step}: money inside {held} != money from outside {-outside}"
    negative = await db.fetch("SELECT code, balance_fen FROM accounts WHERE NOT may_go_negative AND balance_fen < 0")
    assert not negative, f"after {step}: {negative}"
    counters = await db.fetch(
        "SELECT u.id, u.orders_in_progress, (SELECT COUNT(*) FROM orders o WHERE o.worker_id = u.id AND o.status = 'in_progress') AS n "
        "FROM users u WHERE u.orders_in_progress <> (SELECT COUNT(*) FROM orders o WHERE o.worker_id = u.id AND o.status = 'in_progress')"
    )
    assert not counters, f"after {step}: orders_in_progress out of step: {counters}"
    live = await db.fetch(
        "SELECT t.id, t.orders_live FROM tasks t WHERE t.orders_live <> (SELECT COUNT(*) FROM orders o WHERE o.task_id = t.id "
        "AND o.status IN ('in_progress', 'awaiting_review', 'rejected', 'appealing'))"
    )
    assert not live, f"after {step}: orders_live out of step: {live}"


@pytest.mark.asyncio
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(program=PROGRAMS)
async def test_any_program_of_actions_keeps_the_books_balanced(database, program):
    await fresh_database()
    world = await World.create()
    for i, op in enumerate(program):
        try:
            event(f"{op[0]}: {await world.run(op)}")
        except DomainError as refusal:  # a fine answer; it must have changed nothing the audit can see
            event(f"{op[0]}: {refusal.code}")
        await assert_invariants(f"step {i} {op}")
    # Finally let every timer run out and every reward settle: the books must still balance.
    clock.advance(30 * 86_400)
    await sweeper.sweep_all(batch=50)
    await sweeper.sweep_all(batch=50)
    await referrals.settle()
    await assert_invariants("the end")
    assert await ledger.platform_balance(AccountKind.REFERRAL_PAYABLE) == 0
