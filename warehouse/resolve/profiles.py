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


def hash_sql(columns: tuple[str, ...] | list[str]) -> str:
    """A record's 64-bit hash over `columns`: its profile key, and its state for incremental runs."""
    return f"hash({', '.join(columns)})"


def build(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig, only: str | None = None,
          tf_from: dict[str, str] | None = None) -> tuple[int, int]:
    """Create resolve_work_records and resolve_work_profiles (with term frequencies); return counts.

    Profile ids are numbered by the smallest record id of each profile, so they are the same on
    every run over the same input (numbered on the narrow groups, before their values are joined). `only` names a table of record_uid to restrict the input to (an
    incremental run); `tf_from` then gives, per tf column, the table of (value, tf) to use, since
    the frequencies of a subset are not those of the whole input. resolve_work_records keeps each
    record's hash (column h, see `hash_sql`).
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
               {key}::varchar as record_key, {cols}, {hash_sql(cfg.columns)} as h
        from {cfg.input_table}
        {where}
    """)
    # Group on the 64-bit hash of the values, not on the values (an aggregate and a join back on
    # sixteen strings took 5x as long); a profile's values are its first record's. A record whose
    # values differ from its profile's is a hash collision, found when records are keyed to profiles
    # (exact: every column compared); then the values themselves are grouped.
    group = "h, source" if by_source else "h"
    con.execute(f"""
        create or replace temp table {WORK}groups as
        select g.*, {", ".join(f"i.{c}" for c in cfg.columns)}, g.h as profile_key
        from (select *, row_number() over (order by first_uid)::bigint as profile_id  -- narrow rows sort fast
              from (select {group}{", source as profile_source" if by_source else ""},
                           min(record_uid) as first_uid, count(*) as n_records
                    from {WORK}input group by {group})) g
        join {WORK}input i on i.record_uid = g.first_uid
    """)
    if not _profiles_and_records(con, cfg, by_source, "h", tf_from):
        _group_on_values(con, cfg, by_source)
        if not _profiles_and_records(con, cfg, by_source, "profile_key", tf_from):
            raise RuntimeError("resolver: records grouped on their values differ from their group's values")
    con.execute(f"drop table {WORK}groups")
    con.execute(f"drop table {WORK}input")
    return _count(con, f"{WORK}records"), _count(con, f"{WORK}profiles")


def _profiles_and_records(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig, by_source: bool, record_key: str,
                          tf_from: dict[str, str] | None) -> bool:
    """resolve_work_profiles from resolve_work_groups (with term frequencies) and resolve_work_records,
    each record keyed to its profile by `record_key`; False when a record's values differ from its
    profile's (two value sets share a hash)."""
    tf_tables = {}
    for c in cfg.tf_columns:
        # Term frequency of each value among profiles, by aggregate + join (windows are slow here).
        if tf_from is None:
            con.execute(f"create or replace temp table {WORK}tf_{c} as select {c}, count(*)::double / "
                        f"sum(count(*)) over () as tf from {WORK}groups where {c} is not null group by {c}")
            tf_tables[c] = f"{WORK}tf_{c}"
        else:
            tf_tables[c] = tf_from[c]
    sel = "".join(f", tf_{c}.tf as tf_{c}" for c in cfg.tf_columns)
    joins = " ".join(f"left join {t} tf_{c} on tf_{c}.{c} = g.{c}" for c, t in tf_tables.items())
    con.execute(f"""
        create or replace temp table {WORK}profiles as
        select g.profile_id, {", ".join(f"g.{c}" for c in cfg.columns)}{", g.profile_source" if by_source else ""},
               g.first_uid, g.n_records{sel}, g.profile_key
        from {WORK}groups g {joins}
    """)
    on = f"i.{record_key} = p.profile_key" + (" and i.source = p.profile_source" if by_source else "")
    differs = " or ".join(f"i.{c} is distinct from p.{c}" for c in cfg.columns)
    # Only a profile of several records can hold a record whose values are not its first record's.
    if _count(con, f"""{WORK}input i join (select * from {WORK}profiles where n_records > 1) p on {on}
                       where i.record_uid <> p.first_uid and ({differs})"""):
        return False
    keys = f"profile_key, profile_id{', profile_source' if by_source else ''}"
    con.execute(f"""
        create or replace temp table {WORK}records as
        select i.record_uid, i.source, i.record_key, p.profile_id, i.h
        from {WORK}input i join (select {keys} from {WORK}profiles) p on {on}
    """)
    return True


def _group_on_values(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig, by_source: bool) -> None:
    """resolve_work_groups by the values themselves (two value sets share a hash), each record
    keyed to its group by the group's first record id (profile_key, in both tables)."""
    cols = ", ".join(cfg.columns)
    con.execute(f"""
        create or replace temp table {WORK}groups as
        select {cols}{", source as profile_source" if by_source else ""},
               min(record_uid) as first_uid, count(*) as n_records, min(record_uid) as profile_key
        from {WORK}input group by all
    """)
    con.execute(f"""
        create or replace temp table {WORK}groups as
        select *, row_number() over (order by first_uid)::bigint as profile_id from {WORK}groups
    """)
    on = " and ".join([f"i.{c} is not distinct from g.{c}" for c in cfg.columns]
                      + (["i.source = g.profile_source"] if by_source else []))
    con.execute(f"""
        create or replace temp table {WORK}input as
        select i.*, g.profile_key from {WORK}input i join {WORK}groups g on {on}
    """)
