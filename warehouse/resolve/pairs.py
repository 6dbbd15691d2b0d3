"""Candidate pairs from the blocking rules, and their comparison vectors (one small int per comparison)."""

from __future__ import annotations

import duckdb

from .config import ResolverConfig
from .profiles import WORK


def gamma_sql(cfg: ResolverConfig) -> str:
    """The select list of comparison levels: -1 no evidence, 0 the best level … n the else level."""
    parts = []
    for c in cfg.comparisons:
        whens = " ".join(f"when ({lv.condition}) then {i}" for i, lv in enumerate(c.levels))
        parts.append(f"(case when ({c.null_condition}) then -1 {whens} else {len(c.levels)} end)::tinyint"
                     f" as g_{c.name}")
    return ",\n               ".join(parts)


def tf_sql(cfg: ResolverConfig) -> str:
    """The pair's term frequency per tf column: the larger of the two sides, as Splink does."""
    return "".join(f", greatest(l.tf_{c}, r.tf_{c}) as tf_{c}" for c in cfg.tf_columns)


def veto_sql(cfg: ResolverConfig) -> str:
    """True when a configured veto forbids linking the pair (on l./r. columns)."""
    if not cfg.vetoes:
        return "false"
    return " or ".join(f"coalesce(({v}), false)" for v in cfg.vetoes)


def evidence_sql(cfg: ResolverConfig) -> str:
    """The pair's evidence: the sum of its levels' `evidence` (on g_ columns; -1, no value, counts 0)."""
    terms = []
    for c in cfg.comparisons:
        whens = " ".join(f"when {i} then {lv.evidence}" for i, lv in enumerate(c.levels) if lv.evidence)
        if whens:
            terms.append(f"(case g_{c.name} {whens} else 0 end)")
    return " + ".join(terms) if terms else "0"


def level_veto_sql(cfg: ResolverConfig) -> str:
    """True when the pair sits at a comparison level configured as a veto, or has too little evidence."""
    parts = [f"g_{c.name} in ({', '.join(str(c.labels.index(v)) for v in c.veto_levels)})"
             for c in cfg.comparisons if c.veto_levels]
    if cfg.min_evidence:
        parts.append(f"({evidence_sql(cfg)}) < {int(cfg.min_evidence)}")
    return " or ".join(parts) if parts else "false"


def build(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> int:
    """Create resolve_work_pairs (l_id < r_id, unique) with levels, term frequencies and veto flag."""
    # Each pair remembers which rules found it (a bit mask): EM trains per rule, as Splink does.
    # Joining on <> and ordering the pair afterwards lets a rule be one-sided ("l.id_std is null and
    # ..."), which DuckDB pushes below the join, so the build side stays small.
    across = " and l.profile_source <> r.profile_source" if cfg.link_type == "link_only" else ""
    blocks = "\nunion all\n".join(
        f"select least(l.profile_id, r.profile_id) as l_id, greatest(l.profile_id, r.profile_id) as r_id, "
        f"{1 << k}::bigint as rule_bit from {WORK}profiles l "
        f"join {WORK}profiles r on ({rule}) and l.profile_id <> r.profile_id{across}"
        for k, rule in enumerate(cfg.blocking_rules))
    con.execute(f"""create or replace temp table {WORK}candidates as
        select l_id, r_id, bit_or(rule_bit) as rules from ({blocks}) group by l_id, r_id""")
    con.execute(f"""
        create or replace temp table {WORK}pairs as
        select * replace (vetoed or ({level_veto_sql(cfg)}) as vetoed)
        from (
            select c.l_id, c.r_id, c.rules,
                   {gamma_sql(cfg)}{tf_sql(cfg)},
                   ({veto_sql(cfg)}) as vetoed
            from {WORK}candidates c
            join {WORK}profiles l on l.profile_id = c.l_id
            join {WORK}profiles r on r.profile_id = c.r_id
        )
    """)
    con.execute(f"drop table {WORK}candidates")
    row = con.execute(f"select count(*) from {WORK}pairs").fetchone()
    return int(row[0]) if row else 0


def random_pairs(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig, n_profiles: int) -> int:
    """Create resolve_work_random_pairs: levels of pseudo-random profile pairs, for u; return their count.

    Pair i joins profiles drawn by seeded hashes of i, so the sample is the same on every run.
    """
    n = max(n_profiles, 1)
    con.execute(f"""
        create or replace temp table {WORK}random_pairs as
        with draws as (
            select distinct (hash(i, {cfg.seed}) % {n})::bigint + 1 as a, (hash(i, {cfg.seed + 1}) % {n})::bigint + 1 as b
            from range({cfg.u_pairs(n_profiles)}) t(i)
        )
        select {gamma_sql(cfg)}
        from draws d
        join {WORK}profiles l on l.profile_id = d.a
        join {WORK}profiles r on r.profile_id = d.b
        where d.a <> d.b{" and l.profile_source <> r.profile_source" if cfg.link_type == "link_only" else ""}
    """)
    row = con.execute(f"select count(*) from {WORK}random_pairs").fetchone()
    return int(row[0]) if row else 0
