"""The surge month, day by day (issue #19 item 4): the 15-minute hotline cycle at the peak and the next-day run.

    .venv/bin/python -m bench.surge --district D --work W [--from-day N] [--to-day M] [--cycles 4]
        [--cycle-at 09:00] [--memory-limit 4GB] [--out W/surge.json] [--capture DIR]

D is a district generated with a surge (`onenet simulate --surge 5`, or
generate(D, ..., surge=SurgeSpec(peak=5))); it is copied to W/district and left untouched. The four
silos start on free loopback ports and follow the simulated clock. First an initial load up to
the day before --from-day (default: the day before the surge's ramp). Then, for every day from
--from-day to --to-day (default: the end of the surge):

- on the peak's first day (and on --cycle-days), --cycles 15-minute hotline cycles ending at
  --cycle-at (Beijing time): `onenet simulators advance --minutes 15`'s move, then sync hotline →
  validate hotline → merge, the functions the onenet_hotline and onenet_merge DAG tasks call (one
  cycle before them, printed as cycle 0, catches up with the hours since the nightly run);
- the next-day run: the clock to the day's end, sync all four → validate all four → merge, then the
  07:00 extract (every community's workbook).

Each pipeline step runs in a fresh Python process, as an Airflow task does: its wall time is split
into starting the process (interpreter and imports, measured by the worker itself) and the step.
The merge also reports its steps (staging, resolve, core, marts, publish), and core and marts per
model (a connection wrapper times each model's statements; nothing of merge() is changed). Moving
the clock is the silos' work and is timed apart. Prints a table per day and writes every figure
to the JSON file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PORTS = {"hotline": 0, "city_cases": 0}
THREADS_ENV = "ONENET_BENCH_THREADS"  # a worker's DuckDB threads, if set (not a pipeline setting)


# --- the worker: one pipeline step in a fresh process ------------------------------------------


class _TimedConnection:
    """Forwards to a DuckDB connection; times execute() per model of run_layer (core.x / mart.y)."""

    # a model's text starts with "-- core.x: ..."; refreshed for touched persons, it comes after
    # "create or replace temp table _refreshed as"
    _HEADER = re.compile(r"^[^\n]{0,60}?--\s*((?:core|mart)\.\w+)")

    def __init__(self, con: Any, sink: dict[str, float]) -> None:
        self._con, self._sink, self._current = con, sink, "runner"

    def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(sql, str):
            header = self._HEADER.match(sql)
            if header:
                self._current = header.group(1)
        t = time.perf_counter()
        try:
            return self._con.execute(sql, *args, **kwargs)
        finally:
            self._sink[self._current] = self._sink.get(self._current, 0.0) + time.perf_counter() - t

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _timed_models(sink: dict[str, float]) -> None:
    """Make warehouse.models.run_layer hand run_layer a timing wrapper of its connection."""
    from warehouse import models

    original = models.run_layer

    def run_layer(con: Any, layer: str, **kwargs: Any) -> dict[str, int]:
        timed: Any = _TimedConnection(con, sink)  # quacks like the connection run_layer expects
        return original(timed, layer, **kwargs)

    models.run_layer = run_layer


def worker(step: str, arg: str | None, spawned_at: float) -> dict[str, Any]:
    """Run one pipeline step; return its timings (start-up = imports until ready)."""
    import datetime as dt

    from onenet import pipeline

    if step == "merge":
        import warehouse.merge  # noqa: F401  (imported before the clock starts, as a task's module would be)
    if step == "validate":
        import expectations.runner  # noqa: F401
    models: dict[str, float] = {}
    _timed_models(models)
    ready = time.time()
    t = time.perf_counter()
    out: dict[str, Any] = {"startup_s": round(ready - spawned_at, 2)}
    if step == "sync":
        loads = pipeline.sync(str(arg))
        out["rows"] = {r.entity: {"in": r.rows_in, "landed": r.rows_landed} for r in loads}
    elif step == "validate":
        out["validated"] = [v.summary() for v in pipeline.validate(str(arg))]
    elif step == "merge":
        summary = pipeline.merge()
        out["merge_steps"] = dict(summary.step_seconds)
        pub = summary.published
        out["publish"] = {k: round(v, 2) for k, v in getattr(pub, "seconds", {}).items()}
        out["modes"] = {"staging": summary.staging_mode, "resolve": summary.resolve_mode}
        out["models"] = {k: round(v, 2) for k, v in sorted(models.items(), key=lambda kv: -kv[1])}
    elif step == "extract":
        out["workbooks"] = len(pipeline.extract(dt.date.fromisoformat(str(arg))))
    else:
        raise SystemExit(f"unknown step {step}")
    out["step_s"] = round(time.perf_counter() - t, 2)
    return out


# --- the driver ---------------------------------------------------------------------------------


def run_step(env: dict[str, str], step: str, arg: str | None = None) -> dict[str, Any]:
    """One step in a fresh worker process; its wall time and its own report."""
    t = time.time()
    cmd = [sys.executable, "-m", "bench.surge", "--worker", step, "--spawned-at", repr(t)]
    if arg is not None:
        cmd += ["--arg", arg]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{step} {arg or ''} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    report["wall_s"] = round(time.time() - t, 2)
    return report


def _timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return round(time.perf_counter() - t, 2)


def hotline_volume(root: Path, start: Any, day: int) -> dict[str, int]:
    """Tickets received and city cases reported on `day` (Beijing), from the silos' files."""
    import duckdb

    d = start + timedelta(days=day)
    q = "select count(*) from '{f}' where (timezone('Asia/Shanghai', {c}))::date = '{d}'"

    def count(f: str, c: str) -> int:
        row = duckdb.sql(q.format(f=root / f, c=c, d=d)).fetchone()
        return int(row[0]) if row else 0

    return {"tickets": count("hotline/tickets.parquet", "received_at"),
            "cases": count("city_cases/cases.parquet", "reported_at")}


def capture_state(work: Path, target: Path) -> None:
    """Copy the work folder (warehouse, Great Expectations folder, published snapshots, access file,
    keys), without the silos' district and the extracts, to `target`: bench/cycle_step.py runs a
    cycle's validate and merge from it again, side by side."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for item in work.iterdir():
        if item.name not in ("district", "exports", "surge.json"):
            subprocess.run(["cp", "-a", str(item), str(target / item.name)], check=True)  # keeps hard links


def cycle(env: dict[str, str], root: Path, capture: Path | None = None) -> dict[str, Any]:
    """One 15-minute hotline cycle: the clock 15 minutes on, then sync → validate → merge
    (with `capture`, the state after the sync is copied there first, outside the timings)."""
    from simulators import runner

    out: dict[str, Any] = {"advance_s": _timed(lambda: runner.advance_minutes(root, 15))}
    for step, arg in (("sync", "hotline"), ("validate", "hotline"), ("merge", None)):
        if step == "validate" and capture is not None:
            capture_state(root.parent, capture)
        out[step] = run_step(env, step, arg)
    out["total_s"] = round(sum(out[s]["wall_s"] for s in ("sync", "validate", "merge")), 2)
    return out


def next_day(env: dict[str, str], root: Path, day: int, start: Any, extract: bool) -> dict[str, Any]:
    """The nightly run after `day`: the clock to its end, sync and validate all four, merge, extract."""
    from onenet.pipeline import SOURCES
    from simulators import runner
    from simulators.health_codes import drop

    # the uploader follows the clock on its own; delivering here too makes sure the day's file is
    # there before the sync (as bench/district_warehouse.py does)
    out: dict[str, Any] = {"advance_s": _timed(lambda: (runner.advance(root, day), drop.deliver_until(root, day)))}
    for source in SOURCES:
        out[f"sync {source}"] = run_step(env, "sync", source)
    for source in SOURCES:
        out[f"validate {source}"] = run_step(env, "validate", source)
    out["merge"] = run_step(env, "merge")
    pipeline_steps = [k for k in out if k != "advance_s"]
    out["total_s"] = round(sum(out[k]["wall_s"] for k in pipeline_steps), 2)
    if extract:
        the_day = start + timedelta(days=day)
        out["extract"] = run_step(env, "extract", the_day.isoformat())
        out["ready_s"] = round(out["total_s"] + out["extract"]["wall_s"], 2)
    return out


def _print_cycle(day: int, i: int, c: dict[str, Any]) -> None:
    m = c["merge"]
    parts = ", ".join(f"{k} {v:.1f}" for k, v in m.get("merge_steps", {}).items())
    pub = sum(m.get("publish", {}).values())
    top = ", ".join(f"{k} {v:.1f}" for k, v in list(m.get("models", {}).items())[:5])
    rows = sum(v["landed"] for v in c["sync"].get("rows", {}).values())
    print(f"  day {day} cycle {i}: {c['total_s']:6.1f} s  (sync {c['sync']['wall_s']:.1f} [start-up "
          f"{c['sync']['startup_s']:.1f}; {rows:,} landed], validate {c['validate']['wall_s']:.1f} [start-up "
          f"{c['validate']['startup_s']:.1f}], merge {m['wall_s']:.1f}: start-up {m['startup_s']:.1f}, "
          f"{parts}, publish {pub:.1f}; top models: {top}); clock {c['advance_s']:.1f} s", flush=True)


def _print_day(day: int, level: float, vol: dict[str, int], r: dict[str, Any]) -> None:
    m = r["merge"]
    parts = ", ".join(f"{k} {v:.1f}" for k, v in m.get("merge_steps", {}).items())
    syncs = sum(r[k]["wall_s"] for k in r if k.startswith("sync "))
    vals = sum(r[k]["wall_s"] for k in r if k.startswith("validate "))
    extra = f", extract {r['extract']['wall_s']:.1f}, ready {r['ready_s']:.1f} s" if "extract" in r else ""
    print(f"day {day:2} (surge level {level:.2f}; {vol['tickets']:,} tickets, {vol['cases']:,} cases): next-day "
          f"{r['total_s']:6.1f} s (sync {syncs:.1f}, validate {vals:.1f}, merge {m['wall_s']:.1f}: {parts}, "
          f"publish {sum(m.get('publish', {}).values()):.1f}){extra}; clock {r['advance_s']:.1f} s", flush=True)


def main() -> None:
    """Run the surge benchmark, or (with --worker) one step of it."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--arg", help=argparse.SUPPRESS)
    ap.add_argument("--spawned-at", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--district", type=Path, help="a district generated with a surge (left untouched)")
    ap.add_argument("--work", type=Path, help="work folder: district copy, warehouse, published, gx")
    ap.add_argument("--from-day", type=int, help="first next-day run [default: the surge's first day]")
    ap.add_argument("--to-day", type=int, help="last next-day run [default: the surge's last day]")
    ap.add_argument("--cycles", type=int, default=4, help="15-minute cycles on each cycle day")
    ap.add_argument("--cycle-days", type=int, nargs="*", help="days with cycles [default: the peak's first day]")
    ap.add_argument("--cycle-at", default="09:00", help="Beijing time of the first cycle's end")
    ap.add_argument("--no-extract", action="store_true", help="leave the 07:00 extract out of the next-day run")
    ap.add_argument("--memory-limit", default="4GB", help="ONENET_DUCKDB_MEMORY_LIMIT for every step")
    ap.add_argument("--out", type=Path, help="JSON report [default: WORK/surge.json]")
    ap.add_argument("--capture", type=Path,
                    help="copy the state before the last cycle's validate here (for bench/cycle_step.py)")
    args = ap.parse_args()
    if args.worker:
        capped: Any = contextlib.nullcontext()
        if os.environ.get(THREADS_ENV):  # DuckDB threads of the step's connections (bench/city_surge.py --threads)
            from bench.district_warehouse import _capped_connections

            capped = _capped_connections(None, int(os.environ[THREADS_ENV]))
        with capped:
            print(json.dumps(worker(args.worker, args.arg, args.spawned_at or time.time())))
        return
    if not args.district or not args.work:
        ap.error("--district and --work are needed")

    from simulators import clock, runner
    from simulators.district.surge import SurgeSpec

    manifest = clock.manifest(args.district)
    if "surge" not in manifest:
        raise SystemExit(f"{args.district} has no surge; generate it with `onenet simulate --surge 5`")
    spec = SurgeSpec.from_dict(manifest["surge"])
    first = args.from_day if args.from_day is not None else int(spec.start_day or 1)
    last = args.to_day if args.to_day is not None else min(
        int(manifest["days"]) - 1, spec.peak_day + spec.peak_days + spec.fall_days)
    cycle_days = set(args.cycle_days if args.cycle_days is not None else [spec.peak_day])
    hh, mm = (int(x) for x in args.cycle_at.split(":"))
    work = args.work
    root, warehouse = work / "district", work / "warehouse.duckdb"
    if warehouse.exists():
        raise SystemExit(f"{warehouse} exists; remove {work} to run again")
    work.mkdir(parents=True, exist_ok=True)
    shutil.copytree(args.district, root, ignore=shutil.ignore_patterns("run", "*.sqlite-shm", "*.sqlite-wal"))
    # As bench/e2e.py: an engineer in the bench's own access file, with its own snapshots, access log
    # and pseudonym key under WORK.
    from warehouse.identity import os_user, write_default_access_file

    write_default_access_file(work / "access.toml", os_user())
    env = {**os.environ, "ONENET_DISTRICT": str(root), "ONENET_WAREHOUSE": str(warehouse),
           "ONENET_GX_DIR": str(work / "gx"), "ONENET_PUBLISHED": str(work / "published"),
           "ONENET_EXPORTS": str(work / "exports"), "ONENET_HOME": str(work),
           "ONENET_ACCESS_FILE": str(work / "access.toml"),
           "ONENET_ACCESS_LOG": str(work / "audit" / "access-log.jsonl"),
           "ONENET_DUCKDB_MEMORY_LIMIT": args.memory_limit,
           "AIRFLOW_CONN_ONENET_HEALTH_CODES": f"file://{root / 'health_codes' / 'drop'}?stable_seconds=0"}
    env.pop("ONENET_SERVING_URL", None)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("ONENET_", "AIRFLOW_CONN"))})
    start = clock.start_date(root)
    report: dict[str, Any] = {"district": str(args.district), "residents": manifest["residents"],
                              "surge": manifest["surge"], "load_average": [], "days": {}}
    print(f"district {args.district}: {manifest['residents']:,} residents, surge x{spec.peak:g} "
          f"(ramp from day {spec.start_day}, peak days {spec.peak_day}-{spec.peak_day + spec.peak_days - 1}); "
          f"next-day runs for days {first}-{last}, cycles on days {sorted(cycle_days)}", flush=True)
    runner.up(root, ports=PORTS)
    try:
        t = time.perf_counter()
        report["initial"] = next_day(env, root, first - 1, start, extract=False)
        print(f"initial load to day {first - 1}: {report['initial']['total_s']:.1f} s "
              f"(wall {time.perf_counter() - t:.1f} s)", flush=True)
        for day in range(first, last + 1):
            entry: dict[str, Any] = {"level": spec.level(day), **hotline_volume(root, start, day)}
            if day in cycle_days:
                # to the first cycle's start; one cycle there first, untimed in the figures: it
                # catches up with the hours since the nightly run, as the DAG's first run of the day
                runner.advance_minutes(root, hh * 60 + mm - 15 * (args.cycles + 1))
                entry["catch_up"] = cycle(env, root)
                _print_cycle(day, 0, entry["catch_up"])
                entry["cycles"] = []
                for i in range(args.cycles):
                    c = cycle(env, root, args.capture if i == args.cycles - 1 else None)
                    entry["cycles"].append(c)
                    _print_cycle(day, i + 1, c)
                    report["days"][day] = entry
                    (args.out or work / "surge.json").write_text(json.dumps(report, indent=1))
            entry["next_day"] = next_day(env, root, day, start, extract=not args.no_extract)
            entry["load_average"] = os.getloadavg()
            _print_day(day, entry["level"], {"tickets": entry["tickets"], "cases": entry["cases"]}, entry["next_day"])
            report["days"][day] = entry
            (args.out or work / "surge.json").write_text(json.dumps(report, indent=1))
    finally:
        runner.down(root)
    worst = max(report["days"].items(), key=lambda kv: kv[1]["next_day"]["total_s"])
    cycles = [c["total_s"] for e in report["days"].values() for c in e.get("cycles", [])]
    print(f"worst next-day run: day {worst[0]}, {worst[1]['next_day']['total_s']:.1f} s"
          + (f"; 15-minute cycles at the peak: {min(cycles):.1f}-{max(cycles):.1f} s" if cycles else ""))


if __name__ == "__main__":
    main()
