"""Person resolution vs Splink 5, side by side on the same standardised records, against ground truth.

    .venv/bin/python -m bench.resolution_vs_splink --warehouse /tmp/d13/warehouse.duckdb \
        [--district /tmp/d13/district] [--memory-limit 8GB] [--threads 2] [--pairs 3] [--json OUT.json] \
        [--splink-python /tmp/splink-venv/bin/python] [--threshold 0.999] [--skip-splink] \
        [--before-tree CHECKOUT]
    .venv/bin/python -m bench.resolution_vs_splink --district /tmp/district13 [--input FILE.duckdb]

--warehouse reads the real staging.stg_person_records of a warehouse built by the pipeline
(bench/district_warehouse.py; read-only, never modified); --district then defaults to the district
copy next to it (WAREHOUSE_DIR/district), whose truth/ scores both sides. Without --warehouse,
--input is a DuckDB file holding the person-records table (built from the district's silo files by
bench/resolution_input.py when missing, a stand-in for the real staging).

The two sides run through bench/compare.py: --pairs rounds, the order alternating, each run a fresh
process (bench/resolution_ours_side.py in our venv, bench/splink_side.py in Splink's). Both get the
same records, DuckDB memory_limit and threads. The ratio is of the seconds each side reports:
resolution from its input table loaded to clusters written; interpreter start, imports and input
loading are excluded on both sides (the process wall times, which include them, are printed too).
Peak RSS is each side's process. F1 is scored on each side's last run. --before-tree adds our side
run from another checkout ("ours-before"), alternating with the others, to show what a change to the
resolver did to its time and scores (e.g. with --skip-splink).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from bench import compare, resolution_input
from warehouse.resolve.person_config import person_config

TIMED = ("inner seconds reported by each side: from its input table loaded to clusters written "
         "(ours: resolve() into core.person_source, committed; Splink: training, predict, clustering, "
         "parquet write); interpreter start, imports and input loading excluded on both sides")
WALL = "process wall: interpreter start, imports, input loading, resolution and write on both sides"


def _scores(con: duckdb.DuckDBPyConnection, table: str, truth: Path, resolved: str) -> dict:
    tp, pred, act, clusters, persons, records = con.execute(  # type: ignore[misc]
        resolution_input.truth_pairs_sql(table, truth, resolved)).fetchone()
    p, r = tp / pred, tp / act
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r), "clusters": clusters,
            "true_persons": persons, "records": records}


def _prepare(args: argparse.Namespace, work: Path) -> tuple[Path, int]:
    """The input table copied once into WORK/input.duckdb, and the rows our configuration resolves
    exported to WORK/input.parquet for Splink; returns the input file and its row count."""
    source = args.input or work / "stand-in.duckdb"
    if not source.exists():
        t = time.perf_counter()
        with duckdb.connect(str(source)) as c:
            resolution_input.build(c, args.district, args.table)
        print(f"input built from silo files in {time.perf_counter() - t:.1f} s")
    inp = work / "input.duckdb"
    inp.unlink(missing_ok=True)
    cfg = person_config(input_table=args.table, threshold=args.threshold)
    with duckdb.connect(str(inp)) as con:
        con.execute(f"attach '{source}' as src (read_only)")
        con.execute(f"create schema if not exists {args.table.split('.')[0]}")
        con.execute(f"create table {args.table} as select * from src.{args.table}")
        con.execute("detach src")
        # Splink gets exactly the records our configuration resolves (its filter, e.g. soft-deleted rows or not).
        con.execute(f"copy (select * from {args.table} where {cfg.filter or 'true'}) "
                    f"to '{work}/input.parquet' (format parquet)")
        n = con.execute(f"select count(*) from {args.table}").fetchone()[0]  # type: ignore[index]
    print(f"input: {n:,} records of {args.table} from {source}", flush=True)
    return inp, n


def _sides(args: argparse.Namespace, work: Path, inp: Path) -> list[compare.Side]:
    sides = []
    ours = [("ours", None)] if not args.skip_ours else []
    if args.before_tree:  # the same side run from another checkout: this resolver against the one before
        ours.append(("ours-before", args.before_tree))
    for name, tree in ours:
        sides.append(compare.Side(
            name, [sys.executable, "-m", "bench.resolution_ours_side", str(inp), args.table,
                   str(work / f"{name}.duckdb"), str(args.threshold), args.memory_limit, str(args.threads)],
            cwd=tree))
    if not args.skip_splink:
        tmp = work / "splink_tmp"
        sides.append(compare.Side(
            "splink", [args.splink_python, str(Path(__file__).with_name("splink_side.py")),
                       str(work / "input.parquet"), str(work / "splink.parquet"), str(args.threshold),
                       args.memory_limit, str(args.threads), str(tmp)],
            timeout=args.splink_timeout,
            before=lambda: shutil.rmtree(tmp, ignore_errors=True)))  # its DuckDB file starts empty each run
    return sides


def main() -> None:
    """Alternate both resolvers in fresh processes; print precision, recall, F1 and the timing statistics."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", type=Path, help="a pipeline-built warehouse: use its real staging table")
    ap.add_argument("--district", type=Path, help="the district whose truth/ scores (default: next to --warehouse)")
    ap.add_argument("--input", type=Path)
    ap.add_argument("--table", default="staging.stg_person_records")
    ap.add_argument("--splink-python", default="/tmp/splink-venv/bin/python")
    ap.add_argument("--threshold", type=float, default=0.999)
    ap.add_argument("--skip-splink", action="store_true")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--memory-limit", default="8GB", help="DuckDB memory_limit for both sides")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads for both sides")
    ap.add_argument("--splink-timeout", type=float, default=3600, help="give Splink up to this many seconds")
    ap.add_argument("--pairs", type=int, default=3, help="rounds of one run per side, order alternating")
    ap.add_argument("--json", type=Path, help="write every run and the statistics here")
    ap.add_argument("--work", type=Path, help="work folder (default: a new temporary folder)")
    ap.add_argument("--before-tree", type=Path, help="also run our side from this checkout (e.g. a git archive of "
                                                     "an earlier commit) as side 'ours-before'")
    args = ap.parse_args()
    if args.warehouse:
        if args.input:
            ap.error("give --warehouse or --input, not both")
        args.input = args.warehouse
        args.district = args.district or args.warehouse.parent / "district"
    if not args.district:
        ap.error("--district is required without --warehouse")
    if args.skip_ours and args.skip_splink and not args.before_tree:
        ap.error("nothing to run")
    work = args.work or Path(tempfile.mkdtemp(prefix="resolve-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    inp, _ = _prepare(args, work)
    truth = args.district / "truth"

    comp = compare.run_rounds(_sides(args, work, inp), rounds=args.pairs, timed=TIMED, measure="reported",
                              title=f"person resolution, {args.table}, memory_limit {args.memory_limit}, "
                                    f"threads {args.threads}, threshold {args.threshold}", log_dir=work)
    wall = compare.Comparison(comp.title, WALL, "wall", comp.sides, comp.runs)
    scores: dict[str, dict] = {}
    with duckdb.connect(str(inp), read_only=True) as con:
        last = {r.side: r for r in comp.runs}
        for name in ("ours", "ours-before"):
            if name in last and last[name].ok:
                alias = name.replace("-", "_")
                con.execute(f"attach '{work / f'{name}.duckdb'}' as {alias} (read_only)")
                scores[name] = _scores(con, args.table, truth, f"{alias}.core.person_source")
                print(f"{name}, last run: {json.dumps(last[name].report)}")
        if "splink" in last and last["splink"].ok:
            scores["splink"] = _scores(con, args.table, truth, f"'{work / 'splink.parquet'}'")
            print(f"splink, last run: {json.dumps(last['splink'].report)}")
    print()
    print(comp.report())
    for first, second in (("ours", "splink"), ("ours", "ours-before"), ("ours-before", "splink")):
        if first in comp.sides and second in comp.sides:
            print(compare.summary_line(first, second, wall.stats(first, second)) + "  [process wall]")
    print(f"\n{'':11} {'precision':>9} {'recall':>8} {'F1':>8} {'clusters':>9} {'true':>9} {'records':>10} "
          f"{'median s':>8} {'peak MB':>8}")
    for side, sc in scores.items():
        runs = [r for r in comp.runs if r.side == side and r.ok]
        med = compare.median([r.reported_s for r in runs if r.reported_s is not None])
        print(f"{side:11} {sc['precision']:8.5f} {sc['recall']:8.5f} {sc['f1']:8.5f} {sc['clusters']:9,} "
              f"{sc['true_persons']:9,} {sc['records']:10,} {med:8.1f} {max(r.peak_mb for r in runs):8,.0f}")
    if "ours" in scores and "splink" in scores:
        a, b = scores["ours"], scores["splink"]
        print(f"F1 ours/splink {a['f1'] / b['f1']:.4f}, precision {a['precision'] / b['precision']:.4f}, "
              f"recall {a['recall'] / b['recall']:.4f}")
    if args.json:
        compare.write_json(args.json, [comp, wall], scores=scores, work=str(work))
        print(f"runs and statistics: {args.json}")


if __name__ == "__main__":
    main()
