"""The server's secret key: checked for strength, split into one key per purpose, and rotatable.

`MARKET_SECRET_KEY` is never used directly. For each purpose (`PURPOSES`) a separate 256-bit key
is derived from it with HKDF-SHA256 (RFC 5869, `info` = the purpose), so an admin cookie can never
pass for a Mini Program token or a CSRF token, whatever their payloads look like.

Every signed value names the key that signed it: `<kid>.<payload>.<mac>`, where `kid` is a short
public id of the secret (an HMAC of a fixed text under it: it tells keys apart and reveals nothing).
Rotation (docs/operations.md): the new key goes into MARKET_SECRET_KEY and the old one into
MARKET_PREVIOUS_SECRET_KEYS; new tokens are signed with the new key only, and tokens of the old
key still verify until it is removed from the list.

Strength (`weakness`): production (and real WeChat) refuses the public development key, a key
found anywhere in this repository's source or docs, a key under 32 characters, and a key that
zxcvbn (the password-strength estimator) would guess in fewer than 2^128 tries.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import math
import os
import secrets
from pathlib import Path
from typing import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# Used only outside production with the WeChat sandbox on (all money is play money there).
DEVELOPMENT_KEY = "development-only-secret-key-not-for-production-use"

PURPOSES = frozenset({
    "api.access",  # Mini Program access tokens (miniprogram_api/auth.py)
    "admin.session",  # admin panel session cookies (server/admin/session.py)
    "admin.csrf",  # admin panel CSRF tokens, bound to the session (server/admin/session.py)
    "image.link",  # signed links of uploaded images (miniprogram_api/common.py ImageLinks)
})

MIN_LENGTH = 32
MIN_BITS = 128
MAX_PREVIOUS_KEYS = 5
_ZXCVBN_MAX_CHARS = 100  # zxcvbn's matching grows with the length; a prefix is a lower bound anyway

ROOT = Path(__file__).resolve().parent.parent
# What a checkout publishes: source, docs and examples (not local .env files, data or virtualenvs).
_PUBLISHED_SUFFIXES = {".py", ".md", ".rst", ".txt", ".yaml", ".yml", ".toml", ".cfg", ".ini", ".json", ".js",
                       ".ts", ".html", ".wxml", ".wxss", ".sh", ".example", ".sample", ""}
_SKIP_DIRS = {".git", ".venv", "venv", "var", "node_modules", "__pycache__", ".pytest_cache", ".hypothesis",
              "test-artifacts", ".mypy_cache", ".ruff_cache"}
_MAX_SCANNED_BYTES = 2 * 1024 * 1024


def new_secret() -> str:
    """A fresh key: 48 random bytes, URL-safe base64 (64 characters, 384 bits)."""
    return secrets.token_urlsafe(48)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def kid_of(secret: str) -> str:
    """The public id of a key: 8 characters of an HMAC under it (not reversible to the key)."""
    return _b64(hmac.new(secret.encode(), b"market key id", hashlib.sha256).digest())[:8]


class KeyRing:
    """The current key (signs and verifies) and the previous ones (verify only)."""

    def __init__(self, current: str, previous: Iterable[str] = ()) -> None:
        if not current:
            raise ValueError("a key ring needs a current key")
        self.current_kid = kid_of(current)
        self._secrets: dict[str, str] = {self.current_kid: current}
        for old in previous:
            self._secrets.setdefault(kid_of(old), old)
        self._derived: dict[tuple[str, str], bytes] = {}

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._secrets)

    def key(self, purpose: str, kid: str | None = None) -> bytes:
        """The derived key of `purpose` under the key `kid` (default: the current one)."""
        if purpose not in PURPOSES:
            raise ValueError(f"unknown key purpose {purpose!r}")
        kid = kid or self.current_kid
        found = self._derived.get((purpose, kid))
        if found is None:
            secret = self._secrets[kid]
            found = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"market/{purpose}".encode()).derive(secret.encode())
            self._derived[(purpose, kid)] = found
        return found

    def _mac(self, purpose: str, kid: str, message: str) -> str:
        return _b64(hmac.new(self.key(purpose, kid), message.encode(), hashlib.sha256).digest())

    # --- signed values: "<kid>.<payload>.<mac>" ---------------------------------------------------
    def sign(self, purpose: str, payload: str) -> str:
        """`payload` must not contain '.' (base64url text never does)."""
        kid = self.current_kid
        return f"{kid}.{payload}.{self._mac(purpose, kid, f'{kid}.{payload}')}"

    def verify(self, purpose: str, token: str) -> str | None:
        """The payload if a key of this ring signed `token` for `purpose`, else None."""
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 3 or parts[0] not in self._secrets:
            return None
        kid, payload, mac = parts
        if not hmac.compare_digest(mac.encode(), self._mac(purpose, kid, f"{kid}.{payload}").encode()):
            return None
        return payload

    # --- a MAC of a value the server keeps (the CSRF token of a session): "<kid>.<mac>" ------------
    def tag(self, purpose: str, message: str) -> str:
        kid = self.current_kid
        return f"{kid}.{self._mac(purpose, kid, message)}"

    def check_tag(self, purpose: str, message: str, tag: str) -> bool:
        kid, _, mac = tag.partition(".") if isinstance(tag, str) else ("", "", "")
        if kid not in self._secrets or not mac:
            return False
        return hmac.compare_digest(mac.encode(), self._mac(purpose, kid, message).encode())


# --- strength ----------------------------------------------------------------------------------------
def weakness(key: str) -> str | None:
    """Why `key` must not sign anything real, or None when it is strong. Never quotes the key."""
    if key == DEVELOPMENT_KEY:
        return "is the public development key"
    where = published_in(key)
    if where:
        return f"is published in this repository ({where}): anyone can read it"
    if len(key) < MIN_LENGTH:
        return f"is too short ({len(key)} characters; at least {MIN_LENGTH})"
    bits = guess_bits(key)
    if bits < MIN_BITS:
        return f"is guessable (zxcvbn estimates about {bits:.0f} bits; at least {MIN_BITS} needed)"
    return None


def guess_bits(key: str) -> float:
    """log2 of the guesses zxcvbn estimates an attacker needs (dictionaries, patterns, brute force)."""
    from zxcvbn import zxcvbn

    return float(zxcvbn(key[:_ZXCVBN_MAX_CHARS])["guesses_log10"]) * math.log2(10)


def published_in(key: str, root: Path = ROOT) -> str | None:
    """The first file of the source tree (code, docs, examples) that contains `key`, or None.

    A key written in the repository or its docs is public however random it looks. Checked at
    start in production only; keys shorter than 16 characters are refused for their length anyway.
    """
    if len(key) < 16:
        return None
    needle = key.encode()
    for path in _published_files(str(root)):
        try:
            with open(path, "rb") as fh:
                if needle in fh.read(_MAX_SCANNED_BYTES):
                    return os.path.relpath(path, root)
        except OSError:
            continue
    return None


@functools.lru_cache(maxsize=4)
def _published_files(root: str) -> tuple[str, ...]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in files:
            if name.startswith(".env") or name.endswith(".env"):
                continue  # a local environment file holds the real key: it is not published
            if Path(name).suffix.lower() in _PUBLISHED_SUFFIXES:
                found.append(os.path.join(folder, name))
    return tuple(found)
