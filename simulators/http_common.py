"""Shared plumbing of the HTTP silo simulators: auth, rate limit, faults, as-of tables, cursors, serving."""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import json
import logging
import math
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta, timezone
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simulators import clock
from simulators.district import surge

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
BEIJING_OFFSET = timezone(timedelta(hours=8))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A null event timestamp means the event never happens: as "infinitely late" it is simply never <= now.
NEVER = int(np.iinfo(np.int64).max)
MAX_BODY = 1 << 20
MAX_PAGE = 1000


# --- time -------------------------------------------------------------------------------------


def to_us(moment: datetime) -> int:
    """Epoch microseconds of an aware datetime."""
    return (moment - EPOCH) // timedelta(microseconds=1)


def iso_from_us(us: int) -> str:
    """ISO-8601 text in Beijing time (+08:00) of an epoch-microsecond instant."""
    return (EPOCH + timedelta(microseconds=int(us))).astimezone(BEIJING_OFFSET).isoformat()


def iso_list(stamps: np.ndarray, hidden: np.ndarray) -> list[str | None]:
    """iso_from_us over an array at numpy speed; None where `hidden`."""
    local = (np.where(hidden, 0, stamps) + 8 * 3600 * 1_000_000).astype("datetime64[us]")
    texts = np.datetime_as_string(local, unit="s")
    fraction = local.astype(np.int64) % 1_000_000 != 0
    if fraction.any():  # like datetime.isoformat: microseconds only when there are some
        texts = np.where(fraction, np.datetime_as_string(local, unit="us"), texts)
    return [
        None if h else t + "+08:00" for t, h in zip(texts.tolist(), hidden.tolist(), strict=True)
    ]


def parse_instant(text: str) -> int:
    """Epoch microseconds of ISO-8601 text; a time without an offset is read as Beijing time."""
    candidate = text.strip()
    try:
        moment = datetime.fromisoformat(candidate)
    except ValueError:
        # An unescaped '+' in a query string arrives as a space ("...T09:15:00 08:00").
        head, sep, tail = candidate.rpartition(" ")
        if not sep:
            raise
        moment = datetime.fromisoformat(f"{head}+{tail}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=BEIJING_OFFSET)
    return to_us(moment)


def _stat_signature(path: Path) -> tuple[int, int, int] | None:
    # mtime alone can repeat within a coarse tick; a write-then-rename also changes the inode.
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_ino, st.st_size)


# --- requests, responses, errors --------------------------------------------------------------


class ApiError(Exception):
    """An error answered as JSON {"error": code, "message": text} with an HTTP status."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request as the services see it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    """An HTTP response whose body is already encoded."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response (UTF-8, Chinese left readable)."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(status, body, dict(headers or {}))


def error_response(err: ApiError) -> Response:
    """The JSON response of an ApiError."""
    return json_response(err.status, {"error": err.code, "message": err.message}, err.headers)


def bad_request(message: str) -> ApiError:
    """A 400 for a bad query parameter."""
    return ApiError(400, "bad_request", message)


class Query:
    """Strict access to query parameters: unknown or repeated parameters are a 400."""

    def __init__(self, query: dict[str, list[str]], allowed: set[str]) -> None:
        unknown = sorted(set(query) - allowed)
        if unknown:
            raise bad_request(
                f"unknown parameter(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )
        for name, values in query.items():
            if len(values) > 1:
                raise bad_request(f"parameter {name} given more than once")
        self._query = query

    def text(self, name: str) -> str | None:
        """The parameter's value, or None when absent."""
        values = self._query.get(name)
        return values[0] if values else None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """An integer parameter in [low, high]."""
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise bad_request(
                f"{name} must be an integer from {low} to {high}, got {raw!r}"
            ) from None
        if not low <= value <= high:
            raise bad_request(f"{name} must be from {low} to {high}, got {value}")
        return value

    def instant(self, name: str) -> int | None:
        """An ISO-8601 instant parameter as epoch microseconds."""
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return parse_instant(raw)
        except ValueError:
            raise bad_request(
                f"{name} must be an ISO-8601 date-time such as 2026-11-03T09:15:00+08:00, got {raw!r}"
            ) from None


# --- auth and rate limit ----------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """Accepted secrets and where a client presents them (a header, optionally with a scheme)."""

    header: str
    secrets: tuple[str, ...]
    scheme: str | None = None

    def check(self, headers: Message) -> str:
        """The presented secret when it is accepted; otherwise raise a 401."""
        raw = headers.get(self.header)
        presented: str | None = None
        if raw is not None:
            raw = raw.strip()
            if self.scheme is None:
                presented = raw
            else:
                scheme, _, value = raw.partition(" ")
                if scheme.lower() == self.scheme.lower():
                    presented = value.strip()
        # compare_digest on every secret so timing does not tell which one nearly matched.
        matches = [
            hmac.compare_digest(presented.encode(), s.encode()) for s in self.secrets if presented
        ]
        if presented is None or not any(matches):
            how = (
                f"{self.header}: {self.scheme} <token>" if self.scheme else f"{self.header}: <key>"
            )
            challenge = {"WWW-Authenticate": self.scheme} if self.scheme else {}
            what = "missing" if presented is None else "wrong"
            raise ApiError(401, "unauthorized", f"{what} credential; send {how}", challenge)
        return presented


class RateLimiter:
    """Per-credential token buckets: `rate` requests per second, bursts up to max(1, rate)."""

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self.capacity = max(1.0, self.rate)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, who: str, divide: float = 1.0) -> None:
        """Take one token for `who`, or raise a 429 with an integer Retry-After (>= 1 s).

        `divide` > 1 refills the bucket that many times slower (a silo under a surge's load)."""
        if self.rate <= 0:
            return
        rate = self.rate / max(1.0, divide)
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.get(who, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - stamp) * rate)
            if tokens >= 1.0:
                self._buckets[who] = (tokens - 1.0, now)
                return
            self._buckets[who] = (tokens, now)
        wait = max(1, math.ceil((1.0 - tokens) / rate))
        raise ApiError(
            429,
            "rate_limited",
            f"rate limit of {rate:g} requests per second exceeded; retry after {wait} s",
            {"Retry-After": str(wait)},
        )


# --- fault injection --------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultConfig:
    """Switchable faults of data requests; all off by default."""

    error_rate: float = 0.0  # probability of a 500/502/503
    error_burst: int = 0  # the next N data requests answer 503
    slow_ms: int = 0  # sleep before every data answer
    truncate_rate: float = 0.0  # probability of a body cut mid-JSON
    duplicate_page_rate: float = 0.0  # probability of answering the previous page again

    @classmethod
    def from_json(cls, obj: Any) -> FaultConfig:
        """Validate a JSON object of switches; keys left out are off. Raises ValueError."""
        if not isinstance(obj, dict):
            raise ValueError("faults must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - known - {"seed"})
        if unknown:
            raise ValueError(f"unknown fault switch(es): {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name in ("error_rate", "truncate_rate", "duplicate_page_rate"):
            value = obj.get(name, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability from 0 to 1")
            values[name] = float(value)
        for name in ("error_burst", "slow_ms"):
            value = obj.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
            values[name] = value
        return cls(**values)


class Faults:
    """The live fault switches and their seeded RNG, so a fault run is reproducible."""

    def __init__(self, config: FaultConfig | None = None, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self.config = config or FaultConfig()
        self.seed = seed
        self._rng = random.Random(seed)

    def set(self, config: FaultConfig, seed: int | None = None) -> None:
        """Replace every switch; a new seed restarts the RNG."""
        with self._lock:
            self.config = config
            if seed is not None:
                self.seed = seed
                self._rng = random.Random(seed)

    def snapshot(self) -> dict[str, Any]:
        """The switches as JSON (error_burst = what is left of the burst)."""
        with self._lock:
            config = self.config
            return {**{f.name: getattr(config, f.name) for f in fields(config)}, "seed": self.seed}

    def _roll(self, rate: float) -> bool:
        # Draw only when the switch is on, so the sequence depends on the switches alone.
        return rate > 0 and self._rng.random() < rate

    def before_data_request(self) -> None:
        """Sleep, then raise an injected 5xx when the burst or the error rate says so."""
        with self._lock:
            config = self.config
            status = 0
            if config.error_burst > 0:
                self.config = replace(config, error_burst=config.error_burst - 1)
                status = 503
            elif self._roll(config.error_rate):
                status = self._rng.choice((500, 502, 503))
        if config.slow_ms:
            time.sleep(config.slow_ms / 1000)
        if status:
            raise ApiError(status, "injected_fault", f"simulated upstream failure (HTTP {status})")

    def duplicate_page(self) -> bool:
        """Whether to answer the page before the requested one instead."""
        with self._lock:
            return self._roll(self.config.duplicate_page_rate)

    def truncate_at(self, length: int) -> int | None:
        """Where to cut a body of `length` bytes, or None to send it whole."""
        with self._lock:
            if length < 2 or not self._roll(self.config.truncate_rate):
                return None
            return self._rng.randint(1, length - 1)


# --- the simulated clock ----------------------------------------------------------------------


class SimClock:
    """The silos' 'now' for a ROOT, re-read only when clock.json or manifest.json changes."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._sig: object = object()
        self._day = 0
        self._now_us = 0
        self._load = 0.0
        self._surge: surge.SurgeSpec | None = None

    def _refresh(self) -> tuple[int, int]:
        sig = (
            _stat_signature(self.root / "manifest.json"),
            _stat_signature(self.root / "clock.json"),
        )
        with self._lock:
            if sig != self._sig:
                self._day, minute = clock.read_clock(self.root)
                manifest = clock.manifest(self.root)
                start = clock.start_date(self.root)
                self._now_us = to_us(clock.instant_utc(start, self._day, minute))
                self._load = surge.load_at(manifest, self._now_us, to_us(clock.day_start_utc(start, 0)))
                self._surge = surge.SurgeSpec.from_dict(manifest["surge"]) if manifest.get("surge") else None
                self._sig = sig
            return self._day, self._now_us

    def now_us(self) -> int:
        """The clock's instant (the end of the day reached, plus its minutes), in epoch microseconds."""
        return self._refresh()[1]

    def day(self) -> int:
        """The simulated day the clock has reached."""
        return self._refresh()[0]

    def surge_load(self) -> tuple[float, surge.SurgeSpec | None]:
        """How loaded the silos are now (0 quiet, 1 at a surge's peak) and the district's surge, if any."""
        self._refresh()
        return self._load, self._surge


# --- as-of view of an event-sourced table -----------------------------------------------------


@dataclass(frozen=True)
class EventSpec:
    """How a table's rows evolve: the key, the lifecycle events in order, gated columns."""

    key: str
    events: tuple[tuple[str, str, str], ...]  # (timestamp column, status code, status name)
    gated: tuple[tuple[str, str], ...] = ()  # (column, event column): null until that event


@dataclass(frozen=True)
class _Loaded:
    """One load of the parquet file, held as pyarrow/numpy columns."""

    columns: tuple[str, ...]
    plain: pa.Table  # the non-timestamp columns, taken row-wise for the page being serialised
    stamps: dict[str, np.ndarray]  # every timestamp column as int64 epoch us, NEVER for null
    floats: frozenset[str]
    events: tuple[np.ndarray, ...]
    sorted_keys: np.ndarray
    key_order: np.ndarray  # row index of sorted_keys[i]
    key_rank: np.ndarray  # position of each row's key in sorted_keys

    @classmethod
    def read(cls, path: Path, spec: EventSpec) -> _Loaded:
        # ParquetFile rather than read_table: the latter imports pyarrow.dataset (~1.5 s).
        with pq.ParquetFile(path) as parquet:
            table = parquet.read()
        stamps: dict[str, np.ndarray] = {}
        for name in table.column_names:
            column = table[name]
            if pa.types.is_timestamp(column.type):
                micro = column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64())
                stamps[name] = np.asarray(micro.fill_null(NEVER).to_numpy(), dtype=np.int64)
        missing = [c for c, _, _ in spec.events if c not in stamps]
        if spec.key not in table.column_names or missing:
            raise ValueError(f"{path}: needs key {spec.key} and timestamp columns {missing}")
        keys = np.asarray(table[spec.key].to_pylist(), dtype=str)
        key_order = np.argsort(keys, kind="stable")
        key_rank = np.empty(len(keys), dtype=np.int64)
        key_rank[key_order] = np.arange(len(keys))
        plain_names = [n for n in table.column_names if n not in stamps]
        floats = frozenset(n for n in plain_names if pa.types.is_floating(table[n].type))
        return cls(
            columns=tuple(table.column_names),
            plain=table.select(plain_names),
            stamps=stamps,
            floats=floats,
            events=tuple(stamps[c] for c, _, _ in spec.events),
            sorted_keys=keys[key_order],
            key_order=key_order,
            key_rank=key_rank,
        )


class AsOfView:
    """The table as seen at one instant, its visible rows sorted by (updated_at, key)."""

    def __init__(self, data: _Loaded, spec: EventSpec, now_us: int) -> None:
        self.data = data
        self.spec = spec
        self.now_us = now_us
        visible = np.flatnonzero(data.events[0] <= now_us)
        _, updated = self.state(visible)
        order = np.lexsort((data.key_rank[visible], updated))
        self.rows = visible[order]  # table row indices in feed order
        self.updated = updated[order]
        self.ranks = data.key_rank[self.rows]

    @property
    def count(self) -> int:
        """How many rows are visible."""
        return len(self.rows)

    def state(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Status index and updated_at (epoch us) of `rows`, vectorised over the rows.

        The status is the event with the latest timestamp <= now (a tie goes to the later
        lifecycle step); updated_at is that timestamp.
        """
        events = self.data.events
        updated = events[0][rows].copy()
        status = np.zeros(len(rows), dtype=np.int64)
        for index in range(1, len(events)):
            stamp = events[index][rows]
            hit = (stamp <= self.now_us) & (stamp >= updated)
            status[hit] = index
            updated[hit] = stamp[hit]
        return status, updated

    def position_since(self, since_us: int) -> int:
        """The first feed position with updated_at >= since (inclusive)."""
        return int(np.searchsorted(self.updated, since_us, side="left"))

    def position_after(self, updated_us: int, key: str) -> int:
        """The first feed position strictly after (updated_us, key); the key need not exist."""
        low = int(np.searchsorted(self.updated, updated_us, side="left"))
        high = int(np.searchsorted(self.updated, updated_us, side="right"))
        key_rank = int(np.searchsorted(self.data.sorted_keys, key, side="right"))
        return low + int(np.searchsorted(self.ranks[low:high], key_rank, side="left"))

    def find(self, key: str) -> int | None:
        """The table row of `key` if it exists and is visible now."""
        data = self.data
        i = int(np.searchsorted(data.sorted_keys, key, side="left"))
        if i >= len(data.sorted_keys) or data.sorted_keys[i] != key:
            return None
        row = int(data.key_order[i])
        return row if data.events[0][row] <= self.now_us else None

    def cursor_after(self, position: int, since_us: int | None = None) -> Cursor:
        """The cursor that resumes right after feed position `position`."""
        return Cursor(
            int(self.updated[position]), str(self.data.sorted_keys[self.ranks[position]]), since_us
        )

    def records(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """The rows as JSON objects: future events and gated columns null, plus status fields."""
        data, spec, now = self.data, self.spec, self.now_us
        rows = np.asarray(rows, dtype=np.int64)
        status, updated = self.state(rows)
        plain = data.plain.take(pa.array(rows))
        event_names = {c for c, _, _ in spec.events}
        # Built column by column (vectorised), then zipped into one dict per row.
        columns: dict[str, list[Any]] = {}
        for name in data.columns:
            if name in data.stamps:
                stamps = data.stamps[name][rows]
                hidden = stamps == NEVER
                if name in event_names:
                    hidden |= stamps > now
                columns[name] = iso_list(stamps, hidden)
            else:
                values = plain.column(name).to_pylist()
                if name in data.floats:  # NaN is not JSON
                    values = [None if v is None or math.isnan(v) else v for v in values]
                columns[name] = values
        for name, gate in spec.gated:
            before = (data.stamps[gate][rows] > now).tolist()
            columns[name] = [None if b else v for v, b in zip(columns[name], before, strict=True)]
        columns["status"] = [spec.events[i][1] for i in status.tolist()]
        columns["status_name"] = [spec.events[i][2] for i in status.tolist()]
        columns["updated_at"] = iso_list(updated, np.zeros(len(rows), dtype=bool))
        names = list(columns)
        return [
            dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)
        ]


class EventTable:
    """An event-sourced parquet table, reloaded when the file changes, viewed as of an instant."""

    def __init__(self, path: Path, spec: EventSpec) -> None:
        self.path = Path(path)
        self.spec = spec
        self._lock = threading.Lock()
        self._sig: tuple[int, int, int] | None = None
        self._data: _Loaded | None = None
        self._view: AsOfView | None = None

    def view(self, now_us: int) -> AsOfView:
        """The as-of view at `now_us`; sorted once per clock change or file change."""
        sig = _stat_signature(self.path)
        with self._lock:
            if sig is None and self._data is None:
                raise ApiError(503, "no_data", f"{self.path.name} has not been generated yet")
            if sig is not None and sig != self._sig:
                try:
                    self._data = _Loaded.read(self.path, self.spec)
                except (OSError, ValueError, pa.ArrowException) as exc:
                    # Likely caught mid-write: keep serving the last good load, retry next time.
                    if self._data is None:
                        raise ApiError(
                            503, "no_data", f"cannot read {self.path.name}: {exc}"
                        ) from exc
                    log.warning("keeping the previous %s: %s", self.path.name, exc)
                else:
                    self._sig = sig
                    self._view = None
            assert self._data is not None
            if self._view is None or self._view.now_us != now_us:
                self._view = AsOfView(self._data, self.spec, now_us)
            return self._view


# --- keyset cursors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cursor:
    """A feed position: after (updated_at, key), or the start when both are None."""

    updated_us: int | None
    key: str | None
    since_us: int | None = None

    def encode(self) -> str:
        """Opaque url-safe base64 of JSON {updated_at, key, since}."""
        payload = {
            "updated_at": None if self.updated_us is None else iso_from_us(self.updated_us),
            "key": self.key,
            "since": None if self.since_us is None else iso_from_us(self.since_us),
        }
        raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Parse a cursor token; a malformed one is a 400."""
        try:
            raw = base64.urlsafe_b64decode(token.strip() + "=" * (-len(token.strip()) % 4))
            payload = json.loads(raw.decode("utf-8"))
            if not isinstance(payload, dict) or set(payload) != {"updated_at", "key", "since"}:
                raise ValueError("unexpected fields")
            updated, key, since = payload["updated_at"], payload["key"], payload["since"]
            if (updated is None) != (key is None):
                raise ValueError("updated_at and key go together")
            if not all(v is None or isinstance(v, str) for v in (updated, key, since)):
                raise ValueError("fields must be strings or null")
            return cls(
                None if updated is None else parse_instant(updated),
                key,
                None if since is None else parse_instant(since),
            )
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise bad_request("cursor is not a token this server issued") from None


# --- services and the HTTP layer --------------------------------------------------------------

Handler = Callable[[Request], Response]


class Service:
    """A simulated silo: auth, rate limit and faults around the routes a subclass defines."""

    name = "service"

    def __init__(
        self,
        root: Path,
        credentials: Credentials,
        rate_limit: float = 0.0,
        faults: Faults | None = None,
    ) -> None:
        self.root = Path(root)
        self.credentials = credentials
        self.limiter = RateLimiter(rate_limit)
        self.faults = faults or Faults()
        self.clock = SimClock(self.root)
        # The surge's timeouts are drawn from their own seeded stream: a run is reproducible.
        self._surge_rng = random.Random(f"surge:{self.name}")
        self._surge_lock = threading.Lock()

    def route(self, method: str, path: str) -> Handler:
        """The handler of a data endpoint; raise ApiError 404/405 when there is none."""
        raise ApiError(404, "not_found", f"no endpoint {path}")

    def dispatch(self, request: Request) -> Response:
        """Answer one request: health, then auth, admin, routing, rate limit, faults, data."""
        if request.path == "/health":
            if request.method != "GET":
                raise ApiError(405, "method_not_allowed", "use GET")
            now = self.clock.now_us()
            return json_response(
                200,
                {
                    "status": "ok",
                    "name": self.name,
                    "day": self.clock.day(),
                    "server_time": iso_from_us(now),
                },
            )
        who = self.credentials.check(request.headers)
        if request.path == "/_admin/faults":
            return self._admin_faults(request)
        handler = self.route(request.method, request.path)
        load, spec = self.clock.surge_load()
        self.limiter.check(who, 1.0 + (spec.rate_limit_factor - 1.0) * load if spec else 1.0)
        if spec is not None and load > 0:
            self._under_load(spec, load)
        self.faults.before_data_request()
        response = handler(request)
        if response.status == 200:
            cut = self.faults.truncate_at(len(response.body))
            if cut is not None:
                response = replace(response, body=response.body[:cut])
        return response

    def _under_load(self, spec: surge.SurgeSpec, load: float) -> None:
        """A silo under a surge answers slower, and some requests time out at its gateway (504)."""
        with self._surge_lock:
            timed_out = self._surge_rng.random() < spec.timeout_rate * load
        if timed_out:
            time.sleep(spec.timeout_ms / 1000)
            raise ApiError(504, "gateway_timeout", f"{self.name} is overloaded (surge); the request timed out, "
                                                   f"retry later")
        time.sleep(spec.slow_ms * load / 1000)

    def _admin_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = json.loads(request.body.decode("utf-8") or "{}")
                config = FaultConfig.from_json(body)
                seed = body.get("seed")
                if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                    raise ValueError("seed must be an integer")
            except (ValueError, UnicodeDecodeError) as exc:
                raise bad_request(f"bad fault switches: {exc}") from None
            self.faults.set(config, seed)
        elif request.method != "GET":
            raise ApiError(405, "method_not_allowed", "use GET or POST")
        return json_response(200, self.faults.snapshot())


class SimHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server bound to loopback that answers through a Service."""

    daemon_threads = True

    def __init__(
        self, service: Service, host: str = LOOPBACK, port: int = 0, access_log: bool = False
    ) -> None:
        host = check_host(host)
        self.service = service
        self.access_log = access_log
        super().__init__((host, port), _SimHandler)

    @property
    def port(self) -> int:
        """The bound port (useful after binding port 0)."""
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:18345."""
        return f"http://{LOOPBACK}:{self.port}"


class _SimHandler(BaseHTTPRequestHandler):
    server: SimHTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 60

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus delayed ACK
        # add ~40 ms to every small response on a keep-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def _handle(self, method: str) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._send(error_response(bad_request("bad or too large Content-Length")))
            return
        # Read the body even when unused, so a keep-alive connection stays in step.
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = Request(
            method, url.path, parse_qs(url.query, keep_blank_values=True), self.headers, body
        )
        try:
            response = self.server.service.dispatch(request)
        except ApiError as err:
            response = error_response(err)
        except Exception:
            log.exception("%s %s failed", method, self.path)
            response = error_response(ApiError(500, "internal", "internal server error"))
        self._send(response)

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
        if self.server.access_log:
            log.info("%s %s", self.address_string(), format % args)


def check_host(host: str) -> str:
    """The loopback address for "127.0.0.1" or "localhost"; any other host is refused."""
    if host in (LOOPBACK, "localhost"):
        return LOOPBACK
    raise ValueError(f"refusing to bind to {host!r}: the simulators serve 127.0.0.1 only")


def start_server(
    service: Service, host: str = LOOPBACK, port: int = 0, access_log: bool = False
) -> SimHTTPServer:
    """Bind and serve in a daemon thread; stop with `.shutdown()` then `.server_close()`."""
    server = SimHTTPServer(service, host, port, access_log)
    # A short poll interval so shutdown() returns quickly (tests start and stop many servers).
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name=f"{service.name}-http", daemon=True
    )
    thread.start()
    return server


def run_file(root: Path, name: str) -> Path:
    """ROOT/run/<name>.json, where a running simulator says where it listens."""
    return Path(root) / "run" / f"{name}.json"


def serve(service: Service, host: str = LOOPBACK, port: int = 0, access_log: bool = False) -> None:
    """Serve until SIGTERM/SIGINT, announcing the server in ROOT/run/<name>.json meanwhile."""
    server = start_server(service, host, port, access_log)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s: signal %d, shutting down", service.name, signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    path = run_file(service.root, service.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"name": service.name, "url": server.url, "pid": os.getpid(), "port": server.port}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    tmp.replace(path)
    log.info("%s simulator on %s (root %s)", service.name, server.url, service.root)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
        server.server_close()
        try:
            # Leave the file alone if another instance has since taken it over.
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                path.unlink()
        except (FileNotFoundError, ValueError):
            pass
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- command line -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """What differs between simulators on the command line."""

    name: str
    default_port: int
    credential_env: str
    default_credential: str
    build: Callable[[Path, Sequence[str], float, Faults], Service]
    description: str = ""


def build_parser(spec: ServerSpec) -> argparse.ArgumentParser:
    """The argparse parser shared by the simulators."""
    parser = argparse.ArgumentParser(
        prog=f"simulators.{spec.name}.server", description=spec.description
    )
    parser.add_argument("--root", required=True, type=Path, help="the simulated district folder")
    parser.add_argument("--host", default=LOOPBACK, help="127.0.0.1 (loopback only)")
    parser.add_argument(
        "--port",
        type=int,
        default=spec.default_port,
        help="0 picks a free port (default %(default)s)",
    )
    parser.add_argument(
        "--token",
        "--api-key",
        dest="credentials",
        action="append",
        metavar="SECRET",
        help=f"accepted credential, repeatable (default: ${spec.credential_env} or {spec.default_credential!r})",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=50.0,
        metavar="REQS_PER_SEC",
        help="per-credential token bucket; 0 disables (default %(default)s)",
    )
    parser.add_argument(
        "--faults", default="{}", help="fault switches as JSON, e.g. '{\"error_rate\":0.3}'"
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the fault RNG")
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    return parser


def main(argv: Sequence[str] | None, spec: ServerSpec) -> int:
    """Parse the command line, then serve until SIGTERM/SIGINT."""
    parser = build_parser(spec)
    args = parser.parse_args(argv)
    try:
        check_host(args.host)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        switches = json.loads(args.faults)
        config = FaultConfig.from_json(switches)
    except ValueError as exc:
        parser.error(f"--faults: {exc}")
    seed = switches.get("seed", args.fault_seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        parser.error("--faults: seed must be an integer")
    if not (args.root / "manifest.json").is_file():
        parser.error(f"--root {args.root}: no manifest.json (run the generator first)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    credentials = args.credentials or [
        os.environ.get(spec.credential_env) or spec.default_credential
    ]
    try:
        service = spec.build(args.root, credentials, args.rate_limit, Faults(config, seed))
    except (ApiError, OSError, ValueError) as exc:
        parser.error(f"--root {args.root}: {exc}")
    serve(service, args.host, args.port, args.access_log)
    return 0
