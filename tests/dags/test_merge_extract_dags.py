"""The merge and daily-extract DAGs end to end with dag.test(); active once onenet.pipeline has merge() / extract()."""

from __future__ import annotations

import os
from datetime import datetime, time, timedelta
from pathlib import Path

import duckdb
import pytest

from onenet import orchestration as orch
from onenet import pipeline
from tests.dags.conftest import VILLAGE_DAY

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
    finally:
        con.close()
    assert linked > 0
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
    # Triggered without a logical date (CLI, UI, REST API): the Beijing day before its run_after.
    before = datetime.now(orch.BEIJING).date() - timedelta(days=1)
    manual = orch.run_dag(dags["onenet_daily_extract"], None)
    assert manual.state == "success", manual.summary()
    after = datetime.now(orch.BEIJING).date() - timedelta(days=1)
    assert {before, after} & {d for d in (before, after)
                              if list((exports / "community").glob(f"*/extracts/{d:%Y%m%d}/*.xlsx"))}
