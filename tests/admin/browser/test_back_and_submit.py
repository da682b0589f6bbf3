"""Issue 13 defect 1 in a real browser: after a +¥5.00 adjustment the operator presses Back and
submits the form again. The second identical adjustment waits for an explicit confirmation."""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests import personas
from tests.admin.browser.test_browser import ARGS, CHROMIUM, async_api
from tests.admin.conftest import PASSWORD


@pytest_asyncio.fixture
async def page(live):
    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live.base, locale="zh-CN")
        page = await context.new_page()
        page.set_default_timeout(15_000)
        page.on("dialog", lambda dialog: dialog.accept())
        try:
            yield page
        finally:
            await context.close()
            await browser.close()


@pytest.mark.asyncio
async def test_back_and_submit_does_not_credit_twice_without_a_confirmation(live, page, owner):
    bob = await personas.worker("bob")
    await page.goto("/admin/login")
    await page.fill("input[name=username]", owner.username)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button.primary")
    await page.wait_for_url("**/admin")
    await page.goto(f"/admin/customers/{bob.id}")
    form = f"form[action='/admin/customers/{bob.id}/adjust']"

    async def submit_five():
        await page.fill(f"{form} input[name=amount]", "5.00")
        await page.fill(f"{form} input[name=reason]", "补偿")
        await page.click(f"{form} button")

    await submit_five()
    await page.wait_for_selector(".flash.ok")
    assert await personas.available(bob) == 500
    await page.go_back()  # the filled form again
    await page.wait_for_selector(form)
    await submit_five()
    await page.wait_for_selector("#repeat-warning")
    assert await personas.available(bob) == 500  # held
    await page.check(f"{form} input[name=confirm_repeat]")
    await page.click(f"{form} button")
    await page.wait_for_selector(".flash.ok")
    assert await personas.available(bob) == 1000
    await personas.assert_books_clean()
