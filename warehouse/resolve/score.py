"""Match weight and probability of every candidate pair; the links are the pairs above the threshold."""

from __future__ import annotations

import math

import duckdb

from .config import ResolverConfig
from .estimate import Parameters
from .profiles import WORK


def weight_sql(cfg: ResolverConfig, params: Parameters) -> str:
    """SQL for the pair's match weight: prior + one term per comparison, tf-adjusted where configured."""
    w = params.weights()
    terms = [repr(math.log2(params.lam / (1 - params.lam)))]
    for c in cfg.comparisons:
        whens = []
        for i, _label in enumerate(c.labels):
            tf_col = c.levels[i].tf_column if i < len(c.levels) else None
            if tf_col:
                # Splink-style: u at this level is the frequency of the pair's value itself
                # (at least 1/N by construction, so the weight stays bounded).
                whens.append(f"when {i} then {math.log2(params.m[c.name][i])!r}"
                             f" - log2(coalesce(tf_{tf_col}, {params.u[c.name][i]!r}))")
            else:
                whens.append(f"when {i} then {w[c.name][i]!r}")
        terms.append(f"(case g_{c.name} {' '.join(whens)} else 0 end)")
    return " + ".join(terms)


def explain_sql(cfg: ResolverConfig) -> str:
    """SQL for a readable list of the levels a pair met, e.g. 'name exact, phone exact, dob different'."""
    parts = []
    for c in cfg.comparisons:
        # Labels come from configuration: quoted as SQL literals (a label may hold an apostrophe).
        whens = " ".join(f"when {i} then {_literal(f'{c.name} {label}')}" for i, label in enumerate(c.labels))
        parts.append(f"case g_{c.name} {whens} end")
    return f"concat_ws(', ', {', '.join(parts)})"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def build(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig, params: Parameters) -> int:
    """Create resolve_work_links: non-vetoed pairs at or above the threshold, with weight and reason."""
    con.execute(f"""
        create or replace temp table {WORK}links as
        select l_id, r_id, round(weight, 4) as weight,
               round(1 / (1 + pow(2, -weight)), 6) as probability,
               'score ' || printf('%.1f', weight) || ': ' || ({explain_sql(cfg)}) as reason
        from (select *, {weight_sql(cfg, params)} as weight from {WORK}pairs where not vetoed)
        where 1 / (1 + pow(2, -weight)) >= {cfg.threshold!r}
    """)
    if cfg.one_to_one:
        # Mutual best links only: each side's best link into the other's source is this pair.
        con.execute(f"""
            create or replace temp table {WORK}links as
            with sided as (
                select k.*, pl.profile_source as l_source, pr.profile_source as r_source
                from {WORK}links k
                join {WORK}profiles pl on pl.profile_id = k.l_id
                join {WORK}profiles pr on pr.profile_id = k.r_id
            )
            select l_id, r_id, weight, probability, reason from sided
            qualify row_number() over (partition by l_id, r_source order by weight desc, r_id) = 1
                and row_number() over (partition by r_id, l_source order by weight desc, l_id) = 1
        """)
    row = con.execute(f"select count(*) from {WORK}links").fetchone()
    return int(row[0]) if row else 0
