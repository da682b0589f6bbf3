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
async def test_alice_logs_in_with_one_openid_per_mini_program_and_one_unionid(sandbox):
    w_openid, w_union = await sandbox.mp.code2session("worker", "alice-1")
    again, _ = await sandbox.mp.code2session("worker", "alice-2")
    p_openid, p_union = await sandbox.mp.code2session("publisher", "alice-1")
    bob, _ = await sandbox.mp.code2session("worker", "bob-1")
    assert w_openid == again != p_openid and w_union == p_union and bob != w_openid
    assert w_openid.startswith("o") and len(w_openid) == 28
    # Login never fetched an access token (wechatpy's quirk avoided).
    assert sandbox.state.stable_token_calls == []
    assert not any(c["with_access_token"] for c in sandbox.state.code2session_calls)


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
    assert msg["data"]["amount2"] == {"value": "12.30 元"}
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
