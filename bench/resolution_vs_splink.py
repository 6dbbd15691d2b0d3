"""Person resolution vs Splink 5, side by side on the same standardised records, against ground truth.

    .venv/bin/python -m bench.resolution_vs_splink --district /tmp/district13 \
        [--input /tmp/rs/district13_input.duckdb] [--table staging.stg_person_records] \
        [--splink-python /tmp/splink-venv/bin/python] [--threshold 0.999]

--input is a DuckDB file holding the person-records table (built from the district's silo files by
bench/resolution_input.py when missing); point it at a warehouse with helper A's real
staging.stg_person_records to measure on that instead. Splink runs as a subprocess in its own venv
on the same columns exported to parquet; both wall times include everything after the input exists.
"""

from __future__ import annotations

import argparse
import json
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
    ap.add_argument("--district", required=True, type=Path)
    ap.add_argument("--input", type=Path)
    ap.add_argument("--table", default="staging.stg_person_records")
    ap.add_argument("--splink-python", default="/tmp/splink-venv/bin/python")
    ap.add_argument("--threshold", type=float, default=0.999)
    ap.add_argument("--skip-splink", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="resolve-bench-"))
    source = args.input or work / "input.duckdb"
    if not source.exists():
        import duckdb
        t = time.perf_counter()
        with duckdb.connect(str(source)) as c:
            resolution_input.build(c, args.district, args.table)
        print(f"input built from silo files in {time.perf_counter() - t:.1f} s")
    con = db.connect(work / "warehouse.duckdb")
    con.execute(f"attach '{source}' as src (read_only)")
    schema = args.table.split(".")[0]
    con.execute(f"create schema if not exists {schema}")
    con.execute(f"create table {args.table} as select * from src.{args.table}")
    con.execute(f"copy (select * from {args.table}) to '{work}/input.parquet' (format parquet)")
    con.execute("detach src")
    truth = args.district / "truth"

    cfg = person_config(input_table=args.table, threshold=args.threshold)
    t = time.perf_counter()
    with db.transaction(con):
        result = resolve(con, cfg, run_id="bench")
    ours_s = time.perf_counter() - t
    ours = _scores(con, args.table, truth, "core.person_source")
    print(f"ours: {ours_s:.1f} s; records {result.records:,}, profiles {result.profiles:,}, "
          f"pairs {result.pairs_scored:,}, links {result.links:,}; steps {json.dumps(result.timings)}")
    print(f"ours: precision {ours['precision']:.5f} recall {ours['recall']:.5f} F1 {ours['f1']:.5f} "
          f"clusters {ours['clusters']:,} true persons {ours['true_persons']:,}", flush=True)
    rows = [("onenet resolver", ours, ours_s)]
    if not args.skip_splink:
        t = time.perf_counter()
        proc = subprocess.run([args.splink_python, str(Path(__file__).with_name("splink_side.py")),
                               str(work / "input.parquet"), str(work / "splink.parquet"), str(args.threshold)],
                              capture_output=True, text=True, check=True)
        splink_s = time.perf_counter() - t
        print(f"splink: {splink_s:.1f} s; steps {proc.stdout.strip().splitlines()[-1]}")
        con.execute(f"create table splink_out as select * from '{work}/splink.parquet'")
        rows.append(("splink 5.0.0", _scores(con, args.table, truth, "splink_out"), splink_s))
    print(f"\n{'':16} {'precision':>9} {'recall':>8} {'F1':>8} {'clusters':>9} {'true':>9} {'records':>10} {'wall s':>7}")
    for label, s, secs in rows:
        print(f"{label:16} {s['precision']:9.5f} {s['recall']:8.5f} {s['f1']:8.5f} {s['clusters']:9,} "
              f"{s['true_persons']:9,} {s['records']:10,} {secs:7.1f}")
    if len(rows) == 2:
        print(f"\ntime ratio ours/splink: {rows[0][2] / rows[1][2]:.2f}")


if __name__ == "__main__":
    main()
