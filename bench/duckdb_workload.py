"""One step of the DuckDB version benchmark; run by bench/duckdb_versions.py inside each throwaway venv.

    <venv>/bin/python bench/duckdb_workload.py --step cluster [--pairs 32000] [--seed 42]

Prints one JSON line: seconds of the timed part, peak RSS of this process, step details or the error.
Only duckdb, numpy and pyarrow are imported, so the same file runs against any DuckDB version.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
import traceback
from itertools import pairwise
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

THRESHOLD = 0.95
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘")
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国文辉力")
# Same-sounding or look-alike characters: the typos a clerk makes when copying a name.
VARIANTS = {"伟": "玮", "芳": "方", "娜": "那", "静": "靜", "丽": "莉", "磊": "垒", "军": "君",
            "洋": "阳", "杰": "洁", "涛": "滔", "明": "铭", "华": "花", "红": "宏", "建": "健"}


def rss_mb() -> float:
    # ru_maxrss is the high-water mark in KiB on Linux; each step runs in a fresh process.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_parquet(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table, tmp: Path) -> None:
    # Load through a Parquet file so the setup does not depend on the Arrow API under test.
    path = tmp / f"{name}.parquet"
    pq.write_table(table, path)
    con.execute(f"create table {name} as select * from read_parquet('{path}')")


def make_pairs(pairs: int, seed: int) -> tuple[pa.Table, pa.Table, int]:
    """Candidate pairs shaped like a Splink dedupe: small clusters, some chains, many non-matches."""
    rng = np.random.default_rng(seed)
    n_nodes = int(pairs * 0.8)
    groups: list[list[int]] = []
    next_id = 0
    while next_id < n_nodes:
        if rng.random() < 0.05:
            size = int(rng.integers(8, 41))  # a chain: A~B, B~C, ... as transitive links produce
        else:
            size = int(rng.choice([1, 2, 3, 4], p=[0.26, 0.42, 0.21, 0.11]))
        size = min(size, n_nodes - next_id)
        groups.append(list(range(next_id, next_id + size)))
        next_id += size
    # Shuffle ids so the cluster minimum sits anywhere in a chain, not at its head.
    ids = rng.permutation(n_nodes)
    left: list[int] = []
    right: list[int] = []
    prob: list[float] = []
    for g in groups:
        for a, b in pairwise(g):  # spanning path: always above the threshold
            left.append(a)
            right.append(b)
            prob.append(rng.uniform(THRESHOLD, 1.0))
        if len(g) <= 4:  # small clusters are near-cliques; extra edges may fall below threshold
            for i in range(len(g)):
                for j in range(i + 2, len(g)):
                    left.append(g[i])
                    right.append(g[j])
                    prob.append(rng.uniform(0.9, 1.0))
    n_low = max(pairs - len(left), 0)
    lo = rng.integers(0, n_nodes, n_low)
    hi = (lo + rng.integers(1, n_nodes, n_low)) % n_nodes  # never a self-pair
    l_arr = ids[np.concatenate([np.array(left, dtype=np.int64), lo])]
    r_arr = ids[np.concatenate([np.array(right, dtype=np.int64), hi])]
    p_arr = np.concatenate([np.array(prob), rng.uniform(0.0, 0.5, n_low)])
    edges = pa.table({"unique_id_l": np.minimum(l_arr, r_arr), "unique_id_r": np.maximum(l_arr, r_arr),
                      "match_probability": p_arr})
    nodes = pa.table({"unique_id": np.arange(n_nodes, dtype=np.int64)})
    return edges, nodes, len(groups)


def step_cluster(con: duckdb.DuckDBPyConnection, args: argparse.Namespace, tmp: Path) -> tuple[float, dict]:
    edges, nodes, expected = make_pairs(args.pairs, args.seed)
    load_parquet(con, "pairs", edges, tmp)
    load_parquet(con, "nodes", nodes, tmp)
    sql = con.sql  # Splink's DuckDB backend sends every statement through con.sql()
    t0 = time.perf_counter()
    # Same shape as Splink's solve_connected_components: every step is a CREATE TABLE AS,
    # each round joins the neighbours to the current representatives and counts changed nodes.
    sql(f"""create table edges_self as
        select unique_id_l as node_id_l, unique_id_r as node_id_r from pairs
        where match_probability >= {THRESHOLD}
        union select unique_id, unique_id from nodes""")
    sql("""create table neighbours as
        select n.unique_id as node_id, e.node_id_r as neighbour
        from nodes n left join edges_self e on n.unique_id = e.node_id_l
        union
        select n.unique_id, coalesce(e.node_id_l, n.unique_id)
        from nodes n left join edges_self e on n.unique_id = e.node_id_r""")
    sql("drop table edges_self")
    sql("""create table reps_0 as
        with init as (select node_id, min(neighbour) as representative from neighbours
                      group by node_id order by node_id),
        first_iter as (
            select nb.node_id, min(i.representative) as representative
            from neighbours nb left join init i on nb.neighbour = i.node_id
            group by nb.node_id order by nb.node_id)
        select f.node_id, f.representative, f.representative <> i.representative as needs_updating
        from first_iter f join init i on f.node_id = i.node_id""")
    rounds, changed, nb = 0, 1, "neighbours"
    while changed:
        rounds += 1
        prev = f"reps_{rounds - 1}"
        # Clusters with no neighbour outside themselves are final: set them aside, thin the rest.
        sql(f"""create table stable_{rounds} as
            with non_stable as (
                select distinct r.representative from {prev} r
                join {nb} n on r.node_id = n.node_id
                join {prev} r2 on n.neighbour = r2.node_id
                where r.representative <> r2.representative)
            select * from {prev} r
            where not exists (select 1 from non_stable s where s.representative = r.representative)""")
        sql(f"""create table unstable_{rounds} as select * from {prev} p
            where not exists (select 1 from stable_{rounds} s where s.representative = p.representative)""")
        sql(f"""create table neighbours_{rounds} as select * from {nb}
            where node_id in (select node_id from unstable_{rounds})""")
        if nb != "neighbours":  # Splink drops what the next round no longer reads
            sql(f"drop table {nb}")
        nb = f"neighbours_{rounds}"
        sql(f"""create table reps_{rounds} as
            with r as (
                select node_id, min(representative) as representative from (
                    select n.node_id, p.representative from {nb} n
                    join unstable_{rounds} p on n.neighbour = p.node_id where p.needs_updating
                    union all
                    select node_id, representative from unstable_{rounds}) group by node_id)
            select r.node_id, r.representative, r.representative <> p.representative as needs_updating
            from r left join unstable_{rounds} p on r.node_id = p.node_id""")
        sql(f"drop table unstable_{rounds}")
        sql(f"drop table {prev}")
        changed = sql(f"select count(*) from reps_{rounds} where needs_updating").fetchall()[0][0]
    parts = [f"select node_id, representative as cluster_id from stable_{i}" for i in range(1, rounds + 1)]
    parts.append(f"select node_id, representative from reps_{rounds}")
    sql("create table clusters as " + " union all ".join(parts))
    clusters, n_nodes = sql("select count(distinct cluster_id), count(*) from clusters").fetchall()[0]
    seconds = time.perf_counter() - t0
    return seconds, {"pairs": edges.num_rows, "nodes": n_nodes, "rounds": rounds,
                     "clusters": clusters, "clusters_expected": expected}


def step_string_similarity(con: duckdb.DuckDBPyConnection, args: argparse.Namespace,
                           tmp: Path) -> tuple[float, dict]:
    rng = np.random.default_rng(args.seed)
    n = 200_000

    def names(count: int) -> list[str]:
        sur = rng.choice(SURNAMES, count)
        g1 = rng.choice(GIVEN, count)
        g2 = np.where(rng.random(count) < 0.6, rng.choice(GIVEN, count), "")
        return [a + b + c for a, b, c in zip(sur, g1, g2, strict=True)]

    left = names(n)
    others = names(n)
    same = rng.random(n) < 0.5  # half the pairs are the same person, often with a variant character
    right = ["".join(VARIANTS.get(ch, ch) for ch in name) if rng.random() < 0.5 else name
             for name in left]
    right = [r if s else o for r, o, s in zip(right, others, same, strict=True)]
    load_parquet(con, "name_pairs", pa.table({"name_l": left, "name_r": right}), tmp)
    t0 = time.perf_counter()
    con.execute("""create table name_scores as select name_l, name_r,
        jaro_winkler_similarity(name_l, name_r) as jw, levenshtein(name_l, name_r) as lev
        from name_pairs""")
    high_jw, mean_lev = con.execute(
        "select count(*) filter (where jw >= 0.9), avg(lev) from name_scores").fetchall()[0]
    seconds = time.perf_counter() - t0
    lev, jw = con.execute("select levenshtein('张伟', '张玮'), jaro_winkler_similarity('张伟', '张玮')").fetchall()[0]
    return seconds, {"rows": n, "jw>=0.9": high_jw, "mean_lev": round(mean_lev, 3),
                     "levenshtein('张伟','张玮')": lev, "jaro_winkler('张伟','张玮')": round(jw, 3)}


def step_group_window(con: duckdb.DuckDBPyConnection, args: argparse.Namespace,
                      tmp: Path) -> tuple[float, dict]:
    # Integer arithmetic on range() is deterministic in every version, unlike random() or hash().
    con.execute("""create table events as select i as event_id,
        (i * 7919 + 13) % 200003 as person_id, (i * 104729) % 1000003 as ts,
        ((i * 31) % 10007) / 100.0 as amount from range(2000000) t(i)""")
    t0 = time.perf_counter()
    con.execute("""create table per_person as select person_id, count(*) as n, sum(amount) as total,
        max(ts) as last_ts from events group by person_id""")
    con.execute("""create table latest as select * from (
        select *, row_number() over (partition by person_id order by ts desc) as rn from events)
        where rn <= 3""")
    people, latest = con.execute(
        "select (select count(*) from per_person), (select count(*) from latest)").fetchall()[0]
    seconds = time.perf_counter() - t0
    return seconds, {"rows": 2_000_000, "groups": people, "top3_rows": latest}


def step_arrow_roundtrip(con: duckdb.DuckDBPyConnection, args: argparse.Namespace,
                         tmp: Path) -> tuple[float, dict]:
    rng = np.random.default_rng(args.seed)
    n = 2_000_000
    districts = pa.array([f"district-{i:03d}" for i in range(300)])
    table = pa.table({"id": np.arange(n, dtype=np.int64), "person": rng.integers(0, 400_000, n),
                      "amount": rng.random(n) * 100, "flag": rng.random(n) < 0.5,
                      "district": pc.take(districts, pa.array(rng.integers(0, 300, n)))})
    t0 = time.perf_counter()
    con.register("arrow_in", table)
    result = con.sql("select id, person, amount * 2 as amount2, district from arrow_in where flag").arrow()
    # 1.5.x returns a RecordBatchReader from .arrow(); normalise to a Table so the work is the same.
    returned = type(result).__name__
    if hasattr(result, "read_all"):
        result = result.read_all()
    rows = result.num_rows
    seconds = time.perf_counter() - t0
    rel = con.sql("select 1")
    methods = [m for m in ("arrow", "to_arrow_table", "fetch_arrow_table") if hasattr(rel, m)]
    return seconds, {"rows_in": n, "rows_out": rows, ".arrow() returns": returned,
                     "relation arrow methods": methods}


def step_api_check(con: duckdb.DuckDBPyConnection, args: argparse.Namespace,
                   tmp: Path) -> tuple[None, dict]:
    detail = {}
    for label, call in (("con.sql().fetchone()", lambda: con.sql("select 1").fetchone()),
                        ("con.execute().fetchone()", lambda: con.execute("select 1").fetchone())):
        try:
            call()
            detail[label] = "yes"
        except Exception as exc:  # the point is to report what broke, whatever it is
            detail[label] = f"no ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    return None, detail


STEPS = {"cluster": step_cluster, "string_similarity": step_string_similarity,
         "group_window": step_group_window, "arrow_roundtrip": step_arrow_roundtrip,
         "api_check": step_api_check}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", choices=list(STEPS), required=True)
    parser.add_argument("--pairs", type=int, default=32_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    out: dict = {"duckdb": duckdb.__version__, "step": args.step}
    con = duckdb.connect()  # in-memory: measure the engine, not the disk
    out["base_rss_mb"] = round(rss_mb(), 1)
    with tempfile.TemporaryDirectory(prefix="onenet-duckdb-") as tmp:
        try:
            seconds, detail = STEPS[args.step](con, args, Path(tmp))
            out.update(ok=True, seconds=seconds, detail=detail)
        except Exception as exc:
            out.update(ok=False, error=f"{type(exc).__name__}: {exc}".splitlines()[0][:200],
                       trace=traceback.format_exc()[-2000:])
    out["peak_rss_mb"] = round(rss_mb(), 1)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
