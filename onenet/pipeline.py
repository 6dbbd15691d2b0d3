"""The pipeline steps the CLI and the Airflow tasks both call."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import duckdb

from connectors.common.config import connection
from connectors.common.exceptions import ConnectorError
from connectors.common.loads import LoadResult
from onenet import settings
from warehouse import db

SOURCES = ("hotline", "city_cases", "grid_registry", "health_codes")


def sync(source: str, *, full_refresh: bool = False,
         on_result: Callable[[LoadResult], None] | None = None) -> list[LoadResult]:
    """Sync one source into the raw layer of the warehouse; raise ConnectorError if it failed."""
    if source not in SOURCES:
        raise ConnectorError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)} or 'all'")
    conn = connection(settings.CONN_IDS[source], settings.embedded_uri(source))
    module = importlib.import_module(f"connectors.{source}")
    path = settings.warehouse_path()
    try:
        con = db.connect(path)
    except duckdb.IOException as exc:
        # DuckDB allows one writing process; say which file is busy instead of a traceback.
        raise ConnectorError(f"{source}: cannot open the warehouse {path} for writing ({exc}); "
                             f"another onenet process holds it — wait for it to finish") from exc
    try:
        results: list[LoadResult] = module.sync(con, conn, full_refresh=full_refresh)
    finally:
        con.close()
    for r in results:
        if on_result:
            on_result(r)
    return results
