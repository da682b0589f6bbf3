"""More races on PostgreSQL, each with its losing side: operators' balance adjustments repeated
with one request_id, two blocks of one worker, the compliance gate's hold racing two operators'
decisions, and the automatic appeal decision racing operators and the publisher's answer.

As in test_races.py: every crowd runs on its own pooled connections, so the database decides who
wins; the winner moves the money once (one journal entry, one audit row, one set of outbox rows),
every loser gets a typed DomainError or a quiet no-op, and the ledger audit stays clean.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from models import appeals, blocks, clock, compliance, ledger, orders, tasks
from models import settings as market_settings
from models.appeals import AppealAutoDecision
from models.audit import AuditLog
from models.blocks import PublisherBlock
from models.errors import DomainError
from models.ledger import JournalEntry
from models.orders import Order, OrderStatus
from models.outbox import Outbox
from models.tasks import Task, TaskStatus
from tests import personas as p
from tests.models._support import FEE, OPERATOR_ID, PRICE, advance_to, cast, order_in
from tests.models.test_races import books_clean, codes, crowd, split, warm_pool  # noqa: F401

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio]

SLOT = PRICE + FEE
OPERATOR_2 = OPERATOR_ID + 1


async def outbox_of(key: str, value: int) -> Counter:
    """The outbox rows whose payload names `key` = value, counted by (channel, event, user)."""
    return Counter((r.channel.value, r.event, r.user_id) for r in await Outbox.all() if r.payload.get(key) == value)


# --- b. an operator's balance adjustment, sent many times at once ------------------------------------
async def test_one_adjustment_request_sent_twenty_times_at_once_moves_the_money_once(database):
    bob = await p.worker("bob")

    results = await crowd(ledger.adjust(bob.id, 500, operator_id=OPERATOR_ID, reason="goodwill", request_id="adj-1")
                          for _ in range(20))

    wins, losses = split(results)
    assert not losses and len(set(wins)) == 1  # every repeat answers the first entry
    assert await JournalEntry.filter(key="adjustment:adj-1").count() == 1
    assert await p.available(bob) == 500
    assert await AuditLog.filter(action="ledger.adjust", target_id=bob.id).count() == 1
    assert await outbox_of("reason", "adjustment") == Counter({("push", "wallet.changed", bob.id): 1})
    await books_clean()


async def test_a_request_id_reused_for_another_amount_at_once_loses_with_idempotency_conflict(database):
    bob = await p.worker("bob")
    await ledger.adjust(bob.id, 1_000, operator_id=OPERATOR_ID, reason="opening", request_id="adj-0")

    results = await crowd([ledger.adjust(bob.id, 500, operator_id=OPERATOR_ID, reason="refund", request_id="adj-2") for _ in range(10)]
                          + [ledger.adjust(bob.id, -700, operator_id=OPERATOR_2, reason="claw back", request_id="adj-2") for _ in range(10)])

    wins, losses = split(results)
    [entry] = await JournalEntry.filter(key="adjustment:adj-2")
    assert set(wins) == {entry.id}
    moved = await p.available(bob) - 1_000
    assert moved in (500, -700)
    # Whoever asked for the other amount learns that this request id is spent.
    assert codes(losses) == Counter({"idempotency_conflict": 10})
    assert len(wins) == 10 and set(wins) == {entry.id}
    assert await AuditLog.filter(action="ledger.adjust", target_id=bob.id).count() == 2  # the opening one and the winner
    await books_clean()


# --- e. two blocks of one worker by one publisher ------------------------------------------------------
async def test_a_publisher_blocking_one_worker_twice_at_once_makes_one_block(database):
    c = await cast()
    order = await order_in(OrderStatus.COMPLETED, c)
    outbox_before = await Outbox.all().count()

    results = await crowd([blocks.block(c.alice.id, worker_id=c.bob.id, reason="copied screenshots") for _ in range(5)]
                          + [blocks.block(c.alice.id, order_id=order.id, reason="second tab") for _ in range(5)])

    wins, losses = split(results)
    assert not losses
    [row] = await PublisherBlock.filter(publisher_id=c.alice.id, worker_id=c.bob.id)
    assert {b.id for b, _ in wins} == {row.id}  # the losers get the block that stands...
    assert sum(new for _, new in wins) == 1  # ...and learn it was not theirs
    assert await AuditLog.filter(action="worker.block", target_id=c.bob.id).count() == 1
    assert await Outbox.all().count() == outbox_before  # a block tells nobody
    with pytest.raises(DomainError) as refused:
        await orders.take((await tasks.publish(c.alice.id, title="t", instructions="i", unit_price_fen=PRICE)).id, c.bob.id)
    assert refused.value.code == "blocked_by_publisher"
    await books_clean()


# --- d. the compliance gate's hold and two operators' decisions on one task --------------------------
HOLD_EVENTS = {  # the outbox rows each winner writes for the task
    "task.compliance_approve": {"hall.task_published", "task.published"},
    "task.compliance_hold": {"hall.task_removed", "task.held"},
    "task.compliance_refuse": {"wallet.changed", "task.refused"},
}


async def test_a_wechat_hold_racing_two_operators_on_held_tasks_leaves_every_task_consistent(database):
    """Ten held tasks; on each at once: operator 1 approves, operator 2 refuses, and WeChat's image
    verdict holds it (hold_open). Only serial histories may result: approve, or approve then hold,
    or refuse, or approve then hold then refuse — never approve and refuse of the same hold."""
    alice = await p.publisher("alice", balance_fen=10 * 2 * SLOT)
    await market_settings.update({"compliance_hold_on_match": 1}, operator_id=OPERATOR_ID)
    held = [await tasks.publish(alice.id, title="刷票", instructions="x", unit_price_fen=PRICE, quantity=2) for _ in range(10)]

    results = await crowd(
        [compliance.approve_held(t.id, operator_id=OPERATOR_ID) for t in held]
        + [compliance.refuse_held(t.id, operator_id=OPERATOR_2, reason="有偿投票") for t in held]
        + [compliance.hold_open(t.id, "wechat:image:risky:20002") for t in held]
    )

    _, losses = split(results)
    assert set(codes(losses)) <= {"task_not_held"}, codes(losses)
    refunded = 0
    for i, t in enumerate(held):
        approve, refuse, hold = results[i], results[10 + i], results[20 + i]
        actions = Counter(r.action for r in await AuditLog.filter(target_kind="task", target_id=t.id) if r.action != "task.publish")
        assert set(actions.values()) <= {1}, actions  # each decision at most once
        won = set(actions)
        assert (not isinstance(approve, DomainError)) == ("task.compliance_approve" in won)
        assert (not isinstance(refuse, DomainError)) == ("task.compliance_refuse" in won)
        assert hold is ("task.compliance_hold" in won)
        assert "task.compliance_hold" not in won or "task.compliance_approve" in won  # only an opened task is held
        final = await Task.get(id=t.id)
        if "task.compliance_refuse" in won:
            assert (final.status, final.slots_untaken, final.slots_refunded) == (TaskStatus.REFUSED, 0, 2)
            refunded += 2 * SLOT
            assert await JournalEntry.filter(key=f"task:{t.id}:refuse").count() == 1
        elif "task.compliance_hold" in won:
            assert final.status == TaskStatus.HELD
        else:
            assert won == {"task.compliance_approve"} and final.status == TaskStatus.OPEN
        events = Counter(r.event for r in await Outbox.all() if r.payload.get("task_id") == t.id)
        expected = Counter(e for action in won for e in HOLD_EVENTS[action]) + Counter({"task.held": 1, "wallet.changed": 1})  # the publish's own
        assert events == expected, (won, events)
    assert await p.available(alice) == refunded
    await books_clean()


# --- a. the automatic appeal decision, operators and the publisher's answer ---------------------------
async def appeals_with_an_answer_deadline(n: int):
    """n appealing orders of Alice's, each with a rule's answer deadline (publisher_loss_rate)."""
    c = await cast()
    await appeals.update_rule("publisher_loss_rate", enabled=True, operator_id=OPERATOR_ID,
                              params={"loss_rate_bp": 0, "window_days": 90, "min_appeals": 1, "grace_s": 600})
    lost = await order_in(OrderStatus.APPEALING, c)
    await orders.arbitrate(lost.id, OPERATOR_ID, worker_wins=True, note="the proof is fine")
    os = [await Order.get(id=(await order_in(OrderStatus.APPEALING, c)).id) for _ in range(n)]
    assert all(o.answer_due_at is not None for o in os)
    return c, os


async def test_after_the_answer_deadline_the_rule_two_operators_and_the_answer_decide_each_appeal_once(database):
    n = 6
    c, os = await appeals_with_an_answer_deadline(n)
    advance_to(max(o.answer_due_at for o in os))
    bob_before, alice_before = await p.available(c.bob), await p.available(c.alice)

    results = await crowd(
        [appeals.sweep_unanswered(), appeals.sweep_unanswered()]
        + [orders.arbitrate(o.id, OPERATOR_ID, worker_wins=True, note="op 1: worker") for o in os]
        + [orders.arbitrate(o.id, OPERATOR_2, worker_wins=False, note="op 2: publisher") for o in os]
        + [appeals.answer(o.id, c.alice.id, text="the nickname differs") for o in os]
        + [orders.get_order(o.id, worker_id=c.bob.id) for o in os]  # a read applies the rule too
    )

    swept = results[0] + results[1]
    op1, op2, answers = results[2:2 + n], results[2 + n:2 + 2 * n], results[2 + 2 * n:2 + 3 * n]
    # The deadline has passed: the publisher's answer always loses, and says the order's state.
    assert all(isinstance(a, DomainError) and a.code == "invalid_transition" for a in answers)
    autos, worker_wins = 0, 0
    for o, first, second in zip(os, op1, op2):
        done = await Order.get(id=o.id)
        assert done.status in (OrderStatus.COMPLETED, OrderStatus.FAILED) and done.answered_at is None
        decisions = await AppealAutoDecision.filter(order_id=o.id).count()
        operators_won = [r for r in (first, second) if not isinstance(r, DomainError)]
        assert decisions + len(operators_won) == 1, (decisions, first, second)
        for lost in (r for r in (first, second) if isinstance(r, DomainError)):
            assert lost.code == "already_decided"
        autos += decisions
        key = f"order:{o.id}:complete" if done.status == OrderStatus.COMPLETED else f"order:{o.id}:fail"
        assert await JournalEntry.filter(order_id=o.id, key__startswith=f"order:{o.id}:").count() == 1
        assert await JournalEntry.filter(key=key).count() == 1
        worker_wins += done.status == OrderStatus.COMPLETED
        decided = await AuditLog.filter(target_kind="order", target_id=o.id, action__in=["order.arbitrate_worker", "order.arbitrate_publisher"])
        assert len(decided) == 1
        rows = await outbox_of("order_id", o.id)
        after_appeal = Counter({k: v for k, v in rows.items() if k[1] in ("order.changed", "wallet.changed", "appeal_decided")})
        changed = {k: v for k, v in after_appeal.items() if k[1] == "order.changed"}
        assert not any(k[1] == "order.answered" for k in rows)  # the answers all lost: nobody was told of one
        # One decision's rows: order.changed to both (plus the earlier transitions'), one wallet change, one message.
        assert sum(v for k, v in after_appeal.items() if k[1] == "appeal_decided") == 1
        assert sum(v for k, v in after_appeal.items() if k[1] == "wallet.changed") == 1
        assert sum(changed.values()) == 1 + 2 * 4  # the take's (to the worker), then submit, reject, appeal and one decision
    assert swept <= autos  # a sweep counts only what it decided (a read may have decided the rest)
    assert await p.available(c.bob) - bob_before == worker_wins * PRICE
    assert await p.available(c.alice) - alice_before == (n - worker_wins) * SLOT
    await books_clean()


async def test_before_the_answer_deadline_the_answer_and_two_operators_race_and_the_rule_stays_quiet(database):
    n = 6
    c, os = await appeals_with_an_answer_deadline(n)
    advance_to(min(o.answer_due_at for o in os), plus_s=-1)  # a second before the rule may decide
    bob_before, alice_before = await p.available(c.bob), await p.available(c.alice)

    results = await crowd(
        [appeals.sweep_unanswered(), appeals.sweep_unanswered()]
        + [orders.arbitrate(o.id, OPERATOR_ID, worker_wins=True, note="op 1: worker") for o in os]
        + [orders.arbitrate(o.id, OPERATOR_2, worker_wins=False, note="op 2: publisher") for o in os]
        + [appeals.answer(o.id, c.alice.id, text="the nickname differs") for o in os]
    )

    assert results[:2] == [0, 0] and await AppealAutoDecision.all().count() == 0
    op1, op2, answers = results[2:2 + n], results[2 + n:2 + 2 * n], results[2 + 2 * n:]
    worker_wins = 0
    for o, first, second, answer in zip(os, op1, op2, answers):
        done = await Order.get(id=o.id)
        won = [r for r in (first, second) if not isinstance(r, DomainError)]
        assert len(won) == 1 and [r.code for r in (first, second) if isinstance(r, DomainError)] == ["already_decided"]
        worker_wins += done.status == OrderStatus.COMPLETED
        assert await JournalEntry.filter(key__startswith=f"order:{o.id}:").count() == 1
        rows = await outbox_of("order_id", o.id)
        assert sum(v for k, v in rows.items() if k[1] == "order.changed") == 1 + 2 * 4  # take (worker), submit, reject, appeal, decision
        answered = {k: v for k, v in rows.items() if k[1] == "order.answered"}
        if isinstance(answer, DomainError):  # the decision came first: too late to answer, nobody told
            assert answer.code == "invalid_transition" and answer.details["status"] == done.status.value
            assert done.answered_at is None and answered == {}
        else:  # answered first, then decided: the answer told both sides once
            assert done.answered_at is not None and done.answer_text == "the nickname differs"
            assert answered == {("push", "order.answered", c.bob.id): 1, ("push", "order.answered", c.alice.id): 1}
            assert await AuditLog.filter(action="order.appeal_answer", target_id=o.id).count() == 1
    assert await p.available(c.bob) - bob_before == worker_wins * PRICE
    assert await p.available(c.alice) - alice_before == (n - worker_wins) * SLOT
    await books_clean()
