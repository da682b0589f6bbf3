"""The lists and work queues in a real browser (issue 13), at desktop width and at 390 px: names
next to ids, a filter by nickname, a batch approval with one confirmation, the CSV download, and
no page wider than the phone. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import pytest
import pytest_asyncio

from models.withdrawals import Withdrawal, WithdrawalStatus
from tests.admin.browser.test_browser import ARGS, CHROMIUM, SHOTS, async_api, log_in, shot
from tests.admin.conftest import appealed_order, completed_order, pending_withdrawal

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 900}


@pytest_asyncio.fixture
async def browser(live):
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


async def open_page(browser, live, viewport):
    context = await browser.new_context(viewport=viewport, base_url=live.base, locale="zh-CN", accept_downloads=True,
                                        is_mobile=viewport["width"] < 500, has_touch=viewport["width"] < 500)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda dialog: dialog.accept())
    return context, page


async def fits(page) -> bool:
    """No sideways scrolling of the page itself (tables scroll inside their card)."""
    return await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


@pytest.mark.asyncio
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
async def test_an_operator_works_the_lists_and_the_withdrawals_queue(live, browser, operator, viewport):
    order, alice, bob = await appealed_order()
    await completed_order()
    a, payee_a = await pending_withdrawal(2_000)
    b, payee_b = await pending_withdrawal(3_000)
    tag = "phone" if viewport is PHONE else "desktop"
    context, page = await open_page(browser, live, viewport)
    try:
        await log_in(page, operator.username)
        # orders: names beside ids, filtered by a part of a nickname
        await page.goto("/admin/orders")
        await page.fill("input[name=worker]", "bo")
        await page.click("form.filters button.primary")
        await page.wait_for_url("**worker=bo**")
        row = page.locator(f"a[href='/admin/orders/{order.id}']").first
        await row.wait_for()
        assert "Scan the code" in await page.locator("table.grid").inner_text()
        assert await fits(page), "orders page wider than the screen"
        await shot(page, f"20-orders-{tag}")
        # a wrong filter is named
        await page.goto("/admin/orders?from=2026-13-45")
        assert "不是日期" in await page.locator(".flash.bad").inner_text()
        # the withdrawals queue: select both, one confirmation, both approved
        await page.goto("/admin/withdrawals")
        await page.wait_for_selector(f"#withdrawal-{a.id}")
        assert await fits(page), "withdrawals page wider than the screen"
        await shot(page, f"21-withdrawals-{tag}")
        await page.check(f"#withdrawal-{a.id} input[type=checkbox]")
        await page.check(f"#withdrawal-{b.id} input[type=checkbox]")
        await page.click("#batch button")
        await page.wait_for_selector("text=确认：批准 2 笔")
        await shot(page, f"22-withdrawals-confirm-{tag}")
        await page.click("button.good")
        await page.wait_for_selector(".flash.ok")
        for w in (a, b):
            assert (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.PAYING
        assert await page.locator(f"#payout-{a.id}").count() == 1  # now waiting for the user in WeChat
        # CSV of the whole history
        await page.goto("/admin/withdrawals?state=all")
        async with page.expect_download() as info:
            await page.click("a.csv")
        download = await info.value
        assert download.suggested_filename.startswith("withdrawals-") and download.suggested_filename.endswith(".csv")
        # every list fits the phone
        for path in ("/admin/tasks", "/admin/customers", "/admin/audit", "/admin/withdrawals?state=all&group=user"):
            await page.goto(path)
            assert await fits(page), f"{path} wider than the screen"
        await shot(page, f"23-withdrawals-grouped-{tag}")
        await page.goto("/admin/customers")
        await shot(page, f"24-customers-{tag}")
        await page.goto("/admin/audit")
        await shot(page, f"25-audit-{tag}")
    finally:
        await context.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
async def test_an_operator_forces_a_stuck_order_after_seeing_the_money(live, browser, operator, viewport):
    from models.orders import Order, OrderStatus
    from tests import personas

    order, alice, bob = await appealed_order(price_fen=800)
    tag = "phone" if viewport is PHONE else "desktop"
    context, page = await open_page(browser, live, viewport)
    try:
        await log_in(page, operator.username)
        # the appeal first: both sides' track records beside the case
        await page.goto("/admin/appeals")
        assert "过往记录" in await page.locator(f"#appeal-{order.id} .track").inner_text()
        assert await fits(page), "appeals page wider than the screen"
        await shot(page, f"26-appeals-{tag}")
        # the order: force complete, the money shown before anything moves
        await page.goto(f"/admin/orders/{order.id}")
        await page.click("#override a[href$='force=complete#override']")
        money = await page.locator("#override .money").inner_text()
        assert "付给接单方" in money and "¥8.00" in money
        assert (await Order.get(id=order.id)).status == OrderStatus.APPEALING
        assert await fits(page), "order page wider than the screen"
        await shot(page, f"27-order-force-{tag}")
        before = await personas.available(bob)
        await page.fill("#override textarea[name=reason]", "发单方一周联系不上，运营核实后完成")
        await page.click("#override button.good")
        await page.wait_for_selector(".flash.ok")
        assert (await Order.get(id=order.id)).status == OrderStatus.COMPLETED
        assert await personas.available(bob) == before + 800
        assert "运营强制完成" in await page.locator("body").inner_text()
        assert await page.locator("#override").count() == 0
        await shot(page, f"28-order-forced-{tag}")
    finally:
        await context.close()
