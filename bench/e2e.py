"""End-to-end benchmark at district scale: initial load, then the next day, against the issue #8 targets.

    .venv/bin/python -m bench.e2e [--residents 1300000] [--reuse-district /tmp/district13] \
        [--day 28] [--work /tmp/onenet-e2e] [--out e2e.json] [--memory-limit 8GB]

1. District: generated into WORK/generated (seed 1, 30 days; about 90 s at 1.3M) unless
   --reuse-district names one (left untouched either way: it is copied to WORK/district first,
   because the simulators write to their folder). The four silos start on free loopback ports.
2. Initial load: the clock moves to day D (default 28), then one fresh worker process runs the whole
   pipeline in-process through onenet.pipeline: sync every source, validate every source, merge,
   extract (every community's workbook), both report templates, dashboard + data dictionary — the
   same calls, in the same order, as the source DAGs, the merge DAG and the daily extract DAG.
3. Next day: the clock moves to D+1, and a second fresh worker process runs the same steps on what
   arrived since.

Moving the simulated clock (the silos' work, not the pipeline's) is timed but not counted in a
phase's total. Memory: each worker samples its own VmRSS (/proc/self/status) every 50 ms in a
thread, which gives a peak per step, and reports getrusage(RUSAGE_SELF).ru_maxrss (the kernel's peak)
at the end; the silos' peaks are their VmHWM, read before they stop. Targets: initial load
<= 10 min, next day <= 2 min, peak memory of the pipeline <= 6 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.district_warehouse import PORTS, _capped_connections
from onenet.settings import environment

TARGETS = {"initial": 600.0, "next_day": 120.0, "peak_mb": 6 * 1024.0}


# --- worker: one phase of the pipeline in one process --------------------------------------------

class RssSampler:
    """Samples this process's VmRSS every `interval` seconds; `take()` returns the peak since the last take."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak_kb, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def rss_kb() -> int:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_kb = max(self.peak_kb, self.rss_kb())

    def take(self) -> float:
        peak, self.peak_kb = max(self.peak_kb, self.rss_kb()), 0
        return peak / 1024

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_phase(day: dt.date, snapshot: Path | None = None) -> dict[str, Any]:
    """Sync, validate, merge, extract, reports, dashboard in this process; timings and rows per step.

    With `snapshot`, the warehouse file is copied there just before the merge (not timed), so the
    merge can be re-run and profiled on exactly this state.
    """
    from onenet import orchestration, pipeline, settings

    steps: list[dict[str, Any]] = []
    detail: dict[str, Any] = {}

    with RssSampler() as sampler:
        sampler.take()

        def step(name: str, fn: Any, rows: Any = None) -> Any:
            t = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - t
            n = rows(out) if rows else None
            steps.append({"step": name, "seconds": round(seconds, 2), "rows": n, "peak_mb": round(sampler.take())})
            rate = f"{n / seconds:>10,.0f} rows/s" if n and seconds > 0 else " " * 17
            print(f"  {name:24} {seconds:8.1f} s  {f'{n:,}' if n is not None else '':>11}  {rate}  "
                  f"peak {steps[-1]['peak_mb']:,} MB", flush=True)
            return out

        synced = 0
        for source in pipeline.SOURCES:
            results = step(f"sync {source}", lambda s=source: pipeline.sync(s),
                           lambda rs: sum(r.rows_in for r in rs))
            synced += sum(r.rows_in for r in results)
            detail[f"sync {source}"] = [{"entity": r.entity, "status": r.status, "rows_in": r.rows_in,
                                         "landed": r.rows_landed, "quarantined": r.rows_quarantined,
                                         "seconds": round(r.seconds, 2)} for r in results]
        for source in pipeline.SOURCES:
            results = step(f"validate {source}", lambda s=source: pipeline.validate(s),
                           lambda rs: sum(r.rows_in for r in rs))
            detail[f"validate {source}"] = [{"entity": r.entity, "status": r.status, "rows_in": r.rows_in,
                                             "passed": r.rows_passed, "quarantined": r.rows_quarantined,
                                             "seconds": round(r.seconds, 2)} for r in results]
            for r in results:
                print(f"      {r.summary()}", flush=True)
        if snapshot:
            shutil.copyfile(settings.warehouse_path(), snapshot)
            wal = Path(f"{settings.warehouse_path()}.wal")  # normally checkpointed away on close
            if wal.exists():
                shutil.copyfile(wal, f"{snapshot}.wal")
            print(f"  (warehouse copied to {snapshot} before the merge; not counted)", flush=True)
        summary = step("merge", pipeline.merge, lambda s: sum(s.records_per_source.values()))
        detail["merge"] = {"step_seconds": summary.step_seconds, "persons": summary.persons,
                           "incidents": summary.incidents, "records_per_source": summary.records_per_source,
                           # the merge step ends with publishing every audience's snapshot
                           "publish_seconds": summary.published.seconds if summary.published else None}
        for line in summary.summary_lines():
            print("      " + line, flush=True)
        extracts = step("extract (all communities)", lambda: pipeline.extract(day),
                        lambda rs: sum(sum(r.rows.values()) for r in rs))
        detail["extract"] = {"workbooks": len(extracts)}
        step("reports", lambda: [pipeline.report(t, day) for t in orchestration.REPORT_TEMPLATES],
             lambda rs: sum(r.rows for r in rs))
        step("dashboard + dictionary", orchestration.rebuild_dashboard)
    total = sum(s["seconds"] for s in steps)
    return {"steps": steps, "detail": detail, "rows_synced": synced, "seconds": round(total, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "peak_rss_children_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}


def worker(args: argparse.Namespace) -> None:
    with _capped_connections(args.memory_limit, args.threads):
        result = run_phase(dt.date.fromisoformat(args.date), Path(args.snapshot) if args.snapshot else None)
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")


# --- driver ---------------------------------------------------------------------------------------

def _silo_peaks_mb(root: Path) -> dict[str, float]:
    from simulators import runner

    out: dict[str, float] = {}
    for s in runner.status(root):
        if s.running and s.pid:
            try:
                text = Path(f"/proc/{s.pid}/status").read_text(encoding="ascii")
            except OSError:
                continue
            kb = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmHWM:")), 0)
            out[s.name] = round(kb / 1024)
    return out


def _phase(name: str, day: int, root: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from simulators import clock, runner
    from simulators.health_codes import drop

    t = time.perf_counter()
    runner.advance(root, day)
    drop.deliver_until(root, day)  # the uploader does it too; make sure the files are there before the sync
    advance_s = round(time.perf_counter() - t, 2)
    the_date = clock.start_date(root) + dt.timedelta(days=day)
    print(f"\n== {name}: simulators moved to day {day} ({the_date}) in {advance_s:.1f} s (not counted)", flush=True)
    result_file = work / f"{name}.json"
    cmd = [sys.executable, "-m", "bench.e2e", "--worker", "--date", the_date.isoformat(), "--result", str(result_file)]
    if args.memory_limit:
        cmd += ["--memory-limit", args.memory_limit]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.snapshots:
        cmd += ["--snapshot", str(work / f"{name}-before-merge.duckdb")]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = round(time.perf_counter() - t, 1)
    result: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
    result.update(day=day, date=the_date.isoformat(), advance_seconds=advance_s, process_wall_seconds=wall,
                  silos_peak_rss_mb=_silo_peaks_mb(root))
    return result


def _resolution_timings(warehouse: Path) -> list[dict[str, Any]]:
    """Seconds per part of person resolution, per merge run (meta.resolution_runs)."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute("select run_id, seconds, parameters from meta.resolution_runs order by started_at").fetchall()
    out = [{"run_id": r[0], "seconds": r[1], "timings": json.loads(r[2]).get("timings", {})} for r in rows]
    for r in out:
        print(f"resolve {r['run_id']}: {r['seconds']:.1f} s — "
              + ", ".join(f"{k} {v:.1f}" for k, v in r["timings"].items()), flush=True)
    return out


def _table(phases: dict[str, dict[str, Any]]) -> list[str]:
    names = [s["step"] for s in phases["initial"]["steps"]]
    lines = ["| step | initial s | initial rows | initial rows/s | next day s | next day rows | next day rows/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def cells(phase: dict[str, Any], name: str) -> str:
        s = next((x for x in phase["steps"] if x["step"] == name), None)
        if s is None:
            return "– | – | –"
        rows = s["rows"]
        rate = f"{rows / s['seconds']:,.0f}" if rows and s["seconds"] > 0 else "–"
        return f"{s['seconds']:.1f} | {rows:,} | {rate}" if rows is not None else f"{s['seconds']:.1f} | – | –"

    for name in names:
        nxt = cells(phases["next_day"], name) if "next_day" in phases else "– | – | –"
        lines.append(f"| {name} | {cells(phases['initial'], name)} | {nxt} |")
    def total(phase: dict[str, Any] | None) -> str:
        if phase is None:
            return "– | – | –"
        return f"**{phase['seconds']:.1f}** | {phase['rows_synced']:,} synced | {phase['rows_synced'] / phase['seconds']:,.0f}"

    lines.append(f"| **total** | {total(phases['initial'])} | {total(phases.get('next_day'))} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--residents", type=int, default=1_300_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reuse-district", type=Path, help="an already generated district (left untouched)")
    ap.add_argument("--day", type=int, default=28, help="initial load up to this simulated day; next day is +1")
    ap.add_argument("--work", type=Path, default=Path("/tmp/onenet-e2e"),
                    help="folder for the district copy, warehouse, gx and exports (emptied first)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--memory-limit", help="DuckDB memory_limit for every pipeline connection (default: DuckDB's)")
    ap.add_argument("--threads", type=int, help="DuckDB threads for every pipeline connection")
    ap.add_argument("--snapshots", action="store_true",
                    help="copy the warehouse to WORK/<phase>-before-merge.duckdb before each merge (not timed)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--snapshot", help=argparse.SUPPRESS)
    ap.add_argument("--date", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    from simulators import runner
    from simulators.district.generate import generate

    work: Path = args.work
    if args.reuse_district and args.reuse_district.resolve().is_relative_to(work.resolve()):
        raise SystemExit(f"--reuse-district must lie outside --work {work}, which is emptied first")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    report: dict[str, Any] = {"targets": {"initial_s": TARGETS["initial"], "next_day_s": TARGETS["next_day"],
                                          "peak_mb": TARGETS["peak_mb"]},
                              "machine": {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()},
                              "memory_measure": "worker VmRSS sampled every 50 ms per step; ru_maxrss per phase; "
                                                "silos VmHWM", "mode": "one fresh worker process per phase, "
                                                "onenet.pipeline functions called in-process"}
    if args.reuse_district:
        district = args.reuse_district
    else:
        district = work / "generated"
        t = time.perf_counter()
        generate(district, residents=args.residents, seed=args.seed, days=30)
        report["generate_seconds"] = round(time.perf_counter() - t, 1)
        print(f"generated {district} in {report['generate_seconds']:.1f} s", flush=True)
    manifest = json.loads((district / "manifest.json").read_text(encoding="utf-8"))
    report["district"] = {"path": str(district), "residents": manifest["residents"], "seed": manifest["seed"],
                          "days": manifest["days"]}
    print(f"district {district}: {manifest['residents']:,} residents, seed {manifest['seed']}", flush=True)
    if not 0 <= args.day < int(manifest["days"]) - 1:
        raise SystemExit(f"--day must leave a next day inside the district's {manifest['days']} days")
    root = work / "district"
    t = time.perf_counter()
    shutil.copytree(district, root, ignore=shutil.ignore_patterns("run", "*.sqlite-shm", "*.sqlite-wal"))
    print(f"copied to {root} in {time.perf_counter() - t:.1f} s", flush=True)
    # The steps run as the pipeline does: an engineer in the bench's own access file, with its own
    # snapshots, access log and (generated) pseudonym key under `work`.
    from warehouse.identity import os_user, write_default_access_file

    if not (work / "access.toml").exists():
        write_default_access_file(work / "access.toml", os_user())
    env = dict(ONENET_HOME=str(work), ONENET_DISTRICT=str(root), ONENET_WAREHOUSE=str(work / "warehouse.duckdb"),
               ONENET_GX_DIR=str(work / "gx"), ONENET_EXPORTS=str(work / "exports"),
               ONENET_PUBLISHED=str(work / "published"), ONENET_ACCESS_FILE=str(work / "access.toml"),
               ONENET_ACCESS_LOG=str(work / "audit" / "access-log.jsonl"),
               AIRFLOW_CONN_ONENET_HEALTH_CODES=f"file://{root / 'health_codes' / 'drop'}?stable_seconds=0")
    phases: dict[str, dict[str, Any]] = {}
    with environment(**env):
        runner.up(root, ports=PORTS)
        try:
            phases["initial"] = _phase("initial", args.day, root, work, args)
            phases["next_day"] = _phase("next_day", args.day + 1, root, work, args)
        finally:
            runner.down(root)
    report["phases"] = phases
    report["resolution_timings"] = _resolution_timings(work / "warehouse.duckdb")
    report["warehouse_mb"] = round((work / "warehouse.duckdb").stat().st_size / 2**20)
    peak = max(p["peak_rss_mb"] for p in phases.values())
    silos = max((sum(p["silos_peak_rss_mb"].values()) for p in phases.values()), default=0)
    verdict = {"initial": phases["initial"]["seconds"] <= TARGETS["initial"],
               "next_day": phases["next_day"]["seconds"] <= TARGETS["next_day"],
               "peak_memory": peak <= TARGETS["peak_mb"]}
    report["verdict"] = verdict
    report["peak_rss_mb"] = peak
    lines = _table(phases)
    ok = {True: "met", False: "NOT met"}
    lines += ["",
              f"initial load (day {args.day}): {phases['initial']['seconds']:.1f} s "
              f"(target <= {TARGETS['initial']:.0f} s: {ok[verdict['initial']]})",
              f"next day (day {args.day + 1}):    {phases['next_day']['seconds']:.1f} s "
              f"(target <= {TARGETS['next_day']:.0f} s: {ok[verdict['next_day']]})",
              f"peak RSS of the pipeline process: {peak:,} MB (target <= {TARGETS['peak_mb']:.0f} MB: "
              f"{ok[verdict['peak_memory']]}); the four silos together at most {silos:,} MB",
              f"warehouse {report['warehouse_mb']:,} MB; load average at start {report['machine']['load_at_start']}, "
              f"at end {os.getloadavg()}"]
    report["machine"]["load_at_end"] = os.getloadavg()
    report["table"] = lines
    print("\n" + "\n".join(lines), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
