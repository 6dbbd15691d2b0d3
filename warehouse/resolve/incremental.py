"""Incremental resolution: re-resolve only the neighbourhood of what changed since the last run.

A day brings a few thousand new or changed records among millions. Resolving them alone against the
persons already found gives the same clusters as a full run would, as long as every person a changed
record could touch is resolved again with all its records:

1. State: every run stores a hash of each record's resolved columns (`resolve_state.<name>_records`).
   Changed = a record whose hash differs or is new; removed = a stored record gone from the input.
2. Known profiles: a new record identical to unchanged records joins their profile's person as is
   (split_known); most of a day's records are such repeats.
3. Neighbourhood: every record a blocking rule pairs with a remaining changed one (one-sided rules
   joined both ways), found by hash joins on the input itself. Only these can gain or lose a link.
4. Closure: every person holding a record of the neighbourhood, or a changed or removed record, is
   re-resolved with all of its records, so stable ids see whole persons and nothing is left half.
5. The usual steps (profiles, pairs, score, cluster, stable ids) then run on that subset with the
   parameters of the last full run (m, u, lambda are properties of the sources, not of one day) and
   its term frequencies; the rest of the output is left as it is.

What differs from a full run: the parameters are not re-estimated, so `mode="auto"` runs a full
resolution when none were stored, the configuration changed, or too much changed at once. At
district scale the next day's persons equal a full resolution's, record for record (bench/README.md).
"""

from __future__ import annotations

import hashlib
import re

import duckdb

from .config import ResolverConfig
from .estimate import Parameters
from .profiles import WORK, WORK_PREFIX, hash_sql

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


def count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    return _n(con, f"select count(*) from {table}")


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
    """True when a full run left the record hashes and term frequencies an incremental run needs."""
    tables = [state_table(cfg), *(tf_table(cfg, c) for c in cfg.tf_columns)]
    names = ", ".join(f"'{t.split('.')[1]}'" for t in tables)
    return _n(con, f"select count(*) from duckdb_tables() where schema_name = '{STATE_SCHEMA}' "
                   f"and table_name in ({names})") == len(tables)


def find_changes(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> tuple[int, int, int]:
    """Create resolve_work_changed (record_uid) and resolve_work_removed; return (changed, removed, total).

    Also creates the view resolve_work_inp: the input with the configured columns.
    """
    key = cfg.id_column
    where = f"where {cfg.filter}" if cfg.filter else ""
    source = cfg.source_column or f"'{cfg.input_table}'"
    con.execute(f"""
        create or replace temp view {WORK_PREFIX}inp as
        select {key}::varchar as record_uid, {source}::varchar as source,
               {cfg.key_column or key}::varchar as record_key, {', '.join(cfg.columns)}
        from {cfg.input_table} {where}
    """)
    con.execute(f"""
        create or replace temp table {WORK}hashes as
        select {key}::varchar as record_uid, {hash_sql(cfg.columns)} as h from {cfg.input_table} {where}
    """)
    con.execute(f"""
        create or replace temp table {WORK}changed as
        select record_uid from {WORK}hashes h
        where not exists (select 1 from {state_table(cfg)} s where s.record_uid = h.record_uid and s.h = h.h)
    """)
    con.execute(f"""
        create or replace temp table {WORK}removed as
        select record_uid from {state_table(cfg)} s
        where not exists (select 1 from {WORK}hashes h where h.record_uid = s.record_uid)
    """)
    return (_n(con, f"select count(*) from {WORK}changed"), _n(con, f"select count(*) from {WORK}removed"),
            _n(con, f"select count(*) from {WORK}hashes"))


def split_known(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> None:
    """Move new records identical to an existing profile out of resolve_work_changed.

    Most of a day's records repeat values already resolved (a health-code export lists the same
    person again). A new record identical, on every resolved column, to unchanged records whose
    smallest id is smaller than its own joins that profile as its full run would: same person, as
    an identical record of the profile's representative. Nothing else can change by it (clusters
    are made of profiles, and term frequencies count profiles), so it needs no re-resolution.
    Creates resolve_work_known (record_uid, rep_uid).
    """
    out = cfg.output_table
    con.execute(f"create or replace temp table {WORK}changed_all as select * from {WORK}changed")
    con.execute(f"""
        create or replace temp table {WORK}known as
        select c.record_uid, s.rep_uid
        from {WORK}changed c
        join {WORK}hashes h using (record_uid)
        join (select h, min(record_uid) as rep_uid from {state_table(cfg)}
              where record_uid not in (select record_uid from {WORK}changed)
                and record_uid not in (select record_uid from {WORK}removed)
              group by h) s on s.h = h.h
        where s.rep_uid < c.record_uid
          and c.record_uid not in (select record_uid from {out})
    """)
    con.execute(f"delete from {WORK}changed where record_uid in (select record_uid from {WORK}known)")


def write_known(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig, run_id: str, at: object) -> None:
    """Write the rows of resolve_work_known: the person and link of their profile's representative.

    Runs after the resolved persons are written, so a representative resolved again this run
    hands on its new person. The fields are those a full run gives a profile's other records.
    """
    out = cfg.output_table
    rule = cfg.anchor_rule.replace("'", "''")
    con.execute(f"""
        insert into {out}
        select i.record_uid, i.source, i.record_key, r.person_id,
               case when r.link_rule = '{rule}' then r.link_rule else 'identical record' end,
               null, 1.0,
               case when r.link_rule = '{rule}' then coalesce(r.linked_record_uid, r.record_uid)
                    else r.record_uid end,
               ?, ?::timestamptz
        from {WORK}known k
        join {WORK}inp i using (record_uid)
        join {out} r on r.record_uid = k.rep_uid
    """, [run_id, at])


def is_symmetric(rule: str) -> bool:
    """True for a rule that is a conjunction of `l.x = r.x` terms: swapping the sides changes nothing."""
    terms = [t.strip() for t in re.split(r"\band\b", rule, flags=re.IGNORECASE)]
    return all(re.fullmatch(r"l\.(\w+)\s*=\s*r\.\1", t) for t in terms)


def neighbourhood(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> tuple[int, int]:
    """Choose what to resolve again; return (records to resolve, persons touched).

    Creates resolve_work_subset (record_uid: the input records to resolve) and resolve_work_affected
    (record_uid: the output rows they replace). Works on the input table itself, so no profile of
    the whole input is built: a few hash joins of the changed records against it.
    """
    out = cfg.output_table
    con.execute(f"""
        create or replace temp table {WORK}chg as
        select * from {WORK}inp where record_uid in (select record_uid from {WORK}changed)
    """)
    # Every record a blocking rule pairs with a changed one, in both roles when the rule is one-sided
    # (a symmetric rule finds the same records either way, so one join is enough).
    hops: list[str] = []
    for rule in cfg.blocking_rules:
        hops.append(f"select r.record_uid from {WORK}chg l join {WORK}inp r on ({rule})")
        if not is_symmetric(rule):
            hops.append(f"select l.record_uid from {WORK}inp l join {WORK}chg r on ({rule})")
    near_sql = "\nunion\n".join(hops)
    con.execute(f"create or replace temp table {WORK}near as {near_sql}")
    # Persons touched: holding a nearby, changed or removed record; each is resolved whole.
    con.execute(f"""
        create or replace temp table {WORK}persons as
        select distinct person_id from {out}
        where record_uid in (select record_uid from {WORK}near)
           or record_uid in (select record_uid from {WORK}changed)
           or record_uid in (select record_uid from {WORK}removed)
    """)
    con.execute(f"""
        create or replace temp table {WORK}affected as
        select record_uid from {out} where person_id in (select person_id from {WORK}persons)
    """)
    con.execute(f"""
        create or replace temp table {WORK}subset as
        select record_uid from {WORK}affected union select record_uid from {WORK}changed
        union select record_uid from {WORK}near
    """)
    # A record placed as identical to a known profile that is also in the neighbourhood is
    # resolved with it instead.
    con.execute(f"delete from {WORK}known where record_uid in (select record_uid from {WORK}subset)")
    return _n(con, f"select count(*) from {WORK}subset"), _n(con, f"select count(*) from {WORK}persons")


def tf_table(cfg: ResolverConfig, column: str) -> str:
    """Where a full run keeps the term frequencies of `column` for the incremental runs after it."""
    return f"{STATE_SCHEMA}.{cfg.name}_tf_{column}"


def touched_table(cfg: ResolverConfig) -> str:
    """The temp table an incremental run leaves behind: every id whose records it changed."""
    return f"{cfg.name}_touched"


def keep_touched(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> None:
    """Keep the ids before and after this run of every record it resolved or placed, for the models after it."""
    con.execute(f"""
        create or replace temp table {touched_table(cfg)} as
        select person_id from {WORK}final union select person_id from {WORK}persons
        union select person_id from {cfg.output_table}
        where record_uid in (select record_uid from {WORK}known)
    """)


def save_state(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig, *, full: bool) -> None:
    """Store each record's hash after a run: all of them after a full run, the changes otherwise.

    A full run also keeps its term frequencies: an incremental run resolves a subset, whose own
    frequencies would say nothing about how common a name is in the district.
    """
    con.execute(f"create schema if not exists {STATE_SCHEMA}")
    table = state_table(cfg)
    if full:
        con.execute(f"create or replace table {table} as select record_uid, h from {WORK}hashes")
        for c in cfg.tf_columns:
            con.execute(f"create or replace table {tf_table(cfg, c)} as select * from {WORK}tf_{c}")
        return
    con.execute(f"delete from {table} where record_uid in (select record_uid from {WORK}removed) "
                f"or record_uid in (select record_uid from {WORK}changed_all)")
    con.execute(f"insert into {table} select record_uid, h from {WORK}hashes "
                f"where record_uid in (select record_uid from {WORK}changed_all)")


def hash_all(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> None:
    """resolve_work_hashes for a full run (no state to compare with): the hashes profiles.build took."""
    con.execute(f"create or replace temp table {WORK}hashes as select record_uid, h from {WORK}records")
