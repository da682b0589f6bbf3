"""Issue 13's defects, each pinned by the HTTP exchange that showed it (the browser-side ones are in
tests/admin/browser/test_phone_and_pages.py)."""

from __future__ import annotations

import html
import re

import pytest

from models import settings as market_settings
from models.audit import AuditLog
from tests import personas
from tests.admin.conftest import completed_order

INPUT_RE = re.compile(r'<input(?=[^>]*\bname="([^"]+)")(?=[^>]*\bvalue="([^"]*)")[^>]*>')


def form_inputs(page_html: str, action: str) -> dict[str, str]:
    """The inputs of the form posting to `action`, as a browser would send them untouched."""
    start = page_html.index(f'action="{action}"')
    end = page_html.index("</form>", start)
    return {name: html.unescape(value) for name, value in INPUT_RE.findall(page_html[start:end])}


# --- 2. timers survive a save ----------------------------------------------------------------------
@pytest.mark.asyncio
async def test_timers_show_in_minutes_and_seconds_and_a_ratio_change_leaves_them_alone(as_owner):
    await market_settings.update({"take_window_s": 8, "review_window_s": 601}, operator_id=0)
    page = await as_owner.get("/admin/settings")
    form = form_inputs(page.text, "/admin/settings")
    assert (form["take_window_s_min"], form["take_window_s_sec"]) == ("0", "8")
    assert (form["review_window_s_min"], form["review_window_s_sec"]) == ("10", "1")
    assert "0.1333" not in page.text
    r = await as_owner.post("/admin/settings", form | {"publish_fee_bp": "12"})  # only the ratio typed
    assert r.status_code == 303, r.text
    market_settings.invalidate_cache()
    s = await market_settings.current()
    assert (s.publish_fee_bp, s.take_window_s, s.review_window_s) == (1200, 8, 601)
    row = await AuditLog.filter(action="settings.update").order_by("-id").first()
    assert set(row.data) == {"publish_fee_bp"}


@pytest.mark.asyncio
@pytest.mark.parametrize("minutes, seconds, stored", [("10", "1", 601), ("0", "10", 10), ("0", "20", 20), ("30", "", 1800)])
async def test_any_whole_number_of_seconds_can_be_entered(as_owner, minutes, seconds, stored):
    form = form_inputs((await as_owner.get("/admin/settings")).text, "/admin/settings")
    r = await as_owner.post("/admin/settings", form | {"appeal_window_s_min": minutes, "appeal_window_s_sec": seconds})
    assert r.status_code == 303, r.text
    market_settings.invalidate_cache()
    assert (await market_settings.current()).appeal_window_s == stored


# --- 3. a conflict shows the latest values and marks what differs -----------------------------------
@pytest.mark.asyncio
async def test_a_conflict_loads_the_latest_values_and_marks_the_fields_that_differ(as_owner):
    mine = form_inputs((await as_owner.get("/admin/settings")).text, "/admin/settings")
    await market_settings.update({"countdown_s": 240}, operator_id=0)  # another operator, meanwhile
    r = await as_owner.post("/admin/settings", mine | {"appeal_window_s_min": "12"})
    assert r.status_code == 409 and "有人修改了设置" in r.text
    shown = form_inputs(r.text, "/admin/settings")
    assert shown["countdown_s_min"] == "4" and shown["appeal_window_s_min"] == "10"  # the latest, not my stale input
    countdown = re.search(r'<tr class="[^"]*differs[^"]*" id="row-countdown_s">.*?</tr>', r.text, re.S)
    assert countdown and "您填写的是：5 分钟" in countdown.group(0)
    appeal = re.search(r'<tr class="[^"]*differs[^"]*" id="row-appeal_window_s">.*?</tr>', r.text, re.S)
    assert appeal and "12 分钟" in appeal.group(0)
    assert 'id="row-publish_fee_bp"' in r.text and 'differs" id="row-publish_fee_bp"' not in r.text
    # saving the page as it now stands keeps the other operator's change
    r = await as_owner.post("/admin/settings", shown | {"appeal_window_s_min": "12"})
    assert r.status_code == 303, r.text
    market_settings.invalidate_cache()
    s = await market_settings.current()
    assert (s.countdown_s, s.appeal_window_s) == (240, 720)


# --- 1. Back + submit does not credit twice ---------------------------------------------------------
@pytest.mark.asyncio
async def test_back_and_submit_asks_before_a_second_identical_adjustment(as_owner):
    bob = await personas.worker("bob")
    action = f"/admin/customers/{bob.id}/adjust"
    first = form_inputs((await as_owner.get(f"/admin/customers/{bob.id}")).text, action)
    r = await as_owner.post(action, first | {"amount": "5.00", "reason": "compensation"})
    assert r.status_code == 303
    # Back: the browser re-fetches the page (no-store), gets a new request_id, and the operator
    # submits the same filled form again
    again = form_inputs((await as_owner.get(f"/admin/customers/{bob.id}")).text, action)
    assert again["request_id"] != first["request_id"]
    r = await as_owner.post(action, again | {"amount": "5.00", "reason": "compensation"})
    assert r.status_code == 409 and 'id="repeat-warning"' in r.text and "¥5.00" in r.text
    assert await personas.available(bob) == 500  # nothing moved
    asked = form_inputs(r.text, action)
    assert asked["request_id"] == again["request_id"]  # the id is kept across the redisplay
    r = await as_owner.post(action, asked | {"amount": "5.00", "reason": "compensation", "confirm_repeat": "1"})
    assert r.status_code == 303
    r = await as_owner.post(action, asked | {"amount": "5.00", "reason": "compensation", "confirm_repeat": "1"})  # double click
    assert r.status_code == 303
    assert await personas.available(bob) == 1000
    await personas.assert_books_clean()


@pytest.mark.asyncio
async def test_a_redisplayed_adjustment_form_keeps_its_request_id(as_owner):
    bob = await personas.worker("bob")
    action = f"/admin/customers/{bob.id}/adjust"
    form = form_inputs((await as_owner.get(f"/admin/customers/{bob.id}")).text, action)
    r = await as_owner.post(action, form | {"amount": "5.00", "reason": ""})
    assert r.status_code == 400 and form_inputs(r.text, action)["request_id"] == form["request_id"]
    r = await as_owner.post(action, form | {"amount": "3.00", "reason": "goodwill"})
    assert r.status_code == 303
    r = await as_owner.post(action, form | {"amount": "7.00", "reason": "different amount"})  # the used form, changed
    assert r.status_code == 409, r.status_code
    assert await personas.available(bob) == 300


# --- 4. any part of a nickname ----------------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize("q", ["王五", "五", "王", "Wang", "wangw"])
async def test_customers_are_found_by_any_part_of_a_nickname(as_operator, q):
    wang = await personas.worker("王五")
    latin = await personas.worker("WangWu")
    other = await personas.worker("李四")
    page = await as_operator.get("/admin/customers", params={"q": q})
    expected = wang if not q.isascii() else latin
    assert f'href="/admin/customers/{expected.id}"' in page.text, q
    assert f'href="/admin/customers/{other.id}"' not in page.text


# --- 5. filters that say what was wrong, HTML for unknown pages, the language switch, labels -------
@pytest.mark.asyncio
@pytest.mark.parametrize("path, params, says", [
    ("/admin/tasks", {"publisher": "abc"}, "没有昵称包含“abc”的客户"),  # a nickname or an ID (issue 13 lists)
    ("/admin/tasks", {"from": "2026-13-45"}, "“2026-13-45”不是日期"),
    ("/admin/tasks", {"state": "bogus"}, "“bogus”不是以下之一"),
    ("/admin/orders", {"worker": "-1"}, "没有昵称包含“-1”的客户"),
    ("/admin/orders", {"state": "bogus", "task": "x"}, "没有标题包含“x”的任务"),
    ("/admin/orders", {"from": "2026-03-02", "to": "2026-03-01"}, "“到”早于“从”"),
    ("/admin/audit", {"actor_id": "abc"}, "没有名为“abc”的人"),
    ("/admin/audit", {"to": "31/12"}, "“31/12”不是日期"),
])
async def test_an_invalid_filter_says_what_was_wrong_instead_of_listing_everything(as_operator, path, params, says):
    done = await completed_order()
    r = await as_operator.get(path, params=params)
    assert r.status_code == 400
    assert 'id="filter-errors"' in r.text and says in r.text, r.text
    assert f'href="/admin/orders/{done.id}"' not in r.text and f'href="/admin/tasks/{done.task_id}">' not in r.text


@pytest.mark.asyncio
async def test_valid_filters_still_list(as_operator):
    for path, params in (("/admin/tasks", {"state": "open", "publisher": "1", "from": "2026-01-01"}),
                         ("/admin/orders", {"state": "completed", "worker": "2", "to": "2030-01-01"}),
                         ("/admin/audit", {"actor_kind": "user", "target_id": "3"})):
        r = await as_operator.get(path, params=params)
        assert r.status_code == 200 and 'id="filter-errors"' not in r.text, path


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/admin/nothing-here", "/admin/customers/1/nope", "/admin/tasks/abc"])
async def test_an_unknown_admin_address_answers_an_html_page(as_operator, path):
    r = await as_operator.get(path)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "管理后台没有这个页面" in r.text and 'href="/admin/customers"' in r.text  # the panel's menu
    assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")


@pytest.mark.asyncio
async def test_unknown_api_addresses_still_answer_json(live, as_operator):
    r = await as_operator.http.get("/api/v1/nothing-here")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/json")


@pytest.mark.asyncio
async def test_the_language_switch_keeps_the_filters(as_operator):
    r = await as_operator.get("/admin/orders", params={"state": "completed", "worker": "12", "page": "2"})
    link = html.unescape(re.search(r'<a href="([^"]*)" class="lang">', r.text).group(1))
    assert link.startswith("/admin/orders?")
    assert all(part in link for part in ("state=completed", "worker=12", "page=2", "lang=en")), link


@pytest.mark.asyncio
async def test_every_new_password_box_has_a_label(as_owner, owner):
    page = await as_owner.get("/admin/operators")
    for m in re.finditer(r'<input type="password" id="([^"]+)"', page.text):
        assert f'<label class="sr-only" for="{m.group(1)}">' in page.text
    assert f'for="pw-{owner.id}">{owner.username} 的新密码</label>' in page.text


# --- 7. memos and audit details in the operator's words ---------------------------------------------
@pytest.mark.asyncio
async def test_the_audit_log_shows_yuan_and_settings_changes_in_words(as_owner):
    await market_settings.update({"take_window_s": 8}, operator_id=0)
    form = form_inputs((await as_owner.get("/admin/settings")).text, "/admin/settings")
    r = await as_owner.post("/admin/settings", form | {"take_window_s_min": "30", "take_window_s_sec": "0"})
    assert r.status_code == 303
    bob = await personas.worker("bob")
    form = form_inputs((await as_owner.get(f"/admin/customers/{bob.id}")).text, f"/admin/customers/{bob.id}/adjust")
    assert (await as_owner.post(f"/admin/customers/{bob.id}/adjust", form | {"amount": "50", "reason": "补偿"})).status_code == 303
    page = (await as_owner.get("/admin/audit")).text
    assert "接单时限 8 秒 → 30 分钟" in page
    assert "金额 ¥50.00" in page
    assert "amount_fen" not in page and "take_window_s" not in page
    english = (await as_owner.get("/admin/audit?lang=en")).text
    assert "Take window 8 s → 30 minutes" in english and "Amount ¥50.00" in english


@pytest.mark.asyncio
async def test_ledger_memos_are_in_chinese(as_operator):
    from models import orders, referrals, tasks

    inviter = await personas.worker("inviter")
    alice = await personas.publisher("alice", balance_fen=100_000)
    bob = await personas.worker("bob", inviter=inviter)
    task = await tasks.publish(alice.id, title="T", instructions="x", unit_price_fen=1_000)
    order = await orders.take(task.id, bob.id)
    await orders.submit(order.id, bob.id)
    await orders.approve(order.id, alice.id)
    await referrals.settle()
    page = (await as_operator.get(f"/admin/customers/{inviter.id}")).text
    assert "1 笔邀请奖励" in page and "referral rewards" not in page
    page = (await as_operator.get(f"/admin/customers/{bob.id}")).text
    assert 'class="muted memo">发单方通过<' in page
    history = (await as_operator.get(f"/admin/orders/{order.id}")).text
    assert "付给接单者 ¥10.00" in history and "paid_fen" not in history


@pytest.mark.asyncio
async def test_a_tasks_timers_read_in_minutes_and_seconds(as_operator):
    from models import tasks

    await market_settings.update({"take_window_s": 8, "review_window_s": 601}, operator_id=0)
    alice = await personas.publisher("alice", balance_fen=10_000)
    task = await tasks.publish(alice.id, title="T", instructions="x", unit_price_fen=100)
    page = (await as_operator.get(f"/admin/tasks/{task.id}")).text
    assert "接单时限 8 秒" in page and "审核时限 10 分 1 秒" in page and "0.1333" not in page
