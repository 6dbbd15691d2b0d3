"""The secret behind person_key: HMAC-SHA256(secret, person_id), so an analyst's key never reverses.

The secret comes from ONENET_PSEUDONYM_KEY. Where it is unset, a demo installation (the default,
ONENET_DEPLOYMENT unset or `demo`) makes a random one once and keeps it in
<home>/secrets/pseudonym.key (0600), so no two installations share a key and none is public; a
production deployment (ONENET_DEPLOYMENT=production) refuses to run without it. A placeholder
(the `.env.example` value, anything shorter than 32 characters) is refused everywhere.

Rotating: set a new key; the next merge rebuilds core and marts in full (the key is part of the
layers' fingerprint), and the next publish hands out the new keys. Old keys then link to nothing.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import duckdb

from onenet import settings

ENV = "ONENET_PSEUDONYM_KEY"
MIN_LENGTH = 32
PLACEHOLDERS = ("change-me", "changeme", "onenet-dev-pseudonym-key", "your-")  # .env.example's and old defaults
_BLOCK = 64  # SHA-256's block size: the HMAC key is padded (or first hashed) to it


class PseudonymKeyError(RuntimeError):
    """No usable pseudonym key; the message says how to set one."""


def _key_file() -> Path:
    return settings.home() / "secrets" / "pseudonym.key"


def pseudonym_key() -> bytes:
    """The HMAC secret (see the module docstring for where it comes from)."""
    value = os.environ.get(ENV, "")
    if value:
        if len(value) < MIN_LENGTH or value.lower().startswith(PLACEHOLDERS):
            raise PseudonymKeyError(
                f"{ENV} is a placeholder or shorter than {MIN_LENGTH} characters; set a random one, e.g. "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        return value.encode()
    if settings.deployment() == "production":
        raise PseudonymKeyError(
            f"{ENV} is not set: a production deployment needs its own secret for person_key "
            "(see .env.example; `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
    path = _key_file()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path.read_text().strip().encode()


def fingerprint(key: bytes) -> str:
    """A short public fingerprint of the key (to notice a rotation), which reveals nothing of it."""
    return hashlib.sha256(b"onenet-pseudonym-fingerprint:" + key).hexdigest()[:16]


def set_hmac_variables(con: duckdb.DuckDBPyConnection, key: bytes | None = None) -> None:
    """Give SQL what HMAC needs: `sha256(getvariable('onenet_hmac_opad') ||
    unhex(sha256(getvariable('onenet_hmac_ipad') || encode(message))))` is HMAC-SHA256(key, message)
    (RFC 2104), computed set-based inside DuckDB."""
    key = pseudonym_key() if key is None else key
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    con.execute("set variable onenet_hmac_ipad = ?", [bytes(b ^ 0x36 for b in key)])
    con.execute("set variable onenet_hmac_opad = ?", [bytes(b ^ 0x5C for b in key)])
