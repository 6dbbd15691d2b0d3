"""The resolver's incremental day, this code against another checkout (issue #18: "keep the incremental day
as fast as it is or faster"), alternating in fresh processes through bench/compare.py.

    .venv/bin/python -m bench.resolution_next_day --warehouse W/warehouse.duckdb --before-tree CHECKOUT \
        [--pairs 3] [--memory-limit 8GB] [--threads 2] [--work DIR]

Each side first resolves the warehouse's staging.stg_person_records in full with its own code (untimed,
once, through that checkout's bench/resolution_ours_side.py: the base; a base made by other code would
fail the configuration fingerprint and run in full).
Each run then copies its side's base, applies the same synthetic next day to the input (0.3% of phones
changed, 0.05% of records gone, 0.7% new records: copies of existing ones under new keys, their phone
changed; chosen by a hash of the record id, so both sides get the very same day) and times
`resolve(mode="auto")` alone: the seconds the side reports, imports and copies excluded on both sides.
A side whose run was not incremental fails (its plan is printed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

TABLE = "staging.stg_person_records"
TIMED = ("inner seconds: resolve(mode='auto') on the next day's input, from the input table changed to "
         "core.person_source written (imports, the base's copy and the day's changes excluded on both sides)")
# The day's changes, as SQL on the input table (picked by a hash of the record id: the same on every side).
NEXT_DAY = """
update staging.stg_person_records set phone_std = '139' || lpad(cast(hash(record_uid) % 100000000 as varchar), 8, '0')
    where hash(record_uid || 'phone') % 1000 < 3 and phone_std is not null;
delete from staging.stg_person_records where hash(record_uid || 'gone') % 10000 < 5;
insert into staging.stg_person_records
    select * replace (record_uid || '-next' as record_uid, record_key || '-next' as record_key,
                      '137' || lpad(cast(hash(record_uid || 'new') % 100000000 as varchar), 8, '0') as phone_std)
    from staging.stg_person_records where hash(record_uid || 'new') % 1000 < 7;
"""


def side_main(argv: list[str]) -> None:
    """`BASE OUT THRESHOLD MEM THREADS`: copy the base, apply the next day, time resolve(mode="auto")."""
    import time

    from warehouse import db
    from warehouse.resolve import resolve
    from warehouse.resolve.person_config import person_config

    base, out, threshold, memory_limit, threads = argv
    shutil.copyfile(base, out)
    con = db.connect(Path(out))
    con.execute(f"set memory_limit = '{memory_limit}'")
    con.execute(f"set threads = {int(threads)}")
    con.execute(NEXT_DAY)
    t0 = time.perf_counter()
    with db.transaction(con):
        result = resolve(con, person_config(input_table=TABLE, threshold=float(threshold)), run_id="bench-next-day",
                         mode="auto")
    seconds = time.perf_counter() - t0
    con.close()
    incremental = "neighbourhood" in result.timings  # a step only the incremental run has
    print(json.dumps({"seconds": round(seconds, 3), "records": result.records, "incremental": incremental,
                      "changes": result.changes, "steps": result.timings}))
    if not incremental:
        sys.exit(f"not incremental: steps {result.timings}")


def main() -> None:
    from bench import compare

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", type=Path, required=True, help="a built warehouse (its staging is read only)")
    ap.add_argument("--before-tree", type=Path, required=True, help="a checkout of the code to compare with")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.999, help="as bench/resolution_vs_splink.py")
    ap.add_argument("--memory-limit", default="8GB")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="resolve-next-day-"))
    work.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve().parents[1]
    sides = []
    settings = [str(args.threshold), args.memory_limit, str(args.threads)]
    for name, tree in (("ours", here), ("ours-before", args.before_tree.resolve())):
        base = work / f"{name}-base.duckdb"
        # The base: a full run by the tree's own code, bench/resolution_ours_side.py of that tree.
        full = compare.Side(f"{name} base", [sys.executable, "-m", "bench.resolution_ours_side",
                                             str(args.warehouse), TABLE, str(base), *settings], cwd=tree)
        prepared = compare.run_once(full, 0, 0)
        if not prepared.ok:
            sys.exit(f"{name}: the full run of the base failed (exit {prepared.returncode})")
        print(f"{name}: base resolved in full in {prepared.reported_s} s", flush=True)
        # This file run with the tree first on the path, so the tree's warehouse package is imported.
        sides.append(compare.Side(name, [sys.executable, str(Path(__file__).resolve()), "--side", str(base),
                                         str(work / f"{name}-next.duckdb"), *settings],
                                  env={"PYTHONPATH": str(tree)}))
    comp = compare.run_rounds(sides, rounds=args.pairs, timed=TIMED, measure="reported",
                              title=f"the resolver's incremental day, memory_limit {args.memory_limit}, "
                                    f"threads {args.threads}", log_dir=work)
    print(comp.report())
    if args.json:
        compare.write_json(args.json, [comp])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--side":
        side_main(sys.argv[2:])
    else:
        main()
