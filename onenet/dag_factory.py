"""The shape every onenet source DAG shares: [wait for the day's file →] sync → validate → publish an Asset.

The DAG files in dags/ call `source_dag(...)` with their schedule and docs; each task calls one
function of onenet.orchestration. Only Airflow's SDK and onenet.orchestration (no DuckDB, no
Great Expectations) are imported here, so parsing a DAG file stays cheap.

Every builder takes a `district` (onenet.districts): None builds today's single-district DAG; a
district gets the same DAG under `<dag_id>__<name>`, with its own pool, Assets and settings
(`each_district` builds one per configured district).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import (
    DAG,
    Asset,
    BaseNotifier,
    BaseSensorOperator,
    CronDataIntervalTimetable,
    dag,
    task,
)

from onenet import districts
from onenet import orchestration as orch
from onenet.districts import District

TIMEZONE = "Asia/Shanghai"
START_DATE = datetime(2024, 1, 1, tzinfo=orch.BEIJING)

class StaffAlert(BaseNotifier):
    """Tell staff in their group chat (DingTalk / WeCom robot, e-mail as fallback) that a task failed
    for good — its retries spent: DAG, task, source, error and the source's last good data time
    (onenet.alerts.task_failed). A failed delivery is logged, never raised: the task failed already."""

    template_fields = ()

    def notify(self, context: Any) -> None:
        from onenet import alerts

        try:
            alerts.task_failed(context)
        except alerts.AlertNotDelivered as exc:
            self.log.error("%s", exc)


# Retries with exponential backoff (1, 2, 4 … minutes, at most 15) and a hard timeout per try;
# a task that fails for good alerts staff (StaffAlert).
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "onenet-data-engineering",
    "retries": 3,
    # ONENET_RETRY_DELAY_SECONDS: a test cluster that kills workers on purpose retries sooner.
    "retry_delay": timedelta(seconds=float(os.environ.get("ONENET_RETRY_DELAY_SECONDS") or 60)),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=15),
    "execution_timeout": timedelta(minutes=30),
    "on_failure_callback": [StaffAlert()],
}

# Who goes first when tasks wait for the warehouse's one pool slot: the scheduler hands a freed slot
# to the queued task of highest priority_weight. "absolute" keeps each weight as written (the
# default rule adds up downstream tasks, so a DAG's shape would decide). A source's sync and
# validate before a merge (the merge should see them), the merge before the extract (the extract
# reads what the merge made), the daily extract before a reconciliation (07:00 has staff waiting;
# a reconciliation catches up what a cursor missed and can wait).
PRIORITY = {"source": 40, "merge": 30, "extract": 20, "reconcile": 10, "check": 40}

# Timeouts per try, from the measured district run (bench/README.md, "End to end at district scale":
# 1.3M residents on the 2-core machine; the worst figure of any recorded run in brackets), with
# about 6-40x headroom for a loaded machine and real sources slower than loopback simulators. A try
# that runs past them is stuck (a hung connection, a machine swapping), and a retry is the cure.
TIMEOUTS = {
    "sync": timedelta(minutes=20),       # initial load 1.9-20.5 s per source (29.7 s); next day <= 1 s
    "validate": timedelta(minutes=15),   # initial 0.9-9.7 s per source (109.6 s); next day <= 4 s
    "publish": timedelta(minutes=5),     # writes one Asset event
    "merge": timedelta(minutes=30),      # initial (full) 181.6 s (316.8 s); next day 34.7 s
    "extract": timedelta(minutes=15),    # all communities 15.3 s, plus publishing the snapshots again
    "reports": timedelta(minutes=5),     # both templates 0.2 s
    "dashboard": timedelta(minutes=5),   # dashboard + data dictionary 1.1 s
    "reconcile": timedelta(minutes=30),  # reads what an initial sync reads (<= 10.2 s) plus a key diff
    "city": timedelta(minutes=60),       # city build 4 x 30k: 122 s (62 s), again 31 s; target 4 x 300k < 10 min
}


def _minutes(kind: str) -> str:
    return f"{TIMEOUTS[kind].total_seconds() / 60:.0f} min"


SOURCE_DOC = f"""

**Priority {PRIORITY["source"]}** (`weight_rule` absolute): a source's sync and validate take the
warehouse's slot before a merge ({PRIORITY["merge"]}), the daily extract ({PRIORITY["extract"]}) and
reconciliations ({PRIORITY["reconcile"]}). **Timeouts per try**, from the district run at 1.3M residents
(bench/README.md): sync {_minutes("sync")} (initial load 1.9-20.5 s per source, 29.7 s at worst;
the next day at most 1 s), validate {_minutes("validate")} (0.9-9.7 s, 109.6 s at worst), publish
{_minutes("publish")}.
"""

RECONCILE_DOC = f"""

**Priority {PRIORITY["reconcile"]}** (`weight_rule` absolute): the last to get the warehouse's slot,
behind syncs ({PRIORITY["source"]}), merges ({PRIORITY["merge"]}) and the daily extract
({PRIORITY["extract"]}). **Timeouts per try**: reconcile {_minutes("reconcile")} (it reads what an
initial sync reads — at 1.3M residents at most 10.2 s — plus one key diff), validate
{_minutes("validate")}, publish {_minutes("publish")}.
"""


def dag_args(kind: str, district: District | None = None) -> dict[str, Any]:
    """DEFAULT_ARGS with the priority of a kind of DAG (PRIORITY): source, merge, extract or reconcile;
    a district with a Celery queue sends its tasks there."""
    args = {**DEFAULT_ARGS, "priority_weight": PRIORITY[kind], "weight_rule": "absolute"}
    if district is not None and district.queue:
        args["queue"] = district.queue
    return args


def pool(district: District | None) -> str:
    """The pool of the warehouse's one writer: onenet_duckdb, or the district's own."""
    return orch.POOL if district is None else district.pool


def dag_id(base: str, district: District | None) -> str:
    return base if district is None else district.dag_id(base)


def district_tags(district: District | None) -> list[str]:
    return [] if district is None else [f"district:{district.name}"]


def _asset(uri: str, name: str, group: str, district: District | None, **extra: Any) -> Asset:
    if district is not None:
        uri, name = district.asset_uri(uri), f"{name}__{district.name}"
    return Asset(uri=uri, name=name, group=group, **extra)


def source_asset(source: str, district: District | None = None) -> Asset:
    """The Asset of a source's staged tables (one per source: its tables are validated together)."""
    return _asset(orch.asset_uri(source), f"onenet_staging_{source}", "onenet_staging", district,
                  extra={"tables": list(orch.STAGED_TABLES[source])})


def core_asset(district: District | None = None) -> Asset:
    return _asset(orch.CORE_ASSET_URI, "onenet_core", "onenet_core", district)


def extracts_asset(district: District | None = None) -> Asset:
    return _asset(orch.EXTRACTS_ASSET_URI, "onenet_daily_extracts", "onenet_exports", district)


def city_snapshot_asset(district: District) -> Asset:
    """A district's published city snapshot (<published>/city/current); its merge emits it when a city is configured."""
    from onenet.city import SNAPSHOT_ASSET_URI

    return _asset(SNAPSHOT_ASSET_URI, "onenet_city_snapshot", "onenet_city", district)


CORE_ASSET = core_asset()
EXTRACTS_ASSET = extracts_asset()


def each_district(build: Callable[..., DAG | None]) -> dict[str, DAG]:
    """`build(district=…)`'s DAG for every district $ONENET_DISTRICTS lists, or its one DAG (district
    None) when none is listed; by dag_id, for a DAG file's globals()."""
    dags = (build(district=d) for d in districts.for_dags())
    return {d.dag_id: d for d in dags if d is not None}


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
               wait_for_daily_file: bool = False, district: District | None = None) -> DAG:
    """Build the DAG `onenet_<source>`: [wait_for_file →] sync → validate → publish.

    `schedule` is a data_interval_timetable(cron): a run triggered without a logical date covers
    up to its run_after (orch.run_interval) from the start of that cron's latest complete interval.
    """
    asset = source_asset(source, district)
    cron = schedule.expression

    @dag(dag_id=dag_id(f"onenet_{source}", district), schedule=schedule, start_date=START_DATE, catchup=False,
         max_active_runs=1, default_args=dag_args("source", district), doc_md=(doc_md or "") + SOURCE_DOC,
         tags=["onenet", "source", source, *tags, *district_tags(district)], dagrun_timeout=timedelta(hours=20))
    def source_pipeline() -> None:
        @task(pool=pool(district), execution_timeout=TIMEOUTS["sync"])
        def sync(data_interval_start: datetime | None = None, data_interval_end: datetime | None = None,
                 dag_run: Any = None) -> dict[str, Any]:
            """Land what the source holds and the warehouse does not (incremental, idempotent)."""
            from airflow.sdk.exceptions import AirflowFailException

            start, end = task_interval(cron, data_interval_start, data_interval_end, dag_run)
            try:
                with districts.active(district):
                    return orch.sync_interval(source, start, end)
            except orch.SyncMisconfigured as exc:  # a wrong connection: fail now, retries cannot fix it
                raise AirflowFailException(str(exc)) from exc

        @task(pool=pool(district), execution_timeout=TIMEOUTS["validate"])
        def validate(synced: Any) -> dict[str, Any]:  # Any: at parse time it is an XComArg
            """Great Expectations on the new batches: critical failures to quarantine, the rest to staging."""
            with districts.active(district):
                return orch.validate_source(source)

        @task(outlets=[asset], execution_timeout=TIMEOUTS["publish"])
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
            WaitForHealthFile(task_id="wait_for_file", cron=cron, district=district) >> synced
        publish(synced, validate(synced))

    return source_pipeline()


def reconcile_dag(source: str, *, doc_md: str | None, district: District | None = None) -> DAG | None:
    """Build the DAG `onenet_reconcile_<source>`: reconcile → validate → publish, on the cadence the
    connector's settings declare (RECONCILE_SCHEDULE, Beijing time); None when it declares none.

    The difference a reconciliation lands goes through the same validation and Asset as a sync,
    so the merge picks it up.
    """
    cron = orch.reconcile_schedule(source)
    if cron is None:
        return None
    asset = source_asset(source, district)

    @dag(dag_id=dag_id(f"onenet_reconcile_{source}", district), schedule=data_interval_timetable(cron),
         start_date=START_DATE, catchup=False, max_active_runs=1, default_args=dag_args("reconcile", district),
         doc_md=(doc_md or "") + RECONCILE_DOC, tags=["onenet", "reconcile", source, *district_tags(district)],
         dagrun_timeout=timedelta(hours=6))
    def reconcile_pipeline() -> None:
        @task(pool=pool(district), execution_timeout=TIMEOUTS["reconcile"])
        def reconcile(data_interval_start: datetime | None = None, data_interval_end: datetime | None = None,
                      dag_run: Any = None) -> dict[str, Any]:
            """Compare the source's complete current state with raw; land the difference and tombstones."""
            from airflow.sdk.exceptions import AirflowFailException

            start, end = task_interval(cron, data_interval_start, data_interval_end, dag_run)
            try:
                with districts.active(district):
                    return orch.reconcile_source(source, start, end)
            except orch.SyncMisconfigured as exc:
                raise AirflowFailException(str(exc)) from exc

        @task(pool=pool(district), execution_timeout=TIMEOUTS["validate"])
        def validate(reconciled: Any) -> dict[str, Any]:
            """Great Expectations on what the reconciliation landed (tombstones pass as they are)."""
            with districts.active(district):
                return orch.validate_source(source)

        @task(outlets=[asset], execution_timeout=TIMEOUTS["publish"])
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


def district_merge_dag(district: District | None, *, doc_md: str | None) -> DAG | None:
    """`onenet_merge__<name>`: dags/onenet_merge.py's merge for one district, on its own staging Assets.

    Built here, not by copying the DAG file: dags/onenet_merge.py calls this for each configured
    district and keeps its own DAG for the single-district default.
    """
    from airflow.sdk import Param

    if district is None:  # the single-district merge is dags/onenet_merge.py's own
        return None
    by_uri = {source_asset(s, district).uri: s for s in orch.SOURCES}
    staged: Any = source_asset(orch.SOURCES[0], district)
    for source in orch.SOURCES[1:]:
        staged = staged | source_asset(source, district)  # OR: as dags/onenet_merge.py
    outlet = core_asset(district)

    @dag(dag_id=district.dag_id("onenet_merge"), schedule=staged, start_date=START_DATE, catchup=False,
         max_active_runs=1, default_args=dag_args("merge", district), doc_md=doc_md,
         tags=["onenet", "merge", "asset-triggered", *district_tags(district)],
         params={"full": Param(False, type="boolean",
                               description="Resolve every record again and re-estimate the match parameters")})
    def merge_pipeline() -> None:
        @task(pool=district.pool, outlets=[outlet, *([city_snapshot_asset(district)] if districts.city() else [])],
              execution_timeout=TIMEOUTS["merge"])
        def merge(triggering_asset_events: Any = None, params: Any = None) -> dict[str, Any]:
            """Entity resolution: staging → core, in the district's warehouse."""
            triggered = sorted({by_uri[a.uri] for a in (triggering_asset_events or {}) if a.uri in by_uri})
            with districts.active(district):
                return orch.merge_sources(triggered, full=bool((params or {}).get("full", False)))

        merge()

    return merge_pipeline()


def city_dag(city: districts.City, *, doc_md: str | None) -> DAG:
    """`onenet_city`: the city build, on ANY district's city-snapshot Asset (dags/onenet_city.py)."""
    from airflow.sdk import AssetAny

    from onenet import city as city_step

    by_uri = {city_snapshot_asset(d).uri: d.name for d in city.districts}
    args = dag_args("merge")  # a merge of the districts' merges: same retries, priority, alert
    if city.queue:
        args["queue"] = city.queue

    @dag(dag_id="onenet_city", schedule=AssetAny(*(city_snapshot_asset(d) for d in city.districts)),
         start_date=START_DATE, catchup=False, max_active_runs=1, default_args=args, doc_md=doc_md,
         tags=["onenet", "city", "asset-triggered"])
    def city_pipeline() -> None:
        @task(pool=city.pool, outlets=[Asset(uri=city_step.CITY_ASSET_URI, name="onenet_city_core", group="onenet_city")],
              execution_timeout=TIMEOUTS["city"])
        def build_city(triggering_asset_events: Any = None) -> dict[str, Any]:
            """Check every district's city snapshot (missing or stale: fail naming it), then build the city."""
            announced = city_step.announced(triggering_asset_events, by_uri)
            return city_step.build_city(city, announced, announced_within=TIMEOUTS["merge"])

        build_city()

    return city_pipeline()


class WaitForHealthFile(BaseSensorOperator):
    """Wait, deferred, until the health-code export of the run's Beijing day is in the drop folder.

    Looks once; if the file is not there, hands the wait to the triggerer with the standard
    provider's FileTrigger (a glob on 健康码日报_YYYYMMDD*, every `poke_interval` seconds), so no
    worker slot or process is held while the upload is late. When the trigger fires, the exact
    check runs again (the day's name, .csv or .xlsx, a re-send, not empty) and defers again if a
    near-miss woke it. Gives up `timeout` seconds after the first look (0: look once). It does
    not touch the warehouse, so it takes no pool slot. Needs `airflow triggerer` running.
    """

    def __init__(self, *, cron: str, poke_interval: float = 300, timeout: float = 20 * 3600,
                 execution_timeout: timedelta = timedelta(minutes=2), district: District | None = None,
                 **kwargs: Any) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, execution_timeout=execution_timeout,
                         **kwargs)
        self.cron = cron
        self.district = district

    def poke(self, context: Any) -> bool:
        return bool(self._files(context)[1])

    def _files(self, context: Any) -> tuple[Any, list[str]]:
        start, _ = task_interval(self.cron, context.get("data_interval_start"), context.get("data_interval_end"),
                                 context.get("dag_run"))
        day = orch.interval_day(start)
        with districts.active(getattr(self, "district", None)):
            folder = orch.health_drop_folder()
        self.log.info("health_codes: looking for 健康码日报_%s in %s", f"{day:%Y%m%d}", folder)
        return folder / f"健康码日报_{day:%Y%m%d}*", orch.health_files_for(day, folder)

    def execute(self, context: Any, deadline: float | None = None) -> list[str]:
        import time

        from airflow.providers.standard.triggers.file import FileTrigger
        from airflow.sdk.exceptions import AirflowSensorTimeout

        pattern, files = self._files(context)
        if files:
            return files
        deadline = deadline if deadline is not None else time.time() + float(self.timeout)
        left = deadline - time.time()
        if left <= 0:
            raise AirflowSensorTimeout(f"health_codes: no file matching {pattern.name} arrived in {pattern.parent} "
                                       f"within {float(self.timeout):.0f} s; ask the health-code platform to send it")
        self.defer(trigger=FileTrigger(str(pattern), poke_interval=float(self.poke_interval)),
                   method_name="execute_complete", kwargs={"deadline": deadline}, timeout=timedelta(seconds=left))
        return []  # not reached: defer() raises

    def execute_complete(self, context: Any, event: Any = None, deadline: float | None = None) -> list[str]:
        """The trigger saw a matching name: check exactly, and wait on if it was a near-miss."""
        return self.execute(context, deadline=deadline)
