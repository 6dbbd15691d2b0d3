"""Every mart column is described and the dictionary renders (engineers, from the warehouse); `onenet export`
copies the reader's published snapshot, as it is, into the audience's own folder, and logs it."""

from __future__ import annotations

import stat

import pyarrow.parquet as pq
import pytest

from onenet import pipeline
from warehouse import audit_log, db
from warehouse.access import Principal
from warehouse.dictionary import load, render_markdown, undocumented
from warehouse.identity import os_user
from warehouse.publish.snapshot import open_snapshot


@pytest.fixture
def con(town_warehouse):
    con = db.connect(town_warehouse)
    yield con
    con.close()


def test_every_mart_column_is_described(con):
    assert undocumented(con) == []
    con.execute("alter table mart.grid_daily add column new_figure integer")
    assert undocumented(con) == ["mart.grid_daily.new_figure"]


def test_the_dictionary_lists_every_mart_with_types(con):
    text = render_markdown(con)
    tables = [r[0] for r in con.execute("select table_name from duckdb_tables() where schema_name = 'mart'").fetchall()]
    assert len(tables) >= 7
    for table in tables:
        assert f"## mart.{table}" in text
    assert "| response_rate | DOUBLE | 响应率" in text
    assert "（未描述）" not in text


def test_every_published_analyst_column_is_described(published_town):
    entries = load()
    with open_snapshot(published_town.published, "analyst") as snap:
        columns = snap.con.execute("select table_schema, table_name, column_name from information_schema.columns "
                                   "where table_schema = 'mart' order by all").fetchall()
    assert columns
    assert [f"{s}.{t}.{c}" for s, t, c in columns if c not in entries.get(t, {}).get("columns", {})] == []


def test_an_analysts_export_is_the_analyst_snapshot_as_published_and_logged(published_town):
    town = published_town
    folder, counts = pipeline.export_marts(who=Principal(os_user(), "district_analyst"))
    assert folder == town.exports / "analyst" / "marts"
    with open_snapshot(town.published, "analyst") as snap:
        assert sorted(counts) == snap.relations() and "ref.division_codes" in counts
        for qualified in counts:
            exported = pq.read_table(folder / f"{qualified}.parquet")
            assert exported.equals(pq.read_table(snap.parquet(qualified))), qualified
            assert exported.num_rows == counts[qualified]
            assert stat.S_IMODE((folder / f"{qualified}.parquet").stat().st_mode) == 0o640
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750
    # The marts published 1:1 have the warehouse's rows.
    for table in ("special_group_roster", "grid_daily", "hotline_rates", "warnings"):
        assert counts[f"mart.{table}"] == town.oracle(f"select count(*) from mart.{table}")[0][0], table
    assert counts["mart.ticket"] == town.oracle("select count(*) from core.ticket")[0][0] > 0
    assert not list(folder.glob("*.part"))
    last = audit_log.tail(1, town.log)[0]
    assert {k: last[k] for k in ("action", "role", "output", "rows", "full_values", "outcome")} == {
        "action": "export", "role": "district_analyst", "output": str(folder), "rows": sum(counts.values()),
        "full_values": False, "outcome": "allowed"}
    # An export again replaces the files (the same snapshot: the same content).
    again, counts_again = pipeline.export_marts(who=Principal(os_user(), "district_analyst"))
    assert again == folder and counts_again == counts and len(list(folder.iterdir())) == len(counts)


def test_a_community_export_holds_that_communitys_relations_only(published_town):
    town = published_town
    code, name = town.communities()[0]
    folder, counts = pipeline.export_marts(who=Principal(os_user(), "community_staff", community=name))
    assert folder == town.exports / "community" / code / "marts"
    assert sorted(counts) == ["community.city_case", "community.data_issue", "community.freshness",
                              "community.health_change", "community.resident_count",
                              "community.special_group_roster", "community.ticket", "mart.grid", "mart.grid_daily"]
    roster = pq.read_table(folder / "community.special_group_roster.parquet")
    assert roster.num_rows == town.oracle("select count(*) from mart.special_group_roster where community_code = ?",
                                          [code])[0][0] > 0
    assert "birth_date" not in roster.column_names
    assert audit_log.tail(1, town.log)[0]["full_values"] is True  # full phones left
