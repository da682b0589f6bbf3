"""An operator ends a stuck order (issue 13): force complete (flow 4: P to the worker, F to fees
minus the referral rewards) or force fail (flow 5: P+F back to the publisher), with a reason.

From any live state (in progress, awaiting review, rejected, appealing), but only from the state
the operator saw when confirming (`expected`): the transition is one conditional
`UPDATE orders ... WHERE id = ? AND status = <expected>`, so the worker, the publisher or a timer
that moved the order meanwhile wins and the operator is told, and a repeated confirmation (Back +
submit, a double click, two operators) moves no money: the order is final after the first one. The
ledger entries are the domain's own (`order:<id>:complete` / `order:<id>:fail`, unique keys), written
in the same transaction as the update, its outbox rows and its audit row (models/orders.py `_act`,
whose effects these reuse). Overdue timers are applied first: an order whose deadline has passed is
settled as the rules say before an operator can override it.
"""

from __future__ import annotations

from typing import Any

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models import audit, clock
from models import orders as order_rules
from models.errors import AlreadyDecided, InvalidTransition, OrderNotFound
from models.inputs import clean_text
from models.orders import FINAL_STATES, LIVE_STATES, Order, OrderEvent, OrderStatus
from models.outbox import Pending

E = OrderEvent
TARGET = {E.FORCE_COMPLETE: OrderStatus.COMPLETED, E.FORCE_FAIL: OrderStatus.FAILED}
# The transitions, declared as data like models/orders.py TRANSITIONS: every live state → the target.
OVERRIDES: dict[tuple[OrderStatus, OrderEvent], OrderStatus] = {
    (source, event): target for event, target in TARGET.items() for source in LIVE_STATES
}


async def money(o: Order, event: OrderEvent) -> dict[str, int]:
    """What the override moves, in fen, as the ledger will post it (shown before confirming): the
    completion's own split, with the referral rule that posting applies (`invitees_qualify`)."""
    if event == E.FORCE_FAIL:
        return {"refund_fen": o.unit_price_fen + o.fee_fen}
    return order_rules.completion_summary(o, await order_rules.invitees_qualify(o))


async def preview(order_id: int) -> Order:
    """The order as it stands now (overdue timers applied): what the confirmation shows."""
    order = await Order.get_or_none(id=order_id)
    if order is None:
        raise OrderNotFound()
    return await order_rules.settle_due(order)


async def force(order_id: int, operator_id: int, *, complete: bool, reason: str, expected: str) -> Order:
    """Force the order to completed or failed, only from the `expected` (live) state."""
    reason = clean_text(reason, "reason", order_rules.REASON_MAX, required=True, multiline=True)
    event = E.FORCE_COMPLETE if complete else E.FORCE_FAIL
    order = await preview(order_id)
    source = OrderStatus(expected) if expected in {s.value for s in LIVE_STATES} else None
    if source is None or order.status != source:
        raise _refusal(order, event)
    now = clock.now()
    values: dict[str, Any] = {"due_at": None, "finished_at": now, "finished_by": event.value, "decided_by": operator_id,
                              "decision_note": reason}
    async with in_transaction():
        # Not past a due timer either: a deadline that passed since the preview is the timer's to
        # apply (its sweep or the next read), never overtaken by an operator.
        won = await Order.filter(Q(due_at__isnull=True) | Q(due_at__gt=now), id=order_id, status=source
                                 ).update(status=TARGET[event], **values) == 1
        if won:
            for name, value in values.items():
                setattr(order, name, value)
            order.status = TARGET[event]
            out = Pending()
            if source == OrderStatus.IN_PROGRESS:  # the worker's in-progress counter, as submit/abandon do
                await order_rules._release_worker_slot(order.worker_id)
            effect = order_rules._complete if complete else order_rules._fail
            moved, finish = await effect(order, event, out)
            order_rules._notify(order, event, out)
            await out.write()
            await audit.record("operator", operator_id, f"order.{event.value}", "order", order_id, reason=reason,
                               data={"from": source.value, "to": TARGET[event].value, **moved})
            await finish()  # the shared rows (task, platform accounts) last, as models/orders.py does
    if not won:
        raise _refusal(await Order.get(id=order_id), event)
    return order


def _refusal(current: Order, event: OrderEvent):
    if current.status in FINAL_STATES:
        return AlreadyDecided(status=current.status.value)
    return InvalidTransition(
        "The order changed meanwhile (now {status}); check it and confirm again.",
        zh="订单已有变化（当前为{status}），请核对后重新确认。",
        status=current.status.value, event=event.value,
    )
