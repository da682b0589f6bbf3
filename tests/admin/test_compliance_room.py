"""The compliance room (issue 14 §2, §4): held tasks approved or refused, terms, appeal rules; the
appeals queue shows the criterion and the publisher's answer."""

from __future__ import annotations

import pytest

from models import appeals, compliance, orders, settings as market_settings, tasks
from models.appeals import AppealRule
from models.audit import AuditLog
from models.compliance import ComplianceTerm
from models.tasks import Task, TaskStatus
from tests import personas
from tests.admin.conftest import appealed_order


async def held_task():
    await market_settings.update({"compliance_hold_on_match": 1}, operator_id=1)
    alice = await personas.publisher("alice", balance_fen=100_000)
    task = await tasks.publish(alice.id, title="帮忙刷票", instructions="投第 3 号", unit_price_fen=500, quantity=2)
    assert task.status == TaskStatus.HELD
    return task, alice


@pytest.mark.asyncio
async def test_an_operator_approves_a_held_task_from_the_queue(as_operator, operator):
    task, alice = await held_task()
    page = await as_operator.get("/admin/compliance")
    assert "帮忙刷票" in page.text and "刷票" in page.text
    r = await as_operator.post(f"/admin/compliance/tasks/{task.id}/approve")
    assert r.status_code == 303 and "held_task_approved" in r.headers["location"]
    assert (await Task.get(id=task.id)).status == TaskStatus.OPEN
    assert await AuditLog.filter(action="task.compliance_approve", actor_id=operator.id).count() == 1


@pytest.mark.asyncio
async def test_refusing_needs_a_reason_and_refunds_the_escrow(as_operator):
    task, alice = await held_task()
    before = await personas.available(alice)
    r = await as_operator.post(f"/admin/compliance/tasks/{task.id}/refuse", {"reason": ""})
    assert r.status_code == 400 and (await Task.get(id=task.id)).status == TaskStatus.HELD
    r = await as_operator.post(f"/admin/compliance/tasks/{task.id}/refuse", {"reason": "有偿投票"})
    assert r.status_code == 303
    assert (await Task.get(id=task.id)).status == TaskStatus.REFUSED
    assert await personas.available(alice) == before + 2 * 550
    r = await as_operator.post(f"/admin/compliance/tasks/{task.id}/approve")
    assert r.status_code == 409
    await personas.assert_books_clean()


@pytest.mark.asyncio
async def test_terms_are_added_and_disabled_from_the_panel(as_owner):
    r = await as_owner.post("/admin/compliance/terms", {"term": "代打卡", "category": "other"})
    assert r.status_code == 303
    assert await ComplianceTerm.exists(term="代打卡", enabled=True)
    term = await ComplianceTerm.get(term="代打卡")
    r = await as_owner.post("/admin/compliance/terms/toggle", {"term_id": str(term.id), "enabled": "0"})
    assert r.status_code == 303 and not (await ComplianceTerm.get(id=term.id)).enabled
    r = await as_owner.post("/admin/compliance/terms", {"term": "代打卡", "category": "other"})
    assert r.status_code == 400


@pytest.mark.asyncio
async def test_terms_and_rules_are_the_owners_an_operator_sees_them_and_changes_nothing(as_operator):
    """Which words refuse a publish and which rules decide appeals are policy: the owner's (like the
    settings). An operator works the held-task queue and sees the policy, without a form to change it."""
    await compliance.ensure_default_terms()
    term = await ComplianceTerm.filter(enabled=True).first()
    audit_before = await AuditLog.all().count()
    for path, form in (("/admin/compliance/terms", {"term": "代打卡", "category": "other"}),
                       ("/admin/compliance/terms/toggle", {"term_id": str(term.id), "enabled": "0"}),
                       ("/admin/compliance/rules", {"kind": "worker_losing_streak", "enabled": "1", "streak": "2", "cooldown_s": "3600"})):
        r = await as_operator.post(path, form)
        assert r.status_code == 403, (path, r.status_code)
    assert not await ComplianceTerm.exists(term="代打卡")
    assert (await ComplianceTerm.get(id=term.id)).enabled
    assert not (await AppealRule.get_or_none(kind="worker_losing_streak") or AppealRule(enabled=False)).enabled
    assert await AuditLog.all().count() == audit_before
    page = (await as_operator.get("/admin/compliance")).text
    assert term.term in page and "只有所有者可以修改申诉规则和禁止词" in page
    assert 'action="/admin/compliance/terms' not in page and 'action="/admin/compliance/rules"' not in page


@pytest.mark.asyncio
async def test_an_appeal_rule_is_edited_and_audited(as_owner):
    r = await as_owner.post("/admin/compliance/rules", {"kind": "worker_losing_streak", "enabled": "1", "streak": "0", "cooldown_s": "3600"})
    assert r.status_code == 400
    r = await as_owner.post("/admin/compliance/rules", {"kind": "worker_losing_streak", "enabled": "1", "streak": "2", "cooldown_s": "3600"})
    assert r.status_code == 303
    rule = await AppealRule.get(kind="worker_losing_streak")
    assert (rule.enabled, rule.params) == (True, {"streak": 2, "cooldown_s": 3600})
    assert await AuditLog.filter(action="appeal_rule.update").count() == 1


@pytest.mark.asyncio
async def test_the_appeals_queue_shows_the_publishers_answer(as_operator):
    order, alice, bob = await appealed_order()
    await appeals.answer(order.id, alice.id, text="账号不是本人的")
    page = await as_operator.get("/admin/appeals")
    assert "账号不是本人的" in page.text


@pytest.mark.asyncio
async def test_the_owner_switches_hold_on_match_and_the_referral_rule(as_owner, as_operator):
    r = await as_operator.post("/admin/compliance/settings", {"compliance_hold_on_match": "1"})
    assert r.status_code == 403
    r = await as_owner.post("/admin/compliance/settings", {"compliance_hold_on_match": "1"})
    assert r.status_code == 303
    market_settings.invalidate_cache()
    s = await market_settings.current()
    assert (s.compliance_hold_on_match, s.referral_requires_first_order) == (1, 0)
    assert await AuditLog.filter(action="settings.update").count() == 1


@pytest.mark.asyncio
async def test_a_toggle_of_no_term_says_so_and_changes_nothing(as_owner):
    before = await AuditLog.filter(action__startswith="compliance.term").count()
    for bad, status in (("abc", 400), ("²", 400), ("9" * 20, 400), ("", 400), ("987654", 404)):
        r = await as_owner.post("/admin/compliance/terms/toggle", {"term_id": bad, "enabled": "0"})
        assert r.status_code == status, (bad, r.status_code)
        assert "term_changed" not in r.headers.get("location", "")
    assert await AuditLog.filter(action__startswith="compliance.term").count() == before
