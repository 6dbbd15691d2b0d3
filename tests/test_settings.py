"""Settings the pipeline steps read from the environment."""

from __future__ import annotations

from onenet import pipeline


def test_pipeline_connections_cap_duckdb_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("ONENET_WAREHOUSE", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("ONENET_DUCKDB_MEMORY_LIMIT", "1GB")
    con = pipeline._open_warehouse("test")
    try:
        limit = con.execute("select current_setting('memory_limit')").fetchone()[0]
    finally:
        con.close()
    assert limit.endswith("MiB") and 900 < float(limit.split()[0]) < 1000, limit  # DuckDB shows 1GB as 953.6 MiB
