"""Withdrawals as a work queue (issue 13): filters, sorting, the whole history, grouping, the risk
columns, a batch approval with one confirmation, and the payouts waiting for the user to confirm in
WeChat with their age, a re-query and a cancellation through the payout code."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import pytest

from models import ledger, withdrawals
from models.audit import AuditLog
from models.ledger import JournalEntry
from models.withdrawals import Withdrawal, WithdrawalStatus
from tests import personas
from tests.admin.conftest import appealed_order, pending_withdrawal


def ids_in(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'<tr id="withdrawal-(\d+)"', html)]


@pytest.mark.asyncio
async def test_the_queue_filters_sorts_groups_and_keeps_the_history(as_operator):
    small, bob = await pending_withdrawal(2_000)
    big, carol = await pending_withdrawal(9_000, funded_fen=30_000)
    second = await withdrawals.request(bob.id, 3_000, request_id="again")
    done, dave = await pending_withdrawal(4_000)
    await withdrawals.reject(done.id, 0, reason="suspicious")
    page = await as_operator.get("/admin/withdrawals")
    assert ids_in(page.text) == [small.id, big.id, second.id]  # pending, oldest first
    assert "共 3 笔，合计 ¥140.00" in page.text
    page = await as_operator.get("/admin/withdrawals", params={"sort": "amount"})
    assert ids_in(page.text) == [big.id, second.id, small.id]
    page = await as_operator.get("/admin/withdrawals", params={"min": "25", "max": "50"})
    assert ids_in(page.text) == [second.id]
    page = await as_operator.get("/admin/withdrawals", params={"state": "all"})
    assert set(ids_in(page.text)) == {small.id, big.id, second.id, done.id} and "suspicious" in page.text
    page = await as_operator.get("/admin/withdrawals", params={"state": "rejected", "user": dave.nickname})
    assert ids_in(page.text) == [done.id]
    page = await as_operator.get("/admin/withdrawals", params={"group": "user"})
    assert ids_in(page.text) == sorted([small.id, second.id, big.id], key=lambda i: (bob.id if i != big.id else carol.id, i))
    assert "共 2 笔，合计 ¥50.00" in page.text  # bob's two requests under one heading
    page = await as_operator.get("/admin/withdrawals", params={"older": "1"})
    assert ids_in(page.text) == []  # none has waited an hour
    r = await as_operator.get("/admin/withdrawals", params={"min": "abc", "state": "bogus"})
    assert r.status_code == 400 and "不是以元为单位的金额" in r.text and "“bogus”不是以下之一" in r.text
    r = await as_operator.get("/admin/withdrawals", params={"state": "all", "format": "csv"})
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert r.content.startswith(b"\xef\xbb\xbf") and rows[0][0] == "提现单号" and len(rows) == 5


@pytest.mark.asyncio
async def test_the_queue_pages_through_every_match_keeping_its_filters_and_totals(as_operator, monkeypatch):
    from server.admin import withdrawal_queue

    monkeypatch.setattr(withdrawal_queue, "PAGE_SIZE", 2)  # five requests make three pages
    made = [(await pending_withdrawal(1_000 * (i + 1)))[0] for i in range(5)]
    other, _ = await pending_withdrawal(900)  # under the minimum: on no page
    seen = []
    for n, expected in ((1, made[:2]), (2, made[2:4]), (3, made[4:])):
        page = await as_operator.get("/admin/withdrawals", params={"min": "10", "page": str(n)})
        assert page.status_code == 200 and ids_in(page.text) == [w.id for w in expected]
        assert "共 5 笔，合计 ¥150.00" in page.text  # the totals count every page, not this one
        links = re.findall(r'href="/admin/withdrawals\?([^"]*page=\d+)"', page.text)
        assert all("min=10" in link for link in links)  # the filter follows the pager
        assert (f"page={n + 1}" in " ".join(links)) == (n < 3) and (f"page={n - 1}" in " ".join(links)) == (n > 1)
        seen += ids_in(page.text)
    assert seen == [w.id for w in made] and other.id not in seen  # each once, none skipped
    page = await as_operator.get("/admin/withdrawals", params={"min": "10", "page": "9"})
    assert page.status_code == 200 and ids_in(page.text) == []  # past the end: empty, not an error
    page = await as_operator.get("/admin/withdrawals", params={"min": "10", "page": "x"})
    assert ids_in(page.text) == [made[0].id, made[1].id]  # a page that is not a number: the first


@pytest.mark.asyncio
async def test_the_queue_filters_by_the_end_the_customer_uses(as_operator):
    from models.users import End

    bob_w, bob = await pending_withdrawal(2_000)  # a worker
    pat = await personas.publisher("pat", balance_fen=20_000)  # publishers withdraw unused balance too
    pat_w = await withdrawals.request(pat.id, 3_000, request_id="w-pat")
    assert (bob.end, pat.end) == (End.WORKER, End.PUBLISHER)
    page = await as_operator.get("/admin/withdrawals")
    assert ids_in(page.text) == [bob_w.id, pat_w.id]
    page = await as_operator.get("/admin/withdrawals", params={"end": "worker"})
    assert ids_in(page.text) == [bob_w.id] and "共 1 笔，合计 ¥20.00" in page.text
    page = await as_operator.get("/admin/withdrawals", params={"end": "publisher"})
    assert ids_in(page.text) == [pat_w.id] and "共 1 笔，合计 ¥30.00" in page.text
    r = await as_operator.get("/admin/withdrawals", params={"end": "publisher", "format": "csv"})
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [row[0] for row in rows[1:]] == [str(pat_w.id)]  # the export applies it too
    r = await as_operator.get("/admin/withdrawals", params={"end": "admin"})
    assert r.status_code == 400 and "“admin”不是以下之一" in r.text and ids_in(r.text) == []


@pytest.mark.asyncio
async def test_risk_columns_show_age_earnings_rates_and_recent_adjustments(as_operator):
    order, alice, bob = await appealed_order()  # bob: one order, rejected and appealed
    await ledger.adjust(bob.id, 10_000, operator_id=0, reason="goodwill", request_id="adj-bob")
    w = await withdrawals.request(bob.id, 5_000, request_id="w-bob")
    page = await as_operator.get("/admin/withdrawals")
    row = page.text[page.text.index(f'id="withdrawal-{w.id}"'):]
    row = row[:row.index("</tr>")]
    assert row.count("100%") == 2  # rejected and appealed: every order so far
    assert "¥100.00 (1)" in row  # one manual adjustment in the last 30 days
    assert "¥0.00" in row  # nothing earned yet


@pytest.mark.asyncio
async def test_batch_approval_confirms_once_then_pays_each_once(as_operator, live):
    a, _ = await pending_withdrawal(2_000)
    b, _ = await pending_withdrawal(3_000)
    c, _ = await pending_withdrawal(4_000)
    await withdrawals.reject(c.id, 0, reason="no")  # decided meanwhile: skipped, named
    r = await as_operator.post("/admin/withdrawals/batch-approve", {"id": [str(a.id), str(b.id), str(c.id)]})
    assert r.status_code == 200 and "确认：批准 2 笔并打款 ¥" in r.text and f"#{c.id}" in r.text
    assert (await Withdrawal.get(id=a.id)).status == WithdrawalStatus.PENDING  # nothing yet
    r = await as_operator.post("/admin/withdrawals/batch-approve", {"id": [str(a.id), str(b.id)], "confirmed": "1"})
    assert r.status_code == 303 and "batch_approved" in r.headers["location"]
    for w in (a, b):
        assert (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.PAYING
    # the same confirmation again (Back + resubmit) pays nothing more
    r = await as_operator.post("/admin/withdrawals/batch-approve", {"id": [str(a.id), str(b.id)], "confirmed": "1"})
    assert r.status_code == 409 and "已被他人处理" in r.text
    assert await AuditLog.filter(action="withdrawal.approve", target_id__in=[a.id, b.id]).count() == 2
    assert (await as_operator.post("/admin/withdrawals/batch-approve", {})).status_code == 400
    await personas.assert_books_clean()


@pytest.mark.asyncio
async def test_a_payout_waiting_for_the_user_shows_its_age_and_can_be_requeried_or_cancelled(as_operator, live):
    sandbox = live.app.ctx.wechat.sandbox
    w, bob = await pending_withdrawal(5_000)
    assert (await as_operator.post(f"/admin/withdrawals/{w.id}/approve")).status_code == 303
    w = await Withdrawal.get(id=w.id)
    assert w.status == WithdrawalStatus.PAYING and w.transfer_state == "WAIT_USER_CONFIRM"
    page = await as_operator.get("/admin/withdrawals")
    row = page.text[page.text.index(f'id="payout-{w.id}"'):]
    assert "WAIT_USER_CONFIRM" in row[:2000] and "秒" in row[:2000] and "cancel-transfer" in row[:2000]
    # re-query: WeChat's word applies (here: the user confirmed meanwhile, no notification yet)
    sandbox.set_bill_state(w.out_bill_no, "SUCCESS")
    r = await as_operator.post(f"/admin/withdrawals/{w.id}/requery")
    assert r.status_code == 303 and (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.PAID
    # cancel: a second payout the user never confirms
    w2, carol = await pending_withdrawal(3_000)
    await as_operator.post(f"/admin/withdrawals/{w2.id}/approve")
    sandbox.cancel_delay_s = None
    assert (await as_operator.post(f"/admin/withdrawals/{w2.id}/cancel-transfer", {"reason": ""})).status_code == 400
    r = await as_operator.post(f"/admin/withdrawals/{w2.id}/cancel-transfer", {"reason": "user unreachable"})
    assert r.status_code == 303
    after = await Withdrawal.get(id=w2.id)
    assert after.status == WithdrawalStatus.PAYING and after.transfer_state == "CANCELING"  # money back only at CANCELLED
    assert await AuditLog.filter(action="withdrawal.payout_cancel", target_id=w2.id, reason="user unreachable").exists()
    sandbox.finish_cancel(after.out_bill_no)
    await sandbox.drain()
    assert (await Withdrawal.get(id=w2.id)).status == WithdrawalStatus.FAILED
    assert await personas.available(carol) == 20_000 and await personas.withdrawing(carol) == 0
    # once confirmed it cannot be cancelled
    r = await as_operator.post(f"/admin/withdrawals/{w.id}/cancel-transfer", {"reason": "late"})
    assert r.status_code == 409
    assert await JournalEntry.filter(key=f"withdrawal:{w.id}:paid").count() == 1
    await personas.assert_books_clean()


@pytest.mark.asyncio
async def test_a_requery_while_the_payout_checker_holds_the_round_asks_wechat_nothing_and_says_so(as_operator, live, monkeypatch):
    """The re-query takes the payout checker's lease like a checker round: while a round is in
    flight it does not act beside it (both would apply what WeChat said, in either order)."""
    from models import clock
    from server.wechat_payouts import PAYOUT_LEASE_S

    services = live.app.ctx.wechat
    w, bob = await pending_withdrawal(5_000)
    await as_operator.post(f"/admin/withdrawals/{w.id}/approve")
    w = await Withdrawal.get(id=w.id)
    assert w.transfer_state == "WAIT_USER_CONFIRM"
    clock.advance(3_601)  # the next check is due: a checker claims the round (and is still asking WeChat)
    assert await withdrawals.claim_payout_check(w.id, w.payout_check_at, PAYOUT_LEASE_S)
    services.sandbox.set_bill_state(w.out_bill_no, "SUCCESS")
    asked = []
    real = services.pay.query_transfer_bill

    async def counted(out_bill_no):
        asked.append(out_bill_no)
        return await real(out_bill_no)

    monkeypatch.setattr(services.pay, "query_transfer_bill", counted)
    r = await as_operator.post(f"/admin/withdrawals/{w.id}/requery")
    assert r.status_code == 409 and "正在向微信查询" in r.text
    assert asked == [] and (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.PAYING
    assert not await AuditLog.filter(action="withdrawal.payout_requery", target_id=w.id).exists()
    # Once the checker's lease has run out (it died), the re-query takes the round itself.
    clock.advance(PAYOUT_LEASE_S + 1)
    r = await as_operator.post(f"/admin/withdrawals/{w.id}/requery")
    assert r.status_code == 303 and asked == [w.out_bill_no]
    assert (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.PAID
    assert await JournalEntry.filter(key=f"withdrawal:{w.id}:paid").count() == 1
    await personas.assert_books_clean()


@pytest.mark.asyncio
async def test_a_cancel_while_the_payout_checker_holds_the_round_asks_wechat_nothing_and_says_so(as_operator, live, monkeypatch):
    """The cancel takes the same lease: beside a checker's round, the round would write back the
    state it read before the cancel (WAIT_USER_CONFIRM, next check in an hour) over CANCELING."""
    from models import clock
    from server.wechat_payouts import PAYOUT_LEASE_S

    services = live.app.ctx.wechat
    services.sandbox.cancel_delay_s = None
    w, bob = await pending_withdrawal(5_000)
    await as_operator.post(f"/admin/withdrawals/{w.id}/approve")
    w = await Withdrawal.get(id=w.id)
    clock.advance(3_601)
    assert await withdrawals.claim_payout_check(w.id, w.payout_check_at, PAYOUT_LEASE_S)  # a checker's round is in flight
    cancels = []
    real = services.pay.cancel_transfer_bill

    async def counted(out_bill_no):
        cancels.append(out_bill_no)
        return await real(out_bill_no)

    monkeypatch.setattr(services.pay, "cancel_transfer_bill", counted)
    r = await as_operator.post(f"/admin/withdrawals/{w.id}/cancel-transfer", {"reason": "user unreachable"})
    assert r.status_code == 409 and "正在向微信查询" in r.text
    assert cancels == [] and (await Withdrawal.get(id=w.id)).transfer_state == "WAIT_USER_CONFIRM"
    assert not await AuditLog.filter(action="withdrawal.payout_cancel", target_id=w.id).exists()
    clock.advance(PAYOUT_LEASE_S + 1)  # the checker died: its lease ran out
    r = await as_operator.post(f"/admin/withdrawals/{w.id}/cancel-transfer", {"reason": "user unreachable"})
    assert r.status_code == 303 and cancels == [w.out_bill_no]
    after = await Withdrawal.get(id=w.id)
    assert (after.status, after.transfer_state, after.payout_lease_until) == (WithdrawalStatus.PAYING, "CANCELING", None)
    assert after.payout_check_at <= clock.now() + dt.timedelta(seconds=30)  # CANCELING is asked again soon
    await personas.assert_books_clean()


@pytest.mark.asyncio
async def test_a_held_payout_is_retried_or_returned_from_the_queue(as_operator, live):
    sandbox = live.app.ctx.wechat.sandbox
    sandbox.refuse_transfers_from_this_ip()
    w, bob = await pending_withdrawal(5_000)
    await as_operator.post(f"/admin/withdrawals/{w.id}/approve")
    held = await Withdrawal.get(id=w.id)
    assert held.status == WithdrawalStatus.PAYING and held.hold_reason
    page = await as_operator.get("/admin/withdrawals")
    row = page.text[page.text.index(f'id="payout-{w.id}"'):]
    assert "retry-held" in row[:3000] and "return-held" in row[:3000] and "等待人工处理" in row[:3000]
    assert (await as_operator.post(f"/admin/withdrawals/{w.id}/return-held", {"reason": ""})).status_code == 400
    r = await as_operator.post(f"/admin/withdrawals/{w.id}/return-held", {"reason": "服务器 IP 未加入白名单，已退回"})
    assert r.status_code == 303 and "held_returned" in r.headers["location"]
    assert (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.FAILED and await personas.withdrawing(bob) == 0
    r = await as_operator.post(f"/admin/withdrawals/{w.id}/retry-held")
    assert r.status_code == 409  # not held any more
    # another one: the allowlist fixed, the same bill asked again
    w2, carol = await pending_withdrawal(3_000)
    await as_operator.post(f"/admin/withdrawals/{w2.id}/approve")
    sandbox.transfer_refusal = None
    r = await as_operator.post(f"/admin/withdrawals/{w2.id}/retry-held")
    assert r.status_code == 303
    again = await Withdrawal.get(id=w2.id)
    assert again.hold_reason is None and again.transfer_state == "WAIT_USER_CONFIRM"
    await personas.assert_books_clean()


@pytest.mark.asyncio
async def test_a_payout_wechat_paid_after_its_money_was_returned_is_shown_to_operators(as_operator, live):
    """The operator returned a held payout (WeChat's query found no bill); then WeChat paid it: the
    dashboard counts it, the withdrawal's line says so and points at the difference to recover."""
    sandbox = live.app.ctx.wechat.sandbox
    w, bob = await pending_withdrawal(5_000)
    await as_operator.post(f"/admin/withdrawals/{w.id}/approve")
    w = await Withdrawal.get(id=w.id)
    await withdrawals.hold_payout(w.id, "operator stopped it")
    page = await as_operator.get("/admin/")
    assert re.search(r'id="withdrawals-held">1<', page.text) and "等待人工处理的打款" in page.text
    bill = sandbox.transfers.pop(w.out_bill_no)  # WeChat's query does not see it yet
    r = await as_operator.post(f"/admin/withdrawals/{w.id}/return-held", {"reason": "用户要求撤回"})
    assert r.status_code == 303 and (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.FAILED
    page = await as_operator.get("/admin/withdrawals", params={"state": "all"})
    assert f'id="unrecorded-{w.id}"' not in page.text

    sandbox.transfers[w.out_bill_no] = bill
    await sandbox.confirm_transfer(w.out_bill_no)  # Bob confirms in WeChat: it pays
    await sandbox.drain()
    from models.reconciliation import Difference

    difference = await Difference.get(ref_kind="withdrawal", ref_id=w.id)
    page = await as_operator.get("/admin/withdrawals", params={"state": "all"})
    line = page.text[page.text.index(f'id="unrecorded-{w.id}"'):][:600]
    assert "微信在款项退回余额后又完成了这笔转账" in line and f"/admin/reconciliation#difference-{difference.id}" in line
    page = await as_operator.get("/admin/withdrawals", params={"state": "all", "lang": "en"})
    assert "WeChat paid this payout after its money was returned" in page.text
    page = await as_operator.get("/admin/")
    assert re.search(r'id="payouts-not-recorded">1<', page.text) and re.search(r'id="withdrawals-held">0<', page.text)
    poll = (await as_operator.get("/admin/dashboard.json")).json()
    assert poll["values"]["payouts_not_recorded"] == "1" and poll["alerts"]["payouts_not_recorded"] is True
    page = await as_operator.get("/admin/reconciliation")
    assert f'id="difference-{difference.id}"' in page.text and "WeChat paid after we returned the money" in page.text
    assert await personas.available(bob) == 20_000  # the books keep what we decided
    await personas.assert_books_clean()
