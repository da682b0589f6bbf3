"""Operators log in: passwords hashed with scrypt, signed HttpOnly SameSite cookies, throttling."""

from __future__ import annotations

import io
import time

import pytest

from models import audit, clock, operators
from models.operators import Operator, Role
from server.admin import session
from tests.admin.conftest import PASSWORD, make_operator

PAGES = ["/admin", "/admin/dashboard.json", "/admin/settings", "/admin/appeals", "/admin/withdrawals", "/admin/customers",
         "/admin/customers/1", "/admin/tasks", "/admin/tasks/1", "/admin/orders", "/admin/orders/1", "/admin/audit",
         "/admin/operators", "/admin/uploads/up_x"]
FORMS = ["/admin/settings", "/admin/appeals/1/decide", "/admin/withdrawals/1/approve", "/admin/withdrawals/1/mark-paid",
         "/admin/withdrawals/1/reject", "/admin/customers/1/ban", "/admin/customers/1/unban", "/admin/customers/1/adjust",
         "/admin/operators", "/admin/operators/1/active", "/admin/operators/1/password", "/admin/logout"]


def test_passwords_are_scrypt_hashes_with_their_own_salt():
    a, b = operators.hash_password("s3cret-passphrase"), operators.hash_password("s3cret-passphrase")
    assert a.startswith(f"scrypt${2**15}$8$1$") and a != b  # real cost, a fresh salt each time
    assert operators.verify_password("s3cret-passphrase", a)
    assert not operators.verify_password("s3cret-passphrasf", a)
    assert not operators.verify_password("x", "garbage")


@pytest.mark.asyncio
@pytest.mark.parametrize("path", PAGES)
async def test_an_anonymous_visitor_is_sent_to_the_login_page(panel_factory, path):
    p = await panel_factory()
    r = await p.get(path)
    if path.endswith(".json"):
        assert r.status_code == 401
    else:
        assert r.status_code == 302 and r.headers["location"].startswith("/admin/login?next=")


@pytest.mark.asyncio
@pytest.mark.parametrize("path", FORMS)
async def test_an_anonymous_form_post_is_sent_to_the_login_page(panel_factory, path):
    p = await panel_factory()
    r = await p.post(path, {"x": "1"}, csrf="whatever")
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/login")


@pytest.mark.asyncio
async def test_an_operator_logs_in_with_a_signed_httponly_strict_cookie(panel_factory, operator):
    p = await panel_factory()
    r = await p.login(operator.username)
    assert r.status_code == 303 and r.headers["location"] == "/admin"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(session.SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie and "Max-Age=43200" in cookie
    assert (await p.get("/admin")).status_code == 200
    rows = await audit.AuditLog.filter(action="operator.login", actor_id=operator.id)
    assert len(rows) == 1


@pytest.mark.asyncio
async def test_a_tampered_or_expired_cookie_is_not_a_session(panel_factory, operator, monkeypatch):
    p = await panel_factory(operator)
    good = p.http.cookies.get(session.SESSION_COOKIE)
    payload, sig = good.rsplit(".", 1)
    bad_sig = payload + "." + ("A" if sig[0] != "A" else "B") + sig[1:]
    other = await panel_factory()

    async def status_with(cookie: str) -> int:
        return (await other.http.get("/admin", headers={"cookie": f"{session.SESSION_COOKIE}={cookie}"})).status_code

    assert await status_with(good) == 200
    assert await status_with(bad_sig) == 302
    assert await status_with(payload[:-1] + "." + sig) == 302
    real_time = time.time
    monkeypatch.setattr(session.time, "time", lambda: real_time() + session.SESSION_TTL_S + 1)
    assert await status_with(good) == 302


@pytest.mark.asyncio
async def test_wrong_password_is_refused_with_the_form_again(panel_factory, operator):
    p = await panel_factory()
    r = await p.login(operator.username, "not the password")
    assert r.status_code == 401 and "用户名或密码错误" in r.text and 'name="username" value="clerk"' in r.text
    r = await p.login("nobody-here", "whatever-password")
    assert r.status_code == 401
    assert (await p.get("/admin")).status_code == 302


@pytest.mark.asyncio
async def test_the_login_form_needs_its_csrf_value(panel_factory, operator):
    p = await panel_factory()
    await p.get("/admin/login")
    r = await p.http.post("/admin/login", data={"username": operator.username, "password": PASSWORD})
    assert r.status_code == 403
    r = await p.http.post("/admin/login", data={"username": operator.username, "password": PASSWORD, "csrf": "x" * 32})
    assert r.status_code == 403
    assert (await p.get("/admin")).status_code == 302


@pytest.mark.asyncio
async def test_five_failures_lock_the_username_even_for_the_right_password(panel_factory, operator):
    p = await panel_factory()
    for _ in range(operators.USER_MAX_FAILURES):
        assert (await p.login(operator.username, "wrong password!")).status_code == 401
    r = await p.login(operator.username)  # the right password, but locked
    assert r.status_code == 429 and "分钟后再试" in r.text and int(r.headers["retry-after"]) > 0
    assert await audit.AuditLog.filter(action="operator.locked", target_id=operator.id).exists()
    clock.advance(operators.USER_LOCKOUT_S + 1)
    assert (await p.login(operator.username)).status_code == 303


@pytest.mark.asyncio
async def test_a_success_resets_the_username_counter(panel_factory, operator):
    p = await panel_factory()
    for _ in range(operators.USER_MAX_FAILURES - 1):
        await p.login(operator.username, "wrong password!")
    assert (await p.login(operator.username)).status_code == 303
    assert (await Operator.get(id=operator.id)).failed_logins == 0


@pytest.mark.asyncio
async def test_many_failures_from_one_address_lock_that_address(panel_factory, operator, monkeypatch):
    monkeypatch.setattr(operators, "IP_MAX_FAILURES", 4)
    p = await panel_factory()
    for i in range(4):  # different usernames: the per-username lock never triggers
        assert (await p.login(f"guess{i}", "whatever-password")).status_code == 401
    r = await p.login(operator.username)
    assert r.status_code == 429
    assert await audit.AuditLog.filter(action="operator.ip_locked").exists()


@pytest.mark.asyncio
async def test_a_deactivated_operator_is_logged_out_at_once(panel_factory, as_owner, operator):
    p = await panel_factory(operator)
    assert (await p.get("/admin")).status_code == 200
    r = await as_owner.post(f"/admin/operators/{operator.id}/active", {"active": "0"})
    assert r.status_code == 303, r.text
    assert (await p.get("/admin")).status_code == 302
    assert (await p.login(operator.username)).status_code == 401


@pytest.mark.asyncio
async def test_logout_ends_the_session(as_operator):
    r = await as_operator.post("/admin/logout")
    assert r.status_code == 303 and r.headers["location"] == "/admin/login"
    assert (await as_operator.get("/admin")).status_code == 302


@pytest.mark.asyncio
async def test_login_only_redirects_inside_the_panel(panel_factory, operator):
    p = await panel_factory()
    page = await p.get("/admin/login")
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    r = await p.http.post("/admin/login", data={"csrf": token, "username": operator.username, "password": PASSWORD, "next": "//evil.example/"})
    assert r.headers["location"] == "/admin"


@pytest.mark.asyncio
async def test_the_owner_creates_an_operator_who_can_log_in(as_owner, panel_factory):
    r = await as_owner.post("/admin/operators", {"username": "Newbie", "password": "another long pass", "role": "operator"})
    assert r.status_code == 303
    op = await Operator.get(username="newbie")
    assert op.role == Role.OPERATOR and op.password_hash.startswith("scrypt$")
    assert (await (await panel_factory()).login("newbie", "another long pass")).status_code == 303
    r = await as_owner.post("/admin/operators", {"username": "x", "password": "short", "role": "operator"})
    assert r.status_code == 400 and "3–32" in r.text


def test_create_owner_makes_the_first_owner_and_has_no_default_password(tmp_path, monkeypatch):
    from server.__main__ import main

    monkeypatch.setenv("DATABASE_URL", f"sqlite://{tmp_path}/owner.sqlite3")
    monkeypatch.delenv("MARKET_OWNER_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal, no env: refuse
    assert main(["create-owner", "--username", "root"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("a long owner password\n"))
    assert main(["create-owner", "--username", "root", "--password-stdin"]) == 0
    monkeypatch.setenv("MARKET_OWNER_PASSWORD", "another long password")
    assert main(["create-owner", "--username", "root"]) == 1  # exists already
    assert main(["create-owner", "--username", "root", "--reset"]) == 0
    monkeypatch.setenv("MARKET_OWNER_PASSWORD", "short")
    assert main(["create-owner", "--username", "second"]) == 2


@pytest.mark.asyncio
async def test_a_burst_of_parallel_guesses_gets_no_more_tries_than_the_limit(operator):
    import asyncio

    from models.operators import BadCredentials, LoginLocked

    results = await asyncio.gather(
        *(operators.login(operator.username, f"guess-{i}-wrong", ip=f"10.0.0.{i}") for i in range(30)),
        return_exceptions=True,
    )
    checked = [r for r in results if isinstance(r, BadCredentials)]
    locked = [r for r in results if isinstance(r, LoginLocked)]
    assert len(checked) <= operators.USER_MAX_FAILURES  # the password was tried at most this often
    assert len(checked) + len(locked) == 30
    with pytest.raises(LoginLocked):
        await operators.login(operator.username, PASSWORD, ip="10.0.1.1")
