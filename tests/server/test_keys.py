"""The secret key (issue 17, items 1 and 2): production refuses weak and published keys; each
purpose signs with its own derived key, every token names its key, and keys rotate."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from server import keys
from server.config import ROOT, ConfigError, load_config
from server.keys import KeyRing, new_secret

# A key that looks strong but is written here, in the repository: it is published.
PUBLISHED_EXAMPLE = "Qm7vT2xLp9RsKd4WcYh8NbZf3JgUe6AoXi1Ct5SwVq0MnEr"

PRODUCTION = {"MARKET_PRODUCTION": "true", "MARKET__WECHAT__SANDBOX": "false", "DATABASE_URL": "postgres://u@h/db"}
REAL_WECHAT = {"MARKET__WECHAT__SANDBOX": "false"}  # real money without the production flag

WEAK = {
    "the development key": keys.DEVELOPMENT_KEY,
    "32 times a": "a" * 32,
    "a key published in this repository": PUBLISHED_EXAMPLE,
    "too short": "Xk29vLq7",
    "a sentence": "my secret key for the marketplace 2024",
    "a repeated word": "correcthorsebatterystaple" * 2,
    "a sequence": "abcdefghijklmnopqrstuvwxyz0123456789",
    "a keyboard walk": "qwertyuiopasdfghjklzxcvbnm1234567890",
}


@pytest.mark.parametrize("mode", [PRODUCTION, REAL_WECHAT], ids=["production", "real-wechat"])
@pytest.mark.parametrize("name", WEAK)
def test_a_weak_or_public_key_is_refused_where_real_money_moves(mode, name):
    key = WEAK[name]
    with pytest.raises(ConfigError) as err:
        load_config(env=mode | {"MARKET_SECRET_KEY": key})
    text = str(err.value)
    assert "MARKET_SECRET_KEY" in text and "new-secret" in text, text
    assert key not in text  # a key is never repeated, not even a bad one


def test_the_reason_says_what_is_wrong():
    assert "development key" in keys.weakness(keys.DEVELOPMENT_KEY)
    assert "published in this repository (tests/server/test_keys.py)" in keys.weakness(PUBLISHED_EXAMPLE)
    assert "too short" in keys.weakness("Xk29vLq7")
    assert "guessable" in keys.weakness("a" * 32)


def test_every_key_written_in_the_docs_and_examples_is_refused():
    """Wherever the repository shows a MARKET_SECRET_KEY value (README, docs, config.yaml, scripts),
    that value cannot start production: whatever was copied from there is refused."""
    assignment = re.compile(r"MARKET_(?:PREVIOUS_)?SECRET_KEYS?\s*[=:]\s*['\"]?([A-Za-z0-9_\-+/=.]{8,})")
    found = []
    for path in keys._published_files(str(ROOT)):
        if os.sep + "tests" + os.sep in path:
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            for value in assignment.findall(fh.read()):
                found.append((os.path.relpath(path, ROOT), value))
    for where, value in found:
        if value.startswith("$"):
            continue  # a shell variable, not a key
        assert keys.weakness(value), f"{where} shows a usable key: {value[:6]}…"


def test_a_fresh_key_is_accepted_and_never_the_same_twice():
    a, b = new_secret(), new_secret()
    assert a != b and len(a) >= 64
    assert keys.weakness(a) is None
    c = load_config(env=PRODUCTION | {"MARKET_SECRET_KEY": a})
    assert c.secret_key == a and a not in repr(c)  # never in a log line


def test_python_m_server_new_secret_prints_a_key_production_accepts():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKET")} | {"MARKET_PRODUCTION": "not-even-valid"}
    done = subprocess.run([sys.executable, "-m", "server", "new-secret"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{64}", key)
    load_config(env=PRODUCTION | {"MARKET_SECRET_KEY": key})


def test_the_readme_and_the_operations_guide_say_how_to_make_a_key_and_rotate_it():
    readme = (ROOT / "README.md").read_text()
    ops = (ROOT / "docs" / "operations.md").read_text()
    assert "python -m server new-secret" in readme and "python -m server new-secret" in ops
    assert "MARKET_PREVIOUS_SECRET_KEYS" in ops and "rotat" in ops.lower()


@pytest.mark.parametrize("mode", [PRODUCTION, REAL_WECHAT], ids=["production", "real-wechat"])
def test_previous_keys_must_be_strong_too(mode):
    good = new_secret()
    load_config(env=mode | {"MARKET_SECRET_KEY": good, "MARKET_PREVIOUS_SECRET_KEYS": f"{new_secret()}, {new_secret()}"})
    with pytest.raises(ConfigError, match="MARKET_PREVIOUS_SECRET_KEYS") as err:
        load_config(env=mode | {"MARKET_SECRET_KEY": good, "MARKET_PREVIOUS_SECRET_KEYS": f"{new_secret()},{keys.DEVELOPMENT_KEY}"})
    assert keys.DEVELOPMENT_KEY not in str(err.value)


def test_secret_keys_are_refused_in_a_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("previous_secret_keys: [abc]\n")
    with pytest.raises(ConfigError, match="MARKET_PREVIOUS_SECRET_KEYS"):
        load_config(path, env={})


def test_the_default_run_signs_with_the_development_key_only_in_the_sandbox():
    c = load_config(env={})
    assert not c.production and c.wechat["sandbox"] is True and c.secret_key == ""
    from server.config import key_ring

    assert key_ring(c).current_kid == keys.kid_of(keys.DEVELOPMENT_KEY)


# --- item 2: one key per purpose, key ids, rotation ----------------------------------------------
def test_each_purpose_has_its_own_key_so_a_token_of_one_never_passes_for_another():
    ring = KeyRing(new_secret())
    derived = {p: ring.key(p) for p in keys.PURPOSES}
    assert len(set(derived.values())) == len(keys.PURPOSES) and all(len(k) == 32 for k in derived.values())
    token = ring.sign("api.access", "cGF5bG9hZA")
    assert ring.verify("api.access", token) == "cGF5bG9hZA"
    for other in keys.PURPOSES - {"api.access"}:
        assert ring.verify(other, token) is None
    with pytest.raises(ValueError):
        ring.sign("not-a-purpose", "x")


def test_a_signed_value_names_its_key_and_tampering_is_refused():
    ring = KeyRing(new_secret())
    token = ring.sign("admin.session", "cGF5bG9hZA")
    kid, payload, mac = token.split(".")
    assert kid == ring.current_kid and len(kid) == 8
    assert ring.verify("admin.session", f"{kid}.cGF5bG9hZB.{mac}") is None
    assert ring.verify("admin.session", f"{kid}.{payload}.{mac[:-1]}{'B' if mac[-1] == 'A' else 'A'}") is None
    assert ring.verify("admin.session", f"AAAAAAAA.{payload}.{mac}") is None
    assert ring.verify("admin.session", f"{token}.x") is None
    assert ring.verify("admin.session", None) is None


def test_rotation_signs_with_the_new_key_and_verifies_the_old_until_it_is_removed():
    old, new = new_secret(), new_secret()
    before = KeyRing(old)
    token, tag = before.sign("api.access", "cA"), before.tag("admin.csrf", "sid-1")
    during = KeyRing(new, [old])
    assert during.verify("api.access", token) == "cA" and during.check_tag("admin.csrf", "sid-1", tag)
    fresh = during.sign("api.access", "cA")
    assert fresh.split(".")[0] == keys.kid_of(new) != token.split(".")[0]
    assert before.verify("api.access", fresh) is None  # the old server cannot read the new key's tokens
    after = KeyRing(new)
    assert after.verify("api.access", token) is None and not after.check_tag("admin.csrf", "sid-1", tag)
    assert after.verify("api.access", fresh) == "cA"


def test_every_hmac_in_the_code_goes_through_the_key_ring():
    """No module signs with the raw secret: `hmac.new` appears only in server/keys.py."""
    offenders = []
    for folder in ("server", "miniprogram_api", "models", "wechat", "scheduler"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "keys.py" and path.parent.name == "server":
                continue
            if "hmac.new(" in path.read_text():
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
