"""Clustering with hard constraints: anchor clusters, best-link joining in rounds, then components.

1. Anchors: profiles sharing an anchor value (a valid ID) are one cluster; two anchor values never meet.
2. Joining rounds: a profile without a cluster joins the cluster of its best link to a clustered
   profile, if its exclusive values (e.g. a masked ID) agree with the cluster's (equal, or near as
   `exclusive_near` configures: near the value its anchor profiles hold, or where they hold none,
   near the smallest and the largest it holds, so one near value cannot open the way for a second
   one near it alone).
   Each profile joins at most one cluster, so no profile can chain two anchors together; with
   `refuse_ties`, a profile whose best links lead to two clusters at the same weight joins neither.
3. Components: what is left is clustered by connected components over its links among itself
   (label propagation in SQL); a component holding two different exclusive values is split.
"""

from __future__ import annotations

import duckdb

from .config import ResolverConfig
from .profiles import WORK


def _n(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _exclusive(cfg: ResolverConfig) -> list[str]:
    return ([cfg.anchor_column] if cfg.anchor_column else []) + list(cfg.exclusive_columns)


def build(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> int:
    """Create resolve_work_cluster (profile_id → cluster_id, how, via, weight, reason); return clusters."""
    xs = _exclusive(cfg)
    xsel = "".join(f", ({x})::varchar as x{i}" for i, x in enumerate(xs))
    con.execute(f"create or replace temp table {WORK}excl as select profile_id{xsel} from {WORK}profiles")
    con.execute(f"""
        create or replace temp table {WORK}edges as
        select l_id as a, r_id as b, weight, probability, reason from {WORK}links
        union all
        select r_id as a, l_id as b, weight, probability, reason from {WORK}links
    """)
    empty = ("select null::bigint as profile_id, null::bigint as cluster_id, null::varchar as how, "
             "null::bigint as via, null::double as weight, null::double as probability, "
             "null::varchar as reason where false")
    anchors = empty if not cfg.anchor_column else f"""
        select profile_id, min(profile_id) over (partition by {cfg.anchor_column}) as cluster_id,
               'anchor' as how, null::bigint as via, null::double as weight, null::double as probability,
               null::varchar as reason
        from {WORK}profiles where {cfg.anchor_column} is not null"""
    con.execute(f"create or replace temp table {WORK}cluster as {anchors}")
    _join_rounds(con, cfg, len(xs))
    _components(con, len(xs))
    return _n(con, f"select count(distinct cluster_id) from {WORK}cluster")


def _fits(cfg: ResolverConfig, expression: str, a: str, b: str) -> str:
    """SQL: value `a` fits value `b` of the exclusive column `expression` (equal, or near as configured)."""
    near = cfg.exclusive_near.get(expression)
    return f"({a} = {b} or ({near.format(a=a, b=b)}))" if near else f"{a} = {b}"


def _join_rounds(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig, nx: int) -> None:
    xs = _exclusive(cfg)
    near = [i for i in range(nx) if xs[i] in cfg.exclusive_near]
    cv = "".join(f", min(x.x{i}) as x{i}" for i in range(nx))
    # A near column's values to fit: those of the anchor profiles (certain: one valid ID gives one
    # value), else the smallest and the largest the cluster holds (each joiner's, one new per round),
    # so a value one typo from a joiner's typo is not enough. Aggregates, not lists: this runs over
    # every cluster a profile may join, in every round.
    cv += "".join(f", coalesce(min(x.x{i}) filter (where c.how = 'anchor'), min(x.x{i})) as lo{i}, "
                  f"coalesce(max(x.x{i}) filter (where c.how = 'anchor'), max(x.x{i})) as hi{i}, "
                  f"bool_or(c.how = 'anchor' and x.x{i} is not null) as t{i}" for i in near)
    jx = "".join(f", x.x{i} as j{i}" for i in range(nx))
    compat = "".join(
        f" and (x.x{i} is null or cv.x{i} is null or "
        + (f"({_fits(cfg, xs[i], f'x.x{i}', f'cv.lo{i}')} and "
           f"(cv.hi{i} = cv.lo{i} or {_fits(cfg, xs[i], f'x.x{i}', f'cv.hi{i}')}))"
           if i in near else _fits(cfg, xs[i], f'x.x{i}', f'cv.x{i}')) + ")"
        for i in range(nx))
    firsts = ", ".join(f"min(j{i}) as f{i}" for i in range(nx)) or "count(*) as n"
    # Two joiners of a cluster without a value yet must not bring two different values at once; nor
    # two new near values to a cluster whose values are not certain (each was checked only against
    # the cluster's, not against the other).
    same_round = "".join(
        f" and (b.j{i} is null or b.j{i} = f.f{i} or "
        + (f"cv.t{i} or b.j{i} in (cv.lo{i}, cv.hi{i}))" if i in near else f"cv.x{i} is not null)")
        for i in range(nx))
    # A profile whose best links lead to two clusters at the same weight cannot tell them apart.
    tied = "" if not cfg.refuse_ties else """
            where profile_id not in (
                select profile_id from (
                    select profile_id, cluster_id, rank() over (partition by profile_id order by weight desc) as r
                    from cand)
                where r = 1 group by 1 having count(distinct cluster_id) > 1)"""
    sql = f"""
        insert into {WORK}cluster
        with open as (
            select e.a as profile_id, c.cluster_id, e.b as via, e.weight, e.probability, e.reason
            from {WORK}edges e
            join {WORK}cluster c on c.profile_id = e.b
            where e.a not in (select profile_id from {WORK}cluster)
        ),
        cv as (  -- only the clusters a profile may join this round
            select c.cluster_id{cv} from {WORK}cluster c join {WORK}excl x using (profile_id)
            where c.cluster_id in (select cluster_id from open) group by 1
        ),
        cand as (
            select o.*{jx}
            from open o
            join {WORK}excl x on x.profile_id = o.profile_id
            join cv on cv.cluster_id = o.cluster_id
            where true{compat}
        ),
        best as (
            select * from cand{tied}
            qualify row_number() over (partition by profile_id order by weight desc, cluster_id, via) = 1
        ),
        f as (select cluster_id, {firsts} from best group by 1)
        select b.profile_id, b.cluster_id, 'joined', b.via, b.weight, b.probability, b.reason
        from best b join f using (cluster_id) join cv using (cluster_id)
        where true{same_round}
    """
    for _ in range(cfg.max_join_rounds):
        before = _n(con, f"select count(*) from {WORK}cluster")
        con.execute(sql)
        if _n(con, f"select count(*) from {WORK}cluster") == before:
            break


def _components(con: duckdb.DuckDBPyConnection, nx: int) -> None:
    con.execute(f"""
        create or replace temp table {WORK}comp as
        select profile_id, profile_id as label from {WORK}profiles
        where profile_id not in (select profile_id from {WORK}cluster)
    """)
    con.execute(f"""
        create or replace temp table {WORK}cedges as
        select e.a, e.b from {WORK}edges e
        where e.a in (select profile_id from {WORK}comp) and e.b in (select profile_id from {WORK}comp)
    """)
    while True:
        # One step of min-label propagation, then pointer jumping (label of my label) to converge fast.
        con.execute(f"""
            create or replace temp table {WORK}comp_next as
            select c.profile_id, least(c.label, coalesce(min(n.label), c.label)) as label
            from {WORK}comp c
            left join {WORK}cedges e on e.a = c.profile_id
            left join {WORK}comp n on n.profile_id = e.b
            group by c.profile_id, c.label
        """)
        con.execute(f"""
            create or replace temp table {WORK}comp_next as
            select c.profile_id, least(c.label, coalesce(p.label, c.label)) as label
            from {WORK}comp_next c left join {WORK}comp_next p on p.profile_id = c.label
        """)
        changed = _n(con, f"""
            select count(*) from {WORK}comp c join {WORK}comp_next n using (profile_id)
            where c.label <> n.label""")
        con.execute(f"create or replace temp table {WORK}comp as select * from {WORK}comp_next")
        if changed == 0:
            break
    if nx:
        conflict = " or ".join(f"count(distinct x{i}) over (partition by label) > 1" for i in range(nx))
        xs = ", ".join(f"x{i}" for i in range(nx))
        anyx = " or ".join(f"x{i} is not null" for i in range(nx))
        # A component holding two exclusive values (two masked IDs) is split by value; its members
        # without a value stay alone rather than guess which side they belong to.
        con.execute(f"""
            create or replace temp table {WORK}comp as
            select profile_id,
                   case when not conflicted then label
                        when {anyx} then min(profile_id) over (partition by label, {xs})
                        else profile_id end as label
            from (select c.*, {xs}, ({conflict}) as conflicted
                  from {WORK}comp c join {WORK}excl using (profile_id))
        """)
    con.execute(f"""
        insert into {WORK}cluster
        with sized as (select *, count(*) over (partition by label) as size from {WORK}comp),
        via as (
            select s.profile_id, e.b as via, e.weight, e.probability, e.reason
            from sized s
            join {WORK}edges e on e.a = s.profile_id
            join {WORK}comp o on o.profile_id = e.b and o.label = s.label
            qualify row_number() over (partition by s.profile_id order by e.weight desc, e.b) = 1
        )
        select s.profile_id, s.label,
               case when s.size > 1 then 'component' else 'singleton' end,
               v.via, v.weight, v.probability, v.reason
        from sized s left join via v using (profile_id)
    """)
