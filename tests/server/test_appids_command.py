"""`python -m server appids`: the two Mini Programs' AppIDs as configured, for the apps' `npm run
configure` (miniprogram/scripts/configure.js writes them into each project.config.json)."""

from __future__ import annotations

import json

from server.__main__ import main


def appids(capsys) -> dict:
    assert main(["appids"]) == 0
    return json.loads(capsys.readouterr().out)


def test_not_configured_is_null_for_both(monkeypatch, tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("wechat:\n  sandbox: true\n")
    monkeypatch.setenv("MARKET_CONFIG", str(tmp_path / "config.yaml"))
    for end in ("WORKER", "PUBLISHER"):
        monkeypatch.delenv(f"MARKET__WECHAT__{end}__APPID", raising=False)
    assert appids(capsys) == {"worker": None, "publisher": None}


def test_the_file_then_the_environment(monkeypatch, tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("wechat:\n  worker:\n    appid: wx0123456789abcdef\n  publisher:\n    appid: wxfedcba9876543210\n")
    monkeypatch.setenv("MARKET_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.delenv("MARKET__WECHAT__WORKER__APPID", raising=False)
    monkeypatch.setenv("MARKET__WECHAT__PUBLISHER__APPID", "wx00000000000000aa")
    assert appids(capsys) == {"worker": "wx0123456789abcdef", "publisher": "wx00000000000000aa"}
