"""Reconciliation with WeChat Pay's bills (issue 15): the sandbox serves the day's trade and fund-flow
bills built from what it processed; every kind of difference planted there (or in our books) is
found, recorded once, and nothing is changed automatically. Also: a payout the user never confirms
is cancelled after its deadline and the money returns to the user."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest

from models import clock, ledger
from models import recharges as recharge_rules
from models import withdrawals as w_rules
from models.reconciliation import Difference, DifferenceKind, DifferenceStatus, ReconciliationRun, RunStatus, resolve
from models.recharges import Recharge, RechargeStatus
from models.users import End
from models.withdrawals import Withdrawal, WithdrawalStatus
from server.reconciliation import cancel_overdue_transfers, reconcile_day
from tests import personas as p
from wechat import sandbox_bills
from wechat.config import CHINA_TZ

OPERATOR = 9_001


def today() -> dt.date:
    return dt.datetime.now(CHINA_TZ).date()


async def paid_recharge(live, who, amount_fen: int, *, notify: bool = True) -> Recharge:
    """`who` (a name or a user) starts a recharge and pays it at the sandbox; with notify=False
    WeChat's notification never reaches us (the sandbox marks the order paid without sending it)."""
    user = who if not isinstance(who, str) else (await live.services.login(End.PUBLISHER, f"{who}-{secrets.token_hex(3)}"))[0]
    who = getattr(user, "id", who)
    started = await live.services.start_recharge(user, amount_fen, f"r-{who}")
    if notify:
        r = await live.http.post("/sandbox/pay/_simulate/pay", json={"out_trade_no": started["out_trade_no"], "wait": True})
        assert r.status_code == 200, r.text
        await live.state.drain()
    else:
        order = live.state.orders[started["out_trade_no"]]
        order.update(trade_state="SUCCESS", trade_state_desc="支付成功", bank_type="OTHERS",
                     transaction_id=f"42000{secrets.randbelow(10**18):018d}",
                     success_time=dt.datetime.now(CHINA_TZ).isoformat(timespec="seconds"))
    return await Recharge.get(out_trade_no=started["out_trade_no"])


async def confirmed_payout(live, who: str, amount_fen: int = 10_000) -> Withdrawal:
    user, _ = await live.services.login(End.PUBLISHER, f"{who}-{secrets.token_hex(3)}")
    await paid_recharge(live, user, amount_fen * 2)  # funded the way WeChat sees it
    w = await w_rules.approve((await w_rules.request(user.id, amount_fen, request_id=f"w-{who}")).id, OPERATOR)
    w = await live.services.start_payout(w)
    r = await live.http.post("/sandbox/pay/_simulate/confirm_transfer", json={"out_bill_no": w.out_bill_no, "wait": True})
    assert r.status_code == 200, r.text
    await live.state.drain()
    return await Withdrawal.get(id=w.id)


async def waiting_payout(live, who: str, amount_fen: int = 10_000) -> Withdrawal:
    """Approved, transfer bill created, the user has not confirmed it (WAIT_USER_CONFIRM)."""
    user, _ = await live.services.login(End.PUBLISHER, f"{who}-{secrets.token_hex(3)}")
    await paid_recharge(live, user, amount_fen * 2)
    w = await w_rules.approve((await w_rules.request(user.id, amount_fen, request_id=f"w-{who}")).id, OPERATOR)
    return await live.services.start_payout(w)


async def books() -> dict:
    """Everything reconciliation must never touch."""
    return {
        "balances": sorted(await ledger.Account.all().values_list("code", "balance_fen")),
        "entries": await ledger.JournalEntry.all().count(),
        "recharges": sorted(await Recharge.all().values_list("id", "status")),
        "withdrawals": sorted(await Withdrawal.all().values_list("id", "status")),
    }


@pytest.mark.asyncio
async def test_a_day_where_both_sides_agree_is_clean(live):
    await paid_recharge(live, "alice", 10_000)
    w = await confirmed_payout(live, "bob")
    assert w.status == WithdrawalStatus.PAID

    status, new = await reconcile_day(live.services, live.config, today())

    assert (status, [(d.kind, d.details) for d in new]) == (RunStatus.CLEAN, [])
    run = await ReconciliationRun.get(bill_date=today())
    assert (run.trade_rows, run.fund_rows) == (2, 1)
    assert await Difference.all().count() == 0


@pytest.mark.asyncio
async def test_every_kind_of_difference_is_found_once_and_nothing_is_changed(live):
    good = await paid_recharge(live, "alice", 10_000)
    # 1. WeChat has a payment we never credited (its notification never came).
    uncredited = await paid_recharge(live, "carol", 5_000, notify=False)
    # 2. We credited a payment WeChat has no trace of.
    ghost = await recharge_rules.create((await live.services.login(End.PUBLISHER, "dave-1"))[0].id, 7_000, request_id="g")
    await recharge_rules.credit(ghost.out_trade_no, transaction_id="4200000000000000000001", amount_fen=7_000)
    # 3. Both know the payment; WeChat's bill says another amount.
    skewed = await paid_recharge(live, "erin", 3_000)
    live.state.orders[skewed.out_trade_no]["amount_total"] = 3_100
    # 4. WeChat refunded part of Alice's payment (say, by hand in the merchant platform).
    sandbox_bills.plant_refund(live.state, good.out_trade_no, 2_500)
    # 5. WeChat paid out a transfer we know nothing about.
    live.state.transfers["WUNKNOWN0001"] = {
        "mch_id": live.state.keys.mchid, "appid": live.services.cfg.publisher.appid, "out_bill_no": "WUNKNOWN0001",
        "transfer_bill_no": "1330000999", "openid": "o" + "x" * 27, "transfer_amount": 4_200, "transfer_remark": "?",
        "transfer_scene_id": "1005", "notify_url": "", "state": "SUCCESS", "package_info": "",
        "create_time": dt.datetime.now(CHINA_TZ).isoformat(), "update_time": dt.datetime.now(CHINA_TZ).isoformat()}
    # 6. We marked a withdrawal paid through WeChat, but WeChat never paid it (still unconfirmed there).
    unpaid = await waiting_payout(live, "frank")
    await w_rules.payout_succeeded(unpaid.id, transfer_bill_no=unpaid.transfer_bill_no)
    # 7. A transfer paid by WeChat for another amount than ours.
    odd = await confirmed_payout(live, "gina")
    live.state.transfers[odd.out_bill_no]["transfer_amount"] += 1
    # 8. A payout still in flight long after its approval.
    stuck = await waiting_payout(live, "hank")
    before = await books()
    clock.advance(live.config.reconciliation.stuck_transfer_s + 60)

    status, new = await reconcile_day(live.services, live.config, today())

    assert status == RunStatus.DIFFERENCES
    found = {(d.kind, d.ref_kind, d.ref_id, d.our_amount_fen, d.wechat_amount_fen) for d in new}
    assert found == {
        (DifferenceKind.PAYMENT_NOT_CREDITED, "recharge", uncredited.id, 5_000, 5_000),
        (DifferenceKind.CREDIT_NOT_IN_BILL, "recharge", ghost.id, 7_000, None),
        (DifferenceKind.AMOUNT_MISMATCH, "recharge", skewed.id, 3_000, 3_100),
        (DifferenceKind.REFUND_NOT_RECORDED, None, None, None, 2_500),
        (DifferenceKind.PAYOUT_NOT_RECORDED, None, None, None, 4_200),
        (DifferenceKind.PAYOUT_NOT_IN_BILL, "withdrawal", unpaid.id, 9_900, None),
        (DifferenceKind.AMOUNT_MISMATCH, "withdrawal", odd.id, 9_900, 9_901),
        (DifferenceKind.TRANSFER_STUCK, "withdrawal", stuck.id, 9_900, None),
    }
    assert all(d.status == DifferenceStatus.OPEN for d in new)
    assert await books() == before, "reconciliation must never change money or states"
    assert (await Recharge.get(id=uncredited.id)).status == RechargeStatus.PENDING

    # Running the day again (the command forces it) records nothing twice.
    status, again = await reconcile_day(live.services, live.config, today(), force=True)
    assert (status, again) == (RunStatus.DIFFERENCES, [])
    assert await Difference.all().count() == 8
    assert (await ledger.audit()).ok


@pytest.mark.asyncio
async def test_a_done_day_is_not_claimed_again_by_the_scheduler_but_a_waiting_one_is(live):
    assert await reconcile_day(live.services, live.config, today()) == (RunStatus.CLEAN, [])
    assert await reconcile_day(live.services, live.config, today()) == (None, [])  # another scheduler: done
    future = today() + dt.timedelta(days=1)  # WeChat: NO_STATEMENT_EXIST (not generated yet)
    assert (await reconcile_day(live.services, live.config, future))[0] == RunStatus.WAITING
    assert (await reconcile_day(live.services, live.config, future))[0] == RunStatus.WAITING  # claimed again


@pytest.mark.asyncio
async def test_an_operator_resolves_a_difference_once_with_a_note(live):
    await paid_recharge(live, "carol", 5_000, notify=False)
    _, new = await reconcile_day(live.services, live.config, today())
    d = await resolve(new[0].id, OPERATOR, note="补记充值：已人工调整")
    assert (d.status, d.resolved_by, d.note) == (DifferenceStatus.RESOLVED, OPERATOR, "补记充值：已人工调整")
    from models.errors import AlreadyDecided, InvalidInput

    with pytest.raises(AlreadyDecided):
        await resolve(new[0].id, OPERATOR + 1, note="again")
    with pytest.raises(InvalidInput):
        await resolve(new[0].id, OPERATOR, note="  ")


@pytest.mark.asyncio
async def test_a_transfer_the_user_never_confirms_is_cancelled_after_its_deadline_and_refunded(live):
    live.state.cancel_delay_s = None  # WeChat takes its time: CANCELING until finish_cancel()
    w = await waiting_payout(live, "ivy")
    fresh = await waiting_payout(live, "jack")
    available = await p.available(w.user_id)
    assert live.state.transfers[w.out_bill_no]["state"] == "WAIT_USER_CONFIRM"
    deadline = live.config.reconciliation.transfer_confirm_deadline_s

    assert await cancel_overdue_transfers(live.services, deadline) == 0  # not due yet: untouched
    clock.advance(deadline + 1)
    await w_rules.Withdrawal.filter(id=fresh.id).update(decided_at=clock.now())  # approved just now

    assert await cancel_overdue_transfers(live.services, deadline) == 1
    assert live.state.transfers[w.out_bill_no]["state"] == "CANCELING"
    w = await Withdrawal.get(id=w.id)
    # CANCELING is not WeChat's final word: the money stays in withdrawing, the payout in flight.
    assert (w.status, w.transfer_state) == (WithdrawalStatus.PAYING, "CANCELING")
    assert await p.available(w.user_id) == available
    assert (await Withdrawal.get(id=fresh.id)).status == WithdrawalStatus.PAYING

    live.state.finish_cancel(w.out_bill_no)  # CANCELLED, and WeChat's notification
    await live.state.drain()
    w = await Withdrawal.get(id=w.id)
    assert w.status == WithdrawalStatus.FAILED and "撤销" in w.reason
    assert await p.available(w.user_id) == available + w.amount_fen  # the whole A is back
    await cancel_overdue_transfers(live.services, deadline)  # a later round changes nothing
    assert await p.available(w.user_id) == available + w.amount_fen
    assert (await ledger.audit()).ok


@pytest.mark.asyncio
async def test_an_overdue_cancel_whose_notification_is_lost_ends_on_the_checkers_query(live):
    live.state.cancel_delay_s = None
    w = await waiting_payout(live, "lee")
    available = await p.available(w.user_id)
    clock.advance(live.config.reconciliation.transfer_confirm_deadline_s + 1)
    await cancel_overdue_transfers(live.services, live.config.reconciliation.transfer_confirm_deadline_s)
    live.state.transfers[w.out_bill_no]["state"] = "CANCELLED"  # final at WeChat; the notification got lost
    await live.services.check_payouts()
    assert (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.PAYING  # not due yet
    clock.advance(60)
    await live.services.check_payouts()
    assert (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.FAILED
    assert await p.available(w.user_id) == available + w.amount_fen
    assert (await ledger.audit()).ok


@pytest.mark.asyncio
async def test_an_overdue_transfer_the_user_confirmed_meanwhile_is_paid_not_cancelled(live):
    w = await waiting_payout(live, "kim")
    live.state.transfers[w.out_bill_no]["state"] = "SUCCESS"  # confirmed; the notification got lost
    clock.advance(live.config.reconciliation.transfer_confirm_deadline_s + 1)
    await cancel_overdue_transfers(live.services, live.config.reconciliation.transfer_confirm_deadline_s)
    assert (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.PAID


@pytest.mark.asyncio
async def test_an_overdue_pass_takes_the_checkers_lease_and_leaves_its_schedule_when_there_is_nothing_to_cancel(live):
    """The transfer-deadline job acts as a payout round (never beside the checker's): on a transfer
    the user confirmed (TRANSFERING) it does nothing, and the checker's next check stays where it was;
    while a checker's round holds the payout, the pass leaves it for the next one."""
    from server.wechat_payouts import PAYOUT_LEASE_S

    w = await waiting_payout(live, "max")
    live.state.transfers[w.out_bill_no]["state"] = "TRANSFERING"
    clock.advance(live.config.reconciliation.transfer_confirm_deadline_s + 1)
    before = await Withdrawal.get(id=w.id)
    await cancel_overdue_transfers(live.services, live.config.reconciliation.transfer_confirm_deadline_s)
    after = await Withdrawal.get(id=w.id)
    assert (after.status, after.payout_check_at, after.payout_lease_until) == (WithdrawalStatus.PAYING, before.payout_check_at, None)
    live.state.transfers[w.out_bill_no]["state"] = "WAIT_USER_CONFIRM"  # (as if) still cancellable...
    assert await w_rules.claim_payout_check(w.id, after.payout_check_at, PAYOUT_LEASE_S)  # ...but a checker's round is in flight
    await cancel_overdue_transfers(live.services, live.config.reconciliation.transfer_confirm_deadline_s)
    assert live.state.transfers[w.out_bill_no]["state"] == "WAIT_USER_CONFIRM"  # not cancelled beside the round
