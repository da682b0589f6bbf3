import pytest

from models import orders, referrals, tasks
from models.ledger import AccountKind
from tests import personas as p


@pytest.mark.asyncio
async def test_a_task_goes_from_publishing_to_payment(database):
    carol = await p.publisher("carol")
    alice = await p.publisher("alice", balance_fen=10_000, inviter=carol)
    dave = await p.worker("dave")
    bob = await p.worker("bob", inviter=dave)
    task = await tasks.publish(alice.id, title="Scan", instructions="Scan the code", unit_price_fen=1_000, quantity=2)
    assert await p.available(alice) == 10_000 - 2 * 1_100
    order = await orders.take(task.id, bob.id)
    order = await orders.submit(order.id, bob.id, proof_text="done")
    order = await orders.approve(order.id, alice.id)
    assert order.status == orders.OrderStatus.COMPLETED
    assert await p.available(bob) == 1_000
    await referrals.settle()
    assert await p.available(dave) == 50
    assert await p.available(carol) == 20
    assert await p.platform(AccountKind.FEES) == 100 - 50 - 20
    await p.assert_books_clean()
