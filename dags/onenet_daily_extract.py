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
"""

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, dag, task

from onenet import orchestration as orch
from onenet.dag_factory import DEFAULT_ARGS, EXTRACTS_ASSET, START_DATE, TIMEZONE, run_end


@dag(schedule=CronTriggerTimetable("0 7 * * *", timezone=TIMEZONE, interval=timedelta(days=1)),
     start_date=START_DATE, catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS,
     doc_md=__doc__, tags=["onenet", "extract", "daily"])
def onenet_daily_extract() -> None:
    @task(pool=orch.POOL, outlets=[EXTRACTS_ASSET], execution_timeout=timedelta(hours=1))
    def extract(data_interval_end: datetime | None = None, dag_run: Any = None) -> dict[str, Any]:
        """Write yesterday's (Beijing) extracts."""
        return orch.extract_for_day(orch.extract_day(run_end(data_interval_end, dag_run)))

    @task(pool=orch.POOL, execution_timeout=timedelta(hours=1))
    def reports(data_interval_end: datetime | None = None, dag_run: Any = None) -> dict[str, Any]:
        """Fill the report templates for yesterday (Beijing)."""
        return orch.reports_for_day(orch.extract_day(run_end(data_interval_end, dag_run)))

    @task(pool=orch.POOL, execution_timeout=timedelta(minutes=30))
    def dashboard() -> dict[str, Any]:
        """Rebuild the analyst dashboard and the data dictionary."""
        return orch.rebuild_dashboard()

    extract() >> reports() >> dashboard()


onenet_daily_extract()
