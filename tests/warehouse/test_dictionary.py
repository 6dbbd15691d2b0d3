"""Every mart column is described; the dictionary renders; the Parquet export is masked and logged."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

from warehouse import db
from warehouse.access import Principal
from warehouse.dictionary import export_parquet, render_markdown, undocumented


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


def test_parquet_export_is_masked_for_analysts_and_logged(con, tmp_path):
    counts = export_parquet(con, tmp_path / "marts", Principal("li", "district_analyst"))
    roster = pq.read_table(tmp_path / "marts" / "special_group_roster.parquet")
    assert roster.num_rows == counts["special_group_roster"] > 0
    assert "person_id" not in roster.column_names
    assert all(re.match(r"^\d{6}\*+[\dX]{4}$", v) for v in roster.column("id_number").to_pylist() if v)
    assert all(re.match(r"^\d{3}\*+\d{4}$", v) for v in roster.column("phone").to_pylist() if v)
    assert con.execute("select role, action, row_count, full_values from meta.access_log").fetchall() == [
        ("district_analyst", "export", sum(counts.values()), False)]
