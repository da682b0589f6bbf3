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
                   "mchid", "merchant_serial_no", "transfer_scene_id", "notify_url"):
        assert needle in str(err.value)


def test_the_public_key_and_its_id_come_together_and_neither_means_platform_certificates(tmp_path):
    env = real_env(tmp_path)
    without_key = {k: v for k, v in env.items() if k != "WECHATPAY_PUBLIC_KEY"}
    with pytest.raises(WeChatConfigError, match="WECHATPAY_PUBLIC_KEY"):
        WeChatConfig.from_dict(REAL, env=without_key).validate(production=True)
    no_id = {**REAL, "pay": {**REAL["pay"], "public_key_id": None}}
    with pytest.raises(WeChatConfigError, match="public_key_id"):
        WeChatConfig.from_dict(no_id, env=env).validate(production=True)
    cfg = WeChatConfig.from_dict(no_id, env=without_key)  # a merchant that has not switched to 微信支付公钥
    cfg.validate(production=True)
    assert cfg.pay.key_mode == "certificate"
    assert WeChatConfig.from_dict(REAL, env=env).pay.key_mode == "public_key"


def test_real_credentials_come_from_the_environment_and_validate(tmp_path):
    cfg = WeChatConfig.from_dict(REAL, env=real_env(tmp_path))
    cfg.validate(production=True)
    assert cfg.api_base == "https://api.weixin.qq.com/" and cfg.pay_base == "https://api.mch.weixin.qq.com"
    assert cfg.worker.secret == "w" * 32 and cfg.miniprogram_state == "formal"
    with pytest.raises(RuntimeError):
        create_sandbox_blueprint(cfg)  # never mountable without sandbox mode


@pytest.mark.parametrize("production", [True, False])
def test_http_notify_urls_are_refused_whenever_real_wechat_would_see_them(tmp_path, production):
    """WeChat Pay refuses an http:// notify_url (PARAM_ERROR): not only in production."""
    for key in ("notify_url", "transfer_notify_url"):
        section = {**REAL, "pay": {**REAL["pay"], key: "http://api.example.com/n"}}
        with pytest.raises(WeChatConfigError, match=f"pay.{key} must be an https"):
            WeChatConfig.from_dict(section, env=real_env(tmp_path)).validate(production=production)


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
