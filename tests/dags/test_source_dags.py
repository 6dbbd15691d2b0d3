"""Each source DAG end to end with dag.test() on a village: rows land and are validated, re-runs are idempotent."""

from __future__ import annotations

import copy
from datetime import UTC, timedelta

import duckdb
import pytest

from onenet import orchestration as orch
from tests.dags.conftest import VILLAGE_DAY


def _count(warehouse, sql: str) -> int:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return int(con.execute(sql).fetchone()[0])
    finally:
        con.close()


def _raw_rows(warehouse, source: str) -> int:
    tables = " union all ".join(f"select count(*) n from raw.{t}" for t in orch.STAGED_TABLES[source])
    return _count(warehouse, f"select sum(n) from ({tables})")


def _staged_rows(warehouse, source: str) -> int:
    tables = " union all ".join(f"select count(*) n from staging.{t}" for t in orch.STAGED_TABLES[source])
    return _count(warehouse, f"select sum(n) from ({tables})")


def _asset_events(source: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (session.query(AssetEvent.extra, AssetEvent.source_dag_id)
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .filter(AssetModel.uri == orch.asset_uri(source)).all())
        return [dict(extra) | {"_dag": dag_id} for extra, dag_id in rows]


def _fast_retries(dag, retries: int = 1):
    """A copy of `dag` whose tasks retry quickly, so a failure test does not wait minutes."""
    dag = copy.deepcopy(dag)
    for t in dag.tasks:
        t.retries, t.retry_delay, t.max_retry_delay = retries, timedelta(seconds=1), timedelta(seconds=1)
    return dag


@pytest.mark.parametrize("source", ["grid_registry", "health_codes", "hotline", "city_cases"])
def test_a_source_dag_lands_validates_publishes_and_a_backfill_lands_nothing(source, dags, village, onenet_env):
    dag = dags[f"onenet_{source}"]
    events_before = len(_asset_events(source))
    day = village.day(VILLAGE_DAY)

    first = orch.run_dag(dag, orch.day_end_utc(day))
    assert first.state == "success", first.summary()
    assert first.landed > 0 and first.landed == _raw_rows(onenet_env, source)
    staged = _staged_rows(onenet_env, source)
    assert staged > 0 and first.passed == staged
    assert first.published
    events = _asset_events(source)
    assert len(events) == events_before + 1
    assert events[-1]["day"] == day.isoformat() and events[-1]["_dag"] == f"onenet_{source}"
    assert set(events[-1]["tables"]) <= set(orch.STAGED_TABLES[source])

    # A backfill of the day before: the sync catches up from its state and lands nothing new,
    # validation finds nothing, publish is skipped, and no Asset event wakes the merge.
    again = orch.run_dag(dag, orch.day_end_utc(village.day(VILLAGE_DAY - 1)))
    assert again.state == "success", again.summary()
    assert again.landed == 0 and again.passed == 0
    assert again.tasks["publish"] == "skipped"
    assert _raw_rows(onenet_env, source) == first.landed and _staged_rows(onenet_env, source) == staged
    assert len(_asset_events(source)) == events_before + 1


def test_the_health_sensor_waits_for_the_day_of_its_interval(village, onenet_env):
    from simulators.health_codes import drop

    folder = orch.health_drop_folder()
    sent = sorted(p.name for p in drop.outbox_dir(village.root, VILLAGE_DAY).iterdir() if not p.name.startswith("_"))
    found = orch.health_files_for(village.day(VILLAGE_DAY), folder)
    assert found == sent and found[0].startswith(f"健康码日报_{village.day(VILLAGE_DAY):%Y%m%d}")
    # The silos have not reached the next day: its file is not there, so the sensor keeps waiting.
    assert orch.health_files_for(village.day(VILLAGE_DAY + 1), folder) == []


def test_the_health_dag_fails_its_sensor_when_the_file_never_comes(dags, village, onenet_env):
    dag = _fast_retries(dags["onenet_health_codes"], retries=0)
    sensor = dag.task_dict["wait_for_file"]
    sensor.timeout, sensor.poke_interval = 0, 1  # look once: no file, no deferral
    report = orch.run_dag(dag, orch.day_end_utc(village.day(VILLAGE_DAY + 5)))
    assert report.state == "failed"
    assert report.tasks["wait_for_file"] == "failed" and report.tasks["sync"] == "upstream_failed"
    assert report.landed == 0


def test_a_source_that_is_down_retries_then_fails_with_its_name(dags, village, onenet_env, monkeypatch, capfd):
    monkeypatch.setenv("AIRFLOW_CONN_ONENET_GRID_REGISTRY", "postgres://reader:s3cret@127.0.0.1:1/grid")
    dag = _fast_retries(dags["onenet_grid_registry"], retries=1)
    report = orch.run_dag(dag, orch.day_end_utc(village.day(VILLAGE_DAY)))
    assert report.state == "failed"
    assert report.tasks == {"sync": "failed", "validate": "upstream_failed", "publish": "upstream_failed"}
    assert _sync_tries(dag.dag_id) == 2  # the first try, then one retry
    out = capfd.readouterr()
    log = out.out + out.err
    assert "grid_registry: sync failed for" in log and "cannot connect" in log
    assert "s3cret" not in log


def test_a_misconfigured_source_fails_at_once_without_retries(dags, village, onenet_env, monkeypatch, capfd):
    monkeypatch.setenv("AIRFLOW_CONN_ONENET_HOTLINE", "http://127.0.0.1:1")  # no token
    dag = _fast_retries(dags["onenet_hotline"], retries=2)
    report = orch.run_dag(dag, orch.day_end_utc(village.day(VILLAGE_DAY)))
    assert report.state == "failed" and report.tasks["sync"] == "failed"
    assert _sync_tries(dag.dag_id) == 1
    out = capfd.readouterr()
    assert "hotline: sync failed for" in out.out + out.err


def test_a_source_dag_run_without_a_logical_date_covers_up_to_its_run_after(dags, village, onenet_env):
    """As `airflow dags trigger onenet_hotline` makes it (issue #16): no logical date, no data interval."""
    from datetime import datetime

    before = datetime.now(UTC)
    report = orch.run_dag(dags["onenet_hotline"], None)
    assert report.state == "success", report.summary()
    assert report.landed > 0 and report.published
    start, end = (datetime.fromisoformat(t) for t in _asset_events("hotline")[-1]["data_interval"])
    assert before <= end <= datetime.now(UTC)  # the run's run_after ends its interval
    assert timedelta(minutes=15) <= end - start < timedelta(minutes=30)


def _sync_tries(dag_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (session.query(TaskInstance).filter_by(dag_id=dag_id, task_id="sync")
              .order_by(TaskInstance.start_date.desc()).first())
        return int(ti.try_number)


def test_the_main_job_runs_a_fresh_village_through_airflow(airflow_db, tmp_path, monkeypatch):
    monkeypatch.setenv("ONENET_PUBLISHED", str(tmp_path / "published"))  # this run's own snapshots
    lines: list[str] = []
    run = orch.run_village_through_airflow(tmp_path, residents=2000, day=2, ports={"hotline": 0, "city_cases": 0},
                                           airflow_home=airflow_db, echo=lines.append)
    assert run.ok, run.summary()
    assert [r.dag_id for r in run.runs] == ["onenet_grid_registry", "onenet_health_codes", "onenet_hotline",
                                            "onenet_city_cases", "onenet_merge", "onenet_daily_extract"]
    for r in run.runs[:4]:
        assert r.landed > 0 and r.passed > 0 and r.published, r.summary()
        assert r.landed == _raw_rows(run.warehouse, r.dag_id.removeprefix("onenet_"))
    assert run.runs[4].tasks == {"merge": "success"}
    assert run.runs[5].tasks == {"extract": "success", "reports": "success", "dashboard": "success"}
    assert (run.exports / "analyst" / "dashboard" / "index.html").exists()
    assert list((run.exports / "community").glob("*/extracts/20261103/*_20261103.xlsx"))
    assert (tmp_path / "published" / "analyst" / "current" / "snapshot.duckdb").exists()
    from onenet.summary import pipeline_summary

    closing = "\n".join(pipeline_summary(run.warehouse, run.gx_dir, run.exports))
    for needle in ("golden persons", "health_codes.exports", "incidents:", "warnings:", "dashboard", "extracts"):
        assert needle in closing, closing
    assert run.day.isoformat() == "2026-11-03"
    text = run.summary()
    assert str(run.warehouse) in text and "Data Docs: file://" in text and "all runs succeeded" in text
    from simulators import runner

    assert not any(s.running for s in runner.status(tmp_path / "district"))  # the silos were stopped


def test_a_connection_stored_in_airflow_is_used_by_the_task(dags, village, onenet_env, monkeypatch, tmp_path):
    """No AIRFLOW_CONN_* variable and no simulator at the embedded default: only the stored Connection works."""
    import json

    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    url = json.loads((village.root / "run" / "city_cases.json").read_text(encoding="utf-8"))["url"]
    elsewhere = tmp_path / "no-simulators-here"
    elsewhere.mkdir()
    monkeypatch.setenv("ONENET_DISTRICT", str(elsewhere))  # the embedded default now points at nothing
    monkeypatch.delenv("AIRFLOW_CONN_ONENET_CITY_CASES", raising=False)
    stored = Connection.from_json(json.dumps({"conn_type": "http", "host": url.split("//")[1].split(":")[0],
                                              "port": int(url.rsplit(":", 1)[1]), "password": "dev-city-key"}),
                                  conn_id="onenet_city_cases")
    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == "onenet_city_cases").delete()
        session.add(stored)
    try:
        report = orch.run_dag(_fast_retries(dags["onenet_city_cases"]), orch.day_end_utc(village.day(VILLAGE_DAY)))
        assert report.state == "success" and report.landed > 0, report.summary()
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == "onenet_city_cases").delete()


def _drop_to(folder, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ONENET_HEALTH_CODES", f"{folder.as_uri()}?stable_seconds=0")


def test_the_health_file_wait_defers_to_the_standard_file_trigger(village, onenet_env, monkeypatch, tmp_path):
    """Issue #16: no file yet, so the sensor hands the wait to the triggerer; the trigger fires on the file."""
    import asyncio
    import time

    from airflow.providers.standard.triggers.file import FileTrigger
    from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred

    from onenet.dag_factory import WaitForHealthFile

    drop = tmp_path / "drop"
    drop.mkdir()
    _drop_to(drop, monkeypatch)
    day = village.day(VILLAGE_DAY)
    sensor = WaitForHealthFile(task_id="wait_for_file", cron="0 0 * * *", poke_interval=0.2)
    start = orch.day_end_utc(day) - timedelta(days=1)
    context = {"data_interval_start": start, "data_interval_end": orch.day_end_utc(day), "dag_run": None}
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, FileTrigger) and trigger.filepath == str(drop / f"健康码日报_{day:%Y%m%d}*")
    assert deferred.value.method_name == "execute_complete" and deferred.value.timeout.total_seconds() > 3600
    deadline = deferred.value.kwargs["deadline"]

    # A near-miss (an upload still under a temp name) wakes the trigger; the exact check defers again.
    (drop / f"健康码日报_{day:%Y%m%d}.csv.part").write_bytes(b"x")
    assert asyncio.run(asyncio.wait_for(anext(trigger.run()), 10)).payload is True
    with pytest.raises(TaskDeferred):
        sensor.execute_complete(context, event=True, deadline=deadline)
    # The day's real file: the sensor returns it.
    source = village.root / "health_codes" / "drop"
    name = orch.health_files_for(day, source)[0]
    (drop / name).write_bytes((source / name).read_bytes())
    assert sensor.execute_complete(context, event=True, deadline=deadline) == [name]
    # Past its deadline with no file of that day: a sensor timeout naming the file and the folder.
    with pytest.raises(AirflowSensorTimeout, match=f"健康码日报_{village.day(VILLAGE_DAY + 1):%Y%m%d}"):
        later = {**context, "data_interval_start": start + timedelta(days=1)}
        sensor.execute_complete(later, event=True, deadline=time.time() - 1)


def test_the_health_dag_waits_deferred_until_the_file_arrives(dags, village, onenet_env, monkeypatch, tmp_path):
    """Through dag.test(): deferred, the trigger runs (in line), the file arrives 3 s later, the sync lands it."""
    import shutil
    import threading
    import time

    drop = tmp_path / "drop"
    drop.mkdir()
    _drop_to(drop, monkeypatch)
    day = village.day(VILLAGE_DAY)
    source = village.root / "health_codes" / "drop"
    names = orch.health_files_for(day, source)
    dag = copy.deepcopy(dags["onenet_health_codes"])
    dag.task_dict["wait_for_file"].poke_interval = 0.5
    arrive = threading.Timer(3.0, lambda: [shutil.copy(source / n, drop / n) for n in names])
    began = time.monotonic()
    arrive.start()
    try:
        report = orch.run_dag(dag, orch.day_end_utc(day))
    finally:
        arrive.cancel()
    assert report.state == "success", report.summary()
    assert time.monotonic() - began >= 3.0 and report.landed > 0
