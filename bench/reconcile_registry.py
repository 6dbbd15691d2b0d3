"""Benchmark: the registry's reconciliation vs a plain full read of the same tables, at district scale.

    .venv/bin/python bench/generate_district.py --out /tmp/district          # ~90 s, 700 MB
    .venv/bin/python bench/reconcile_registry.py --district /tmp/district [--pairs 3] [--url URL]

Side A, reconcile: `connectors.grid_registry.reconcile` — every table read in one unordered scan
(the connector's own), hashed in DuckDB and compared key by key with raw's current version, the
difference (here none) landed and the run recorded, against a warehouse the district was synced
into once. Side B, full read: the same scans only, every page turned into Arrow and dropped.
The sides run through bench/compare.py: A B, B A, A B … each in a fresh process (no warm caches in
Python), so a drift of the machine hits both; each side's own seconds (imports and opening the
warehouse excluded on both). Prints each run with the load average, the median of each side, the
ratio of medians and the range of per-pair ratios; --json keeps every run. Target (issue #14): reconciliation within 1.5x of the full read.
`--url` points at a PostgreSQL/MariaDB copy (registry.load_into) instead of the SQLite file: there
the database hashes its rows, and a reconciliation reads (key, updated_at, hash) of every row plus
the whole rows whose hash moved; the first one (no fingerprints yet) is timed once, before the pairs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TIMED = ("seconds each side reports: reconcile() of all five tables, or the same scans into Arrow; "
         "interpreter start, imports and opening the warehouse excluded on both sides")


def _conn(district: Path, url: str | None):
    from connectors.common.config import parse_uri

    if url:
        from sqlalchemy.engine import make_url

        u = make_url(url)
        scheme = "postgres" if u.get_backend_name() == "postgresql" else "mysql"
        return parse_uri("onenet_grid_registry", u.set(drivername=scheme, query={}).render_as_string(
            hide_password=False))
    return parse_uri("onenet_grid_registry", f"sqlite:///{(district / 'grid_registry' / 'registry.sqlite').resolve()}")


def _side(side: str, district: Path, warehouse: Path, url: str | None) -> dict:
    """One timed run of one side, in this process."""
    from connectors import grid_registry
    from connectors.grid_registry import helpers, settings
    from warehouse import db

    conn = _conn(district, url)
    if side == "read":
        began = time.perf_counter()
        engine = helpers.open_engine(helpers.sqlalchemy_url(conn))
        rows = 0
        try:
            with helpers.connect(engine, "bench") as source:
                for name in settings.TABLES:
                    table = helpers.reflect(source, name)
                    for page in helpers.scan(source, table, settings.KEYS[name], settings.BATCH_SIZE):
                        rows += page.rows.num_rows
        finally:
            engine.dispose()
        return {"side": side, "seconds": time.perf_counter() - began, "rows": rows}
    con = db.connect(warehouse)
    try:
        began = time.perf_counter()
        results = grid_registry.reconcile(con, conn)
        seconds = time.perf_counter() - began
    finally:
        con.close()
    found: dict[str, int] = {}
    for r in results:
        for kind, n in (r.reconciled or {}).items():
            found[kind] = found.get(kind, 0) + n
    return {"side": side, "seconds": seconds, "rows": sum(r.rows_in for r in results),
            "landed": sum(r.rows_landed for r in results), "found": found}


def _prepare(district: Path, warehouse: Path, url: str | None) -> float:
    """Sync the district's registry into a fresh warehouse once: what the reconciliation compares with."""
    from connectors import grid_registry
    from warehouse import db

    con = db.connect(warehouse)
    try:
        began = time.perf_counter()
        grid_registry.sync(con, _conn(district, url))
        return time.perf_counter() - began
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--district", type=Path, required=True, help="a district from bench/generate_district.py")
    parser.add_argument("--pairs", type=int, default=3, help="A B pairs (at least 3)")
    parser.add_argument("--url", default=None, help="a PostgreSQL/MariaDB copy of the registry instead of SQLite")
    parser.add_argument("--warehouse", type=Path, default=None, help="keep the synced warehouse here")
    parser.add_argument("--json", type=Path, help="every run and statistic")
    parser.add_argument("--side", choices=["reconcile", "read"], help=argparse.SUPPRESS)  # one run, in a child
    args = parser.parse_args()
    warehouse = args.warehouse or Path(tempfile.mkdtemp(prefix="onenet-reconcile-")) / "warehouse.duckdb"
    from bench import compare

    if args.side:
        print(json.dumps(_side(args.side, args.district, warehouse, args.url)))
        return
    if args.pairs < 3:
        parser.error("--pairs must be at least 3")
    if not warehouse.exists():
        print(f"first sync of the registry into {warehouse}: {_prepare(args.district, warehouse, args.url):.1f} s")
        if args.url:
            # PostgreSQL/MariaDB hash their rows: a nightly run compares those hashes with the last
            # run's fingerprints. The first run has none and reads every row: timed once, apart.
            first = _side("reconcile", args.district, warehouse, args.url)
            print(f"first reconciliation (no fingerprints yet, every row read): {first['seconds']:.2f} s", flush=True)
    sides = [compare.Side(side, [sys.executable, __file__, "--district", str(args.district), "--warehouse",
                                 str(warehouse), "--side", side] + (["--url", args.url] if args.url else []))
             for side in ("reconcile", "read")]
    comp = compare.run_rounds(sides, rounds=args.pairs, timed=TIMED, measure="reported",
                              title=f"registry reconcile vs full read ({args.url or 'SQLite'})")
    for r in comp.runs:
        rep = r.report or {}
        extra = f", landed {rep['landed']:,}, found {rep['found']}" if "landed" in rep else ""
        print(f"round {r.round + 1} {r.side:<9} {rep.get('rows', 0):,} rows{extra}  {r.error}")
    print(comp.report())
    s = comp.stats("reconcile", "read")
    if s["ratio_of_medians"] is None:
        raise SystemExit("a side failed every run")
    print(f"median reconcile {s['median_a']:.2f} s, median full read {s['median_b']:.2f} s, ratio of medians "
          f"{s['ratio_of_medians']:.2f}x (per-pair ratios {s['pair_ratio_min']:.2f}x-{s['pair_ratio_max']:.2f}x; "
          f"target <= 1.5x: {'met' if s['ratio_of_medians'] <= 1.5 else 'MISSED'})")
    if args.json:
        compare.write_json(args.json, [comp])


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
