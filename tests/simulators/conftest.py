"""Fixtures for the HTTP simulator tests: a small simulated district ROOT and in-thread servers."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulators import clock
from simulators.http_common import Service, SimHTTPServer, start_server, to_us

START = date(2026, 11, 1)
TS = pa.timestamp("us", tz="UTC")
SECOND = 1_000_000
HOUR = 3600 * SECOND

STREETS = np.array(["中南路街道", "水果湖街道", "洪山街道", "关山街道", "珞南街道"])
COMMUNITIES = np.array(["东亭社区", "武珞路社区", "宝通寺社区", "卓刀泉社区", "珞狮南社区"])
NAMES = np.array(["王建国", "李秀英", "张伟", "刘芳", "陈静", "阿依古丽·买买提", "杨洋", "赵磊"])
DEPARTMENTS = np.array(["区城管局", "区住建局", "区市场监管局", "区卫健局", "供电公司"])
CATEGORIES = np.array(["市容环境", "噪音扰民", "物业管理", "供水供电", "疫情防控"])
CONTENTS = np.array(
    ["楼下餐馆油烟扰民", "小区路灯不亮", "电梯长期故障", "夜间施工噪音", "求购药品"]
)
URGENCY = np.array(["紧急", "加急", "一般"])
SATISFACTION = np.array(["满意", "基本满意", "不满意"])
CASE_KINDS = [
    ("部件", "0101", "井盖破损"),
    ("部件", "0203", "路灯损坏"),
    ("事件", "0501", "暴露垃圾"),
    ("事件", "0702", "违章搭建"),
    ("事件", "0305", "占道经营"),
]
REPORTERS = np.array(["网格员", "市民", "12345转办", "监督员"])


def _stamps(values: np.ndarray) -> pa.Array:
    # -1 marks "never happens" while building; in parquet that is a null.
    return pa.array(values, type=TS, mask=values < 0)


def _strings(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(values.tolist(), type=pa.string(), mask=null)


def _chain(
    rng: np.random.Generator, prev: np.ndarray, low_h: float, high_h: float, p: float
) -> np.ndarray:
    """The next lifecycle event: a random delay after `prev`, or never (also when prev never was)."""
    n = len(prev)
    step = rng.integers(int(low_h * 3600), int(high_h * 3600), n) * SECOND
    never = (prev < 0) | (rng.random(n) >= p)
    return np.where(never, -1, prev + step)


def _batched(stamps: np.ndarray, hours: int) -> np.ndarray:
    """Round events up to a batch boundary (archiving runs every few hours): ties in updated_at."""
    size = hours * HOUR
    return np.where(stamps < 0, -1, -(-stamps // size) * size)


def _received(rng: np.random.Generator, n: int, days: int) -> np.ndarray:
    first = to_us(clock.day_start_utc(START, 0))
    return np.sort(first + rng.integers(0, days * 86400, n) * SECOND)


def _ids(prefix: str, stamps: np.ndarray) -> list[str]:
    # Prefix + Beijing date of the first event + a sequence number, like the real systems.
    day = (stamps + 8 * HOUR) // (86400 * SECOND)
    labels = {
        int(d): np.datetime64(int(d), "D").astype(str).replace("-", "") for d in np.unique(day)
    }
    return [f"{prefix}{labels[int(d)]}{i:06d}" for i, d in enumerate(day.tolist())]


def write_tickets(path: Path, n: int, days: int = 5, seed: int = 7) -> list[str]:
    """Write a hotline tickets.parquet with `n` work orders received over `days`; returns the ids."""
    rng = np.random.default_rng(seed)
    received = _received(rng, n, days)
    dispatched = _batched(_chain(rng, received, 0.2, 8, 0.97), 1)
    responded = _chain(rng, dispatched, 0.5, 30, 0.92)
    resolved = _chain(rng, responded, 2, 60, 0.85)
    closed = _batched(_chain(rng, resolved, 1, 24, 0.9), 4)
    rated = _batched(_chain(rng, closed, 2, 48, 0.6), 4)
    urgency = rng.integers(0, 3, n)
    response_hours = np.array([2, 12, 24])[urgency]
    resolve_days = np.array([3, 5, 15])[urgency]
    phones = [
        f"+86 1{a}-{b:04d}-{c:04d}"
        for a, b, c in rng.integers([30, 0, 0], [99, 10000, 10000], (n, 3)).tolist()
    ]
    id_numbers = [
        f"420102********{x:03d}{'X' if x % 7 == 0 else x % 10}"
        for x in rng.integers(0, 1000, n).tolist()
    ]
    ids = _ids("GD", received)
    table = pa.table(
        {
            "ticket_id": pa.array(ids),
            "caller_name": _strings(rng.choice(NAMES, n), rng.random(n) < 0.05),
            "caller_phone": pa.array(phones, mask=rng.random(n) < 0.05),
            "caller_id_number": pa.array(id_numbers, mask=rng.random(n) < 0.5),
            "address": _strings(np.char.add(rng.choice(COMMUNITIES, n), "3号楼2单元501")),
            "street": _strings(rng.choice(STREETS, n)),
            "department": _strings(rng.choice(DEPARTMENTS, n)),
            "category": _strings(rng.choice(CATEGORIES, n)),
            "urgency": _strings(URGENCY[urgency]),
            "content": _strings(rng.choice(CONTENTS, n)),
            "received_at": _stamps(received),
            "dispatched_at": _stamps(dispatched),
            "first_response_at": _stamps(responded),
            "resolved_at": _stamps(resolved),
            "closed_at": _stamps(closed),
            "rated_at": _stamps(rated),
            "response_deadline": _stamps(received + response_hours * HOUR),
            "resolve_deadline": _stamps(received + resolve_days * 24 * HOUR),
            "satisfaction": _strings(rng.choice(SATISFACTION, n), rated < 0),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return ids


def write_cases(
    path: Path, n: int, ticket_ids: list[str], days: int = 5, seed: int = 11
) -> list[str]:
    """Write a city_cases cases.parquet with `n` cases reported over `days`; returns the ids."""
    rng = np.random.default_rng(seed)
    reported = _received(rng, n, days)
    registered = _batched(_chain(rng, reported, 0.1, 4, 0.95), 1)
    dispatched = _chain(rng, registered, 0.2, 6, 0.95)
    disposed = _chain(rng, dispatched, 1, 48, 0.85)
    verified = _chain(rng, disposed, 0.5, 12, 0.9)
    closed = _batched(_chain(rng, verified, 0.5, 24, 0.9), 4)
    kind = rng.integers(0, len(CASE_KINDS), n)
    reporter = rng.choice(REPORTERS, n)
    transferred = reporter == "12345转办"
    sources = rng.choice(np.array(ticket_ids), n)
    ids = _ids("CG", reported)
    table = pa.table(
        {
            "case_id": pa.array(ids),
            "category_type": pa.array([CASE_KINDS[k][0] for k in kind.tolist()]),
            "category_code": pa.array([CASE_KINDS[k][1] for k in kind.tolist()]),
            "category_name": pa.array([CASE_KINDS[k][2] for k in kind.tolist()]),
            "description": pa.array([f"{CASE_KINDS[k][2]}，请尽快处理" for k in kind.tolist()]),
            "lon": pa.array(114.30 + rng.random(n) * 0.1, type=pa.float64()),
            "lat": pa.array(30.50 + rng.random(n) * 0.1, type=pa.float64()),
            "address": _strings(np.char.add(rng.choice(COMMUNITIES, n), "路口")),
            "street": _strings(rng.choice(STREETS, n)),
            "community": _strings(rng.choice(COMMUNITIES, n)),
            "reporter_type": _strings(reporter),
            "reporter_name": _strings(rng.choice(NAMES, n)),
            "reporter_phone": pa.array(
                [f"139{x:08d}" for x in rng.integers(0, 10**8, n).tolist()],
                mask=rng.random(n) < 0.3,
            ),
            "source_ticket_id": _strings(sources, ~transferred),
            "reported_at": _stamps(reported),
            "registered_at": _stamps(registered),
            "dispatched_at": _stamps(dispatched),
            "disposed_at": _stamps(disposed),
            "verified_at": _stamps(verified),
            "closed_at": _stamps(closed),
            "deadline": _stamps(reported + 72 * HOUR),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return ids


def build_root(
    root: Path, n_tickets: int = 50, n_cases: int = 30, days: int = 5, day: int = 0
) -> Path:
    """A simulated district folder: manifest.json, clock.json and the two parquet files."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"start_date": START.isoformat(), "days": days, "seed": 7}
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    clock.write_day(root, day)
    tickets = write_tickets(root / "hotline" / "tickets.parquet", n_tickets, days)
    write_cases(root / "city_cases" / "cases.parquet", n_cases, tickets, days)
    return root


def raw_rows(path: Path) -> list[dict]:
    """The parquet rows as dicts (aware UTC datetimes), for checking the server independently."""
    return pq.read_table(path).to_pylist()


@pytest.fixture
def district(tmp_path: Path) -> Path:
    """A fresh 50-ticket / 30-case district on day 0 (tests move its clock)."""
    return build_root(tmp_path / "district")


@pytest.fixture
def serve() -> Iterator[Callable[[Service], str]]:
    """Start services in threads on 127.0.0.1 (port 0); returns their base URLs; stops them after."""
    servers: list[SimHTTPServer] = []

    def start(service: Service) -> str:
        server = start_server(service)
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def as_of(row: dict, events: list[str], now: datetime) -> tuple[int, datetime]:
    """(index of the status event, updated_at) of a raw row at `now`, computed independently.

    The latest event reached wins; a tie goes to the later lifecycle step.
    """
    reached = [(row[c], i) for i, c in enumerate(events) if row[c] is not None and row[c] <= now]
    moment, index = max(reached)
    return index, moment


def instant(text: str | None) -> datetime | None:
    """Parse the server's ISO-8601 text (None stays None)."""
    return None if text is None else datetime.fromisoformat(text)
