"""The order page's money and the operator's overrides over HTTP (issue 13): the money shown before
confirming, a reason required, the state seen carried by the confirmation, audited, idempotent."""

from __future__ import annotations

import pytest

from models import orders
from models.audit import AuditLog
from models.ledger import JournalEntry
from models.orders import Order, OrderStatus
from tests import personas
from tests.admin.conftest import appealed_order, completed_order


@pytest.mark.asyncio
async def test_the_money_section_lists_every_posting_with_names(as_operator):
    order = await completed_order(price_fen=500)
    page = await as_operator.get(f"/admin/orders/{order.id}")
    money = page.text[page.text.index('id="money"'):]
    assert "订单完成" in money and "¥5.00" in money and "托管" in money and "平台手续费" in money
    assert f"/admin/customers/{order.worker_id}" in money
    assert 'id="override"' not in page.text  # a final order has no overrides


@pytest.mark.asyncio
async def test_force_complete_shows_the_money_then_needs_a_reason_then_pays_once(as_operator, operator):
    order, alice, bob = await appealed_order(price_fen=800)
    page = await as_operator.get(f"/admin/orders/{order.id}", params={"force": "complete"})
    box = page.text[page.text.index('id="override"'):]
    assert "付给接单方" in box and "¥8.00" in box and "确认：强制完成" in box and 'name="expected" value="appealing"' in box
    assert (await Order.get(id=order.id)).status == OrderStatus.APPEALING  # showing moves nothing
    r = await as_operator.post(f"/admin/orders/{order.id}/force", {"action": "complete", "expected": "appealing", "reason": ""})
    assert r.status_code == 400 and "必须填写理由" in r.text
    before = await personas.available(bob)
    r = await as_operator.post(f"/admin/orders/{order.id}/force",
                               {"action": "complete", "expected": "appealing", "reason": "publisher unreachable for a week"})
    assert r.status_code == 303 and "order_forced" in r.headers["location"]
    assert await personas.available(bob) == before + 800
    row = await AuditLog.get(action="order.force_complete", target_id=order.id)
    assert (row.actor_kind, row.actor_id, row.reason) == ("operator", operator.id, "publisher unreachable for a week")
    page = await as_operator.get(f"/admin/orders/{order.id}")
    assert "运营强制完成" in page.text and "publisher unreachable for a week" in page.text
    # Back + submit again, or the other button: nothing more moves, and the operator is told
    for action in ("complete", "fail"):
        r = await as_operator.post(f"/admin/orders/{order.id}/force", {"action": action, "expected": "appealing", "reason": "again"})
        assert r.status_code == 409 and "订单已有变化" in r.text
    assert await JournalEntry.filter(order_id=order.id).count() == 1
    await personas.assert_books_clean()


@pytest.mark.asyncio
async def test_force_fail_refunds_and_a_state_changed_meanwhile_is_refused(as_operator):
    alice = await personas.publisher("alice", balance_fen=10_000)
    bob = await personas.worker("bob")
    from models import tasks

    task = await tasks.publish(alice.id, title="Follow", instructions="Follow us", unit_price_fen=500)
    order = await orders.take(task.id, bob.id)
    page = await as_operator.get(f"/admin/orders/{order.id}", params={"force": "fail"})
    assert "退还发单方" in page.text and 'value="in_progress"' in page.text
    await orders.submit(order.id, bob.id, proof_text="done")  # the worker acts while the operator reads
    r = await as_operator.post(f"/admin/orders/{order.id}/force", {"action": "fail", "expected": "in_progress", "reason": "stuck"})
    assert r.status_code == 409 and "订单已有变化（当前：待审核）" in r.text
    assert (await Order.get(id=order.id)).status == OrderStatus.AWAITING_REVIEW
    before = await personas.available(alice)
    r = await as_operator.post(f"/admin/orders/{order.id}/force", {"action": "fail", "expected": "awaiting_review", "reason": "fake task"})
    assert r.status_code == 303
    assert await personas.available(alice) == before + 500 + (await Order.get(id=order.id)).fee_fen
    assert (await as_operator.post(f"/admin/orders/{order.id}/force", {"action": "bogus", "reason": "x"})).status_code == 400
    await personas.assert_books_clean()


@pytest.mark.asyncio
async def test_a_task_page_shows_its_money_and_what_escrow_still_holds(as_operator):
    order = await completed_order(price_fen=500)
    page = await as_operator.get(f"/admin/tasks/{order.task_id}")
    money = page.text[page.text.index('id="money"'):]
    assert "发布任务（托管）" in money and "订单完成" in money and f'href="/admin/orders/{order.id}"' in money
    assert "该任务仍托管的金额 ¥0.00" in money  # one slot, completed: nothing left in escrow
