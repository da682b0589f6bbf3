"""Two operators, one appeal or one withdrawal, the same instant: exactly one effect, and the loser
is told plainly that somebody else decided first. On SQLite the requests interleave on one
connection; the `postgres` variants run them truly in parallel on separate connections."""

from __future__ import annotations

import asyncio

import pytest

from models.ledger import JournalEntry
from models.orders import Order, OrderStatus
from models.withdrawals import Withdrawal, WithdrawalStatus
from tests import personas
from tests.admin.conftest import appealed_order, make_operator, pending_withdrawal


async def two_operators(panel_factory, n: int = 2):
    return [await panel_factory(await make_operator()) for _ in range(n)]


def outcome(responses) -> tuple[int, list]:
    winners = [r for r in responses if r.status_code == 303]
    losers = [r for r in responses if r.status_code != 303]
    return len(winners), losers


@pytest.mark.asyncio
async def test_two_operators_deciding_one_appeal_make_one_decision(panel_factory):
    order, alice, bob = await appealed_order(price_fen=500)
    first, second = await two_operators(panel_factory)
    for p in (first, second):
        await p.get("/admin/appeals")
    responses = await asyncio.gather(
        first.post(f"/admin/appeals/{order.id}/decide", {"decision": "worker", "note": "worker is right"}),
        second.post(f"/admin/appeals/{order.id}/decide", {"decision": "publisher", "note": "publisher is right"}),
    )
    wins, losers = outcome(responses)
    assert wins == 1 and len(losers) == 1
    assert losers[0].status_code == 409 and "已被他人处理" in losers[0].text
    final = await Order.get(id=order.id)
    assert final.status in (OrderStatus.COMPLETED, OrderStatus.FAILED)
    assert await JournalEntry.filter(order_id=order.id).count() == 1  # paid or refunded, once
    await personas.assert_books_clean()


@pytest.mark.asyncio
async def test_two_operators_approving_one_withdrawal_pay_it_once(panel_factory):
    w, bob = await pending_withdrawal(5_000)
    first, second = await two_operators(panel_factory)
    for p in (first, second):
        await p.get("/admin/withdrawals")
    responses = await asyncio.gather(
        first.post(f"/admin/withdrawals/{w.id}/approve"),
        second.post(f"/admin/withdrawals/{w.id}/mark-paid", {"reference": "bank transfer 42"}),
    )
    wins, losers = outcome(responses)
    assert wins == 1 and losers[0].status_code == 409 and "已被他人处理" in losers[0].text
    after = await Withdrawal.get(id=w.id)
    assert after.status in (WithdrawalStatus.PAYING, WithdrawalStatus.PAID)
    assert await JournalEntry.filter(key=f"withdrawal:{w.id}:paid").count() <= 1
    await personas.assert_books_clean()


@pytest.mark.asyncio
async def test_a_double_click_on_approve_creates_one_payout(panel_factory, live):
    w, bob = await pending_withdrawal(5_000)
    (p,) = await two_operators(panel_factory, 1)
    await p.get("/admin/withdrawals")
    responses = await asyncio.gather(*(p.post(f"/admin/withdrawals/{w.id}/approve") for _ in range(2)))
    wins, losers = outcome(responses)
    assert wins == 1 and losers[0].status_code == 409
    assert len([b for b in live.app.ctx.wechat.sandbox.transfers.values() if b["out_bill_no"] == f"W{w.id:012d}"]) == 1


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_many_operators_racing_on_one_appeal_make_one_decision(panel_factory):
    order, alice, bob = await appealed_order(price_fen=500)
    panels = await two_operators(panel_factory, 6)
    for p in panels:
        await p.get("/admin/appeals")
    responses = await asyncio.gather(*(
        p.post(f"/admin/appeals/{order.id}/decide", {"decision": "worker" if i % 2 else "publisher", "note": f"op {i}"})
        for i, p in enumerate(panels)
    ))
    wins, losers = outcome(responses)
    assert wins == 1 and len(losers) == 5 and all(r.status_code == 409 for r in losers)
    assert await JournalEntry.filter(order_id=order.id).count() == 1
    await personas.assert_books_clean()


@pytest.mark.postgres
@pytest.mark.asyncio
async def test_many_operators_racing_on_one_withdrawal_pay_it_once(panel_factory):
    w, bob = await pending_withdrawal(5_000, funded_fen=20_000)
    panels = await two_operators(panel_factory, 6)
    for p in panels:
        await p.get("/admin/withdrawals")
    actions = [("approve", {}), ("mark-paid", {"reference": "bank"}), ("reject", {"reason": "no"})] * 2
    responses = await asyncio.gather(*(p.post(f"/admin/withdrawals/{w.id}/{a}", data) for p, (a, data) in zip(panels, actions)))
    wins, losers = outcome(responses)
    assert wins == 1 and all(r.status_code == 409 for r in losers)
    entries = await JournalEntry.filter(key__startswith=f"withdrawal:{w.id}:").exclude(key=f"withdrawal:{w.id}:request").count()
    assert entries <= 1
    await personas.assert_books_clean()
