"""
### onenet_daily_extract — the community staff's daily Excel, 07:00 Beijing time

Runs every day at 07:00 Asia/Shanghai (a timezone-aware cron; the run's logical date is that
07:00), after the night's merges, and writes the extracts of the **previous Beijing day**.

- **extract** (pool `onenet_duckdb`, it logs personal-data reads in the warehouse):
  `onenet.pipeline.extract(day)` — one workbook per community plus the district's overview; it
  states which source is stale and since when. Publishes the Asset `file://onenet/exports/daily`.

- **reports** (pool `onenet_duckdb`): fills every shipped report template (the community
  epidemic-prevention daily, the street hotline monthly) for the same day.
- **dashboard** (pool `onenet_duckdb`): rebuilds the analysts' static dashboard and the data
  dictionary of the marts.

A re-run or backfill of a past day rewrites that day's files from the warehouse as it is now.
"""

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import CronTriggerTimetable, dag, task

from onenet import orchestration as orch
from onenet.dag_factory import DEFAULT_ARGS, EXTRACTS_ASSET, START_DATE, TIMEZONE


@dag(schedule=CronTriggerTimetable("0 7 * * *", timezone=TIMEZONE, interval=timedelta(days=1)),
     start_date=START_DATE, catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS,
     doc_md=__doc__, tags=["onenet", "extract", "daily"])
def onenet_daily_extract() -> None:
    @task(pool=orch.POOL, outlets=[EXTRACTS_ASSET], execution_timeout=timedelta(hours=1))
    def extract(logical_date: datetime | None = None) -> dict[str, Any]:
        """Write yesterday's (Beijing) extracts."""
        assert logical_date is not None
        return orch.extract_for_day(orch.extract_day(logical_date))

    @task(pool=orch.POOL, execution_timeout=timedelta(hours=1))
    def reports(logical_date: datetime | None = None) -> dict[str, Any]:
        """Fill the report templates for yesterday (Beijing)."""
        assert logical_date is not None
        return orch.reports_for_day(orch.extract_day(logical_date))

    @task(pool=orch.POOL, execution_timeout=timedelta(minutes=30))
    def dashboard() -> dict[str, Any]:
        """Rebuild the analyst dashboard and the data dictionary."""
        return orch.rebuild_dashboard()

    extract() >> reports() >> dashboard()


onenet_daily_extract()
