"""The grid-registry connector: each registry table, read incrementally by keyset, into raw.grid_registry_<table>."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timedelta

import duckdb
from sqlalchemy import Engine

from connectors.common import config
from connectors.common.config import Connection
from connectors.common.exceptions import ConfigurationError, ConnectorError, SourceUnavailable
from connectors.common.landing import check_required
from connectors.common.loads import Load, LoadResult
from connectors.common.reconcile import Reconciliation

from . import helpers, settings

log = logging.getLogger(__name__)

__all__ = ["reconcile", "reconcile_table", "sync", "sync_table"]


def sync(con: duckdb.DuckDBPyConnection, conn: Connection, *, full_refresh: bool = False,
         tables: Iterable[str] | None = None, batch_size: int = settings.BATCH_SIZE) -> list[LoadResult]:
    """Land what changed in the registry's tables since the last sync; one load per table.

    `tables` limits the sync to some of settings.TABLES. A table that fails (schema drift, a
    column whose type changed, an unreadable row) is recorded as failed and the others still
    run; the first failure is raised at the end. An unreachable database stops the sync at once.
    """
    overlap = config.overlap(conn, settings.OVERLAP, settings.SOURCE)
    return _each_table(conn, tables, batch_size, lambda engine, name, hint: sync_table(
        con, engine, name, full_refresh=full_refresh, batch_size=batch_size, hint=hint, overlap=overlap))


def reconcile(con: duckdb.DuckDBPyConnection, conn: Connection, *, reset_cursor: bool = False,
              tables: Iterable[str] | None = None, batch_size: int = settings.BATCH_SIZE) -> list[LoadResult]:
    """Compare each registry table as it is now with raw's current state and land the difference
    (connectors.common.reconcile); one load per table, a failing table fails alone, as in sync.
    `reset_cursor` also moves each table's position to the end of this read (`sync --full-refresh`)."""
    overlap = config.overlap(conn, settings.OVERLAP, settings.SOURCE)
    return _each_table(conn, tables, batch_size, lambda engine, name, hint: reconcile_table(
        con, engine, name, reset_cursor=reset_cursor, batch_size=batch_size, hint=hint, overlap=overlap))


def _each_table(conn: Connection, tables: Iterable[str] | None, batch_size: int,
                run: Callable[[Engine, str, str], LoadResult]) -> list[LoadResult]:
    names = _chosen(tables)
    if batch_size < 1:
        raise ConfigurationError(f"{settings.SOURCE}: batch_size must be at least 1, got {batch_size}")
    engine = helpers.open_engine(helpers.sqlalchemy_url(conn))
    hint = helpers.connection_hint(conn)
    results: list[LoadResult] = []
    failures: list[ConnectorError] = []
    try:
        for name in names:
            try:
                results.append(run(engine, name, hint))
            except SourceUnavailable:
                raise
            except ConnectorError as exc:
                log.error("%s", exc)
                failures.append(exc)
    finally:
        engine.dispose()
    if failures:
        first = failures[0]
        for other in failures[1:]:
            first.add_note(f"also failed: {other}")
        raise first
    return results


def reconcile_table(con: duckdb.DuckDBPyConnection, engine: Engine, name: str, *, reset_cursor: bool = False,
                    batch_size: int = settings.BATCH_SIZE, hint: str = "check the grid_registry connection",
                    overlap: timedelta = settings.OVERLAP) -> LoadResult:
    """One table's reconciliation: every row in one unordered scan (one read snapshot), hashed and
    compared in DuckDB with raw's current version of each key."""
    entity = settings.ENTITIES[name]
    # One scan of a table with a primary key: one row per key, no de-duplication needed.
    spec = Reconciliation(missing_kind=settings.MISSING_KIND, overlap=overlap, unique_keys=True)
    with Load(con, entity, reconcile=spec) as load:
        greatest: helpers.Position | None = None
        with helpers.connect(engine, hint) as source:
            table = helpers.reflect(source, name)
            check_required(entity, helpers.arrow_schema(table).empty_table())
            for page in helpers.scan(source, table, entity.key, batch_size):
                _add(load, page)
                if greatest is None or _later(page.greatest, greatest):
                    greatest = page.greatest
        if reset_cursor and greatest is not None:
            return load.finish(greatest.state(), watermark=greatest.iso)
        return load.finish({k: v for k, v in load.state.items() if k != "watermark"})


def _chosen(tables: Iterable[str] | None) -> list[str]:
    if tables is None:
        return list(settings.TABLES)
    wanted = set(tables)
    unknown = sorted(wanted - set(settings.TABLES))
    if unknown:
        raise ConfigurationError(f"{settings.SOURCE}: no table(s) {unknown}; the registry tables are "
                                 f"{list(settings.TABLES)}")
    return [t for t in settings.TABLES if t in wanted]


def sync_table(con: duckdb.DuckDBPyConnection, engine: Engine, name: str, *, full_refresh: bool = False,
               batch_size: int = settings.BATCH_SIZE, hint: str = "check the grid_registry connection",
               overlap: timedelta = settings.OVERLAP) -> LoadResult:
    """One table's load: keyset pages after the saved position, landed by key + hash in one commit."""
    entity = settings.ENTITIES[name]
    with Load(con, entity, full_refresh=full_refresh) as load:
        after = helpers.Position.from_state(load.state, name, entity.key)
        start = after
        with helpers.connect(engine, hint) as source:
            table = helpers.reflect(source, name)
            # Fail on a missing or re-typed column before reading a single page.
            check_required(entity, helpers.arrow_schema(table).empty_table())
            if after is None and settings.SCAN_FIRST_LOAD:
                # Nothing to resume from: one unordered scan, ending at the greatest position read.
                for page in helpers.scan(source, table, entity.key, batch_size):
                    _add(load, page)
                    if after is None or (page.greatest.updated_at, page.greatest.key) > (after.updated_at, after.key):
                        after = page.greatest
            else:
                # Inclusive from the saved updated_at minus the overlap, not strictly after the
                # saved (updated_at, key): the source's clock may hand a later commit an equal or
                # slightly older updated_at. Rows read again equal raw's current version and are
                # skipped by landing; the position never moves backwards.
                since = after.updated_at - overlap if after is not None else None
                for page in helpers.pages(source, table, entity.key, None if since else after, batch_size,
                                          since=since):
                    _add(load, page)
                    after = page.last if after is None or _later(page.last, after) else after
        if after is None or after == start:
            return load.finish({k: v for k, v in load.state.items() if k != "watermark"})
        return load.finish(after.state(), watermark=after.iso)


def _later(a: helpers.Position, b: helpers.Position) -> bool:
    return (a.updated_at, a.key) > (b.updated_at, b.key)


def _add(load: Load, page: helpers.Page) -> None:
    load.add(page.rows, page.positions)
    for position, record, reason in page.unreadable:
        load.quarantine(position, record, reason)
