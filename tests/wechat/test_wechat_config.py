"""WeChatConfig: sandbox defaults, secrets from the environment only, validation."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from wechat import crypto
from wechat.config import WeChatConfig, WeChatConfigError
from wechat.sandbox import create_sandbox_blueprint

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "wechat" / "config.example.yaml"


def real_env(tmp_path) -> dict[str, str]:
    key_file = tmp_path / "apiclient_key.pem"
    key_file.write_text(crypto.generate_private_key_pem())
    return {"WECHAT_WORKER_SECRET": "w" * 32, "WECHAT_PUBLISHER_SECRET": "p" * 32, "WECHATPAY_APIV3_KEY": "k" * 32,
            "WECHATPAY_PRIVATE_KEY_FILE": str(key_file),
            # one-line PEM, as .env files often hold it
            "WECHATPAY_PUBLIC_KEY": crypto.public_key_pem_of(crypto.generate_private_key_pem()).replace("\n", "\\n")}


REAL = {"sandbox": False, "worker": {"appid": "wx1111111111111111"}, "publisher": {"appid": "wx2222222222222222"},
        "pay": {"mchid": "1900012345", "merchant_serial_no": "ABCDEF", "public_key_id": "PUB_KEY_ID_0112",
                "notify_url": "https://api.example.com/wechat/pay/notify",
                "transfer_notify_url": "https://api.example.com/wechat/transfer/notify", "transfer_scene_id": "1005"}}


def test_an_empty_section_is_a_working_sandbox_with_throwaway_keys():
    cfg = WeChatConfig.from_dict({}, env={})
    assert cfg.sandbox and cfg.api_base.endswith("/sandbox/wx/") and cfg.pay_base.endswith("/sandbox/pay")
    cfg.validate(production=False)
    crypto.load_private_key(cfg.pay.private_key_pem)
    assert len(cfg.pay.apiv3_key) == 32
    # Same throwaway keys for every config built in this process (client and sandbox must agree).
    assert WeChatConfig.from_dict({}, env={}).pay.private_key_pem == cfg.pay.private_key_pem
    assert "PRIVATE" not in repr(cfg) and "secret" not in repr(cfg.worker).replace("end=", "")


def test_the_sandbox_can_never_be_on_in_production():
    with pytest.raises(WeChatConfigError, match="sandbox is on in a production"):
        WeChatConfig.from_dict({"sandbox": True}, env={}).validate(production=True)


def test_production_without_credentials_lists_every_missing_piece():
    with pytest.raises(WeChatConfigError) as err:
        WeChatConfig.from_dict({"sandbox": False}, env={}).validate(production=True)
    for needle in ("WECHAT_WORKER_SECRET", "WECHAT_PUBLISHER_SECRET", "WECHATPAY_APIV3_KEY", "WECHATPAY_PRIVATE_KEY",
                   "WECHATPAY_PUBLIC_KEY", "mchid", "public_key_id", "transfer_scene_id"):
        assert needle in str(err.value)


def test_real_credentials_come_from_the_environment_and_validate(tmp_path):
    cfg = WeChatConfig.from_dict(REAL, env=real_env(tmp_path))
    cfg.validate(production=True)
    assert cfg.api_base == "https://api.weixin.qq.com/" and cfg.pay_base == "https://api.mch.weixin.qq.com"
    assert cfg.worker.secret == "w" * 32 and cfg.miniprogram_state == "formal"
    with pytest.raises(RuntimeError):
        create_sandbox_blueprint(cfg)  # never mountable without sandbox mode


def test_http_notify_urls_are_refused_in_production(tmp_path):
    section = {**REAL, "pay": {**REAL["pay"], "notify_url": "http://api.example.com/n"}}
    with pytest.raises(WeChatConfigError, match="pay.notify_url must be an https"):
        WeChatConfig.from_dict(section, env=real_env(tmp_path)).validate(production=True)


def test_the_example_yaml_loads_and_validates_as_a_sandbox():
    section = yaml.safe_load(EXAMPLE.read_text())["wechat"]
    cfg = WeChatConfig.from_dict(section, env={})
    cfg.validate(production=False)
    assert cfg.template("worker", "order_approved") is not None
    assert cfg.template("publisher", "order_taken") is not None


def test_a_template_without_id_is_a_config_error():
    cfg = WeChatConfig.from_dict({"subscription_templates": {"worker": {"x": {"page": "p"}}}}, env={})
    with pytest.raises(WeChatConfigError, match="template_id"):
        cfg.validate(production=False)
