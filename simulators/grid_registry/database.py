"""Create, bulk-load, upsert into and read back the grid registry on SQLite, PostgreSQL or MariaDB."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, Table, create_engine, event, func, insert, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateTable

from simulators.grid_registry.schema import TABLE_ORDER, arrow_schema, metadata, primary_key

Progress = Callable[[str, int, int], None]
"""Called as progress(table, rows_done, rows_total) after every batch."""

SQLITE_PATH = Path("grid_registry") / "registry.sqlite"


class RegistryInputError(ValueError):
    """An input Arrow table does not match the registry contract (missing, extra or bad columns)."""


class RegistryLoadError(RuntimeError):
    """The database refused a load or an upsert (key, foreign-key or check violation)."""


def sqlite_url(root: Path | str) -> str:
    """The SQLAlchemy URL of the embedded registry under simulation root `root`."""
    return f"sqlite:///{(Path(root) / SQLITE_PATH).resolve()}"


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "mysql" and "charset" not in parsed.query:
        # Without utf8mb4 on the connection, Chinese outside the BMP turns into '?'.
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    engine = create_engine(parsed)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets a connector read while the simulator writes; NORMAL is durable enough under WAL
    # (a crash loses at most the last commit, never corrupts). SQLite enforces foreign keys only
    # when asked, per connection.
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        "busy_timeout=10000",
        "cache_size=-65536",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _conform(name: str, table: pa.Table, *, extra: tuple[str, ...] = ()) -> pa.Table:
    """`table` with exactly the contract's columns, in order and cast to the contract's types."""
    schema = arrow_schema(name)
    wanted = set(schema.names) | set(extra)
    missing = [n for n in schema.names if n not in table.column_names]
    unknown = [n for n in table.column_names if n not in wanted]
    if missing or unknown:
        raise RegistryInputError(
            f"table {name!r}: missing columns {missing}, unexpected columns {unknown}; "
            f"the contract is {schema.names} (simulators/grid_registry/schema.py)"
        )
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise RegistryInputError(
            f"table {name!r}: cannot cast to the contract types: {exc}"
        ) from exc


def _parents_first(grids: pa.Table) -> pa.Table:
    """Grids ordered so a parent is always inserted before its children (self foreign key)."""
    codes = grids.column("grid_code").to_pylist()
    parents = dict(zip(codes, grids.column("parent_code").to_pylist(), strict=True))
    depth: dict[str, int] = {}
    for code in codes:
        chain = []
        node: str | None = code
        while node is not None and node not in depth and node in parents:
            if node in chain:
                raise RegistryInputError(f"table 'grids': parent_code cycle through {node!r}")
            chain.append(node)
            node = parents[node]
        base = depth.get(node, -1) if node is not None else -1
        for offset, member in enumerate(reversed(chain), start=1):
            depth[member] = base + offset
    order = sorted(range(len(codes)), key=lambda i: depth[codes[i]])
    return grids.take(pa.array(order, type=pa.int64()))


def _to_driver(column: pa.Array | pa.ChunkedArray, dialect: str) -> list[Any]:
    """A column's values as the DBAPI driver takes them, converted in Arrow rather than per row.

    This mirrors schema.UTCDateTime and SQLAlchemy's SQLite storage formats (timestamps as
    'YYYY-MM-DD HH:MM:SS.ffffff' naive UTC, dates as 'YYYY-MM-DD', booleans as 0/1), so rows
    loaded here compare and read exactly like rows written through Core.
    """
    type_ = column.type
    if pa.types.is_timestamp(type_):
        # Dropping the zone keeps the UTC wall clock; Arrow's cast to text is ~25x faster than
        # building datetime objects.
        text = column.cast(pa.timestamp("us")).cast(pa.string())
        if dialect == "postgresql":
            text = pc.binary_join_element_wise(text, "+00:00", "")
        return text.to_pylist()
    if pa.types.is_date32(type_):
        return column.cast(pa.string()).to_pylist()
    if pa.types.is_boolean(type_) and dialect != "postgresql":
        return column.cast(pa.int8()).to_pylist()
    return column.to_pylist()


def _from_driver(values: list[Any], type_: pa.DataType, dialect: str) -> pa.Array:
    """The inverse of _to_driver: what the driver returned, as an Arrow array of `type_`."""
    if pa.types.is_timestamp(type_):
        if dialect == "postgresql":
            # timestamptz arrives aware in the session's zone; Arrow converts it to UTC.
            return pa.array(values, type=type_)
        raw = pa.array(values, type=pa.string() if dialect == "sqlite" else pa.timestamp("us"))
        return raw.cast(pa.timestamp("us")).cast(type_)
    if pa.types.is_date32(type_) and dialect == "sqlite":
        return pa.array(values, type=pa.string()).cast(type_)
    if pa.types.is_boolean(type_) and dialect != "postgresql":
        return pa.array(values, type=pa.int8()).cast(type_)
    return pa.array(values, type=type_)


def _execute_many(conn: Connection, stmt: Any, batch: pa.RecordBatch) -> None:
    """Run a Core INSERT (or upsert) once per row of `batch` with a single DBAPI executemany."""
    if batch.num_rows == 0:
        return
    # Compiled once and run as driver SQL: SQLAlchemy's per-row parameter processing would cost
    # more than SQLite's own work on a million rows.
    compiled = stmt.compile(dialect=conn.dialect)
    dialect = conn.dialect.name
    columns = {n: _to_driver(batch.column(n), dialect) for n in batch.schema.names}
    if compiled.positional:
        rows: list[Any] = list(zip(*(columns[n] for n in compiled.positiontup), strict=True))
    else:
        names = list(columns)
        rows = [dict(zip(names, v, strict=True)) for v in zip(*columns.values(), strict=True)]
    conn.exec_driver_sql(str(compiled), rows)


def _copy_postgres(conn: Connection, table: Table, batch: pa.RecordBatch) -> None:
    """Bulk-insert `batch` with COPY FROM STDIN, in the connection's open transaction."""
    # psycopg runs an executemany INSERT row by row (pipelined); COPY is several times faster.
    prepare = conn.dialect.identifier_preparer
    names = ", ".join(prepare.quote(n) for n in batch.schema.names)
    columns = [_to_driver(batch.column(n), "postgresql") for n in batch.schema.names]
    cursor = conn.connection.cursor()
    try:
        with cursor.copy(f"COPY {prepare.format_table(table)} ({names}) FROM STDIN") as copy:
            for row in zip(*columns, strict=True):
                copy.write_row(row)
    finally:
        cursor.close()


def _violation(action: str, name: str, conn: Connection, exc: Exception) -> RegistryLoadError:
    return RegistryLoadError(
        f"{action} {name!r} on {conn.dialect.name}: {getattr(exc, 'orig', exc)}; "
        "check the input's keys and foreign keys against the contract"
    )


def _load_table(
    conn: Connection, table: Table, data: pa.Table, batch_rows: int, progress: Progress | None
) -> None:
    done = 0
    try:
        with conn.begin():
            for batch in data.to_batches(max_chunksize=batch_rows):
                if conn.dialect.name == "postgresql":
                    _copy_postgres(conn, table, batch)
                else:
                    _execute_many(conn, insert(table), batch)
                done += batch.num_rows
                if progress is not None:
                    progress(table.name, done, data.num_rows)
            if conn.dialect.name == "sqlite":
                _check_sqlite_foreign_keys(conn, table.name)
    # COPY runs on the raw driver cursor, whose errors SQLAlchemy does not wrap.
    except (DBAPIError, conn.dialect.loaded_dbapi.Error) as exc:
        raise _violation("loading", table.name, conn, exc) from exc


def _check_sqlite_foreign_keys(conn: Connection, name: str) -> None:
    # Foreign keys are off while SQLite bulk-loads (one check per table, not per row); checking
    # before commit keeps the guarantee PostgreSQL and MariaDB give row by row.
    bad = conn.exec_driver_sql(f"PRAGMA foreign_key_check({name})").fetchmany(5)
    if bad:
        raise RegistryLoadError(
            f"loading {name!r} on sqlite: foreign key violations (table, rowid, parent, fk#) "
            f"such as {[tuple(r) for r in bad]}; every referenced key must be in the parent table"
        )


def create_and_load(
    url: str,
    tables: dict[str, pa.Table],
    *,
    batch_rows: int = 50_000,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Drop and recreate the registry schema at `url`, bulk-load `tables`, return row counts.

    `tables` maps each of the five table names to an Arrow table with the contract's columns
    (schema.arrow_schema). Tables load parents first, each in its own transaction; indexes are
    built after the rows are in, which is faster than maintaining them row by row.
    """
    missing = [n for n in TABLE_ORDER if n not in tables]
    if missing:
        raise RegistryInputError(f"create_and_load: no input for tables {missing}")
    # Key order makes every primary-key insert an append (SQLite B-tree, InnoDB clustered index).
    data = {
        name: _conform(name, tables[name]).sort_by([(k, "ascending") for k in primary_key(name)])
        for name in TABLE_ORDER
    }
    data["grids"] = _parents_first(data["grids"])
    target = make_url(url)
    if target.get_backend_name() == "sqlite" and target.database not in (None, "", ":memory:"):
        Path(str(target.database)).parent.mkdir(parents=True, exist_ok=True)
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                # Outside any transaction, as SQLite requires; the checks run per table instead.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.exec_driver_sql("PRAGMA cache_size=-262144")
                conn.exec_driver_sql("PRAGMA temp_store=MEMORY")
                conn.commit()
            with conn.begin():
                metadata.drop_all(conn)
                for name in TABLE_ORDER:
                    conn.execute(CreateTable(metadata.tables[name]))
            counts: dict[str, int] = {}
            for name in TABLE_ORDER:
                table = metadata.tables[name]
                _load_table(conn, table, data[name], batch_rows, progress)
                with conn.begin():
                    for index in sorted(table.indexes, key=lambda i: str(i.name)):
                        index.create(conn)
                    counts[name] = conn.execute(
                        select(func.count()).select_from(table)
                    ).scalar_one()
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.exec_driver_sql("PRAGMA optimize")
                conn.commit()
        return counts
    finally:
        engine.dispose()


def _upsert(conn: Connection, table: Table) -> Any:
    keys = primary_key(table.name)
    others = [c.name for c in table.columns if c.name not in keys]
    if conn.dialect.name == "mysql":
        on_duplicate = mysql.insert(table)
        return on_duplicate.on_duplicate_key_update({c: on_duplicate.inserted[c] for c in others})
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(table)
        return pg.on_conflict_do_update(
            index_elements=keys, set_={c: pg.excluded[c] for c in others}
        )
    lite = sqlite.insert(table)
    return lite.on_conflict_do_update(
        index_elements=keys, set_={c: lite.excluded[c] for c in others}
    )


def _latest_per_resident(changes: pa.Table, days: pa.ChunkedArray | None) -> pa.Table:
    """The last state of each resident, in (day, updated_at) order: what applying all would leave."""
    keyed = changes.append_column("_day", days) if days is not None else changes
    sort_keys = [("updated_at", "ascending")]
    if days is not None:
        sort_keys.insert(0, ("_day", "ascending"))
    ordered = keyed.take(pc.sort_indices(keyed, sort_keys=sort_keys)).select(changes.column_names)
    last: dict[str, int] = {}
    for position, resident_id in enumerate(ordered.column("resident_id").to_pylist()):
        last[resident_id] = position
    # One statement may not touch a key twice (PostgreSQL refuses ON CONFLICT on a repeated key),
    # and since every change is a full state, the last one per resident is the result.
    return ordered.take(pa.array(sorted(last.values()), type=pa.int64()))


def apply_changes(url: str, changes: pa.Table, *, batch_rows: int = 50_000) -> int:
    """Upsert resident change rows (each the resident's new full state) in one transaction.

    `changes` has the residents columns, optionally plus `day`; rows apply in (day, updated_at)
    order, so when a resident changes twice the later state wins. Returns the number of change
    rows applied (a resident changed on two days counts twice).
    """
    if changes.num_rows == 0:
        return 0
    days = changes.column("day") if "day" in changes.column_names else None
    latest = _latest_per_resident(_conform("residents", changes, extra=("day",)), days)
    table = metadata.tables["residents"]
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            try:
                with conn.begin():
                    stmt = _upsert(conn, table)
                    for batch in latest.to_batches(max_chunksize=batch_rows):
                        _execute_many(conn, stmt, batch)
            except DBAPIError as exc:
                raise _violation("applying changes to", "residents", conn, exc) from exc
        return changes.num_rows
    finally:
        engine.dispose()


def _batches(conn: Connection, table: Table, batch_rows: int) -> Iterator[pa.RecordBatch]:
    schema = arrow_schema(table.name)
    order = [table.c[k] for k in primary_key(table.name)]
    sql = str(select(table).order_by(*order).compile(dialect=conn.dialect))
    # A server-side cursor on PostgreSQL and MariaDB, so a large table never sits in memory twice.
    result = conn.execution_options(stream_results=True).exec_driver_sql(sql)
    dialect = conn.dialect.name
    for rows in result.partitions(batch_rows):
        columns = list(zip(*rows, strict=True))
        yield pa.RecordBatch.from_arrays(
            [_from_driver(list(c), f.type, dialect) for c, f in zip(columns, schema, strict=True)],
            schema=schema,
        )


def read_table(url: str, name: str, *, batch_rows: int = 50_000) -> pa.Table:
    """Registry table `name` at `url` as Arrow, ordered by primary key, typed as the contract."""
    if name not in metadata.tables:
        raise RegistryInputError(
            f"read_table: no registry table {name!r}; tables are {TABLE_ORDER}"
        )
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            batches = list(_batches(conn, metadata.tables[name], batch_rows))
        return pa.Table.from_batches(batches, schema=arrow_schema(name))
    finally:
        engine.dispose()
