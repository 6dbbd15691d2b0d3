"""Where a next day's publish goes: every function of the publish modules timed, on a read-side WORK.

    .venv/bin/python -m bench.publish_profile --work /tmp/rs13/work \
        --serving-url postgresql://postgres@127.0.0.1:5432/onenet_serving_s13 [--out profile.json]

Needs a WORK prepared by bench/read_side.py (its saved day-28 snapshots and serving database, and the
day-29 warehouse before its merge). In a fresh process: the warehouse, snapshots and serving database
are restored as read_side restores them, the day-29 merge runs without publishing, then
`pipeline.publish` runs with every function of warehouse.publish, its serving and snapshot modules
and the pipeline's serving calls wrapped by a timer. Times are inclusive (a function's callees are in
its figure) and summed per thread, so the serving thread's work overlaps the community snapshots'.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

WRAPPED_MODULES = ("warehouse.publish", "warehouse.publish.serving", "warehouse.publish.snapshot",
                   "warehouse.publish.permissions", "warehouse.publish.refresh")

_wall: dict[str, float] = defaultdict(float)
_cpu: dict[str, float] = defaultdict(float)
_calls: dict[str, int] = defaultdict(int)
_depth = threading.local()


def _timed(name: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*a: Any, **k: Any) -> Any:
        # Only the outermost call of a recursive or re-entrant function counts, once.
        active: set[str] = getattr(_depth, "active", set())
        _depth.active = active
        if name in active:
            return fn(*a, **k)
        active.add(name)
        t, c = time.perf_counter(), time.thread_time()
        try:
            return fn(*a, **k)
        finally:
            _wall[name] += time.perf_counter() - t
            _cpu[name] += time.thread_time() - c
            _calls[name] += 1
            active.discard(name)
    return wrapper


class TimedConnection:
    """A DuckDB connection whose execute() is timed per statement (the first words name it)."""

    def __init__(self, con: Any) -> None:
        self._con = con

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)

    def cursor(self) -> TimedConnection:
        """The community snapshots' connection (publish writes them on a cursor): timed the same."""
        return TimedConnection(self._con.cursor())

    def execute(self, query: str, *a: Any, **k: Any) -> Any:
        label = "sql: " + " ".join(str(query).split())[:90]
        t = time.perf_counter()
        try:
            self._con.execute(query, *a, **k)
            return self
        finally:
            _wall[label] += time.perf_counter() - t
            _calls[label] += 1


def instrument() -> None:
    """Wrap every function defined in the publish modules (module-level names, so internal calls go
    through the wrapper too)."""
    import importlib

    from onenet import pipeline

    for module_name in WRAPPED_MODULES:
        module = importlib.import_module(module_name)
        for attr, value in list(vars(module).items()):
            if inspect.isfunction(value) and value.__module__ == module_name:
                setattr(module, attr, _timed(f"{module_name.removeprefix('warehouse.')}.{attr}", value))
    import duckdb

    from warehouse.publish import serving
    connect = duckdb.connect
    serving.duckdb = type("TimedDuckDB", (), {"connect": staticmethod(lambda *a, **k: TimedConnection(connect(*a, **k))),
                                              "__getattr__": lambda self, n: getattr(duckdb, n)})()
    for attr in ("publish", "_publish_serving", "_serve"):
        setattr(pipeline, attr, _timed(f"pipeline.{attr}", getattr(pipeline, attr)))


def worker(out: Path) -> None:
    from onenet import pipeline
    from warehouse.merge import merge as run_merge

    con = pipeline._open_warehouse("merge")
    try:
        t, c = time.perf_counter(), time.process_time()
        summary = run_merge(con)
        merged = {"wall": time.perf_counter() - t, "cpu": time.process_time() - c}
        instrument()
        t, c = time.perf_counter(), time.process_time()
        result = pipeline.publish(TimedConnection(con), summary.run_id)  # type: ignore[arg-type]
        published = {"wall": time.perf_counter() - t, "cpu": time.process_time() - c}
    finally:
        con.close()
    rows = sorted(_wall, key=lambda n: -_wall[n])
    report = {"merge": merged, "publish": published, "summary": result.summary(), "load": os.getloadavg(),
              "relation_seconds": result.relation_seconds, "seconds": result.seconds,
              "functions": {n: {"wall": round(_wall[n], 3), "thread_cpu": round(_cpu[n], 3), "calls": _calls[n]}
                            for n in rows}}
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"merge {merged['wall']:.1f} s wall / {merged['cpu']:.1f} CPU-s; "
          f"publish {published['wall']:.1f} s / {published['cpu']:.1f} CPU-s "
          f"(share {published['wall'] / merged['wall']:.3f} wall, {published['cpu'] / merged['cpu']:.3f} CPU)")
    print(result.summary())
    print(f"{'function':60} {'wall s':>8} {'thread CPU s':>12} {'calls':>6}")
    for n in rows[:90]:
        print(f"{n:60} {_wall[n]:8.2f} {_cpu[n]:12.2f} {_calls[n]:6}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--serving-url", required=True)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.result:
        worker(args.result)
        return
    from bench.read_side import Bench

    bench = Bench(argparse.Namespace(work=args.work, serving_url=args.serving_url, readers=0, queries=0,
                                     extracts=0, pairs=0, initial_runs=0))
    bench.restore("next")
    out = args.out or args.work / "publish_profile.json"
    env = {**os.environ, **bench.env()}
    subprocess.run([sys.executable, "-m", "bench.publish_profile", "--work", str(args.work),
                    "--serving-url", args.serving_url, "--result", str(out)], env=env, check=True)


if __name__ == "__main__":
    main()
