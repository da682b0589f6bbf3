"""Payout races on PostgreSQL: WeChat's notification (repeated, as WeChat repeats it), the payout
checker (several, as several scheduler processes run) and operators acting on the same withdrawals at
the same moment. Whoever loses learns it quietly; the money moves exactly once and the ledger audit
stays clean."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from models import clock
from models import withdrawals as w_rules
from models.audit import AuditLog
from models.errors import AlreadyDecided, DomainError
from models.ledger import JournalEntry
from models.outbox import Outbox
from models.users import End
from models.withdrawals import Withdrawal, WithdrawalStatus
from tests import personas as p
from wechat.sandbox import make_transfer_notification

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres]

OPERATOR = 9_001
NOTIFY = "/api/wechat/transfer/notify"


async def paying(live, n: int, amount_fen: int = 1_000) -> tuple:
    alice, _ = await live.services.login(End.PUBLISHER, "alice-1")
    await p.fund(alice, n * amount_fen)
    ws = []
    for i in range(n):
        w = await w_rules.request(alice.id, amount_fen, request_id=f"race-{i}")
        w = await w_rules.approve(w.id, OPERATOR)
        ws.append(await live.services.start_payout(w))
    return alice, ws


def final_notification(live, w, state: str, **more):
    bill = live.state.transfers[w.out_bill_no]
    bill.update(state=state, **more)
    resource = {"mch_id": live.services.cfg.pay.mchid, "out_bill_no": w.out_bill_no, "transfer_bill_no": bill["transfer_bill_no"],
                "state": state, "transfer_amount": bill["transfer_amount"], "openid": bill["openid"], **more}
    return make_transfer_notification(live.keys, resource)


@pytest.mark.parametrize("state, paid", [("SUCCESS", True), ("FAIL", False)])
async def test_a_notification_and_two_checkers_settling_the_same_payouts_move_the_money_once(live, state, paid):
    alice, ws = await paying(live, 8)
    notes = [final_notification(live, w, state, **({"fail_reason": "TRANSFER_RISK"} if state == "FAIL" else {})) for w in ws]
    clock.advance(3_601)  # every payout is due for the checker as the notifications arrive
    work = [live.http.post(NOTIFY, content=body, headers=headers) for headers, body in notes * 2]
    work += [live.services.check_payouts(), live.services.check_payouts()]
    results = await asyncio.gather(*work)
    assert [r.status_code for r in results[:-2]] == [204] * 16
    statuses = {w.status for w in await Withdrawal.filter(id__in=[w.id for w in ws])}
    assert statuses == {WithdrawalStatus.PAID if paid else WithdrawalStatus.FAILED}
    assert await p.withdrawing(alice) == 0
    assert await p.available(alice) == (0 if paid else 8 * 1_000)
    await p.assert_books_clean()


async def test_an_operator_paying_by_hand_while_wechats_success_arrives_pays_once(live):
    alice, ws = await paying(live, 6)
    for w in ws:
        await w_rules.hold_payout(w.id, "checking by hand")
    notes = [final_notification(live, w, "SUCCESS") for w in ws]

    async def by_hand(w):
        try:
            return await w_rules.paid_by_hand(w.id, OPERATOR, reference=f"bank {w.id}")
        except AlreadyDecided:
            return None  # WeChat's success won

    results = await asyncio.gather(*(live.http.post(NOTIFY, content=b, headers=h) for h, b in notes),
                                   *(by_hand(w) for w in ws))
    assert all(r.status_code == 204 for r in results[:6])
    assert {w.status for w in await Withdrawal.filter(id__in=[w.id for w in ws])} == {WithdrawalStatus.PAID}
    assert await p.withdrawing(alice) == 0 and await p.available(alice) == 0
    await p.assert_books_clean()


async def test_checkers_side_by_side_take_each_payout_round_once(live, monkeypatch):
    live.state.transfer_script = ["ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM"]
    alice, ws = await paying(live, 10)
    real, calls = live.services.pay.create_transfer_bill, []

    async def counted(appid, out_bill_no, *args, **kw):
        calls.append(out_bill_no)
        return await real(appid, out_bill_no, *args, **kw)

    monkeypatch.setattr(live.services.pay, "create_transfer_bill", counted)
    clock.advance(3_601)
    handled = await asyncio.gather(*(live.services.check_payouts() for _ in range(4)))
    assert sum(handled) >= 10  # all four saw them due...
    assert sorted(calls) == sorted(w.out_bill_no for w in ws)  # ...and each round ran once
    assert {w.transfer_state for w in await Withdrawal.filter(id__in=[w.id for w in ws])} == {"PROCESSING"}
    await p.assert_books_clean()


async def outbox_of_withdrawal(wid: int) -> Counter:
    return Counter((r.channel.value, r.event, r.payload.get("status")) for r in await Outbox.all() if r.payload.get("withdrawal_id") == wid)


@pytest.mark.parametrize("state, paid", [("SUCCESS", True), ("FAIL", False)])
async def test_an_operators_requery_and_cancel_racing_the_notification_and_two_checkers_settle_once(live, monkeypatch, state, paid):
    """Each payout waits for the user's confirmation; WeChat has settled it and is notifying (twice)
    while two checkers, two operators' re-queries and an operator's cancel act on it at once. One
    final state, the money once, one set of outbox rows; the losers learn it quietly (a re-query
    beside a round in flight: payout_check_under_way) and no two rounds ever run side by side."""
    from server.reconciliation import _cancel_one

    alice, ws = await paying(live, 6)
    assert {w.transfer_state for w in ws} == {"WAIT_USER_CONFIRM"}
    notes = [final_notification(live, w, state, **({"fail_reason": "TRANSFER_RISK"} if state == "FAIL" else {})) for w in ws]
    in_flight, most = Counter(), Counter()
    real_round = live.services._payout_round

    async def watched(w):
        in_flight[w.id] += 1
        most[w.id] = max(most[w.id], in_flight[w.id])
        try:
            await asyncio.sleep(0.01)  # widen the window a second round would need
            return await real_round(w)
        finally:
            in_flight[w.id] -= 1

    monkeypatch.setattr(live.services, "_payout_round", watched)
    clock.advance(3_601)  # every payout is due for the checkers as well

    async def quietly(coro):
        try:
            return await coro
        except DomainError as exc:
            return exc

    results = await asyncio.gather(
        *(live.http.post(NOTIFY, content=body, headers=headers) for headers, body in notes * 2),
        live.services.check_payouts(), live.services.check_payouts(),
        *(quietly(live.services.requery_payout(w.id)) for w in ws * 2),
        *(_cancel_one(live.services, w) for w in ws),
    )

    assert [r.status_code for r in results[:12]] == [204] * 12
    requeries = results[14:26]
    assert {e.code for e in requeries if isinstance(e, DomainError)} <= {"payout_check_under_way"}
    assert max(most.values(), default=1) == 1  # never two rounds of one payout at once
    final = WithdrawalStatus.PAID if paid else WithdrawalStatus.FAILED
    for w in ws:
        assert (await Withdrawal.get(id=w.id)).status == final
        kind = "paid" if paid else "return"
        assert await JournalEntry.filter(key__startswith=f"withdrawal:{w.id}:").exclude(key=f"withdrawal:{w.id}:request").count() == 1
        assert await JournalEntry.filter(key=f"withdrawal:{w.id}:{kind}").count() == 1
        event = "payout_succeeded" if paid else "payout_failed"
        assert await AuditLog.filter(action=f"withdrawal.{event}", target_id=w.id).count() == 1
        rows = await outbox_of_withdrawal(w.id)
        assert rows[("push", "withdrawal.changed", final.value)] == 1
        assert rows[("subscribe", f"withdrawal_{final.value}", final.value)] == 1
    assert await p.withdrawing(alice) == 0
    assert await p.available(alice) == (0 if paid else 6 * 1_000)
    await p.assert_books_clean()


async def test_requeries_racing_checkers_on_unsettled_payouts_run_one_round_at_a_time(live, monkeypatch):
    live.state.transfer_script = ["WAIT_USER_CONFIRM"]
    alice, ws = await paying(live, 6)
    in_flight, most, rounds = Counter(), Counter(), Counter()
    real_round = live.services._payout_round

    async def watched(w):
        in_flight[w.id] += 1
        rounds[w.id] += 1
        most[w.id] = max(most[w.id], in_flight[w.id])
        try:
            await asyncio.sleep(0.02)
            return await real_round(w)
        finally:
            in_flight[w.id] -= 1

    monkeypatch.setattr(live.services, "_payout_round", watched)
    clock.advance(3_601)

    async def quietly(coro):
        try:
            return await coro
        except DomainError as exc:
            return exc

    results = await asyncio.gather(live.services.check_payouts(), live.services.check_payouts(),
                                   *(quietly(live.services.requery_payout(w.id)) for w in ws * 3))

    losses = [r for r in results[2:] if isinstance(r, DomainError)]
    assert {e.code for e in losses} <= {"payout_check_under_way"}
    assert max(most.values()) == 1
    for w in ws:
        assert 1 <= rounds[w.id] <= 4
        after = await Withdrawal.get(id=w.id)
        assert (after.status, after.transfer_state, after.payout_lease_until) == (WithdrawalStatus.PAYING, "WAIT_USER_CONFIRM", None)
        assert after.payout_checks == w.payout_checks + rounds[w.id]  # each round counted once
    assert await p.withdrawing(alice) == 6 * 1_000
    await p.assert_books_clean()
