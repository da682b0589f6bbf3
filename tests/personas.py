"""Personas for the tests: publisher Alice, worker Bob, outsider Charlie, and their inviters."""

from __future__ import annotations

import itertools

from models import ledger, recharges
from models.ledger import AccountKind
from models.users import End, User, login_or_register

_seq = itertools.count(1)


async def user(end: End, name: str, *, inviter: User | None = None, unionid: str | None = None) -> User:
    u, _ = await login_or_register(
        end, f"openid-{name}-{next(_seq)}", unionid=unionid, invite_code=inviter.invite_code if inviter else None, nickname=name
    )
    return u


async def publisher(name: str = "alice", *, balance_fen: int = 0, inviter: User | None = None, unionid: str | None = None) -> User:
    u = await user(End.PUBLISHER, name, inviter=inviter, unionid=unionid)
    if balance_fen:
        await fund(u, balance_fen)
    return u


async def worker(name: str = "bob", *, inviter: User | None = None, unionid: str | None = None) -> User:
    return await user(End.WORKER, name, inviter=inviter, unionid=unionid)


async def fund(u: User, amount_fen: int) -> None:
    """Recharge through the same path a verified WeChat Pay notification takes."""
    n = next(_seq)
    r = await recharges.create(u.id, amount_fen, request_id=f"fund-{n}")
    await recharges.credit(r.out_trade_no, transaction_id=f"tx-{u.id}-{n}", amount_fen=amount_fen)


async def available(u: User | int) -> int:
    return await ledger.balance(ledger.user_account(u if isinstance(u, int) else u.id, AccountKind.AVAILABLE))


async def withdrawing(u: User | int) -> int:
    return await ledger.balance(ledger.user_account(u if isinstance(u, int) else u.id, AccountKind.WITHDRAWING))


async def platform(kind: AccountKind) -> int:
    return await ledger.platform_balance(kind)


async def assert_books_clean() -> None:
    report = await ledger.audit()
    assert report.ok, report.text()
