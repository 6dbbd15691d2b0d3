"""What the Airflow tasks call: interval-keyed sync, validate and publish steps, and the demo through Airflow.

Importing this module is cheap (no DuckDB, no Airflow): DAG files import it at parse time.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

BEIJING = ZoneInfo("Asia/Shanghai")
POOL = "onenet_duckdb"  # one slot: DuckDB allows one writing process per warehouse file
POOL_DESCRIPTION = "DuckDB warehouse writers (one at a time: DuckDB allows a single writing process)"

# The staged tables each source's validation writes (staging.<source>_<entity>); kept here, not
# read from expectations.suites, so that parsing a DAG file never imports Great Expectations.
# tests/dags/test_dag_integrity.py checks that the two agree.
STAGED_TABLES: dict[str, tuple[str, ...]] = {
    "hotline": ("hotline_tickets",),
    "city_cases": ("city_cases_cases",),
    "grid_registry": ("grid_registry_grids", "grid_registry_households", "grid_registry_residents",
                      "grid_registry_special_groups", "grid_registry_grid_workers"),
    "health_codes": ("health_codes_exports",),
}
SOURCES = tuple(STAGED_TABLES)


def asset_uri(source: str) -> str:
    """The Asset a source DAG publishes once its new rows are validated: its staged tables, as one."""
    return f"duckdb://onenet/staging/{source}"


CORE_ASSET_URI = "duckdb://onenet/core"
EXTRACTS_ASSET_URI = "file://onenet/exports/daily"


class SyncFailed(RuntimeError):
    """A source's sync failed for a data interval; the message names the source and the reason."""


class SyncMisconfigured(SyncFailed):
    """The source's connection settings are wrong: retrying will not help until someone fixes them."""


class ValidationBlocked(RuntimeError):
    """A batch of a source was blocked by a critical expectation; nothing of it reached staging."""


class RunWithoutInterval(RuntimeError):
    """A task found neither a data interval nor a run_after on its run: nothing says what it covers."""


# --- data intervals ---------------------------------------------------------------------------

def interval_day(data_interval_start: datetime) -> date:
    """The Beijing day a data interval belongs to: the local date of its start.

    Every source timetable is cut on Beijing midnights (15 minutes, hours, days), so an interval
    never spans two local days.
    """
    return data_interval_start.astimezone(BEIJING).date()


def extract_day(logical_date: datetime) -> date:
    """The day a 07:00 extract reports on: the Beijing day before the one it runs in."""
    return logical_date.astimezone(BEIJING).date() - timedelta(days=1)


def run_interval(cron: str, data_interval_start: datetime | None, data_interval_end: datetime | None,
                 run_after: datetime | None) -> tuple[datetime, datetime]:
    """The data interval a run covers, with or without a logical date.

    A scheduled run (or one triggered with a logical date) has its data interval. A run triggered
    without one (`airflow dags trigger` as the README shows it, the UI, the REST API) has only
    `run_after`: it covers [start of the latest complete interval of `cron` (Beijing time) at
    `run_after`, `run_after`) — so it belongs to the day the scheduler's latest run would have
    (a nightly source triggered at 12:44 on the 6th: the 5th) and lands everything up to the
    trigger, the same catch-up a scheduled run makes. Raises RunWithoutInterval if the run has neither.
    """
    if data_interval_start is not None and data_interval_end is not None:
        return data_interval_start, data_interval_end
    if run_after is None:
        raise RunWithoutInterval("the run has neither a data interval nor a run_after; "
                                 "trigger it again (with or without --logical-date)")
    from croniter import croniter

    # croniter's get_prev is strictly before its base: a run_after on a fire counts that fire.
    fires = croniter(cron, run_after.astimezone(BEIJING) + timedelta(microseconds=1))
    fires.get_prev(datetime)  # the end of the latest complete interval
    start = fires.get_prev(datetime)
    return start, run_after


def run_end(data_interval_end: datetime | None, run_after: datetime | None) -> datetime:
    """When a run's interval ends: its data interval end, or `run_after` for a run without a logical date."""
    if data_interval_end is not None:
        return data_interval_end
    if run_after is None:
        raise RunWithoutInterval("the run has neither a data interval nor a run_after; trigger it again")
    return run_after


def interval_label(start: datetime, end: datetime) -> str:
    return (f"{start.astimezone(BEIJING):%Y-%m-%d %H:%M}–{end.astimezone(BEIJING):%Y-%m-%d %H:%M} "
            f"Asia/Shanghai (day {interval_day(start).isoformat()})")


def seven_oclock_after(day: date) -> datetime:
    """07:00 Beijing time on the morning after `day`: the daily extract run that reports on `day`."""
    from datetime import time as dtime

    return datetime.combine(day + timedelta(days=1), dtime(7), tzinfo=BEIJING)


def day_end_utc(day: date) -> datetime:
    """24:00 Beijing time of `day`: the logical date whose manual data interval is that whole day."""
    from datetime import time as dtime

    return datetime.combine(day + timedelta(days=1), dtime(0), tzinfo=BEIJING)


# --- health-code files -----------------------------------------------------------------------

_HEALTH_FILE = re.compile(r"^健康码日报_(?P<date>\d{8})(?:[(（]重发\d*[)）])?\.(?:csv|xlsx)$", re.IGNORECASE)


def health_drop_folder() -> Path:
    """The drop folder the health-code connection points at (AIRFLOW_CONN_ONENET_HEALTH_CODES or the simulator's)."""
    from connectors.common.config import connection
    from connectors.health_codes import helpers
    from onenet import settings

    return helpers.drop_folder(connection(settings.CONN_IDS["health_codes"], settings.embedded_uri("health_codes")))


def health_files_for(day: date, folder: Path) -> list[str]:
    """The day's export files in the drop folder (健康码日报_YYYYMMDD[(重发)].csv|xlsx), complete ones only.

    A file still being uploaded under a hidden temp name is not counted; the connector itself
    waits until a visible file is stable before reading it.
    """
    stamp = f"{day:%Y%m%d}"
    names = []
    for path in folder.iterdir():
        m = _HEALTH_FILE.match(path.name)
        if m and m["date"] == stamp and path.is_file() and path.stat().st_size > 0:
            names.append(path.name)
    return sorted(names)


# --- the task bodies --------------------------------------------------------------------------

def sync_interval(source: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Sync `source` for a data interval; return what landed (JSON-able, for XCom).

    The connectors are incremental by state (cursor / watermark / file hashes) and de-duplicate
    by key + record hash, so a run for any interval — a retry, a re-run, a backfill of a past
    day — lands only what the warehouse does not hold yet. Raises SyncFailed naming the source.
    """
    from connectors.common.exceptions import ConfigurationError, ConnectorError
    from onenet import pipeline

    log.info("%s: sync for %s", source, interval_label(start, end))
    try:
        results = pipeline.sync(source, on_result=lambda r: log.info(r.summary()))
    except ConfigurationError as exc:
        raise SyncMisconfigured(f"{source}: sync failed for {interval_label(start, end)}: {exc}") from exc
    except ConnectorError as exc:
        raise SyncFailed(f"{source}: sync failed for {interval_label(start, end)}: {exc}") from exc
    return {
        "source": source, "day": interval_day(start).isoformat(),
        "data_interval": [start.isoformat(), end.isoformat()],
        "rows_in": sum(r.rows_in for r in results), "rows_landed": sum(r.rows_landed for r in results),
        "duplicates_skipped": sum(r.duplicates_skipped for r in results),
        "rows_quarantined": sum(r.rows_quarantined for r in results),
        "loads": [r.load_id for r in results],
    }


def validate_source(source: str) -> dict[str, Any]:
    """Validate what `source` landed since its last validation; raise ValidationBlocked if a batch was blocked."""
    from onenet import pipeline

    results = pipeline.validate(source, on_result=lambda r: log.info(r.summary()))
    blocked = [f"{r.source}.{r.entity}: {r.message}" for r in results if r.status == "blocked"]
    if blocked:
        raise ValidationBlocked(f"{source}: validation blocked — " + " | ".join(blocked))
    return {
        "source": source,
        "tables": {f"{r.source}_{r.entity}": {"status": r.status, "rows_passed": r.rows_passed,
                                              "rows_quarantined": r.rows_quarantined}
                   for r in results if r.status != "nothing"},
        "rows_passed": sum(r.rows_passed for r in results),
        "rows_quarantined": sum(r.rows_quarantined for r in results),
        "docs_url": next((r.docs_url for r in results if r.docs_url), None),
    }


def reconcile_schedule(source: str) -> str | None:
    """The cron (Beijing time) of `source`'s scheduled reconciliation: RECONCILE_SCHEDULE in its
    connector's settings.py, read as text — importing the connector would make DAG parsing heavy.
    None when the connector declares none (no reconciliation DAG for it)."""
    import ast

    path = Path(__file__).resolve().parent.parent / "connectors" / source / "settings.py"
    if not path.is_file():
        return None
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "RECONCILE_SCHEDULE"
                                                for t in node.targets):
            value = ast.literal_eval(node.value)
            return str(value) if value else None
    return None


def reconcile_source(source: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Reconcile `source` (its complete current state against raw); JSON-able counts for XCom.

    The same dict shape as sync_interval, so validate and publish follow as after a sync.
    """
    from connectors.common.exceptions import ConfigurationError, ConnectorError
    from onenet import pipeline

    log.info("%s: reconciliation for %s", source, interval_label(start, end))
    try:
        results = pipeline.reconcile(source, on_result=lambda r: log.info(r.summary()))
    except ConfigurationError as exc:
        raise SyncMisconfigured(f"{source}: reconciliation failed: {exc}") from exc
    except ConnectorError as exc:
        raise SyncFailed(f"{source}: reconciliation failed: {exc}") from exc
    found: dict[str, int] = {}
    for r in results:
        for kind, n in (r.reconciled or {}).items():
            found[kind] = found.get(kind, 0) + n
    return {
        "source": source, "day": interval_day(start).isoformat(),
        "data_interval": [start.isoformat(), end.isoformat()],
        "rows_in": sum(r.rows_in for r in results), "rows_landed": sum(r.rows_landed for r in results),
        "found": found, "loads": [r.load_id for r in results],
    }


def publication(source: str, synced: dict[str, Any], validated: dict[str, Any]) -> dict[str, Any] | None:
    """The extra of the Asset event for this run, or None if nothing new reached staging (no event)."""
    if not validated["tables"]:
        return None
    return {"source": source, "day": synced["day"], "data_interval": synced["data_interval"],
            "rows_landed": synced["rows_landed"], "tables": validated["tables"]}


# --- the main job through Airflow ------------------------------------------------------------

@dataclass
class DagRunReport:
    dag_id: str
    state: str
    logical_date: str
    seconds: float
    tasks: dict[str, str] = field(default_factory=dict)
    landed: int = 0
    passed: int = 0
    quarantined: int = 0
    published: bool = False
    error: str | None = None

    def summary(self) -> str:
        if "sync" not in self.tasks:  # merge and extract DAGs: their tasks say it all
            tasks = ", ".join(f"{t} {st}" for t, st in sorted(self.tasks.items()))
            return f"{self.dag_id}: {self.state} ({self.seconds:.1f} s); {tasks}" + (
                f" — {self.error}" if self.error else "")
        text = (f"{self.dag_id}: {self.state} ({self.seconds:.1f} s); landed {self.landed:,}, "
                f"passed {self.passed:,}, quarantined {self.quarantined:,}; "
                + ("asset event published" if self.published else "no asset event"))
        return text + (f" — {self.error}" if self.error else "")


def airflow_env(airflow_home: Path, dags_folder: Path | None = None,
                sql_alchemy_conn: str | None = None) -> dict[str, str]:
    """The environment that points Airflow at a private home and metadata database (SQLite by default)."""
    airflow_home = Path(airflow_home).resolve()
    dags = Path(dags_folder).resolve() if dags_folder else Path(__file__).resolve().parent.parent / "dags"
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn or f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
        # The task supervisor re-checks a finished task's exit only every this many seconds once its
        # sockets close first (a race in Airflow 3.3's supervisor): at the default 5, about half of a
        # city's tasks held their worker slot 5 s after they ended (bench/README.md, Celery city).
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        # Read by Celery workers only: Airflow's settings plus the tasks' imports done once per worker.
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "onenet.celery_worker.CELERY_CONFIG",
    }


def prepare_airflow(airflow_home: Path, dags_folder: Path | None = None) -> None:
    """Point this process's Airflow at `airflow_home` (SQLite), migrate its database, create the pool.

    Airflow reads its configuration when first imported, so this must run before anything in the
    process imports `airflow`; if Airflow is already loaded with another home, it says so.
    """
    import sys

    env = airflow_env(airflow_home, dags_folder)
    if "airflow" in sys.modules and os.environ.get("AIRFLOW_HOME") != env["AIRFLOW_HOME"]:
        raise RuntimeError(f"Airflow is already loaded with AIRFLOW_HOME={os.environ.get('AIRFLOW_HOME')}; "
                           f"call prepare_airflow({airflow_home}) before anything imports airflow")
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    os.environ.update(env)
    from airflow.models.pool import Pool
    from airflow.utils import db

    db.upgradedb()  # what `airflow db migrate` does; a no-op on an up-to-date database
    Pool.create_or_update_pool(POOL, slots=1, description=POOL_DESCRIPTION, include_deferred=False)


def load_dags(dags_folder: Path | None = None) -> dict[str, Any]:
    """The DAGs of the dags folder, by id (parsed the way the dag-processor parses them)."""
    from airflow.dag_processing.dagbag import DagBag

    folder = dags_folder or Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    bag = DagBag(dag_folder=str(folder))
    if bag.import_errors:
        raise RuntimeError("DAG import errors: " + "; ".join(f"{k}: {v}" for k, v in bag.import_errors.items()))
    return dict(bag.dags)


def run_dag(dag: Any, logical_date: datetime | None, conf: dict[str, Any] | None = None) -> DagRunReport:
    """Run one DAG once with dag.test() for `logical_date` and report what its tasks did.

    `logical_date` None: a run without a data interval, as an Asset-triggered run has. `conf` is
    the run's configuration (its params), as `airflow dags trigger --conf` gives it.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    began = time.monotonic()
    # Airflow 3.3.2's dag.test() fails when a DAG has a deadline alert: at the run's end it looks the
    # alerts up by id but holds their definitions ("'dict' object has no attribute 'hex'"). A test
    # run has no deadline to watch (the scheduler does that), so it runs without one.
    deadline, dag.deadline = getattr(dag, "deadline", None), None
    try:
        dr = dag.test(logical_date=logical_date, run_conf=conf)
    finally:
        dag.deadline = deadline
    report = DagRunReport(dag.dag_id, str(dr.state), logical_date.isoformat() if logical_date else "-",
                          time.monotonic() - began)
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dr.run_id).all()
        report.tasks = {ti.task_id: str(ti.state) for ti in tis}

        def pulled(task_id: str) -> Any:
            row = session.query(XComModel.value).filter_by(dag_id=dag.dag_id, run_id=dr.run_id,
                                                           task_id=task_id, key="return_value").first()
            if row is None:
                return None
            import json

            value = row[0]
            return json.loads(value) if isinstance(value, str | bytes) else value

        synced, validated = pulled("sync") or {}, pulled("validate") or {}
    report.landed = int(synced.get("rows_landed", 0))
    report.passed = int(validated.get("rows_passed", 0))
    report.quarantined = int(validated.get("rows_quarantined", 0)) + int(synced.get("rows_quarantined", 0))
    report.published = report.tasks.get("publish") == "success"
    failed = [t for t, s in report.tasks.items() if s in ("failed", "upstream_failed")]
    if failed:
        report.error = "failed: " + ", ".join(sorted(failed))
    return report


@dataclass
class VillageRun:
    warehouse: Path
    gx_dir: Path
    exports: Path
    airflow_home: Path
    day: date
    runs: list[DagRunReport]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.state == "success" for r in self.runs)

    def summary(self) -> str:
        lines = [f"through Airflow (dag.test, metadata in {self.airflow_home / 'airflow.db'}), "
                 f"simulated day {self.day.isoformat()}:"]
        lines += ["  " + r.summary() for r in self.runs]
        docs = self.gx_dir / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
        lines.append(f"warehouse: {self.warehouse}")
        if docs.exists():
            lines.append(f"Data Docs: {docs.as_uri()}")
        lines.append(f"{'all runs succeeded' if self.ok else 'SOME RUNS FAILED'} in {self.seconds:.1f} s")
        return "\n".join(lines)


SOURCE_DAG_IDS = {s: f"onenet_{s}" for s in SOURCES}


def run_village_through_airflow(home: Path, *, residents: int = 2000, seed: int = 1, day: int = 3,
                                days: int = 30, ports: dict[str, int] | None = None,
                                keep_running: bool = False, warehouse: Path | None = None,
                                airflow_home: Path | None = None,
                                echo: Callable[[str], None] = print,
                                show: Callable[[Path], None] | None = None) -> VillageRun:
    """The main job through Airflow: a fresh village under `home`, its silos up, each source DAG run once.

    Under `home`: district/, the warehouse (default warehouse.duckdb; pass e.g. home/"demo.duckdb"
    to keep `onenet sync`'s own) and gx/, all rebuilt each call, and airflow/ (AIRFLOW_HOME with a
    SQLite metadata database, migrated once and kept; `airflow_home` overrides). `show`, if given,
    is called with the district once its silos are up. Each source DAG runs with dag.test()
    for the data interval that ends with simulated day `day` (Beijing time), in the order
    grid registry, health codes, hotline, city cases; then the merge DAG (as its Assets would
    trigger it) and the daily extract DAG for the next morning's 07:00, which writes the
    extracts, reports and dashboard of that day (under home/exports unless ONENET_EXPORTS is set).
    """
    import shutil

    from simulators import clock, runner
    from simulators.district.generate import generate

    began = time.monotonic()
    home = Path(home).resolve()
    root, gx = home / "district", home / "gx"
    warehouse = Path(warehouse).resolve() if warehouse else home / "warehouse.duckdb"
    af_home = Path(airflow_home).resolve() if airflow_home else home / "airflow"
    if (root / "manifest.json").exists():
        runner.down(root)  # silos of an earlier run would serve the old district
    for stale in (warehouse, Path(f"{warehouse}.wal")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(gx, ignore_errors=True)
    env = {"ONENET_DISTRICT": str(root), "ONENET_WAREHOUSE": str(warehouse), "ONENET_GX_DIR": str(gx),
           "ONENET_EXPORTS": os.environ.get("ONENET_EXPORTS") or str(home / "exports"),
           "ONENET_PUBLISHED": os.environ.get("ONENET_PUBLISHED") or str(home / "published"),
           "ONENET_ACCESS_FILE": os.environ.get("ONENET_ACCESS_FILE") or str(home / "access.toml"),
           "ONENET_ACCESS_LOG": os.environ.get("ONENET_ACCESS_LOG") or str(home / "audit" / "access-log.jsonl")}
    from onenet.settings import environment
    from warehouse.identity import os_user, write_default_access_file

    if not Path(env["ONENET_ACCESS_FILE"]).exists():
        # The demo's one user runs the pipeline: a data engineer (an administrator maps real users).
        write_default_access_file(Path(env["ONENET_ACCESS_FILE"]), os_user())

    with environment(**env):
        echo(f"preparing Airflow in {af_home} (SQLite metadata, pool {POOL})")
        prepare_airflow(af_home)
        echo(f"generating a district of {residents:,} residents in {root}")
        generate(root, residents=residents, seed=seed, days=days)
        the_day = clock.start_date(root) + timedelta(days=day)
        dags = load_dags()
        runs: list[DagRunReport] = []
        try:
            runner.up(root, ports=ports)
            runner.advance(root, day)
            from simulators.health_codes import drop

            drop.deliver_until(root, day)  # don't leave the sensor waiting for the uploader's next look
            if show:
                show(root)  # what each silo holds, before anything is synced
            for source in ("grid_registry", "health_codes", "hotline", "city_cases"):
                report = run_dag(dags[SOURCE_DAG_IDS[source]], day_end_utc(the_day))
                echo("  " + report.summary())
                runs.append(report)
            # What the Asset events and the 07:00 schedule would start next.
            for dag_id, logical in (("onenet_merge", None),
                                    ("onenet_daily_extract", seven_oclock_after(the_day))):
                report = run_dag(dags[dag_id], logical)
                echo("  " + report.summary())
                runs.append(report)
        finally:
            if not keep_running:
                runner.down(root)
    return VillageRun(warehouse, gx, Path(env["ONENET_EXPORTS"]), af_home, the_day, runs,
                      time.monotonic() - began)


# --- merge and daily extract (the steps of issues #5 and #7) ---------------------------------

def _report(result: Any) -> dict[str, Any]:
    """Log a step's result(s) and return them as JSON-able text for XCom."""
    items = result if isinstance(result, list | tuple) else [result]
    lines = [r.summary() if hasattr(r, "summary") else str(r) for r in items if r is not None]
    for line in lines:
        log.info(line)
    return {"summary": lines}


def sources_of(asset_uris: list[str]) -> list[str]:
    """The sources whose staging Asset URIs are in `asset_uris` (what triggered a merge)."""
    by_uri = {asset_uri(s): s for s in SOURCES}
    return sorted({by_uri[u] for u in asset_uris if u in by_uri})


def merge_sources(triggered_by: list[str], *, full: bool = False) -> dict[str, Any]:
    """Resolve staging into core with onenet.pipeline.merge(); sources without new data keep their last good rows."""
    from onenet import pipeline

    log.info("merge%s: new staged data from %s", " (full)" if full else "",
             ", ".join(triggered_by) or "no source (manual run)")
    return {"triggered_by": triggered_by, "full": full, **_report(pipeline.merge(full=full))}


def extract_for_day(day: date) -> dict[str, Any]:
    """Publish the snapshots again (the sources' freshness moved since the merge), then write the
    daily extracts of `day` (a Beijing date) from them with onenet.pipeline.extract(day)."""
    from onenet import pipeline

    log.info("publish, then the daily extract for %s", day.isoformat())
    published = pipeline.republish()
    return {"day": day.isoformat(), "published": published.summary(), **_report(pipeline.extract(day))}


REPORT_TEMPLATES = ("epidemic_daily", "hotline_monthly")


def reports_for_day(day: date) -> dict[str, Any]:
    """Fill every shipped report template for the period containing `day`."""
    from onenet import pipeline

    return {"day": day.isoformat(), **_report([pipeline.report(t, day) for t in REPORT_TEMPLATES])}


def rebuild_dashboard() -> dict[str, Any]:
    """Rebuild the analyst dashboard and the data dictionary from the marts."""
    from onenet import pipeline

    return _report([f"dashboard: {pipeline.dashboard()}", f"data dictionary: {pipeline.dictionary()}"])
