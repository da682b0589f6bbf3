"""Every limit or throttle per address counts the client, not the proxy in front of the server
(issue 17, item 6). Behind a load balancer, with SANIC_PROXIES_COUNT=1 as the README says, the
address is the forwarded one; without it, forwarded headers are ignored (a client cannot choose its
own address to escape a limit)."""

from __future__ import annotations

import re

import pytest
import pytest_asyncio

from server.config import ROOT
from server.ratelimit import RULES, Rule
from tests.admin.conftest import PASSWORD, Panel, make_operator
from tests.api.conftest import start_live, stop_live

LOGIN_LIMIT = RULES["login"].limit


@pytest.fixture(autouse=True)
def login_window_of_an_hour(monkeypatch):
    """The login limit's fixed window, made long: 25 logins never straddle a window's edge."""
    monkeypatch.setitem(RULES, "login", Rule(LOGIN_LIMIT, 3600))


@pytest_asyncio.fixture
async def behind_proxy(database, tmp_path, monkeypatch):
    monkeypatch.setenv("SANIC_PROXIES_COUNT", "1")  # read by Sanic when the app is built
    live, server = await start_live(database, tmp_path)
    try:
        assert live.app.config.PROXIES_COUNT == 1
        yield live
    finally:
        await stop_live(server)


async def _logins(live, end: str, addresses: list[str]) -> list[int]:
    statuses = []
    async with live.client() as c:
        for i, address in enumerate(addresses):
            r = await c.post(f"/api/v1/{end}/login", json={"code": f"phone{i}-{i}"}, headers={"X-Forwarded-For": address})
            statuses.append(r.status_code)
    return statuses


@pytest.mark.asyncio
@pytest.mark.parametrize("end", ["worker", "publisher"])
async def test_behind_a_proxy_25_logins_from_25_phones_all_succeed(behind_proxy, end):
    statuses = await _logins(behind_proxy, end, [f"198.51.100.{i}" for i in range(1, 26)])
    assert statuses == [200] * 25


@pytest.mark.asyncio
@pytest.mark.parametrize("end", ["worker", "publisher"])
async def test_behind_a_proxy_logins_from_one_phone_are_still_limited(behind_proxy, end):
    statuses = await _logins(behind_proxy, end, ["198.51.100.7"] * (LOGIN_LIMIT + 5))
    assert statuses[:LOGIN_LIMIT] == [200] * LOGIN_LIMIT and set(statuses[LOGIN_LIMIT:]) == {429}


@pytest.mark.asyncio
async def test_behind_a_proxy_the_forwarded_address_is_the_rightmost_the_proxy_added(behind_proxy):
    """A client's own X-Forwarded-For entries come first; with one proxy only the last one counts,
    so a phone cannot spread its logins over addresses it makes up."""
    addresses = [f"10.9.9.{i}, 198.51.100.8" for i in range(LOGIN_LIMIT + 3)]
    statuses = await _logins(behind_proxy, "worker", addresses)
    assert 429 in statuses


@pytest.mark.asyncio
async def test_without_a_trusted_proxy_forwarded_headers_are_ignored(live):
    statuses = await _logins(live, "worker", [f"198.51.100.{i}" for i in range(1, LOGIN_LIMIT + 4)])
    assert statuses[:LOGIN_LIMIT] == [200] * LOGIN_LIMIT and set(statuses[LOGIN_LIMIT:]) == {429}


async def _admin_login(base: str, username: str, password: str, address: str) -> int:
    panel = Panel(base)
    try:
        page = await panel.get("/admin/login")
        token = re.search(r'name="csrf" value="([^"]*)"', page.text).group(1)
        r = await panel.http.post("/admin/login", data={"csrf": token, "username": username, "password": password},
                                  headers={"X-Forwarded-For": address})
        return r.status_code
    finally:
        await panel.aclose()


@pytest.mark.asyncio
async def test_behind_a_proxy_the_operator_login_throttle_counts_each_client(behind_proxy, monkeypatch):
    from models import audit, operators

    monkeypatch.setattr(operators, "SCRYPT_N", 2**10)
    op = await make_operator()
    for _ in range(operators.PAIR_FREE_FAILURES):
        assert await _admin_login(behind_proxy.base, op.username, "wrong password!", "203.0.113.5") == 401
    assert await _admin_login(behind_proxy.base, op.username, PASSWORD, "203.0.113.5") == 429  # that client waits
    assert await _admin_login(behind_proxy.base, op.username, PASSWORD, "198.51.100.9") == 303  # the operator does not
    row = await audit.AuditLog.filter(action="operator.login", actor_id=op.id).first()
    assert row.data["ip"] == "198.51.100.9"


@pytest.mark.asyncio
async def test_behind_a_proxy_the_per_address_lock_counts_each_client(behind_proxy, monkeypatch):
    from models import operators

    monkeypatch.setattr(operators, "SCRYPT_N", 2**10)
    monkeypatch.setattr(operators, "IP_MAX_FAILURES", 4)
    op = await make_operator()
    for i in range(4):
        assert await _admin_login(behind_proxy.base, f"guess{i}", "whatever-password", "203.0.113.6") == 401
    assert await _admin_login(behind_proxy.base, op.username, PASSWORD, "203.0.113.6") == 429
    assert await _admin_login(behind_proxy.base, op.username, PASSWORD, "198.51.100.10") == 303


def test_every_limit_per_address_reads_the_one_client_address_function():
    """The rule, on every place it applies: no code outside `server/ratelimit.client_address`
    reads the socket peer or the forwarded address itself."""
    offenders = []
    for folder in ("server", "miniprogram_api", "models", "wechat"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for needle in ("request.ip", "remote_addr", "request.peername", "x-forwarded-for"):
                if needle in text.lower() and path != ROOT / "server" / "ratelimit.py":
                    offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []
    callers = [p for folder in ("server", "miniprogram_api") for p in (ROOT / folder).rglob("*.py") if "client_address(" in p.read_text()]
    assert {str(p.relative_to(ROOT)) for p in callers} >= {"miniprogram_api/account.py", "server/admin/views.py", "server/ratelimit.py"}


def test_the_readme_says_to_set_the_proxy_count():
    assert "SANIC_PROXIES_COUNT" in (ROOT / "README.md").read_text()
