"""Configuration: `config.yaml` (every key commented there) overridden by environment variables.

Precedence, lowest first: the defaults below, `config.yaml` (or the file named by MARKET_CONFIG),
then the environment. Any key can be set from the environment as MARKET__SECTION__KEY (values
parsed as YAML, so `MARKET__SCHEDULER__EMBEDDED=false` is a boolean); the common ones also have
short names: DATABASE_URL, REDIS_URL, MARKET_SECRET_KEY, MARKET_PRODUCTION, PORT.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = ROOT / "config.yaml"

DEFAULTS: dict[str, Any] = {
    "production": False,
    "host": "127.0.0.1",
    "port": 8000,
    "workers": 1,
    "access_log": False,
    "database_url": "sqlite://var/market.sqlite3",
    "db_pool_max": 20,
    "redis_url": "",
    "secret_key": "",
    "public_base_url": "",
    "uploads_dir": "var/uploads",
    "scheduler": {
        "embedded": True,
        "sweep_interval_s": 0.25,
        "sweep_batch": 100,
        "outbox_interval_s": 0.5,
        "outbox_batch": 200,
        "outbox_max_attempts": 8,
        "referral_settle_interval_s": 2.0,
        "recharge_check_interval_s": 60.0,
        "payout_check_interval_s": 60.0,
        "ledger_audit_interval_s": 600.0,
        "outbox_retention_s": 604800.0,
    },
    "market": {},
    "wechat": {},
}

SHORT_ENV = {
    "DATABASE_URL": ("database_url",),
    "REDIS_URL": ("redis_url",),
    "MARKET_SECRET_KEY": ("secret_key",),
    "MARKET_PRODUCTION": ("production",),
    "PORT": ("port",),
}


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
    embedded: bool
    sweep_interval_s: float
    sweep_batch: int
    outbox_interval_s: float
    outbox_batch: int
    outbox_max_attempts: int
    referral_settle_interval_s: float
    recharge_check_interval_s: float
    payout_check_interval_s: float
    ledger_audit_interval_s: float
    outbox_retention_s: float


@dataclasses.dataclass(frozen=True)
class Config:
    production: bool
    host: str
    port: int
    workers: int
    access_log: bool
    database_url: str
    db_pool_max: int
    redis_url: str
    secret_key: str
    public_base_url: str
    uploads_dir: str
    scheduler: SchedulerConfig
    market: dict[str, int]
    wechat: dict[str, Any]

    @property
    def db_url_with_pool(self) -> str:
        if self.database_url.startswith(("postgres://", "asyncpg://")) and "maxsize" not in self.database_url:
            sep = "&" if "?" in self.database_url else "?"
            return f"{self.database_url}{sep}maxsize={self.db_pool_max}"
        return self.database_url


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_path(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    env = os.environ if env is None else env
    path = Path(path or env.get("MARKET_CONFIG") or DEFAULT_CONFIG_PATH)
    raw: dict[str, Any] = {}
    if path.exists():
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if raw.get("secret_key"):
            raise ConfigError(f"{path}: secret_key must not be written in a file; set MARKET_SECRET_KEY instead")
    elif env.get("MARKET_CONFIG"):
        raise ConfigError(f"MARKET_CONFIG names {path}, which does not exist")
    tree = _merge(DEFAULTS, raw)
    for name, key_path in SHORT_ENV.items():
        if env.get(name) not in (None, ""):
            _set_path(tree, key_path, yaml.safe_load(env[name]))
    for name, value in env.items():
        if name.startswith("MARKET__"):
            _set_path(tree, tuple(p.lower() for p in name[len("MARKET__"):].split("__")), yaml.safe_load(value))
    tree = _merge(tree, overrides or {})
    return _build(tree)


def _build(tree: dict[str, Any]) -> Config:
    unknown = set(tree) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    sched = tree["scheduler"]
    unknown = set(sched) - set(DEFAULTS["scheduler"])
    if unknown:
        raise ConfigError(f"unknown scheduler keys: {', '.join(sorted(unknown))}")
    try:
        config = Config(
            production=bool(tree["production"]),
            host=str(tree["host"]),
            port=int(tree["port"]),
            workers=int(tree["workers"]),
            access_log=bool(tree["access_log"]),
            database_url=str(tree["database_url"]),
            db_pool_max=int(tree["db_pool_max"]),
            redis_url=str(tree["redis_url"] or ""),
            secret_key=str(tree["secret_key"] or ""),
            public_base_url=str(tree["public_base_url"] or ""),
            uploads_dir=str(tree["uploads_dir"]),
            scheduler=SchedulerConfig(**{k: type(v)(sched[k]) for k, v in DEFAULTS["scheduler"].items()}),
            market=dict(tree["market"] or {}),
            wechat=dict(tree["wechat"] or {}),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad configuration value: {exc}") from exc
    validate(config)
    return config


def validate(config: Config) -> None:
    from models import settings as market_settings

    sandbox = bool((config.wechat or {}).get("sandbox", True))
    if (config.production or not sandbox) and len(config.secret_key) < 32:
        # The built-in development key is public: it may only sign sessions where all money is the
        # sandbox's play money. Real WeChat credentials need a real key, production flag or not.
        raise ConfigError("set MARKET_SECRET_KEY (at least 32 characters): it is required in production "
                          "and whenever the WeChat sandbox is off")
    if config.production:
        if config.database_url.startswith("sqlite"):
            raise ConfigError("production needs PostgreSQL: set DATABASE_URL")
        if (config.wechat or {}).get("sandbox", True):
            raise ConfigError("the WeChat sandbox can never be on in production: set wechat.sandbox to false")
    if config.workers < 1:
        raise ConfigError("workers must be at least 1")
    if config.workers > 1 and not config.redis_url:
        raise ConfigError("several workers need Redis (REDIS_URL) for the push fan-out and shared rate limits")
    if config.scheduler.sweep_batch < 1 or config.scheduler.outbox_batch < 1:
        raise ConfigError("batch sizes must be at least 1")
    try:
        market_settings.validate(market_settings.from_dict(config.market))
    except Exception as exc:  # InvalidSettings carries the bad fields
        details = getattr(exc, "details", {})
        raise ConfigError(f"market settings in config.yaml are not valid: {details or exc}") from exc


def dev_secret_key(config: Config) -> str:
    """The key that signs session tokens. Outside production a fixed development key is used when
    none is set, so the default run needs no set-up (production refuses to start without one)."""
    return config.secret_key or "development-only-secret-key-not-for-production-use"
