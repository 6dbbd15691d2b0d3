"""Incident linking against the generator's truth: pairwise precision and recall, per rule and per pair kind.

    .venv/bin/python -m bench.incident_linking --warehouse OUT/warehouse.duckdb --truth OUT/district/truth \
        [--rebuild] [--wrong]

Reads core.incident_member of a merged warehouse (e.g. one bench/district_warehouse.py built) and
truth/incidents.parquet. --rebuild first runs the incident models (warehouse/models/core/incident*.sql)
again on a private copy of the warehouse, so linking changes can be measured without a new merge.

Per rule: every record a rule attached to its parent is a link; a link is right when record and parent
belong to the same true incident (link precision). Pairwise: every pair of records in one predicted
incident against every pair in one true incident, overall and by kind (ticket-ticket, ticket-case,
case-case), as bench/district_warehouse.py scores incidents. --wrong lists every wrong link with the
record's and its parent's text.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import duckdb

INCIDENT_MODELS = ("incident_category_map.sql", "incident_member.sql", "incident.sql")


def rebuild(con: duckdb.DuckDBPyConnection) -> None:
    """Run the incident models again (the rest of core stays as the merge left it)."""
    from warehouse.models import MODELS

    for name in INCIDENT_MODELS:
        con.execute((MODELS / "core" / name).read_text(encoding="utf-8"))


def link_scores(con: duckdb.DuckDBPyConnection, truth: Path) -> list[tuple]:
    """(rule, links, right, wrong, precision) per link rule."""
    return con.execute(f"""
        with t as (select source, record_key, incident_id from '{truth}/incidents.parquet'),
        m as (select m.*, t.incident_id as true_id from core.incident_member m
              join t on t.source = m.source and t.record_key = m.member_key),
        links as (
            select m.link_rule, m.true_id = p.true_id as ok
            -- every rule attaches a record to a ticket
            from m join m as p on p.member_key = m.linked_member_key and p.member_type = 'ticket'
            where m.link_rule not in ('single', 'anchor', 'linked_from')
        )
        select link_rule, count(*), count(*) filter (where ok), count(*) filter (where not ok),
               avg(ok::int) from links group by 1 order by 1
    """).fetchall()


def wrong_links(con: duckdb.DuckDBPyConnection, truth: Path) -> list[tuple]:
    """Every link whose record and parent belong to different true incidents, with both texts."""
    return con.execute(f"""
        with t as (select source, record_key, incident_id from '{truth}/incidents.parquet'),
        m as (select m.*, t.incident_id as true_id from core.incident_member m
              join t on t.source = m.source and t.record_key = m.member_key),
        texts as (select ticket_id as k, content as text from core.ticket
                  union all select case_id, description from core.city_case)
        select m.link_rule, m.member_key, p.member_key,
               round((epoch(m.member_at) - epoch(p.member_at)) / 3600, 1) as hours, a.text, b.text
        from m join m as p on p.member_key = m.linked_member_key and p.member_type = 'ticket'
        join texts a on a.k = m.member_key join texts b on b.k = p.member_key
        where m.link_rule not in ('single', 'anchor', 'linked_from') and m.true_id <> p.true_id
        order by 1, 2
    """).fetchall()


def pair_scores(con: duckdb.DuckDBPyConnection, truth: Path) -> list[tuple]:
    """(kind, true pairs, predicted pairs, right pairs, precision, recall) per pair kind and overall."""
    return con.execute(f"""
        with j as (
            select m.member_type, m.source, m.member_key, m.incident_id as got, t.incident_id as true_id
            from core.incident_member m
            join '{truth}/incidents.parquet' t on t.source = m.source and t.record_key = m.member_key
        ),
        pairs as (
            select least(a.member_type, b.member_type) || '-' || greatest(a.member_type, b.member_type) as kind,
                   a.got = b.got as predicted, a.true_id = b.true_id as actual
            from j a join j b on (a.source, a.member_key) < (b.source, b.member_key)
                and (a.got = b.got or a.true_id = b.true_id)
        ),
        by_kind as (
            select coalesce(kind, 'all') as kind, count(*) filter (where actual) as act,
                   count(*) filter (where predicted) as pred, count(*) filter (where actual and predicted) as tp
            from pairs group by rollup (kind)
        )
        select kind, act, pred, tp, case when pred > 0 then tp / pred end, case when act > 0 then tp / act end
        from by_kind order by kind = 'all', kind
    """).fetchall()


def report(con: duckdb.DuckDBPyConnection, truth: Path) -> dict:
    """Print link precision per rule and pairwise scores per pair kind; return them."""
    links = link_scores(con, truth)
    pairs = pair_scores(con, truth)
    print(f"{'rule':22} {'links':>7} {'right':>7} {'wrong':>6} {'precision':>9}")
    for rule, n, ok, bad, p in links:
        print(f"{rule:22} {n:7,} {ok:7,} {bad:6,} {p:9.4f}")
    print(f"{'pairs':22} {'true':>7} {'linked':>7} {'right':>6} {'precision':>9} {'recall':>7}")
    for kind, act, pred, tp, p, r in pairs:
        ps = f"{p:9.4f}" if p is not None else f"{'-':>9}"
        rs = f"{r:7.4f}" if r is not None else f"{'-':>7}"
        print(f"{kind:22} {act:7,} {pred:7,} {tp:6,} {ps} {rs}")
    return {"links": links, "pairs": pairs}


def main() -> None:
    """Score (optionally re-linked) incidents of a warehouse against its district's truth."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--warehouse", required=True, type=Path)
    ap.add_argument("--truth", required=True, type=Path, help="the district's truth/ folder")
    ap.add_argument("--rebuild", action="store_true", help="re-run the incident models on a copy first")
    ap.add_argument("--wrong", action="store_true", help="list every wrong link with both texts")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="onenet-incidents-") as tmp:
        path = args.warehouse
        if args.rebuild:
            path = Path(tmp) / "warehouse.duckdb"
            shutil.copyfile(args.warehouse, path)
        with duckdb.connect(str(path), read_only=not args.rebuild) as con:
            if args.rebuild:
                rebuild(con)
            report(con, args.truth)
            if args.wrong:
                for rule, key, parent, hours, text, parent_text in wrong_links(con, args.truth):
                    print(f"{rule} {key} -> {parent} ({hours:+.1f} h): {text} | {parent_text}")


if __name__ == "__main__":
    main()
