"""Operators check from their phones (issue 13 "Phones"): at 390 px every page of the panel fits its
width — no sideways scrolling of the page; wide tables scroll inside their own box — and every form
field has a label a screen reader can say. Screenshots go to test-artifacts/screenshots/phone-*.png."""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.admin.browser.test_browser import ARGS, CHROMIUM, SHOTS, async_api
from tests.admin.conftest import PASSWORD
from tests.admin.test_every_page_both_languages import a_busy_market

PHONE = {"width": 390, "height": 844}

# Every element wider than the page, for the failure message.
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.right > width + 1 && el.offsetParent !== null) {
      let p = el.parentElement, clipped = false;
      while (p) { const s = getComputedStyle(p); if (s.overflowX === 'auto' || s.overflowX === 'scroll' || s.overflowX === 'hidden') { clipped = true; break; } p = p.parentElement; }
      if (!clipped) wide.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + String(el.className).split(' ').join('.') : '') + ' ' + Math.round(r.right));
    }
  }
  return {scroll: document.documentElement.scrollWidth, width: width, wide: wide.slice(0, 8)};
}"""

UNLABELLED_JS = """() => Array.from(document.querySelectorAll('input, select, textarea'))
  .filter(el => el.type !== 'hidden' && !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map(el => el.name || el.id || el.outerHTML.slice(0, 60))"""


@pytest_asyncio.fixture
async def phone(live):
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport=PHONE, base_url=live.base, locale="zh-CN", is_mobile=True, has_touch=True,
                                            device_scale_factor=2)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            await context.close()
            await browser.close()


@pytest.mark.asyncio
async def test_every_page_fits_a_phone_without_sideways_scrolling(live, phone, owner):
    ids = await a_busy_market(owner)
    await phone.goto("/admin/login")
    assert (await phone.evaluate(OVERFLOW_JS))["scroll"] <= PHONE["width"]
    await phone.fill("input[name=username]", owner.username)
    await phone.fill("input[name=password]", PASSWORD)
    await phone.click("button.primary")
    await phone.wait_for_url("**/admin")
    pages = {
        "dashboard": "/admin", "appeals": "/admin/appeals", "withdrawals": "/admin/withdrawals", "customers": "/admin/customers",
        "customer": f"/admin/customers/{ids['bob']}", "tasks": "/admin/tasks", "task": f"/admin/tasks/{ids['task']}",
        "orders": "/admin/orders", "order": f"/admin/orders/{ids['appealed']}", "audit": "/admin/audit", "settings": "/admin/settings",
        "operators": "/admin/operators", "reconciliation": "/admin/reconciliation", "password": "/admin/password",
        "filter-error": "/admin/orders?worker=abc", "not-found": "/admin/nothing", "dashboard-en": "/admin?lang=en",
        "customer-en": f"/admin/customers/{ids['alice']}?lang=en", "settings-en": "/admin/settings?lang=en",
    }
    problems = {}
    for name, path in pages.items():
        await phone.goto(path)
        found = await phone.evaluate(OVERFLOW_JS)
        if found["scroll"] > PHONE["width"]:
            problems[name] = found
        unlabelled = await phone.evaluate(UNLABELLED_JS)
        if unlabelled:
            problems[f"{name} (labels)"] = unlabelled
        await phone.screenshot(path=str(SHOTS / f"phone-{name}.png"), full_page=True)
    assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())
