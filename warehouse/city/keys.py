"""The city-wide linking key: HMAC-SHA256(ONENET_CITY_KEY, value), shared by a city's districts.

Districts hand the city keyed hashes of ID numbers, names, birth dates and phones, never the
values: the same person gets the same key in every district, so the city can link them, and
without the key nobody can test a guessed ID against a published hash. The key is the city's
(one secret for all its districts), apart from each district's own pseudonym key
(warehouse/pseudonym.py), so a district analyst's person_key never links to a city key.
A district that belongs to no city leaves ONENET_CITY_KEY unset and publishes nothing for a city.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import duckdb

ENV = "ONENET_CITY_KEY"
MIN_LENGTH = 32
_BLOCK = 64
# The macro the city audience's SQL uses; pads in their own variables, so the district's pseudonym
# pads on the same connection stay as they were.
MACRO = """
create or replace temp macro onenet_city_key(v) as
    case when v is null then null else
        sha256(getvariable('onenet_city_opad') || unhex(sha256(getvariable('onenet_city_ipad') || encode(v))))
    end
"""


class CityKeyError(RuntimeError):
    """The city key is set but unusable; the message says how to set one."""


def city_key() -> bytes | None:
    """The city's HMAC key, or None when this district publishes nothing for a city."""
    value = os.environ.get(ENV, "")
    if not value:
        return None
    if len(value) < MIN_LENGTH or value.lower().startswith(("change-me", "changeme", "your-")):
        raise CityKeyError(f"{ENV} is a placeholder or shorter than {MIN_LENGTH} characters; the city's data "
                           "office issues one random key to all its districts")
    return value.encode()


def prepare(con: duckdb.DuckDBPyConnection, key: bytes) -> None:
    """Give SQL `onenet_city_key(v)` = HMAC-SHA256(key, v) (RFC 2104), computed inside DuckDB."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    con.execute("set variable onenet_city_ipad = ?", [bytes(b ^ 0x36 for b in key)])
    con.execute("set variable onenet_city_opad = ?", [bytes(b ^ 0x5C for b in key)])
    con.execute(MACRO)


def city_hmac(key: bytes, value: str) -> str:
    """The same keyed hash in Python (tests, and to look one person up by hand)."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
