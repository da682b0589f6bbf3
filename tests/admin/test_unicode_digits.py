"""Ids and pages in the panel's queries and forms take ASCII digits only: "²" is a digit to
str.isdigit() but int() refuses it (it answered 500), and "١٢" must not quietly mean 12."""

from __future__ import annotations

import pytest

from server.admin import units


def test_an_id_is_ascii_digits():
    assert units.parse_id("12") == 12 and units.parse_id("#12") == 12
    for odd in ("²", "١٢", "12\u0663", "", "-1", "9" * 19):
        assert units.parse_id(odd) is None, odd


@pytest.mark.asyncio
async def test_lists_and_forms_with_other_scripts_digits_answer_without_a_500(as_owner):
    for path in ("/admin/tasks?page=²", "/admin/withdrawals?page=²", "/admin/orders?publisher=²", "/admin/customers?page=١٢"):
        r = await as_owner.get(path)
        assert r.status_code in (200, 400), (path, r.status_code)
    r = await as_owner.post("/admin/compliance/rules", {"kind": "worker_losing_streak", "enabled": "1", "streak": "²"})
    assert r.status_code == 400
