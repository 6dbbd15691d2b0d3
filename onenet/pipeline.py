"""The pipeline steps the CLI and the Airflow tasks both call."""

from __future__ import annotations

import errno
import functools
import importlib
import re
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import duckdb

from connectors.common.config import connection
from connectors.common.exceptions import ConnectorError
from connectors.common.loads import LoadResult
from onenet import settings
from warehouse import db

if TYPE_CHECKING:
    import datetime as dt

    import pyarrow as pa

    from expectations.runner import ValidationResult
    from warehouse.access import AccessDenied, Principal
    from warehouse.extracts.community import ExtractResult
    from warehouse.merge import MergeSummary
    from warehouse.publish import PublishResult
    from warehouse.publish.serving import ServingResult
    from warehouse.reports import ReportResult

SOURCES = ("hotline", "city_cases", "grid_registry", "health_codes")


P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class DiskFull(ConnectorError):
    """A step ran out of disk space: one line naming the step, the path and what to do."""


def _disk_full(error: BaseException) -> str | None:
    """The path of a 'no space left on device' anywhere in `error`'s chain ('' if none is named), else None."""
    exc: BaseException | None = error
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left on device" in text:
            if isinstance(exc, OSError) and exc.filename:
                return str(exc.filename)
            named = re.search(r'"([^"]+)"[^"]*No space left on device', text)
            return named.group(1) if named else ""
        exc = exc.__cause__ or exc.__context__
    return None


def _one_line_when_disk_full(step: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Turn a full disk anywhere in the step into DiskFull, instead of DuckDB's traceback."""
    def wrap(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return function(*args, **kwargs)
            except ConnectorError:
                raise
            except Exception as exc:
                where = _disk_full(exc)
                if where is None:
                    raise
                name = f"{step} {args[0]}" if args and isinstance(args[0], str) else step
                where = where or str(settings.warehouse_path().parent)
                raise DiskFull(f"{name}: the disk is full ({where}: no space left on device); the step did not "
                               f"finish and what it had written was rolled back — free space on that disk (or set "
                               f"ONENET_WAREHOUSE to a file on a bigger one) and run `onenet {name}` again") from None
        return run
    return wrap


def _open_warehouse(step: str) -> duckdb.DuckDBPyConnection:
    """The warehouse for a pipeline step. DuckDB allows one writing process: when another step holds
    it, wait (a progress line every 10 s) up to settings.lock_timeout(), then fail naming the file."""
    path = settings.warehouse_path()
    deadline = time.monotonic() + settings.lock_timeout()
    next_note = 0.0
    while True:
        try:
            return db.connect(path, memory_limit=settings.duckdb_memory_limit())
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise ConnectorError(f"{step}: cannot open the warehouse {path} ({exc})") from exc
            waited = settings.lock_timeout() - (deadline - time.monotonic())
            if time.monotonic() >= deadline:
                raise ConnectorError(f"{step}: the warehouse {path} was still held by another onenet step "
                                     f"after {waited:.0f} s; see `onenet` processes or Airflow's running "
                                     f"tasks, or raise ONENET_LOCK_TIMEOUT") from exc
            if time.monotonic() >= next_note:
                print(f"{step}: waiting for the warehouse {path} (another step holds it; {waited:.0f} s "
                      f"of {settings.lock_timeout():.0f} s)", file=sys.stderr, flush=True)
                next_note = time.monotonic() + 10
            time.sleep(0.5)


def _in_warehouse(step: str, work: Callable[[duckdb.DuckDBPyConnection], R]) -> R:
    """Run `work` on the warehouse (waiting for it if another step holds it), then close it."""
    con = _open_warehouse(step)
    try:
        return work(con)
    finally:
        con.close()


def _each_result(results: list[T], on_result: Callable[[T], None] | None) -> list[T]:
    """Hand each result to `on_result` (the CLI prints a line per table) once the step has closed."""
    for r in results:
        if on_result:
            on_result(r)
    return results


@_one_line_when_disk_full("sync")
def sync(source: str, *, full_refresh: bool = False, retry_file: str | None = None,
         on_result: Callable[[LoadResult], None] | None = None) -> list[LoadResult]:
    """Sync one source into the raw layer of the warehouse; raise ConnectorError if it failed.

    `retry_file` (health_codes only): read that file of the drop again, e.g. one set aside as
    unreadable once it has been fixed in place.
    """
    if source not in SOURCES:
        raise ConnectorError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)} or 'all'")
    if retry_file is not None and source != "health_codes":
        raise ConnectorError(f"{source}: --retry-file applies to the health_codes file drop only")
    conn = connection(settings.CONN_IDS[source], lambda: settings.embedded_uri(source))
    module = importlib.import_module(f"connectors.{source}")
    options = {"retry_file": retry_file} if retry_file is not None else {}
    return _each_result(_in_warehouse(source, lambda con: module.sync(con, conn, full_refresh=full_refresh,
                                                                        **options)), on_result)


def reconcilable(source: str) -> bool:
    """Whether `source`'s connector can reconcile (exposes `reconcile(con, conn, reset_cursor=...)`).

    The hook for a connector that gains one later (the health-code drop's re-check): define
    `reconcile` in its package and RECONCILE_SCHEDULE in its settings, and it is picked up here,
    by `onenet reconcile all` and by dags/onenet_reconcile.py.
    """
    return source in SOURCES and hasattr(importlib.import_module(f"connectors.{source}"), "reconcile")


def reconcile(source: str, *, reset_cursor: bool = False,
              on_result: Callable[[LoadResult], None] | None = None) -> list[LoadResult]:
    """Compare `source`'s complete current state with raw's current state and land the difference
    (missed, back-dated and silent updates, reverts; tombstones for hard deletes and phantoms);
    each run is in meta.reconciliations. `reset_cursor` also restarts the incremental cursor from
    this read (`onenet sync --full-refresh`). Raise ConnectorError if it failed."""
    if not reconcilable(source):
        raise ConnectorError(f"{source}: no reconciliation for this source (its connector has no reconcile()); "
                             f"reconcilable: {', '.join(s for s in SOURCES if reconcilable(s))}")
    conn = connection(settings.CONN_IDS[source], lambda: settings.embedded_uri(source))
    module = importlib.import_module(f"connectors.{source}")
    return _each_result(_in_warehouse(f"reconcile {source}",
                                      lambda con: module.reconcile(con, conn, reset_cursor=reset_cursor)),
                        on_result)


@_one_line_when_disk_full("validate")
def validate(source: str, *, on_result: Callable[[ValidationResult], None] | None = None) -> list[ValidationResult]:
    """Validate what was landed for `source` since the last run; results also in meta.validation_runs."""
    from expectations import runner

    if source not in SOURCES:
        raise ConnectorError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)} or 'all'")
    return _each_result(_in_warehouse(f"validate {source}",
                                      lambda con: runner.validate(con, source, settings.gx_dir())), on_result)


@_one_line_when_disk_full("merge")
def merge(*, full: bool = False) -> MergeSummary:
    """Resolve everything validation passed into core and marts, in one transaction, then publish.

    Persons are resolved incrementally when possible; `full` resolves every record again.
    """
    from warehouse.merge import merge as run_merge

    con = _open_warehouse("merge")
    try:
        summary = run_merge(con, full=full)
        summary.published = publish(con, summary.run_id)
        return summary
    finally:
        con.close()


def publish(con: duckdb.DuckDBPyConnection, run_id: str | None = None) -> PublishResult:
    """Publish every audience's snapshot from the warehouse (files, then the serving database)."""
    from warehouse import audit_log
    from warehouse.city.publish import publish_city
    from warehouse.publish import new_version
    from warehouse.publish import publish as publish_snapshots
    from warehouse.publish.permissions import prepare_exports

    version, url = new_version(run_id), settings.serving_url()
    # Each audience's serving tables load on a thread as soon as its snapshots are installed, while
    # the other audience's are still written or loaded: each load works in its own DuckDB and its
    # own PostgreSQL session and schema, and they overlap on the cores the others leave idle
    # (issue #13).
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="serving") as background:
        loads: dict[str, Future[str]] = {}

        def serve(audience: str) -> Callable[[], None]:
            def submit() -> None:
                if url is not None:
                    loads[audience] = background.submit(_publish_serving, url, version, audience)
            return submit

        result = publish_snapshots(con, settings.published_dir(), version, analyst_ready=serve("analyst"),
                                   community_ready=serve("community"))
        # Where the host separates audiences by OS group, their exports folders follow the snapshots.
        prepare_exports(settings.exports_dir(), settings.published_dir())
        # A district of a city (ONENET_CITY_KEY set) also publishes what the city may use.
        city = publish_city(con, settings.published_dir() / "city", result.version)
        if city is not None:
            result.seconds["city"] = city.seconds
        if url is None:
            result.serving = "skipped (ONENET_SERVING_URL is not set)"
        else:
            result.serving = "; ".join(loads[audience].result() if audience in loads
                                       else _publish_serving(url, version, audience)
                                       for audience in ("analyst", "community"))
    try:
        audit_log.append("publish", result.version, principal=None, output=settings.published_dir(),
                         rows=sum(result.analyst_rows.values()), full_values=False, reason=result.summary())
    except audit_log.AuditLogError as exc:
        # Readers may append to the log, so one of them can hold its lock or damage it; the publish
        # readers already see stands, and its summary (the task's log line) says what was not recorded.
        result.access_log = str(exc)
    return result


def republish() -> PublishResult:
    """Publish every audience's snapshot from the warehouse as it is now (the daily extract run)."""
    return _in_warehouse("publish", publish)


def _publish_serving(url: str, version: str, audience: str) -> str:
    """Load an audience's current snapshots ('analyst' or 'community') into the PostgreSQL serving
    database; return a one-line outcome."""
    from warehouse.publish import slowest

    done = _serve(url, version, audience)
    return (f"{audience}: {len(done.published)} relations loaded ({len(done.incremental)} by changed parts or "
            f"rows only), {len(done.skipped)} unchanged, {len(done.dropped)} dropped, "
            f"{sum(done.rows.values()):,} rows served, {done.seconds:.1f} s{slowest(done.relation_seconds)}")


def _serve(url: str, version: str, audience: str, role_prefix: str = "onenet_") -> ServingResult:
    """_publish_serving's load: the audience's held versions, their files and part hashes from their manifests."""
    from warehouse.publish import serving
    from warehouse.publish.snapshot import (
        communities,
        hold_district_copy,
        hold_version,
        manifest,
        parquet_files,
    )

    root = settings.published_dir()
    index = communities(root)
    relations: dict[str, list[Path]] = {}
    community: dict[str, list[Path]] = {}
    parts: dict[tuple[str, str], dict[str, serving.Part]] = {}
    # The versions are held, never opened: their files and part hashes come from their manifests.
    with ExitStack() as stack:
        if audience == "analyst":
            analyst = stack.enter_context(hold_version(root, "analyst"))
            held = manifest(analyst)
            relations = parquet_files(analyst)
            parts = {("analyst", q): serving.parts_of(held["relations"][q], analyst, q) for q in relations}
        else:
            # A relation of the district copy in one file, not one per community: the same rows the
            # communities' snapshots hold. The others (cut in periods) from each community's snapshot.
            version_dir = stack.enter_context(hold_district_copy(root))
            for q, entry in manifest(version_dir)["relations"].items():
                community[q] = serving.relation_files_of(entry, version_dir, q)
                parts["community", q] = serving.parts_of(entry, version_dir, q)
            whole = set(community)
            for code in index:
                version_dir = stack.enter_context(hold_version(root, "community", code))
                own = manifest(version_dir)
                shared = set(own.get("shared", []))
                for q, entry in own["relations"].items():
                    if q in shared or q in whole:  # shared: the same for every community, nothing to secure by row
                        continue
                    community.setdefault(q, []).extend(serving.relation_files_of(entry, version_dir, q))
                    parts.setdefault(("community", q), {}).update(serving.parts_of(entry, version_dir, q, code))
        return serving.publish_serving(url, version, relations, community,
                                       [(code, c["name"]) for code, c in index.items()], parts=parts,
                                       role_prefix=role_prefix,
                                       # The files served, kept (hard links) to find tomorrow's changed rows.
                                       keep_dir=root / ".serving", schemas=(audience,))


def _as_reader(who: Principal) -> dict:
    """Make this process yield to the pipeline when `who` is not an engineer: lower CPU and IO
    priority (ONENET_READER_NICE), and the DuckDB limits (ONENET_READER_THREADS,
    ONENET_READER_MEMORY_LIMIT) to open snapshots with. Engineers' commands are left as they are."""
    from warehouse.access import DATA_ENGINEER

    if who.role == DATA_ENGINEER:
        return {}
    settings.lower_priority(settings.reader_nice())
    return {"threads": settings.reader_threads(), "memory_limit": settings.reader_memory_limit()}


def _who(who: Principal | None) -> Principal:
    from warehouse.identity import resolve_principal

    return who or resolve_principal()


def _denied(who: Principal | None, action: str, target: str, reason: str) -> AccessDenied:
    """Record a refused read in the access log and return the error to raise."""
    from warehouse import audit_log
    from warehouse.access import AccessDenied

    audit_log.append(action, target, principal=who, outcome="denied", reason=reason)
    return AccessDenied(reason)


def extract(day: dt.date, *, community: str | None = None, who: Principal | None = None) -> list[ExtractResult]:
    """Write the daily workbook of one community, or of every community the principal may read,
    from the communities' published snapshots (never the warehouse)."""
    from warehouse.access import COMMUNITY_STAFF, DISTRICT_ANALYST
    from warehouse.extracts.community import write_extracts
    from warehouse.publish.snapshot import communities, community_code, open_communities

    who = _who(who)
    root = settings.published_dir()
    target = f"{community or who.community or 'every community'} {day}"
    if who.role == DISTRICT_ANALYST:
        raise _denied(who, "extract", target, "community extracts name residents and their phones: they are "
                      "for community staff; analysts read the district marts (`onenet query`, `onenet report`)")
    index = communities(root)
    if who.role == COMMUNITY_STAFF:
        codes = [community_code(root, who.community or "")]
    elif community:
        codes = [community_code(root, community)]
    else:
        codes = sorted(index)
    with open_communities(root, codes, **_as_reader(who)) as con:
        # One call for all: each sheet's query runs once for every community, not once per community.
        return write_extracts(con, [(c, index[c]["name"]) for c in codes], day, who, settings.exports_dir())


def report(template: str | Path, day: dt.date, *, who: Principal | None = None) -> ReportResult:
    """Fill a report template for the period containing `day`, from the reader's audience snapshot."""
    from warehouse.access import COMMUNITY_STAFF, AccessDenied
    from warehouse.publish.permissions import exports_folder
    from warehouse.publish.snapshot import communities, community_code, open_snapshot
    from warehouse.reports import load_template, write_report

    who = _who(who)
    loaded = load_template(template)
    root = settings.published_dir()
    limits = _as_reader(who)
    try:
        if who.role == COMMUNITY_STAFF:
            # Staff may be bound by code or by name; the form's rows are named by the community's name.
            code = community_code(root, who.community or "")
            out = exports_folder(settings.exports_dir(), "community", code) / "reports"
            with open_snapshot(root, "community", code, **limits) as snap:
                return write_report(snap.con, loaded, day, who, out, only=communities(root)[code]["name"])
        with open_snapshot(root, "analyst", **limits) as snap:
            return write_report(snap.con, loaded, day, who, exports_folder(settings.exports_dir(), "analyst") / "reports")
    except AccessDenied as exc:
        raise _denied(who, "report", f"{loaded.name} {day}", str(exc)) from exc


def dashboard(*, who: Principal | None = None) -> Path:
    """Rebuild the analyst dashboard (one static HTML file) from the analysts' snapshot; return its path."""
    from warehouse import audit_log
    from warehouse.access import COMMUNITY_STAFF
    from warehouse.dashboard.build import build_dashboard
    from warehouse.outputs import private_umask
    from warehouse.publish.permissions import exports_folder
    from warehouse.publish.snapshot import open_snapshot

    who = _who(who)
    if who.role == COMMUNITY_STAFF:
        raise _denied(who, "dashboard", "district dashboard", "the dashboard covers the whole district: it is "
                      "for analysts; community staff read their community's daily extract")
    with open_snapshot(settings.published_dir(), "analyst", **_as_reader(who)) as snap, private_umask():
        path = build_dashboard(snap.con, exports_folder(settings.exports_dir(), "analyst") / "dashboard" / "index.html")
    # Aggregates only, but who rebuilt what is worth a line too.
    audit_log.append("dashboard", snap.version, principal=who, output=path)
    return path


def dictionary() -> Path:
    """Write the data dictionary of what analysts read (Markdown, types from their snapshot); return its path."""
    from warehouse.dictionary import render_markdown
    from warehouse.outputs import private_umask, replacing
    from warehouse.publish.permissions import exports_folder
    from warehouse.publish.snapshot import open_snapshot

    with open_snapshot(settings.published_dir(), "analyst") as snap, private_umask():
        path = exports_folder(settings.exports_dir(), "analyst") / "dictionary.md"
        with replacing(path) as f:
            f.write(render_markdown(snap.con).encode("utf-8"))
        return path


def export_marts(*, who: Principal | None = None) -> tuple[Path, dict[str, int]]:
    """Copy the reader's audience snapshot (Parquet) into its own export folder; return it and rows per
    relation. Engineers and analysts get the analysts' relations, community staff their community's."""
    from warehouse import audit_log
    from warehouse.access import COMMUNITY_STAFF
    from warehouse.outputs import private_dir, private_umask, replacing
    from warehouse.publish.permissions import exports_folder
    from warehouse.publish.snapshot import community_code, open_snapshot

    who = _who(who)
    root = settings.published_dir()
    code: str | None = None
    if who.role == COMMUNITY_STAFF:
        code = community_code(root, who.community or "")
        folder = exports_folder(settings.exports_dir(), "community", code) / "marts"
    else:
        folder = exports_folder(settings.exports_dir(), "analyst") / "marts"
    audience = "community" if code else "analyst"
    counts: dict[str, int] = {}
    with open_snapshot(root, audience, code, **_as_reader(who)) as snap, private_umask():
        private_dir(folder)
        for qualified in snap.relations():
            files = [f for f in snap.files(qualified) if f.name != "columns.parquet"]
            with replacing(folder / f"{qualified}.parquet") as out:
                if len(files) <= 1:
                    with open(files[0] if files else snap.parquet(qualified) / "columns.parquet", "rb") as src:
                        shutil.copyfileobj(src, out)
                else:  # a relation kept in parts (per day): one file, its parts in order
                    import pyarrow.parquet as pq

                    pq.write_table(pq.read_table(snap.parquet(qualified)), out)
            row = snap.con.execute(f"select count(*) from {qualified}").fetchone()
            counts[qualified] = int(row[0]) if row else 0
    audit_log.append("export", f"{audience} snapshot {snap.version}", principal=who, output=folder,
                     rows=sum(counts.values()), full_values=who.role == COMMUNITY_STAFF)
    return folder, counts


def query(sql: str, *, who: Principal | None = None) -> pa.Table:
    """Run read-only SQL: engineers on the warehouse itself, analysts on their snapshot, community
    staff on their community's. Nothing restricted is in a snapshot, so any SQL may run there."""
    from warehouse import audit_log
    from warehouse.access import COMMUNITY_STAFF, DATA_ENGINEER
    from warehouse.publish.snapshot import community_code, open_snapshot
    from warehouse.query import QueryError, readonly_connection, run_sql

    who = _who(who)
    root = settings.published_dir()
    limits = _as_reader(who)
    try:
        if who.role == DATA_ENGINEER:
            con = readonly_connection(settings.warehouse_path())
            try:
                table = run_sql(con, sql)
            finally:
                con.close()
        elif who.role == COMMUNITY_STAFF:
            with open_snapshot(root, "community", community_code(root, who.community or ""), **limits) as snap:
                table = run_sql(snap.con, sql, read_only=True)
        else:
            with open_snapshot(root, "analyst", **limits) as snap:
                table = run_sql(snap.con, sql, read_only=True)
    except QueryError as exc:
        audit_log.append("query", sql.strip(), principal=who, outcome="denied", reason=str(exc)[:500])
        raise
    audit_log.append("query", sql.strip(), principal=who, rows=table.num_rows,
                     full_values=who.role != "district_analyst")
    return table
