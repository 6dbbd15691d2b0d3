"""The merge and daily-extract DAGs end to end with dag.test(); active once onenet.pipeline has merge() / extract()."""

from __future__ import annotations

import os
import stat
from datetime import datetime, time, timedelta
from pathlib import Path

import duckdb
import pytest

from onenet import orchestration as orch
from onenet import pipeline
from tests.dags.conftest import VILLAGE_DAY
from warehouse import audit_log
from warehouse.publish.snapshot import communities

needs_merge = pytest.mark.skipif(not hasattr(pipeline, "merge"),
                                 reason="onenet.pipeline.merge() arrives with the merge step (issue #5)")
needs_extract = pytest.mark.skipif(not hasattr(pipeline, "extract"),
                                   reason="onenet.pipeline.extract() arrives with the extracts (issue #7)")


@pytest.fixture
def staged(dags, village, onenet_env):
    """Every source DAG run once for the village's day: all four staging Assets have an event."""
    for source in ("grid_registry", "health_codes", "hotline", "city_cases"):
        report = orch.run_dag(dags[f"onenet_{source}"], orch.day_end_utc(village.day(VILLAGE_DAY)))
        assert report.state == "success", report.summary()
    return onenet_env


@needs_merge
def test_the_merge_dag_resolves_the_staged_sources(dags, staged):
    report = orch.run_dag(dags["onenet_merge"], None)  # an Asset-triggered run has no data interval
    assert report.state == "success", report.summary()
    assert report.tasks == {"merge": "success"}
    con = duckdb.connect(str(staged), read_only=True)
    try:
        linked = con.execute("select count(*) from core.person_source").fetchone()[0]
        merge_run = con.execute("select run_id from meta.merge_runs").fetchone()[0]
    finally:
        con.close()
    assert linked > 0
    # The merge published every audience's snapshot, named by its run.
    published = Path(os.environ["ONENET_PUBLISHED"])
    assert (published / "analyst" / "current" / "snapshot.duckdb").exists()
    assert communities(published) and (published / "analyst" / "current").resolve().name.endswith(merge_run)
    again = orch.run_dag(dags["onenet_merge"], None)  # idempotent: the same staged data, the same core
    assert again.state == "success", again.summary()
    full = orch.run_dag(dags["onenet_merge"], None, conf={"full": True})  # the engineer's full re-run
    assert full.state == "success", full.summary()
    con = duckdb.connect(str(staged), read_only=True)
    try:
        assert con.execute("select count(*) from core.person_source").fetchone()[0] == linked
        modes = [r[0] for r in con.execute("select parameters->>'$.mode' from meta.resolution_runs "
                                           "order by started_at").fetchall()]
    finally:
        con.close()
    assert modes == ["full", "incremental", "full"]


@needs_merge
@needs_extract
def test_the_daily_extract_dag_writes_the_day_before_its_seven_oclock_run(dags, village, staged):
    assert orch.run_dag(dags["onenet_merge"], None).state == "success"
    day = village.day(VILLAGE_DAY)
    seven = datetime.combine(day + timedelta(days=1), time(7), tzinfo=orch.BEIJING)
    assert orch.extract_day(seven) == day
    report = orch.run_dag(dags["onenet_daily_extract"], seven)
    assert report.state == "success", report.summary()
    assert report.tasks == {"extract": "success", "reports": "success", "dashboard": "success"}
    exports = Path(os.environ["ONENET_EXPORTS"])
    # One folder per audience: community/<name>/extracts/<day>/, analyst/reports, analyst/dashboard.
    assert list((exports / "community").glob(f"*/extracts/{day:%Y%m%d}/*.xlsx"))
    assert (exports / "analyst" / "reports" / f"epidemic_daily_{day:%Y-%m-%d}.xlsx").exists()
    assert (exports / "analyst" / "dashboard" / "index.html").exists()
    # Written by the run from the snapshots it published first: every community's workbook, private,
    # each in the access log after the run's publish record.
    workbooks = list((exports / "community").glob(f"*/extracts/{day:%Y%m%d}/*_{day:%Y%m%d}.xlsx"))
    assert len(workbooks) == len(communities(Path(os.environ["ONENET_PUBLISHED"]))) > 0
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o640 for p in workbooks)
    actions = [r["action"] for r in audit_log.tail(100) if r["outcome"] == "allowed"]
    assert actions.count("publish") == 2  # the merge's, then the extract run's
    after_publish = actions[len(actions) - actions[::-1].index("publish"):]
    assert after_publish.count("extract") == len(workbooks)
    assert {"report", "dashboard"} <= set(actions)
    # Triggered without a logical date (CLI, UI, REST API): the Beijing day before its run_after.
    before = datetime.now(orch.BEIJING).date() - timedelta(days=1)
    manual = orch.run_dag(dags["onenet_daily_extract"], None)
    assert manual.state == "success", manual.summary()
    after = datetime.now(orch.BEIJING).date() - timedelta(days=1)
    assert {before, after} & {d for d in (before, after)
                              if list((exports / "community").glob(f"*/extracts/{d:%Y%m%d}/*.xlsx"))}
