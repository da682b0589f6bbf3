"""wechatpy-based Mini Program client ↔ sandbox over real HTTP: login, stable token, subscribe."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from datetime import datetime, timezone

import pytest

from wechat.errors import InvalidCode, Retryable, UserRefused
from wechat.miniprogram import MiniProgramClient


@pytest.mark.asyncio
async def test_alice_logs_in_with_one_openid_per_mini_program_and_no_unionid_unless_bound(sandbox):
    w_openid, w_union = await sandbox.mp.code2session("worker", "alice-1")
    again, _ = await sandbox.mp.code2session("worker", "alice-2")
    p_openid, p_union = await sandbox.mp.code2session("publisher", "alice-1")
    bob, _ = await sandbox.mp.code2session("worker", "bob-1")
    assert w_openid == again != p_openid and bob != w_openid
    assert w_union is None and p_union is None  # the Mini Programs are not bound to an Open Platform account
    assert w_openid.startswith("o") and len(w_openid) == 28
    # Login never fetched an access token (wechatpy's quirk avoided).
    assert sandbox.state.stable_token_calls == []
    assert not any(c["with_access_token"] for c in sandbox.state.code2session_calls)


@pytest.mark.asyncio
async def test_bound_mini_programs_give_one_unionid_for_both_ends():
    from tests.wechat.conftest import make_config, running_sandbox

    async with running_sandbox(make_config(sandbox_options={"unionid_bound": True})) as sandbox:
        _, w_union = await sandbox.mp.code2session("worker", "alice-1")
        _, p_union = await sandbox.mp.code2session("publisher", "alice-1")
        _, bob = await sandbox.mp.code2session("worker", "bob-1")
        assert w_union == p_union != bob and w_union.startswith("oU")


@pytest.mark.asyncio
@pytest.mark.parametrize("code, errcode, error", [
    ("invalid", 40029, InvalidCode), ("used", 40163, InvalidCode),
    ("busy", -1, Retryable), ("ratelimit", 45011, Retryable)])
async def test_bad_codes_become_typed_errors(sandbox, code, errcode, error):
    with pytest.raises(error) as err:
        await sandbox.mp.code2session("worker", code)
    assert err.value.errcode == errcode


@pytest.mark.asyncio
async def test_a_code_works_only_once(sandbox):
    await sandbox.mp.code2session("worker", "alice-7")
    with pytest.raises(InvalidCode) as err:
        await sandbox.mp.code2session("worker", "alice-7")
    assert err.value.errcode == 40163


@pytest.mark.asyncio
async def test_many_concurrent_callers_share_one_stable_token_fetch(sandbox):
    tokens = await asyncio.gather(*(sandbox.mp.access_token("worker") for _ in range(30)))
    assert len(set(tokens)) == 1 and len(sandbox.state.stable_token_calls) == 1
    assert sandbox.state.stable_token_calls[0]["force_refresh"] is False
    await sandbox.mp.access_token("publisher")
    assert len(sandbox.state.stable_token_calls) == 2  # one per AppID


@pytest.mark.asyncio
async def test_subscription_messages_are_sent_with_state_and_recorded(sandbox):
    openid, _ = await sandbox.mp.code2session("worker", "bob-1")
    await sandbox.mp.send_subscribe_message("worker", openid, "TPL-1", {"thing1": {"value": "任务"}},
                                            page="pages/order/detail?id=9")
    [msg] = sandbox.state.messages
    assert (msg["touser"], msg["template_id"], msg["page"], msg["miniprogram_state"], msg["lang"]) == (
        openid, "TPL-1", "pages/order/detail?id=9", "developer", "zh_CN")
    assert msg["appid"] == sandbox.cfg.worker.appid


@pytest.mark.asyncio
async def test_a_rejected_token_is_refreshed_once_and_the_send_retried(sandbox):
    openid, _ = await sandbox.mp.code2session("worker", "bob-1")
    first = await sandbox.mp.access_token("worker")
    sandbox.state.revoke_tokens(sandbox.cfg.worker.appid, errcode=40001)
    await asyncio.gather(*(sandbox.mp.send_subscribe_message("worker", openid, "TPL-1", {"thing1": {"value": "x"}})
                           for _ in range(5)))
    assert len(sandbox.state.messages) == 5
    assert len(sandbox.state.stable_token_calls) == 2  # one refresh for five callers
    assert await sandbox.mp.access_token("worker") != first


@pytest.mark.asyncio
async def test_an_expired_token_42001_is_refreshed_too(sandbox):
    openid, _ = await sandbox.mp.code2session("publisher", "alice-1")
    await sandbox.mp.access_token("publisher")
    sandbox.state.revoke_tokens(errcode=42001)
    await sandbox.mp.send_subscribe_message("publisher", openid, "TPL-2", {"thing1": {"value": "x"}})
    assert len(sandbox.state.messages) == 1


@pytest.mark.asyncio
async def test_a_user_who_refused_is_user_refused_not_retryable(sandbox):
    rita, _ = await sandbox.mp.code2session("worker", "rita-1")  # configured in sandbox_options.refused_users
    with pytest.raises(UserRefused) as err:
        await sandbox.mp.send_subscribe_message("worker", rita, "TPL-1", {"thing1": {"value": "x"}})
    assert err.value.errcode == 43101 and not err.value.retryable
    assert sandbox.state.messages == []


@pytest.mark.asyncio
async def test_events_render_their_configured_template(sandbox):
    openid, _ = await sandbox.mp.code2session("worker", "bob-1")
    sent = await sandbox.mp.send_event("worker", "order_approved", openid, {
        "order_id": 42, "task_title": "关注公众号并截图上传到任务详情页面请认真完成", "commission_fen": 1230,
        "completed_at": datetime(2026, 1, 1, 2, 30, tzinfo=timezone.utc)})
    assert sent is True
    [msg] = sandbox.state.messages
    assert msg["template_id"] == "TPL-worker-approved" and msg["page"] == "pages/order/detail?id=42"
    assert msg["data"]["amount2"] == {"value": "12.30元"}
    assert msg["data"]["time3"] == {"value": "2026-01-01 10:30"}  # Beijing time
    assert len(msg["data"]["thing1"]["value"]) == 20  # cut to WeChat's limit instead of a 47003
    assert await sandbox.mp.send_event("worker", "no_such_event", openid, {}) is False


@pytest.mark.asyncio
async def test_an_unreachable_wechat_is_retryable(cfg):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    mp = MiniProgramClient(dataclasses.replace(cfg.with_sandbox_base(f"http://127.0.0.1:{port}/sandbox")))
    try:
        with pytest.raises(Retryable):
            await mp.code2session("worker", "alice-1")
        with pytest.raises(Retryable):
            await mp.access_token("publisher")
    finally:
        mp.close()


async def _force_refresh(sandbox, appid: str) -> dict:
    import httpx

    async with httpx.AsyncClient() as c:
        r = await c.post(sandbox.cfg.api_base + "cgi-bin/stable_token", json={
            "grant_type": "client_credential", "appid": appid, "secret": sandbox.cfg.worker.secret, "force_refresh": True})
    return r.json()


@pytest.mark.asyncio
async def test_a_forced_refresh_elsewhere_kills_our_token_and_we_recover_without_forcing(sandbox):
    openid, _ = await sandbox.mp.code2session("worker", "bob-1")
    mine = await sandbox.mp.access_token("worker")
    theirs = (await _force_refresh(sandbox, sandbox.cfg.worker.appid))["access_token"]  # another tool, same AppID
    assert theirs != mine
    await sandbox.mp.send_subscribe_message("worker", openid, "TPL-1", {"thing1": {"value": "x"}})
    assert len(sandbox.state.messages) == 1
    assert await sandbox.mp.access_token("worker") == theirs
    assert [c["force_refresh"] for c in sandbox.state.stable_token_calls] == [False, True, False]  # we never forced


@pytest.mark.asyncio
async def test_forced_refreshes_are_limited_to_twenty_a_day_thirty_seconds_apart(sandbox):
    now = [1_900_000_000.0]
    sandbox.state.clock = lambda: now[0]
    appid = sandbox.cfg.worker.appid
    for n in range(20):
        assert "access_token" in await _force_refresh(sandbox, appid), n
        if n < 19:
            assert (await _force_refresh(sandbox, appid))["errcode"] == 45011  # too soon after the last one
        now[0] += 31
    assert (await _force_refresh(sandbox, appid))["errcode"] == 45009  # the day's 20 are used up
    now[0] += 86_400
    assert "access_token" in await _force_refresh(sandbox, appid)


@pytest.mark.asyncio
async def test_when_only_a_forced_refresh_could_help_and_none_is_left_the_send_is_retried_later(sandbox):
    openid, _ = await sandbox.mp.code2session("worker", "bob-1")
    token = await sandbox.mp.access_token("worker")
    sandbox.state.tokens[token]["revoked"] = 40001  # rejected, yet stable_token keeps handing it out
    sandbox.state.forced_refreshes[sandbox.cfg.worker.appid] = [sandbox.state.clock() - 60] * 20
    with pytest.raises(Retryable) as err:
        await sandbox.mp.send_subscribe_message("worker", openid, "TPL-1", {"thing1": {"value": "x"}})
    assert err.value.errcode == 45009 and err.value.retryable
    assert sum(c["force_refresh"] for c in sandbox.state.stable_token_calls) == 1


@pytest.mark.asyncio
async def test_the_stable_token_renews_five_minutes_early_and_the_old_one_keeps_working(sandbox):
    openid, _ = await sandbox.mp.code2session("worker", "bob-1")
    now = [1_900_000_000.0]
    sandbox.state.clock = lambda: now[0]
    old = await sandbox.mp.access_token("worker")
    now[0] += 7200 - 299
    sandbox.mp._tokens["worker"]._store._data.clear()  # our cache let it go (it keeps tokens expires_in − 300 s)
    new = await sandbox.mp.access_token("worker")
    assert new != old
    sandbox.mp._tokens["worker"]._store._data["stable:" + sandbox.cfg.worker.appid] = (old, float("inf"))
    await sandbox.mp.send_subscribe_message("worker", openid, "TPL-1", {"thing1": {"value": "x"}})  # still valid
    now[0] += 300
    await sandbox.mp.send_subscribe_message("worker", openid, "TPL-1", {"thing1": {"value": "x"}})  # 42001 → new one
    assert len(sandbox.state.messages) == 2
