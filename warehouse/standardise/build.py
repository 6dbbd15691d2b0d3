"""Build the staging layer: install the standardisers, then run every staging model in order."""

from __future__ import annotations

from importlib import resources

import duckdb

from warehouse.standardise import names

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


def build_staging(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rebuild every staging model from the validated append tables; return {table: row count}.

    Idempotent (each model is `create or replace table` over the append tables, ordered output)
    and opens no transaction, so a caller can wrap the whole merge in one.
    """
    install(con)
    # A source never validated yet has no input table: start it empty so the others still merge.
    con.execute(model_sql("_inputs"))
    counts: dict[str, int] = {}
    for model in MODELS:
        try:
            con.execute(model_sql(model))
        except duckdb.Error as e:
            raise StagingModelError(
                f"staging model warehouse/models/staging/{model}.sql failed: {e}. Run the file by "
                f"hand in DuckDB after warehouse.standardise.install(con) to see the failing row.") from e
        row = con.execute(f"select count(*) from staging.{model}").fetchone()
        counts[f"staging.{model}"] = int(row[0]) if row else 0
    return counts
