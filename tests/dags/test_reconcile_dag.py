"""The scheduled reconciliation DAG end to end with dag.test(): a hard delete and a silent change
in the registry, missed by the nightly sync, are found, landed, validated and published."""

from __future__ import annotations

import shutil
import sqlite3

import duckdb

from onenet import orchestration as orch
from tests.dags.conftest import VILLAGE_DAY
from tests.dags.test_source_dags import _asset_events


def test_the_registry_reconciliation_dag_lands_a_hard_delete_and_a_silent_change(dags, village, onenet_env,
                                                                                   tmp_path, monkeypatch):
    # A private copy of the registry: the village's silos are shared by the session's tests.
    registry = tmp_path / "registry.sqlite"
    shutil.copyfile(village.root / "grid_registry" / "registry.sqlite", registry)
    monkeypatch.setenv("AIRFLOW_CONN_ONENET_GRID_REGISTRY", f"sqlite:///{registry}")
    day = orch.day_end_utc(village.day(VILLAGE_DAY))
    assert orch.run_dag(dags["onenet_grid_registry"], day).state == "success"
    with sqlite3.connect(registry) as lite:
        gone, quiet = [r[0] for r in lite.execute(
            "select resident_id from residents where resident_id not in (select resident_id from special_groups) "
            "order by resident_id limit 2").fetchall()]
        lite.execute("delete from residents where resident_id = ?", [gone])
        lite.execute("update residents set name = name || '鑫' where resident_id = ?", [quiet])
    events = len(_asset_events("grid_registry"))

    run = orch.run_dag(dags["onenet_reconcile_grid_registry"], day)
    assert run.state == "success", run.summary()
    assert run.tasks == {"reconcile": "success", "validate": "success", "publish": "success"}
    published = _asset_events("grid_registry")[events:]
    assert [e["_dag"] for e in published] == ["onenet_reconcile_grid_registry"]
    with duckdb.connect(str(onenet_env), read_only=True) as con:
        runs = con.execute("select entity, status, hard_delete, silent_change, missed_update + back_dated + revert "
                           "+ phantom from meta.reconciliations order by entity").fetchall()
        assert runs == [("grid_workers", "succeeded", 0, 0, 0), ("grids", "succeeded", 0, 0, 0),
                        ("households", "succeeded", 0, 0, 0), ("residents", "succeeded", 1, 1, 0),
                        ("special_groups", "succeeded", 0, 0, 0)]
        # Validation passed both on: the tombstone as it is, the changed row through the suite.
        staged = con.execute("select resident_id, _record_hash = 'tombstone' from staging.grid_registry_residents "
                             "where _load_id in (select load_id from meta.loads where kind = 'reconcile')"
                             ).fetchall()
        assert sorted(staged) == sorted([(gone, True), (quiet, False)])
