"""Person resolution vs Splink 5, side by side on the same standardised records, against ground truth.

    .venv/bin/python -m bench.resolution_vs_splink --warehouse /tmp/d13/warehouse.duckdb \
        [--district /tmp/d13/district] [--memory-limit 8GB] [--threads 2] \
        [--splink-python /tmp/splink-venv/bin/python] [--threshold 0.999] [--skip-splink]
    .venv/bin/python -m bench.resolution_vs_splink --district /tmp/district13 [--input FILE.duckdb]

--warehouse reads the real staging.stg_person_records of a warehouse built by the pipeline
(bench/district_warehouse.py; read-only, never modified); --district then defaults to the district
copy next to it (WAREHOUSE_DIR/district), whose truth/ scores both sides. Without --warehouse,
--input is a DuckDB file holding the person-records table (built from the district's silo files by
bench/resolution_input.py when missing, a stand-in for the real staging). Splink runs as a
subprocess in its own venv on the same columns exported to parquet. Both sides get the same DuckDB
memory_limit and threads; both wall times include everything after the input exists; peak RSS is
this process's (ours) and the Splink subprocess's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from bench import resolution_input
from warehouse import db
from warehouse.resolve import resolve
from warehouse.resolve.person_config import person_config


def _scores(con, table: str, truth: Path, resolved: str) -> dict:
    tp, pred, act, clusters, persons, records = con.execute(
        resolution_input.truth_pairs_sql(table, truth, resolved)).fetchone()
    p, r = tp / pred, tp / act
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r), "clusters": clusters,
            "true_persons": persons, "records": records}


def main() -> None:
    """Run both resolvers once and print precision, recall, F1, cluster counts and wall times."""
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
    ap.add_argument("--work", type=Path, help="work folder (default: a new temporary folder)")
    args = ap.parse_args()
    if args.warehouse:
        if args.input:
            ap.error("give --warehouse or --input, not both")
        args.input = args.warehouse
        args.district = args.district or args.warehouse.parent / "district"
    if not args.district:
        ap.error("--district is required without --warehouse")
    work = args.work or Path(tempfile.mkdtemp(prefix="resolve-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    source = args.input or work / "input.duckdb"
    if not source.exists():
        import duckdb
        t = time.perf_counter()
        with duckdb.connect(str(source)) as c:
            resolution_input.build(c, args.district, args.table)
        print(f"input built from silo files in {time.perf_counter() - t:.1f} s")
    con = db.connect(work / "warehouse.duckdb")
    con.execute(f"set memory_limit = '{args.memory_limit}'")
    con.execute(f"set threads = {args.threads}")
    con.execute(f"attach '{source}' as src (read_only)")
    schema = args.table.split(".")[0]
    con.execute(f"create schema if not exists {schema}")
    con.execute(f"create table {args.table} as select * from src.{args.table}")
    # Splink gets exactly the records our configuration resolves (its filter, e.g. soft-deleted rows or not).
    cfg = person_config(input_table=args.table, threshold=args.threshold)
    con.execute(f"copy (select * from {args.table} where {cfg.filter or 'true'}) to '{work}/input.parquet' "
                f"(format parquet)")
    con.execute("detach src")
    truth = args.district / "truth"

    n_input = con.execute(f"select count(*) from {args.table}").fetchone()[0]  # type: ignore[index]
    print(f"input: {n_input:,} records of {args.table} from {source}; truth {truth}", flush=True)

    rows = []
    if not args.skip_ours:
        t = time.perf_counter()
        with db.transaction(con):
            result = resolve(con, cfg, run_id="bench")
        ours_s = time.perf_counter() - t
        ours = _scores(con, args.table, truth, "core.person_source")
        ours_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"ours: {ours_s:.1f} s; records {result.records:,}, profiles {result.profiles:,}, "
              f"pairs {result.pairs_scored:,}, links {result.links:,}; steps {json.dumps(result.timings)}")
        print(f"ours: precision {ours['precision']:.5f} recall {ours['recall']:.5f} F1 {ours['f1']:.5f} "
              f"clusters {ours['clusters']:,} true persons {ours['true_persons']:,}", flush=True)
        rows.append(("onenet resolver", ours, ours_s, ours_mb))
    if not args.skip_splink:
        t = time.perf_counter()
        # Splink's progress lines (stderr) go to a file, so a run that times out still says how far it got.
        log = work / "splink.log"
        with log.open("w") as err:
            try:
                proc = subprocess.run([args.splink_python, str(Path(__file__).with_name("splink_side.py")),
                                       str(work / "input.parquet"), str(work / "splink.parquet"),
                                       str(args.threshold), args.memory_limit, str(args.threads),
                                       str(work / "splink_tmp")],
                                      stdout=subprocess.PIPE, stderr=err, text=True, timeout=args.splink_timeout)
            except subprocess.TimeoutExpired:
                proc = subprocess.CompletedProcess([], -9, "", "")
        progress = [ln for ln in log.read_text().splitlines() if ln.strip()]
        proc.stderr = "\n".join(progress[-3:]) or "(no output)"
        if proc.returncode == -9:
            proc.stderr += f"\ntimed out after {args.splink_timeout:.0f} s"
        splink_s = time.perf_counter() - t
        splink_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        if proc.returncode != 0:
            print(f"splink FAILED after {splink_s:.1f} s (exit {proc.returncode}, peak RSS {splink_mb:,.0f} MB): "
                  + " | ".join(proc.stderr.strip().splitlines()[-3:]))
        else:
            print(f"splink: {splink_s:.1f} s; steps {proc.stdout.strip().splitlines()[-1]}")
            con.execute(f"create table splink_out as select * from '{work}/splink.parquet'")
            rows.append(("splink 5.0.0", _scores(con, args.table, truth, "splink_out"), splink_s, splink_mb))
    print(f"\nmemory_limit {args.memory_limit}, threads {args.threads}, threshold {args.threshold}")
    print(f"{'':16} {'precision':>9} {'recall':>8} {'F1':>8} {'clusters':>9} {'true':>9} {'records':>10} "
          f"{'wall s':>7} {'peak MB':>8}")
    for label, sc, secs, mb in rows:
        print(f"{label:16} {sc['precision']:9.5f} {sc['recall']:8.5f} {sc['f1']:8.5f} {sc['clusters']:9,} "
              f"{sc['true_persons']:9,} {sc['records']:10,} {secs:7.1f} {mb:8,.0f}")
    if len(rows) == 2:
        (_, a, ta, ma), (_, b, tb, mb_) = rows
        print(f"\nratios ours/splink: time {ta / tb:.2f}, peak RSS {ma / mb_:.2f}, F1 {a['f1'] / b['f1']:.4f}, "
              f"precision {a['precision'] / b['precision']:.4f}, recall {a['recall'] / b['recall']:.4f}")


if __name__ == "__main__":
    main()
