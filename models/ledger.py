"""The double-entry ledger: accounts, journal entries, postings, and the audit that proves them.

Rules (SPEC §2, STYLE habits 4–6):
- Every movement is one journal entry whose postings sum to zero; the entry's `key` is unique, so a
  movement can happen at most once (`order:42:complete`, `wechatpay:<transaction_id>`, …).
- Postings are append-only. A balance changes only in the transaction that writes its posting,
  through one guarded `UPDATE ... RETURNING` that cannot overdraw; the database's CHECK constraint
  refuses a negative balance even if code forgets the guard.
- Platform accounts that every order would touch (escrow, fees, referral payable, and the external
  counterparties) are split into `PLATFORM_SHARDS` rows picked by the task or order id, so unrelated
  orders never wait on one hot row. Their balance is the sum of the shards.
- Rows are updated in a fixed order (sorted by account code) so that two transactions touching the
  same accounts can never deadlock.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from enum import StrEnum
from typing import Iterable

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.migrations.constraints import CheckConstraint
from tortoise.models import Model

from models import clock, db
from models.errors import InsufficientBalance

PLATFORM_SHARDS = 16


class AccountKind(StrEnum):
    # a user's own money
    AVAILABLE = "available"  # spendable / withdrawable
    WITHDRAWING = "withdrawing"  # requested for withdrawal, awaiting the operator and the payout
    # the platform's
    ESCROW = "escrow"  # publishers' money held for untaken slots and live orders
    FEES = "fees"  # the platform's revenue (publishing fees, withdrawal fees, rounding)
    REFERRAL_PAYABLE = "referral_payable"  # rewards earned by inviters, not yet moved to them
    # outside counterparties: their balances may go negative (money came from / went to them)
    WECHATPAY = "wechatpay"  # money in: recharges paid through WeChat Pay
    PAYOUTS = "payouts"  # money out: withdrawals paid to users
    ADJUSTMENTS = "adjustments"  # the other side of operators' manual adjustments


USER_KINDS = (AccountKind.AVAILABLE, AccountKind.WITHDRAWING)
EXTERNAL_KINDS = (AccountKind.WECHATPAY, AccountKind.PAYOUTS, AccountKind.ADJUSTMENTS)
PLATFORM_KINDS = (AccountKind.ESCROW, AccountKind.FEES, AccountKind.REFERRAL_PAYABLE, *EXTERNAL_KINDS)


class EntryKind(StrEnum):
    RECHARGE = "recharge"  # wechatpay → publisher available
    PUBLISH = "publish"  # publisher available → escrow, q·(P+F)
    SLOT_REFUND = "slot_refund"  # escrow → publisher: untaken slots (expired / cancelled) or abandoned late
    ORDER_COMPLETE = "order_complete"  # escrow → worker P, fees F − rewards, referral payable rewards
    ORDER_FAIL = "order_fail"  # escrow → publisher P+F
    REFERRAL_SETTLE = "referral_settle"  # referral payable → inviter available
    WITHDRAW_REQUEST = "withdraw_request"  # available → withdrawing
    WITHDRAW_PAID = "withdraw_paid"  # withdrawing → payouts A−W, fees W
    WITHDRAW_RETURNED = "withdraw_returned"  # withdrawing → available (rejected, payout failed)
    ADJUSTMENT = "adjustment"  # adjustments ↔ user available, by an operator with a reason


class Account(Model):
    id = fields.BigIntField(primary_key=True)
    code = fields.CharField(max_length=64, unique=True)  # "u:<user>:<kind>" or "p:<kind>:<shard>"
    kind = fields.CharEnumField(AccountKind, max_length=24)
    user = fields.ForeignKeyField("models.User", related_name="accounts", null=True, on_delete=fields.RESTRICT)
    shard = fields.SmallIntField(default=0)
    balance_fen = fields.BigIntField(default=0)
    may_go_negative = fields.BooleanField(default=False)

    class Meta:
        table = "accounts"
        # Declared here so migrations stay in sync; added to the database by migration 0002 because
        # Tortoise does not emit model-declared CHECK constraints (tortoise/tortoise-orm#2272).
        constraints = (CheckConstraint(check="may_go_negative OR balance_fen >= 0", name="ck_accounts_no_overdraft"),)


class JournalEntry(Model):
    id = fields.BigIntField(primary_key=True)
    key = fields.CharField(max_length=128, unique=True)
    kind = fields.CharEnumField(EntryKind, max_length=24)
    task_id = fields.BigIntField(null=True, db_index=True)
    order_id = fields.BigIntField(null=True, db_index=True)
    memo = fields.CharField(max_length=255, null=True)
    created_at = fields.DatetimeField()

    class Meta:
        table = "journal_entries"


class Posting(Model):
    id = fields.BigIntField(primary_key=True)
    entry = fields.ForeignKeyField("models.JournalEntry", related_name="postings", on_delete=fields.RESTRICT)
    account = fields.ForeignKeyField("models.Account", related_name="postings", on_delete=fields.RESTRICT)
    amount_fen = fields.BigIntField()  # + into the account, − out of it
    balance_after_fen = fields.BigIntField()
    related_user_id = fields.BigIntField(null=True)  # e.g. the invitee a referral reward came from
    created_at = fields.DatetimeField()

    class Meta:
        table = "postings"
        constraints = (CheckConstraint(check="amount_fen <> 0", name="ck_postings_nonzero"),)
        indexes = (("account_id", "id"),)


# --- account codes ---------------------------------------------------------------------------------
def user_account(user_id: int, kind: AccountKind = AccountKind.AVAILABLE) -> str:
    return f"u:{user_id}:{kind.value}"


def platform_account(kind: AccountKind, key: int) -> str:
    """One shard of a platform account, picked by a task or order id."""
    return f"p:{kind.value}:{key % PLATFORM_SHARDS}"


async def open_user_accounts(user_id: int) -> None:
    await Account.bulk_create(
        [Account(code=user_account(user_id, k), kind=k, user_id=user_id) for k in USER_KINDS]
    )


async def ensure_platform_accounts() -> None:
    existing = set(await Account.filter(user_id=None).values_list("code", flat=True))
    missing = [
        Account(code=platform_account(kind, shard), kind=kind, shard=shard, may_go_negative=kind in EXTERNAL_KINDS)
        for kind in PLATFORM_KINDS
        for shard in range(PLATFORM_SHARDS)
        if platform_account(kind, shard) not in existing
    ]
    if missing:
        try:
            await Account.bulk_create(missing)
        except IntegrityError:  # another process seeded them at the same moment
            pass


# --- posting ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Leg:
    account: str  # account code
    amount_fen: int  # + credit into the account, − debit
    related_user_id: int | None = None


class DuplicateEntry(Exception):
    """An entry with this idempotency key already exists: the movement already happened."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


_UPDATE_BALANCE = (
    "UPDATE accounts SET balance_fen = balance_fen + $1 "
    "WHERE code = $2 AND (may_go_negative OR balance_fen + $1 >= 0) "
    "RETURNING id, balance_fen"
)


async def post(
    key: str,
    kind: EntryKind,
    legs: Iterable[Leg],
    *,
    task_id: int | None = None,
    order_id: int | None = None,
    memo: str | None = None,
) -> int:
    """Write one balanced journal entry and move the balances. Must run inside a transaction.

    Raises DuplicateEntry if `key` was used before (nothing is written), InsufficientBalance if a
    debit would overdraw (the caller's transaction must then roll back). Returns the entry id.
    """
    merged: dict[tuple[str, int | None], int] = defaultdict(int)
    for leg in legs:
        merged[(leg.account, leg.related_user_id)] += leg.amount_fen
    total = sum(merged.values())
    if total != 0:
        raise ValueError(f"unbalanced entry {key}: postings sum to {total}")
    now = clock.now()
    row = await db.fetch_one(
        "INSERT INTO journal_entries (key, kind, task_id, order_id, memo, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (key) DO NOTHING RETURNING id",
        key, kind.value, task_id, order_id, memo, now,
    )
    if row is None:
        raise DuplicateEntry(key)
    entry_id = row["id"]
    # Per account in code order (deadlock-free); one account may get several legs (different
    # related users), applied as one balance change and reported with running balances.
    per_account: dict[str, list[tuple[int | None, int]]] = defaultdict(list)
    for (code, related), amount in merged.items():
        if amount:
            per_account[code].append((related, amount))
    values: list = []
    rows_sql: list[str] = []
    for code in sorted(per_account):
        legs_here = per_account[code]
        delta = sum(a for _, a in legs_here)
        updated = await db.fetch_one(_UPDATE_BALANCE, delta, code)
        if updated is None:
            raise InsufficientBalance(account=code.split(":")[-1])
        running = updated["balance_fen"] - delta
        for related, amount in legs_here:
            running += amount
            n = len(values)
            rows_sql.append(f"(${n + 1}, ${n + 2}, ${n + 3}, ${n + 4}, ${n + 5}, ${n + 6})")
            values += [entry_id, updated["id"], amount, running, related, now]
    if rows_sql:
        await db.execute(
            "INSERT INTO postings (entry_id, account_id, amount_fen, balance_after_fen, related_user_id, created_at) "
            "VALUES " + ", ".join(rows_sql),
            *values,
        )
    return entry_id


@dataclasses.dataclass(frozen=True)
class Entry:
    """One journal entry of a batch (`post_many`): the arguments of `post`."""

    key: str
    kind: EntryKind
    legs: tuple[Leg, ...]
    task_id: int | None = None
    order_id: int | None = None
    memo: str | None = None


async def post_many(entries: list[Entry]) -> None:
    """Write many balanced entries at once (the timer sweep's batches). Must run inside a transaction.

    The same rules as `post`, set-based on PostgreSQL: one INSERT of the entries, one UPDATE of all
    the accounts' balances by the batch's net change per account (guarded: no overdraft) that locks
    them in code order first (`SELECT ... ORDER BY code FOR NO KEY UPDATE` as its subquery: the order
    every transaction follows, so a batch cannot deadlock with a person's `post`), one INSERT of the
    postings with their running balances, in entry order. Raises DuplicateEntry if any key was used
    before and InsufficientBalance if any account would be overdrawn: the caller's transaction must
    then roll back, as nothing of a batch may stand alone. On SQLite (one writer at a time, no
    round trips) it is `post` per entry.
    """
    if not entries:
        return
    if not db.is_postgres():
        for e in entries:
            await post(e.key, e.kind, e.legs, task_id=e.task_id, order_id=e.order_id, memo=e.memo)
        return
    now = clock.now()
    merged_per_entry: list[list[tuple[str, int | None, int]]] = []
    delta: dict[str, int] = defaultdict(int)
    for e in entries:
        merged: dict[tuple[str, int | None], int] = defaultdict(int)
        for leg in e.legs:
            merged[(leg.account, leg.related_user_id)] += leg.amount_fen
        if sum(merged.values()) != 0:
            raise ValueError(f"unbalanced entry {e.key}: postings sum to {sum(merged.values())}")
        legs = sorted((code, related, amount) for (code, related), amount in merged.items() if amount)
        merged_per_entry.append(legs)
        for code, _, amount in legs:
            delta[code] += amount
    rows = await db.fetch(
        "INSERT INTO journal_entries (key, kind, task_id, order_id, memo, created_at) "
        "SELECT k, kd, t, o, m, $6 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[]) AS e(k, kd, t, o, m) "
        "ON CONFLICT (key) DO NOTHING RETURNING id, key",
        [e.key for e in entries], [e.kind.value for e in entries], [e.task_id for e in entries],
        [e.order_id for e in entries], [e.memo for e in entries], now,
    )
    ids = {r["key"]: r["id"] for r in rows}
    if len(ids) != len(entries):
        raise DuplicateEntry(next(e.key for e in entries if e.key not in ids))
    codes = sorted(code for code, d in delta.items())
    # One statement: the subquery locks the accounts in code order as it yields them, and the UPDATE
    # writes an account only once the subquery has yielded (locked) it, so the locks follow code order.
    updated = await db.fetch(
        "UPDATE accounts a SET balance_fen = a.balance_fen + d.delta "
        "FROM (SELECT id FROM accounts WHERE code = ANY($1::text[]) ORDER BY code FOR NO KEY UPDATE) AS l, "
        "unnest($1::text[], $2::bigint[]) AS d(code, delta) "
        "WHERE a.id = l.id AND a.code = d.code AND (a.may_go_negative OR a.balance_fen + d.delta >= 0) "
        "RETURNING a.code, a.id, a.balance_fen",
        codes, [delta[c] for c in codes],
    )
    if len(updated) != len(codes):
        missing = sorted(set(codes) - {r["code"] for r in updated})[0]
        raise InsufficientBalance(account=missing.split(":")[-1])
    account_id = {r["code"]: r["id"] for r in updated}
    running = {r["code"]: r["balance_fen"] - delta[r["code"]] for r in updated}
    p_entry, p_account, p_amount, p_after, p_related = [], [], [], [], []
    for e, legs in zip(entries, merged_per_entry):
        for code, related, amount in legs:
            running[code] += amount
            p_entry.append(ids[e.key])
            p_account.append(account_id[code])
            p_amount.append(amount)
            p_after.append(running[code])
            p_related.append(related)
    # unnest yields the rows in array order, so the ids follow each account's running balance.
    await db.execute(
        "INSERT INTO postings (entry_id, account_id, amount_fen, balance_after_fen, related_user_id, created_at) "
        "SELECT e, a, m, b, r, $6 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) AS p(e, a, m, b, r)",
        p_entry, p_account, p_amount, p_after, p_related, now,
    )


async def balance(code: str) -> int:
    row = await Account.get_or_none(code=code).values("balance_fen")
    return row["balance_fen"] if row else 0


async def platform_balance(kind: AccountKind) -> int:
    row = await db.fetch_one("SELECT COALESCE(SUM(balance_fen), 0) AS s FROM accounts WHERE kind = $1", kind.value)
    return int(row["s"]) if row else 0


async def user_balances(user_id: int) -> dict[str, int]:
    rows = await Account.filter(user_id=user_id).values("kind", "balance_fen")
    out = {k.value: 0 for k in USER_KINDS}
    out.update({str(r["kind"].value if hasattr(r["kind"], "value") else r["kind"]): r["balance_fen"] for r in rows})
    return out


# --- the audit -------------------------------------------------------------------------------------
@dataclasses.dataclass
class AuditReport:
    checks: dict[str, bool] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    figures: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, check: str, problem: str) -> None:
        self.checks[check] = False
        self.problems.append(f"{check}: {problem}")

    def text(self) -> str:
        lines = [f"ledger audit: {'CLEAN' if self.ok else 'PROBLEMS FOUND'}"]
        lines += [f"  [{'ok' if good else 'FAIL'}] {name}" for name, good in self.checks.items()]
        lines += [f"  {name} = {value}" for name, value in self.figures.items()]
        lines += [f"  ! {p}" for p in self.problems[:200]]
        if len(self.problems) > 200:
            lines.append(f"  ... and {len(self.problems) - 200} more")
        return "\n".join(lines)


LIVE_ORDER_STATES = ("in_progress", "awaiting_review", "rejected", "appealing")


async def audit() -> AuditReport:
    """Prove the books: every check below must hold at any moment between transactions.

    All checks read one snapshot (REPEATABLE READ on PostgreSQL, one read transaction on SQLite),
    so a transition committing half-way through the audit cannot make it report a false problem.
    """
    async with db.read_transaction():
        return await _audit()


async def _audit() -> AuditReport:
    r = AuditReport()

    async def check(name: str, sql: str, describe, *args) -> None:
        r.checks[name] = True
        for row in await db.fetch(sql, *args):
            r.fail(name, describe(row))

    # 1. Every account's balance equals the sum of its postings.
    await check(
        "balance = sum of postings",
        "SELECT a.code, a.balance_fen, COALESCE(SUM(p.amount_fen), 0) AS total FROM accounts a "
        "LEFT JOIN postings p ON p.account_id = a.id GROUP BY a.id, a.code, a.balance_fen "
        "HAVING a.balance_fen <> COALESCE(SUM(p.amount_fen), 0)",
        lambda row: f"{row['code']} balance {row['balance_fen']} != postings {row['total']}",
    )
    # 2. Every entry's postings sum to zero (so all postings together do too).
    await check(
        "every entry sums to zero",
        "SELECT e.key, SUM(p.amount_fen) AS total FROM postings p JOIN journal_entries e ON e.id = p.entry_id "
        "GROUP BY e.id, e.key HAVING SUM(p.amount_fen) <> 0",
        lambda row: f"entry {row['key']} sums to {row['total']}",
    )
    # 3. Each posting's balance-after is the running sum of its account (what users are shown).
    await check(
        "balance after each posting = running sum",
        "SELECT id, account_id, balance_after_fen, running FROM ("
        " SELECT id, account_id, balance_after_fen,"
        " SUM(amount_fen) OVER (PARTITION BY account_id ORDER BY id) AS running FROM postings) t "
        "WHERE running <> balance_after_fen LIMIT 1000",
        lambda row: f"posting {row['id']} says {row['balance_after_fen']}, running sum is {row['running']}",
    )
    # 4. No balance that must not be negative is negative (the database refuses it, we check anyway).
    await check(
        "no negative balances",
        "SELECT code, balance_fen FROM accounts WHERE NOT may_go_negative AND balance_fen < 0",
        lambda row: f"{row['code']} is negative: {row['balance_fen']}",
    )
    # 5. Escrow equals every hold not yet resolved: untaken slots plus live orders, at P+F each.
    escrow = await platform_balance(AccountKind.ESCROW)
    slots = await db.fetch_one(
        "SELECT COALESCE(SUM(slots_untaken * (unit_price_fen + fee_fen)), 0) AS s FROM tasks"
    )
    live = await db.fetch_one(
        "SELECT COALESCE(SUM(unit_price_fen + fee_fen), 0) AS s FROM orders WHERE status IN "
        "('in_progress', 'awaiting_review', 'rejected', 'appealing')"
    )
    holds = int(slots["s"]) + int(live["s"])
    r.figures.update(escrow_fen=escrow, unresolved_holds_fen=holds)
    r.checks["escrow = unresolved holds"] = True
    if escrow != holds:
        r.fail("escrow = unresolved holds", f"escrow {escrow} != holds {holds}")
    # 6. Referral payable equals rewards earned and not yet moved to their inviters.
    payable = await platform_balance(AccountKind.REFERRAL_PAYABLE)
    unsettled = await db.fetch_one(
        "SELECT COALESCE(SUM(amount_fen), 0) AS s FROM referral_rewards WHERE settled_entry_id IS NULL"
    )
    r.figures.update(referral_payable_fen=payable)
    r.checks["referral payable = unsettled rewards"] = True
    if payable != int(unsettled["s"]):
        r.fail("referral payable = unsettled rewards", f"payable {payable} != unsettled {unsettled['s']}")
    # 7. Each user's withdrawing balance equals their withdrawals in flight.
    await check(
        "withdrawing = withdrawals in flight",
        "SELECT a.code, a.balance_fen, COALESCE(w.total, 0) AS total FROM accounts a LEFT JOIN ("
        " SELECT user_id, SUM(amount_fen) AS total FROM withdrawals WHERE status IN ('pending', 'paying')"
        " GROUP BY user_id) w ON w.user_id = a.user_id "
        "WHERE a.kind = 'withdrawing' AND a.balance_fen <> COALESCE(w.total, 0)",
        lambda row: f"{row['code']} holds {row['balance_fen']}, withdrawals in flight {row['total']}",
    )
    r.figures["fees_fen"] = await platform_balance(AccountKind.FEES)
    r.figures["postings"] = int((await db.fetch_one("SELECT COUNT(*) AS n FROM postings"))["n"])
    return r


# --- manual adjustments (SPEC §2 flow 7) -----------------------------------------------------------
async def adjust(user_id: int, amount_fen: int, *, operator_id: int, reason: str, request_id: str) -> int:
    """An operator credits (+) or debits (−) a user's available balance, with a written reason.

    The other side is the platform's `adjustments` account. A debit cannot overdraw the user. A
    repeated request_id does nothing more and returns the first entry's id.
    """
    from tortoise.transactions import in_transaction

    from models import audit
    from models.errors import InvalidInput
    from models.outbox import Pending

    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen == 0:
        raise InvalidInput("amount_fen must be a non-zero whole number of fen.", zh="金额必须是非零的整数（分）。", field="amount_fen")
    if abs(amount_fen) > 100_000_000:
        raise InvalidInput("amount_fen is too large for one adjustment.", zh="单次调整金额过大。", field="amount_fen")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
        raise InvalidInput("A reason (1–500 characters) is required.", zh="必须填写理由（1–500 个字符）。", field="reason")
    if not isinstance(request_id, str) or not 1 <= len(request_id) <= 64:
        raise InvalidInput("request_id is required (1–64 characters).", zh="必须提供 request_id（1–64 个字符）。", field="request_id")
    from models.inputs import check_text

    reason = check_text(reason, "reason", multiline=True)
    check_text(request_id, "request_id")
    if not await Account.exists(code=user_account(user_id)):
        from models.errors import UserNotFound

        raise UserNotFound()
    key = f"adjustment:{request_id}"
    existing = await JournalEntry.get_or_none(key=key)
    if existing is not None:
        return await _same_adjustment(existing.id, user_id, amount_fen)
    try:
        async with in_transaction():
            entry = await post(
                key,
                EntryKind.ADJUSTMENT,
                [Leg(platform_account(AccountKind.ADJUSTMENTS, user_id), -amount_fen), Leg(user_account(user_id), amount_fen)],
                memo=reason.strip()[:255],
            )
            out = Pending()
            out.wallet_changed(user_id, EntryKind.ADJUSTMENT, amount_fen)
            await out.write()
            await audit.record("operator", operator_id, "ledger.adjust", "user", user_id, data={"amount_fen": amount_fen, "entry_id": entry}, reason=reason.strip())
        return entry
    except DuplicateEntry:
        return await _same_adjustment((await JournalEntry.get(key=key)).id, user_id, amount_fen)


async def _same_adjustment(entry_id: int, user_id: int, amount_fen: int) -> int:
    """A repeated request_id returns the first entry, if it really is the same adjustment."""
    from models.errors import IdempotencyConflict

    row = await db.fetch_one(
        "SELECT p.amount_fen FROM postings p JOIN accounts a ON a.id = p.account_id WHERE p.entry_id = $1 AND a.code = $2",
        entry_id, user_account(user_id),
    )
    if row is None or row["amount_fen"] != amount_fen:
        raise IdempotencyConflict()
    return entry_id
