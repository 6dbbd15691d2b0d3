"""The shape every onenet source DAG shares: [wait for the day's file →] sync → validate → publish an Asset.

The DAG files in dags/ call `source_dag(...)` with their schedule and docs; each task calls one
function of onenet.orchestration. Only Airflow's SDK and onenet.orchestration (no DuckDB, no
Great Expectations) are imported here, so parsing a DAG file stays cheap.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, PokeReturnValue, dag, task

from onenet import orchestration as orch

TIMEZONE = "Asia/Shanghai"
START_DATE = datetime(2024, 1, 1, tzinfo=orch.BEIJING)

# Retries with exponential backoff (1, 2, 4 … minutes, at most 15) and a hard timeout per try.
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "onenet-data-engineering",
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
    "execution_timeout": timedelta(minutes=30),
}


def source_asset(source: str) -> Asset:
    """The Asset of a source's staged tables (one per source: its tables are validated together)."""
    return Asset(uri=orch.asset_uri(source), name=f"onenet_staging_{source}", group="onenet_staging",
                 extra={"tables": list(orch.STAGED_TABLES[source])})


CORE_ASSET = Asset(uri=orch.CORE_ASSET_URI, name="onenet_core", group="onenet_core")
EXTRACTS_ASSET = Asset(uri=orch.EXTRACTS_ASSET_URI, name="onenet_daily_extracts", group="onenet_exports")


def data_interval_timetable(cron: str) -> CronDataIntervalTimetable:
    """A cron schedule in Beijing time whose runs cover [previous fire, this fire): the data interval."""
    return CronDataIntervalTimetable(cron, timezone=TIMEZONE)


def task_interval(cron: str, data_interval_start: datetime | None, data_interval_end: datetime | None,
                  dag_run: Any) -> tuple[datetime, datetime]:
    """The interval a task's run covers (orch.run_interval); a run without one fails the task at once."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return orch.run_interval(cron, data_interval_start, data_interval_end,
                                 getattr(dag_run, "run_after", None))
    except orch.RunWithoutInterval as exc:  # retrying the same run cannot give it an interval
        raise AirflowFailException(str(exc)) from exc


def run_end(data_interval_end: datetime | None, dag_run: Any) -> datetime:
    """When a task's run ends its interval: the data interval end, or run_after without a logical date."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        return orch.run_end(data_interval_end, getattr(dag_run, "run_after", None))
    except orch.RunWithoutInterval as exc:
        raise AirflowFailException(str(exc)) from exc


def source_dag(source: str, *, schedule: Any, doc_md: str | None, tags: list[str],
               wait_for_daily_file: bool = False) -> DAG:
    """Build the DAG `onenet_<source>`: [wait_for_file →] sync → validate → publish.

    `schedule` is a data_interval_timetable(cron): a run triggered without a logical date covers
    up to its run_after (orch.run_interval) from the start of that cron's latest complete interval.
    """
    asset = source_asset(source)
    cron = schedule.expression

    @dag(dag_id=f"onenet_{source}", schedule=schedule, start_date=START_DATE, catchup=False,
         max_active_runs=1, default_args=DEFAULT_ARGS, doc_md=doc_md,
         tags=["onenet", "source", source, *tags], dagrun_timeout=timedelta(hours=20))
    def source_pipeline() -> None:
        @task(pool=orch.POOL)
        def sync(data_interval_start: datetime | None = None, data_interval_end: datetime | None = None,
                 dag_run: Any = None) -> dict[str, Any]:
            """Land what the source holds and the warehouse does not (incremental, idempotent)."""
            from airflow.sdk.exceptions import AirflowFailException

            start, end = task_interval(cron, data_interval_start, data_interval_end, dag_run)
            try:
                return orch.sync_interval(source, start, end)
            except orch.SyncMisconfigured as exc:  # a wrong connection: fail now, retries cannot fix it
                raise AirflowFailException(str(exc)) from exc

        @task(pool=orch.POOL)
        def validate(synced: Any) -> dict[str, Any]:  # Any: at parse time it is an XComArg
            """Great Expectations on the new batches: critical failures to quarantine, the rest to staging."""
            return orch.validate_source(source)

        @task(outlets=[asset], execution_timeout=timedelta(minutes=5))
        def publish(synced: Any, validated: Any, **context: Any) -> dict[str, Any]:
            """Emit the Asset event (extra: day, interval, tables) only if new rows reached staging."""
            from airflow.sdk.exceptions import AirflowSkipException

            extra = orch.publication(source, synced, validated)
            if extra is None:
                raise AirflowSkipException(f"{source}: nothing new reached staging; no Asset event")
            context["outlet_events"][asset].extra = extra
            return extra

        synced = sync()
        if wait_for_daily_file:
            wait_for_file(cron) >> synced
        publish(synced, validate(synced))

    return source_pipeline()


def reconcile_dag(source: str, *, doc_md: str | None) -> DAG | None:
    """Build the DAG `onenet_reconcile_<source>`: reconcile → validate → publish, on the cadence the
    connector's settings declare (RECONCILE_SCHEDULE, Beijing time); None when it declares none.

    The difference a reconciliation lands goes through the same validation and Asset as a sync,
    so the merge picks it up.
    """
    cron = orch.reconcile_schedule(source)
    if cron is None:
        return None
    asset = source_asset(source)

    @dag(dag_id=f"onenet_reconcile_{source}", schedule=data_interval_timetable(cron), start_date=START_DATE,
         catchup=False, max_active_runs=1, default_args=DEFAULT_ARGS, doc_md=doc_md,
         tags=["onenet", "reconcile", source], dagrun_timeout=timedelta(hours=6))
    def reconcile_pipeline() -> None:
        @task(pool=orch.POOL, execution_timeout=timedelta(hours=2))
        def reconcile(data_interval_start: datetime | None = None, data_interval_end: datetime | None = None,
                      dag_run: Any = None) -> dict[str, Any]:
            """Compare the source's complete current state with raw; land the difference and tombstones."""
            from airflow.sdk.exceptions import AirflowFailException

            start, end = task_interval(cron, data_interval_start, data_interval_end, dag_run)
            try:
                return orch.reconcile_source(source, start, end)
            except orch.SyncMisconfigured as exc:
                raise AirflowFailException(str(exc)) from exc

        @task(pool=orch.POOL)
        def validate(reconciled: Any) -> dict[str, Any]:
            """Great Expectations on what the reconciliation landed (tombstones pass as they are)."""
            return orch.validate_source(source)

        @task(outlets=[asset], execution_timeout=timedelta(minutes=5))
        def publish(reconciled: Any, validated: Any, **context: Any) -> dict[str, Any]:
            """Emit the source's Asset event only if the reconciliation changed staging."""
            from airflow.sdk.exceptions import AirflowSkipException

            extra = orch.publication(source, reconciled, validated)
            if extra is None:
                raise AirflowSkipException(f"{source}: raw matched the source; no Asset event")
            context["outlet_events"][asset].extra = extra
            return extra

        reconciled = reconcile()
        publish(reconciled, validate(reconciled))

    return reconcile_pipeline()


# The day's file: poke every 5 minutes in reschedule mode (no worker slot held between pokes),
# give up after 20 hours; the sensor does not touch the warehouse, so it takes no pool slot.
def wait_for_file(cron: str) -> Any:
    """The sensor task waiting for the health-code export of the run's Beijing day (runs on `cron`)."""

    @task.sensor(mode="reschedule", poke_interval=300, timeout=20 * 3600,
                 execution_timeout=timedelta(minutes=2))
    def wait_for_file(data_interval_start: datetime | None = None, data_interval_end: datetime | None = None,
                      dag_run: Any = None) -> PokeReturnValue:
        """Wait until the health-code export of the interval's Beijing day is in the drop folder."""
        start, _ = task_interval(cron, data_interval_start, data_interval_end, dag_run)
        files = orch.health_files_for(orch.interval_day(start), orch.health_drop_folder())
        return PokeReturnValue(is_done=bool(files), xcom_value=files)

    return wait_for_file()
