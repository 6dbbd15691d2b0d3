"""`onenet query`'s engine: read-only, schema rules per role, masked personal columns, logged reads."""

from __future__ import annotations

import pytest

from warehouse import db
from warehouse.access import AccessDenied, Principal
from warehouse.query import QueryError, run_query, write_result


@pytest.fixture
def warehouse(tmp_path):
    path = tmp_path / "w.duckdb"
    con = db.connect(path)
    con.execute("create schema if not exists mart; create schema if not exists core")
    con.execute("create table mart.roster as select * from (values "
                "('k1', '张伟', '420102199001011234', '13912345678'), "
                "('k2', '李静', '420102198502022345', '+86 139 8765 4321')) t(person_key, name, id_number, phone)")
    con.execute("create table core.person as select 'P000000001' person_id, '420102199001011234' id_std")
    con.close()
    return path


def _log(path):
    con = db.connect(path)
    try:
        return con.execute("select user_name, role, action, row_count, full_values from meta.access_log").fetchall()
    finally:
        con.close()


def test_analyst_reads_marts_masked_and_the_read_is_logged(warehouse):
    t = run_query(warehouse, "select * from mart.roster order by person_key", Principal("li", "district_analyst"))
    assert t.column("id_number").to_pylist() == ["420102********1234", "420102********2345"]
    assert t.column("phone").to_pylist() == ["139****5678", "139****4321"]
    assert t.column("name").to_pylist() == ["张伟", "李静"]
    assert _log(warehouse) == [("li", "district_analyst", "query", 2, False)]


def test_engineer_sees_full_values_and_that_is_logged(warehouse):
    t = run_query(warehouse, "select id_std from core.person", Principal("zhang", "data_engineer"))
    assert t.column("id_std").to_pylist() == ["420102199001011234"]
    assert _log(warehouse) == [("zhang", "data_engineer", "query", 1, True)]


def test_analyst_may_not_read_core_and_staff_may_not_query(warehouse):
    with pytest.raises(AccessDenied, match="core.person"):
        run_query(warehouse, "select * from core.person", Principal("li", "district_analyst"))
    with pytest.raises(AccessDenied, match="extract"):
        run_query(warehouse, "select 1", Principal("wang", "community_staff", community="幸福村"))
    assert _log(warehouse) == []


def test_the_connection_is_read_only_and_cannot_reach_files(warehouse):
    who = Principal("zhang", "data_engineer")
    for statement in ("delete from mart.roster", "insert into mart.roster values ('k3', 'x', null, null)",
                      "create table mart.y as select 1"):
        with pytest.raises(QueryError, match="read-only|read only|does not parse"):
            run_query(warehouse, statement, who)
    assert run_query(warehouse, "select count(*) n from mart.roster", who).column("n").to_pylist() == [2]
    with pytest.raises(QueryError, match="disabled|external"):
        run_query(warehouse, "select * from read_csv('/etc/passwd')", who)


def test_results_are_written_as_csv_with_bom_or_parquet(warehouse, tmp_path):
    import pyarrow.parquet as pq

    t = run_query(warehouse, "select name, phone from mart.roster order by 1", Principal("li", "district_analyst"))
    write_result(t, tmp_path / "out.csv")
    text = (tmp_path / "out.csv").read_bytes().decode("utf-8")
    assert text.startswith("\ufeff") and "张伟" in text and "139****5678" in text
    write_result(t, tmp_path / "out.parquet")
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 2
    with pytest.raises(QueryError, match="csv or .parquet"):
        write_result(t, tmp_path / "out.txt")
