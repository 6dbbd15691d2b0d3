"""Build a district-scale warehouse through the real pipeline, timing every step (end-to-end benchmark).

    .venv/bin/python -m bench.district_warehouse --district /tmp/district13 --out /tmp/d13 \
        [--to-day 29] [--no-merge] [--memory-limit 8GB]

Same steps as tests/warehouse/village.py `build_village`, on an already generated district: the
district is first copied to OUT/district (the simulators write to their folder, so the source stays
pristine for others), the four silos start on free loopback ports, the clock moves to --to-day, the
health-code drops are delivered, every source is synced then validated through onenet.pipeline, and
(unless --no-merge) warehouse.merge.merge runs staging → resolve → core → marts. The warehouse is
OUT/warehouse.duckdb, Great Expectations' folder OUT/gx. Prints seconds per step and the peak RSS
of this process and of its children (the silos), and the same as one JSON line at the end.

--memory-limit caps every DuckDB connection the pipeline opens (DuckDB's default is 80% of RAM).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from onenet.settings import environment

PORTS = {"hotline": 0, "city_cases": 0}  # free ports, never a developer's running silos


def _peak_mb() -> tuple[float, float]:
    """(this process, largest waited-for child) peak RSS in MB (Linux reports KiB)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


@contextmanager
def _capped_connections(memory_limit: str | None, threads: int | None) -> Iterator[None]:
    """Every warehouse connection opened meanwhile gets these DuckDB settings."""
    from warehouse import db

    original = db.connect

    def connect(path: Path | str, *, read_only: bool = False, **kwargs: Any) -> Any:
        # The bench's own limit, when given, wins over the pipeline's (ONENET_DUCKDB_MEMORY_LIMIT).
        con = original(path, read_only=read_only, **kwargs)
        if memory_limit and not read_only:
            con.execute(f"set memory_limit = '{memory_limit}'")
        if threads:
            con.execute(f"set threads = {int(threads)}")
        return con

    db.connect = connect
    try:
        yield
    finally:
        db.connect = original


class Steps:
    """Runs named steps, printing and keeping seconds and peak RSS after each."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        out = fn()
        self.seconds[name] = round(time.perf_counter() - t, 2)
        own, child = _peak_mb()
        print(f"{name:28} {self.seconds[name]:8.1f} s   peak RSS so far: self {own:,.0f} MB, "
              f"children {child:,.0f} MB", flush=True)
        return out


def pipeline_env(out: Path) -> dict[str, str]:
    """The environment of the pipeline built by `build` into `out`: the district copy the silos serve,
    the warehouse, Great Expectations' folder, the health-code drop read as soon as a file is there."""
    root = out / "district"
    return dict(ONENET_DISTRICT=str(root), ONENET_WAREHOUSE=str(out / "warehouse.duckdb"), ONENET_GX_DIR=str(out / "gx"),
                AIRFLOW_CONN_ONENET_HEALTH_CODES=f"file://{root / 'health_codes' / 'drop'}?stable_seconds=0")


def build(district: Path, out: Path, *, to_day: int = 29, merge: bool = True,
          memory_limit: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Copy `district` to out/district, build out/warehouse.duckdb through the pipeline; return the timings."""
    from onenet import pipeline
    from simulators import runner
    from simulators.health_codes import drop

    root, warehouse = out / "district", out / "warehouse.duckdb"
    if warehouse.exists():
        raise SystemExit(f"{warehouse} exists; remove it (and {root}) to rebuild")
    steps = Steps()
    if root.exists():
        shutil.rmtree(root)
    steps.run("copy district", lambda: shutil.copytree(district, root, ignore=shutil.ignore_patterns(
        "run", "*.sqlite-shm", "*.sqlite-wal")))
    with environment(**pipeline_env(out)), _capped_connections(memory_limit, threads):
        steps.run("simulators up", lambda: runner.up(root, ports=PORTS))
        try:
            steps.run(f"advance to day {to_day}", lambda: runner.advance(root, to_day))
            steps.run("deliver health drops", lambda: drop.deliver_until(root, to_day))
            for source in pipeline.SOURCES:
                results = steps.run(f"sync {source}", partial(pipeline.sync, source))
                for r in results:
                    print(f"    {r.entity}: {r.status}, {r.rows_in:,} in, {r.rows_landed:,} landed, "
                          f"{r.rows_quarantined:,} quarantined, {r.seconds:.1f} s", flush=True)
            for source in pipeline.SOURCES:
                for v in steps.run(f"validate {source}", partial(pipeline.validate, source)):
                    print(f"    {v.summary()}", flush=True)
        finally:
            steps.run("simulators down", lambda: runner.down(root))
        if merge:
            summary = steps.run("merge", pipeline.merge)
            for line in summary.summary_lines():
                print("    " + line, flush=True)
    own, child = _peak_mb()
    quality = score(warehouse, root / "truth") if merge else {}
    report = {"district": str(district), "warehouse": str(warehouse), "to_day": to_day,
              "seconds": steps.seconds, "total_seconds": round(sum(steps.seconds.values()), 1),
              "peak_rss_mb": {"self": round(own), "children": round(child)},
              "warehouse_mb": round(warehouse.stat().st_size / 2**20), "quality": quality}
    return report


def score(warehouse: Path, truth: Path) -> dict[str, dict]:
    """Pairwise precision/recall/F1 of persons (core.person_source) and incidents (core.incident_member)."""
    import duckdb

    from bench import resolution_input as ri

    with duckdb.connect(str(warehouse), read_only=True) as con:
        out = {"persons": ri.scores(con, ri.truth_pairs_sql("staging.stg_person_records", truth, "core.person_source")),
               "incidents": ri.scores(con, ri.incident_pairs_sql("core.incident_member", truth))}
    for what, s in out.items():
        print(f"{what:9}: precision {s['precision']:.5f} recall {s['recall']:.5f} F1 {s['f1']:.5f}; "
              f"{s['clusters']:,} clusters for {s['true_clusters']:,} true, {s['records']:,} records", flush=True)
    return out


def main() -> None:
    """Build the warehouse and print the timings."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--district", required=True, type=Path, help="a generated district (left untouched)")
    ap.add_argument("--out", required=True, type=Path, help="folder for district copy, warehouse and gx")
    ap.add_argument("--to-day", type=int, default=29)
    ap.add_argument("--no-merge", action="store_true", help="stop after validation")
    ap.add_argument("--memory-limit", help="DuckDB memory_limit for the pipeline's connections, e.g. 8GB")
    ap.add_argument("--threads", type=int, help="DuckDB threads for the pipeline's connections")
    args = ap.parse_args()
    manifest = json.loads((args.district / "manifest.json").read_text(encoding="utf-8"))
    print(f"district {args.district}: {manifest['residents']:,} residents, seed {manifest['seed']}", flush=True)
    report = build(args.district, args.out, to_day=args.to_day, merge=not args.no_merge,
                   memory_limit=args.memory_limit, threads=args.threads)
    print(f"total {report['total_seconds']:.1f} s; warehouse {report['warehouse_mb']:,} MB")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
