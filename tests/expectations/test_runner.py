"""The validation run end to end: planted bad rows are quarantined with their reasons, the rest reach
staging, a table-level failure blocks the batch, and the counts reconcile on every load."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from connectors.common.landing import Entity
from connectors.common.loads import Load
from expectations import runner
from warehouse import db

TICKETS = Entity("hotline", "tickets", key=("ticket_id",))


def ticket(i: int, **changes) -> dict:
    row = {"ticket_id": f"GD2026110100{i:03d}", "caller_name": "张伟", "caller_phone": "13912345678",
           "caller_id_number": None, "street": "大智街道", "category": "环境卫生", "urgency": "一般",
           "status": "dispatched", "received_at": "2026-11-01T09:00:00+08:00",
           "dispatched_at": "2026-11-01T10:00:00+08:00", "resolved_at": None, "closed_at": None,
           "satisfaction": None, "updated_at": f"2026-11-01T10:{i % 60:02d}:00+08:00"}
    row.update(changes)
    return row


def land(con, rows: list[dict]) -> None:
    with Load(con, TICKETS) as load:
        load.add(pa.Table.from_pylist(rows), "page 1")
        load.finish({})


@pytest.fixture
def con(tmp_path):
    c = db.connect(tmp_path / "w.duckdb")
    yield c
    c.close()


def test_planted_bad_rows_are_quarantined_with_their_reasons(con, tmp_path):
    rows = [ticket(i) for i in range(100)]
    rows[3]["status"] = "lost"                                   # critical: not a ticket state
    rows[7]["urgency"] = "特急"                                   # critical: not an urgency class
    rows[9]["resolved_at"] = "2026-10-30T09:00:00+08:00"         # critical: resolved before received
    rows[9]["status"] = "resolved"
    rows[12]["caller_phone"] = "12345"                           # warning only: the row goes on
    rows[15]["status"] = "lost"
    rows[15]["caller_phone"] = "999"                             # critical + warning, both recorded
    land(con, rows)
    (result,) = runner.validate(con, "hotline", tmp_path / "gx")
    assert (result.rows_in, result.rows_quarantined, result.rows_passed) == (100, 4, 96)
    assert result.rows_in == result.rows_passed + result.rows_quarantined
    assert result.rows_warned == 1 and result.status == "quarantined"
    held = dict(con.execute("select json_extract_string(raw_record, '$.ticket_id'), reasons from meta.quarantine "
                            "where stage = 'validate'").fetchall())
    assert set(held) == {rows[i]["ticket_id"] for i in (3, 7, 9, 15)}
    rules_15 = {r["rule"] for r in json.loads(held[rows[15]["ticket_id"]])}
    assert any("in_set(status)" in r for r in rules_15) and any("mobile" in r for r in rules_15)
    assert con.execute("select count(*) from staging.hotline_tickets").fetchall() == [(96,)]
    run = con.execute("select status, rows_in, rows_passed, rows_quarantined from meta.validation_runs").fetchall()
    assert run == [("quarantined", 100, 96, 4)]
    # Validated loads are not validated again.
    assert runner.validate(con, "hotline", tmp_path / "gx")[0].status == "nothing"


def test_volume_collapse_blocks_the_batch_and_keeps_it_pending(con, tmp_path):
    for day in range(3):
        land(con, [ticket(i, updated_at=f"2026-11-0{day + 2}T10:{i % 60:02d}:{i // 60:02d}+08:00")
                   for i in range(200)])
        runner.validate(con, "hotline", tmp_path / "gx")
    land(con, [ticket(1, updated_at="2026-11-09T10:00:00+08:00")])
    (result,) = runner.validate(con, "hotline", tmp_path / "gx")
    assert result.status == "blocked" and "row_count" in result.message
    assert con.execute("select count(*) from staging.hotline_tickets where updated_at like '2026-11-09%'"
                       ).fetchall() == [(0,)]
    # Still pending: the next run looks at it again (and blocks again until someone acts).
    assert runner.validate(con, "hotline", tmp_path / "gx")[0].status == "blocked"


def test_references_are_checked_in_sql_against_the_grid_hierarchy(con, tmp_path):
    grids = Entity("grid_registry", "grids", key=("grid_code",))
    households = Entity("grid_registry", "households", key=("household_id",))
    with Load(con, grids) as load:
        load.add(pa.Table.from_pylist([
            {"grid_code": "420102", "level": "district", "name": "江岸区", "parent_code": None, "updated_at": "t"},
            {"grid_code": "420102001", "level": "street", "name": "大智街道", "parent_code": "420102", "updated_at": "t"},
            {"grid_code": "M1", "level": "micro", "name": "1号楼", "parent_code": "420102001", "updated_at": "t"},
        ]), "grids")
        load.finish({})
    with Load(con, households) as load:
        load.add(pa.Table.from_pylist([
            {"household_id": f"H{i}", "grid_code": "M1" if i % 10 else "420102001", "address": "x", "updated_at": "t"}
            for i in range(50)]), "households")
        load.finish({})
    results = {r.entity: r for r in runner.validate(con, "grid_registry", tmp_path / "gx")}
    # Five households point at a street, not a micro-grid: recorded as warnings, the rows go on.
    assert results["households"].rows_warned == 5 and results["households"].rows_passed == 50
    detail = json.loads(con.execute("select results from meta.validation_runs where entity = 'households'"
                                    ).fetchall()[0][0])
    exists = next(d for d in detail if d["expectation"] == "expect_column_values_to_exist_in_table")
    assert (exists["success"], exists["unexpected_count"]) == (False, 5)


def test_the_batch_is_a_view_of_the_new_raw_rows_numbered_by_rowid(con, tmp_path):
    """Copying 2.26M rows into the batch and sorting them for row numbers took 19 s: raw is read in place."""
    con.execute("create table validation.hotline_tickets as select 1 as x")  # a copy left by an earlier version
    land(con, [ticket(i) for i in range(10)])
    runner.validate(con, "hotline", tmp_path / "gx")
    land(con, [ticket(i, status="lost", updated_at="2026-11-02T10:00:00+08:00") for i in range(3)])
    (result,) = runner.validate(con, "hotline", tmp_path / "gx")
    assert (result.rows_in, result.rows_quarantined) == (3, 3)
    kind = con.execute("select table_type from information_schema.tables "
                       "where table_schema = 'validation' and table_name = 'hotline_tickets'").fetchall()
    assert kind == [("VIEW",)]
    # The batch is the second load only; a quarantined row's _row_id is its rowid in raw.
    newest = con.execute("select rowid from raw.hotline_tickets where status = 'lost' order by rowid").fetchall()
    assert con.execute("select _row_id from validation.hotline_tickets order by 1").fetchall() == newest
    held = con.execute("select json_extract(raw_record, '$._row_id')::bigint from meta.quarantine order by 1").fetchall()
    assert held == newest
    assert con.execute("select count(*) from staging.hotline_tickets").fetchall() == [(10,)]


def test_a_health_file_corrected_twice_validates_and_every_version_goes_on(tmp_path):
    """Issue #14's reproduction: one file name re-delivered twice with one row changed (绿码 → 红码 →
    黄码), synced each time before validating. GE's own compound-uniqueness row query could not run
    on such a batch ("Ambiguous reference to column name _row_id"), which blocked the source for good."""
    from datetime import UTC, date, datetime

    import connectors.health_codes as health_codes
    from connectors.common.config import parse_uri
    from simulators.health_codes.files import SCHEMA, export_name, write_export

    folder = tmp_path / "drop"
    folder.mkdir()
    path = folder / export_name(date(2026, 11, 1), "csv")
    conn = parse_uri("health_codes", f"file://{folder}?stable_seconds=0.2")
    con = db.connect(tmp_path / "w.duckdb")
    try:
        for colour in ("绿码", "红码", "黄码"):
            rows = [{"record_no": i + 1, "name": "张伟", "id_number": "11010519491231002X", "phone": "13800138000",
                     "code_color": colour if i == 0 else "绿码", "color_since": datetime(2026, 11, 1, 0, 30, tzinfo=UTC),
                     "vaccine_doses": 3, "last_test_at": None, "last_test_result": "阴性", "community": "和平村"}
                    for i in range(3)]
            write_export(path, pa.Table.from_pylist(rows, schema=SCHEMA), fmt="csv")
            health_codes.sync(con, conn)
        assert con.execute("select count(*) from raw.health_codes_exports").fetchall() == [(5,)]
        (result,) = runner.validate(con, "health_codes", tmp_path / "gx")
        assert result.status == "passed", result.message
        assert (result.rows_in, result.rows_passed, result.rows_quarantined) == (5, 5, 0)
        versions = con.execute("select code_color from staging.health_codes_exports where record_no = '1' "
                               "order by _extracted_at").fetchall()
        assert versions == [("绿码",), ("红码",), ("黄码",)]
    finally:
        con.close()


def test_a_key_repeated_within_one_load_is_quarantined_by_row(con, tmp_path):
    """Within one delivery a repeated (key, updated_at) is a defect: both rows are held back, by row id,
    and the rest of the batch goes on; two loads repeating a key are versions and pass."""
    rows = [ticket(i) for i in range(10)]
    land(con, rows + [dict(rows[4], status="resolved", resolved_at="2026-11-01T11:00:00+08:00")])
    land(con, [dict(rows[5], urgency="紧急")])  # a silent change: same updated_at, next load
    (result,) = runner.validate(con, "hotline", tmp_path / "gx")
    assert (result.rows_in, result.rows_quarantined, result.rows_passed) == (12, 2, 10)
    held = con.execute("select json_extract_string(raw_record, '$.ticket_id'), reasons from meta.quarantine").fetchall()
    assert {h[0] for h in held} == {rows[4]["ticket_id"]}
    assert all("expect_compound_key_to_be_unique(ticket_id)" in h[1] for h in held)


def test_a_reconciliation_is_no_delivery_its_tombstones_pass_and_no_volume_floor_blocks_it(con, tmp_path):
    from connectors.common.reconcile import Reconciliation

    for day in range(3):
        land(con, [ticket(i, updated_at=f"2026-11-0{day + 2}T10:{i % 60:02d}:{i // 60:02d}+08:00")
                   for i in range(200)])
        runner.validate(con, "hotline", tmp_path / "gx")
    # The hotline now serves 199 of the 200 tickets, one of them changed without its clock moving.
    now = [ticket(i, updated_at=f"2026-11-04T10:{i % 60:02d}:{i // 60:02d}+08:00") for i in range(1, 200)]
    now[0]["category"] = "市容环境"
    with Load(con, TICKETS, reconcile=Reconciliation(missing_kind="phantom")) as load:
        load.add(pa.Table.from_pylist(now), "page 1")
        r = load.finish({})
    assert (r.rows_landed, r.reconciled["silent_change"], r.reconciled["phantom"]) == (2, 1, 1)
    (result,) = runner.validate(con, "hotline", tmp_path / "gx")
    # Two rows, far below the floor of the deliveries before: a reconciliation is held to none.
    assert (result.status, result.rows_in, result.rows_passed, result.rows_quarantined) == ("passed", 2, 2, 0)
    staged = con.execute("select ticket_id, _record_hash = 'tombstone', _is_tombstone, category "
                         "from staging.hotline_tickets where _validation_run_id = ? order by ticket_id",
                         [result.run_id]).fetchall()
    assert staged == [(ticket(0)["ticket_id"], True, True, None), (now[0]["ticket_id"], False, None, "市容环境")]
    # A delivery as small is still blocked by the floor.
    land(con, [ticket(7, updated_at="2026-11-09T10:00:00+08:00")])
    assert runner.validate(con, "hotline", tmp_path / "gx")[0].status == "blocked"
