"""Typed, frozen configuration for everything in ``wechat/``.

Read from the ``wechat:`` section of config.yaml (see ``wechat/config.example.yaml``) with
``WeChatConfig.from_dict(section, env=os.environ)``. Secrets never live in the YAML: they come only
from environment variables (``SECRET_ENV`` below), so a config file can be committed and shared.

Sandbox mode (``sandbox: true``, the default when nothing is configured) points both API bases at the
stand-in mounted on our own server (``wechat/sandbox.py``) and fills every missing credential with a
throwaway value. In particular it **generates two RSA keys once per process** — the "merchant" key our
client signs with and the "platform" key the sandbox signs with — so nothing secret is ever needed to
run the project on one machine. Because they are per process, the sandbox must run in the same process
as the client that calls it (one Sanic worker), which it has to anyway: its state is in memory.
(Child processes started after the first load inherit the keys through the environment.)
``validate(production=True)`` refuses the sandbox outright.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Mapping

from wechat import crypto

ENDS = ("worker", "publisher")
REAL_API_BASE = "https://api.weixin.qq.com/"
REAL_PAY_BASE = "https://api.mch.weixin.qq.com"
DEFAULT_SANDBOX_BASE = "http://127.0.0.1:8000/sandbox"
MINIPROGRAM_STATES = ("developer", "trial", "formal")
CHINA_TZ = timezone(timedelta(hours=8))  # China has no DST; WeChat shows Beijing time

# Every secret and the environment variable it comes from.
SECRET_ENV = {
    "worker_secret": "WECHAT_WORKER_SECRET",
    "publisher_secret": "WECHAT_PUBLISHER_SECRET",
    "apiv3_key": "WECHATPAY_APIV3_KEY",
    "private_key": "WECHATPAY_PRIVATE_KEY",  # PEM text, or ..._FILE with a path
    "public_key": "WECHATPAY_PUBLIC_KEY",  # PEM text, or ..._FILE with a path
}


# Scene 1005 (佣金报酬) asks for these two report infos; used only when the sandbox config has none.
_SANDBOX_REPORT_INFOS = (("岗位类型", "任务推广员"), ("报酬说明", "任务佣金"))


class WeChatConfigError(ValueError):
    """The wechat: section (or its environment) is unusable; the message lists every problem."""


@dataclass(frozen=True)
class AppConfig:
    """One Mini Program (worker or publisher end): its own AppID, secret and openid space."""

    end: str
    appid: str
    secret: str = field(repr=False)


@dataclass(frozen=True)
class PayConfig:
    """WeChat Pay API v3 merchant settings (微信支付公钥 mode: no platform-certificate download)."""

    mchid: str
    merchant_serial_no: str
    private_key_pem: str = field(repr=False)
    apiv3_key: str = field(repr=False)
    public_key_pem: str = field(repr=False)  # WeChat Pay public key (platform side)
    public_key_id: str  # "PUB_KEY_ID_...", sent as Wechatpay-Serial and expected back
    notify_url: str  # payment (recharge) notifications
    transfer_notify_url: str  # merchant transfer (payout) notifications
    transfer_scene_id: str  # 转账场景ID, e.g. "1005" 佣金报酬
    transfer_scene_report_infos: tuple[tuple[str, str], ...] = ()  # (info_type, info_content) pairs
    transfer_user_recv_perception: str = ""  # e.g. "劳务报酬"; empty = WeChat's default wording
    timeout_s: float = 10.0


@dataclass(frozen=True)
class SubscriptionTemplate:
    """How one domain event becomes one subscription message for one end.

    ``fields`` maps a WeChat data key (``thing1``, ``amount2``, ``time3`` ...) to either a payload
    key (``"task_title"``) or a ``str.format`` template (``"{amount_yuan} 元"``). ``render`` adds, for
    every ``*_fen`` integer in the payload, a ``*_yuan`` string ("12.30"), and shows datetimes in
    Beijing time, because the person reading the message thinks in yuan and local time.
    """

    end: str
    event: str
    template_id: str
    page: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)

    def render(self, payload: Mapping[str, Any]) -> tuple[str, dict[str, dict[str, str]]]:
        values = _display_values(payload)
        page = self.page.format_map(values) if self.page else ""
        data = {}
        for key, spec in self.fields.items():
            text = spec.format_map(values) if "{" in spec else str(values.get(spec, ""))
            data[key] = {"value": _fit_field(key, text)}
        return page, data


@dataclass(frozen=True)
class SandboxOptions:
    """Knobs of the built-in WeChat stand-in (ignored when sandbox is off)."""

    platform_private_key_pem: str = field(default="", repr=False)  # generated per process
    refused_users: tuple[str, ...] = ()  # user names (see sandbox code convention) that refuse messages
    single_use_codes: bool = True  # a login code works once, as on WeChat
    notify_retry_schedule_s: tuple[float, ...] = (0, 1, 2, 5, 10, 30)  # delays between deliveries


@dataclass(frozen=True)
class WeChatConfig:
    sandbox: bool
    api_base: str  # Mini Program server API base, ends with "/"
    pay_base: str  # WeChat Pay API base, no trailing "/"
    worker: AppConfig
    publisher: AppConfig
    pay: PayConfig
    subscription_templates: Mapping[str, Mapping[str, SubscriptionTemplate]]  # end -> event -> template
    miniprogram_state: str = "formal"
    lang: str = "zh_CN"
    http_timeout_s: float = 5.0
    sandbox_options: SandboxOptions = field(default_factory=SandboxOptions)

    # ---- lookups -------------------------------------------------------------------------------
    def app(self, end: str) -> AppConfig:
        if end == "worker":
            return self.worker
        if end == "publisher":
            return self.publisher
        raise ValueError(f"unknown end {end!r}; expected one of {ENDS}")

    def template(self, end: str, event: str) -> SubscriptionTemplate | None:
        """None means: this event sends no subscription message on this end."""
        return self.subscription_templates.get(end, {}).get(event)

    def with_sandbox_base(self, sandbox_base: str) -> "WeChatConfig":
        """Point both API bases at a sandbox mounted at ``sandbox_base`` (e.g. a test server's port)."""
        base = sandbox_base.rstrip("/")
        return dataclasses.replace(self, api_base=base + "/wx/", pay_base=base + "/pay")

    # ---- loading -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, env: Mapping[str, str] = os.environ) -> "WeChatConfig":
        d = dict(d or {})
        sandbox = _as_bool(d.get("sandbox", True))
        sandbox_base = str(d.get("sandbox_base") or DEFAULT_SANDBOX_BASE).rstrip("/")
        api_base = d.get("api_base") or (sandbox_base + "/wx/" if sandbox else REAL_API_BASE)
        pay_base = d.get("pay_base") or (sandbox_base + "/pay" if sandbox else REAL_PAY_BASE)
        if not api_base.endswith("/"):
            api_base += "/"
        pay_base = pay_base.rstrip("/")

        def app(end: str, default_appid: str) -> AppConfig:
            section = d.get(end) or {}
            secret = env.get(SECRET_ENV[f"{end}_secret"], "") or (f"sandbox-{end}-secret" if sandbox else "")
            return AppConfig(end=end, appid=str(section.get("appid") or (default_appid if sandbox else "")), secret=secret)

        sb = d.get("sandbox_options") or {}
        p = d.get("pay") or {}
        material = _sandbox_material() if sandbox else None
        private_key = _pem_from_env(env, SECRET_ENV["private_key"])
        public_key = _pem_from_env(env, SECRET_ENV["public_key"])
        apiv3_key = env.get(SECRET_ENV["apiv3_key"], "")
        public_key_id = str(p.get("public_key_id") or "")
        serial = str(p.get("merchant_serial_no") or "")
        if sandbox:
            # Real keys are never used against the sandbox: the sandbox would need the matching
            # private halves. Everything comes from the per-process throwaway material.
            private_key = material["merchant_private_key"]
            public_key = crypto.public_key_pem_of(material["platform_private_key"])
            apiv3_key = apiv3_key if len(apiv3_key) == 32 else material["apiv3_key"]
            public_key_id = public_key_id or "PUB_KEY_ID_SANDBOX0000000000000000001"
            serial = serial or "5A4D5A4D5A4D5A4D5A4D5A4D5A4D5A4DSANDBOX1"
        pay = PayConfig(
            mchid=str(p.get("mchid") or ("1900000001" if sandbox else "")),
            merchant_serial_no=serial,
            private_key_pem=private_key,
            apiv3_key=apiv3_key,
            public_key_pem=public_key,
            public_key_id=public_key_id,
            notify_url=str(p.get("notify_url") or ""),
            transfer_notify_url=str(p.get("transfer_notify_url") or ""),
            transfer_scene_id=str(p.get("transfer_scene_id") or ("1005" if sandbox else "")),
            transfer_scene_report_infos=tuple(
                (str(i["info_type"]), str(i["info_content"])) for i in (p.get("transfer_scene_report_infos") or ())
            ) or (_SANDBOX_REPORT_INFOS if sandbox else ()),
            transfer_user_recv_perception=str(p.get("transfer_user_recv_perception") or ""),
            timeout_s=float(p.get("timeout_s", 10.0)),
        )
        templates: dict[str, Mapping[str, SubscriptionTemplate]] = {}
        for end, events in (d.get("subscription_templates") or {}).items():
            if end not in ENDS:
                raise WeChatConfigError(f"wechat.subscription_templates: unknown end {end!r}; expected {ENDS}")
            templates[end] = MappingProxyType({
                event: SubscriptionTemplate(
                    end=end,
                    event=event,
                    template_id=str(t.get("template_id") or ""),
                    page=str(t.get("page") or ""),
                    fields=MappingProxyType(dict(t.get("fields") or {})),
                )
                for event, t in (events or {}).items()
            })
        return cls(
            sandbox=sandbox,
            api_base=api_base,
            pay_base=pay_base,
            worker=app("worker", "wxsandbox00worker01"),
            publisher=app("publisher", "wxsandbox0publisher"),
            pay=pay,
            subscription_templates=MappingProxyType(templates),
            miniprogram_state=str(d.get("miniprogram_state") or ("developer" if sandbox else "formal")),
            lang=str(d.get("lang") or "zh_CN"),
            http_timeout_s=float(d.get("http_timeout_s", 5.0)),
            sandbox_options=SandboxOptions(
                platform_private_key_pem=material["platform_private_key"] if material else "",
                refused_users=tuple(str(u) for u in (sb.get("refused_users") or ())),
                single_use_codes=_as_bool(sb.get("single_use_codes", True)),
                notify_retry_schedule_s=tuple(float(x) for x in (sb.get("notify_retry_schedule_s") or (0, 1, 2, 5, 10, 30))),
            ),
        )

    # ---- validation ----------------------------------------------------------------------------
    def validate(self, production: bool) -> None:
        """Raise WeChatConfigError listing every problem. Call once at start-up.

        - production + sandbox is always refused: the sandbox hands out fake money and fake users.
        - without the sandbox every credential must be present and well-formed (production or not,
          since a half-configured real client fails at the first payment rather than at start).
        """
        problems: list[str] = []
        if self.miniprogram_state not in MINIPROGRAM_STATES:
            problems.append(f"miniprogram_state must be one of {MINIPROGRAM_STATES}")
        for end, events in self.subscription_templates.items():
            for event, t in events.items():
                if not t.template_id:
                    problems.append(f"subscription_templates.{end}.{event}.template_id is empty")
        if self.sandbox:
            if production:
                problems.append("wechat.sandbox is on in a production configuration: set wechat.sandbox: false "
                                "and provide real credentials (the sandbox fakes payments and users)")
            if problems:
                raise WeChatConfigError("; ".join(problems))
            return
        for a in (self.worker, self.publisher):
            if not a.appid.startswith("wx"):
                problems.append(f"wechat.{a.end}.appid is missing or not a wx... AppID")
            if not a.secret:
                problems.append(f"{SECRET_ENV[a.end + '_secret']} is not set")
        if self.worker.appid and self.worker.appid == self.publisher.appid:
            problems.append("worker and publisher must be two different Mini Programs (AppIDs)")
        p = self.pay
        if not p.mchid.isdigit():
            problems.append("wechat.pay.mchid is missing or not numeric")
        if not p.merchant_serial_no:
            problems.append("wechat.pay.merchant_serial_no is missing")
        if len(p.apiv3_key.encode()) != 32:
            problems.append(f"{SECRET_ENV['apiv3_key']} must be exactly 32 bytes")
        for what, pem, loader in (("private_key", p.private_key_pem, crypto.load_private_key),
                                  ("public_key", p.public_key_pem, crypto.load_public_key)):
            env_name = SECRET_ENV[what]
            if not pem:
                problems.append(f"{env_name} (or {env_name}_FILE) is not set")
                continue
            try:
                loader(pem)
            except Exception as exc:  # noqa: BLE001 - report every unreadable key, not just the first
                problems.append(f"{env_name} is not a readable RSA key ({exc.__class__.__name__})")
        if not p.public_key_id.startswith("PUB_KEY_ID_"):
            problems.append("wechat.pay.public_key_id must be the WeChat Pay public key id (PUB_KEY_ID_...)")
        if not p.transfer_scene_id:
            problems.append("wechat.pay.transfer_scene_id is missing")
        urls = {"pay.notify_url": p.notify_url, "pay.transfer_notify_url": p.transfer_notify_url,
                "api_base": self.api_base, "pay_base": self.pay_base}
        for name, url in urls.items():
            if production and not url.startswith("https://"):
                problems.append(f"wechat.{name} must be an https:// URL in production")
            elif not url.startswith(("https://", "http://")):
                problems.append(f"wechat.{name} must be an absolute URL")
            if "/sandbox" in url:
                problems.append(f"wechat.{name} points at the sandbox while sandbox is off")
        if problems:
            raise WeChatConfigError("; ".join(problems))


# ---- helpers -----------------------------------------------------------------------------------

SANDBOX_MATERIAL_ENV = "WECHAT_SANDBOX_MATERIAL"  # set by us, inherited by processes started later


@lru_cache(maxsize=1)
def _sandbox_material() -> dict[str, str]:
    """Throwaway keys, generated once per process (so every config object in it agrees).

    They are also published in os.environ so that processes spawned afterwards (Sanic workers,
    a managed scheduler process) inherit the same keys when the config is first loaded in the
    parent: a scheduler that calls the sandbox's Pay API must sign with the key the sandbox knows.
    """
    inherited = os.environ.get(SANDBOX_MATERIAL_ENV)
    if inherited:
        return json.loads(inherited)
    alphabet = string.ascii_letters + string.digits
    material = {
        "merchant_private_key": crypto.generate_private_key_pem(),
        "platform_private_key": crypto.generate_private_key_pem(),
        "apiv3_key": "".join(secrets.choice(alphabet) for _ in range(32)),
    }
    os.environ[SANDBOX_MATERIAL_ENV] = json.dumps(material)
    return material


def _pem_from_env(env: Mapping[str, str], name: str) -> str:
    text = env.get(name, "")
    if not text and env.get(name + "_FILE"):
        with open(env[name + "_FILE"], encoding="ascii") as fh:
            text = fh.read()
    if text and "\n" not in text and "\\n" in text:  # PEM squeezed into one line by a .env file
        text = text.replace("\\n", "\n")
    return text.strip() + "\n" if text else ""


def _as_bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


class _Blank(dict):
    def __missing__(self, key: str) -> str:  # a missing payload key renders empty, never KeyError
        return ""


def _display_values(payload: Mapping[str, Any]) -> dict[str, Any]:
    values = _Blank()
    for k, v in payload.items():
        if isinstance(v, datetime):
            v = (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")
        values[k] = v
        if k.endswith("_fen") and isinstance(v, int) and not isinstance(v, bool):
            sign = "-" if v < 0 else ""
            values[k[:-4] + "_yuan"] = f"{sign}{abs(v) // 100}.{abs(v) % 100:02d}"
    return values


# Length limits WeChat enforces per data-key kind (errcode 47003 otherwise); we cut instead of failing.
_FIELD_LIMITS = {"thing": 20, "name": 10, "phrase": 5, "character_string": 32, "number": 32, "letter": 32,
                 "symbol": 5, "car_number": 8, "phone_number": 17}


def _fit_field(key: str, text: str) -> str:
    kind = key.rstrip(string.digits)
    limit = _FIELD_LIMITS.get(kind)
    if limit and len(text) > limit:
        return text[: limit - 1] + "…" if kind == "thing" else text[:limit]
    return text
