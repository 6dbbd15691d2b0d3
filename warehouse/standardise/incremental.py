"""Incremental staging: rebuild only the keys that rows validated since the last merge touch.

Validation appends rows to the staging input tables, each row tagged with its `_validation_run_id`.
`meta.staging_consumed` lists the validation runs a merge has already built staging from, so the
rows of any other run are the delta. Each staging model is then refreshed for the delta's keys only:

- lookups of distinct raw values (names, IDs, phones, addresses) get the values they lack;
- a latest-version-per-key model is recomputed for the keys the delta holds — the model's own SQL,
  its input table restricted to those keys, so "latest" sees every version of each key;
- stg_person_records is recomputed for the source records whose model rows changed (a resident's
  record also when their household changed, as it carries the household's address).

Each model stays one SQL file: the restriction is applied to its input table reference. A change
of the grid hierarchy (rare, and read by every household) makes the build a full one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb


@dataclass(frozen=True)
class Keyed:
    """A latest-version-per-key model: its input table and key, raw (VARCHAR) and as in its output."""

    model: str
    input: str
    raw_key: str
    out_key: str
    source: str | None = None      # the stg_person_records source this model feeds, if any
    record_key: str | None = None  # its record_key, from the output key columns


KEYED = (
    Keyed("stg_grid_registry__households", "grid_registry_households", "household_id", "household_id"),
    Keyed("stg_grid_registry__residents", "grid_registry_residents", "resident_id", "resident_id",
          "grid_registry.residents", "resident_id"),
    Keyed("stg_grid_registry__special_groups", "grid_registry_special_groups", "resident_id, group_type",
          "resident_id, group_type"),
    Keyed("stg_grid_registry__grid_workers", "grid_registry_grid_workers", "worker_id", "worker_id",
          "grid_registry.grid_workers", "worker_id"),
    Keyed("stg_hotline__tickets", "hotline_tickets", "ticket_id", "ticket_id", "hotline.tickets", "ticket_id"),
    Keyed("stg_city_cases__cases", "city_cases_cases", "case_id", "case_id", "city_cases.cases", "case_id"),
    Keyed("stg_health_codes__exports", "health_codes_exports",
          "cast(export_date as date), cast(record_no as integer)", "export_date, record_no",
          "health_codes.exports", "strftime(export_date, '%Y%m%d') || '#' || cast(record_no as varchar)"),
)
LOOKUPS = {"stg_names": "name_raw", "stg_ids": "id_raw", "stg_phones": "phone_raw", "stg_addresses": "address_raw"}
INPUTS = ("city_cases_cases", "grid_registry_grid_workers", "grid_registry_grids", "grid_registry_households",
          "grid_registry_residents", "grid_registry_special_groups", "health_codes_exports", "hotline_tickets")
# Above this share of new input rows, rebuilding everything is as quick and simpler.
MAX_DELTA_SHARE = 0.2

_CREATE = re.compile(r"create\s+or\s+replace\s+table\s+staging\.(\w+)\s+as", re.IGNORECASE)


def _n(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def restrict(sql: str, table: str, condition: str) -> str:
    """The model SQL with every `from staging.<table>` reading only the rows meeting `condition`."""
    pattern = re.compile(rf"\bfrom\s+staging\.{table}\b", re.IGNORECASE)
    replacement = f"from (select * from staging.{table} where {condition}) as {table}"
    return pattern.sub(lambda _m: replacement, sql)


def as_select(sql: str) -> str:
    """The model's query without its `create or replace table staging.x as` head."""
    return _CREATE.sub("", sql, count=1)


def plan(con: duckdb.DuckDBPyConnection) -> tuple[bool, str]:
    """(incremental?, why): create temp table _delta_runs with the validation runs not built yet."""
    con.execute("create or replace temp table _delta_runs as select validation_run_id from ("
                + " union ".join(f"select distinct _validation_run_id as validation_run_id from staging.{t}"
                                 for t in INPUTS)
                + ") where validation_run_id not in (select validation_run_id from meta.staging_consumed)")
    if _n(con, "select count(*) from meta.staging_consumed") == 0:
        return False, "no earlier merge to build on"
    missing = [m for m in (*LOOKUPS, *(k.model for k in KEYED), "stg_grid_registry__grids", "stg_person_records")
               if _n(con, f"select count(*) from duckdb_tables() where schema_name = 'staging' "
                          f"and table_name = '{m}'") == 0]
    if missing:
        return False, f"staging model {missing[0]} not built yet"
    if _n(con, "select count(*) from staging.grid_registry_grids where "
               "_validation_run_id in (select validation_run_id from _delta_runs)"):
        return False, "the grid hierarchy changed"
    new = sum(_n(con, f"select count(*) from staging.{t} where _validation_run_id in "
                      f"(select validation_run_id from _delta_runs)") for t in INPUTS)
    total = sum(_n(con, f"select count(*) from staging.{t}") for t in INPUTS)
    if new > MAX_DELTA_SHARE * max(total, 1):
        return False, f"{new:,} of {total:,} input rows are new"
    return True, f"{new:,} new input rows"


def mark_consumed(con: duckdb.DuckDBPyConnection) -> None:
    """Record every validation run staging has now been built from."""
    con.execute("insert into meta.staging_consumed select validation_run_id, now() from ("
                + " union ".join(f"select distinct _validation_run_id as validation_run_id from staging.{t}"
                                 for t in INPUTS)
                + ") where validation_run_id not in (select validation_run_id from meta.staging_consumed)")


def refresh(con: duckdb.DuckDBPyConnection, model_sql) -> dict[str, int]:  # noqa: ANN001 (a callable)
    """Refresh every staging model for the delta in _delta_runs; return {table: rows rebuilt}."""
    delta = "_validation_run_id in (select validation_run_id from _delta_runs)"
    counts: dict[str, int] = {}
    for model, key in LOOKUPS.items():
        sql = as_select(model_sql(model))
        for table in INPUTS:
            sql = restrict(sql, table, delta)
        con.execute(f"create or replace temp table _new as select * from ({sql}) "
                    f"where {key} not in (select {key} from staging.{model})")
        counts[f"staging.{model}"] = _n(con, "select count(*) from _new")
        con.execute(f"insert into staging.{model} select * from _new")
    for k in KEYED:
        # Named like the output's key columns, so later steps can compute record keys from them.
        named = ", ".join(f"{r} as {o}" for r, o in zip(k.raw_key.split(", "), k.out_key.split(", "), strict=True))
        con.execute(f"create or replace temp table _keys_{k.model} as "
                    f"select distinct {named} from staging.{k.input} where {delta}")
        sql = restrict(as_select(model_sql(k.model)), k.input,
                       f"({k.raw_key}) in (select * from _keys_{k.model})")
        con.execute(f"create or replace temp table _new as {sql}")
        con.execute(f"delete from staging.{k.model} where ({k.out_key}) in (select * from _keys_{k.model})")
        con.execute(f"insert into staging.{k.model} select * from _new")
        counts[f"staging.{k.model}"] = _n(con, "select count(*) from _new")
    counts["staging.stg_person_records"] = _refresh_person_records(con, model_sql("stg_person_records"))
    return counts


def _refresh_person_records(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    # A resident's record carries their household's address: a changed household changes them too.
    con.execute("""
        insert into _keys_stg_grid_registry__residents
        select resident_id from staging.stg_grid_registry__residents
        where household_id in (select household_id from _keys_stg_grid_registry__households)
        except select resident_id from _keys_stg_grid_registry__residents
    """)
    sql = as_select(sql)
    changed = []
    for k in KEYED:
        if not k.source:
            continue
        sql = restrict(sql, k.model, f"({k.out_key}) in (select * from _keys_{k.model})")
        changed.append(f"select '{k.source}' as source, {k.record_key} as record_key from _keys_{k.model}")
    con.execute(f"create or replace temp table _new as {sql}")
    con.execute("create or replace temp table _changed_records as " + " union all ".join(changed))
    # phone_holders counts across records: every phone a changed record had or has is counted again
    con.execute("""create or replace temp table _changed_phones as
        select phone_std from staging.stg_person_records
        where phone_std is not null and (source, record_key) in (select source, record_key from _changed_records)
        union select phone_std from _new where phone_std is not null""")
    con.execute("delete from staging.stg_person_records where (source, record_key) in "
                "(select source, record_key from _changed_records)")
    con.execute("insert into staging.stg_person_records select * from _new")
    con.execute("""update staging.stg_person_records s set phone_holders = h.phone_holders
        from (select phone_std, count(distinct name_pinyin) as phone_holders from staging.stg_person_records
              where phone_std in (select phone_std from _changed_phones) group by phone_std) h
        where s.phone_std = h.phone_std""")
    return _n(con, "select count(*) from _new")
