"""Honest freshness: meta.source_freshness from the newest real data row, watermarks capped at now."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest

from connectors.common import freshness
from connectors.common.exceptions import SourceUnavailable
from connectors.common.landing import Entity
from connectors.common.loads import Load
from warehouse import db

TICKETS = Entity("hotline", "tickets", key=("ticket_id",),
                 required={"ticket_id": pa.string(), "updated_at": pa.string()})
EXPORTS = Entity("health_codes", "exports", key=("export_date", "record_no"))


@pytest.fixture
def con(tmp_path):
    c = db.connect(tmp_path / "w.duckdb")
    yield c
    c.close()


def tickets(*items: tuple[str, str]) -> pa.Table:
    return pa.table({"ticket_id": [i[0] for i in items], "updated_at": [i[1] for i in items]})


def load(con, entity, table, watermark=None, state=None):
    with Load(con, entity) as one:
        one.add(table, "page 1")
        return one.finish(state or {}, watermark=watermark)


def fresh(con, source):
    return con.execute("select synced_at, data_until, data_until_day, last_status, last_message, "
                       "rows_dated_in_future from meta.source_freshness where source = ?", [source]).fetchall()[0]


def test_every_silo_has_a_row_before_any_load(con):
    rows = con.execute("select source, synced_at, data_until, data_until_day, last_status "
                       "from meta.source_freshness").fetchall()
    assert rows == [(s, None, None, None, None) for s in ("city_cases", "grid_registry", "health_codes", "hotline")]


def test_data_until_is_the_newest_landed_row_not_the_largest_watermark(con):
    load(con, TICKETS, tickets(("T1", "2026-11-03T23:30:00+08:00"), ("T2", "2026-11-02T10:00:00+08:00")),
         watermark="2026-11-03T23:30:00+08:00")
    # A load whose watermark says more than its rows: only the rows count.
    load(con, TICKETS, tickets(("T3", "2026-11-01T09:00:00+08:00")), watermark="2026-11-05T00:00:00+08:00")
    synced_at, until, day, status, _, future = fresh(con, "hotline")
    assert until == datetime(2026, 11, 3, 15, 30, tzinfo=UTC)
    assert day == date(2026, 11, 3)  # 23:30 Beijing is still the 3rd there (15:30 UTC)
    assert status == "succeeded" and synced_at is not None and future == 0


def test_a_load_of_duplicates_only_adds_no_freshness(con):
    load(con, TICKETS, tickets(("T1", "2026-11-03T08:00:00+08:00")))
    load(con, TICKETS, tickets(("T1", "2026-11-03T08:00:00+08:00")))
    assert con.execute("select count(*) from meta.load_data_times").fetchall() == [(1,)]
    assert fresh(con, "hotline")[2] == date(2026, 11, 3)


def test_a_row_dated_in_the_future_neither_counts_nor_moves_the_watermark(con):
    ahead = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    r = load(con, TICKETS, tickets(("T1", "2026-11-03T08:00:00+08:00"), ("T2", ahead)), watermark=ahead)
    saved = datetime.fromisoformat(r.watermark_after)
    assert saved <= datetime.now(UTC) + freshness.TOLERANCE
    assert "later than now" in r.message and ahead in r.message
    assert con.execute("select watermark_after from meta.loads").fetchall() == [(r.watermark_after,)]
    _, until, day, _, _, future = fresh(con, "hotline")
    assert day == date(2026, 11, 3) and future == 1


def test_a_failed_latest_attempt_shows_with_its_message(con):
    load(con, TICKETS, tickets(("T1", "2026-11-03T08:00:00+08:00")))
    with pytest.raises(SourceUnavailable), Load(con, TICKETS):
        raise SourceUnavailable("hotline: 503 after 5 tries")
    synced_at, until, day, status, message, _ = fresh(con, "hotline")
    assert status == "failed" and "503" in message
    assert day == date(2026, 11, 3) and synced_at is not None  # what did land is still shown


def test_health_rows_count_within_their_export_day(con):
    rows = pa.table({
        "export_date": ["2026-11-01", "2026-11-01", "2026-11-02"],
        "record_no": ["1", "2", "1"],
        # code changed long ago, tested during the day; a time after its export day cannot be true
        "color_since": ["2026-06-01 10:00:00", "2026-11-01 09:00:00", "2026-11-09 10:00:00"],
        "last_test_at": ["2026-11-01 14:00:00", None, None],
    })
    load(con, EXPORTS, rows.slice(0, 2), watermark="2026-11-01")
    assert fresh(con, "health_codes")[1] == datetime(2026, 11, 1, 6, 0, tzinfo=UTC)  # 14:00 Beijing
    load(con, EXPORTS, rows.slice(2), watermark="2026-11-02")
    # The last second of 2 November in Beijing, not 9 November
    assert fresh(con, "health_codes")[1:3] == (datetime(2026, 11, 2, 15, 59, 59, tzinfo=UTC), date(2026, 11, 2))


def test_a_date_watermark_in_the_future_is_cut_back_to_today():
    now = datetime(2026, 12, 6, 17, 0, tzinfo=UTC)  # 7 December, 01:00 in Beijing
    assert freshness.capped_watermark("2030-12-31", now)[0] == "2026-12-07"
    assert freshness.capped_watermark("2026-12-07", now) == ("2026-12-07", None)
    assert freshness.capped_watermark("opaque-cursor-17", now) == ("opaque-cursor-17", None)
    assert freshness.capped_watermark(None, now) == (None, None)


def test_loads_landed_before_the_upgrade_are_dated_on_the_next_load(con):
    load(con, TICKETS, tickets(("T1", "2026-11-03T08:00:00+08:00")))
    con.execute("delete from meta.load_data_times")  # as a warehouse migrated with rows already in raw
    load(con, TICKETS, tickets(("T2", "2026-11-01T08:00:00+08:00")))
    assert con.execute("select count(*) from meta.load_data_times").fetchall() == [(2,)]
    assert fresh(con, "hotline")[2] == date(2026, 11, 3)


def test_a_caught_up_drop_is_fresh_to_the_simulated_day(tmp_path):
    # The simulated silos' newest real rows fall inside the clock's Beijing day: day D's export
    # holds the tests and code changes of day D, so data_until_day is the day the clock reached.
    import connectors.health_codes as health_codes
    from connectors.common.config import parse_uri
    from simulators.clock import DEFAULT_START
    from simulators.district.generate import generate
    from simulators.health_codes import drop

    root = tmp_path / "district"
    generate(root, residents=300, seed=3, days=4)
    drop.deliver_until(root, 3)
    con = db.connect(tmp_path / "w.duckdb")
    try:
        conn = parse_uri("onenet_health_codes", f"{drop.drop_dir(root).as_uri()}?stable_seconds=0&settle_seconds=0")
        health_codes.sync(con, conn)
        [(day, until)] = con.execute("select data_until_day, data_until from meta.source_freshness "
                                     "where source = 'health_codes'").fetchall()
        assert day == DEFAULT_START + timedelta(days=3)
        assert until < datetime.now(UTC)
    finally:
        con.close()
