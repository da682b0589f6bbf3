"""Production and the WeChat stand-in: production never runs the built-in sandbox; its real clients
may be pointed at a stand-in on this machine (plain http to loopback only), never at a remote plain
http host, never at a server's /sandbox."""

from __future__ import annotations

import pytest

from server.config import ConfigError, load_config
from wechat import crypto
from wechat.config import WeChatConfig, WeChatConfigError

KEY = crypto.generate_private_key_pem()
ENV = {"WECHAT_WORKER_SECRET": "w" * 32, "WECHAT_PUBLISHER_SECRET": "p" * 32, "WECHATPAY_APIV3_KEY": "k" * 32,
       "WECHATPAY_PRIVATE_KEY": KEY, "WECHATPAY_PUBLIC_KEY": crypto.public_key_pem_of(KEY)}


def section(base: str, notify: str = "https://market.example.com") -> dict:
    return {"sandbox": False, "api_base": base + "/wx/", "pay_base": base + "/pay",
            "worker": {"appid": "wxworker00000001"}, "publisher": {"appid": "wxpublisher00001"},
            "pay": {"mchid": "1900000009", "merchant_serial_no": "ABC", "public_key_id": "PUB_KEY_ID_1", "transfer_scene_id": "1005",
                    "notify_url": notify + "/api/wechat/pay/notify", "transfer_notify_url": notify + "/api/wechat/transfer/notify"}}


def test_production_accepts_a_stand_in_on_this_machine():
    WeChatConfig.from_dict(section("http://127.0.0.1:9999", "http://127.0.0.1:8001"), ENV).validate(production=True)
    WeChatConfig.from_dict(section("https://api.mch.weixin.qq.com"), ENV).validate(production=True)


@pytest.mark.parametrize("base, why", [("http://10.0.0.5:9999", "https"), ("http://wechat.example.com", "https"),
                                       ("http://127.0.0.1:8000/sandbox", "sandbox")])
def test_production_refuses_plain_http_elsewhere_and_any_sandbox(base, why):
    with pytest.raises(WeChatConfigError, match=why):
        WeChatConfig.from_dict(section(base), ENV).validate(production=True)


def test_production_never_mounts_the_built_in_sandbox():
    from server.keys import new_secret

    env = {"MARKET_PRODUCTION": "true", "MARKET_SECRET_KEY": new_secret(), "DATABASE_URL": "postgres://u@h/db"}
    with pytest.raises(ConfigError, match="sandbox"):
        load_config(env=env)  # the default wechat.sandbox: true
    from wechat.sandbox import create_sandbox_blueprint

    with pytest.raises(RuntimeError):
        create_sandbox_blueprint(WeChatConfig.from_dict(section("https://api.mch.weixin.qq.com"), ENV))


def test_the_stand_in_refuses_to_run_in_production(monkeypatch):
    from wechat import standin

    monkeypatch.setenv("MARKET_PRODUCTION", "true")
    assert standin.main(["--port", "1"]) == 2
