"""Peak memory and speed of the health-code connector on one large GB18030 export (issue #14).

    .venv/bin/python -m bench.health_codes_memory make --rows 2250000 --out /tmp/hc_mem/drop
    /usr/bin/time -v .venv/bin/python -m bench.health_codes_memory run --drop /tmp/hc_mem/drop

    .venv/bin/python -m bench.health_codes_memory compare --drop /tmp/hc_mem/drop --before-tree /tmp/before --pairs 3

`make` writes 健康码日报_20261101.csv (GB18030, the simulator's writer) of synthetic residents, about
97 bytes a row like a district's file. `run` syncs the folder into a new DuckDB warehouse in this
(fresh) process and prints rows, seconds, rows/s and the process's peak RSS (and a JSON line).
`compare` runs `run` of this tree and of another one (e.g. `git archive 3ac7bdd`, the whole-file
read) in turns, each run a fresh process, the order swapped every pair (bench/compare.py), and
prints each run with the load average, the medians, the ratio of medians and the per-pair range.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa


def make(rows: int, out: Path, seed: int = 7) -> Path:
    from simulators.health_codes.files import SCHEMA, export_name, write_export

    rng = np.random.default_rng(seed)
    surnames = np.array(list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"))
    given = np.array(list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂"))
    names = np.char.add(np.char.add(surnames[rng.integers(0, len(surnames), rows)],
                                    given[rng.integers(0, len(given), rows)]),
                        np.where(rng.random(rows) < 0.6, given[rng.integers(0, len(given), rows)], ""))
    ids = np.char.add("420102", rng.integers(10**10, 10**11, rows).astype(str))
    ids = np.char.add(ids, rng.integers(0, 10, rows).astype(str))
    phones = np.char.add("13", rng.integers(10**8, 10**9, rows).astype(str))
    communities = np.array([f"江岸区{s}街道{c}社区" for s in "一二三四五六七" for c in "东西南北中"])
    base = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1e6)
    since = base - rng.integers(86_400 * 10**6, 200 * 86_400 * 10**6, rows)
    tested = base - rng.integers(0, 7 * 86_400 * 10**6, rows)
    table = pa.table({
        "record_no": pa.array(np.arange(1, rows + 1), pa.int64()),
        "name": pa.array(names, pa.string()), "id_number": pa.array(ids, pa.string()),
        "phone": pa.array(phones, pa.string()),
        "code_color": pa.array(np.where(rng.random(rows) < 0.996, "绿码", "黄码"), pa.string()),
        "color_since": pa.array(since, pa.timestamp("us", tz="UTC")),
        "vaccine_doses": pa.array(rng.integers(0, 5, rows).astype(np.int32), pa.int32()),
        "last_test_at": pa.array(tested, pa.timestamp("us", tz="UTC")),
        "last_test_result": pa.array(np.full(rows, "阴性"), pa.string()),
        "community": pa.array(communities[rng.integers(0, len(communities), rows)], pa.string()),
    }).cast(SCHEMA)
    out.mkdir(parents=True, exist_ok=True)
    path = out / export_name(date(2026, 11, 1), "csv")
    write_export(path, table, fmt="csv", encoding="gb18030")
    return path


def run(drop: Path, warehouse: Path | None, memory_limit: str | None) -> None:
    import connectors.health_codes as health_codes
    from connectors.common.config import parse_uri
    from warehouse import db

    size = sum(p.stat().st_size for p in drop.iterdir() if p.is_file())
    with tempfile.TemporaryDirectory() as tmp:
        con = db.connect(warehouse or Path(tmp) / "w.duckdb", memory_limit=memory_limit)
        conn = parse_uri("onenet_health_codes", f"{drop.as_uri()}?stable_seconds=0")
        started = time.perf_counter()
        [result] = health_codes.sync(con, conn)
        seconds = time.perf_counter() - started
        con.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(result.summary())
    print(f"file(s) {size / 1e6:.1f} MB, rows in {result.rows_in:,}, {seconds:.2f} s, "
          f"{result.rows_in / seconds:,.0f} rows/s, peak RSS {peak_mb:,.0f} MB")
    print(json.dumps({"seconds": seconds, "rows": result.rows_in, "peak_mb": peak_mb}))


def compare(drop: Path, before_tree: Path, pairs: int, out: Path | None) -> None:
    """This tree's `run` against `before_tree`'s, alternating in fresh processes (bench/compare.py)."""
    from bench import compare as cmp

    here = Path(__file__).resolve()
    # The other tree runs this very script (it may predate it) with its own packages first on the path.
    sides = [cmp.Side(name, [sys.executable, str(here), "run", "--drop", str(drop)],
                      env={"PYTHONPATH": str(tree)}, cwd=tree)
             for name, tree in (("now", here.parents[1]), ("before", before_tree.resolve()))]
    result = cmp.run_rounds(sides, rounds=pairs, timed="the sync's own seconds (warehouse open to close, "
                            "imports excluded); peak RSS of the whole process", measure="reported",
                            title=f"health-code sync of {drop}: this tree vs {before_tree}")
    print(result.report())
    if out:
        cmp.write_json(out, [result])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("--rows", type=int, default=2_250_000)
    m.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run")
    r.add_argument("--drop", type=Path, required=True)
    r.add_argument("--warehouse", type=Path, default=None)
    r.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 4GB (the pipeline's default)")
    c = sub.add_parser("compare")
    c.add_argument("--drop", type=Path, required=True)
    c.add_argument("--before-tree", type=Path, required=True, help="a checkout of the code to compare with")
    c.add_argument("--pairs", type=int, default=3)
    c.add_argument("--json", type=Path, default=None, help="write every run here")
    args = parser.parse_args()
    if args.command == "make":
        path = make(args.rows, args.out)
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")
    elif args.command == "compare":
        compare(args.drop, args.before_tree, args.pairs, args.json)
    else:
        run(args.drop, args.warehouse, args.memory_limit)


if __name__ == "__main__":
    sys.path.insert(0, str(Path.cwd()))  # run by path from another tree: that tree's packages
    main()
