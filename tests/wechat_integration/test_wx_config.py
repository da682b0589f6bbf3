"""The sandbox can never be on in production; the server derives its WeChat addresses from its own."""

from __future__ import annotations

import dataclasses

import pytest

from server.app import create_app
from server.config import ConfigError
from server.keys import new_secret
from server.wechat_services import wechat_config
from wechat.config import WeChatConfigError

from tests.wechat_integration.conftest import make_config


def test_a_production_config_with_the_sandbox_on_refuses_to_load():
    with pytest.raises(ConfigError, match="sandbox"):
        make_config(production=True, secret_key=new_secret(), database_url="postgres://u@127.0.0.1/db",
                    wechat={"sandbox": True})


def test_the_app_refuses_to_start_with_production_and_the_sandbox():
    config = dataclasses.replace(make_config(), production=True)  # past load_config's own check
    with pytest.raises(WeChatConfigError, match="sandbox"):
        create_app(config, manage_db=False)


def test_the_sandbox_and_the_notify_urls_follow_the_servers_address():
    config = make_config(port=9123)
    cfg = wechat_config(config)
    assert cfg.api_base == "http://127.0.0.1:9123/sandbox/wx/"
    assert cfg.pay_base == "http://127.0.0.1:9123/sandbox/pay"
    assert cfg.pay.notify_url == "http://127.0.0.1:9123/api/wechat/pay/notify"
    assert cfg.pay.transfer_notify_url == "http://127.0.0.1:9123/api/wechat/transfer/notify"
