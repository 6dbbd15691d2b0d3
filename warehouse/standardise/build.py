"""Build the staging layer: install the standardisers, then run every staging model in order."""

from __future__ import annotations

from importlib import resources

import duckdb

from warehouse.models import record_version, sql_fingerprint, version_changed
from warehouse.standardise import incremental, names

# Dependency order: the lookups of distinct raw values first (names, IDs, phones, addresses),
# grids before households (community), every source model before the person records.
MODELS = (
    "stg_names",
    "stg_ids",
    "stg_phones",
    "stg_addresses",
    "stg_grid_registry__grids",
    "stg_grid_registry__households",
    "stg_grid_registry__residents",
    "stg_grid_registry__special_groups",
    "stg_grid_registry__grid_workers",
    "stg_hotline__tickets",
    "stg_city_cases__cases",
    "stg_health_codes__exports",
    "stg_person_records",
)


class StagingModelError(RuntimeError):
    """A staging model failed: the message names the model file and DuckDB's reason."""


def macros_sql() -> str:
    """The text of macros.sql (the ID, phone and address standardisers)."""
    return resources.files("warehouse.standardise").joinpath("macros.sql").read_text(encoding="utf-8")


def model_sql(model: str) -> str:
    """The text of one staging model file, warehouse/models/staging/<model>.sql."""
    return resources.files("warehouse").joinpath("models", "staging", f"{model}.sql").read_text(
        encoding="utf-8")


def install(con: duckdb.DuckDBPyConnection) -> None:
    """Create the std_* SQL macros in the warehouse and register the name UDFs on `con`.

    Opens no transaction. The macros persist in the database file; the Python UDFs live on the
    connection, so call this on every connection that runs a staging model.
    """
    con.execute("create schema if not exists staging")
    con.execute(macros_sql())
    names.register(con)


def build_staging(con: duckdb.DuckDBPyConnection, *, full: bool = False,
                  info: dict[str, str] | None = None) -> dict[str, int]:
    """Bring every staging model up to date with the validated append tables; return {table: row count}.

    Only the keys that rows validated since the last build touch are rebuilt
    (warehouse/standardise/incremental.py), unless `full` is set or that is not possible; `info`,
    when given, receives the mode and the reason. Idempotent, and opens no transaction, so a caller
    can wrap the whole merge in one.
    """
    install(con)
    # A source never validated yet has no input table: start it empty so the others still merge.
    con.execute(model_sql("_inputs"))
    fingerprint = sql_fingerprint([macros_sql(), model_sql("_inputs"), *(model_sql(m) for m in MODELS)])
    if full:
        go_incremental, why = False, "asked for a full build"
    elif version_changed(con, "staging", fingerprint):
        go_incremental, why = False, "the staging SQL changed since the last build"
    else:
        go_incremental, why = incremental.plan(con)
    if info is not None:
        info.update(mode="incremental" if go_incremental else "full", why=why)
    if go_incremental:
        try:
            incremental.refresh(con, model_sql)
        except duckdb.Error as e:
            raise StagingModelError(f"incremental staging failed: {e}. `onenet merge --full` rebuilds "
                                    f"staging from scratch.") from e
    else:
        _build_all(con)
    incremental.mark_consumed(con)
    record_version(con, "staging", fingerprint)
    return {f"staging.{m}": _count(con, f"staging.{m}") for m in MODELS}


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"select count(*) from {table}").fetchone()
    return int(row[0]) if row else 0


def _build_all(con: duckdb.DuckDBPyConnection) -> None:
    for model in MODELS:
        try:
            con.execute(model_sql(model))
        except duckdb.Error as e:
            raise StagingModelError(
                f"staging model warehouse/models/staging/{model}.sql failed: {e}. Run the file by "
                f"hand in DuckDB after warehouse.standardise.install(con) to see the failing row.") from e
