"""A warehouse file that a killed process left unfinished does not block the pipeline for good."""

from __future__ import annotations

import duckdb
import pytest

from warehouse import db


def test_a_stub_shorter_than_duckdbs_headers_is_set_aside_and_the_warehouse_created(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    path.write_bytes(b"DUCK" + b"\0" * 60)  # what a kill during creation leaves
    with pytest.raises(duckdb.Error):
        duckdb.connect(str(path)).close()  # DuckDB itself refuses such a file
    con = db.connect(path)
    try:
        assert con.execute("select count(*) from meta.migrations").fetchone()[0] > 0
    finally:
        con.close()
    (kept,) = tmp_path.glob("warehouse.duckdb.unfinished-*")
    assert kept.read_bytes().startswith(b"DUCK")  # set aside, not deleted


def test_a_real_warehouse_is_never_set_aside(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    db.connect(path).close()
    db.connect(path).close()
    assert not list(tmp_path.glob("*.unfinished-*"))
