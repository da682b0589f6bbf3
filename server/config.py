"""Configuration: `config.yaml` (every key commented there) overridden by environment variables.

Precedence, lowest first: the defaults below, `config.yaml` (or the file named by MARKET_CONFIG),
then the environment. Any key can be set from the environment as MARKET__SECTION__KEY; the common
ones also have short names: DATABASE_URL, REDIS_URL, MARKET_SECRET_KEY,
MARKET_PREVIOUS_SECRET_KEYS, MARKET_PRODUCTION, PORT. An empty variable counts as not set.

Every boolean and number, from the file or the environment, is read by the one parser of
`server/confvalues.py` (`TYPES` below says which keys are which); a value that is not clearly
true/false or a number is refused, and the error names the key and where the value came from.
Variables of other keys (lists, sections) are read as YAML; strings are taken as written.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from server import confvalues
from server.confvalues import ValueProblem

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
    "redis_namespace": "",
    "secret_key": "",
    "previous_secret_keys": [],
    "public_base_url": "",
    "uploads_dir": "var/uploads",
    "scheduler": {
        "embedded": True,
        "sweep_interval_s": 0.25,
        "sweep_batch": 100,
        "sweep_lanes": 2,
        "outbox_interval_s": 0.5,
        "outbox_batch": 200,
        "outbox_max_attempts": 8,
        "referral_settle_interval_s": 2.0,
        "recharge_check_interval_s": 60.0,
        "payout_check_interval_s": 60.0,
        "ledger_audit_interval_s": 600.0,
        "outbox_retention_s": 604800.0,
        "records_refresh_interval_s": 10.0,
        "records_full_refresh_interval_s": 3600.0,
    },
    "market": {},
    "wechat": {},
    # Operations (issue 15): logs, /metrics, the daily reconciliation with WeChat Pay's bills.
    "log_format": "json",
    "log_level": "INFO",
    "metrics": {
        "token": "",
        "scheduler_host": "127.0.0.1",
        "scheduler_port": 0,
    },
    "reconciliation": {
        "enabled": True,
        "run_after": "10:30",
        "check_interval_s": 900.0,
        "stuck_transfer_s": 172800.0,
        "transfer_confirm_deadline_s": 86400.0,
        "fund_account_type": "OPERATION",
    },
}

# Keys whose values are secrets (→ the variable that sets them): never in a file, never repeated in
# an error message, always taken as written from the environment.
SECRET_KEYS = {"secret_key": "MARKET_SECRET_KEY", "previous_secret_keys": "MARKET_PREVIOUS_SECRET_KEYS",
               "metrics.token": "MARKET_METRICS_TOKEN"}

SHORT_ENV = {
    "DATABASE_URL": ("database_url",),
    "REDIS_URL": ("redis_url",),
    "MARKET_SECRET_KEY": ("secret_key",),
    "MARKET_PREVIOUS_SECRET_KEYS": ("previous_secret_keys",),
    "MARKET_PRODUCTION": ("production",),
    "PORT": ("port",),
    "MARKET_METRICS_TOKEN": ("metrics", "token"),
    "MARKET_LOG_FORMAT": ("log_format",),
}


def _market_fields() -> tuple[str, ...]:
    from models.settings import FIELDS

    return FIELDS


# The kind of every typed key ("market.*": every market setting). Keys not listed are strings,
# lists or sections, checked where they are used.
TYPES: dict[str, str] = {
    "production": "bool",
    "port": "int",
    "workers": "int",
    "access_log": "bool",
    "db_pool_max": "int",
    "scheduler.embedded": "bool",
    "scheduler.sweep_batch": "int",
    "scheduler.sweep_lanes": "int",
    "scheduler.outbox_batch": "int",
    "scheduler.outbox_max_attempts": "int",
    **{f"scheduler.{k}": "number" for k in DEFAULTS["scheduler"] if k.endswith("_s")},
    "market.*": "int",
    "metrics.scheduler_port": "int",
    "reconciliation.enabled": "bool",
    **{f"reconciliation.{k}": "number" for k in DEFAULTS["reconciliation"] if k.endswith("_s")},
    "wechat.sandbox": "bool",
    "wechat.http_timeout_s": "number",
    "wechat.pay.timeout_s": "number",
    "wechat.sandbox_options.single_use_codes": "bool",
    "wechat.sandbox_options.unionid_bound": "bool",
    "wechat.sandbox_options.switch_public_key_share": "number",
    "wechat.sandbox_options.notify_retry_schedule_s": "number_list",
}
_PARSERS: dict[str, Callable[[Any, str, str], Any]] = {
    "bool": confvalues.parse_bool,
    "int": confvalues.parse_int,
    "number": confvalues.parse_number,
    "number_list": confvalues.parse_number_list,
}


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key, where it came from, and why."""


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
    embedded: bool
    sweep_interval_s: float
    sweep_batch: int
    sweep_lanes: int
    outbox_interval_s: float
    outbox_batch: int
    outbox_max_attempts: int
    referral_settle_interval_s: float
    recharge_check_interval_s: float
    payout_check_interval_s: float
    ledger_audit_interval_s: float
    outbox_retention_s: float
    records_refresh_interval_s: float  # the records of users whose orders moved (models/records.py)
    records_full_refresh_interval_s: float  # every record (orders age out of the window)


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    token: str = dataclasses.field(repr=False)  # Bearer token for GET /metrics; empty = /metrics is off
    scheduler_host: str  # where `python -m scheduler` serves its own /metrics
    scheduler_port: int  # 0 = the standalone scheduler serves no metrics


@dataclasses.dataclass(frozen=True)
class ReconciliationConfig:
    enabled: bool  # the scheduler reconciles yesterday with WeChat Pay's bills every day
    run_after: str  # "HH:MM" Beijing time: WeChat's bills for yesterday are ready by then
    check_interval_s: float  # how often the job looks whether yesterday still needs doing
    stuck_transfer_s: float  # a payout still in flight this long after approval is a difference
    transfer_confirm_deadline_s: float  # unconfirmed transfers are cancelled (and refunded) after this
    fund_account_type: str  # the fund account whose bill holds the payouts: OPERATION (运营账户) for 商家转账


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
    secret_key: str = dataclasses.field(repr=False)  # never in a log line
    previous_secret_keys: tuple[str, ...] = dataclasses.field(repr=False)
    public_base_url: str
    uploads_dir: str
    scheduler: SchedulerConfig
    market: dict[str, int]
    wechat: dict[str, Any]
    log_format: str = "json"
    log_level: str = "INFO"
    metrics: MetricsConfig = MetricsConfig(token="", scheduler_host="127.0.0.1", scheduler_port=0)
    reconciliation: ReconciliationConfig = ReconciliationConfig(True, "10:30", 900.0, 172800.0, 86400.0, "OPERATION")
    # The prefix of every Redis key and channel of this deployment: as configured, else derived from
    # the database (`default_redis_namespace`; config.yaml says why).
    redis_namespace: str = ""

    @property
    def db_url_with_pool(self) -> str:
        if self.database_url.startswith(("postgres://", "asyncpg://")) and "maxsize" not in self.database_url:
            sep = "&" if "?" in self.database_url else "?"
            return f"{self.database_url}{sep}maxsize={self.db_pool_max}"
        return self.database_url


class Sources:
    """Where each value came from, by dotted key: a file path, an environment variable, the
    overrides of the caller, or the built-in default (for a key nobody set)."""

    def __init__(self) -> None:
        self._by_key: dict[str, str] = {}

    def record(self, key: str, value: Any, origin: str) -> None:
        for k in [k for k in self._by_key if k == key or k.startswith(key + ".")]:
            del self._by_key[k]  # a later source replaces what it covers
        self._by_key[key] = origin
        if isinstance(value, Mapping):
            for sub, v in value.items():
                self.record(f"{key}.{sub}", v, origin)

    def of(self, key: str) -> str:
        parts = key.split(".")
        while parts:
            origin = self._by_key.get(".".join(parts))
            if origin:
                return origin
            parts.pop()
        return "the built-in default"


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
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[path[-1]] = value


def _type_of(dotted: str) -> str | None:
    if dotted in TYPES:
        return TYPES[dotted]
    section, _, name = dotted.partition(".")
    if section == "market" and name in _market_fields():
        return TYPES["market.*"]
    return None


def _default_of(dotted: str) -> Any:
    node: Any = DEFAULTS
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _env_value(name: str, dotted: str, text: str) -> Any:
    """An environment variable's text: typed keys and strings as written, other keys as YAML."""
    if _type_of(dotted) is not None or dotted in SECRET_KEYS or isinstance(_default_of(dotted), str):
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{dotted} (from environment variable {name}): not readable as YAML ({exc.problem})") from None


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    env = os.environ if env is None else env
    path = Path(path or env.get("MARKET_CONFIG") or DEFAULT_CONFIG_PATH)
    sources = Sources()
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not readable as YAML ({exc})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: must hold a mapping of keys")
        for dotted, variable in SECRET_KEYS.items():
            section, _, name = dotted.rpartition(".")
            holder = (raw.get(section) if section else raw) or {}
            if isinstance(holder, Mapping) and holder.get(name):
                raise ConfigError(f"{path}: {dotted} must not be written in a file; set {variable} instead")
        for key, value in raw.items():
            sources.record(str(key), value, str(path))
    elif env.get("MARKET_CONFIG"):
        raise ConfigError(f"MARKET_CONFIG names {path}, which does not exist")
    tree = _merge(DEFAULTS, raw)
    for name, key_path in SHORT_ENV.items():
        if env.get(name) not in (None, ""):
            dotted = ".".join(key_path)
            value = _env_value(name, dotted, env[name])
            _set_path(tree, key_path, value)
            sources.record(dotted, value, f"environment variable {name}")
    for name, text in env.items():
        if name.startswith("MARKET__") and text != "":
            key_path = tuple(p.lower() for p in name[len("MARKET__"):].split("__"))
            dotted = ".".join(key_path)
            value = _env_value(name, dotted, text)
            _set_path(tree, key_path, value)
            sources.record(dotted, value, f"environment variable {name}")
    for key, value in (overrides or {}).items():
        sources.record(str(key), value, "the overrides given to load_config")
    tree = _merge(tree, overrides or {})
    return _build(tree, sources)


def _typed(tree: Mapping[str, Any], prefix: str, sources: Sources) -> dict[str, Any]:
    """A copy of `tree` with every typed key read by its parser (raises ConfigError)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        kind = _type_of(dotted)
        if kind is not None:
            try:
                out[key] = _PARSERS[kind](value, dotted, sources.of(dotted))
            except ValueProblem as exc:
                raise ConfigError(str(exc)) from None
        elif isinstance(value, Mapping):
            out[key] = _typed(value, dotted + ".", sources)
        else:
            out[key] = value
    return out


def _secret_list(value: Any, source: str) -> tuple[str, ...]:
    """MARKET_PREVIOUS_SECRET_KEYS: keys separated by commas or white space (or a YAML list)."""
    if value in (None, ""):
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).replace(",", " ").split()
    if not all(isinstance(i, str) for i in items):
        raise ConfigError(f"previous_secret_keys (from {source}): must be text keys separated by commas")
    return tuple(dict.fromkeys(i.strip() for i in items if i.strip()))


def _build(tree: dict[str, Any], sources: Sources | None = None) -> Config:
    sources = sources or Sources()
    unknown = set(tree) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
    for section in ("scheduler", "market", "wechat", "metrics", "reconciliation"):
        if not isinstance(tree.get(section) or {}, Mapping):
            raise ConfigError(f"{section} (from {sources.of(section)}): must be a section of keys")
    sched = tree["scheduler"]
    for section in ("scheduler", "metrics", "reconciliation"):
        unknown = set(tree[section] or {}) - set(DEFAULTS[section])
        if unknown:
            raise ConfigError(f"unknown {section} keys: {', '.join(sorted(unknown))}")
    typed = _typed(tree, "", sources)
    sched, metrics, recon = typed["scheduler"], typed["metrics"] or {}, typed["reconciliation"] or {}
    try:
        config = Config(
            production=typed["production"],
            host=str(typed["host"]),
            port=typed["port"],
            workers=typed["workers"],
            access_log=typed["access_log"],
            database_url=str(typed["database_url"]),
            db_pool_max=typed["db_pool_max"],
            redis_url=str(typed["redis_url"] or ""),
            secret_key=str(typed["secret_key"] or ""),
            previous_secret_keys=_secret_list(typed["previous_secret_keys"], sources.of("previous_secret_keys")),
            public_base_url=str(typed["public_base_url"] or ""),
            uploads_dir=str(typed["uploads_dir"]),
            scheduler=SchedulerConfig(**{k: sched[k] for k in DEFAULTS["scheduler"]}),
            market=dict(typed["market"] or {}),
            wechat=dict(typed["wechat"] or {}),
            log_format=str(typed["log_format"]).lower(),
            log_level=str(typed["log_level"]).upper(),
            metrics=MetricsConfig(token=str(metrics.get("token") or ""), scheduler_host=str(metrics["scheduler_host"]),
                                  scheduler_port=metrics["scheduler_port"]),
            reconciliation=ReconciliationConfig(**{k: recon[k] for k in DEFAULTS["reconciliation"]}),
            redis_namespace=str(typed["redis_namespace"] or "") or default_redis_namespace(str(typed["database_url"])),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad configuration value: {exc}") from exc
    validate(config)
    return config


def validate(config: Config) -> None:
    from models import settings as market_settings
    from server import keys

    sandbox = (config.wechat or {}).get("sandbox", True)
    if config.production or not sandbox:
        # The built-in development key is public: it may only sign sessions where all money is the
        # sandbox's play money. Real WeChat credentials need a real key, production flag or not.
        why = "it is required in production" if config.production else "it is required whenever the WeChat sandbox is off"
        if not config.secret_key:
            raise ConfigError(f"set MARKET_SECRET_KEY: {why}. Make one with `python -m server new-secret`")
        problem = keys.weakness(config.secret_key)
        if problem:
            raise ConfigError(f"MARKET_SECRET_KEY {problem} ({why}). Make a new one with `python -m server new-secret`")
        for i, old in enumerate(config.previous_secret_keys, 1):
            problem = keys.weakness(old)
            if problem:
                raise ConfigError(f"key {i} of MARKET_PREVIOUS_SECRET_KEYS {problem}: a previous key still verifies "
                                  "sessions, so it must be as strong as the current one; remove it")
    if len(config.previous_secret_keys) > keys.MAX_PREVIOUS_KEYS:
        raise ConfigError(f"MARKET_PREVIOUS_SECRET_KEYS holds {len(config.previous_secret_keys)} keys; at most "
                          f"{keys.MAX_PREVIOUS_KEYS} (remove the oldest once their sessions have expired)")
    if config.production:
        if config.database_url.startswith("sqlite"):
            raise ConfigError("production needs PostgreSQL: set DATABASE_URL")
        if sandbox:
            raise ConfigError("the WeChat sandbox can never be on in production: set wechat.sandbox to false")
    if config.log_format not in ("json", "text"):
        raise ConfigError("log_format must be json or text")
    if config.metrics.token and len(config.metrics.token) < 24:
        raise ConfigError("MARKET_METRICS_TOKEN must be at least 24 characters (or empty: /metrics off)")
    try:
        hour, minute = (int(x) for x in config.reconciliation.run_after.split(":"))
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError
    except ValueError:
        raise ConfigError("reconciliation.run_after must be HH:MM (Beijing time)") from None
    if config.workers < 1:
        raise ConfigError("workers must be at least 1")
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.:\-]{1,64}", config.redis_namespace):
        raise ConfigError("redis_namespace must be 1-64 letters, digits or _ . : - (or empty: derived from database_url)")
    if config.workers > 1 and not config.redis_url:
        raise ConfigError("several workers need Redis (REDIS_URL) for the push fan-out and shared rate limits")
    if config.scheduler.sweep_batch < 1 or config.scheduler.outbox_batch < 1:
        raise ConfigError("batch sizes must be at least 1")
    if not 1 <= config.scheduler.sweep_lanes <= 8:
        raise ConfigError("scheduler.sweep_lanes must be between 1 and 8")
    try:
        market_settings.validate(market_settings.from_dict(config.market))
    except Exception as exc:  # InvalidSettings carries the bad fields
        details = getattr(exc, "details", {})
        raise ConfigError(f"market settings in config.yaml are not valid: {details or exc}") from exc


def default_redis_namespace(database_url: str) -> str:
    """`market:<8 hex>` from what names the database: PostgreSQL's host, port and database name (not
    the user nor the password), or the SQLite file's absolute path."""
    import hashlib
    from urllib.parse import urlsplit

    if database_url.startswith("sqlite://"):
        path = database_url[len("sqlite://"):].split("?")[0]
        ident = "sqlite:" + (path if path == ":memory:" else str(Path(path).resolve()))
    else:
        u = urlsplit(database_url)
        ident = f"pg:{(u.hostname or '').lower()}:{u.port or 5432}:{u.path.lstrip('/')}"
    return "market:" + hashlib.sha256(ident.encode()).hexdigest()[:8]


def key_ring(config: Config):
    """The keys that sign sessions and tokens (`server/keys.py`). Outside production, with the
    sandbox on and no key set, a fixed development key is used so the default run needs no
    set-up; production and real WeChat refuse to start without a strong key (`validate`)."""
    from server import keys

    return keys.KeyRing(config.secret_key or keys.DEVELOPMENT_KEY, config.previous_secret_keys)
