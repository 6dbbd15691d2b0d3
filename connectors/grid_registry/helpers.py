"""Grid-registry client: Connection → SQLAlchemy URL, reflection, keyset paging, rows → Arrow."""

from __future__ import annotations

import io
import json
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
from sqlalchemy import (
    URL,
    Engine,
    MetaData,
    Select,
    Table,
    and_,
    bindparam,
    create_engine,
    event,
    or_,
    select,
    tuple_,
    type_coerce,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection as SAConnection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, NoSuchTableError
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import NullType, TypeEngine

from connectors.common.config import Connection
from connectors.common.exceptions import (
    ConfigurationError,
    ConnectorError,
    SchemaDrift,
    SourceUnavailable,
)

from . import settings

# ---------------------------------------------------------------------------------------------
# Connection → SQLAlchemy URL


def connection_hint(conn: Connection) -> str:
    """Where an operator fixes the connection: for the end of error messages."""
    return f"check the connection {conn.conn_id} (AIRFLOW_CONN_{conn.conn_id.upper()})"


def _sqlite_database(conn: Connection) -> str:
    """The file an Airflow-style sqlite Connection names.

    `sqlite:///abs/path` (Airflow's form), `sqlite:////abs/path` (SQLAlchemy's) and
    `sqlite://///abs/path` all mean /abs/path: after `sqlite://` the path is absolute however many
    slashes precede it. A relative path comes as the host (`sqlite://relative/path`, or "host" in
    the JSON form), as Airflow documents it.
    """
    if conn.host:
        return conn.host + conn.path
    if not conn.path.strip("/"):
        raise ConfigurationError(f"{settings.SOURCE}: the sqlite connection names no database file; "
                                 f"{connection_hint(conn)}, e.g. sqlite:////data/grid_registry/registry.sqlite")
    return "/" + conn.path.lstrip("/")


def sqlalchemy_url(conn: Connection) -> URL:
    """The SQLAlchemy URL of the grid registry a Connection points at.

    sqlite → sqlite:///<file>; postgres/postgresql → postgresql+psycopg; mysql/mariadb →
    mysql+pymysql with charset utf8mb4; a `dialect+driver` scheme is kept as given; the extra
    `sqlalchemy_url` overrides everything.
    """
    explicit = conn.extra.get("sqlalchemy_url")
    if explicit:
        try:
            url = make_url(explicit)
        except ArgumentError as exc:
            raise ConfigurationError(f"{settings.SOURCE}: extra sqlalchemy_url {explicit!r} is not a "
                                     f"SQLAlchemy URL ({exc}); {connection_hint(conn)}") from exc
    else:
        scheme = conn.scheme.lower()
        backend, _, driver = scheme.partition("+")
        if backend == "sqlite":
            url = URL.create(scheme, database=_sqlite_database(conn))
        elif backend in ("postgres", "postgresql"):
            url = _server_url(f"postgresql+{driver or 'psycopg'}", conn, "postgresql")
        elif backend in ("mysql", "mariadb"):
            url = _server_url(f"mysql+{driver or 'pymysql'}", conn, "mysql")
        else:
            raise ConfigurationError(
                f"{settings.SOURCE}: connection scheme {conn.scheme!r} is not supported; use sqlite://, "
                f"postgres://, mysql:// or mariadb://, or give the extra sqlalchemy_url; {connection_hint(conn)}")
    if url.get_backend_name() == "mysql" and "charset" not in url.query:
        # Without utf8mb4 on the connection, Chinese outside the BMP arrives as '?'.
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url


def _server_url(drivername: str, conn: Connection, family: str) -> URL:
    query = {k: v for k, v in conn.extra.items() if k in settings.DRIVER_EXTRAS[family]}
    return URL.create(drivername, username=conn.login, password=conn.password, host=conn.host,
                      port=conn.port, database=conn.path.strip("/") or None, query=query)


def safe_url(url: URL) -> str:
    """The URL as text with the password masked: safe for messages and logs."""
    return url.render_as_string(hide_password=True)


# ---------------------------------------------------------------------------------------------
# Engine and reflection


def open_engine(url: URL) -> Engine:
    """An engine whose sessions read in UTC and, where the engine allows it, cannot write."""
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        # A connector must never change the silo. In UTC, timestamptz values arrive as UTC and a
        # bound instant compares with a naive `timestamp` column as the UTC wall clock it holds.
        options = "-c default_transaction_read_only=on -c TimeZone=UTC"
        extra = url.query.get("options")
        connect_args = {"options": f"{extra} {options}" if isinstance(extra, str) else options}
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = settings.CONNECT_TIMEOUT_S
    elif backend == "mysql" and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = settings.CONNECT_TIMEOUT_S
    try:
        engine = create_engine(url, connect_args=connect_args)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigurationError(f"{settings.SOURCE}: cannot use {safe_url(url)}: {exc}") from exc
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_session)
    elif backend == "mysql":
        event.listen(engine, "connect", _mysql_session)
    return engine


def _sqlite_session(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # query_only: the connector never writes; busy_timeout: wait out the registry's own commits.
    cursor.execute("PRAGMA query_only=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _mysql_session(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # TIMESTAMP columns are shown in the session zone; UTC keeps every naive value a UTC instant.
    cursor.execute("SET time_zone = '+00:00'")
    cursor.execute("SET SESSION TRANSACTION READ ONLY")
    cursor.close()


def connect(engine: Engine, hint: str) -> SAConnection:
    """Open a connection, or fail with SourceUnavailable naming the database and what to check."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not str(url.database).startswith("file:") and not Path(str(url.database)).is_file():
        # SQLite would silently create an empty database; a missing file is a missing source.
        raise SourceUnavailable(f"{settings.SOURCE}: the registry file {url.database} does not exist; {hint}")
    try:
        return engine.connect()
    except DBAPIError as exc:
        raise SourceUnavailable(f"{settings.SOURCE}: cannot connect to {safe_url(url)}: "
                                f"{str(exc.orig).strip()}; is the server up? {hint}") from exc


def reflect(conn: SAConnection, name: str) -> Table:
    """Table `name` as the source database declares it (columns, types, primary key)."""
    try:
        return Table(name, MetaData(), autoload_with=conn)
    except DBAPIError as exc:
        raise SourceUnavailable(f"{settings.SOURCE}: reading the definition of {name} failed: "
                                f"{str(exc.orig).strip()}; nothing was landed, re-run the sync") from exc
    except NoSuchTableError as exc:
        raise SchemaDrift(f"{settings.SOURCE}: table {name!r} does not exist in {safe_url(conn.engine.url)}; "
                          "check that the connection points at the grid registry database") from exc


def arrow_type(type_: TypeEngine[Any]) -> pa.DataType | None:
    """The Arrow type a column of SQL type `type_` lands as; None: let Arrow infer it."""
    if isinstance(type_, sqltypes.DateTime):
        return settings.TS
    if isinstance(type_, sqltypes.Date):
        return pa.date32()
    if isinstance(type_, sqltypes.Boolean):
        return pa.bool_()
    if isinstance(type_, mysql.TINYINT) and type_.display_width == 1:
        return pa.bool_()  # MySQL's BOOLEAN is TINYINT(1)
    if isinstance(type_, sqltypes.Integer):
        return pa.int64()
    if isinstance(type_, sqltypes.Float):
        return pa.float64()
    if isinstance(type_, sqltypes.Time):
        return pa.time64("us")
    if isinstance(type_, sqltypes.String):
        return pa.string()
    if isinstance(type_, sqltypes._Binary):
        return pa.binary()
    return None  # NUMERIC (→ decimal), intervals, JSON …: Arrow infers from the values


def arrow_schema(table: Table) -> pa.Schema:
    """The Arrow schema the table's rows land as (inferred columns typed as null until read)."""
    return pa.schema([pa.field(c.name, arrow_type(c.type) or pa.null()) for c in table.columns])


# ---------------------------------------------------------------------------------------------
# Keyset position and query


@dataclass(frozen=True)
class Position:
    """The last (updated_at, primary key) read: the next page starts strictly after it."""

    updated_at: datetime
    key: tuple[Any, ...]

    @classmethod
    def from_state(cls, state: dict[str, Any], table: str, key: Sequence[str]) -> Position | None:
        """The position saved in a load's state, None when there is none (first or full load)."""
        if "updated_at" not in state:
            return None
        saved = state.get("key") or []
        if len(saved) != len(key):
            raise ConfigurationError(
                f"{settings.SOURCE}: the saved state of {table} has key {saved!r}, but the key is "
                f"{list(key)}; run the sync with full_refresh=True to start over")
        at = datetime.fromisoformat(state["updated_at"])
        return cls(at if at.tzinfo else at.replace(tzinfo=UTC), tuple(saved))

    def state(self) -> dict[str, Any]:
        return {"updated_at": self.iso, "key": list(self.key)}

    @property
    def iso(self) -> str:
        return self.updated_at.astimezone(UTC).isoformat()


def _bind_instant(type_: TypeEngine[Any], at: datetime) -> datetime:
    # Naive columns (SQLite text, MariaDB DATETIME, PostgreSQL `timestamp`) hold UTC wall clock.
    at = at.astimezone(UTC)
    return at if getattr(type_, "timezone", False) else at.replace(tzinfo=None)


# Engines whose planners turn a row-value comparison into an index range. MariaDB evaluates it
# row by row (a full scan and a sort per page), so it gets the expanded form below.
ROW_VALUE_DIALECTS = ("postgresql", "sqlite")


def keyset_query(table: Table, key: Sequence[str], after: Position | None, limit: int,
                 dialect: str, since: datetime | None = None) -> Select[*tuple[Any, ...]]:
    """The next `limit` rows after `after` in (updated_at, key) order — no OFFSET, ever.

    OFFSET n makes the server read and throw away n rows per page (quadratic over a full
    read) and shifts rows between pages when the table changes mid-read; a keyset position
    stays valid and each page is one index range.
    """
    at = table.c[settings.CURSOR]
    keys = [table.c[k] for k in key]
    # Raw driver values: converting in Arrow is far faster than SQLAlchemy's per-row processing.
    columns = [type_coerce(c, NullType()).label(c.name) for c in table.columns]
    ordered: Select[*tuple[Any, ...]] = select(*columns).order_by(at, *keys)
    # SQLAlchemy's SQLite compiler appends "OFFSET 0" to every LIMIT; harmless, but the
    # statement should read as the rule says (and as the README shows).
    query = ordered.suffix_with(f"LIMIT {int(limit)}") if dialect == "sqlite" else ordered.limit(limit)
    if after is None and since is not None:
        # The first page of an incremental read: every row at or after `since`, inclusive. The
        # source's clock is not trusted to order commits: a row committed later with an
        # updated_at equal to (or, within the overlap, below) the saved one is read again.
        return query.where(at >= bindparam("wm_since", _bind_instant(at.type, since), type_=at.type))
    if after is None:
        return query
    at_value = bindparam("wm_at", _bind_instant(at.type, after.updated_at), type_=at.type)
    key_values = [bindparam(f"wm_k{i}", v, type_=c.type) for i, (c, v) in enumerate(zip(keys, after.key, strict=True))]
    if dialect in ROW_VALUE_DIALECTS:
        return query.where(tuple_(at, *keys) > tuple_(at_value, *key_values))
    # (at, k1, k2) > (a, b1, b2) spelled out; the leading `at >= a` gives the planner a range.
    tail: ColumnElement[bool] = keys[-1] > key_values[-1]
    for column, value in zip(reversed(keys[:-1]), reversed(key_values[:-1]), strict=True):
        tail = or_(column > value, and_(column == value, tail))
    return query.where(and_(at >= at_value, or_(at > at_value, tail)))


# ---------------------------------------------------------------------------------------------
# Rows → Arrow


class Unreadable(ValueError):
    """A value that cannot be read as its column's type."""


def _instant(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise Unreadable(f"{value!r} is not a timestamp") from exc
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    raise Unreadable(f"{value!r} is not a timestamp")


def _day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise Unreadable(f"{value!r} is not a date") from exc


def _flag(value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "t", "yes"):
        return True
    if text in ("0", "false", "f", "no"):
        return False
    raise Unreadable(f"{value!r} is not a boolean")


ARROW_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)


def _slow_parser(type_: pa.DataType | None) -> Any:
    if type_ is None:
        return None
    if pa.types.is_timestamp(type_):
        return _instant
    if pa.types.is_date32(type_):
        return _day
    if pa.types.is_boolean(type_):
        return _flag
    return None


def _fast(values: list[Any] | pa.Array, type_: pa.DataType | None) -> pa.Array:
    if isinstance(values, pa.Array):
        return _fast_arrow(values, type_)
    if type_ is None:
        return pa.array(values)
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, str) and (pa.types.is_timestamp(type_) or pa.types.is_date32(type_)):
        # SQLite text ('YYYY-MM-DD HH:MM:SS.ffffff', naive UTC): Arrow parses it natively.
        naive = pa.timestamp("us") if pa.types.is_timestamp(type_) else type_
        return pa.array(values, pa.string()).cast(naive).cast(type_)
    if pa.types.is_boolean(type_) and sample is not None and not isinstance(sample, bool):
        return pa.array(values, pa.int64()).cast(type_)  # SQLite and MySQL booleans are 0/1
    # Naive datetimes become UTC instants; aware ones are converted to UTC.
    return pa.array(values, type_)


def _fast_arrow(values: pa.Array, type_: pa.DataType | None) -> pa.Array:
    """A column that arrived as Arrow already (text, integers) cast to its landing type."""
    if type_ is None or values.type == type_:
        return values
    if pa.types.is_string(values.type) and pa.types.is_timestamp(type_):
        return values.cast(pa.timestamp("us")).cast(type_)  # naive UTC text, as above
    return values.cast(type_)


def to_arrow(values: list[Any] | pa.Array, type_: pa.DataType | None,
             column: str = "") -> tuple[pa.Array, dict[int, str]]:
    """A column's driver values as Arrow, plus {row: reason} for values that cannot be read.

    The whole column converts in Arrow; only a column holding an odd value (a timestamp with an
    offset, MySQL's '0000-00-00') is parsed value by value to find and set apart the bad ones.
    """
    try:
        return _fast(values, type_), {}
    except ARROW_ERRORS as exc:
        failure = exc
    if isinstance(values, pa.Array):
        values = values.to_pylist()
    parse = _slow_parser(type_)
    if parse is None:
        if type_ is None or pa.types.is_string(type_):
            # Mixed driver values in an untyped or text column: land them as their text.
            return pa.array([None if v is None else str(v) for v in values], pa.string()), {}
        raise ConnectorError(f"{settings.SOURCE}: column {column} does not convert to {type_} ({failure}); "
                             "the connector's type mapping (helpers.arrow_type) needs this case") from failure
    bad: dict[int, str] = {}
    parsed: list[Any] = []
    for i, value in enumerate(values):
        try:
            parsed.append(None if value is None else parse(value))
        except Unreadable as exc:
            bad[i] = str(exc)
            parsed.append(None)
    return pa.array(parsed, type_), bad


@dataclass
class Page:
    """One page of rows: the readable ones with their positions, the unreadable ones, where it ended."""

    rows: pa.Table
    positions: pa.Array
    unreadable: list[tuple[str, str, str]]  # (position, raw record as JSON, reason)
    last: Position      # the page's last row: where the next keyset page starts
    greatest: Position  # the page's greatest (updated_at, key): where an unordered scan ends


def _positions(table: str, keys: list[pa.Array]) -> pa.Array:
    parts: list[Any] = [f"{table} pk="]
    for i, column in enumerate(keys):
        parts += ([","] if i else []) + [column.cast(pa.string())]
    return pc.binary_join_element_wise(*parts, "")


def _value(column: Sequence[Any] | pa.Array, i: int) -> Any:
    return column[i].as_py() if isinstance(column, pa.Array) else column[i]


def _greatest(cursor: pa.Array, keys: list[pa.Array], raw_keys: list[Sequence[Any] | pa.Array]) -> Position:
    """The greatest (updated_at, key) of a page, keys compared as Arrow orders them."""
    order = pc.sort_indices(pa.table([cursor, *keys], names=["at", *(f"k{i}" for i in range(len(keys)))]),
                            sort_keys=[("at", "descending"), *((f"k{i}", "descending") for i in range(len(keys)))])
    top = order[0].as_py()
    return Position(_instant(cursor[top].as_py()), tuple(_value(k, top) for k in raw_keys))


def to_page(table: Table, schema: pa.Schema, rows: Sequence[Any] | pa.Table, key: Sequence[str]) -> Page:
    """Driver rows of `table` (tuples, or an Arrow table of the raw values) as an Arrow page; rows
    with unreadable values are set apart.

    An unreadable `updated_at` or key fails the load: the keyset cannot move past a row it
    cannot place.
    """
    names = [c.name for c in table.columns]
    raw: list[Sequence[Any] | pa.Array]
    if isinstance(rows, pa.Table):
        raw = [rows.column(n).combine_chunks() for n in names]
        count = rows.num_rows
    else:
        raw = list(zip(*rows, strict=True))
        count = len(rows)

    def ident(i: int) -> str:
        return ",".join(str(_value(raw[names.index(k)], i)) for k in key)

    arrays: list[pa.Array] = []
    bad: dict[int, str] = {}
    for name, values, field in zip(names, raw, schema, strict=True):
        array, unreadable = to_arrow(values if isinstance(values, pa.Array) else list(values),
                                     None if pa.types.is_null(field.type) else field.type, f"{table.name}.{name}")
        if name == settings.CURSOR or name in key:
            nulls = [] if array.null_count == 0 else \
                [(i, "is NULL") for i, v in enumerate(array.is_null().to_pylist()) if v and i not in unreadable]
            problems = sorted(nulls + list(unreadable.items()))
            if problems:
                i, reason = problems[0]
                raise ConnectorError(f"{settings.SOURCE}: {table.name} pk={ident(i)}: {name} {reason}; the "
                                     "sync cannot page past this row — fix it in the registry, then re-run")
        for i, reason in unreadable.items():
            bad.setdefault(i, f"{name}: {reason}")
        arrays.append(array)
    page = pa.table(arrays, names=names)
    cursor, keys = page.column(settings.CURSOR).combine_chunks(), [page.column(k).combine_chunks() for k in key]
    last = Position(_instant(cursor[-1].as_py()), tuple(_value(raw[names.index(k)], count - 1) for k in key))
    greatest = _greatest(cursor, keys, [raw[names.index(k)] for k in key])
    held: list[tuple[str, str, str]] = []
    if bad:
        for i, reason in sorted(bad.items()):
            record = json.dumps({n: _value(raw[j], i) for j, n in enumerate(names)}, ensure_ascii=False, default=str)
            held.append((f"{table.name} pk={ident(i)}", record, reason))
        page = page.filter(pa.array([i not in bad for i in range(count)]))
    return Page(page, _positions(table.name, [page.column(k) for k in key]), held, last, greatest)


def credible(page: pa.Table, key: Sequence[str], limit: datetime) -> tuple[Position | None, pa.Table]:
    """(the greatest (updated_at, key) among the rows dated at most `limit`, or None if none is;
    the rows dated later, as record_key (key values joined by ',') and updated_at).

    A cursor must not move to a time the source's clock has not reached: a row stamped in the
    future (a clock running ahead) would make every later change look older than the position.
    """
    cursor = page.column(settings.CURSOR)
    ahead = pc.fill_null(pc.greater(cursor, pa.scalar(limit.astimezone(UTC), cursor.type)), False)
    later = page.filter(ahead)
    parts = [later.column(k).cast(pa.string()) for k in key]
    record_key = pc.binary_join_element_wise(*parts, ",") if len(parts) > 1 else parts[0]
    future = pa.table({"record_key": record_key, "updated_at": later.column(settings.CURSOR)})
    rows = page.filter(pc.invert(ahead))
    if rows.num_rows == 0:
        return None, future
    cursor_ok, keys = rows.column(settings.CURSOR).combine_chunks(), [rows.column(k).combine_chunks() for k in key]
    return _greatest(cursor_ok, keys, keys), future


def _failed(table: Table, where: str, exc: Exception) -> SourceUnavailable:
    reason = exc.orig if isinstance(exc, DBAPIError) else exc
    return SourceUnavailable(f"{settings.SOURCE}: reading {table.name} {where} failed: "
                             f"{str(reason).strip()}; nothing was landed, re-run the sync")


def pages(conn: SAConnection, table: Table, key: Sequence[str], after: Position | None,
          batch_size: int, since: datetime | None = None) -> Iterator[Page]:
    """Every row after `after` (or, when `since` is given, at or after `since`), page by page,
    in (updated_at, key) order; after the first page, strictly after the last row read."""
    schema = arrow_schema(table)
    while True:
        query = keyset_query(table, key, after, batch_size, conn.dialect.name, since if after is None else None)
        try:
            rows = conn.execute(query).fetchall()
        except DBAPIError as exc:
            raise _failed(table, f"after {after.iso} pk={list(after.key)}" if after else "from the start", exc) from exc
        if not rows:
            return
        page = to_page(table, schema, rows, key)
        if after is not None and page.last == after:
            # Only possible when stored values do not compare like the bound cursor (e.g. a
            # SQLite timestamp in another text format): stop instead of reading this page forever.
            raise ConnectorError(f"{settings.SOURCE}: {table.name}: the keyset did not move past "
                                 f"{after.iso} pk={list(after.key)}; its updated_at text is not in the "
                                 "'YYYY-MM-DD HH:MM:SS.ffffff' form the paging relies on")
        yield page
        if len(rows) < batch_size:
            return
        after = page.last


# ---------------------------------------------------------------------------------------------
# The first (or full-refresh) load: one unordered scan


def scan(conn: SAConnection, table: Table, key: Sequence[str], batch_size: int) -> Iterator[Page]:
    """Every row of the table in one unordered statement — one read snapshot, no index walk —
    `batch_size` rows per page. The load's end position is the greatest Page.greatest.

    A first load has no position to resume from, so it needs no (updated_at, key) order: on
    SQLite the ordered walk costs twice the plain scan. Increments keep keyset pages.
    """
    schema = arrow_schema(table)
    if conn.dialect.name == "sqlite" and all(_JSON_TEXT.get(_kind(f.type)) for f in schema):
        yield from _sqlite_json_scan(conn, table, schema, key, batch_size)
        return
    columns = [type_coerce(c, NullType()).label(c.name) for c in table.columns]
    try:
        result = conn.execute(select(*columns), execution_options={"stream_results": True, "yield_per": batch_size})
        for rows in result.partitions(batch_size):
            yield to_page(table, schema, rows, key)
    except DBAPIError as exc:
        raise _failed(table, "in one scan", exc) from exc


def _kind(type_: pa.DataType) -> str:
    for kind, test in (("string", pa.types.is_string), ("timestamp", pa.types.is_timestamp),
                       ("date", pa.types.is_date32), ("integer", pa.types.is_int64),
                       ("boolean", pa.types.is_boolean), ("float", pa.types.is_float64)):
        if test(type_):
            return kind
    return "other"


# How each kind of column travels in SQLite's JSON, and the Arrow type it is parsed as before
# the usual conversion: text as text, integers and 0/1 booleans as integers, REAL as text with 17
# significant digits (SQLite's JSON keeps 15), so every double round-trips exactly.
_JSON_TEXT: dict[str, tuple[str, pa.DataType]] = {
    "string": ("{c}", pa.string()), "timestamp": ("{c}", pa.string()), "date": ("{c}", pa.string()),
    "integer": ("{c}", pa.int64()), "boolean": ("{c}", pa.int64()),
    "float": ("iif(typeof({c}) = 'real', printf('%!.17g', {c}), {c})", pa.string()),
}
JSON_PARSE_THREADS = 1  # pages parsed in the background while SQLite reads the next


def _sqlite_json_scan(conn: SAConnection, table: Table, schema: pa.Schema, key: Sequence[str],
                      batch_size: int) -> Iterator[Page]:
    """SQLite's own json_object() renders each row as one string, which Arrow's JSON reader
    parses in C++: one Python object per row instead of one per value, about 2x faster than
    driver tuples. Parsing runs in a thread while SQLite reads on (both release the GIL). A page
    the strict parse refuses (a value of another type than its column's, as SQLite allows) is
    read row by row with json.loads, which gives what the driver would."""
    quote = conn.dialect.identifier_preparer.quote
    parts, fields = [], []
    for i, (c, f) in enumerate(zip(table.columns, schema, strict=True)):
        sql, parsed = _JSON_TEXT[_kind(f.type)]
        # Short member names: a third less text to render and parse than the column names.
        parts.append(f"'c{i}', " + sql.format(c=quote(c.name)))
        fields.append(pa.field(f"c{i}", parsed))
    options = pajson.ParseOptions(explicit_schema=pa.schema(fields), unexpected_field_behavior="error")
    names = [c.name for c in table.columns]
    statement = f"SELECT json_object({', '.join(parts)}) FROM {quote(table.name)}"

    def parse(lines: list[str]) -> Page:
        try:
            rows: pa.Table | list[tuple[Any, ...]] = pajson.read_json(
                io.BytesIO("\n".join(lines).encode()), parse_options=options).rename_columns(names)
        except pa.ArrowException:
            records = [json.loads(line) for line in lines]
            rows = [tuple(r.get(f"c{i}") for i in range(len(names))) for r in records]
        return to_page(table, schema, rows, key)

    # The DB-API cursor itself: SQLAlchemy's row wrapping would cost more than the rows.
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(statement)
        with ThreadPoolExecutor(JSON_PARSE_THREADS) as pool:
            pending: deque[Future[Page]] = deque()
            while True:
                lines = [line for (line,) in cursor.fetchmany(batch_size)]
                if lines:
                    pending.append(pool.submit(parse, lines))
                while pending and (len(pending) > 1 or not lines):
                    yield pending.popleft().result()
                if not lines:
                    return
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _failed(table, "in one scan", exc) from exc
    finally:
        cursor.close()


# ---------------------------------------------------------------------------------------------
# Reconciliation: the hash computed in the source database


# Dialects that hash a whole row themselves, so a reconciliation reads only (key, updated_at,
# hash) of every row and whole rows only of the keys that may differ. SQLite has no hash function.
HASHING_DIALECTS = ("postgresql", "mysql")
FETCH_KEYS = 2_000  # keys per `where key in (...)` when the differing rows are fetched


def hashes_in_source(conn: SAConnection) -> bool:
    """Whether the source database can hash its rows (narrow_scan)."""
    return conn.dialect.name in HASHING_DIALECTS


def _narrow_sql(conn: SAConnection, table: Table, key: Sequence[str]) -> str:
    quote = conn.dialect.identifier_preparer.quote
    name, at = quote(table.name), quote(settings.CURSOR)
    if conn.dialect.name == "postgresql":
        # The row's own text (every column, in order, as PostgreSQL prints it in this UTC
        # session), hashed to 64 bits; updated_at as microseconds since 1970 (naive: UTC wall clock).
        keys = ", ".join(f"t.{quote(k)}::text" for k in key)
        return (f"copy (select {keys}, (extract(epoch from t.{at}) * 1000000)::bigint, "
                f"hashtextextended(t::text, 0)::text from {name} t) to stdout with (format csv)")
    # MariaDB: QUOTE() tells NULL from the text 'NULL' and keeps column boundaries (0x1f between);
    # 64 bits of the MD5. One text value per row: pymysql decodes values in Python, one at a time.
    values = ", ".join(f"quote({quote(c.name)})" for c in table.columns)
    keys = ", ".join(quote(k) for k in key)
    return (f"select concat_ws(',', {keys}, timestampdiff(microsecond, '1970-01-01 00:00:00', {at}), "
            f"left(md5(concat_ws(0x1f, {values})), 16)) from {name}")


def narrow_scan(conn: SAConnection, table: Table, key: Sequence[str]) -> pa.Table:
    """Every row's key (text), updated_at (timestamp, UTC) and `_sh`, the source's own hash of the
    whole row, in one statement (one read snapshot with the connection's transaction).

    PostgreSQL streams it as CSV (COPY, parsed by Arrow); MariaDB as one text value per row. Keys
    holding a comma, quote or line break are not expected in the registry: the parse fails loudly.
    """
    sql = _narrow_sql(conn, table, key)
    driver = conn.connection.driver_connection
    parts: list[bytes] = []
    try:
        if conn.dialect.name == "postgresql":
            with driver.cursor() as cursor, cursor.copy(sql) as copy:  # type: ignore[union-attr]
                parts.extend(bytes(block) for block in copy)
        else:
            import pymysql.cursors  # type: ignore[import-untyped, unused-ignore]

            cursor = driver.cursor(pymysql.cursors.SSCursor)  # type: ignore[union-attr]
            try:
                cursor.execute(sql)
                while rows := cursor.fetchmany(50_000):
                    parts.append("\n".join(line for (line,) in rows).encode() + b"\n")
            finally:
                cursor.close()
    except conn.dialect.loaded_dbapi.Error as exc:
        raise _failed(table, "for reconciliation (key, updated_at, hash)", exc) from exc
    names = [*key, settings.CURSOR, "_sh"]
    types = {**dict.fromkeys(key, pa.string()), settings.CURSOR: pa.int64(), "_sh": pa.string()}
    body = b"".join(parts)
    if not body:
        return pa.table({n: pa.array([], t) for n, t in types.items()}).cast(pa.schema(
            [pa.field(n, settings.TS if n == settings.CURSOR else t) for n, t in types.items()]))
    try:
        narrow = pacsv.read_csv(pa.py_buffer(body), read_options=pacsv.ReadOptions(column_names=names),
                                convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        raise ConnectorError(f"{settings.SOURCE}: {table.name}: the source's (key, updated_at, hash) rows do not "
                             f"parse ({exc}); a key holding a comma or line break? Reconcile without the source's "
                             "hash: point the connection at a SQLite copy, or fix the key") from exc
    at = narrow.column(settings.CURSOR)
    if at.null_count:
        raise ConnectorError(f"{settings.SOURCE}: {table.name}: a row has no {settings.CURSOR}; the reconciliation "
                             "cannot place it — fix it in the registry, then re-run")
    return narrow.set_column(len(key), settings.CURSOR, pc.cast(at, pa.timestamp("us")).cast(settings.TS))


def fetch(conn: SAConnection, table: Table, key: Sequence[str], keys: pa.Table, batch_size: int) -> Iterator[Page]:
    """The whole rows of the keys in `keys` (a table of the key columns), FETCH_KEYS keys a statement."""
    schema = arrow_schema(table)
    columns = [type_coerce(c, NullType()).label(c.name) for c in table.columns]
    target = table.c[key[0]] if len(key) == 1 else tuple_(*(table.c[k] for k in key))
    values: list[Any] = (keys.column(key[0]).to_pylist() if len(key) == 1
                         else list(zip(*(keys.column(k).to_pylist() for k in key), strict=True)))
    rows: list[Any] = []
    for start in range(0, len(values), FETCH_KEYS):
        try:
            rows.extend(conn.execute(select(*columns).where(target.in_(values[start:start + FETCH_KEYS]))).fetchall())
        except DBAPIError as exc:
            raise _failed(table, "for the rows that differ", exc) from exc
        if len(rows) >= batch_size:
            yield to_page(table, schema, rows, key)
            rows = []
    if rows:
        yield to_page(table, schema, rows, key)
