"""WeChat's keyword rules for subscription messages: the sandbox answers 47003 naming the field, as
WeChat does, and 45009 (daily quota) stops sends until midnight instead of being retried."""

from __future__ import annotations

import pytest

from wechat import keywords
from wechat.config import WeChatConfig, WeChatConfigError
from wechat.errors import QuotaExhausted, TemplateDataInvalid, WeChatError

VALID = [
    ("thing1", "有人接单了"), ("thing1", "x" * 20), ("thing1", "Scan the QR code 扫码!"),
    ("number2", "12"), ("number2", "12.50"), ("number2", "9" * 32),
    ("letter3", "abcXYZ"), ("symbol4", "!?~"), ("character_string5", "W000000000042"),
    ("character_string5", "A-1_b*|" + "0" * 25),
    ("time6", "15:01"), ("time6", "15:01:59"), ("time6", "2019年10月1日 15:01"), ("time6", "2026-01-01 10:30"),
    ("time6", "2019年10月1日 15:01~2019年10月1日 16:01"), ("date7", "2019年10月1日"), ("date7", "2018-01-01"),
    ("date7", "2018/01/01"), ("date7", "2018.01.01"), ("date7", "2018-01"), ("date7", "01-01"),
    ("date7", "2019年10月1日 15:01"), ("amount8", "22.00元"), ("amount8", "¥22.00"), ("amount8", "1234567890"),
    ("phone_number9", "+86-0766-66888866"), ("car_number10", "粤A8Z888挂"), ("name11", "张三"),
    ("name11", "Zhang San"), ("phrase12", "申诉成功"), ("phrase12", "配送中"),
]
INVALID = [
    ("thing1", "", "is empty"), ("thing1", "   ", "is empty"), ("thing1", "x" * 21, "exceeds the limit of 20"),
    ("thing1", "两行\n文字", "control characters"), ("number2", "12a", "not a valid number"),
    ("number2", "-3", "not a valid number"), ("number2", "9" * 33, "exceeds the limit of 32"),
    ("letter3", "abc1", "not a valid letter"), ("symbol4", "!!!!!!", "exceeds the limit of 5"),
    ("symbol4", "a!", "not a valid symbol"), ("character_string5", "单号1", "not a valid character_string"),
    ("character_string5", "A" * 33, "exceeds the limit of 32"), ("time6", "25:00", "not a valid time"),
    ("time6", "tomorrow", "not a valid time"), ("time6", "2026-01-01", "not a valid time"),
    ("date7", "15:01", "not a valid date"), ("date7", "2018-01/01", "not a valid date"),
    ("amount8", "二十元", "not a valid amount"), ("amount8", "12345678901.00元", "not a valid amount"),
    ("amount8", "元", "not a valid amount"), ("phone_number9", "1" * 18, "exceeds the limit of 17"),
    ("phone_number9", "call me", "not a valid phone_number"), ("car_number10", "粤A8Z888挂X", "exceeds the limit of 8"),
    ("car_number10", "A粤8", "not a valid car_number"), ("name11", "张三丰张三丰张三丰张三", "exceeds the limit of 10"),
    ("name11", "Bob2", "no digits"), ("phrase12", "申诉成功了吗", "exceeds the limit of 5"),
    ("phrase12", "ok", "not a valid phrase"),
]


@pytest.mark.parametrize("key, value", VALID)
def test_values_wechat_accepts(key, value):
    assert keywords.problem(key, value) is None


@pytest.mark.parametrize("key, value, why", INVALID)
def test_values_wechat_refuses(key, value, why):
    assert why in (keywords.problem(key, value) or "")


@pytest.mark.asyncio
async def test_the_sandbox_answers_47003_naming_the_field(sandbox):
    openid, _ = await sandbox.mp.code2session("worker", "bob-1")
    for key, value, why in INVALID:  # one sandbox for every case (a server per case is slow)
        with pytest.raises(WeChatError) as err:
            await sandbox.mp.send_subscribe_message("worker", openid, "TPL-1", {"thing1": {"value": "任务"}, key: {"value": value}})
        assert err.value.errcode == 47003 and not err.value.retryable, (key, value)
        assert f"data.{key}.value" in err.value.errmsg and why in err.value.errmsg, (key, value, err.value.errmsg)
    assert sandbox.state.messages == []


@pytest.mark.asyncio
async def test_the_sandbox_accepts_every_valid_value(sandbox):
    openid, _ = await sandbox.mp.code2session("worker", "bob-1")
    await sandbox.mp.send_subscribe_message("worker", openid, "TPL-1", {k: {"value": v} for k, v in VALID})
    assert len(sandbox.state.messages) == 1


def test_a_too_long_thing_is_cut_but_an_amount_is_never_cut():
    assert keywords.fit("thing1", "关注公众号并截图上传到任务详情页面请认真完成") == "关注公众号并截图上传到任务详情页面请认…"
    assert keywords.fit("thing2", "第一行\n第二行") == "第一行 第二行"
    assert keywords.fit("amount1", "12345678901.00元") == "12345678901.00元"


def section(fields: dict, template_id: str = "TPL-1", **more) -> dict:
    return {"subscription_templates": {"worker": {"order_approved": {"template_id": template_id, "page": "p?id={order_id}",
                                                                      "fields": fields}}}, **more}


def test_a_field_written_as_a_bare_payload_key_is_a_config_error_that_says_how_to_write_it():
    cfg = WeChatConfig.from_dict(section({"thing1": "task_title"}), env={})
    with pytest.raises(WeChatConfigError, match=r"write '\{task_title\}'"):
        cfg.validate(production=False)


def test_fixed_text_that_breaks_its_keyword_rule_is_a_config_error():
    cfg = WeChatConfig.from_dict(section({"phrase2": "审核已经通过了"}), env={})
    with pytest.raises(WeChatConfigError, match="phrase2: the fixed text"):
        cfg.validate(production=False)


def test_the_shipped_placeholder_template_ids_are_refused_outside_the_sandbox():
    from tests.wechat.test_wechat_config import REAL

    cfg = WeChatConfig.from_dict({**REAL, **section({"thing1": "{task_title}"}, "REPLACE-worker-order-approved")}, env={})
    with pytest.raises(WeChatConfigError, match="placeholder 'REPLACE-worker-order-approved'"):
        cfg.validate(production=True)
    WeChatConfig.from_dict(section({"thing1": "{task_title}"}, "REPLACE-x"), env={}).validate(production=False)  # sandbox: fine


def test_render_refuses_a_payload_without_a_named_value_instead_of_sending_it_empty():
    cfg = WeChatConfig.from_dict(section({"thing1": "{task_title}", "thing2": "已通过"}), env={})
    t = cfg.template("worker", "order_approved")
    assert t.render({"order_id": 4, "task_title": "点赞"}) == ("p?id=4", {"thing1": {"value": "点赞"}, "thing2": {"value": "已通过"}})
    with pytest.raises(TemplateDataInvalid, match="'task_title'"):
        t.render({"order_id": 4})
    with pytest.raises(TemplateDataInvalid, match="'order_id'"):
        t.render({"task_title": "点赞"})


@pytest.mark.asyncio
async def test_45009_the_daily_quota_is_not_retried_and_stops_sends_until_midnight(sandbox):
    import datetime as dt

    from wechat.config import CHINA_TZ

    now = dt.datetime(2026, 3, 1, 15, 0, tzinfo=CHINA_TZ).timestamp()
    sandbox.mp._clock = lambda: now
    openid, _ = await sandbox.mp.code2session("worker", "bob-1")
    sandbox.state.inject_send_fault(45009, times=1)
    with pytest.raises(QuotaExhausted) as err:
        await sandbox.mp.send_subscribe_message("worker", openid, "TPL-1", {"thing1": {"value": "任务"}})
    assert err.value.errcode == 45009 and not err.value.retryable
    with pytest.raises(QuotaExhausted):  # the same day: not even tried
        await sandbox.mp.send_subscribe_message("worker", openid, "TPL-1", {"thing1": {"value": "任务"}})
    assert sandbox.state.send_attempts == 1
    publisher_openid, _ = await sandbox.mp.code2session("publisher", "alice-1")
    await sandbox.mp.send_subscribe_message("publisher", publisher_openid, "TPL-2", {"thing1": {"value": "任务"}})
    now = dt.datetime(2026, 3, 2, 0, 0, 1, tzinfo=CHINA_TZ).timestamp()  # the quota resets at midnight
    await sandbox.mp.send_subscribe_message("worker", openid, "TPL-1", {"thing1": {"value": "任务"}})
    assert len(sandbox.state.messages) == 2
