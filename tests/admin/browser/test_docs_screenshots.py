"""The screenshots in docs/admin.md: the main pages of a market with a week behind it, at desktop and
phone width. Always saved to test-artifacts/docs-screenshots/; with ADMIN_DOCS_SCREENSHOTS=1 they
also replace docs/admin/*.png (256-colour PNGs, small enough to keep in git)."""

from __future__ import annotations

import datetime as dt
import os
import pathlib

import pytest

from models import clock, orders, tasks
from models.recharges import Recharge
from models.users import User
from models.withdrawals import Withdrawal
from tests import personas
from tests.admin.browser.test_browser import ARGS, CHROMIUM, async_api
from tests.admin.conftest import PASSWORD, appealed_order, pending_withdrawal
from tests.admin.test_every_page_both_languages import a_busy_market

ROOT = pathlib.Path(__file__).resolve().parents[3]
OUT = ROOT / "test-artifacts" / "docs-screenshots"
DOCS = ROOT / "docs" / "admin"


async def a_week_behind(owner) -> dict[str, int]:
    ids = await a_busy_market(owner)
    now = clock.now()
    for back in range(1, 7):  # a few customers, recharges and payouts on each of the last days
        for n in range(back % 3 + 1):
            u = await personas.publisher(f"客户{back}{n}", balance_fen=2_000 * (back + n))
            await User.filter(id=u.id).update(created_at=now - dt.timedelta(days=back))
            await Recharge.filter(user_id=u.id).update(paid_at=now - dt.timedelta(days=back))
        w, _ = await pending_withdrawal(1_000 * back, operator_id=owner.id)
        from models import withdrawals

        await withdrawals.mark_paid(w.id, owner.id, reference=f"bank {back}")
        await Withdrawal.filter(id=w.id).update(finished_at=now - dt.timedelta(days=back))
    second, _, _ = await appealed_order(price_fen=1_200)
    wang = await personas.worker("王五")
    alice = await User.get(id=ids["alice"])
    task = await tasks.publish(alice.id, title="下载 App 并注册", instructions="下载后注册账号，截图首页。", unit_price_fen=450, quantity=5)
    await orders.take(task.id, wang.id)
    await pending_withdrawal(8_800, operator_id=owner.id)
    return ids | {"wang": wang.id, "second": second.id}


@pytest.mark.asyncio
async def test_screenshots_of_the_main_pages(live, owner):
    ids = await a_week_behind(owner)
    OUT.mkdir(parents=True, exist_ok=True)
    desktop = {"dashboard": "/admin", "appeals": "/admin/appeals", "withdrawals": "/admin/withdrawals",
               "customer": f"/admin/customers/{ids['bob']}", "customers": "/admin/customers?q=王", "orders": "/admin/orders",
               "order": f"/admin/orders/{ids['appealed']}", "audit": "/admin/audit", "settings": "/admin/settings",
               "filter-error": "/admin/tasks?publisher=abc&from=2026-13-45", "dashboard-en": "/admin?lang=en"}
    phone = {"phone-dashboard": "/admin?lang=zh", "phone-orders": "/admin/orders", "phone-customer": f"/admin/customers/{ids['wang']}"}
    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for shots, viewport, mobile in ((desktop, {"width": 1280, "height": 800}, False), (phone, {"width": 390, "height": 844}, True)):
                context = await browser.new_context(viewport=viewport, base_url=live.base, locale="zh-CN", is_mobile=mobile)
                page = await context.new_page()
                await page.goto("/admin/login")
                await page.fill("input[name=username]", owner.username)
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button.primary")
                await page.wait_for_url("**/admin")
                for name, path in shots.items():
                    await page.goto(path)
                    await page.screenshot(path=str(OUT / f"{name}.png"), full_page=not mobile)
                await context.close()
        finally:
            await browser.close()
    if os.environ.get("ADMIN_DOCS_SCREENSHOTS") == "1":
        from PIL import Image

        DOCS.mkdir(parents=True, exist_ok=True)
        for shot in OUT.glob("*.png"):
            image = Image.open(shot).convert("RGB")
            image = image.crop((0, 0, image.width, min(image.height, 1600)))  # the top of a long page says enough
            image.quantize(colors=256).save(DOCS / shot.name, optimize=True)
