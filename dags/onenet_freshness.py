"""
### onenet_freshness — staff hear when a source stays stale beyond its tolerance

Every hour (Asia/Shanghai), **check_freshness** reads `meta.source_freshness` (each source's newest
real data instant, from its data rows, never from a file's name) and sends one alert per source
whose newest data is older than its tolerance (`onenet.alerts.STALE_AFTER`: hotline 3 h, city
cases 6 h, health codes 48 h — the export of day D arrives the next morning —, grid registry
7 days), to the group robot of the Airflow Connection `onenet_alerts` (DingTalk or WeCom), by
e-mail (`onenet_alerts_email`) if the robot cannot be reached. The message, in Chinese, names the
source, how old its data is and the last good data time; it carries no personal data. A stale
source alerts again every hour until it has new data.

Pool `onenet_duckdb` (it opens the warehouse read-only, which a writer would refuse), priority 40,
timeout 5 min (one small query).
"""

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, dag, task

from onenet import districts
from onenet.dag_factory import (
    START_DATE,
    dag_args,
    dag_id,
    data_interval_timetable,
    district_tags,
    each_district,
    pool,
)
from onenet.districts import District


def freshness(district: District | None) -> DAG:
    """onenet_freshness, or onenet_freshness__<name> for a district (its warehouse and pool)."""

    @dag(dag_id=dag_id("onenet_freshness", district), schedule=data_interval_timetable("0 * * * *"),
         start_date=START_DATE, catchup=False, max_active_runs=1, default_args=dag_args("check", district),
         doc_md=__doc__, tags=["onenet", "alerts", "hourly", *district_tags(district)])
    def onenet_freshness() -> None:
        @task(pool=pool(district), execution_timeout=timedelta(minutes=5))
        def check_freshness() -> dict[str, Any]:
            """Alert on every source staler than its tolerance."""
            from onenet import alerts

            with districts.active(district):
                return alerts.check_freshness()

        check_freshness()

    return onenet_freshness()


globals().update(each_district(freshness))
