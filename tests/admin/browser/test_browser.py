"""The panel in a real browser (Debian's chromium driven by Playwright): an operator's day, and the
dashboard changing by itself while it is open. Screenshots of each main page go to
test-artifacts/screenshots/ (gitignored) for a person to look at."""

from __future__ import annotations

import os
import pathlib

import pytest
import pytest_asyncio

from models import settings as market_settings
from models.orders import Order, OrderStatus
from models.users import User
from models.withdrawals import Withdrawal, WithdrawalStatus
from tests.admin.conftest import PASSWORD, appealed_order, completed_order, pending_withdrawal

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True)
async_api = pytest.importorskip("playwright.async_api", reason="needs the playwright Python package")

SHOTS = pathlib.Path(__file__).resolve().parents[3] / "test-artifacts" / "screenshots"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest_asyncio.fixture
async def page(live):
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport={"width": 1400, "height": 900}, base_url=live.base, locale="zh-CN")
        page = await context.new_page()
        page.set_default_timeout(15_000)
        page.on("dialog", lambda dialog: dialog.accept())  # the confirm() before costly actions
        try:
            yield page
        finally:
            await context.close()
            await browser.close()


async def shot(page, name: str) -> None:
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def log_in(page, username: str) -> None:
    await page.goto("/admin")
    assert "/admin/login" in page.url
    await shot(page, "01-login")
    await page.fill("input[name=username]", username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button.primary")
    await page.wait_for_url("**/admin")


@pytest.mark.asyncio
async def test_an_owner_runs_the_day_from_the_panel(live, page, owner):
    order, alice, bob = await appealed_order(price_fen=800)
    w, payee = await pending_withdrawal(5_000)
    await completed_order()

    await log_in(page, owner.username)
    assert await page.locator("h1").first.inner_text() != ""
    await shot(page, "02-dashboard")

    # settings: the countdown from 5 to 6 minutes
    await page.click("header nav a[href='/admin/settings']")
    await shot(page, "03-settings")
    await page.fill("#f-countdown_s-min", "11")  # too long: refused with the reason
    await page.click("form.settings button.primary")
    assert "不能超过 10 分钟" in await page.locator("tr.invalid").inner_text()
    await shot(page, "03b-settings-invalid")
    await page.fill("#f-countdown_s-min", "6")
    await page.click("form.settings button.primary")
    await page.wait_for_selector(".flash.ok")
    market_settings.invalidate_cache()
    assert (await market_settings.current()).countdown_s == 360

    # appeals: the worker wins
    await page.click("header nav a[href='/admin/appeals']")
    await page.wait_for_selector(f"#appeal-{order.id}")
    await shot(page, "04-appeals")
    card = page.locator(f"#appeal-{order.id}")
    await card.locator("textarea[name=note]").fill("截图清晰，接单方胜")
    await card.locator("button[value=worker]").click()
    await page.wait_for_selector(".flash.ok")
    assert (await Order.get(id=order.id)).status == OrderStatus.COMPLETED

    # withdrawals: approve, paid through the WeChat sandbox
    await page.click("header nav a[href='/admin/withdrawals']")
    await page.wait_for_selector(f"#withdrawal-{w.id}")
    await shot(page, "05-withdrawals")
    await page.locator(f"#withdrawal-{w.id} summary").click()  # the decision folds out of its row (issue 13)
    await page.locator(f"#withdrawal-{w.id} form[action$='/approve'] button").click()
    await page.wait_for_selector(".flash.ok")
    assert (await Withdrawal.get(id=w.id)).status == WithdrawalStatus.PAYING

    # customers: find Bob by his invite code and ban him
    await page.click("header nav a[href='/admin/customers']")
    await page.fill("input[name=q]", bob.invite_code)
    await page.click("form.filters button")
    await page.click(f"a[href='/admin/customers/{bob.id}'] >> nth=0")
    await shot(page, "06-customer")
    await page.fill(f"form[action='/admin/customers/{bob.id}/ban'] input[name=reason]", "刷单")
    await page.click(f"form[action='/admin/customers/{bob.id}/ban'] button")
    await page.wait_for_selector("#banned-badge")
    assert (await User.get(id=bob.id)).banned

    for name, path in (("07-tasks", "/admin/tasks"), ("08-orders", "/admin/orders"), ("09-order", f"/admin/orders/{order.id}"),
                       ("10-audit", "/admin/audit"), ("11-operators", "/admin/operators"), ("12-dashboard-en", "/admin?lang=en")):
        await page.goto(path)
        await shot(page, name)


@pytest.mark.asyncio
async def test_the_dashboard_updates_without_a_reload_when_an_order_completes(live, page, operator):
    await log_in(page, operator.username)
    counter = page.locator("#completed-today")
    assert await counter.inner_text() == "0"
    await page.evaluate("window.__sameDocument = true")
    await completed_order()  # elsewhere: the publisher approves in the Mini Program
    # Polled by Playwright itself (a string predicate would need eval, which the panel's CSP forbids).
    await async_api.expect(counter).to_have_text("1", timeout=15_000)
    assert await page.evaluate("window.__sameDocument === true")  # no navigation happened
    assert await page.locator("#orders-completed").inner_text() == "1"
    await shot(page, "13-dashboard-updated")
