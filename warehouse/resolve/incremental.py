"""Incremental resolution: re-resolve only the neighbourhood of what changed since the last run.

A day brings a few thousand new or changed records among millions. Resolving them alone against the
persons already found gives the same clusters as a full run would, as long as every person a changed
record could touch is resolved again with all its records:

1. State: every run stores a hash of each record's resolved columns (`resolve_state.<name>_records`).
   Changed = a record whose hash differs or is new; removed = a stored record gone from the input.
2. Neighbourhood: the profiles of changed records, and every profile a blocking rule pairs with one
   of them (joined both ways, so one-sided rules count too). Only these can gain or lose a link.
3. Closure: every person holding a record of the neighbourhood, or a changed or removed record, is
   re-resolved with all of its records, so stable ids see whole persons and nothing is left half.
4. The usual steps (pairs, score, cluster, stable ids) then run on that subset with the parameters
   of the last full run (m, u, lambda are properties of the sources, not of one day) and the term
   frequencies of all profiles; the rest of the output is left as it is.

What differs from a full run: the parameters are not re-estimated, so `mode="auto"` runs a full
resolution when none were stored, the configuration changed, or too much changed at once.
"""

from __future__ import annotations

import hashlib

import duckdb

from .config import ResolverConfig
from .estimate import Parameters
from .profiles import WORK

STATE_SCHEMA = "resolve_state"
# Above this share of records changed (or persons affected), a full run costs about the same.
MAX_CHANGED_SHARE = 0.2


def state_table(cfg: ResolverConfig) -> str:
    return f"{STATE_SCHEMA}.{cfg.name}_records"


def fingerprint(cfg: ResolverConfig) -> str:
    """A short hash of everything that decides the result; a changed configuration forces a full run."""
    return hashlib.sha256(repr(cfg).encode("utf-8")).hexdigest()[:16]


def _n(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _hash_sql(cfg: ResolverConfig) -> str:
    return f"hash({', '.join(cfg.columns)})"


def stored_parameters(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> Parameters | None:
    """The parameters of the last full run of this configuration, or None (then run in full)."""
    import json

    row = con.execute(
        "select parameters from meta.resolution_runs where entity = ? and parameters is not null "
        "and json_extract_string(parameters, '$.mode') = 'full' order by finished_at desc limit 1",
        [cfg.name]).fetchone()
    if not row:
        return None
    data = json.loads(row[0])
    if data.get("config") != fingerprint(cfg) or "u_floor" not in data:
        return None
    comps = data["comparisons"]
    try:
        m = {c.name: [float(comps[c.name][label]["m"]) for label in c.labels] for c in cfg.comparisons}
        u = {c.name: [float(comps[c.name][label]["u"]) for label in c.labels] for c in cfg.comparisons}
    except KeyError:
        return None
    return Parameters(m, u, float(data["lambda"]), 0, float(data["u_floor"]))


def has_state(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> bool:
    schema, table = state_table(cfg).split(".")
    return _n(con, f"select count(*) from duckdb_tables() where schema_name = '{schema}' "
                   f"and table_name = '{table}'") == 1


def find_changes(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> tuple[int, int, int]:
    """Create resolve_work.changed (record_uid) and resolve_work.removed; return (changed, removed, total).

    Needs resolve_work.records (built by profiles.build) and the input table.
    """
    key = cfg.id_column
    where = f"where {cfg.filter}" if cfg.filter else ""
    con.execute(f"""
        create or replace table {WORK}.hashes as
        select {key}::varchar as record_uid, {_hash_sql(cfg)} as h from {cfg.input_table} {where}
    """)
    con.execute(f"""
        create or replace table {WORK}.changed as
        select record_uid from {WORK}.hashes h
        where not exists (select 1 from {state_table(cfg)} s where s.record_uid = h.record_uid and s.h = h.h)
    """)
    con.execute(f"""
        create or replace table {WORK}.removed as
        select record_uid from {state_table(cfg)} s
        where not exists (select 1 from {WORK}.hashes h where h.record_uid = s.record_uid)
    """)
    return (_n(con, f"select count(*) from {WORK}.changed"), _n(con, f"select count(*) from {WORK}.removed"),
            _n(con, f"select count(*) from {WORK}.hashes"))


def restrict_to_neighbourhood(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> tuple[int, int]:
    """Shrink resolve_work.records/profiles to the affected persons' records; return (records, persons).

    Creates resolve_work.affected (record_uid): the previous output rows to replace.
    """
    out = cfg.output_table
    con.execute(f"""
        create or replace table {WORK}.seed as
        select distinct r.profile_id from {WORK}.records r join {WORK}.changed c using (record_uid)
    """)
    # Every profile a blocking rule pairs with a changed one, in both roles (rules may be one-sided).
    hops = "\nunion\n".join(
        f"select r.profile_id from {WORK}.profiles l join {WORK}.profiles r on ({rule}) "
        f"where l.profile_id in (select profile_id from {WORK}.seed)\n"
        f"union\n"
        f"select l.profile_id from {WORK}.profiles l join {WORK}.profiles r on ({rule}) "
        f"where r.profile_id in (select profile_id from {WORK}.seed)"
        for rule in cfg.blocking_rules)
    con.execute(f"""
        create or replace table {WORK}.near as
        select profile_id from {WORK}.seed union select profile_id from ({hops})
    """)
    # Persons touched: holding a record of a nearby profile, or a changed or removed record.
    con.execute(f"""
        create or replace table {WORK}.persons as
        select distinct o.person_id from {out} o
        where o.record_uid in (select r.record_uid from {WORK}.records r
                               where r.profile_id in (select profile_id from {WORK}.near))
           or o.record_uid in (select record_uid from {WORK}.changed)
           or o.record_uid in (select record_uid from {WORK}.removed)
    """)
    # Closure: a person is resolved with all its records, and a profile as one unit; a profile may
    # hold records of another person (values became identical), whose person then joins too.
    while True:
        con.execute(f"""
            create or replace table {WORK}.keep as
            select profile_id from {WORK}.near
            union
            select r.profile_id from {WORK}.records r join {out} o using (record_uid)
            where o.person_id in (select person_id from {WORK}.persons)
        """)
        if _add_persons(con, out) == 0:
            break
    con.execute(f"""
        create or replace table {WORK}.affected as
        select record_uid from {out} where person_id in (select person_id from {WORK}.persons)
    """)
    con.execute(f"delete from {WORK}.records where profile_id not in (select profile_id from {WORK}.keep)")
    con.execute(f"delete from {WORK}.profiles where profile_id not in (select profile_id from {WORK}.keep)")
    return _n(con, f"select count(*) from {WORK}.records"), _n(con, f"select count(*) from {WORK}.persons")


def _add_persons(con: duckdb.DuckDBPyConnection, out: str) -> int:
    """Add to resolve_work.persons the persons of kept profiles not in it yet; return how many."""
    before = _n(con, f"select count(*) from {WORK}.persons")
    con.execute(f"""
        insert into {WORK}.persons
        select distinct o.person_id from {WORK}.records r join {out} o using (record_uid)
        where r.profile_id in (select profile_id from {WORK}.keep)
          and o.person_id not in (select person_id from {WORK}.persons)
    """)
    return _n(con, f"select count(*) from {WORK}.persons") - before


def save_state(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig, *, full: bool) -> None:
    """Store each record's hash after a run: all of them after a full run, the changes otherwise."""
    con.execute(f"create schema if not exists {STATE_SCHEMA}")
    table = state_table(cfg)
    if full:
        con.execute(f"create or replace table {table} as select record_uid, h from {WORK}.hashes")
        return
    con.execute(f"delete from {table} where record_uid in (select record_uid from {WORK}.removed) "
                f"or record_uid in (select record_uid from {WORK}.changed)")
    con.execute(f"insert into {table} select record_uid, h from {WORK}.hashes "
                f"where record_uid in (select record_uid from {WORK}.changed)")


def hash_all(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> None:
    """resolve_work.hashes for a full run (no state to compare with)."""
    where = f"where {cfg.filter}" if cfg.filter else ""
    con.execute(f"""
        create or replace table {WORK}.hashes as
        select {cfg.id_column}::varchar as record_uid, {_hash_sql(cfg)} as h from {cfg.input_table} {where}
    """)
