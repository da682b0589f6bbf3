"""One reading of booleans and numbers for the whole configuration (issue 17, item 3).

`server/config.py` and `wechat/config.py` read the same values through one parser
(`server/confvalues.py`): a value that is not clearly true or false, or not a number, is refused,
and the error names the key and where the value came from (the environment variable, or the
config.yaml file), without a traceback from `python -m server`.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from server.config import ROOT, ConfigError, load_config
from wechat.config import WeChatConfig, WeChatConfigError

# Every boolean key of the configuration, as a config.yaml path and its MARKET__ variable.
BOOL_KEYS = ("production", "access_log", "scheduler.embedded", "wechat.sandbox", "wechat.sandbox_options.single_use_codes")
INT_KEYS = ("port", "workers", "db_pool_max", "scheduler.sweep_batch", "scheduler.outbox_batch",
            "scheduler.outbox_max_attempts", "market.countdown_s")
FLOAT_KEYS = ("scheduler.sweep_interval_s", "scheduler.outbox_retention_s", "wechat.http_timeout_s", "wechat.pay.timeout_s")


def yaml_file(tmp_path, dotted: str, raw: str):
    """A config file setting one key (given as YAML text) and nothing else."""
    parts = dotted.split(".")
    lines = [f"{'  ' * i}{p}:" for i, p in enumerate(parts[:-1])]
    lines.append(f"{'  ' * (len(parts) - 1)}{parts[-1]}: {raw}")
    path = tmp_path / "c.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def env_name(dotted: str) -> str:
    return "MARKET__" + "__".join(p.upper() for p in dotted.split("."))


@pytest.mark.parametrize("raw", ['"false"', "'False'", '"no"', '"off"', '"0"', "false", "no", "0"])
def test_a_quoted_false_turns_the_sandbox_off_for_the_server_and_for_wechat_alike(tmp_path, raw):
    """The audit's case: `sandbox: "false"` was on for server/config.py and off for wechat/config.py,
    so real WeChat ran signed with the development key. Now both read it as off, and the server
    asks for a real secret key."""
    path = yaml_file(tmp_path, "wechat.sandbox", raw)
    with pytest.raises(ConfigError, match="MARKET_SECRET_KEY"):
        load_config(path, env={})
    assert WeChatConfig.from_dict({"sandbox": raw.strip("'\"")}, env={}).sandbox is False


@pytest.mark.parametrize("raw,value", [('"true"', True), ('"Yes"', True), ('"on"', True), ("1", True), ("true", True),
                                       ('"false"', False), ("off", False), ("0", False)])
def test_clear_spellings_of_true_and_false_are_read_the_same_in_every_boolean_key(tmp_path, raw, value):
    c = load_config(yaml_file(tmp_path, "access_log", raw), env={})
    assert c.access_log is value
    c = load_config(yaml_file(tmp_path, "scheduler.embedded", raw), env={})
    assert c.scheduler.embedded is value
    c = load_config(env={"MARKET__ACCESS_LOG": raw.strip("'\"")})
    assert c.access_log is value


@pytest.mark.parametrize("dotted", BOOL_KEYS)
@pytest.mark.parametrize("raw", ['"maybe"', '""', "2", "null", '"ture"', "[true]"])
def test_an_unclear_boolean_in_the_file_is_refused_naming_the_key_and_the_file(tmp_path, dotted, raw):
    path = yaml_file(tmp_path, dotted, raw)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    text = str(err.value)
    assert dotted in text and str(path) in text and "true or false" in text, text


@pytest.mark.parametrize("dotted", BOOL_KEYS)
@pytest.mark.parametrize("raw", ["maybe", "2", "ture", "yes please"])
def test_an_unclear_boolean_in_the_environment_is_refused_naming_the_variable(dotted, raw):
    with pytest.raises(ConfigError) as err:
        load_config(env={env_name(dotted): raw})
    text = str(err.value)
    assert dotted in text and f"environment variable {env_name(dotted)}" in text and "true or false" in text, text


def test_the_short_production_variable_names_itself_when_unclear():
    with pytest.raises(ConfigError) as err:
        load_config(env={"MARKET_PRODUCTION": "treu"})
    assert "environment variable MARKET_PRODUCTION" in str(err.value) and "production" in str(err.value)


@pytest.mark.parametrize("dotted", INT_KEYS)
@pytest.mark.parametrize("raw", ['"8a"', "1.5", "true", '""', "[1]", "null"])
def test_a_whole_number_key_refuses_anything_else_naming_key_and_file(tmp_path, dotted, raw):
    path = yaml_file(tmp_path, dotted, raw)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    text = str(err.value)
    assert dotted in text and str(path) in text and "whole number" in text, text


@pytest.mark.parametrize("dotted", INT_KEYS)
def test_a_whole_number_from_the_environment_is_read_and_a_bad_one_names_the_variable(dotted):
    load_config(env={env_name(dotted): "7" if not dotted.startswith("market.") else "240", "REDIS_URL": "redis://x"})
    with pytest.raises(ConfigError) as err:
        load_config(env={env_name(dotted): "seven"})
    assert f"environment variable {env_name(dotted)}" in str(err.value) and "whole number" in str(err.value)


def test_the_short_port_variable_names_itself():
    assert load_config(env={"PORT": "9001"}).port == 9001
    with pytest.raises(ConfigError, match="environment variable PORT"):
        load_config(env={"PORT": "80a"})


@pytest.mark.parametrize("dotted", FLOAT_KEYS)
@pytest.mark.parametrize("raw", ['"fast"', "true", '"nan"', '"inf"', "[1]"])
def test_a_number_key_refuses_anything_else_naming_key_and_file(tmp_path, dotted, raw):
    path = yaml_file(tmp_path, dotted, raw)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    text = str(err.value)
    assert dotted in text and str(path) in text and "number" in text, text


def test_numbers_written_as_text_are_read_as_numbers(tmp_path):
    c = load_config(env={"MARKET__SCHEDULER__SWEEP_INTERVAL_S": "0.5", "MARKET__WECHAT__HTTP_TIMEOUT_S": "3"})
    assert c.scheduler.sweep_interval_s == 0.5 and c.wechat["http_timeout_s"] == 3.0
    c = load_config(yaml_file(tmp_path, "port", '"8123"'), env={})
    assert c.port == 8123


def test_a_list_of_numbers_is_read_item_by_item_naming_the_bad_item(tmp_path):
    path = yaml_file(tmp_path, "wechat.sandbox_options.notify_retry_schedule_s", "[0, 1, soon]")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "wechat.sandbox_options.notify_retry_schedule_s[2]" in str(err.value) and str(path) in str(err.value)


def test_wechat_config_read_on_its_own_uses_the_same_parser():
    assert WeChatConfig.from_dict({"sandbox": "off"}, env={}).sandbox is False
    assert WeChatConfig.from_dict({"sandbox": "on"}, env={}).sandbox is True
    with pytest.raises(WeChatConfigError, match=r"wechat\.sandbox.*true or false"):
        WeChatConfig.from_dict({"sandbox": "maybe"}, env={})
    with pytest.raises(WeChatConfigError, match=r"wechat\.sandbox_options\.single_use_codes"):
        WeChatConfig.from_dict({"sandbox_options": {"single_use_codes": "sometimes"}}, env={})
    with pytest.raises(WeChatConfigError, match=r"wechat\.http_timeout_s.*number"):
        WeChatConfig.from_dict({"http_timeout_s": "fast"}, env={})


def test_a_secret_value_is_never_repeated_in_a_config_error():
    """Errors quote the bad value so people can find it, except for secrets."""
    with pytest.raises(ConfigError) as err:
        load_config(env={"MARKET_PRODUCTION": "true", "MARKET__WECHAT__SANDBOX": "false",
                         "DATABASE_URL": "postgres://u@h/db", "MARKET_SECRET_KEY": "short-but-secret-value"})
    assert "short-but-secret-value" not in str(err.value)


def _run_server(env_extra: dict[str, str], tmp_path, module: str = "server") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MARKET", "DATABASE_URL", "REDIS_URL", "PORT"))}
    env.update({"DATABASE_URL": f"sqlite://{tmp_path}/x.sqlite3", **env_extra})
    return subprocess.run([sys.executable, "-m", module], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("env_extra,names", [
    ({"MARKET_PRODUCTION": "maybe"}, ("production", "MARKET_PRODUCTION")),
    ({"MARKET__WECHAT__SANDBOX": "perhaps"}, ("wechat.sandbox", "MARKET__WECHAT__SANDBOX")),
    ({"PORT": "eighty"}, ("port", "PORT")),
])
def test_python_m_server_prints_a_config_error_without_a_traceback(tmp_path, env_extra, names):
    done = _run_server(env_extra, tmp_path)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr and done.stderr.startswith("configuration error:"), done.stderr
    assert all(n in done.stderr for n in names), done.stderr


def test_a_wechat_configuration_problem_at_start_is_printed_without_a_traceback(tmp_path):
    """Real WeChat without credentials: found when the app is built, still one clear message."""
    from server.keys import new_secret

    done = _run_server({"MARKET__WECHAT__SANDBOX": "false", "MARKET_SECRET_KEY": new_secret()}, tmp_path)
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr and "WECHAT_WORKER_SECRET" in done.stderr, done.stderr


@pytest.mark.parametrize("env_extra,needle", [
    ({"MARKET__SCHEDULER__EMBEDDED": "sometimes"}, "MARKET__SCHEDULER__EMBEDDED"),
    ({"MARKET__WECHAT__SANDBOX": "false", "MARKET_SECRET_KEY": "placeholder"}, "MARKET_SECRET_KEY"),
])
def test_python_m_scheduler_prints_a_config_error_without_a_traceback(tmp_path, env_extra, needle):
    done = _run_server(env_extra, tmp_path, "scheduler")
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr and "configuration error:" in done.stderr and needle in done.stderr, done.stderr
