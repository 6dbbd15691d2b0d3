"""The city DAG (issue #19): onenet_city on the districts' city-snapshot Assets, built only for a city
(two districts or more, ONENET_CITY_KEY set), run for real with dag.test() on a 2 × 1,500 city."""

from __future__ import annotations

import copy
import json
import os
import secrets
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from onenet import districts
from onenet import orchestration as orch
from onenet.city import CityInputsNotReady, check_inputs
from tests.dags import test_real_scheduler as real
from tests.dags.conftest import DAGS
from tests.dags.test_districts import parse_dags

KEY = secrets.token_hex(32)
metadata_db = real.metadata_db  # a fresh PostgreSQL database for Airflow's metadata (the real-scheduler test's)
TWO = '[[district]]\nname = "east"\n\n[[district]]\nname = "west"\n'


def test_the_city_dag_exists_only_for_a_city_and_runs_on_every_districts_snapshot(tmp_path):
    dags = parse_dags(tmp_path, TWO, KEY)
    city = dags["onenet_city"]
    snapshots = {n: f"file://onenet/{n}/published/city" for n in ("east", "west")}
    assert city["on"] == sorted(snapshots.values())
    assert city["tasks"] == {"build_city": [districts.CITY_POOL, "default", ["duckdb://onenet_city/core"]]}
    assert "city" in city["tags"]
    for name, uri in snapshots.items():  # each district's merge announces its publish
        assert dags[f"onenet_merge__{name}"]["tasks"]["merge"][2] == [f"duckdb://onenet/{name}/core", uri]
    # No key (districts publish nothing for a city), or one district: no city DAG, merges as before.
    for config, key in ((TWO, None), ('[[district]]\nname = "east"\n', KEY)):
        dags = parse_dags(tmp_path, config, key)
        assert "onenet_city" not in dags
        assert dags["onenet_merge__east"]["tasks"]["merge"][2] == ["duckdb://onenet/east/core"]


def test_the_city_table_of_the_districts_file(tmp_path, monkeypatch):
    path = tmp_path / "districts.toml"
    path.write_text(TWO + '[city]\nwarehouse = "c/city.duckdb"\nqueue = "city"\n', encoding="utf-8")
    monkeypatch.setenv("ONENET_DISTRICTS", str(path))
    monkeypatch.delenv("ONENET_CITY_KEY", raising=False)
    assert districts.city() is None
    monkeypatch.setenv("ONENET_CITY_KEY", KEY)
    city = districts.city()
    assert city is not None and city.warehouse == tmp_path / "c" / "city.duckdb" and city.queue == "city"
    assert set(districts.pools(city.districts, city)) == {"onenet_duckdb_east", "onenet_duckdb_west",
                                                          districts.CITY_POOL}
    path.write_text(TWO + '[city]\nwarehous = "x"\n', encoding="utf-8")
    with pytest.raises(districts.DistrictsMisconfigured, match="unknown key"):
        districts.city()


def _snapshot(published: Path, at: datetime) -> None:
    version = published / "city" / "versions" / f"{at:%Y%m%dT%H%M%S%f}-merge"
    version.mkdir(parents=True)
    (published / "city" / "current").symlink_to(version.relative_to(published / "city"))


def test_a_missing_or_stale_district_snapshot_fails_naming_the_district(tmp_path):
    path = tmp_path / "districts.toml"
    path.write_text(TWO + '\n[[district]]\nname = "north"\n', encoding="utf-8")
    city = districts.load_city(path)
    now = datetime(2026, 12, 6, 12, tzinfo=UTC)
    _snapshot(tmp_path / "east" / "published", now - timedelta(hours=1))
    _snapshot(tmp_path / "west" / "published", now - timedelta(hours=50))
    with pytest.raises(CityInputsNotReady) as failed:
        check_inputs(city, {}, announced_within=timedelta(minutes=30), now=now)
    message = str(failed.value)
    assert "district east" not in message
    assert "district west: its city snapshot 2026" in message and "stale" in message and "onenet_merge__west" in message
    assert "district north: no published city snapshot" in message
    # A publish east's merge announced an hour after the snapshot this worker sees: not there yet.
    _snapshot(tmp_path / "north" / "published", now)
    with pytest.raises(CityInputsNotReady, match="district east: its merge announced a publish") as failed:
        check_inputs(city, {"east": now}, announced_within=timedelta(minutes=30), now=now,
                     oldest=timedelta(hours=72))
    assert "west" not in str(failed.value) and "north" not in str(failed.value)
    got = check_inputs(city, {"east": now - timedelta(minutes=50)}, announced_within=timedelta(minutes=30),
                       now=now, oldest=timedelta(hours=72))
    assert set(got) == {"east", "west", "north"}


def test_the_publish_each_district_announced_is_read_from_airflows_triggering_events():
    """What build_city gets as `triggering_asset_events` (Airflow's accessor): the newest event per district."""
    from airflow.sdk.api.datamodels._generated import AssetReferenceAssetEventDagRun
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor

    from onenet.city import announced

    at = datetime(2026, 12, 6, 12, tzinfo=UTC)

    def event(name: str, minutes: int, uri: str | None = None) -> AssetEventDagRunReferenceResult:
        uri = uri or f"file://onenet/{name}/published/city"
        return AssetEventDagRunReferenceResult(
            asset=AssetReferenceAssetEventDagRun(name=f"onenet_city_snapshot__{name}", uri=uri, extra={}),
            extra={}, source_task_id="merge", source_dag_id=f"onenet_merge__{name}", source_run_id=f"r{minutes}",
            source_map_index=-1, source_aliases=[], timestamp=at + timedelta(minutes=minutes))

    events = TriggeringAssetEventsAccessor.build([event("east", 0), event("east", 15), event("west", 5),
                                                  event("other", 9, uri="duckdb://onenet/other/core")])
    by_uri = {f"file://onenet/{n}/published/city": n for n in ("east", "west")}
    assert announced(events, by_uri) == {"east": at + timedelta(minutes=15), "west": at + timedelta(minutes=5)}
    assert announced(None, by_uri) == {}  # a manual run: nothing announced


# --- one real Airflow run of the city DAG on a 2 × 1,500 city ---------------------------------------

@pytest.fixture(scope="module")
def small_city(tmp_path_factory) -> dict:
    """Two districts of 1,500 residents run through the real pipeline with the city key (bench.city)."""
    from bench.city import run_districts
    from simulators.city.generate import generate_city

    root = tmp_path_factory.mktemp("city-dag")
    generate_city(root / "city", districts=2, residents=1500, seed=7, days=8)
    run_districts(root / "city", root / "run", to_day=7, key=KEY)
    codes = sorted(p.name for p in (root / "run").iterdir())
    config = root / "districts.toml"
    config.write_text("".join(f'[[district]]\nname = "{n}"\nhome = "run/{c}"\n\n'
                              for n, c in zip(("east", "west"), codes, strict=True))
                      + '[city]\nwarehouse = "city.duckdb"\n', encoding="utf-8")
    return {"root": root, "config": config, "codes": dict(zip(("east", "west"), codes, strict=True)),
            "db": root / "city.duckdb"}


def _tables(db: Path) -> dict[str, list]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f"select * from {t} order by all").fetchall()
                for t in ("core.person_map", "core.person", "core.ticket", "mart.hotline_rates",
                          "mart.cross_district_incident", "land.person", "land.ticket")}
    finally:
        con.close()


def test_the_city_dag_builds_the_city_again_after_a_back_dated_change_and_never_doubles(
        small_city, monkeypatch, airflow_db, capfd):
    from airflow.models.pool import Pool

    from onenet import pipeline
    from warehouse.city import keys

    monkeypatch.setenv("ONENET_DISTRICTS", str(small_city["config"]))  # dag.test() parses the folder again
    monkeypatch.setenv("ONENET_CITY_KEY", KEY)
    city = districts.city()
    assert city is not None
    east = city.districts[0]
    Pool.create_or_update_pool(city.pool, slots=1, description="test", include_deferred=False)
    dag = orch.load_dags(DAGS)["onenet_city"]
    assert dag.doc_md.startswith("\n###") and dag.max_active_runs == 1 and dag.catchup is False
    (task,) = dag.tasks
    assert task.pool == districts.CITY_POOL and task.retries >= 3 and task.retry_exponential_backoff
    assert task.execution_timeout <= timedelta(hours=2) and task.on_failure_callback
    # Any one district's publish is enough for a build: the condition as the scheduler evaluates it.
    from airflow.assets.evaluation import AssetEvaluator
    from airflow.serialization.decoders import decode_asset_like
    from airflow.serialization.definitions.assets import SerializedAssetUniqueKey
    from airflow.serialization.encoders import encode_asset_like

    condition = decode_asset_like(encode_asset_like(dag.timetable.asset_condition))
    only_east = {SerializedAssetUniqueKey(name=a.name, uri=a.uri): a.uri.startswith("file://onenet/east/")
                 for a in dag.timetable.asset_condition.objects}
    evaluator = AssetEvaluator(None)  # plain Assets: no session needed
    assert evaluator.run(condition, only_east) and not evaluator.run(condition, dict.fromkeys(only_east, False))

    report = orch.run_dag(dag, None)  # an Asset-triggered run has no data interval
    assert report.state == "success" and report.tasks == {"build_city": "success"}, report.summary()
    first = _tables(small_city["db"])
    assert first["core.person"] and {r[0] for r in first["land.person"]} == set(small_city["codes"].values())

    # East publishes twice before the next build (its merge again, then the 07:00 extract's republish):
    # the build reads each district's current snapshot once, so nothing is doubled.
    with districts.active(east):
        pipeline.merge()
        pipeline.republish()
    assert orch.run_dag(dag, None).state == "success"
    assert _tables(small_city["db"]) == first

    # A back-dated correction in east's registry: a resident registered three days before the
    # registry's last change (a cursor never sees it; the nightly reconciliation does). East
    # reconciles, validates, merges and publishes; the next city build holds the new resident.
    registry = east.home / "district" / "grid_registry" / "registry.sqlite"
    with sqlite3.connect(registry) as lite:
        columns = [c[1] for c in lite.execute("pragma table_info(residents)").fetchall()]
        newest = lite.execute("select max(updated_at) from residents").fetchone()[0]
        row = dict(zip(columns, lite.execute("select * from residents where id_number is not null "
                                             "order by resident_id limit 1").fetchone(), strict=True))
        row |= {"resident_id": "X-LATE-0001", "id_number": "11010519491231002X", "name": "补登记",
                "updated_at": (datetime.fromisoformat(newest) - timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S.%f")}
        lite.execute(f"insert into residents ({', '.join(row)}) values ({', '.join('?' * len(row))})",
                     list(row.values()))
    with districts.active(east):
        assert sum(r.rows_landed for r in pipeline.reconcile("grid_registry")) >= 1
        pipeline.validate("grid_registry")
        pipeline.merge()
    assert orch.run_dag(dag, None).state == "success"
    after = _tables(small_city["db"])
    id_key = keys.city_hmac(KEY.encode(), "11010519491231002X")
    con = duckdb.connect(str(small_city["db"]), read_only=True)
    try:
        assert con.execute("select count(*) from land.person where id_key = ? and district_code = ?",
                           [id_key, small_city["codes"]["east"]]).fetchone() == (1,)
    finally:
        con.close()
    assert len(after["land.person"]) == len(first["land.person"]) + 1
    assert len(after["core.person"]) == len(first["core.person"]) + 1
    # City person ids of everyone else are kept.
    assert set(first["core.person_map"]) <= set(after["core.person_map"])

    # A district whose snapshot is gone fails the build, naming it; the city keeps its last build.
    current, moved = east.home / "published" / "city" / "current", east.home / "published" / "city" / "moved"
    current.rename(moved)
    failing = copy.deepcopy(dag)  # retried once, a second later (test_source_dags._fast_retries)
    for t in failing.tasks:
        t.retries, t.retry_delay, t.max_retry_delay = 1, timedelta(seconds=1), timedelta(seconds=1)
    capfd.readouterr()
    failed = orch.run_dag(failing, None)
    assert failed.state == "failed" and failed.tasks == {"build_city": "failed"}
    out = capfd.readouterr()
    assert "district east: no published city snapshot" in out.out + out.err
    assert _tables(small_city["db"]) == after
    moved.rename(current)


@pytest.mark.postgres
def test_a_real_scheduler_builds_the_city_when_one_districts_merge_publishes(small_city, metadata_db, tmp_path):
    """Not dag.test(): east's merge, triggered alone, emits its city-snapshot Asset event and the
    scheduler starts onenet_city on it (AssetAny), which builds the city in a worker process."""
    PG, Airflow, _free_port, _pg, _wait, _xcom = real.PG, real.Airflow, real._free_port, real._pg, real._wait, real._xcom
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "ONENET_"))}
    env.update(orch.airflow_env(tmp_path / "airflow", DAGS, f"postgresql+psycopg2://{PG}/{metadata_db}"))
    env.update({
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+psycopg://{PG}/{metadata_db}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor", "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5", "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
        "ONENET_DISTRICTS": str(small_city["config"]), "ONENET_CITY_KEY": KEY,
    })
    east_snapshot = "file://onenet/east/published/city"
    before = (small_city["root"] / "run" / small_city["codes"]["east"] / "published" / "city" / "current").resolve()
    logs = tmp_path / "logs"
    logs.mkdir()
    airflow = Airflow(env, logs)
    try:
        airflow.cli("db", "migrate", timeout=240)
        pools = tmp_path / "pools.json"
        pools.write_text(json.dumps(districts.pools(districts.load(small_city["config"]),
                                                    districts.load_city(small_city["config"]))), encoding="utf-8")
        airflow.cli("pools", "import", str(pools))
        deadline = time.monotonic() + 300
        airflow.start("api-server", "api-server")
        airflow.start("dag-processor", "dag-processor")
        airflow.start("scheduler", "scheduler")
        meta = _pg(metadata_db)
        _wait("the dag-processor to parse onenet_city", lambda: meta.execute(
            "select count(*) from dag where dag_id in ('onenet_city', 'onenet_merge__east')").fetchone()[0] == 2,
            airflow, deadline)
        airflow.cli("dags", "unpause", "--treat-dag-id-as-regex", "-y", "^(onenet_merge__east|onenet_city)$")
        airflow.cli("dags", "trigger", "onenet_merge__east")  # as after a day's syncs: east publishes

        def built():
            return meta.execute("select run_id, state, run_type from dag_run where dag_id = 'onenet_city' "
                                "and state in ('success', 'failed')").fetchone()

        run_id, state, run_type = _wait("the Asset-triggered city build", built, airflow, deadline, every=2.0)
        assert (state, run_type) == ("success", "asset_triggered"), airflow.tail("scheduler")
        result = _xcom(meta, run_id, "build_city")
        events = meta.execute("select e.source_dag_id from asset_event e join asset a on a.id = e.asset_id "
                              "where a.uri = %s", (east_snapshot,)).fetchall()
    finally:
        airflow.stop()
    assert events == [("onenet_merge__east",)]
    after = (small_city["root"] / "run" / small_city["codes"]["east"] / "published" / "city" / "current").resolve()
    assert after != before and result["announced"] == ["east"]  # east published anew; west was not asked to
    assert result["versions"]["east"]["version"] == after.name and set(result["versions"]) == {"east", "west"}
    assert any(line.startswith("city built from 2 districts") for line in result["summary"])
