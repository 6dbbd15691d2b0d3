"""Stable ids: each new cluster keeps the previous id most of its records held; merges/splits go to meta.

Rules (all set-based, deterministic):
- a cluster claims the previous id held by most of its records (ties: smallest id);
- an id claimed by several clusters stays with the one holding most of its records (ties: the cluster
  whose smallest record id is smallest); the others get new ids (recorded as 'split');
- a previous id not kept by any cluster was absorbed ('merge' into the id its records went to);
- clusters with no previous records get new ids ('new'), numbered in order of their smallest record
  id, continuing from the last id ever issued for the entity (meta.id_counters).
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from .config import ResolverConfig
from .errors import ResolveError
from .profiles import WORK

# No PRIMARY KEY on record_uid: its index made replacing the output slower than resolving it
# (see migration 009); apply() checks uniqueness instead.
OUTPUT_COLUMNS = """(
    record_uid varchar not null, source varchar not null, record_key varchar not null,
    person_id varchar not null, link_rule varchar not null, match_weight double,
    match_probability double, linked_record_uid varchar, run_id varchar not null,
    resolved_at timestamptz not null)"""


def ensure_output(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> None:
    """Create the output table (same shape as core.person_source) when a configuration names a new one."""
    if "." in cfg.output_table:
        con.execute(f"create schema if not exists {cfg.output_table.split('.')[0]}")
    con.execute(f"create table if not exists {cfg.output_table} {OUTPUT_COLUMNS}")


def assign_records(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> None:
    """Create resolve_work_assign: every record with its cluster and the rule, score and record it came by."""
    rule = cfg.anchor_rule.replace("'", "''")
    con.execute(f"""
        create or replace temp table {WORK}assign as
        with r as (
            select rec.record_uid, rec.source, rec.record_key, c.cluster_id, c.how, c.weight,
                   c.probability, c.reason, c.via, p.first_uid as profile_rep
            from {WORK}records rec
            join {WORK}cluster c using (profile_id)
            join {WORK}profiles p using (profile_id)
        ),
        anchor_rep as (select cluster_id, min(record_uid) as anchor_rep from r where how = 'anchor' group by 1)
        select r.record_uid, r.source, r.record_key, r.cluster_id,
               case when r.how = 'anchor' then '{rule}'
                    when r.record_uid <> r.profile_rep then 'identical record'
                    when r.how in ('joined', 'component') then coalesce(r.reason, 'singleton')
                    else 'singleton' end as link_rule,
               case when r.how in ('joined', 'component') and r.record_uid = r.profile_rep then r.weight end
                   as match_weight,
               case when r.how in ('joined', 'component') and r.record_uid = r.profile_rep then r.probability
                    when r.how = 'singleton' and r.record_uid = r.profile_rep then null
                    else 1.0 end as match_probability,
               case when r.how = 'anchor' then nullif(a.anchor_rep, r.record_uid)
                    when r.record_uid <> r.profile_rep then r.profile_rep
                    when r.how in ('joined', 'component') then v.first_uid end as linked_record_uid
        from r
        left join anchor_rep a using (cluster_id)
        left join {WORK}profiles v on v.profile_id = r.via
    """)


def apply(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig, run_id: str, at: datetime,
          replace: str | None = None) -> dict[str, int]:
    """Give every cluster its person id, write the output table and meta.person_id_changes; return counts.

    `replace` names a table of record_uid: only those output rows are replaced (an incremental run,
    whose clusters cover exactly the persons of those rows); None replaces the whole output.
    """
    out = cfg.output_table
    con.execute(f"""
        create or replace temp table {WORK}sizes as
        select cluster_id, count(*) as n, min(record_uid) as cmin from {WORK}assign group by 1
    """)
    con.execute(f"""
        create or replace temp table {WORK}votes as
        select a.cluster_id, p.person_id, count(*) as n
        from {WORK}assign a join {out} p using (record_uid) group by all
    """)
    con.execute(f"""
        create or replace temp table {WORK}claim as
        select * from {WORK}votes
        qualify row_number() over (partition by cluster_id order by n desc, person_id) = 1
    """)
    con.execute(f"""
        create or replace temp table {WORK}kept as
        select c.cluster_id, c.person_id from {WORK}claim c join {WORK}sizes s using (cluster_id)
        qualify row_number() over (partition by c.person_id order by c.n desc, s.cmin) = 1
    """)
    row = con.execute("select last_value from meta.id_counters where entity = ?", [cfg.name]).fetchone()
    last = int(row[0]) if row else 0
    con.execute(f"""
        create or replace temp table {WORK}ids as
        select cluster_id, person_id, false as is_new from {WORK}kept
        union all
        select cluster_id,
               '{cfg.id_prefix}' || lpad(({last} + row_number() over (order by cmin))::varchar, {cfg.id_digits}, '0'),
               true
        from {WORK}sizes where cluster_id not in (select cluster_id from {WORK}kept)
    """)
    new_ids = con.execute(f"select count(*) from {WORK}ids where is_new").fetchone()
    n_new = int(new_ids[0]) if new_ids else 0
    if n_new:
        con.execute("insert or replace into meta.id_counters values (?, ?)", [cfg.name, last + n_new])
    con.execute(f"""
        insert into meta.person_id_changes
        select ?, ?, case when c.person_id is null then 'new' else 'split' end, i.person_id, c.person_id, s.n, ?
        from {WORK}ids i join {WORK}sizes s using (cluster_id) left join {WORK}claim c using (cluster_id)
        where i.is_new
        union all
        select ?, ?, 'merge', i.person_id, v.person_id, v.n, ?
        from {WORK}votes v join {WORK}ids i using (cluster_id)
        where v.person_id <> i.person_id and v.person_id not in (select person_id from {WORK}kept)
    """, [run_id, cfg.name, at, run_id, cfg.name, at])
    counts = dict(con.execute("select change, count(*) from meta.person_id_changes where run_id = ? group by 1",
                              [run_id]).fetchall())
    # A row unchanged since the last run keeps the run that made it, so re-runs leave the table identical.
    con.execute(f"""
        create or replace temp table {WORK}final as
        with joined as (
            select a.*, i.person_id, p.run_id as prev_run, p.resolved_at as prev_at,
                   coalesce(p.person_id = i.person_id and p.link_rule = a.link_rule
                            and p.match_weight is not distinct from a.match_weight
                            and p.match_probability is not distinct from a.match_probability
                            and p.linked_record_uid is not distinct from a.linked_record_uid, false) as same
            from {WORK}assign a join {WORK}ids i using (cluster_id) left join {out} p using (record_uid)
        )
        select record_uid, source, record_key, person_id, link_rule, match_weight, match_probability,
               linked_record_uid,
               case when same then prev_run else ? end as run_id,
               case when same then prev_at else ?::timestamptz end as resolved_at
        from joined
    """, [run_id, at])
    if replace is None:
        con.execute(f"delete from {out}")
    else:
        con.execute(f"delete from {out} where record_uid in (select record_uid from {replace})")
        # Every record resolved again must have been among the rows just removed.
        left = con.execute(f"select count(*) from {out} where record_uid in "
                           f"(select record_uid from {WORK}final)").fetchone()
        if left and left[0]:
            raise ResolveError(f"{left[0]} resolved records still have an output row; run a full resolution")
    con.execute(f"insert into {out} select * from {WORK}final")
    return {k: int(v) for k, v in counts.items()}
