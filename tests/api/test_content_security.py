"""WeChat content security at publish (issue 14 §4), through the API and the WeChat sandbox with
configured verdicts: a flagged text holds the task out of the hall; an image verdict pushed by
WeChat (signed) takes a flagged task out of the hall; a prohibited term refuses with its code."""

from __future__ import annotations

import time
import uuid

import pytest

from models.compliance import ContentCheck
from models.tasks import Task, TaskStatus
from server.wechat_content import MEDIA_CHECK_PATH, SANDBOX_PUSH_TOKEN, push_signature
from tests.api._support import png_bytes


async def publish(c, **body):
    return await c.post("/api/v1/publisher/tasks", json={"title": "Scan", "instructions": "Scan the code", "unit_price_fen": 1_000,
                                                         "request_id": uuid.uuid4().hex} | body)


@pytest.mark.asyncio
async def test_a_text_wechat_flags_is_held_and_never_in_the_hall(live):
    alice = await live.login("publisher", "alice")
    await live.recharge(alice, 10_000)
    bob = await live.login("worker", "bob")
    async with live.client(alice.token) as a, live.client(bob.token) as b:
        r = await publish(a, instructions="请完成违禁测试内容")
        assert r.status_code == 201 and r.json()["status"] == "held"
        hall = (await b.get("/api/v1/worker/hall")).json()
        assert r.json()["id"] not in [t["id"] for t in hall["items"]]
        assert (await b.get(f"/api/v1/worker/tasks/{r.json()['id']}")).status_code == 404
        took = await b.post(f"/api/v1/worker/tasks/{r.json()['id']}/take")
        assert took.status_code == 409 and took.json()["error"]["code"] == "task_closed"
    task = await Task.get(id=r.json()["id"])
    assert task.hold_reason.startswith("wechat:text:risky")
    assert live.app.ctx.wechat.sandbox.sec_checks[-1]["content"].startswith("Scan")


@pytest.mark.asyncio
async def test_a_prohibited_term_answers_its_code(live):
    alice = await live.login("publisher", "alice")
    await live.recharge(alice, 10_000)
    async with live.client(alice.token) as a:
        r = await publish(a, title="有偿投票 3 号")
    assert r.status_code == 422 and r.json()["error"]["code"] == "prohibited_content"
    assert r.json()["error"]["details"]["term"] == "有偿投票"


@pytest.mark.asyncio
async def test_an_image_wechat_flags_later_takes_the_task_out_of_the_hall(live):
    alice = await live.login("publisher", "alice")
    await live.recharge(alice, 10_000)
    sandbox = live.app.ctx.wechat.sandbox
    async with live.client(alice.token) as a:
        up = (await a.post("/api/v1/publisher/uploads", files={"file": ("qr.png", png_bytes(), "image/png")})).json()
        r = await publish(a, attachment_kind="image", attachment=up["ref"])
        assert r.json()["status"] == "open"
        [check] = await ContentCheck.filter(task_id=r.json()["id"])
        assert check.suggest == "pending"
        sandbox.media_verdicts[sandbox.media_checks[check.trace_id]["media_url"]] = ("risky", 20002)
        event = sandbox.media_check_event(check.trace_id)
        ts, nonce = str(int(time.time())), "n1"
        bad = await a.post(f"{MEDIA_CHECK_PATH}?timestamp={ts}&nonce={nonce}&signature=forged", json=event)
        assert bad.status_code == 403 and (await ContentCheck.get(id=check.id)).suggest == "pending"
        sig = push_signature(SANDBOX_PUSH_TOKEN, ts, nonce)
        for _ in range(2):  # WeChat may push twice
            ok = await a.post(f"{MEDIA_CHECK_PATH}?timestamp={ts}&nonce={nonce}&signature={sig}", json=event)
            assert ok.status_code == 200 and ok.text == "success"
    task = await Task.get(id=r.json()["id"])
    assert (task.status, task.hold_reason) == (TaskStatus.HELD, "wechat:image:risky:20002")
    assert (await ContentCheck.get(id=check.id)).suggest == "risky"


@pytest.mark.asyncio
async def test_a_verdict_push_that_is_stale_or_malformed_changes_nothing(live):
    alice = await live.login("publisher", "alice")
    await live.recharge(alice, 10_000)
    async with live.client(alice.token) as a:
        up = (await a.post("/api/v1/publisher/uploads", files={"file": ("qr.png", png_bytes(), "image/png")})).json()
        r = await publish(a, attachment_kind="image", attachment=up["ref"])
        [check] = await ContentCheck.filter(task_id=r.json()["id"])
        event = live.app.ctx.wechat.sandbox.media_check_event(check.trace_id) | {"result": {"suggest": "pass", "label": 100}}

        def signed(ts: int) -> str:
            return f"{MEDIA_CHECK_PATH}?timestamp={ts}&nonce=n1&signature={push_signature(SANDBOX_PUSH_TOKEN, str(ts), 'n1')}"

        now = int(time.time())
        assert (await a.post(signed(1), json=event)).status_code == 403  # a signed address replayed years later
        assert (await a.post(signed(now - 3600), json=event)).status_code == 403
        for body in ([1], "x", event | {"result": "x"}, event | {"trace_id": 5}, event | {"trace_id": "a\x00b"},
                     event | {"result": {"suggest": "maybe"}}, event | {"result": {"suggest": "risky", "label": "x"}},
                     event | {"result": {"suggest": "risky", "label": 2**40}}):
            assert (await a.post(signed(now), json=body)).status_code == 400, body
        assert (await ContentCheck.get(id=check.id)).suggest == "pending"
        assert (await a.post(signed(now), json=event)).status_code == 200
        assert (await ContentCheck.get(id=check.id)).suggest == "pass"
        # WeChat's check of the address when it is saved in its console
        ok = await a.get(signed(now) + "&echostr=hello123")
        assert ok.status_code == 200 and ok.text == "hello123"
        assert (await a.get(f"{MEDIA_CHECK_PATH}?timestamp={now}&nonce=n1&signature=forged&echostr=x")).status_code == 403
