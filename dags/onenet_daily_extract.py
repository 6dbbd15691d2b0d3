"""
### onenet_daily_extract — the community staff's daily Excel, 07:00 Beijing time

Runs every day at 07:00 Asia/Shanghai (a timezone-aware cron; the run's data interval ends at
that 07:00), after the night's merges, and writes the extracts of the **previous Beijing day**.
A run triggered without a logical date (CLI, UI, REST API) reports on the Beijing day before its
`run_after`: triggered at 10:30 on the 6th, it writes the 5th.

- **extract** (pool `onenet_duckdb`: it publishes every audience's snapshot again from the
  warehouse, so the sources' freshness is today's): then `onenet.pipeline.extract(day)` writes one
  workbook per community from the community snapshots; it states which source is stale and since
  when. Publishes the Asset `file://onenet/exports/daily`.
- **reports** (pool `onenet_duckdb` like every task of the project, though it reads only the
  analysts' snapshot): fills every shipped report template (the community epidemic-prevention
  daily, the street hotline monthly).
- **dashboard** (pool `onenet_duckdb`, for the data dictionary, which reads the warehouse's
  schema): rebuilds the analysts' static dashboard from their snapshot.

The tasks run as the Airflow worker's OS user, which the access file maps to `data_engineer`.
A re-run or backfill of a past day rewrites that day's files from the snapshots as they are now.

**Priority 20** (`weight_rule` absolute): behind the syncs (40) and a merge (30) waiting for the
warehouse's slot, ahead of reconciliations (10). **Timeouts per try** (measured at 1.3M residents,
bench/README.md): extract 15 min (all communities 15.3 s), reports 5 min (0.2 s), dashboard
5 min (1.1 s).

**Deadline 08:00**: an Airflow deadline alert (`DeadlineReference.DAGRUN_LOGICAL_DATE` + 1 h) tells
staff through `onenet.alerts` (group robot, e-mail as fallback) when the 07:00 run is not done by
08:00. A run triggered without a logical date has no such deadline.
"""

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, CronTriggerTimetable, dag, task
from airflow.sdk.definitions.callback import SyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

from onenet import districts
from onenet import orchestration as orch
from onenet.dag_factory import (
    START_DATE,
    TIMEOUTS,
    TIMEZONE,
    dag_args,
    dag_id,
    district_tags,
    each_district,
    extracts_asset,
    pool,
    run_end,
)
from onenet.districts import District


def daily_extract(district: District | None) -> DAG:
    """onenet_daily_extract, or onenet_daily_extract__<name> for a district (its warehouse, pool, Asset)."""
    slot = pool(district)

    @dag(dag_id=dag_id("onenet_daily_extract", district),
         schedule=CronTriggerTimetable("0 7 * * *", timezone=TIMEZONE, interval=timedelta(days=1)),
         start_date=START_DATE, catchup=False, max_active_runs=1, default_args=dag_args("extract", district),
         doc_md=__doc__, tags=["onenet", "extract", "daily", *district_tags(district)],
         # Staff open the workbooks at 08:00: a 07:00 run not done by then alerts them (onenet.alerts).
         deadline=DeadlineAlert(reference=DeadlineReference.DAGRUN_LOGICAL_DATE, interval=timedelta(hours=1),
                                callback=SyncCallback("onenet.alerts.deadline_missed",
                                                      kwargs={"what": "07:00 社区日报导出"})))
    def onenet_daily_extract() -> None:
        @task(pool=slot, outlets=[extracts_asset(district)], execution_timeout=TIMEOUTS["extract"])
        def extract(data_interval_end: datetime | None = None, dag_run: Any = None) -> dict[str, Any]:
            """Write yesterday's (Beijing) extracts."""
            with districts.active(district):
                return orch.extract_for_day(orch.extract_day(run_end(data_interval_end, dag_run)))

        @task(pool=slot, execution_timeout=TIMEOUTS["reports"])
        def reports(data_interval_end: datetime | None = None, dag_run: Any = None) -> dict[str, Any]:
            """Fill the report templates for yesterday (Beijing)."""
            with districts.active(district):
                return orch.reports_for_day(orch.extract_day(run_end(data_interval_end, dag_run)))

        @task(pool=slot, execution_timeout=TIMEOUTS["dashboard"])
        def dashboard() -> dict[str, Any]:
            """Rebuild the analyst dashboard and the data dictionary."""
            with districts.active(district):
                return orch.rebuild_dashboard()

        extract() >> reports() >> dashboard()

    return onenet_daily_extract()


globals().update(each_district(daily_extract))
