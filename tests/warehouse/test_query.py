"""`onenet query`'s engine: engineers read the warehouse read-only, analysts and community staff read
their audience's snapshot (where nothing restricted exists), every read and refusal is logged, results
are written as private CSV (cells kept as text) or Parquet."""

from __future__ import annotations

import csv
import io
import stat

import pyarrow as pa
import pytest

from onenet import pipeline
from warehouse import audit_log, db
from warehouse.access import Principal
from warehouse.identity import os_user
from warehouse.query import QueryError, readonly_connection, run_sql, write_result


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    path = tmp_path / "w.duckdb"
    con = db.connect(path)
    con.execute("create schema if not exists mart; create schema if not exists core")
    con.execute("create table mart.roster as select * from (values "
                "('k1', '张伟', '420102199001011234', '13912345678'), "
                "('k2', '李静', '420102198502022345', '+86 139 8765 4321')) t(person_key, name, id_number, phone)")
    con.execute("create table core.person as select 'P000000001' person_id, '420102199001011234' id_std")
    con.close()
    monkeypatch.setenv("ONENET_WAREHOUSE", str(path))
    monkeypatch.setenv("ONENET_ACCESS_LOG", str(tmp_path / "audit" / "access-log.jsonl"))
    return path


def _log(n: int = 100) -> list[tuple]:
    try:
        records = audit_log.tail(n)
    except FileNotFoundError:
        return []
    return [(r["os_user"], r["role"], r["action"], r["target"], r["rows"], r["full_values"], r["outcome"])
            for r in records]


def _engineer() -> Principal:
    return Principal(os_user(), "data_engineer")


def _analyst() -> Principal:
    return Principal(os_user(), "district_analyst")


def test_engineers_read_the_warehouse_in_full_and_that_is_logged(warehouse):
    t = pipeline.query("select id_std from core.person", who=_engineer())
    assert t.column("id_std").to_pylist() == ["420102199001011234"]
    assert _log() == [(os_user(), "data_engineer", "query", "select id_std from core.person", 1, True, "allowed")]
    assert audit_log.verify().ok


def test_the_engineers_connection_is_read_only_and_cannot_reach_files(warehouse):
    con = readonly_connection(warehouse)
    try:
        for statement in ("delete from mart.roster", "insert into mart.roster values ('k3', 'x', null, null)",
                          "create table mart.y as select 1"):
            with pytest.raises(QueryError, match="read-only|read only"):
                run_sql(con, statement)
        assert run_sql(con, "select count(*) n from mart.roster").column("n").to_pylist() == [2]
        with pytest.raises(QueryError, match="disabled|external"):
            run_sql(con, "select * from read_csv('/etc/passwd')")
    finally:
        con.close()
    with pytest.raises(QueryError, match="no warehouse"):
        readonly_connection(warehouse.with_name("missing.duckdb"))


def test_a_failed_query_is_logged_as_denied(warehouse):
    with pytest.raises(QueryError, match="nosuch"):
        pipeline.query("select * from mart.nosuch", who=_engineer())
    assert _log() == [(os_user(), "data_engineer", "query", "select * from mart.nosuch", 0, False, "denied")]


def test_analysts_query_their_snapshot_where_nothing_restricted_exists(published_town):
    town = published_town
    analyst = _analyst()
    n = pipeline.query("select count(*) as n from mart.ticket", who=analyst).column("n").to_pylist()
    assert n == [town.oracle("select count(*) from core.ticket")[0][0]] and n[0] > 0
    roster = pipeline.query("select * from mart.special_group_roster", who=analyst)
    assert roster.num_rows == town.oracle("select count(*) from mart.special_group_roster")[0][0] > 0
    assert not {"id_number", "phone", "name", "birth_date", "person_id"} & set(roster.column_names)
    for sql in ("select * from core.person", "select * from meta.quarantine", "select * from raw.hotline__tickets",
                "select id_number from mart.special_group_roster"):
        with pytest.raises(QueryError, match="does not exist|not found"):
            pipeline.query(sql, who=analyst)
    for sql in ("create table mart.y as select 1", "delete from mart.ticket"):
        with pytest.raises(QueryError, match="read-only|read only"):
            pipeline.query(sql, who=analyst)
    records = [r for r in _log() if r[2] == "query"]
    assert [(r[1], r[4], r[5], r[6]) for r in records] == [
        ("district_analyst", 1, False, "allowed"), ("district_analyst", roster.num_rows, False, "allowed"),
        *[("district_analyst", 0, False, "denied")] * 6]


def test_an_analyst_query_needs_no_warehouse_lock(published_town):
    town = published_town
    writer = db.connect(town.warehouse)  # a pipeline step holding the warehouse
    try:
        t = pipeline.query("select count(*) as n from mart.grid_daily", who=_analyst())
    finally:
        writer.close()
    assert t.column("n").to_pylist() == [town.oracle("select count(*) from mart.grid_daily")[0][0]]


def test_community_staff_query_their_own_communitys_rows(published_town):
    town = published_town
    (code, name), (other_code, _) = town.communities()[:2]
    staff = Principal(os_user(), "community_staff", community=name)
    t = pipeline.query("select count(*) as n, count(distinct community_code) as c, min(community_code) as code "
                       "from community.ticket", who=staff)
    assert t.to_pylist() == [{"n": town.oracle("select count(*) from core.ticket where community_code = ?",
                                               [code])[0][0], "c": 1, "code": code}]
    assert pipeline.query(f"select count(*) as n from community.ticket where community_code = '{other_code}'",
                          who=staff).column("n").to_pylist() == [0]
    with pytest.raises(QueryError, match="does not exist|not found"):
        pipeline.query("select * from mart.ticket", who=staff)
    last = _log(1)[0]
    assert (last[1], last[6]) == ("community_staff", "denied")
    assert audit_log.tail(1)[0]["community"] == name


def test_results_are_written_as_private_csv_with_bom_and_text_cells_or_parquet(tmp_path):
    import pyarrow.parquet as pq

    t = pa.table({"name": ["张伟", "=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(1)", "\tx", None],
                  "n": [1, 2, 3, 4, 5, 6, 7]})
    out = tmp_path / "out" / "result.csv"
    write_result(t, out)
    raw = out.read_bytes()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8").lstrip("\ufeff"))))
    assert rows[0] == ["name", "n"]
    assert [r[0] for r in rows[1:]] == ["张伟", "'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(1)", "'\tx", ""]
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    write_result(t, tmp_path / "out.parquet")
    back = pq.read_table(tmp_path / "out.parquet")
    assert back.num_rows == 7 and back.column("name").to_pylist()[1] == "=HYPERLINK(\"http://x\")"
    assert stat.S_IMODE((tmp_path / "out.parquet").stat().st_mode) == 0o640
    with pytest.raises(QueryError, match="csv or .parquet"):
        write_result(t, tmp_path / "out.txt")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_result_written_over_an_existing_file_is_private_too(tmp_path, suffix):
    out = tmp_path / f"result{suffix}"
    out.write_text("an older, world-readable result", encoding="utf-8")
    out.chmod(0o644)
    write_result(pa.table({"phone": ["13912345678"]}), out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
