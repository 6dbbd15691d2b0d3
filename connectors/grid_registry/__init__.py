"""The grid-registry connector: each registry table, read incrementally by keyset, into raw.grid_registry_<table>."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from connectors.common import config, freshness
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
    """One table's reconciliation, compared in DuckDB with raw's current version of each key.

    SQLite: every row in one unordered scan (one read snapshot), hashed in DuckDB. PostgreSQL and
    MariaDB hash their rows themselves: (key, updated_at, hash) of every row is read, and whole
    rows only of the keys whose hash or raw version changed since the last reconciliation
    (Reconciliation.split), in the same snapshot."""
    entity = settings.ENTITIES[name]
    # One scan of a table with a primary key: one row per key, no de-duplication needed.
    spec = Reconciliation(missing_kind=settings.MISSING_KIND, overlap=overlap, unique_keys=True,
                          fingerprints=f"fingerprints_{settings.SOURCE}_{name}")
    with Load(con, entity, reconcile=spec) as load:
        greatest: helpers.Position | None = None
        future = _Future(load, name)
        with helpers.connect(engine, hint) as source:
            narrow = helpers.hashes_in_source(source)
            if narrow:
                # The hashes and the rows fetched after them must come from one snapshot.
                source = source.execution_options(isolation_level="REPEATABLE READ")
            table = helpers.reflect(source, name)
            check_required(entity, helpers.arrow_schema(table).empty_table())
            pages = helpers.scan(source, table, entity.key, batch_size)
            if narrow:
                # Only (key, updated_at, hash) of every row crosses the wire; whole rows only of
                # the keys whose hash or raw version moved since the last reconciliation.
                hashed = helpers.narrow_scan(source, table, entity.key)
                greatest = future.credible_rows(hashed)
                differing = spec.split(load, hashed, settings.FETCH_ALL_SHARE)
                if differing is not None:
                    pages = helpers.fetch(source, table, entity.key, differing, batch_size)
                    load.note(f"{hashed.num_rows:,} row hashes read from the source, {differing.num_rows:,} "
                              "whole row(s) fetched")
            for page in pages:
                _add(load, page)
                if not narrow:  # else the position comes from the hashes, which cover every row
                    reached = future.credible(page)
                    if reached is not None and (greatest is None or _later(reached, greatest)):
                        greatest = reached
        future.record()
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
        future = _Future(load, name)
        with helpers.connect(engine, hint) as source:
            table = helpers.reflect(source, name)
            # Fail on a missing or re-typed column before reading a single page.
            check_required(entity, helpers.arrow_schema(table).empty_table())
            if after is None and settings.SCAN_FIRST_LOAD:
                # Nothing to resume from: one unordered scan, ending at the greatest position read.
                pages = helpers.scan(source, table, entity.key, batch_size)
            else:
                # Inclusive from the saved updated_at minus the overlap, not strictly after the
                # saved (updated_at, key): the source's clock may hand a later commit an equal or
                # slightly older updated_at. Rows read again equal raw's current version and are
                # skipped by landing; the position never moves backwards.
                since = after.updated_at - overlap if after is not None else None
                pages = helpers.pages(source, table, entity.key, None if since else after, batch_size, since=since)
            for page in pages:
                _add(load, page)
                # Rows dated in the future land, but the position stays at the latest credible row.
                reached = future.credible(page)
                after = reached if reached is not None and (after is None or _later(reached, after)) else after
        future.record()
        if after is None or after == start:
            return load.finish({k: v for k, v in load.state.items() if k != "watermark"})
        return load.finish(after.state(), watermark=after.iso)


def _later(a: helpers.Position, b: helpers.Position) -> bool:
    return (a.updated_at, a.key) > (b.updated_at, b.key)


class _Future:
    """Rows whose updated_at is later than now + the freshness tolerance (the registry's clock runs
    ahead): they land, but never move the cursor, and each is recorded once as a clock problem for
    the silo's owner (meta.reconciliation_keys, kind 'future_dated', with the load as its run)."""

    def __init__(self, load: Load, table: str):
        self.load, self.table = load, table
        self.limit = freshness.now() + freshness.TOLERANCE
        self.rows: list[pa.Table] = []

    def credible(self, page: helpers.Page) -> helpers.Position | None:
        return self.credible_rows(page.rows)

    def credible_rows(self, rows: pa.Table) -> helpers.Position | None:
        reached, ahead = helpers.credible(rows, self.load.entity.key, self.limit)
        if ahead.num_rows:
            self.rows.append(ahead)
        return reached

    def record(self) -> None:
        if not self.rows:
            return
        ahead = pa.concat_tables(self.rows)
        latest = pc.max(ahead.column("updated_at")).as_py()
        self.load.note(f"{ahead.num_rows:,} row(s) of {self.table} dated later than now + "
                       f"{freshness.TOLERANCE.seconds // 60} min (up to {latest.isoformat()}): landed, but the "
                       "cursor stays at the latest row dated before that — the registry's clock looks ahead; "
                       "recorded for its owner (meta.reconciliation_keys, future_dated)")
        entity, con = self.load.entity, self.load.con
        name = f"_rg_future_{entity.name}"
        con.register(name, ahead)
        # Once per record and updated_at: the inclusive cursor reads these rows again each sync.
        self.load.execute_on_finish(f"""
            insert into meta.reconciliation_keys
            select ?, ?, ?, f.record_key, 'future_dated', f.updated_at, null, try_cast(? as timestamptz),
                   epoch(try_cast(? as timestamptz)) - epoch(f.updated_at), now()
            from {name} f
            where not exists (select 1 from meta.reconciliation_keys k where k.source = ? and k.entity = ?
                              and k.kind = 'future_dated' and k.record_key = f.record_key
                              and k.source_updated_at = f.updated_at)
        """, [self.load.load_id, entity.source, entity.name, self.limit.isoformat(), self.limit.isoformat(),
              entity.source, entity.name])


def _add(load: Load, page: helpers.Page) -> None:
    load.add(page.rows, page.positions)
    for position, record, reason in page.unreadable:
        load.quarantine(position, record, reason)
