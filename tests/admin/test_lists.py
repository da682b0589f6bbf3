"""The lists as work queues (issue 13): names next to ids, filters by name or id that say what was
wrong, pagination and filters of the customers, the same person on the other end, CSV exports."""

from __future__ import annotations

import csv
import io

import pytest

from models import tasks
from tests import personas
from tests.admin.conftest import appealed_order, completed_order


def rows_of(csv_text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(csv_text)))


@pytest.mark.asyncio
async def test_orders_and_tasks_show_names_and_filter_by_nickname(as_operator):
    order, alice, bob = await appealed_order()
    other = await completed_order()
    page = await as_operator.get("/admin/orders")
    assert "Scan the code" in page.text and "alice" in page.text and "bob" in page.text
    # a part of a nickname (any length, Chinese too) or an id
    wang = await personas.worker("王五")
    page = await as_operator.get("/admin/orders", params={"worker": "bo"})
    assert f'href="/admin/orders/{order.id}"' in page.text
    page = await as_operator.get("/admin/orders", params={"worker": f"#{bob.id}"})
    assert f'href="/admin/orders/{order.id}"' in page.text and f'href="/admin/orders/{other.id}"' not in page.text
    assert f'<small class="named muted">= #{bob.id} bob</small>' in page.text  # the name beside the id typed
    page = await as_operator.get("/admin/orders", params={"task": "Scan"})
    assert f'href="/admin/orders/{order.id}"' in page.text and f'href="/admin/orders/{other.id}"' not in page.text
    page = await as_operator.get("/admin/customers", params={"q": "王五"})
    assert f'href="/admin/customers/{wang.id}"' in page.text
    page = await as_operator.get("/admin/tasks", params={"publisher": "alice"})
    assert f'href="/admin/tasks/{order.task_id}"' in page.text and "alice" in page.text
    # what was wrong is said, and nothing is listed
    r = await as_operator.get("/admin/orders", params={"worker": "nobody-like-this", "from": "2026-13-45", "state": "bogus"})
    assert r.status_code == 400
    assert "没有昵称包含“nobody-like-this”的客户" in r.text and "不是日期" in r.text and "“bogus”不是以下之一" in r.text
    assert f'href="/admin/orders/{order.id}"' not in r.text


@pytest.mark.asyncio
async def test_the_audit_log_names_people_and_tasks_and_filters_by_name(as_owner, owner):
    order, alice, bob = await appealed_order()
    await as_owner.post(f"/admin/customers/{bob.id}/ban", {"reason": "spam"})
    page = await as_owner.get("/admin/audit")
    assert f"#{bob.id} bob" in page.text and f"#{order.id} Scan the code" in page.text and "boss" in page.text
    page = await as_owner.get("/admin/audit", params={"actor": "boss"})
    assert "spam" in page.text and "Scan the code" not in page.text
    page = await as_owner.get("/admin/audit", params={"actor": "alice", "actor_kind": "user"})
    assert "发布任务" in page.text and "spam" not in page.text
    page = await as_owner.get("/admin/audit", params={"target_kind": "user", "target_id": "bob"})
    assert "spam" in page.text


@pytest.mark.asyncio
async def test_customers_are_paged_filtered_with_balances_inviters_and_the_other_end(as_operator):
    inviter = await personas.publisher("老李")
    rich = await personas.publisher("有钱人", balance_fen=12_345, inviter=inviter, unionid="union-1")
    twin = await personas.worker("有钱人的接单号", unionid="union-1")
    poor = await personas.worker("穷人")
    page = await as_operator.get("/admin/customers", params={"balance": "yes"})
    assert f'href="/admin/customers/{rich.id}"' in page.text and f'href="/admin/customers/{poor.id}"' not in page.text
    assert "¥123.45" in page.text and f"#{inviter.id} <span class=\"name\">老李</span>" in page.text
    assert f'<a href="/admin/customers/{twin.id}" class="twin">' in page.text
    page = await as_operator.get("/admin/customers", params={"end": "worker"})
    assert f'<a href="/admin/customers/{poor.id}">{poor.id}</a>' in page.text
    assert f'<a href="/admin/customers/{rich.id}">{rich.id}</a>' not in page.text
    page = await as_operator.get("/admin/customers", params={"banned": "yes"})
    assert f'href="/admin/customers/{poor.id}"' not in page.text
    assert (await as_operator.get("/admin/customers", params={"banned": "perhaps"})).status_code == 400
    for n in range(55):
        await personas.worker(f"批量{n}")
    first = await as_operator.get("/admin/customers")
    second = await as_operator.get("/admin/customers", params={"page": "2"})
    assert "page=2" in first.text and f'href="/admin/customers/{inviter.id}"' in second.text


@pytest.mark.asyncio
async def test_every_list_exports_csv_with_a_bom_and_the_same_filters(as_operator):
    order, alice, bob = await appealed_order()
    await completed_order()
    r = await as_operator.get("/admin/orders", params={"worker": "bob", "state": "appealing", "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = rows_of(r.content.decode("utf-8-sig"))
    assert rows[0][:3] == ["订单号", "任务 ID", "标题"] and len(rows) == 2
    assert rows[1][0] == str(order.id) and rows[1][2] == "Scan the code" and rows[1][5] == "申诉中" and rows[1][6] == "5.00"
    for path in ("/admin/tasks", "/admin/customers", "/admin/audit"):
        r = await as_operator.get(path, params={"format": "csv"})
        assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf"), path
        assert len(rows_of(r.content.decode("utf-8-sig"))) > 1, path
    # a cell that Excel would run as a formula stays text
    evil = await personas.publisher("=HYPERLINK(\"x\")", balance_fen=10_000)
    await tasks.publish(evil.id, title="=1+2", instructions="x", unit_price_fen=100)
    rows = rows_of((await as_operator.get("/admin/tasks", params={"format": "csv"})).content.decode("utf-8-sig"))
    assert rows[1][1] == "'=1+2"


@pytest.mark.asyncio
async def test_a_customer_page_links_the_same_person_on_the_other_end_and_names_tasks(as_operator):
    order, alice, bob = await appealed_order()
    twin = await personas.publisher("bob-publishes", unionid="union-bob")
    await bob.filter(id=bob.id).update(unionid="union-bob")
    page = await as_operator.get(f"/admin/customers/{bob.id}")
    assert f'<a href="/admin/customers/{twin.id}" class="twin">#{twin.id} bob-publishes (发单端)</a>' in page.text
    assert f"#{order.task_id} Scan the code" in page.text


@pytest.mark.asyncio
async def test_an_export_is_audited_with_who_which_list_its_filters_and_its_rows(as_operator, operator):
    """A CSV carries names and money out of the panel: the audit log says who took what."""
    from models.audit import AuditLog

    await appealed_order()
    r = await as_operator.get("/admin/orders", params={"worker": "bob", "state": "appealing", "format": "csv"})
    assert r.status_code == 200
    row = await AuditLog.get(action="export.csv")
    assert (row.actor_kind, row.actor_id) == ("operator", operator.id)
    assert row.data == {"list": "Orders", "filters": {"worker": "bob", "state": "appealing"}, "rows": 1}
    page = (await as_operator.get("/admin/audit", params={"action": "export."})).text
    assert "导出 CSV" in page and "导出的列表 订单" in page and "行数 1" in page
    await as_operator.get("/admin/orders", params={"worker": "bob"})  # looking is not exporting
    assert await AuditLog.filter(action="export.csv").count() == 1


async def _held_task(title: str = "帮忙刷票"):
    from models import settings as market_settings

    await market_settings.update({"compliance_hold_on_match": 1}, operator_id=1)
    alice = await personas.publisher("alice", balance_fen=100_000)
    return await tasks.publish(alice.id, title=title, instructions="投第 3 号", unit_price_fen=500, quantity=2)


async def _difference(n: int = 1):
    import datetime as dt

    from models import reconciliation as recon

    found = [recon.Found(recon.DifferenceKind.PAYMENT_NOT_CREDITED, f"tx-{i}", wechat_ref=f"tx-{i}", wechat_amount_fen=1_000 + i,
                         details={"out_trade_no": f"R{i}"}) for i in range(n)]
    return await recon.record(dt.date(2026, 3, 1), found)


@pytest.mark.asyncio
async def test_the_appeals_reconciliation_and_held_task_queues_export_csv(as_operator):
    from models.audit import AuditLog

    order, alice, bob = await appealed_order()
    held = await _held_task()
    (difference,) = await _difference()

    r = await as_operator.get("/admin/appeals", params={"format": "csv"})
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf") and "attachment" in r.headers["content-disposition"]
    rows = rows_of(r.content.decode("utf-8-sig"))
    assert rows[0][:3] == ["订单号", "任务 ID", "标题"] and "接单方过往记录" in rows[0] and len(rows) == 2
    line = dict(zip(rows[0], rows[1]))
    assert line["订单号"] == str(order.id) and line["驳回理由"] == "the screenshot is blurry" and line["单价"] == "5.00"
    assert line["接单者"].endswith("bob") and line["发单方过往记录"].startswith("发单方：已收到提交 1 单，驳回 1 单")

    r = await as_operator.get("/admin/reconciliation", params={"format": "csv", "lang": "en"})
    rows = rows_of(r.content.decode("utf-8-sig"))
    assert rows[0][:3] == ["#", "Kind", "Bill day"] and len(rows) == 2
    assert rows[1][:3] == [str(difference.id), "paid at WeChat, not credited", "2026-03-01"] and "10.00" in rows[1]

    r = await as_operator.get("/admin/compliance", params={"format": "csv", "lang": "zh"})  # (the language is remembered)
    rows = rows_of(r.content.decode("utf-8-sig"))
    assert rows[0][:4] == ["任务 ID", "标题", "发单者", "暂停原因"] and len(rows) == 2
    assert rows[1][0] == str(held.id) and rows[1][3] == "标题中含禁用词“刷票”（有偿投票/刷票）"
    assert rows[1][rows[0].index("托管")] == "11.00"  # both slots' price and fee, waiting in escrow

    exported = [a.data["list"] for a in await AuditLog.filter(action="export.csv").order_by("id")]
    assert exported == ["Appeals", "Reconciliation", "Held tasks"]
    page = await as_operator.get("/admin/appeals")
    assert 'href="/admin/appeals?format=csv"' in page.text
    for path in ("/admin/reconciliation", "/admin/compliance"):
        assert f'href="{path}?format=csv"' in (await as_operator.get(path)).text


@pytest.mark.asyncio
async def test_an_export_cut_at_its_row_limit_says_so_in_its_last_row(as_operator, monkeypatch):
    from models.audit import AuditLog
    from server.admin import export

    monkeypatch.setattr(export, "MAX_ROWS", 2)
    alice = await personas.publisher("alice", balance_fen=100_000)
    for n in range(3):
        await tasks.publish(alice.id, title=f"任务{n}", instructions="x", unit_price_fen=100)
    for _ in range(3):
        await appealed_order()
        await _held_task()
    await _difference(3)
    for path in ("/admin/tasks", "/admin/orders", "/admin/customers", "/admin/audit", "/admin/appeals",
                 "/admin/reconciliation", "/admin/compliance"):  # the withdrawals: their own test below
        rows = rows_of((await as_operator.get(path, params={"format": "csv"})).content.decode("utf-8-sig"))
        assert len(rows) == 1 + 2 + 1, path  # header, the first two, the note
        total = await AuditLog.filter(action="export.csv").order_by("-id").first()
        assert rows[-1][0] == f"仅导出前 2 行，共 {total.data['matching']} 行" and total.data["matching"] >= 3, path
        assert total.data["rows"] == 2
    rows = rows_of((await as_operator.get("/admin/tasks", params={"format": "csv", "lang": "en"})).content.decode("utf-8-sig"))
    assert rows[-1] == ["Only the first 2 rows were exported, of 9."]  # three tasks, three held, three appealed
    rows = rows_of((await as_operator.get("/admin/tasks", params={"format": "csv", "state": "held", "lang": "zh"})).content.decode("utf-8-sig"))
    assert rows[-1] == ["仅导出前 2 行，共 3 行"]
    monkeypatch.setattr(export, "MAX_ROWS", 3)  # exactly the rows that match: nothing was cut, nothing said
    rows = rows_of((await as_operator.get("/admin/tasks", params={"format": "csv", "state": "held"})).content.decode("utf-8-sig"))
    assert len(rows) == 4 and not rows[-1][0].startswith("仅导出")
    assert "matching" not in (await AuditLog.filter(action="export.csv").order_by("-id").first()).data


@pytest.mark.asyncio
async def test_the_withdrawal_export_cut_at_its_row_limit_says_so(as_operator, monkeypatch):
    from server.admin import export
    from tests.admin.conftest import pending_withdrawal

    monkeypatch.setattr(export, "MAX_ROWS", 2)
    for n in range(3):
        await pending_withdrawal(1_000 + n)
    rows = rows_of((await as_operator.get("/admin/withdrawals", params={"format": "csv"})).content.decode("utf-8-sig"))
    assert len(rows) == 4 and rows[-1] == ["仅导出前 2 行，共 3 行"]


def test_a_cut_file_says_its_figures_grouped_by_thousands():
    from server.admin import export, i18n

    text = export.to_csv([("#", lambda r: r)], range(3), i18n.translator("zh"), matching=123_456)
    assert text.splitlines()[-1] == "仅导出前 3 行，共 123 456 行"
    assert export.to_csv([("#", lambda r: r)], range(3), i18n.translator("en"), matching=3).splitlines()[-1] == "2"


@pytest.mark.asyncio
async def test_task_and_order_exports_settle_overdue_timers_of_their_rows_first(as_operator):
    """The scheduler is down: the exports say what the pages say — the take window ended (expired,
    the untaken slot refunded) and the countdown ended (handed in for review) — not the stale rows."""
    from models import clock, orders

    alice = await personas.publisher("alice", balance_fen=100_000)
    bob = await personas.worker("bob")
    task = await tasks.publish(alice.id, title="Scan", instructions="x", unit_price_fen=500, quantity=2)
    order = await orders.take(task.id, bob.id)
    clock.advance(600)  # past the countdown and the take window; no sweep ran
    r = await as_operator.get("/admin/orders", params={"format": "csv"})
    assert r.status_code == 200, r.text
    rows = rows_of(r.content.decode("utf-8-sig"))
    line = dict(zip(rows[0], rows[1]))
    assert line["订单号"] == str(order.id) and line["状态"] == "待审核", line  # not 进行中
    rows = rows_of((await as_operator.get("/admin/tasks", params={"format": "csv"})).content.decode("utf-8-sig"))
    line = dict(zip(rows[0], rows[1]))
    assert line["任务 ID"] == str(task.id) and line["状态"] == "已过期", line  # not 可接单


@pytest.mark.asyncio
async def test_a_customers_page_counts_every_invitee_and_leads_to_all_of_them_and_to_all_their_orders_and_tasks(as_operator, monkeypatch):
    from server.admin import views
    from tests import personas

    monkeypatch.setattr(views, "INVITEES_SHOWN", 2)
    dave = await personas.worker("dave")
    invited = [await personas.worker(f"friend{i}", inviter=dave) for i in range(3)]
    stranger = await personas.worker("stranger")
    page = (await as_operator.get(f"/admin/customers/{dave.id}")).text
    assert "被邀请人 (3)" in page and f'href="/admin/customers?inviter={dave.id}"' in page
    listed = (await as_operator.get(f"/admin/customers?inviter={dave.id}")).text
    for u in invited:
        assert f'href="/admin/customers/{u.id}"' in listed
    assert f'href="/admin/customers/{stranger.id}"' not in listed
    by_name = (await as_operator.get("/admin/customers?inviter=dave")).text  # a nickname works too
    assert all(f'href="/admin/customers/{u.id}"' in by_name for u in invited)
    bad = await as_operator.get("/admin/customers?inviter=nobody-called-this")
    assert bad.status_code == 400


@pytest.mark.asyncio
async def test_a_tasks_page_says_when_it_shows_only_the_first_orders_and_links_to_all(as_operator, monkeypatch):
    from models import orders, tasks
    from server.admin import views
    from tests import personas

    monkeypatch.setattr(views, "TASK_ORDERS_SHOWN", 2)
    alice = await personas.publisher("alice", balance_fen=10_000)
    task = await tasks.publish(alice.id, title="Scan", instructions="Scan the code", unit_price_fen=100, quantity=3)
    for i in range(3):
        await orders.take(task.id, (await personas.worker(f"w{i}")).id)
    page = (await as_operator.get(f"/admin/tasks/{task.id}")).text
    assert "仅显示最先接的 2 个订单" in page and f'href="/admin/orders?task={task.id}"' in page
    assert (await as_operator.get(f"/admin/customers/{alice.id}")).text.count(f'href="/admin/tasks?publisher={alice.id}"') == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("text", ["x" * 17, "W" * 64, "很长的名字" * 40, "7KQ2MXPA7KQ2MXPA7"])
async def test_every_list_filter_takes_any_text_without_a_500(as_operator, text):
    """A text longer than an invite code once reached the ORM's invite_code comparison (500)."""
    await personas.worker("dave")
    probes = [("/admin/customers", p) for p in ("q", "inviter")] + [("/admin/orders", p) for p in ("q", "publisher", "worker", "task")]
    probes += [("/admin/tasks", p) for p in ("q", "publisher")] + [("/admin/audit", p) for p in ("actor", "actor_id", "target_id")]
    probes += [("/admin/withdrawals", p) for p in ("customer", "user", "q")]
    for path, param in probes:
        r = await as_operator.get(path, params={param: text})
        assert r.status_code in (200, 400), (path, param, r.status_code)
