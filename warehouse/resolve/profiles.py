"""Pre-collapse: records identical on every resolved column become one profile, resolved once."""

from __future__ import annotations

import duckdb

from .config import ResolverConfig

# Work tables are temporary tables (in memory, spilling to DuckDB's temp directory), named with
# this prefix: written to the warehouse file they cost a write of every row and the space after.
WORK_PREFIX = "resolve_work_"
WORK = f"temp.{WORK_PREFIX}"


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"select count(*) from {table}").fetchone()
    return int(row[0]) if row else 0


def build(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig, only: str | None = None,
          tf_from: dict[str, str] | None = None) -> tuple[int, int]:
    """Create resolve_work_records and resolve_work_profiles (with term frequencies); return counts.

    Profile ids are numbered by the smallest record id of each profile, so they are the same on
    every run over the same input. `only` names a table of record_uid to restrict the input to (an
    incremental run); `tf_from` then gives, per tf column, the table of (value, tf) to use, since
    the frequencies of a subset are not those of the whole input.
    """
    # Linking sources (link_only, one_to_one): a profile never spans two sources.
    by_source = cfg.link_type == "link_only" or cfg.one_to_one
    cols = ", ".join(cfg.columns)
    source = cfg.source_column or f"'{cfg.input_table}'"
    key = cfg.key_column or cfg.id_column
    conditions = [f"({cfg.filter})"] if cfg.filter else []
    if only:
        conditions.append(f"{cfg.id_column}::varchar in (select record_uid from {only})")
    where = f"where {' and '.join(conditions)}" if conditions else ""
    con.execute(f"""
        create or replace temp table {WORK}input as
        select {cfg.id_column}::varchar as record_uid, {source}::varchar as source,
               {key}::varchar as record_key, {cols}
        from {cfg.input_table}
        {where}
    """)
    # A hash aggregate on the real values (no hash key, so no collisions), then a hash join back on
    # IS NOT DISTINCT FROM; measured 2 s for 852k records, where window functions took 40x longer.
    con.execute(f"""
        create or replace temp table {WORK}profiles as
        select row_number() over (order by first_uid)::bigint as profile_id, *
        from (select {cols}{", source as profile_source" if by_source else ""},
                     min(record_uid) as first_uid, count(*) as n_records
              from {WORK}input group by all)
    """)
    on = " and ".join([f"i.{c} is not distinct from p.{c}" for c in cfg.columns]
                      + (["i.source = p.profile_source"] if by_source else []))
    con.execute(f"""
        create or replace temp table {WORK}records as
        select i.record_uid, i.source, i.record_key, p.profile_id
        from {WORK}input i join {WORK}profiles p on {on}
    """)
    con.execute(f"drop table {WORK}input")
    if cfg.tf_columns:
        # Term frequency of each value among profiles, by aggregate + join (windows are slow here).
        for c in cfg.tf_columns:
            if tf_from is None:
                con.execute(f"create or replace temp table {WORK}tf_{c} as select {c}, count(*)::double / "
                            f"sum(count(*)) over () as tf from {WORK}profiles where {c} is not null group by {c}")
            else:
                con.execute(f"create or replace temp table {WORK}tf_{c} as select * from {tf_from[c]}")
        sel = ", ".join(f"tf_{c}.tf as tf_{c}" for c in cfg.tf_columns)
        joins = " ".join(f"left join {WORK}tf_{c} tf_{c} on tf_{c}.{c} = p.{c}" for c in cfg.tf_columns)
        con.execute(f"create or replace temp table {WORK}profiles as select p.*, {sel} from {WORK}profiles p {joins}")
    return _count(con, f"{WORK}records"), _count(con, f"{WORK}profiles")
