"""Our side of bench/resolution_vs_splink.py, one fresh process per run; prints one JSON line.

    python -m bench.resolution_ours_side INPUT.duckdb TABLE OUT.duckdb THRESHOLD MEMORY_LIMIT THREADS

Copies TABLE from INPUT into a new warehouse OUT (migrations and the copy are input loading: not
timed, as splink_side.py does not time loading its parquet), then times `resolve()` alone, which
ends with core.person_source written and committed. "seconds" is that time.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from warehouse import db
from warehouse.resolve import resolve
from warehouse.resolve.person_config import person_config


def main(inp: str, table: str, out: str, threshold: float, memory_limit: str, threads: int) -> None:
    Path(out).unlink(missing_ok=True)
    con = db.connect(Path(out))
    con.execute(f"set memory_limit = '{memory_limit}'")
    con.execute(f"set threads = {int(threads)}")
    con.execute(f"attach '{inp}' as src (read_only)")
    con.execute(f"create schema if not exists {table.split('.')[0]}")
    con.execute(f"create table {table} as select * from src.{table}")
    con.execute("detach src")
    cfg = person_config(input_table=table, threshold=threshold)
    t0 = time.perf_counter()
    with db.transaction(con):
        result = resolve(con, cfg, run_id="bench")
    seconds = time.perf_counter() - t0
    con.close()
    print(json.dumps({"seconds": round(seconds, 3), "records": result.records, "profiles": result.profiles,
                      "pairs": result.pairs_scored, "links": result.links, "steps": result.timings}))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], a[1], a[2], float(a[3]), a[4], int(a[5]))
