"""Issue 13 defect 6: the English view showed raw keys ("100 unit.yuan"). Every page of the panel,
with a market that has been through every kind of event, is rendered in both languages; no page may
ask for a text its language does not have, and no code-like word may reach the screen."""

from __future__ import annotations

import html
import re

import pytest

from models import appeals, clock, compliance, ledger, orders, referrals, tasks, withdrawals
from models.appeals import AppealAutoDecision
from models import settings as market_settings
from server.admin import i18n
from tests import personas
from tests.admin.conftest import appealed_order, completed_order, pending_withdrawal

CODE_LIKE = re.compile(r"\b[a-z]+(?:[._][a-z]+)+\b")


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


async def a_busy_market(owner) -> dict[str, int]:
    done = await completed_order()
    appealed, alice, bob = await appealed_order()
    w, payee = await pending_withdrawal(5_000, operator_id=owner.id)
    rejected, _ = await pending_withdrawal(3_000, operator_id=owner.id)
    await withdrawals.reject(rejected.id, owner.id, reason="账户信息不符")
    paid, _ = await pending_withdrawal(2_000, operator_id=owner.id)
    await withdrawals.mark_paid(paid.id, owner.id, reference="bank 42")
    inviter = await personas.worker("inviter")
    carol = await personas.worker("carol", inviter=inviter)
    task = await tasks.publish(alice.id, title="关注公众号", instructions="关注并截图", unit_price_fen=300, quantity=3)
    order = await orders.take(task.id, carol.id)
    await orders.submit(order.id, carol.id, proof_text="好了")
    await orders.approve(order.id, alice.id)
    await referrals.settle()
    await tasks.cancel(task.id, alice.id)
    await ledger.adjust(bob.id, 1_000, operator_id=owner.id, reason="补偿", request_id="every-page-1")
    await market_settings.update({"take_window_s": 8, "publish_fee_bp": 1200, "compliance_hold_on_match": 1}, operator_id=owner.id)
    # The compliance room's queue: held by a prohibited term, by WeChat's verdict on an image; rules
    # switched on and the decisions they made (issue 14).
    await tasks.publish(alice.id, title="帮忙刷票", instructions="投第 3 号，转发朋友圈", unit_price_fen=500)
    flagged = await tasks.publish(alice.id, title="拍一张门店照片", instructions="拍照上传", unit_price_fen=500)
    await compliance.hold_open(flagged.id, "wechat:image:risky:20002")
    await appeals.rules()
    for kind, params in appeals.RULE_DEFAULTS.items():
        await appeals.update_rule(kind.value, enabled=True, params=dict(params), operator_id=owner.id)
    for kind, outcome in (("publisher_loss_rate", "worker_wins"), ("worker_losing_streak", "appeal_refused")):
        await AppealAutoDecision.create(order_id=appealed.id, user_id=bob.id, rule_kind=kind, rule_version=2,
                                        rule_params={}, outcome=outcome, created_at=clock.now())
    return {"done": done.id, "appealed": appealed.id, "task": task.id, "alice": alice.id, "bob": bob.id, "inviter": inviter.id,
            "payee": payee.id}


@pytest.mark.asyncio
async def test_every_page_in_both_languages_has_no_untranslated_key(as_owner, owner, as_operator, monkeypatch):
    ids = await a_busy_market(owner)
    await as_owner.post(f"/admin/customers/{ids['bob']}/ban", {"reason": "刷单"})
    monkeypatch.setattr(i18n, "MISSES", set())
    pages = ["/admin", "/admin/appeals", "/admin/withdrawals", "/admin/customers", "/admin/customers?q=bob",
             *(f"/admin/customers/{ids[k]}" for k in ("alice", "bob", "inviter", "payee")),
             "/admin/tasks", f"/admin/tasks/{ids['task']}", "/admin/orders", f"/admin/orders/{ids['done']}",
             f"/admin/orders/{ids['appealed']}", "/admin/audit", "/admin/settings", "/admin/operators", "/admin/reconciliation",
             "/admin/password", "/admin/no-such-page", "/admin/tasks?publisher=abc", "/admin/compliance"]
    # The owner sees every page; an operator the compliance room too, its policy read-only.
    visits = [(as_owner, path) for path in pages] + [(as_operator, "/admin/compliance")]
    for lang in ("zh", "en"):
        for panel, path in visits:
            sep = "&" if "?" in path else "?"
            r = await panel.get(f"{path}{sep}lang={lang}")
            assert r.status_code in (200, 400, 404), (path, r.status_code)
            words = set(CODE_LIKE.findall(visible_text(r.text)))
            assert not words, (lang, path, sorted(words))
    assert not i18n.MISSES, sorted(i18n.MISSES)


@pytest.mark.asyncio
async def test_the_compliance_room_names_categories_rules_and_hold_reasons_in_each_language(as_owner, owner, as_operator):
    await a_busy_market(owner)
    for panel in (as_owner, as_operator):
        zh = visible_text((await panel.get("/admin/compliance?lang=zh")).text)
        en = visible_text((await panel.get("/admin/compliance?lang=en")).text)
        assert "标题中含禁用词“刷票”（有偿投票/刷票）" in zh and "微信图片内容检测：违规（标签 20002）" in zh
        assert "Prohibited term “刷票” (paid votes / vote rigging) in the title" in en
        assert "WeChat's check of the image: risky (label 20002)" in en
        assert "连续败诉次数" in zh and "losses in a row" in en and "pause (seconds)" in en
        assert "辅助注册/解封/扫码验证" in zh and "assisted registration / unblocking / scan verification" in en
        assert "接单方胜" in zh and "appeal refused" in en
