"""The 数字城管 connector against the real case-feed simulator on loopback and a real DuckDB file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import connectors.city_cases as city_cases
from connectors.city_cases import settings
from connectors.city_cases.helpers import make_client
from connectors.common.config import Connection, parse_uri
from connectors.common.exceptions import SchemaDrift, SourceUnavailable
from connectors.common.http import HttpClient
from simulators import clock
from simulators.city_cases.server import CASES as CASE_EVENTS
from simulators.city_cases.server import CityCasesService
from simulators.district.generate import generate
from tests.connectors.fixtures_http import (
    last_load,
    no_sleep,
    port_of,
    rewrite_parquet,
    running,
    saved_state,
    set_faults,
    table_exists,
    versions,
)
from tests.simulators.conftest import as_of, build_root, raw_rows
from warehouse import db

KEY = "dev-city-key"
AUTH = {"X-Api-Key": KEY}
TABLE = "raw.city_cases_cases"
EVENTS = [c for c, _, _ in CASE_EVENTS.events]
CODES = [code for _, code, _ in CASE_EVENTS.events]
README = Path(city_cases.__file__).with_name("README.md")


def conn_for(url: str, key: str = KEY) -> Connection:
    return parse_uri("onenet_city_cases", f"http://:{key}@127.0.0.1:{port_of(url)}")


def quick(url: str, **options: Any) -> HttpClient:
    """The connector's client without real waits."""
    return make_client(conn_for(url), **{"sleep": no_sleep, "seed": 1, **options})


def expected(root: Path) -> dict[str, tuple[str, datetime]]:
    """case_id → (status, updated_at) of every visible case, computed from the parquet."""
    now = clock.now_utc(root)
    return {r["case_id"]: (CODES[index], moment)
            for r in raw_rows(root / "city_cases/cases.parquet") if r["reported_at"] <= now
            for index, moment in [as_of(r, EVENTS, now)]}


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "PAGE_LIMIT", 3)


@pytest.fixture(scope="module")
def village(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated village with its clock on the last day (cases transferred from 12345 included)."""
    root = tmp_path_factory.mktemp("village")
    generate(root, residents=2000, seed=1, days=10)
    clock.write_day(root, 9)
    return root


@pytest.fixture(scope="module")
def server(village: Path) -> Iterator[str]:
    with running(CityCasesService(village)) as url:
        yield url


@pytest.fixture
def con(tmp_path: Path):
    c = db.connect(tmp_path / "w.duckdb")
    yield c
    c.close()


@pytest.fixture(scope="module")
def reference(server: str, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """(case_id, record hash) of a fault-free full sync."""
    c = db.connect(tmp_path_factory.mktemp("reference") / "w.duckdb")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(settings, "PAGE_LIMIT", 3)
            city_cases.sync(c, conn_for(server), client=quick(server))
        return versions(c, TABLE, "case_id")
    finally:
        c.close()


def test_full_sync_lands_every_case_once_with_its_ticket_link(village: Path, server: str, con) -> None:
    [result] = city_cases.sync(con, conn_for(server), client=quick(server))
    want = expected(village)
    assert result.status == "succeeded" and result.rows_landed == len(want) > 10
    got = con.execute(f"select case_id, status, updated_at from {TABLE}").fetchall()
    assert len(got) == len(want) and {c: (s, datetime.fromisoformat(u)) for c, s, u in got} == want
    # The 12345 reference comes through exactly as the source holds it.
    source = {r["case_id"]: r["source_ticket_id"] for r in raw_rows(village / "city_cases/cases.parquet")}
    links = con.execute(f"select case_id, source_ticket_id, reporter_type from {TABLE}").fetchall()
    assert all(link == source[case] for case, link, _ in links)
    transferred = [link for _, link, kind in links if kind == "12345转办"]
    tickets = set(pq.read_table(village / "hotline/tickets.parquet", columns=["ticket_id"])["ticket_id"].to_pylist())
    assert transferred and all(link in tickets for link in transferred)
    assert con.execute(f"select typeof(lon) from {TABLE} limit 1").fetchall() == [("DOUBLE",)]
    state = saved_state(con, "city_cases", "cases")
    assert state["cursor"] and datetime.fromisoformat(state["watermark"]) == max(u for _, u in want.values())
    positions = {p for (p,) in con.execute(f"select _source_position from {TABLE}").fetchall()}
    assert "page 1 (start)" in positions and any(re.fullmatch(r"page 2 \(cursor …\S{8}\)", p) for p in positions)


def test_cursor_resume_after_the_clock_moves_gives_exactly_the_changes(tmp_path: Path, con) -> None:
    root = build_root(tmp_path / "district", n_cases=40, day=1)
    with running(CityCasesService(root)) as url:
        city_cases.sync(con, conn_for(url), client=quick(url))
        before, cursor = expected(root), saved_state(con, "city_cases", "cases")["cursor"]
        [idle] = city_cases.sync(con, conn_for(url), client=quick(url))
        assert idle.rows_in == 0 and saved_state(con, "city_cases", "cases")["cursor"] == cursor
        clock.write_day(root, 3)
        [delta] = city_cases.sync(con, conn_for(url), client=quick(url))
    after = expected(root)
    changes = {c for c in after if after[c] != before.get(c)}
    landed = [c for (c,) in con.execute(f"select case_id from {TABLE} where _load_id = ?",
                                        [delta.load_id]).fetchall()]
    # A cursor feed has no overlap: every row read is a change, and every change is read once.
    assert sorted(landed) == sorted(changes) and delta.rows_in == len(changes) > 0
    assert saved_state(con, "city_cases", "cases")["cursor"] != cursor
    assert con.execute(f"select count(*) from {TABLE}").fetchall()[0][0] == len(before) + len(changes)


def test_full_refresh_starts_without_a_cursor(server: str, con, reference) -> None:
    city_cases.sync(con, conn_for(server), client=quick(server))
    [refresh] = city_cases.sync(con, conn_for(server), full_refresh=True, client=quick(server))
    assert refresh.rows_in == len(reference) and refresh.rows_landed == 0
    assert versions(con, TABLE, "case_id") == reference


@pytest.mark.parametrize("faults", [
    {"error_burst": 5},
    {"error_rate": 0.3, "truncate_rate": 0.2, "duplicate_page_rate": 0.4, "seed": 9},
], ids=["error_burst", "mixed"])
def test_faults_end_in_the_fault_free_result(server: str, con, reference, faults: dict) -> None:
    client = quick(server)
    set_faults(server, AUTH, **faults)
    try:
        city_cases.sync(con, conn_for(server), client=client)
    finally:
        set_faults(server, AUTH)
    assert client.retries > 0 and versions(con, TABLE, "case_id") == reference


def test_a_source_that_stays_down_keeps_the_cursor(tmp_path: Path, con) -> None:
    root = build_root(tmp_path / "district", n_cases=20, day=1)
    with running(CityCasesService(root)) as url:
        city_cases.sync(con, conn_for(url), client=quick(url))
        state = saved_state(con, "city_cases", "cases")
        clock.write_day(root, 3)
        set_faults(url, AUTH, error_rate=1.0)
        with pytest.raises(SourceUnavailable, match=r"city_cases: .* page 1 \(cursor …\S{8}\) after 7 tries.*"
                                                    r"resumed from the stored cursor"):
            city_cases.sync(con, conn_for(url), client=quick(url))
        set_faults(url, AUTH)
        status, message = last_load(con, "city_cases")
        assert status == "failed" and "page 1" in message
        assert saved_state(con, "city_cases", "cases") == state
        rows = con.execute(f"select count(*) from {TABLE}").fetchall()
        [recovered] = city_cases.sync(con, conn_for(url), client=quick(url))
    assert recovered.rows_landed > 0 and con.execute(f"select count(*) from {TABLE}").fetchall() != rows


def test_a_wrong_key_fails_naming_401(server: str, con) -> None:
    bad = conn_for(server, key="wrong")
    with pytest.raises(SourceUnavailable, match=r"city_cases: .* HTTP 401 at page 1 \(start\)"):
        city_cases.sync(con, bad, client=make_client(bad, sleep=no_sleep))
    assert last_load(con, "city_cases")[0] == "failed" and not table_exists(con, TABLE)


def test_a_missing_required_field_fails_naming_the_column(tmp_path: Path, con) -> None:
    root = build_root(tmp_path / "district", n_cases=20, day=2)
    rewrite_parquet(root / "city_cases/cases.parquet", lambda t: t.drop_columns(["street"]))
    with running(CityCasesService(root)) as url, pytest.raises(
            SchemaDrift, match=r"city_cases: required column 'street' is missing from cases at page 1"):
        city_cases.sync(con, conn_for(url), client=quick(url))
    assert not table_exists(con, TABLE)


def test_readme_connection_example_parses() -> None:
    line = re.search(r"AIRFLOW_CONN_ONENET_CITY_CASES='([^']+)'", README.read_text(encoding="utf-8"))
    assert line
    conn = parse_uri(settings.CONN_ID, line.group(1))
    assert conn.base_url == "https://cityops.example.gov:443" and conn.password == "API_KEY"
    assert make_client(conn).session.headers["X-Api-Key"] == "API_KEY"
