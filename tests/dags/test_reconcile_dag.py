"""The scheduled reconciliation DAG end to end with dag.test(): a hard delete and a silent change
in the registry, missed by the nightly sync, are found, landed, validated and published."""

from __future__ import annotations

import shutil
import sqlite3

import duckdb

from onenet import orchestration as orch
from tests.dags.conftest import VILLAGE_DAY
from tests.dags.test_dag_integrity import _core
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


def test_the_health_drop_recheck_is_scheduled_nightly_and_lands_a_file_replaced_in_place(dags, village, onenet_env,
                                                                                        tmp_path, monkeypatch):
    import os

    import pendulum

    from connectors.health_codes import settings as health

    dag = dags["onenet_reconcile_health_codes"]
    # The cadence is the connector's setting, read by the DAG factory: nightly, Beijing time.
    assert orch.reconcile_schedule("health_codes") == health.RECONCILE_SCHEDULE == "30 2 * * *"
    interval = _core(dag).infer_manual_data_interval(run_after=pendulum.datetime(2026, 11, 8, 19, tz="UTC"))
    assert interval.end - interval.start == pendulum.duration(days=1)
    assert interval.end == pendulum.datetime(2026, 11, 8, 18, 30, tz="UTC")  # 02:30 in Beijing
    assert dag.task_dict["reconcile"].downstream_task_ids == {"validate", "publish"}

    # A private copy of the drop: the village's silos are shared by the session's tests.
    drop = tmp_path / "drop"
    shutil.copytree(village.root / "health_codes" / "drop", drop)
    monkeypatch.setenv("AIRFLOW_CONN_ONENET_HEALTH_CODES", f"{drop.as_uri()}?stable_seconds=0&settle_seconds=0")
    day = orch.day_end_utc(village.day(VILLAGE_DAY))
    assert orch.run_dag(dags["onenet_health_codes"], day).state == "success"
    # One code colour changed in a file rewritten in place, its size and mtime restored: the
    # ordinary sync's size + mtime look cannot see it; the re-check's change time does.
    path = next(p for p in sorted(drop.iterdir()) if p.suffix == ".csv")
    data, stat = path.read_bytes(), path.stat()
    green, yellow = next((g, y) for g, y in (("绿码".encode(e), "黄码".encode(e)) for e in ("gb18030", "utf-8"))
                         if g in data)
    path.write_bytes(data.replace(green, yellow, 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    events = len(_asset_events("health_codes"))

    run = orch.run_dag(dag, day)
    assert run.state == "success", run.summary()
    assert run.tasks == {"reconcile": "success", "validate": "success", "publish": "success"}
    assert [e["_dag"] for e in _asset_events("health_codes")[events:]] == ["onenet_reconcile_health_codes"]
    with duckdb.connect(str(onenet_env), read_only=True) as con:
        [(load_id, message)] = con.execute(
            "select load_id, message from meta.loads where source = 'health_codes' and message like '%re-check%'"
        ).fetchall()
        assert "1 read" in message
        landed = con.execute("select file_name, code_color from raw.health_codes_exports where _load_id = ?",
                             [load_id]).fetchall()
        assert landed == [(path.name, "黄码")]
        assert con.execute("select count(*) from staging.health_codes_exports where _load_id = ?",
                           [load_id]).fetchone() == (1,)
