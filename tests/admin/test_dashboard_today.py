"""The dashboard of issue 13: tasks per state; recharges, withdrawals paid and new users today against
yesterday up to the same time; a 7-day chart drawn on the server; clickable tiles; the oldest pending
withdrawal's age; scheduler job failures and subscription messages given up."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from models import clock, withdrawals
from models.outbox import Channel, Outbox, OutboxStatus
from models.users import User
from scheduler import failures
from server.admin import trends
from tests import personas
from tests.admin.conftest import pending_withdrawal


@pytest.fixture(autouse=True)
def no_cache(monkeypatch):
    monkeypatch.setattr(trends, "CACHE_S", 0.0)


@pytest.mark.asyncio
async def test_today_is_compared_with_yesterday_and_the_tiles_lead_to_their_lists(as_owner, owner):
    alice = await personas.publisher("alice", balance_fen=12_300)  # a paid recharge of ¥123.00
    w, bob = await pending_withdrawal(5_000, operator_id=owner.id)
    await withdrawals.mark_paid(w.id, owner.id, reference="bank 7")
    waiting, _ = await pending_withdrawal(2_000, operator_id=owner.id)
    await personas.worker("carol")
    old = await personas.worker("dave")  # joined yesterday, an hour before this time of day
    await User.filter(id=old.id).update(created_at=clock.now() - dt.timedelta(days=1, hours=1))
    values = (await as_owner.get("/admin/dashboard.json")).json()["values"]
    assert values["today.recharge_fen"] == "¥123.00" and values["today.recharges"] == "1"
    assert values["today.withdrawn_fen"] == "¥50.00" and values["today.withdrawals_paid"] == "1"
    assert values["today.new_users"] == "4"  # alice, bob, bob's neighbour in the queue, carol
    assert values["yesterday.new_users"] == "昨日同期 1（+300%）"
    assert values["yesterday.recharge_fen"] == "昨日同期 ¥0.00（+∞）"
    assert values["tasks.open"] == "0" and values["oldest_withdrawal"].endswith("秒")
    page = await as_owner.get("/admin")
    tiles = re.findall(r'<(a|div) class="tile[^"]*"', page.text)
    assert tiles and all(kind == "a" for kind in tiles)  # every tile leads somewhere
    for target in ('href="/admin/withdrawals" id="tile-withdrawals"', 'href="/admin/customers" id="tile-new-users"',
                   'href="/admin/tasks?state=open"', 'href="/admin/tasks?state=cancelled"'):
        assert target in page.text
    assert 'id="oldest-withdrawal"' in page.text


@pytest.mark.asyncio
async def test_the_7_day_chart_is_an_svg_drawn_by_the_server(as_operator):
    await personas.publisher("alice", balance_fen=5_000)
    page = (await as_operator.get("/admin")).text
    charts = re.findall(r'<svg class="chart".*?</svg>', page, re.S)
    assert len(charts) == 2
    today = clock.now().astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%m-%d")
    assert today in charts[0] and "充值: ¥50.00" in charts[0]
    assert charts[0].count("<rect") >= 14 and "<script" not in page.split('<script src="/admin/static/admin.js"')[1]
    assert "cdn" not in page.lower()


@pytest.mark.asyncio
async def test_failing_scheduler_jobs_and_given_up_subscription_messages_show_on_the_dashboard(as_operator):
    bob = await personas.worker("bob")
    values = (await as_operator.get("/admin/dashboard.json")).json()
    assert values["values"]["jobs_failing"] == "0" and not values["alerts"]["jobs"]
    await failures.record_failure("sweep", RuntimeError("connection refused"))
    await failures.record_failure("sweep", RuntimeError("connection refused"))
    await Outbox.create(channel=Channel.SUBSCRIBE, event="order_approved", user_id=bob.id, payload={}, status=OutboxStatus.FAILED,
                        attempts=5, next_attempt_at=clock.now(), last_error="errcode 43101", created_at=clock.now())
    data = (await as_operator.get("/admin/dashboard.json")).json()
    assert data["values"]["jobs_failing"] == "1" and data["values"]["job_failures"] == "2" and data["alerts"]["jobs"]
    assert data["values"]["subscribe_failed"] == "1" and data["alerts"]["subscribe_failed"]
    page = (await as_operator.get("/admin")).text
    jobs = re.search(r'<table class="grid small" id="job-failures">.*?</table>', page, re.S).group(0)
    assert "定时器（到期处理）" in jobs and "失败中" in jobs and "RuntimeError: connection refused" in jobs
    messages = re.search(r'id="subscribe-failures">.*?</table>', page, re.S).group(0)
    assert "订单通过通知" in messages and f'href="/admin/customers/{bob.id}"' in messages and "43101" in messages
    failures._failing.pop("sweep", None)
    await failures.record_success("sweep")  # the next round works: recovered, the failures still counted
    data = (await as_operator.get("/admin/dashboard.json")).json()
    assert data["values"]["jobs_failing"] == "0" and data["values"]["job_failures"] == "2"
