"""DAG integrity: every DAG file imports fast and without secrets; schedules, retries, tags, pools, Assets set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from onenet import orchestration as orch
from tests.dags.conftest import DAGS, REPO

EXPECTED = {"onenet_hotline", "onenet_city_cases", "onenet_grid_registry", "onenet_health_codes",
            "onenet_merge", "onenet_daily_extract", "onenet_freshness",
            "onenet_reconcile_grid_registry", "onenet_reconcile_hotline", "onenet_reconcile_city_cases",
            "onenet_reconcile_health_codes"}
WRITERS = {"sync", "validate", "merge", "extract", "reports", "dashboard", "reconcile",
           "check_freshness"}  # check_freshness only reads, but a read-only open fails while a writer holds the file  # tasks that open the DuckDB warehouse for writing

_PARSE = """
import json, sys, time
import airflow.sdk  # Airflow itself is not what we time
from airflow.dag_processing.dagbag import DagBag
began = time.monotonic()
bag = DagBag(dag_folder=sys.argv[1], known_pools={"default_pool", "onenet_duckdb"})
seconds = time.monotonic() - began
heavy = sorted(m for m in sys.modules if m.split(".")[0] in
               ("duckdb", "great_expectations", "pyarrow", "connectors", "expectations", "warehouse", "simulators"))
print(json.dumps({"seconds": seconds, "dags": sorted(bag.dags), "errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "heavy": heavy, "files": len(bag.dagbag_stats)}))
"""


def test_the_dags_folder_parses_without_secrets_or_heavy_imports(tmp_path):
    # A clean environment: no connection URIs, no simulator credentials, no onenet settings.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "ONENET_"))}
    env.update(orch.airflow_env(tmp_path / "airflow", DAGS))
    out = subprocess.run([sys.executable, "-c", _PARSE, str(DAGS)], env=env, cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert set(result["dags"]) == EXPECTED
    assert result["heavy"] == [], "DAG files must import heavy modules inside tasks only"
    # How long parsing took is printed, not asserted: tests never assert timings (a loaded machine
    # doubles it); what keeps it fast is that no heavy module is imported, asserted above.
    print(f"parsing the dags folder took {result['seconds']:.2f} s")


@pytest.fixture(scope="module")
def bag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS), known_pools={"default_pool", orch.POOL})
    assert bag.import_errors == {}
    return bag


def test_every_dag_is_well_formed(bag):
    from airflow.utils.dag_cycle_tester import check_cycle

    assert set(bag.dags) == EXPECTED
    for dag in bag.dags.values():
        check_cycle(dag)  # raises on a cycle
        assert dag.doc_md and dag.doc_md.strip().startswith("###"), dag.dag_id
        assert "onenet" in dag.tags and len(dag.tags) >= 3, dag.dag_id
        assert dag.max_active_runs == 1 and dag.catchup is False, dag.dag_id
        assert _core(dag).summary not in ("None", "", "@once"), dag.dag_id
        assert dag.start_date is not None, dag.dag_id
        for t in dag.tasks:
            assert t.retries >= 3 and t.retry_exponential_backoff, (dag.dag_id, t.task_id)
            assert t.max_retry_delay is not None, (dag.dag_id, t.task_id)
            assert t.execution_timeout is not None and t.execution_timeout <= timedelta(hours=2), (dag.dag_id, t.task_id)
            if t.task_id in WRITERS:
                assert t.pool == orch.POOL, (dag.dag_id, t.task_id)
            else:
                assert t.pool != orch.POOL, (dag.dag_id, t.task_id)  # readers must not block writers


def test_source_dags_have_the_shape_and_schedule_of_their_source(bag):
    # The data interval a run for "the end of 4 November, Beijing time" (16:00 UTC) covers.
    import pendulum

    end = pendulum.datetime(2026, 11, 4, 16, tz="UTC")
    intervals = {"hotline": timedelta(minutes=15), "city_cases": timedelta(hours=1),
                 "grid_registry": timedelta(days=1), "health_codes": timedelta(days=1)}
    for source, length in intervals.items():
        dag = bag.dags[f"onenet_{source}"]
        interval = _core(dag).infer_manual_data_interval(run_after=end)
        assert (interval.start, interval.end) == (end - length, end), source
        assert orch.interval_day(interval.start).isoformat() == "2026-11-04"
        assert dag.task_dict["sync"].downstream_task_ids == {"validate", "publish"}
        assert dag.task_dict["validate"].downstream_task_ids == {"publish"}
        assert [o.uri for o in dag.task_dict["publish"].outlets] == [orch.asset_uri(source)]
    sensor = bag.dags["onenet_health_codes"].task_dict["wait_for_file"]
    assert sensor.downstream_task_ids == {"sync"} and sensor.pool != orch.POOL
    assert sensor.poke_interval >= 60 and sensor.timeout >= 3600
    assert sensor.start_trigger_args is None and hasattr(sensor, "execute_complete")  # defers from execute


def test_syncs_go_before_a_merge_and_the_merge_before_the_extract(bag):
    """issue #16: the pool hands its one slot to the queued task of highest priority_weight."""
    def weights(dag_id: str) -> set[int]:
        dag = bag.dags[dag_id]
        assert {t.weight_rule for t in dag.tasks} == {"absolute"} or all(
            str(t.weight_rule).endswith("absolute") for t in dag.tasks), dag_id
        return {t.priority_weight for t in dag.tasks}

    sources = set().union(*(weights(f"onenet_{s}") for s in orch.SOURCES))
    merge, extract = weights("onenet_merge"), weights("onenet_daily_extract")
    reconcile = set().union(*(weights(d) for d in bag.dags if d.startswith("onenet_reconcile_")))
    assert min(sources) > max(merge) and min(merge) > max(extract) and min(extract) > max(reconcile)


def test_timeouts_fit_the_measured_district_times(bag):
    """Each try's timeout is a few times the worst measured district figure (bench/README.md), not hours."""
    measured = {"sync": 29.7, "validate": 109.6, "merge": 316.8, "extract": 15.3, "reports": 0.2,
                "dashboard": 1.1}
    for dag in bag.dags.values():
        for t in dag.tasks:
            if t.task_id in measured:
                seconds = t.execution_timeout.total_seconds()
                assert 5 * measured[t.task_id] <= seconds <= max(60 * measured[t.task_id], 300), (dag.dag_id, t.task_id)
                assert f"{seconds / 60:.0f} min" in dag.doc_md, (dag.dag_id, t.task_id)


def test_merge_runs_on_any_staged_source_and_the_extract_at_seven_beijing_time(bag):
    from airflow.sdk import AssetAny

    merge = bag.dags["onenet_merge"]
    condition = merge.timetable.asset_condition
    assert isinstance(condition, AssetAny)
    assert {a.uri for a in condition.objects} == {orch.asset_uri(s) for s in orch.SOURCES}
    assert [o.uri for o in merge.task_dict["merge"].outlets] == [orch.CORE_ASSET_URI]

    from airflow.timetables.base import DataInterval, TimeRestriction

    extract = _core(bag.dags["onenet_daily_extract"])
    import pendulum

    seven = pendulum.datetime(2026, 11, 3, 23, tz="UTC")
    after = DataInterval(seven - timedelta(days=1), seven)
    nxt = extract.next_dagrun_info(last_automated_data_interval=after,
                                   restriction=TimeRestriction(earliest=None, latest=None, catchup=True))
    assert nxt.run_after == datetime(2026, 11, 4, 23, tzinfo=UTC)  # 07:00 on 5 November in Beijing
    assert orch.extract_day(nxt.run_after).isoformat() == "2026-11-04"


def _core(dag):
    from airflow.serialization.encoders import coerce_to_core_timetable

    return coerce_to_core_timetable(dag.timetable)


def test_staged_tables_match_the_validation_suites():
    from expectations.suites import SUITES

    expected: dict[str, set[str]] = {}
    for source, entity in SUITES:
        expected.setdefault(source, set()).add(f"{source}_{entity}")
    assert {s: set(t) for s, t in orch.STAGED_TABLES.items()} == expected


def test_days_of_data_intervals_are_beijing_days():
    # 16:00 UTC is 00:00 the next day in Beijing.
    assert orch.interval_day(datetime(2026, 11, 3, 16, 0, tzinfo=UTC)).isoformat() == "2026-11-04"
    assert orch.interval_day(datetime(2026, 11, 3, 15, 45, tzinfo=UTC)).isoformat() == "2026-11-03"
    # A 07:00 Beijing run (23:00 UTC the evening before) reports on the Beijing day before it.
    assert orch.extract_day(datetime(2026, 11, 4, 23, 0, tzinfo=UTC)).isoformat() == "2026-11-04"
    assert orch.day_end_utc(datetime(2026, 11, 4).date()).astimezone(UTC) == datetime(2026, 11, 4, 16, tzinfo=UTC)


def test_reconciliation_runs_nightly_for_the_registry_and_the_drop_weekly_for_the_apis(bag):
    import pendulum

    from connectors.city_cases import settings as city
    from connectors.grid_registry import settings as registry
    from connectors.health_codes import settings as health
    from connectors.hotline import settings as hotline

    end = pendulum.datetime(2026, 11, 8, 19, tz="UTC")  # Monday 03:00 in Beijing
    lengths = {"grid_registry": timedelta(days=1), "hotline": timedelta(days=7), "city_cases": timedelta(days=7),
               "health_codes": timedelta(days=1)}
    for source, module in (("grid_registry", registry), ("hotline", hotline), ("city_cases", city),
                           ("health_codes", health)):
        dag = bag.dags[f"onenet_reconcile_{source}"]
        assert orch.reconcile_schedule(source) == module.RECONCILE_SCHEDULE
        interval = _core(dag).infer_manual_data_interval(run_after=end)
        assert interval.end - interval.start == lengths[source], source
        assert dag.task_dict["reconcile"].downstream_task_ids == {"validate", "publish"}
        assert [o.uri for o in dag.task_dict["publish"].outlets] == [orch.asset_uri(source)]
