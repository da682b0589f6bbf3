"""Configuration: defaults, environment overrides, and the settings that must refuse to start."""

from __future__ import annotations

import pytest

from server.config import ConfigError, load_config
from server.keys import new_secret

KEY = new_secret()  # strong, and written nowhere (a key in a file would be a published one)


def test_the_defaults_run_on_sqlite_with_the_sandbox_and_the_embedded_scheduler():
    c = load_config(env={})
    assert c.database_url.startswith("sqlite://") and c.wechat["sandbox"] is True and c.scheduler.embedded
    assert not c.production and c.redis_url == ""


def test_environment_variables_override_the_file():
    c = load_config(env={"DATABASE_URL": "postgres://u@h/db", "PORT": "9000", "MARKET__SCHEDULER__SWEEP_BATCH": "7",
                         "MARKET__MARKET__COUNTDOWN_S": "240"})
    assert (c.database_url, c.port, c.scheduler.sweep_batch, c.market["countdown_s"]) == ("postgres://u@h/db", 9000, 7, 240)


def test_production_with_the_sandbox_on_refuses_to_start():
    with pytest.raises(ConfigError, match="sandbox"):
        load_config(env={"MARKET_PRODUCTION": "true", "MARKET_SECRET_KEY": KEY, "DATABASE_URL": "postgres://u@h/db"})


def test_production_needs_postgres_and_a_secret_key():
    env = {"MARKET_PRODUCTION": "true", "MARKET__WECHAT__SANDBOX": "false"}
    with pytest.raises(ConfigError, match="MARKET_SECRET_KEY"):
        load_config(env=env | {"DATABASE_URL": "postgres://u@h/db"})
    with pytest.raises(ConfigError, match="PostgreSQL"):
        load_config(env=env | {"MARKET_SECRET_KEY": KEY})


def test_real_wechat_without_the_production_flag_still_needs_a_secret_key():
    with pytest.raises(ConfigError, match="MARKET_SECRET_KEY"):
        load_config(env={"MARKET__WECHAT__SANDBOX": "false"})


def test_a_secret_key_written_in_the_file_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"secret_key: {KEY}\n")
    with pytest.raises(ConfigError, match="MARKET_SECRET_KEY"):
        load_config(path, env={})


def test_several_workers_need_redis_and_bad_market_settings_are_refused():
    with pytest.raises(ConfigError, match="Redis"):
        load_config(env={"MARKET__WORKERS": "2"})
    with pytest.raises(ConfigError, match="countdown_s"):
        load_config(env={"MARKET__MARKET__COUNTDOWN_S": "601"})
    with pytest.raises(ConfigError, match="unknown"):
        load_config(env={"MARKET__NOPE": "1"})
