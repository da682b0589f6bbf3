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
