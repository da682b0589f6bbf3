"""Every shipped subscription template (config.yaml and wechat/config.example.yaml) against WeChat's
keyword rules, with the payloads the marketplace really writes for every event (issue 17.8).

A marketplace day plays every event that sends a subscription message — both ends, every kind of
withdrawal ending — with the long Chinese titles and reasons people write. The drainer then sends
them with config.yaml's templates through the sandbox, which refuses what WeChat refuses (47003);
config.example.yaml's templates render the very same outbox rows and are checked by the same rules.
"""

from __future__ import annotations

import pathlib

import pytest
import yaml

from models import orders, tasks, withdrawals
from models.outbox import Channel, Outbox, OutboxStatus
from models.users import End, User
from scheduler import outbox as drainer
from tests import personas as p
from wechat import keywords
from wechat.config import WeChatConfig
from wechat.errors import TemplateDataInvalid

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHIPPED = {"config.yaml": ROOT / "config.yaml", "wechat/config.example.yaml": ROOT / "wechat" / "config.example.yaml"}
OPERATOR = 9_001
TITLE = "关注公众号「城市生活指南」并截图上传，完成后提交审核"  # 27 characters: longer than a thing
REASON = "截图中没有显示关注成功的页面，也看不到公众号名称，请按任务说明重新截图后提交"
SUBSCRIBED_EVENTS = {  # (end, event) of every subscription message the domain writes (SPEC §5)
    ("publisher", "order_taken"), ("publisher", "order_awaiting_review"), ("publisher", "task_expired_refunded"),
    ("worker", "order_approved"), ("worker", "order_rejected"), ("worker", "appeal_decided"),
    *((end, f"withdrawal_{how}") for end in ("publisher", "worker") for how in ("paid", "rejected", "failed")),
}


def shipped_config(name: str) -> WeChatConfig:
    return WeChatConfig.from_dict(yaml.safe_load(SHIPPED[name].read_text(encoding="utf-8"))["wechat"], env={})


async def withdraw(live, user: User, amount_fen: int, request_id: str, ending: str) -> None:
    w = await withdrawals.request(user.id, amount_fen, request_id=request_id)
    if ending == "rejected":
        await withdrawals.reject(w.id, OPERATOR, reason=REASON)
        return
    w = await withdrawals.approve(w.id, OPERATOR)
    await live.services.start_payout(w)
    row = await withdrawals.Withdrawal.get(id=w.id)
    r = await live.http.post("/sandbox/pay/_simulate/confirm_transfer", json={
        "out_bill_no": row.out_bill_no, "result": "SUCCESS" if ending == "paid" else "FAIL",
        "fail_reason": "TRANSFER_RISK", "wait": True})
    assert r.json()["notification"]["status"] == 204, r.text


async def marketplace_day(live) -> None:
    """Every event that sends a subscription message, with realistic content."""
    alice, _ = await live.services.login(End.PUBLISHER, "alice-1")
    bob, _ = await live.services.login(End.WORKER, "bob-1")
    await p.fund(alice, 500_000)
    task = await tasks.publish(alice.id, title=TITLE, instructions="按说明完成", unit_price_fen=1_250, quantity=4)
    approved = await orders.take(task.id, bob.id)  # order_taken
    await orders.submit(approved.id, bob.id, proof_text="已完成")  # order_awaiting_review
    await orders.approve(approved.id, alice.id)  # order_approved
    for worker_wins, code in ((True, "carol-1"), (False, "dave-1")):
        other, _ = await live.services.login(End.WORKER, code)
        disputed = await orders.take(task.id, other.id)
        await orders.submit(disputed.id, other.id, proof_text="已完成")
        await orders.reject(disputed.id, alice.id, reason=REASON)  # order_rejected
        await orders.appeal(disputed.id, other.id, reason="我已经按要求完成了，请再看一下截图")
        await orders.arbitrate(disputed.id, OPERATOR, worker_wins=worker_wins, note="核实截图")  # appeal_decided
    from models import clock

    clock.advance(181)
    assert await tasks.expire_due(task.id)  # task_expired_refunded (one slot untaken)
    for user, amount_fen in ((alice, 12_345), (bob, 300)):  # Bob withdraws from his 12.50 commission
        for ending in ("paid", "rejected", "failed"):
            await withdraw(live, user, amount_fen, f"w-{ending}", ending)


async def subscribe_rows() -> list[dict]:
    rows = await Outbox.filter(channel=Channel.SUBSCRIBE).order_by("id")
    users = {u.id: u for u in await User.all()}
    return [{"end": users[r.user_id].end.value, "event": r.event, "payload": await drainer.enrich(r.event, r.payload),
             "row": r} for r in rows]


@pytest.mark.asyncio
async def test_every_event_of_a_marketplace_day_is_sent_with_config_yaml_templates_and_accepted(live):
    await marketplace_day(live)
    rows = await subscribe_rows()
    assert {(r["end"], r["event"]) for r in rows} == SUBSCRIBED_EVENTS
    for _ in range(5):
        await drainer.drain_subscriptions(live.services.mp)
    states = {(r["end"], r["event"], r["row"].id): (await Outbox.get(id=r["row"].id)) for r in rows}
    assert {k: (o.status.value, o.last_error) for k, o in states.items() if o.status != OutboxStatus.SENT} == {}
    assert len(live.state.messages) == len(rows)
    for msg in live.state.messages:  # what the sandbox accepted obeys every rule (it checks, too)
        assert keywords.first_problem(msg["data"]) is None, msg
    taken = next(m for m in live.state.messages if m["template_id"] == "REPLACE-publisher-order-taken")
    assert taken["data"]["thing3"] == {"value": "有人接单了"}  # fixed text is sent as written, never empty
    assert taken["data"]["thing1"]["value"] == TITLE[:19] + "…"
    paid = [m for m in live.state.messages if m["template_id"].endswith("withdrawal-paid")]
    # A − W, what arrived: 12 345 − 123 fen for Alice, 300 − 3 for Bob (fee 1 %)
    assert sorted(m["data"]["amount1"]["value"] for m in paid) == ["122.22元", "2.97元"]


@pytest.mark.asyncio
@pytest.mark.parametrize("name", sorted(SHIPPED))
async def test_each_shipped_template_renders_every_events_real_payload_within_wechats_rules(live, name):
    await marketplace_day(live)
    cfg = shipped_config(name)
    cfg.validate(production=False)
    rows = await subscribe_rows()
    for r in rows:
        template = cfg.template(r["end"], r["event"])
        assert template is not None, f"{name} has no template for {r['end']}.{r['event']}"
        page, data = template.render(r["payload"])
        assert "{" not in page and page.startswith("pages/")
        assert set(data) == set(template.fields)
        assert keywords.first_problem(data) is None, (name, r["event"], data)
    configured = {(end, event) for end, events in cfg.subscription_templates.items() for event in events}
    assert configured == SUBSCRIBED_EVENTS  # nothing configured for an event that never happens


def test_the_two_shipped_files_configure_the_same_templates():
    example, main = shipped_config("wechat/config.example.yaml"), shipped_config("config.yaml")
    assert {e: {k: (t.template_id, t.page, dict(t.fields)) for k, t in ev.items()} for e, ev in example.subscription_templates.items()} == \
        {e: {k: (t.template_id, t.page, dict(t.fields)) for k, t in ev.items()} for e, ev in main.subscription_templates.items()}


@pytest.mark.asyncio
async def test_a_message_wechat_would_refuse_is_failed_with_the_field_named_and_never_sent(live):
    alice, _ = await live.services.login(End.PUBLISHER, "alice-1")
    from models.outbox import Pending

    out = Pending()
    out.subscribe("task_expired_refunded", {"task_id": 7, "title": "标题", "refund_fen": 10**12}, alice.id)  # 11 digits
    out.subscribe("order_taken", {"order_id": 1, "task_id": 7, "title": "标题"}, alice.id)  # no taken_at
    await out.write()
    await drainer.drain_subscriptions(live.services.mp)
    rows = await Outbox.filter(channel=Channel.SUBSCRIBE).order_by("id")
    assert [r.status for r in rows] == [OutboxStatus.FAILED, OutboxStatus.FAILED]
    assert "data.amount2.value is not a valid amount" in rows[0].last_error
    assert "taken_at" in rows[1].last_error
    assert live.state.send_attempts == 0  # refused before WeChat: nothing sent, nothing to retry


def test_render_mixes_fixed_text_and_payload_values():
    cfg = shipped_config("config.yaml")
    _, data = cfg.template("publisher", "task_expired_refunded").render(
        {"task_id": 3, "task_title": "点赞", "refund_fen": 2_200})
    assert data == {"thing1": {"value": "点赞"}, "amount2": {"value": "22.00元"}, "thing3": {"value": "未接单部分已退回余额"}}
    with pytest.raises(TemplateDataInvalid, match="data.thing1.value is empty"):
        cfg.template("publisher", "task_expired_refunded").render({"task_id": 3, "task_title": " ", "refund_fen": 1})
