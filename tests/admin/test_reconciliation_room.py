"""The reconciliation room: an operator sees the differences with WeChat Pay's bills (in Chinese, in
yuan) and closes each once, with a note that lands in the audit log; nothing else changes."""

from __future__ import annotations

import datetime as dt

import pytest

from models import clock
from models.audit import AuditLog
from models.reconciliation import Difference, DifferenceKind, DifferenceStatus, Found, record


async def planted() -> Difference:
    [d] = await record(dt.date(2026, 3, 1), [Found(DifferenceKind.PAYMENT_NOT_CREDITED, "4200000001", "recharge", 7,
                                                   "4200000001", 5_000, 5_000, {"out_trade_no": "R1"})])
    return d


@pytest.mark.asyncio
async def test_an_operator_sees_a_difference_and_resolves_it_with_a_note(as_operator, operator):
    d = await planted()
    page = await as_operator.get("/admin/reconciliation")
    assert page.status_code == 200
    assert "微信已收款但未入账" in page.text and "¥50.00" in page.text and "4200000001" in page.text

    r = await as_operator.post(f"/admin/reconciliation/{d.id}/resolve", {"note": ""})
    assert r.status_code == 400 and (await Difference.get(id=d.id)).status == DifferenceStatus.OPEN
    r = await as_operator.post(f"/admin/reconciliation/{d.id}/resolve", {"note": "已核实，手动补记"})
    assert r.status_code == 303
    d = await Difference.get(id=d.id)
    assert (d.status, d.resolved_by, d.note) == (DifferenceStatus.RESOLVED, operator.id, "已核实，手动补记")
    row = await AuditLog.get(action="reconciliation.resolve")
    assert (row.actor_id, row.reason) == (operator.id, "已核实，手动补记")
    again = await as_operator.post(f"/admin/reconciliation/{d.id}/resolve", {"note": "twice"})
    assert again.status_code == 409


@pytest.mark.asyncio
async def test_the_room_needs_a_login_and_the_csrf_token(panel_factory, as_operator):
    d = await planted()
    anonymous = await panel_factory()
    assert (await anonymous.get("/admin/reconciliation")).status_code == 302
    r = await as_operator.post(f"/admin/reconciliation/{d.id}/resolve", {"note": "x"}, csrf="forged")
    assert r.status_code == 403 and (await Difference.get(id=d.id)).status == DifferenceStatus.OPEN
    assert clock.now()


@pytest.mark.asyncio
async def test_a_differences_details_read_in_the_pages_language_with_times_in_beijing(as_operator):
    [d] = await record(dt.date(2026, 3, 1), [Found(
        DifferenceKind.PAYOUT_NOT_RECORDED, "1330000001", "withdrawal", 9, "1330000001", None, 4_900,
        {"out_bill_no": "W9", "transfer_bill_no": "1330000001", "our_status": "failed", "what": "paid_after_return",
         "finished_at": "2026-03-01T02:00:00+00:00"})])
    from tests.admin.test_every_page_both_languages import visible_text

    zh = visible_text((await as_operator.get("/admin/reconciliation?lang=zh")).text)
    assert "商户转账单号: W9" in zh and "我方状态: 已失败" in zh and "不符之处: 提现已退回，微信又打款" in zh
    assert "完成时间: 2026-03-01 10:00:00" in zh  # 02:00 UTC is 10:00 in Beijing
    assert "paid_after_return" not in zh and "our_status" not in zh
    en = visible_text((await as_operator.get("/admin/reconciliation?lang=en")).text)
    assert "what differs: WeChat paid after we returned the money" in en and "our status: failed" in en
    assert d.id
