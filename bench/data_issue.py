"""community.data_issue on the next day: the merge's seconds and the relation's build in publish (issue #13).

    # a district warehouse merged on day 28 (bench/district_warehouse.py --to-day 28), then:
    .venv/bin/python -m bench.data_issue stage --out /tmp/di/w300k --day 29      # sync + validate day 29
    .venv/bin/python -m bench.data_issue side --base BASE.duckdb --work /tmp/di/run.duckdb

`stage` moves the copied district's silos to --day and syncs and validates every source into
OUT/warehouse.duckdb (no merge). `side` copies BASE to WORK (untimed), runs the next-day merge
(warehouse.merge.merge: staging, persons and person-keyed core tables refreshed for what changed),
then builds community.data_issue as publish does (the publish macros on the merged warehouse,
`create temp table ... as <its SQL>`), and prints one JSON line: the merge's wall and CPU seconds
and steps, the relation's wall and CPU seconds and rows, and "seconds" = merge + relation wall.
The code measured is whatever `warehouse` imports (PYTHONPATH picks the tree), so the same script
runs a tree before a change against the tree after it:

    .venv/bin/python -m bench.data_issue compare --before-tree /tmp/di/old --before-base B.duckdb \
        --after-base A.duckdb --rounds 3 --json /tmp/di/compare.json

alternates the two sides in fresh processes (bench/compare.py); each base must have been merged by
its own side's code (a core layer built by other SQL is rebuilt in full, not refreshed).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from pathlib import Path


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def stage(out: Path, day: int) -> None:
    """Sync and validate every source of out/district moved to `day` into out/warehouse.duckdb."""
    from onenet import pipeline
    from onenet.settings import environment
    from simulators import runner
    from simulators.health_codes import drop

    root, warehouse = out / "district", out / "warehouse.duckdb"
    with environment(ONENET_DISTRICT=str(root), ONENET_WAREHOUSE=str(warehouse), ONENET_GX_DIR=str(out / "gx"),
                     AIRFLOW_CONN_ONENET_HEALTH_CODES=f"file://{root / 'health_codes' / 'drop'}?stable_seconds=0"):
        runner.up(root, ports={"hotline": 0, "city_cases": 0})
        try:
            runner.advance(root, day)
            drop.deliver_until(root, day)
            for source in pipeline.SOURCES:
                pipeline.sync(source)
                pipeline.validate(source)
        finally:
            runner.down(root)


def side(base: Path, work: Path) -> dict:
    """Copy `base`, run the next-day merge on the copy, build community.data_issue; the timings."""
    from warehouse import db
    from warehouse.merge import merge
    from warehouse.publish import POLICY_DIR, _prepare

    shutil.copyfile(base, work)
    con = db.connect(work)
    try:
        t0, c0 = time.perf_counter(), _cpu()
        summary = merge(con)
        merge_s, merge_cpu = time.perf_counter() - t0, _cpu() - c0
        sql = (POLICY_DIR / "community" / "community.data_issue.sql").read_text(encoding="utf-8")
        _prepare(con)
        t1, c1 = time.perf_counter(), _cpu()
        con.execute(f"create temp table onenet_bench_data_issue as {sql}")
        issue_s, issue_cpu = time.perf_counter() - t1, _cpu() - c1
        row = con.execute("select count(*), sum(hash(columns(*))) from onenet_bench_data_issue").fetchone()
        touched = con.execute("select count(*) from touched_persons").fetchone()
        findings = con.execute("select count(*) from duckdb_tables() where table_name = 'data_issue_finding'").fetchone()
        finding_rows = (con.execute("select count(*) from core.data_issue_finding").fetchone()
                        if findings and findings[0] else None)
    finally:
        con.close()
        work.unlink(missing_ok=True)
    return {"seconds": round(merge_s + issue_s, 3), "merge_s": round(merge_s, 3), "merge_cpu": round(merge_cpu, 3),
            "steps": summary.step_seconds, "resolve": summary.resolve_mode, "staging": summary.staging_mode,
            "touched_persons": touched[0] if touched else None,
            "finding_rows": finding_rows[0] if finding_rows else None,
            "data_issue_s": round(issue_s, 3), "data_issue_cpu": round(issue_cpu, 3),
            "data_issue_rows": row[0] if row else None, "data_issue_hash": str(row[1]) if row else None}


def compare(before_tree: Path, before_base: Path, after_base: Path, rounds: int, out: Path | None) -> None:
    """Before and after, alternating in fresh processes; the ratio of medians of merge + relation."""
    import os
    import sys

    from bench.compare import REPO, Side, run_rounds, write_json

    work = Path(os.environ.get("TMPDIR", "/tmp"))
    sides = [Side("before", [sys.executable, "-m", "bench.data_issue", "side", "--base", str(before_base),
                             "--work", str(work / "data_issue_before.duckdb")],
                  env={"PYTHONPATH": str(before_tree)}, cwd=before_tree),
             Side("after", [sys.executable, "-m", "bench.data_issue", "side", "--base", str(after_base),
                            "--work", str(work / "data_issue_after.duckdb")],
                  env={"PYTHONPATH": str(REPO)}, cwd=REPO)]
    comp = run_rounds(sides, rounds=rounds, measure="reported",
                      timed="the side's own seconds: next-day merge + community.data_issue's build (copying the "
                            "base and imports excluded)")
    print(comp.report())
    for run in comp.runs:
        r = run.report or {}
        print(f"  {run.side} r{run.round + 1}: merge {r.get('merge_s')} s ({r.get('merge_cpu')} CPU-s, core "
              f"{r.get('steps', {}).get('core')} s), data_issue {r.get('data_issue_s')} s "
              f"({r.get('data_issue_cpu')} CPU-s), {r.get('data_issue_rows')} rows, hash {r.get('data_issue_hash')}")
    if out:
        write_json(out, [comp])


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    st = sub.add_parser("stage")
    st.add_argument("--out", type=Path, required=True)
    st.add_argument("--day", type=int, required=True)
    sd = sub.add_parser("side")
    sd.add_argument("--base", type=Path, required=True)
    sd.add_argument("--work", type=Path, required=True)
    cp = sub.add_parser("compare")
    cp.add_argument("--before-tree", type=Path, required=True, help="a checkout of the code before")
    cp.add_argument("--before-base", type=Path, required=True)
    cp.add_argument("--after-base", type=Path, required=True)
    cp.add_argument("--rounds", type=int, default=3)
    cp.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.command == "stage":
        stage(args.out, args.day)
    elif args.command == "compare":
        compare(args.before_tree, args.before_base, args.after_base, args.rounds, args.json)
    else:
        print(json.dumps(side(args.base, args.work)), flush=True)


if __name__ == "__main__":
    main()
