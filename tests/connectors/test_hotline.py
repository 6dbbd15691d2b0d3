"""The 12345 hotline connector against the real simulator on loopback and a real DuckDB file."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import connectors.hotline as hotline
from connectors.common.config import Connection, parse_uri
from connectors.common.exceptions import ConfigurationError, SchemaDrift, SourceUnavailable
from connectors.common.http import HttpClient
from connectors.common.json_pages import JsonPages
from connectors.common.loads import Load
from connectors.hotline import settings
from connectors.hotline.helpers import make_client
from simulators import clock
from simulators.district.generate import generate
from simulators.hotline.server import TICKETS as TICKET_EVENTS
from simulators.hotline.server import HotlineService
from tests.connectors.fixtures_http import (
    after_responses,
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

TOKEN = "dev-hotline-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TABLE = "raw.hotline_tickets"
EVENTS = [c for c, _, _ in TICKET_EVENTS.events]
CODES = [code for _, code, _ in TICKET_EVENTS.events]
README = Path(hotline.__file__).with_name("README.md")


def conn_for(url: str, token: str = TOKEN) -> Connection:
    return parse_uri("onenet_hotline", f"http://:{token}@127.0.0.1:{port_of(url)}")


def quick(url: str, **options: Any) -> HttpClient:
    """The connector's client without real waits (backoff and Retry-After go to no_sleep)."""
    return make_client(conn_for(url), **{"sleep": no_sleep, "seed": 1, **options})


def expected(root: Path) -> dict[str, tuple[str, datetime]]:
    """ticket_id → (status, updated_at) of every visible ticket, computed from the parquet."""
    now = clock.now_utc(root)
    return {r["ticket_id"]: (CODES[index], moment)
            for r in raw_rows(root / "hotline/tickets.parquet") if r["received_at"] <= now
            for index, moment in [as_of(r, EVENTS, now)]}


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    # A few dozen tickets in pages of 4: every run crosses many pages and cursors.
    monkeypatch.setattr(settings, "PAGE_SIZE", 4)


@pytest.fixture(scope="module")
def village(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated village (realistic names, addresses, noise) with its clock on the last day."""
    root = tmp_path_factory.mktemp("village")
    generate(root, residents=2000, seed=1, days=10)
    clock.write_day(root, 9)
    return root


@pytest.fixture(scope="module")
def server(village: Path) -> Iterator[str]:
    with running(HotlineService(village)) as url:
        yield url


@pytest.fixture
def con(tmp_path: Path):
    c = db.connect(tmp_path / "w.duckdb")
    yield c
    c.close()


@pytest.fixture(scope="module")
def reference(village: Path, server: str, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """(ticket_id, record hash) of a fault-free full sync: what every faulty run must end with."""
    c = db.connect(tmp_path_factory.mktemp("reference") / "w.duckdb")
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(settings, "PAGE_SIZE", 4)
            hotline.sync(c, conn_for(server), client=quick(server))
        return versions(c, TABLE, "ticket_id")
    finally:
        c.close()


def test_full_sync_lands_every_visible_ticket_once(village: Path, server: str, con) -> None:
    [result] = hotline.sync(con, conn_for(server), client=quick(server))
    want = expected(village)
    assert result.status == "succeeded" and result.rows_landed == len(want) > 20
    got = con.execute(f"select ticket_id, status, updated_at from {TABLE}").fetchall()
    assert len(got) == len({t for t, _, _ in got}) == len(want)
    assert {t: (s, datetime.fromisoformat(u)) for t, s, u in got} == want
    # Delivered as-is: ISO text in Beijing time, lineage naming the page and cursor.
    sample = con.execute(f"select received_at, _source_position from {TABLE} "
                         "where _source_position like 'page 3 %'").fetchall()
    assert sample and sample[0][0].endswith("+08:00") and re.fullmatch(r"page 3 \(cursor …\S{8}\)", sample[0][1])
    latest = max(u for _, u in want.values())
    assert datetime.fromisoformat(saved_state(con, "hotline", "tickets")["watermark"]) == latest
    assert result.watermark_before is None and result.rows_quarantined == 0


def test_a_second_sync_with_nothing_new_lands_nothing(server: str, con) -> None:
    hotline.sync(con, conn_for(server), client=quick(server))
    state = saved_state(con, "hotline", "tickets")
    [again] = hotline.sync(con, conn_for(server), client=quick(server))
    assert again.rows_landed == 0 and again.rows_in == again.duplicates_skipped > 0  # the overlap window
    assert saved_state(con, "hotline", "tickets")["watermark"] == state["watermark"]
    since = datetime.fromisoformat(saved_state(con, "hotline", "tickets")["updated_since"])
    assert datetime.fromisoformat(state["watermark"]) - since == settings.OVERLAP


def test_full_refresh_reads_from_the_beginning(server: str, con, reference) -> None:
    hotline.sync(con, conn_for(server), client=quick(server))
    [refresh] = hotline.sync(con, conn_for(server), full_refresh=True, client=quick(server))
    assert refresh.rows_in == len(reference) and refresh.rows_landed == 0
    assert versions(con, TABLE, "ticket_id") == reference


def test_advancing_the_clock_brings_the_updates(tmp_path: Path, con) -> None:
    root = build_root(tmp_path / "district", n_tickets=60, day=1)
    with running(HotlineService(root)) as url:
        hotline.sync(con, conn_for(url), client=quick(url))
        before = expected(root)
        clock.write_day(root, 3)
        [delta] = hotline.sync(con, conn_for(url), client=quick(url))
    after = expected(root)
    changed = {t for t in before if after[t] != before[t]}
    new = set(after) - set(before)
    assert changed and new
    landed = {t for (t,) in con.execute(f"select ticket_id from {TABLE} where _load_id = ?",
                                        [delta.load_id]).fetchall()}
    assert landed == changed | new and delta.rows_landed == len(landed)
    # Old versions stay: a changed ticket has its day-1 row and its day-3 row.
    counts = dict(con.execute(f"select ticket_id, count(*) from {TABLE} group by 1").fetchall())
    assert all(counts[t] == 2 for t in changed) and all(counts[t] == 1 for t in set(after) - changed)
    latest = {t: s for t, s in con.execute(f"select ticket_id, status from {TABLE} "
                                           "qualify row_number() over (partition by ticket_id "
                                           "order by updated_at desc) = 1").fetchall()}
    assert latest == {t: s for t, (s, _) in after.items()}


@pytest.mark.parametrize("faults", [
    {"error_burst": 5},
    {"error_rate": 0.3, "seed": 3},
    {"truncate_rate": 0.3, "seed": 4},
    {"duplicate_page_rate": 0.5, "seed": 5},
], ids=["error_burst", "error_rate", "truncate", "duplicate_pages"])
def test_faults_end_in_the_fault_free_result(server: str, con, reference, faults: dict) -> None:
    client = quick(server)
    set_faults(server, AUTH, **faults)
    try:
        [result] = hotline.sync(con, conn_for(server), client=client)
    finally:
        set_faults(server, AUTH)
    assert versions(con, TABLE, "ticket_id") == reference
    if "duplicate_page_rate" in faults:
        assert result.duplicates_skipped > 0
    else:
        assert client.retries > 0 and "retried" in (result.message or "")


def test_a_slow_source_times_out_and_is_retried(server: str, con, reference) -> None:
    # The source answers after 0.5 s, beyond the client's 0.2 s time-out, until it recovers
    # (here: while the client backs off for the first time).
    set_faults(server, AUTH, slow_ms=500)
    recovered: list[float] = []

    def backoff(seconds: float) -> None:
        if not recovered:
            set_faults(server, AUTH)
        recovered.append(seconds)

    try:
        client = quick(server, timeout=0.2, sleep=backoff)
        hotline.sync(con, conn_for(server), client=client)
    finally:
        set_faults(server, AUTH)
    assert client.retries >= 1 and versions(con, TABLE, "ticket_id") == reference


def test_rate_limit_429_waits_for_retry_after(village: Path, con, reference) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    with running(HotlineService(village, rate_limit=5)) as url:
        hotline.sync(con, conn_for(url), client=quick(url, sleep=sleep))
    assert waits and min(waits) >= 1  # Retry-After is honoured, not a guessed backoff
    assert versions(con, TABLE, "ticket_id") == reference


def test_a_source_that_stays_down_fails_and_lands_nothing(server: str, con, reference) -> None:
    hotline.sync(con, conn_for(server), client=quick(server))
    state = saved_state(con, "hotline", "tickets")
    client = quick(server)
    # The source goes down after serving two pages of a full refresh.
    client.session.hooks["response"].append(after_responses(2, lambda: set_faults(server, AUTH, error_burst=100)))
    try:
        with pytest.raises(SourceUnavailable, match=r"hotline: .* at page 3 \(cursor …\S{8}\) after 7 tries"):
            hotline.sync(con, conn_for(server), full_refresh=True, client=client)
    finally:
        set_faults(server, AUTH)
    status, message = last_load(con, "hotline")
    assert status == "failed" and "page 3" in message and "HTTP 503" in message
    assert saved_state(con, "hotline", "tickets") == state
    assert versions(con, TABLE, "ticket_id") == reference


def test_a_wrong_token_fails_naming_401(server: str, con) -> None:
    bad = conn_for(server, token="not-the-token")
    with pytest.raises(SourceUnavailable, match=r"hotline: .* HTTP 401 at page 1 \(start\)"):
        hotline.sync(con, bad, client=make_client(bad, sleep=no_sleep))
    assert last_load(con, "hotline")[0] == "failed" and not table_exists(con, TABLE)
    assert saved_state(con, "hotline", "tickets") is None


def test_a_missing_required_field_fails_naming_the_column(tmp_path: Path, con) -> None:
    root = build_root(tmp_path / "district", n_tickets=30, day=2)
    rewrite_parquet(root / "hotline/tickets.parquet", lambda t: t.drop_columns(["department"]))
    with running(HotlineService(root)) as url, pytest.raises(
            SchemaDrift, match=r"hotline: required column 'department' is missing from tickets at page 1"):
        hotline.sync(con, conn_for(url), client=quick(url))
    assert last_load(con, "hotline")[0] == "failed" and not table_exists(con, TABLE)


def test_a_new_field_is_landed_and_reported(tmp_path: Path, con) -> None:
    root = build_root(tmp_path / "district", n_tickets=30, day=1)
    path = root / "hotline/tickets.parquet"
    with running(HotlineService(root)) as url:
        hotline.sync(con, conn_for(url), client=quick(url))
        rewrite_parquet(path, lambda t: t.append_column(
            "channel", pa.array(["微信" if i % 3 else "电话" for i in range(t.num_rows)])))
        clock.write_day(root, 2)
        [result] = hotline.sync(con, conn_for(url), client=quick(url))
    assert "new source column 'channel' (VARCHAR) landed" in result.message
    channels = {c for (c,) in con.execute(f"select channel from {TABLE} where _load_id = ?",
                                          [result.load_id]).fetchall()}
    assert channels == {"微信", "电话"}
    assert con.execute("select column_name from meta.schema_changes").fetchall() == [("channel",)]


def test_readme_connection_example_parses() -> None:
    line = re.search(r"AIRFLOW_CONN_ONENET_HOTLINE='([^']+)'", README.read_text(encoding="utf-8"))
    assert line
    conn = parse_uri(settings.CONN_ID, line.group(1))
    assert conn.base_url == "https://hotline.example.gov:443" and conn.password == "TOKEN"
    assert make_client(conn).session.headers["Authorization"] == "Bearer TOKEN"



def test_connection_extras_tune_the_client() -> None:
    conn = parse_uri(settings.CONN_ID, "http://:TOKEN@127.0.0.1:1?timeout=0.5&max_retries=2&backoff=0.01"
                                       "&max_backoff=0.1&max_rate_limit_waits=0")
    client = make_client(conn)
    assert (client.timeout, client.max_retries, client.backoff, client.max_backoff,
            client.max_rate_limit_waits) == (0.5, 2, 0.01, 0.1, 0)
    assert make_client(conn, timeout=3.0).timeout == 3.0  # explicit options still win
    assert make_client(parse_uri(settings.CONN_ID, "http://:TOKEN@h:1")).timeout == settings.TIMEOUT_SECONDS
    for bad in ("timeout=0", "max_retries=-1", "max_retries=two", "backoff=x"):
        with pytest.raises(ConfigurationError, match=r"hotline: the connection onenet_hotline has extra"):
            make_client(parse_uri(settings.CONN_ID, f"http://:TOKEN@h:1?{bad}"))

# --- JSON pages → Arrow: the cases a live server does not produce -----------------------------

def ticket(i: int, **fields: Any) -> dict[str, Any]:
    base = {"ticket_id": f"GD{i}", "updated_at": f"2026-11-0{i % 9 + 1}T09:00:00+08:00",
            "received_at": "2026-11-01T08:00:00+08:00", "status": "received", "street": "大智街道",
            "department": "区城管局", "category": "市容环境", "satisfaction": None}
    return {**base, **fields}


def land_pages(con, *pages: list[Any]):
    collected = JsonPages(settings.TICKETS, settings.TICKET_FIELDS)
    with Load(con, settings.TICKETS) as load:
        for number, records in enumerate(pages, 1):
            collected.add(records, f"page {number}")
        collected.into(load)
        return load.finish({}, watermark=collected.watermark)


def test_all_null_and_changing_types_across_pages_land(con) -> None:
    result = land_pages(
        con,
        [ticket(1, extra=7, tags=None), ticket(2, extra=8, tags=None)],          # satisfaction all null
        [ticket(3, satisfaction="满意", extra="seven", tags=["a", "b"], detail={"k": 1})],
    )
    assert result.rows_landed == 3 and "'extra' arrived as int64 and string" in result.message
    rows = con.execute(f"select ticket_id, satisfaction, extra, tags, detail from {TABLE} order by 1").fetchall()
    assert rows == [("GD1", None, "7", None, None), ("GD2", None, "8", None, None),
                    ("GD3", "满意", "seven", '["a", "b"]', '{"k": 1}')]
    assert result.watermark_after == "2026-11-04T09:00:00+08:00"


def test_unreadable_records_are_quarantined_with_their_page(con) -> None:
    result = land_pages(con, [ticket(1), ticket(2, ticket_id=None), ticket(3, updated_at="soon"), "oops"])
    assert (result.rows_landed, result.rows_quarantined, result.rows_in) == (1, 3, 4)
    held = con.execute("select position from meta.quarantine order by 1").fetchall()
    assert held == [("page 1 record 2",), ("page 1 record 3",), ("page 1 record 4",)]


def test_a_retyped_required_field_fails_naming_the_page(con) -> None:
    with pytest.raises(SchemaDrift, match=r"'ticket_id' of tickets arrived as int64 at page 2"):
        land_pages(con, [ticket(1)], [ticket(2, ticket_id=2)])
    assert not table_exists(con, TABLE)


def test_a_retyped_documented_field_is_landed_and_noted(con) -> None:
    result = land_pages(con, [ticket(1, satisfaction=5)])
    assert "'satisfaction' arrived as int64 at page 1, documented as string" in result.message
    assert "documented column 'content' was not delivered" in result.message


def test_the_stuck_source_guard(server: str, con) -> None:
    set_faults(server, AUTH, duplicate_page_rate=1.0)
    try:
        with pytest.raises(SourceUnavailable, match="served 20 times in a row without progress"):
            hotline.sync(con, conn_for(server), client=quick(server))
    finally:
        set_faults(server, AUTH)

