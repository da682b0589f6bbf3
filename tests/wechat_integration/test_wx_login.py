"""Login through code2Session against the sandbox, over real HTTP on loopback."""

from __future__ import annotations

import pytest

from models.users import End, User


@pytest.mark.asyncio
async def test_alice_logs_in_on_both_ends_as_two_accounts_of_one_person(live):
    r1 = await live.http.post("/test/login/worker", json={"code": "alice-1"})
    r2 = await live.http.post("/test/login/publisher", json={"code": "alice-2"})
    assert r1.status_code == r2.status_code == 200
    worker, publisher = r1.json(), r2.json()
    assert worker["created"] and publisher["created"]
    assert worker["user_id"] != publisher["user_id"]
    assert worker["openid"] != publisher["openid"]  # one openid per AppID
    assert worker["unionid"] is None and publisher["unionid"] is None  # not bound to an Open Platform account
    assert worker["openid"] == live.state.openid_for(live.services.cfg.worker.appid, "alice")

    again = (await live.http.post("/test/login/worker", json={"code": "alice-3"})).json()
    assert again["user_id"] == worker["user_id"] and not again["created"]
    # code2Session went out without an access token
    assert not any(c["with_access_token"] for c in live.state.code2session_calls)


@pytest.mark.asyncio
async def test_a_new_worker_is_bound_to_the_inviter_whose_code_they_bring(live):
    bob = (await live.http.post("/test/login/worker", json={"code": "bob-1"})).json()
    code = (await User.get(id=bob["user_id"])).invite_code
    carol = (await live.http.post("/test/login/worker", json={"code": "carol-1", "invite_code": code})).json()
    assert carol["inviter_id"] == bob["user_id"]
    # the binding is made once: a later login with another code changes nothing
    dave = (await live.http.post("/test/login/worker", json={"code": "dave-1"})).json()
    dave_code = (await User.get(id=dave["user_id"])).invite_code
    carol_again = (await live.http.post("/test/login/worker", json={"code": "carol-2", "invite_code": dave_code})).json()
    assert carol_again["inviter_id"] == bob["user_id"]


@pytest.mark.asyncio
@pytest.mark.parametrize("code", ["invalid", "used"])
async def test_an_invalid_code_is_answered_400_invalid_login_code(live, code):
    r = await live.http.post("/test/login/worker", json={"code": code})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_login_code"
    assert await User.all().count() == 0


@pytest.mark.asyncio
async def test_a_code_used_twice_is_refused_the_second_time(live):
    assert (await live.http.post("/test/login/publisher", json={"code": "erin-1"})).status_code == 200
    r = await live.http.post("/test/login/publisher", json={"code": "erin-1"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_login_code"


@pytest.mark.asyncio
@pytest.mark.parametrize("code", ["busy", "ratelimit"])
async def test_a_busy_wechat_is_retried_then_answered_503(live, code):
    r = await live.http.post("/test/login/worker", json={"code": code})
    assert r.status_code == 503 and r.json()["error"]["code"] == "wechat_unavailable"
    assert [c["code"] for c in live.state.code2session_calls] == [code] * 3


@pytest.mark.asyncio
async def test_a_high_risk_user_is_refused(live):
    r = await live.http.post("/test/login/worker", json={"code": "risky"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "login_refused"


@pytest.mark.asyncio
async def test_login_service_returns_the_user_and_whether_it_was_created(live):
    user, created = await live.services.login(End.PUBLISHER, "frank-1", nickname="Frank")
    assert created and user.end == End.PUBLISHER and user.nickname == "Frank"


@pytest.mark.asyncio
async def test_with_the_mini_programs_bound_the_unionid_is_stored_on_both_accounts(live):
    from dataclasses import replace

    live.state.cfg = replace(live.state.cfg, sandbox_options=replace(live.state.cfg.sandbox_options, unionid_bound=True))
    worker = (await live.http.post("/test/login/worker", json={"code": "alice-1"})).json()
    publisher = (await live.http.post("/test/login/publisher", json={"code": "alice-2"})).json()
    assert worker["unionid"] == publisher["unionid"] == live.state.unionid_for("alice")  # the same person
