"""The pipeline steps the CLI and the Airflow tasks both call."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import duckdb

from connectors.common.config import connection
from connectors.common.exceptions import ConnectorError
from connectors.common.loads import LoadResult
from onenet import settings
from warehouse import db

if TYPE_CHECKING:
    import datetime as dt
    from pathlib import Path

    from expectations.runner import ValidationResult
    from warehouse.access import Principal
    from warehouse.extracts.community import ExtractResult
    from warehouse.merge import MergeSummary
    from warehouse.reports import ReportResult

SOURCES = ("hotline", "city_cases", "grid_registry", "health_codes")


def _open_warehouse(step: str) -> duckdb.DuckDBPyConnection:
    path = settings.warehouse_path()
    try:
        return db.connect(path, memory_limit=settings.duckdb_memory_limit())
    except duckdb.IOException as exc:
        # DuckDB allows one writing process; say which file is busy instead of a traceback.
        raise ConnectorError(f"{step}: cannot open the warehouse {path} for writing ({exc}); "
                             f"another onenet process holds it — wait for it to finish") from exc


def sync(source: str, *, full_refresh: bool = False,
         on_result: Callable[[LoadResult], None] | None = None) -> list[LoadResult]:
    """Sync one source into the raw layer of the warehouse; raise ConnectorError if it failed."""
    if source not in SOURCES:
        raise ConnectorError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)} or 'all'")
    conn = connection(settings.CONN_IDS[source], lambda: settings.embedded_uri(source))
    module = importlib.import_module(f"connectors.{source}")
    con = _open_warehouse(source)
    try:
        results: list[LoadResult] = module.sync(con, conn, full_refresh=full_refresh)
    finally:
        con.close()
    for r in results:
        if on_result:
            on_result(r)
    return results


def validate(source: str, *, on_result: Callable[[ValidationResult], None] | None = None) -> list[ValidationResult]:
    """Validate what was landed for `source` since the last run; results also in meta.validation_runs."""
    from expectations import runner

    if source not in SOURCES:
        raise ConnectorError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)} or 'all'")
    con = _open_warehouse(f"validate {source}")
    try:
        results = runner.validate(con, source, settings.gx_dir())
    finally:
        con.close()
    for r in results:
        if on_result:
            on_result(r)
    return results


def merge(*, full: bool = False) -> MergeSummary:
    """Resolve everything validation passed into core and marts, in one transaction.

    Persons are resolved incrementally when possible; `full` resolves every record again.
    """
    from warehouse.merge import merge as run_merge

    con = _open_warehouse("merge")
    try:
        return run_merge(con, full=full)
    finally:
        con.close()


def extract(day: dt.date, *, community: str | None = None, who: Principal | None = None) -> list[ExtractResult]:
    """Write the daily workbook of one community, or of every community the principal may read."""
    from warehouse.access import COMMUNITY_STAFF, principal_from_env
    from warehouse.extracts.community import communities, write_extracts

    who = who or principal_from_env(community=community)
    con = _open_warehouse("extract")
    try:
        if community:
            names = [community]
        elif who.role == COMMUNITY_STAFF:
            names = [who.community or ""]
        else:
            names = communities(con)
        # One call for all: each sheet's query runs once for every community, not once per community.
        return write_extracts(con, names, day, who, settings.exports_dir() / "extracts")
    finally:
        con.close()


def report(template: str | Path, day: dt.date, *, who: Principal | None = None) -> ReportResult:
    """Fill a report template for the period containing `day`."""
    from warehouse.access import principal_from_env
    from warehouse.reports import load_template, write_report

    who = who or principal_from_env()
    loaded = load_template(template)
    con = _open_warehouse("report")
    try:
        return write_report(con, loaded, day, who, settings.exports_dir() / "reports")
    finally:
        con.close()


def dashboard(*, who: Principal | None = None) -> Path:
    """Rebuild the analyst dashboard (one static HTML file) from the marts; return its path."""
    from warehouse.access import log_access, principal_from_env
    from warehouse.dashboard.build import build_dashboard

    who = who or principal_from_env()
    con = _open_warehouse("dashboard")
    try:
        path = build_dashboard(con, settings.exports_dir() / "dashboard" / "index.html")
        # Aggregates only, but who rebuilt what is worth a line too.
        log_access(con, who, "dashboard", str(path), 0, full_values=False)
        return path
    finally:
        con.close()


def dictionary() -> Path:
    """Write the marts' data dictionary (Markdown, types read from the warehouse); return its path."""
    from warehouse.dictionary import render_markdown

    con = _open_warehouse("dictionary")
    try:
        path = settings.exports_dir() / "dictionary.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_markdown(con), encoding="utf-8")
        return path
    finally:
        con.close()


def export_marts(*, who: Principal | None = None) -> tuple[Path, dict[str, int]]:
    """Export every mart to Parquet, masked for the role; return the folder and rows per table."""
    from warehouse.access import principal_from_env
    from warehouse.dictionary import export_parquet

    who = who or principal_from_env()
    con = _open_warehouse("export")
    try:
        folder = settings.exports_dir() / "marts"
        return folder, export_parquet(con, folder, who)
    finally:
        con.close()
