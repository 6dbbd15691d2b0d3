"""Great Expectations evaluated inside DuckDB: a compatibility layer for its SQL engine, and validate_table."""

from __future__ import annotations

import builtins
import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlparse
from urllib.request import url2pathname

import duckdb
import sqlalchemy as sa
from duckdb_engine import ConnectionWrapper

from expectations import lazy_imports

# GE's loggers inherit whatever the host configured (Airflow's structlog at INFO), and one of
# them pins itself to INFO; keep them at WARNING before and after GE's import.
logging.getLogger("great_expectations").setLevel(logging.WARNING)
# scipy.stats and altair are bound by GE at import but used only inside functions: load them lazily
# (expectations/lazy_imports.py; about a third of GE's import time).
lazy_imports.defer()

import great_expectations as gx  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context import AbstractDataContext  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.data_context.types.resource_identifiers import (  # noqa: E402
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from great_expectations.datasource.fluent import SQLDatasource  # noqa: E402
from great_expectations.datasource.fluent.sql_datasource import TableAsset  # noqa: E402
from great_expectations.execution_engine import SqlAlchemyExecutionEngine  # noqa: E402
from great_expectations.expectations.metrics.map_metric_provider import (  # noqa: E402
    ColumnMapMetricProvider,
    column_condition_partial,
)

for _name in list(logging.root.manager.loggerDict):
    if _name.startswith("great_expectations."):
        logging.getLogger(_name).setLevel(logging.NOTSET)

BATCH_DEFINITION = "whole_table"
# duckdb_engine binds parameters as $1, $2 (numeric_dollar), which GE cannot inline when it
# renders unexpected_index_query: "$2" stays in the SQL. With `?` GE inlines the values.
ENGINE_KWARGS = {"paramstyle": "qmark"}
# BASIC results, without GE's sample of 20 unexpected values: that sample costs one query per
# expectation (a full window over the column for uniqueness), and validate_table returns every
# failing row id instead. Counts and the unexpected_index_query still reach Data Docs.
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}


class ValidationEngineError(RuntimeError):
    """Great Expectations could not evaluate an expectation: an engine or suite error, not bad data."""


@dataclass
class ExpectationOutcome:
    """One expectation's result, flattened from GE's ExpectationValidationResult."""

    expectation_type: str
    column: str | None
    kwargs: dict
    meta: dict
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_row_ids: list[int] | None
    exception: str | None


@dataclass
class ValidationOutcome:
    """A suite's result on one table, as GE computed and stored it."""

    success: bool
    results: list[ExpectationOutcome]
    statistics: dict
    docs_url: str | None
    # The stored result's key in the context (a ValidationResultIdentifier), for build_docs(only=...)
    result_key: Any = None


class DuckDBExecutionEngine(SqlAlchemyExecutionEngine):
    """GE's SQL execution engine, made to work on DuckDB through duckdb_engine.

    GE runs a query as `with engine.connect() as c: result = c.execute(q)` and fetches the rows
    after the block has closed the connection. Most drivers keep fetched-ahead rows in their
    cursor, so that works; duckdb_engine's cursor is the DuckDB connection itself, and closing
    the SQLAlchemy connection rolls back the transaction duckdb_engine began on it, which drops
    the pending result. `fetchall()` then returns [] and every metric fails with
    "list index out of range" (GE issues #10738, #11579). Here the rows are buffered while the
    connection is still open.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # GE recognises a dialect by its SQLAlchemy module and gives up on unknown ones (no
        # LIKE, no type checks). duckdb_engine *is* SQLAlchemy's PostgreSQL dialect with
        # DuckDB's driver, so PostgreSQL's module is the one GE should consult; where DuckDB's
        # SQL differs (regex), the metric providers below take over.
        self.dialect_module = sa.dialects.postgresql

    def execute_query(self, query: Any) -> Any:
        """Run `query` and buffer its rows before the connection closes."""
        with self.get_connection() as connection:
            return connection.execute(query).freeze()()

    def get_inspector(self) -> Any:
        """SQLAlchemy's inspector, with column reflection that works on DuckDB."""
        return _DuckDBInspector(super().get_inspector(), self.engine)


def _regexp_matches(column: Any, regex: str) -> Any:
    # DuckDB's `~` is a full match (PostgreSQL's searches); regexp_matches searches, as
    # GE's pandas and Spark engines (str.contains, rlike) do. The pattern is an inline SQL
    # literal, not a bound parameter: GE inlines parameters into unexpected_index_query with
    # Python's repr(), which doubles every backslash (`\d` would become `\\d`).
    literal = "'" + regex.replace("'", "''") + "'"
    return sa.func.regexp_matches(column, sa.literal_column(literal, sa.String))


class DuckDBColumnValuesMatchRegex(ColumnMapMetricProvider):
    """GE's column_values.match_regex, for DuckDBExecutionEngine."""

    condition_metric_name = "column_values.match_regex"
    condition_value_keys = ("regex",)

    @column_condition_partial(engine=DuckDBExecutionEngine)
    def _duckdb(cls, column: Any, regex: str, **kwargs: Any) -> Any:
        return _regexp_matches(column, regex)


class DuckDBColumnValuesNotMatchRegex(ColumnMapMetricProvider):
    """GE's column_values.not_match_regex, for DuckDBExecutionEngine."""

    condition_metric_name = "column_values.not_match_regex"
    condition_value_keys = ("regex",)

    @column_condition_partial(engine=DuckDBExecutionEngine)
    def _duckdb(cls, column: Any, regex: str, **kwargs: Any) -> Any:
        return sa.not_(_regexp_matches(column, regex))


class DuckDBColumnValuesMatchRegexList(ColumnMapMetricProvider):
    """GE's column_values.match_regex_list, for DuckDBExecutionEngine."""

    condition_metric_name = "column_values.match_regex_list"
    condition_value_keys = ("regex_list", "match_on")
    default_kwarg_values = {"match_on": "any"}

    @column_condition_partial(engine=DuckDBExecutionEngine)
    def _duckdb(cls, column: Any, regex_list: list[str], match_on: str, **kwargs: Any) -> Any:
        if match_on not in ("any", "all") or not regex_list:
            raise ValueError("match_on must be 'any' or 'all', with at least one regex")
        matches = [_regexp_matches(column, regex) for regex in regex_list]
        return sa.or_(*matches) if match_on == "any" else sa.and_(*matches)


class DuckDBColumnValuesNotMatchRegexList(ColumnMapMetricProvider):
    """GE's column_values.not_match_regex_list, for DuckDBExecutionEngine."""

    condition_metric_name = "column_values.not_match_regex_list"
    condition_value_keys = ("regex_list",)

    @column_condition_partial(engine=DuckDBExecutionEngine)
    def _duckdb(cls, column: Any, regex_list: list[str], **kwargs: Any) -> Any:
        if not regex_list:
            raise ValueError("at least one regex must be supplied in regex_list")
        return sa.and_(*(sa.not_(_regexp_matches(column, regex)) for regex in regex_list))


# DuckDB type names that SQLAlchemy's PostgreSQL names spell differently.
_TYPE_ALIASES = {"double": "double precision", "decimal": "numeric", "blob": "bytea"}


class _DuckDBInspector:
    """An Inspector whose get_columns reads DuckDB's catalog.

    SQLAlchemy >= 2.0.45 reflects PostgreSQL collations from pg_catalog.pg_collation, which
    DuckDB only stubs (duckdb_engine issues #1379, #1391), so duckdb_engine's get_columns
    raises. GE then falls back to `select * from <table> limit 1` without the schema, which
    fails for every table outside `main`.
    """

    def __init__(self, inspector: sa.Inspector, engine: sa.Engine) -> None:
        self._inspector = inspector
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inspector, name)

    def get_columns(self, table_name: str, schema: str | None = None, **kw: Any) -> list[dict]:
        """Name, SQLAlchemy type and nullability of each column, in table order."""
        query = sa.text(
            "select column_name, lower(data_type), is_nullable from duckdb_columns()"
            " where schema_name = coalesce(:schema, current_schema()) and table_name = :table"
            " order by column_index"
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query, {"schema": schema, "table": str(table_name)}).all()
        if not rows:
            raise sa.exc.NoSuchTableError(f"{schema}.{table_name}" if schema else table_name)
        names = self._inspector.dialect.ischema_names  # type: ignore[attr-defined]
        columns = []
        for name, data_type, nullable in rows:
            base = str(data_type).split("(")[0].strip()
            type_class = names.get(_TYPE_ALIASES.get(base, base), sa.types.NullType)
            columns.append({"name": name, "type": type_class(), "nullable": bool(nullable)})
        return columns


class _SharedConnection:
    """A SQLAlchemy engine over cursors of a caller's DuckDB connection, and GE's engine on it."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        # A DuckDB cursor is a new connection to the same database instance: it reads what
        # `con` has committed, and opening the file a second time (which DuckDB refuses when
        # the configuration differs, as duckdb_engine's user agent does) is never needed.
        self.engine = sa.create_engine(
            "duckdb://",
            creator=lambda: ConnectionWrapper(con.cursor()),
            **ENGINE_KWARGS,
        )
        # Temp tables would copy the table into one pooled cursor's session; DuckDB reads it
        # in place.
        self.execution_engine = DuckDBExecutionEngine(engine=self.engine, create_temp_table=False)

    def close(self) -> None:
        # Closes the pooled cursors, so nothing of ours keeps the database open.
        self.engine.dispose()


# The caller's connection per connection string while validate_table runs. Keyed by string,
# not kept on the datasource, because GE's context may hand out copies of a datasource.
_SHARED: dict[str, _SharedConnection] = {}


class DuckDBDatasource(SQLDatasource):
    """A GE SQL datasource on one schema of a DuckDB database, evaluated by DuckDBExecutionEngine.

    While `validate_table` runs, engines come from the caller's own connection; otherwise
    (e.g. another tool opening the project) GE connects to `connection_string` itself.
    """

    type: Literal["duckdb"] = "duckdb"  # type: ignore[assignment]
    # GE 1.14 deprecated naming the schema on each table asset in favour of the datasource.
    schema_name: str | None = None
    _EXTRA_EXCLUDED_EXEC_ENG_ARGS: ClassVar[set] = {"schema_name"}

    @property
    def schema_(self) -> str | None:
        """The schema every table asset of this datasource lives in."""
        return self.schema_name

    @property
    def execution_engine_type(self) -> builtins.type[SqlAlchemyExecutionEngine]:
        """The engine GE builds when no caller's connection is shared."""
        return DuckDBExecutionEngine

    def get_engine(self) -> sa.Engine:
        """The SQLAlchemy engine: over the shared connection if there is one."""
        shared = _SHARED.get(str(self.connection_string))
        return shared.engine if shared else super().get_engine()

    def get_execution_engine(self) -> SqlAlchemyExecutionEngine:
        """GE's execution engine: over the shared connection if there is one."""
        shared = _SHARED.get(str(self.connection_string))
        return shared.execution_engine if shared else super().get_execution_engine()


def gx_context(project_dir: Path) -> AbstractDataContext:
    """A file-backed GE context under `project_dir` (created if missing), for results and Data Docs."""
    project_dir = Path(project_dir)
    project_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=project_dir)
    # tqdm bars per metric batch only clutter task logs.
    bars = context.variables.progress_bars
    if not bars or bars["globally"] is not False:
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    return context


def validate_table(
    context: AbstractDataContext,
    con: duckdb.DuckDBPyConnection,
    table: str,
    suite: gx.ExpectationSuite,
    *,
    row_id: str | None = "_row_id",
    run_name: str | None = None,
) -> ValidationOutcome:
    """Run `suite` on `table` ("schema.table") inside DuckDB and store the result in `context`.

    GE reads what `con` has committed, through cursors of `con`; nothing opens the file again.
    For column-map expectations `unexpected_row_ids` lists the `row_id` value of every failing
    row (None when `row_id` is None). Raises ValidationEngineError if any expectation raised.
    """
    schema, _, name = table.rpartition(".")
    if not schema or not name:
        raise ValueError(f"table must be 'schema.table', got {table!r}")
    connection_string = _connection_string(con)
    _check_table_exists(con, schema, name, connection_string)
    if connection_string in _SHARED:
        raise ValidationEngineError(f"{connection_string} is already being validated")
    shared = _SHARED[connection_string] = _SharedConnection(con)
    try:
        datasource = _datasource(context, connection_string, con, schema)
        definition = _validation_definition(context, datasource, name, suite)
        result_format: dict[str, Any] = dict(RESULT_FORMAT)
        if row_id is not None:
            result_format |= {
                "unexpected_index_column_names": [row_id],
                "return_unexpected_index_query": True,
            }
        run_id = RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC))
        result = definition.run(result_format=result_format, run_id=run_id)
        _raise_on_exceptions(table, result.results)
        row_ids = _unexpected_row_ids(con, result.results, row_id)
    except ValidationEngineError:
        raise
    except Exception as e:  # GE's own errors (store, datasource, batch) are engine errors too
        raise ValidationEngineError(
            f"Great Expectations could not validate {table} with suite {suite.name}: {e}"
        ) from e
    finally:
        del _SHARED[connection_string]
        shared.close()
    outcomes = [_outcome(r, ids) for r, ids in zip(result.results, row_ids, strict=True)]
    return ValidationOutcome(
        success=bool(result.success),
        results=outcomes,
        statistics=dict(result.statistics),
        docs_url=_docs_url(context, result),
        result_key=_result_key(result),
    )


def build_docs(context: AbstractDataContext, only: list[ValidationOutcome] | None = None) -> Path:
    """Build the local Data Docs site and return the path of its index.html.

    The site works offline (its CSS/JS from the vendored files, not CDNs) and a batch that passed
    with warnings says so instead of GE's "Failed" (expectations/data_docs.py).

    `only`: the outcomes of this run. Their result pages and their suites' pages are rendered, the
    index is rebuilt, and the pages written now are localised; the rest of the site is left as it
    is. Rendering and rewriting every page of the store grew with every 15-minute cycle (issue #19).
    Without `only`, or on a site not built this way yet, everything is rebuilt.
    """
    # GE re-renders every stored suite: its custom expectations must be registered.
    import expectations.casts
    import expectations.identity
    import expectations.references
    import expectations.uniqueness  # noqa: F401
    from expectations.data_docs import localise, mark_warnings, warned_pages_known

    started = time.time()
    keys: list[Any] | None = None
    if only is not None:
        keys = [o.result_key for o in only if o.result_key is not None]
        keys += list({k.expectation_suite_identifier.name: k.expectation_suite_identifier for k in keys}.values())
    index = _local_index(context)
    incremental = bool(keys) and index is not None and index.is_file() and warned_pages_known(index)
    sites = context.build_data_docs(resource_identifiers=keys if incremental else None)
    url = sites.get("local_site") or next(iter(sites.values()))
    index = Path(url2pathname(urlparse(url).path))
    new_results = [k for k in keys or [] if isinstance(k, ValidationResultIdentifier)] if incremental else None
    mark_warnings(context, index, new_results)
    localise(index, since=started - 1 if incremental else None)
    return index


def _local_index(context: AbstractDataContext) -> Path | None:
    """The local site's index.html (whether built or not), without building anything."""
    try:
        sites = context.get_docs_sites_urls(only_if_exists=False)
    except Exception:
        return None
    urls = [str(s["site_url"]) for s in sites if s.get("site_url") and s.get("site_name") == "local_site"] or \
           [str(s["site_url"]) for s in sites if s.get("site_url")]
    return Path(url2pathname(urlparse(urls[0]).path)) if urls else None


def _fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    # On a cursor of `con`: it sees what GE will see (committed data), and the caller's own
    # connection keeps its pending result and transaction untouched.
    cursor = con.cursor()
    try:
        return cursor.execute(sql, params).fetchall()
    finally:
        cursor.close()


def _connection_string(con: duckdb.DuckDBPyConnection) -> str:
    rows = _fetch(con, "select path from duckdb_databases() where database_name = current_database()")
    path = rows[0][0] if rows else None
    return f"duckdb:///{Path(path).resolve()}" if path else "duckdb:///:memory:"


def _check_table_exists(
    con: duckdb.DuckDBPyConnection, schema: str, name: str, connection_string: str
) -> None:
    (found,) = _fetch(
        con,
        "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
        [schema, name],
    )[0]
    if not found:
        raise ValidationEngineError(
            f"table {schema}.{name} not found in {connection_string}: create it, or commit the "
            "transaction that creates it (validation reads committed data)"
        )


def _datasource(
    context: AbstractDataContext,
    connection_string: str,
    con: duckdb.DuckDBPyConnection,
    schema: str,
) -> DuckDBDatasource:
    """The context's datasource for this database schema, created or repointed as needed."""
    name = _fetch(con, "select current_database()")[0][0] + "." + schema
    try:
        datasource = context.data_sources.get(name)
    except KeyError:
        return context.data_sources.add_duckdb(
            name=name, connection_string=connection_string, schema_name=schema, kwargs=ENGINE_KWARGS
        )
    if not isinstance(datasource, DuckDBDatasource):
        raise ValidationEngineError(f"datasource {name} exists but is not a DuckDB datasource")
    if str(datasource.connection_string) != connection_string:  # the warehouse file moved
        datasource.connection_string = connection_string
        context.update_datasource(datasource)
    return datasource


def _validation_definition(
    context: AbstractDataContext,
    datasource: DuckDBDatasource,
    name: str,
    suite: gx.ExpectationSuite,
) -> gx.ValidationDefinition:
    """Reuse or register table asset, batch definition and validation definition."""
    try:
        asset = datasource.get_asset(name)
    except LookupError:
        asset = datasource.add_table_asset(name, table_name=name)
    assert isinstance(asset, TableAsset)
    try:
        batch_definition = asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        batch_definition = asset.add_batch_definition_whole_table(BATCH_DEFINITION)
    suite = context.suites.add_or_update(suite)
    vd_name = f"{suite.name}@{datasource.name}.{name}"
    try:
        return context.validation_definitions.get(vd_name)
    except gx.exceptions.DataContextError:
        return context.validation_definitions.add(
            gx.ValidationDefinition(name=vd_name, data=batch_definition, suite=suite)
        )


def _raise_on_exceptions(table: str, results: list) -> None:
    """A GE error must never read as success or as a data failure."""
    for r in results:
        message = _exception_message(r.exception_info)
        if message is not None:
            config = r.expectation_config
            raise ValidationEngineError(
                f"{config.type} {config.kwargs} on {table} raised: {message}"
            )


def _exception_message(info: dict | None) -> str | None:
    if not info:
        return None
    # GE reports one dict for the expectation, or one per failed metric keyed by metric id.
    infos = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    messages = [i.get("exception_message") or "unknown error" for i in infos if i.get("raised_exception")]
    return "; ".join(dict.fromkeys(messages)) if messages else None


def _unexpected_row_ids(
    con: duckdb.DuckDBPyConnection, results: list, row_id: str | None
) -> list[list[int] | None]:
    """Every failing row's id per result, from GE's unexpected_index_query run in one DuckDB query."""
    ids: list[list[int] | None] = [None] * len(results)
    if row_id is None:
        return ids
    queries = {}
    for i, r in enumerate(results):
        query = (r.result or {}).get("unexpected_index_query")
        if not query:
            continue
        ids[i] = []
        if r.result.get("unexpected_count"):
            queries[i] = query
    if not queries:
        return ids
    column = '"' + row_id.replace('"', '""') + '"'
    union = "\nunion all\n".join(
        f"select {i} as result_index, {column} as row_id from ({q.rstrip().rstrip(';')}) as q{i}"
        for i, q in queries.items()
    )
    sql = f"select result_index, list(row_id order by row_id) from ({union}) group by all"
    try:
        fetched = _fetch(con, sql)
    except duckdb.Error as e:
        raise ValidationEngineError(f"GE's unexpected_index_query failed in DuckDB: {e}\n{sql}") from e
    for i, row_ids in fetched:
        ids[i] = row_ids
    for i in queries:
        r = results[i]
        if len(ids[i] or []) != r.result["unexpected_count"]:
            # GE renders string parameters with Python's repr() (see _regexp_matches): a value
            # with a backslash or a quote can make its query select other rows than it counted.
            raise ValidationEngineError(
                f"{r.expectation_config.type} {r.expectation_config.kwargs}: GE counted "
                f"{r.result['unexpected_count']} unexpected rows, but its unexpected_index_query "
                f"selects {len(ids[i] or [])}: {queries[i]}"
            )
    return ids


def _outcome(r: Any, row_ids: list[int] | None) -> ExpectationOutcome:
    config = r.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    meta = dict(config.meta or {})
    # A suite may state severity in meta; otherwise GE's own severity field says it.
    meta.setdefault("severity", getattr(config.severity, "value", str(config.severity)))
    result = r.result or {}
    return ExpectationOutcome(
        expectation_type=config.type,
        column=kwargs.get("column"),
        kwargs=kwargs,
        meta=meta,
        success=bool(r.success),
        element_count=result.get("element_count"),
        unexpected_count=result.get("unexpected_count"),
        unexpected_row_ids=row_ids,
        exception=_exception_message(r.exception_info),
    )


def _result_key(result: Any) -> ValidationResultIdentifier | None:
    try:
        return ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
            run_id=result.meta["run_id"],
            batch_identifier=result.batch_id,
        )
    except Exception:
        return None


def _docs_url(context: AbstractDataContext, result: Any) -> str | None:
    """Where this result's page is (or will be, after build_docs) on the local Data Docs site."""
    try:
        identifier = _result_key(result)
        if identifier is None:
            return None
        sites = context.get_docs_sites_urls(resource_identifier=identifier, only_if_exists=False)
    except Exception:  # the URL is a convenience; never fail a validation over it
        return None
    return next((s["site_url"] for s in sites if s.get("site_url")), None)
