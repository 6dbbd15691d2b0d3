"""Districts from configuration (issue #19): one set of DAG files builds every district's DAGs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from onenet import districts
from onenet import orchestration as orch
from tests.dags.conftest import DAGS, REPO

CONFIG = """
[[district]]
name = "east"
[district.connections]
hotline = "http://:t@10.0.0.5:8080"

[[district]]
name = "west"
home = "/srv/city/west"
warehouse = "w.duckdb"
queue = "west"
"""

_PARSE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {}
for dag_id, dag in bag.dags.items():
    out[dag_id] = {"tags": sorted(dag.tags), "tasks": {t.task_id: [t.pool, t.queue, [o.uri for o in t.outlets]]
                                                       for t in dag.tasks}}
    cond = getattr(dag.timetable, "asset_condition", None)
    if cond is not None:
        out[dag_id]["on"] = sorted(a.uri for a in cond.objects)
print(json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": out}))
"""


def parse_dags(tmp_path: Path, config: str | None, city_key: str | None = None) -> dict:
    """The DAG files parsed by Airflow's DagBag in a fresh process, for `config` (a districts file's
    text; None: the single district) and, for a city, its key: each DAG's tags, tasks and Assets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "ONENET_"))}
    env.update(orch.airflow_env(tmp_path / "airflow", DAGS))
    if config is not None:
        path = tmp_path / "districts.toml"
        path.write_text(config, encoding="utf-8")
        env["ONENET_DISTRICTS"] = str(path)
    if city_key:
        env["ONENET_CITY_KEY"] = city_key
    out = subprocess.run([sys.executable, "-c", _PARSE, str(DAGS)], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    return result["dags"]


def test_each_district_gets_the_same_dags_with_its_own_pool_assets_and_queue(tmp_path):
    single = parse_dags(tmp_path, None)
    city = parse_dags(tmp_path, CONFIG)
    # Every DAG of the single district, once per district, and nothing else.
    assert set(city) == {f"{d}__{n}" for d in single for n in ("east", "west")}
    for dag_id, dag in single.items():
        for name in ("east", "west"):
            mine = city[f"{dag_id}__{name}"]
            assert set(mine["tasks"]) == set(dag["tasks"]), dag_id
            assert set(mine["tags"]) == set(dag["tags"]) | {f"district:{name}"}
            for task, (pool, queue, outlets) in mine["tasks"].items():
                single_pool, _, single_outlets = dag["tasks"][task]
                # The warehouse's one slot becomes the district's own; other tasks keep theirs.
                assert pool == (f"onenet_duckdb_{name}" if single_pool == orch.POOL else single_pool), (dag_id, task)
                assert (queue == "west") if name == "west" else (queue != "west"), (dag_id, task)
                assert outlets == [u.replace("://onenet/", f"://onenet/{name}/") for u in single_outlets]
            if "on" in dag:  # the merge: on the district's own staging Assets
                assert mine["on"] == sorted(u.replace("://onenet/", f"://onenet/{name}/") for u in dag["on"])


def test_the_districts_file_is_checked_and_sets_each_districts_environment(tmp_path):
    path = tmp_path / "districts.toml"
    path.write_text(CONFIG, encoding="utf-8")
    east, west = districts.load(path)
    assert east.warehouse == tmp_path / "east" / "warehouse.duckdb" and west.warehouse == Path("/srv/city/west/w.duckdb")
    env = east.env()
    assert env["ONENET_WAREHOUSE"] == str(east.warehouse) and env["ONENET_HOME"] == str(tmp_path / "east")
    assert env["AIRFLOW_CONN_ONENET_HOTLINE"] == "http://:t@10.0.0.5:8080"
    assert "AIRFLOW_CONN_ONENET_HOTLINE" not in west.env()
    assert districts.pools((east, west))["onenet_duckdb_west"]["slots"] == 1
    before = os.environ.get("ONENET_WAREHOUSE")
    with districts.active(east):
        from onenet import settings

        assert settings.warehouse_path() == east.warehouse
    assert os.environ.get("ONENET_WAREHOUSE") == before  # restored
    for bad, says in ((CONFIG.replace('"east"', '"East-1"'), "must match"),
                      (CONFIG.replace('name = "west"', 'name = "east"'), "each name once"),
                      (CONFIG.replace('hotline =', 'hotlines ='), "unknown source"),
                      (CONFIG.replace('warehouse = "w.duckdb"', 'warehouse = "w.duckdb"\nhome_dir = 1'), "unknown key"),
                      (CONFIG.replace('home = "/srv/city/west"\nwarehouse = "w.duckdb"',
                                      f'warehouse = "{east.warehouse}"'), "share the warehouse")):
        path.write_text(bad, encoding="utf-8")
        with pytest.raises(districts.DistrictsMisconfigured, match=says):
            districts.load(path)


def test_a_district_task_runs_in_its_own_warehouse(tmp_path, monkeypatch, village, airflow_db):
    """A district's DAG run with dag.test(): the sync lands in that district's warehouse, not the default one."""
    config = tmp_path / "districts.toml"
    config.write_text(f'[[district]]\nname = "north"\nsimulated = "{village.root}"\n', encoding="utf-8")
    (north,) = districts.load(config)
    monkeypatch.setenv("ONENET_DISTRICTS", str(config))  # dag.test() parses the folder again: with it
    monkeypatch.setenv("ONENET_WAREHOUSE", str(tmp_path / "default.duckdb"))
    from airflow.models.pool import Pool

    Pool.create_or_update_pool(north.pool, slots=1, description="test", include_deferred=False)
    dag = orch.load_dags(DAGS)["onenet_city_cases__north"]
    report = orch.run_dag(dag, datetime(2024, 1, 2, tzinfo=UTC))
    assert report.state == "success" and report.landed > 0, report.summary()
    assert north.warehouse.exists() and not (tmp_path / "default.duckdb").exists()
    assert os.environ["ONENET_WAREHOUSE"] == str(tmp_path / "default.duckdb")  # the task restored it
