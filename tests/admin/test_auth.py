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
         "/admin/operators", "/admin/uploads/up_x", "/admin/password"]
FORMS = ["/admin/settings", "/admin/appeals/1/decide", "/admin/withdrawals/1/approve", "/admin/withdrawals/1/mark-paid",
         "/admin/withdrawals/1/reject", "/admin/customers/1/ban", "/admin/customers/1/unban", "/admin/customers/1/adjust",
         "/admin/operators", "/admin/operators/1/active", "/admin/operators/1/password", "/admin/logout", "/admin/password"]


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


# --- throttling (issue 17, item 5): per (username, address) with backoff, never the account --------
SLACK_S = 5  # real seconds that may pass between a failure and the next call (scrypt on a busy machine)

@pytest.mark.asyncio
async def test_failures_from_one_address_make_that_address_wait_and_never_lock_the_operator_out(panel_factory, operator):
    """Anyone who knows a username could once lock its operator out for 15 minutes with five bad
    guesses. Now only the guesser's (username, address) pair waits; the operator elsewhere logs in."""
    attacker = "203.0.113.66"
    for _ in range(operators.PAIR_FREE_FAILURES):
        with pytest.raises(operators.BadCredentials):
            await operators.login(operator.username, "wrong password!", ip=attacker)
    with pytest.raises(operators.LoginLocked) as locked:
        await operators.login(operator.username, PASSWORD, ip=attacker)  # right password, but this pair waits
    # (the wait counts from the last failure: a loaded machine may take seconds between the two calls)
    assert operators.PAIR_BACKOFF_BASE_S - SLACK_S <= locked.value.retry_after_s <= operators.PAIR_BACKOFF_BASE_S + 1
    assert await audit.AuditLog.filter(action="operator.throttled").exists()
    assert (await operators.login(operator.username, PASSWORD, ip="198.51.100.7")).id == operator.id
    p = await panel_factory()  # and through the panel (its address: 127.0.0.1)
    assert (await p.login(operator.username)).status_code == 303


@pytest.mark.asyncio
async def test_the_wait_doubles_with_each_further_failure_and_a_success_forgets(operator):
    ip = "203.0.113.9"
    for _ in range(operators.PAIR_FREE_FAILURES):
        with pytest.raises(operators.BadCredentials):
            await operators.login(operator.username, "wrong password!", ip=ip)
    waits = []
    for _ in range(4):
        with pytest.raises(operators.LoginLocked) as locked:
            await operators.login(operator.username, "wrong password!", ip=ip)
        waits.append(locked.value.retry_after_s)
        clock.advance(locked.value.retry_after_s)
        with pytest.raises(operators.BadCredentials):  # after the wait, one more try is checked
            await operators.login(operator.username, "wrong password!", ip=ip)
    assert all(w - SLACK_S <= got <= w + 1 for w, got in zip([30, 60, 120, 240], waits, strict=True)), waits
    clock.advance(operators.PAIR_BACKOFF_MAX_S)
    assert (await operators.login(operator.username, PASSWORD, ip=ip)).id == operator.id
    with pytest.raises(operators.BadCredentials):  # counted from zero again
        await operators.login(operator.username, "wrong password!", ip=ip)
    assert (await operators.LoginThrottle.get(key=operators._pair_key(operator.username, ip))).failures == 1


@pytest.mark.asyncio
async def test_the_wait_never_exceeds_its_cap_and_old_failures_are_forgotten(operator, monkeypatch):
    ip = "203.0.113.10"
    for _ in range(operators.PAIR_FREE_FAILURES + 12):
        try:
            await operators.login(operator.username, "wrong password!", ip=ip)
        except operators.LoginLocked as exc:
            assert exc.retry_after_s <= operators.PAIR_BACKOFF_MAX_S + 1
            clock.advance(exc.retry_after_s)
        except operators.BadCredentials:
            pass
    clock.advance(operators.PAIR_FORGET_S + 1)
    with pytest.raises(operators.BadCredentials):
        await operators.login(operator.username, "wrong password!", ip=ip)
    assert (await operators.LoginThrottle.get(key=operators._pair_key(operator.username, ip))).failures == 1


@pytest.mark.asyncio
async def test_a_new_password_set_by_the_owner_lifts_the_waits(operator, owner):
    for _ in range(operators.PAIR_FREE_FAILURES):
        with pytest.raises(operators.BadCredentials):
            await operators.login(operator.username, "wrong password!", ip="203.0.113.11")
    await operators.set_password(operator.id, "a brand new password", by=owner.id)
    assert (await operators.login(operator.username, "a brand new password", ip="203.0.113.11")).id == operator.id


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
async def test_logout_ends_the_session_on_the_server_so_a_copied_cookie_stops_working(panel_factory, operator):
    """Issue 17, item 4: a cookie copied before the logout kept working for 12 hours."""
    p = await panel_factory(operator)
    copied = p.http.cookies.get(session.SESSION_COOKIE)
    thief = await panel_factory()
    headers = {"cookie": f"{session.SESSION_COOKIE}={copied}"}
    assert (await thief.http.get("/admin", headers=headers)).status_code == 200
    assert (await p.post("/admin/logout")).status_code == 303
    assert (await thief.http.get("/admin", headers=headers)).status_code == 302
    assert (await thief.http.get("/admin/dashboard.json", headers=headers)).status_code == 401


@pytest.mark.asyncio
async def test_on_plain_http_no_cookie_the_panel_sets_or_deletes_is_marked_secure(panel_factory, operator):
    """A deleting cookie marked Secure on plain http is ignored by browsers: logging out would not
    remove the cookie. Every Set-Cookie of login and logout over http must be without Secure."""
    p = await panel_factory()
    page = await p.get("/admin/login")
    r = await p.login(operator.username)
    r2 = await p.post("/admin/logout")
    cookies = [h for resp in (page, r, r2) for h in resp.headers.get_list("set-cookie")]
    assert cookies and all("secure" not in h.lower() for h in cookies), cookies
    deleting = [h for h in r2.headers.get_list("set-cookie") if h.startswith(session.SESSION_COOKIE + "=")]
    assert deleting and "Max-Age=0" in deleting[0] and "Path=/admin" in deleting[0]
    deleting = [h for h in r.headers.get_list("set-cookie") if h.startswith(session.LOGIN_CSRF_COOKIE + "=")]
    assert deleting and "Max-Age=0" in deleting[0]


def test_over_https_the_cookies_are_secure_when_set_and_when_deleted():
    from types import SimpleNamespace

    from sanic.response import empty

    request = SimpleNamespace(scheme="https", app=SimpleNamespace(ctx=SimpleNamespace(config=SimpleNamespace(production=False))))
    response = empty()
    session.set_session_cookie(request, response, "x")
    session.clear_cookie(request, response, session.LOGIN_CSRF_COOKIE)
    assert all("Secure" in str(h) for h in response.headers.getall("set-cookie"))


# --- changing one's own password (issue 17, item 4) -------------------------------------------------
@pytest.mark.asyncio
async def test_an_operator_changes_their_own_password_and_their_other_sessions_end(panel_factory, operator):
    here, elsewhere = await panel_factory(operator), await panel_factory(operator)
    assert "/admin/password" in (await here.get("/admin")).text  # reachable from every page
    assert (await here.get("/admin/password")).status_code == 200
    r = await here.post("/admin/password", {"current_password": PASSWORD, "new_password": "my new long password",
                                           "repeat_password": "my new long password"})
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/password?done=")
    assert (await here.get("/admin")).status_code == 200  # this session stays
    assert (await elsewhere.get("/admin")).status_code == 302  # the other one has ended
    row = await audit.AuditLog.get(action="operator.password_change", actor_id=operator.id)
    assert row.data["other_sessions_ended"] == 1
    assert (await (await panel_factory()).login(operator.username, PASSWORD)).status_code == 401
    assert (await (await panel_factory()).login(operator.username, "my new long password")).status_code == 303


@pytest.mark.asyncio
@pytest.mark.parametrize("form,field", [
    ({"current_password": "not my password", "new_password": "my new long password", "repeat_password": "my new long password"}, "当前密码错误"),
    ({"current_password": PASSWORD, "new_password": "my new long password", "repeat_password": "my new long passwort"}, "两次输入的新密码不一致"),
    ({"current_password": PASSWORD, "new_password": "short", "repeat_password": "short"}, "密码长度须为"),
    ({"current_password": PASSWORD, "new_password": PASSWORD, "repeat_password": PASSWORD}, "新密码不能与当前密码相同"),
])
async def test_a_refused_password_change_says_why_and_changes_nothing(panel_factory, operator, form, field):
    p, other = await panel_factory(operator), await panel_factory(operator)
    before = (await Operator.get(id=operator.id)).password_hash
    r = await p.post("/admin/password", form)
    assert r.status_code == 400 and field in r.text, r.text[-600:]
    assert (await Operator.get(id=operator.id)).password_hash == before
    assert (await other.get("/admin")).status_code == 200
    assert not await audit.AuditLog.filter(action="operator.password_change").exists()


@pytest.mark.asyncio
async def test_guessing_the_current_password_is_throttled_like_a_login(panel_factory, operator):
    p = await panel_factory(operator)
    wrong = {"current_password": "not my password", "new_password": "my new long password", "repeat_password": "my new long password"}
    for _ in range(operators.PAIR_FREE_FAILURES):
        assert (await p.post("/admin/password", wrong)).status_code == 400
    r = await p.post("/admin/password", wrong | {"current_password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


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
async def test_a_burst_of_parallel_guesses_from_one_address_gets_no_more_tries_than_the_limit(operator):
    import asyncio

    from models.operators import BadCredentials, LoginLocked

    results = await asyncio.gather(
        *(operators.login(operator.username, f"guess-{i}-wrong", ip="10.0.0.1") for i in range(30)),
        return_exceptions=True,
    )
    checked = [r for r in results if isinstance(r, BadCredentials)]
    locked = [r for r in results if isinstance(r, LoginLocked)]
    assert len(checked) <= operators.PAIR_FREE_FAILURES  # the password was tried at most this often
    assert len(checked) + len(locked) == 30
    with pytest.raises(LoginLocked):
        await operators.login(operator.username, PASSWORD, ip="10.0.0.1")
    assert (await operators.login(operator.username, PASSWORD, ip="10.0.1.1")).id == operator.id
