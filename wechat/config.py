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
import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from types import MappingProxyType
from typing import Any, Mapping

from server import confvalues
from wechat import crypto, keywords
from wechat.errors import TemplateDataInvalid

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
    """WeChat Pay API v3 merchant settings.

    WeChat signs its answers and notifications with one of two kinds of key, named by the
    ``Wechatpay-Serial`` header: the 微信支付公钥 (``public_key_id`` "PUB_KEY_ID_..." with its PEM)
    or a platform certificate (a hex serial), downloaded from ``/v3/certificates``. A merchant that
    has not switched to the public key yet leaves both public_key fields empty ("certificate mode");
    during WeChat's switch (7 days, 0.1 % → 100 % of messages signed with the public key) both are
    in use, so a client with the public key configured still downloads certificates when a serial
    it does not know appears (``pay.PlatformKeys``).
    """

    mchid: str
    merchant_serial_no: str
    private_key_pem: str = field(repr=False)
    apiv3_key: str = field(repr=False)
    public_key_pem: str = field(repr=False)  # WeChat Pay public key (platform side); "" in certificate mode
    public_key_id: str  # "PUB_KEY_ID_...", sent as Wechatpay-Serial and expected back; "" in certificate mode
    notify_url: str  # payment (recharge) notifications
    transfer_notify_url: str  # merchant transfer (payout) notifications
    transfer_scene_id: str  # 转账场景ID, e.g. "1005" 佣金报酬
    transfer_scene_report_infos: tuple[tuple[str, str], ...] = ()  # (info_type, info_content) pairs
    transfer_user_recv_perception: str = ""  # e.g. "劳务报酬"; empty = WeChat's default wording
    timeout_s: float = 10.0

    @property
    def key_mode(self) -> str:
        """'public_key' (微信支付公钥 configured) or 'certificate' (platform certificates only)."""
        return "public_key" if self.public_key_id else "certificate"


@dataclass(frozen=True)
class SubscriptionTemplate:
    """How one domain event becomes one subscription message for one end.

    ``fields`` maps a WeChat data key (``thing1``, ``amount2``, ``time3`` ...) to a ``str.format``
    template over the event's payload: fixed text (``"有人接单了"``), payload values
    (``"{task_title}"``) or both (``"{refund_yuan}元"``). ``render`` adds, for every ``*_fen``
    integer in the payload, a ``*_yuan`` string ("12.30"), and shows datetimes in Beijing time,
    because the person reading the message thinks in yuan and local time.
    """

    end: str
    event: str
    template_id: str
    page: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)

    def render(self, payload: Mapping[str, Any]) -> tuple[str, dict[str, dict[str, str]]]:
        """(page, data) ready for subscribeMessage.send.

        Raises TemplateDataInvalid — never sends what WeChat would refuse with 47003 — when the
        payload lacks a value a field names, or a value breaks its keyword's rule (wechat/keywords.py)
        even after free text was fitted (a ``thing`` longer than 20 characters is cut with "…")."""
        values = _display_values(payload)
        page = self._format(self.page, values, "page") if self.page else ""
        data = {}
        for key, spec in self.fields.items():
            text = keywords.fit(key, self._format(spec, values, f"data.{key}"))
            found = keywords.problem(key, text)
            if found is not None:
                raise TemplateDataInvalid(None, f"{self.end}.{self.event}: data.{key}.value {found} ({text!r}); not sent")
            data[key] = {"value": text}
        return page, data

    def _format(self, spec: str, values: Mapping[str, Any], where: str) -> str:
        try:
            return spec.format_map(values)
        except (KeyError, IndexError) as exc:
            raise TemplateDataInvalid(None, f"{self.end}.{self.event}: {where} names {exc.args[0]!r}, "
                                            "which this event's payload does not carry; not sent") from exc
        except ValueError as exc:
            raise TemplateDataInvalid(None, f"{self.end}.{self.event}: {where} is not a valid format ({exc})") from exc

    def spec_problems(self) -> list[str]:
        """What is wrong with the template as configured (checked at start-up by validate)."""
        problems = []
        where = f"subscription_templates.{self.end}.{self.event}"
        for key, spec in [("page", self.page), *self.fields.items()]:
            if not isinstance(spec, str):
                problems.append(f"{where}.{key} must be a string")
                continue
            if _BARE_NAME.match(spec) and key != "page":
                problems.append(f"{where}.fields.{key} is {spec!r}: write {'{' + spec + '}'!r} to insert the payload "
                                "value (a field is a format string: fixed text and {payload_key} values)")
                continue
            try:
                list(string.Formatter().parse(spec))
            except ValueError as exc:
                problems.append(f"{where}.{key} is not a valid format string ({exc})")
        for key, spec in self.fields.items():
            if isinstance(spec, str) and "{" not in spec and not _BARE_NAME.match(spec):
                found = keywords.problem(key, spec)  # fixed text is checked once, here
                if found is not None:
                    problems.append(f"{where}.fields.{key}: the fixed text {spec!r} {found}")
        return problems


# WeChat Pay repeats a notification until the merchant answers 2xx. Payments: after 15 s, 15 s, 30 s,
# 3 min, 10 min, 20 min, 30 min, 30 min, 30 min, 60 min, 3 h, 3 h, 3 h, 6 h, 6 h (24 h 4 min in all).
WECHAT_NOTIFY_RETRY_SCHEDULE_S = (0, 15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800,
                                  21600, 21600)
# Merchant transfers: at once, then every 15 s (10 times), every 5 min (10 times), every 30 min (44 times).
WECHAT_TRANSFER_NOTIFY_RETRY_SCHEDULE_S = (0,) + (15,) * 10 + (300,) * 10 + (1800,) * 44
PLATFORM_KEY_MODES = ("public_key", "certificate", "switching")
SANDBOX_PUBLIC_KEY_ID = "PUB_KEY_ID_SANDBOX0000000000000000001"


@dataclass(frozen=True)
class SandboxOptions:
    """Knobs of the built-in WeChat stand-in (ignored when sandbox is off)."""

    platform_private_key_pem: str = field(default="", repr=False)  # the 微信支付公钥's private half, per process
    platform_cert_private_key_pem: str = field(default="", repr=False)  # the platform certificate's key
    platform_cert_pem: str = field(default="", repr=False)  # the platform certificate (served at /v3/certificates)
    # Which key signs WeChat's messages: "public_key" (a merchant on 微信支付公钥), "certificate" (one
    # that has not switched; our client then has no public key and downloads certificates), or
    # "switching" (WeChat's 7-day switch: each message signed with either, the public key for
    # `switch_public_key_share` of them).
    platform_key: str = "public_key"
    switch_public_key_share: float = 0.5
    refused_users: tuple[str, ...] = ()  # user names (see sandbox code convention) that refuse messages
    single_use_codes: bool = True  # a login code works once, as on WeChat
    unionid_bound: bool = False  # code2Session returns unionid only when the Mini Programs are bound to an Open Platform account
    # Delays between a notification's deliveries; empty = WeChat's own schedule for its kind (above).
    notify_retry_schedule_s: tuple[float, ...] = ()


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
        sandbox = _as_bool(d.get("sandbox", True), "sandbox")
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
        platform_key = str(sb.get("platform_key") or "public_key")
        if sandbox and platform_key not in PLATFORM_KEY_MODES:
            raise WeChatConfigError(f"wechat.sandbox_options.platform_key must be one of {PLATFORM_KEY_MODES}")
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
            public_key_id = public_key_id or SANDBOX_PUBLIC_KEY_ID
            if platform_key == "certificate":  # a merchant that has not switched: certificates only
                public_key, public_key_id = "", ""
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
            timeout_s=_as_number(p.get("timeout_s", 10.0), "pay.timeout_s"),
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
            http_timeout_s=_as_number(d.get("http_timeout_s", 5.0), "http_timeout_s"),
            sandbox_options=SandboxOptions(
                platform_private_key_pem=material["platform_private_key"] if material else "",
                platform_cert_private_key_pem=material["platform_cert_private_key"] if material else "",
                platform_cert_pem=material["platform_cert"] if material else "",
                platform_key=platform_key,
                switch_public_key_share=_as_number(sb.get("switch_public_key_share", 0.5), "sandbox_options.switch_public_key_share"),
                refused_users=tuple(str(u) for u in (sb.get("refused_users") or ())),
                single_use_codes=_as_bool(sb.get("single_use_codes", True), "sandbox_options.single_use_codes"),
                unionid_bound=_as_bool(sb.get("unionid_bound", False), "sandbox_options.unionid_bound"),
                notify_retry_schedule_s=_as_numbers(sb.get("notify_retry_schedule_s") or (),
                                                    "sandbox_options.notify_retry_schedule_s"),
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
                elif not self.sandbox and t.template_id.startswith(PLACEHOLDER_TEMPLATE_ID):
                    # Every send would answer 40037: the shipped ids are placeholders.
                    problems.append(f"subscription_templates.{end}.{event}.template_id is the placeholder "
                                    f"{t.template_id!r}: put the template id chosen in the Mini Program's "
                                    "订阅消息 console, or remove the event to send nothing for it")
                problems.extend(t.spec_problems())
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
        if not (p.mchid.isascii() and p.mchid.isdigit()):
            problems.append("wechat.pay.mchid is missing or not numeric")
        if not p.merchant_serial_no:
            problems.append("wechat.pay.merchant_serial_no is missing")
        if len(p.apiv3_key.encode()) != 32:
            problems.append(f"{SECRET_ENV['apiv3_key']} must be exactly 32 bytes")
        keys = [("private_key", p.private_key_pem, crypto.load_private_key)]
        if p.public_key_id or p.public_key_pem:
            # 微信支付公钥 mode: the id and the key come together. Neither = platform-certificate
            # mode (a merchant that has not switched): certificates are downloaded with the API v3 key.
            keys.append(("public_key", p.public_key_pem, crypto.load_public_key))
            if not p.public_key_id.startswith("PUB_KEY_ID_"):
                problems.append("wechat.pay.public_key_id must be the WeChat Pay public key id (PUB_KEY_ID_...) "
                                f"when {SECRET_ENV['public_key']} is set (leave both empty for platform certificates)")
        for what, pem, loader in keys:
            env_name = SECRET_ENV[what]
            if not pem:
                problems.append(f"{env_name} (or {env_name}_FILE) is not set")
                continue
            try:
                loader(pem)
            except Exception as exc:  # noqa: BLE001 - report every unreadable key, not just the first
                problems.append(f"{env_name} is not a readable RSA key ({exc.__class__.__name__})")
        if not p.transfer_scene_id:
            problems.append("wechat.pay.transfer_scene_id is missing")
        urls = {"pay.notify_url": p.notify_url, "pay.transfer_notify_url": p.transfer_notify_url,
                "api_base": self.api_base, "pay_base": self.pay_base}
        for name, url in urls.items():
            # WeChat Pay refuses an http:// notify_url outright (PARAM_ERROR), production or not;
            # plain http only to this machine itself (a stand-in for WeChat, wechat/standin.py).
            if (production or name.startswith("pay.")) and not (url.startswith("https://") or _loopback_http(url)):
                problems.append(f"wechat.{name} must be an https:// URL"
                                + (" in production" if not name.startswith("pay.") else " (WeChat Pay refuses http://)"))
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
    material = json.loads(inherited) if inherited else {}
    if not {"merchant_private_key", "platform_private_key", "platform_cert_private_key", "platform_cert",
            "apiv3_key"} <= material.keys():
        alphabet = string.ascii_letters + string.digits
        material.setdefault("merchant_private_key", crypto.generate_private_key_pem())
        material.setdefault("platform_private_key", crypto.generate_private_key_pem())  # the 微信支付公钥's pair
        material.setdefault("platform_cert_private_key", crypto.generate_private_key_pem())
        material.setdefault("platform_cert", crypto.self_signed_certificate_pem(
            material["platform_cert_private_key"], "WeChat Pay SANDBOX platform certificate"))
        material.setdefault("apiv3_key", "".join(secrets.choice(alphabet) for _ in range(32)))
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


def _loopback_http(url: str) -> bool:
    """Plain http is allowed in production only to this machine itself: a stand-in for WeChat's
    hosts in the production-topology test (wechat/standin.py), or the servers' own notify URLs
    there. Never to another host: money and secrets would cross a network in clear."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


# Booleans and numbers are read by the configuration's one parser (server/confvalues.py), so this
# section means the same here as in server/config.py, which has already parsed them (naming the
# file or variable they came from) when the section comes from there.
_SECTION = "the wechat section given to WeChatConfig.from_dict"


def _as_bool(v: Any, key: str) -> bool:
    try:
        return confvalues.parse_bool(v, f"wechat.{key}", _SECTION)
    except confvalues.ValueProblem as exc:
        raise WeChatConfigError(str(exc)) from None


def _as_number(v: Any, key: str) -> float:
    try:
        return confvalues.parse_number(v, f"wechat.{key}", _SECTION)
    except confvalues.ValueProblem as exc:
        raise WeChatConfigError(str(exc)) from None


def _as_numbers(v: Any, key: str) -> tuple[float, ...]:
    try:
        return confvalues.parse_number_list(v, f"wechat.{key}", _SECTION)
    except confvalues.ValueProblem as exc:
        raise WeChatConfigError(str(exc)) from None


_BARE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # "task_title": a payload key written without braces
PLACEHOLDER_TEMPLATE_ID = "REPLACE"  # the shipped template ids start with it: they exist at no AppID


def _display_values(payload: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for k, v in payload.items():
        if isinstance(v, datetime):
            v = (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")
        values[k] = v
        if k.endswith("_fen") and isinstance(v, int) and not isinstance(v, bool):
            sign = "-" if v < 0 else ""
            values[k[:-4] + "_yuan"] = f"{sign}{abs(v) // 100}.{abs(v) % 100:02d}"
    return values


