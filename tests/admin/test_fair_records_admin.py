"""The customer page shows a customer's record, blocks and any limit (issue 14)."""

from __future__ import annotations

import pytest

from models import blocks, orders, records, tasks
from models import settings as market_settings
from tests import personas

pytestmark = pytest.mark.asyncio


async def test_a_customer_page_shows_the_record_blocks_and_limit(as_operator):
    await market_settings.update({"limit_max_abandons": 1}, operator_id=1)
    alice = await personas.publisher("alice", balance_fen=100_000)
    bob = await personas.worker("bob")
    task = await tasks.publish(alice.id, title="T", instructions="x", unit_price_fen=1_000)
    order = await orders.take(task.id, bob.id)
    await orders.abandon(order.id, bob.id)
    await blocks.block(alice.id, order_id=order.id, reason="abandons")
    await records.refresh_all()
    page = await as_operator.get(f"/admin/customers/{bob.id}")
    assert page.status_code == 200
    assert 'id="record"' in page.text and 'id="limited"' in page.text and "0 / 0 / 1" in page.text
    page = await as_operator.get(f"/admin/customers/{alice.id}")
    assert 'id="record"' in page.text and "新用户" in page.text
