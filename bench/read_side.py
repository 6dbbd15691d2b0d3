"""Read side at district scale (issue #13 targets): readers during the pipeline, and what publishing costs.

    .venv/bin/python -m bench.read_side --district /tmp/district13 --work /tmp/rs13/work \
        [--out read_side.json] [--pairs 3] [--initial-runs 3] [--readers 4] [--queries 200] [--extracts 20] \
        [--serving-url postgresql://postgres@127.0.0.1:5432/onenet_serving_bench] [--alone]

Prepare (once per WORK, kept in WORK/base): the district is copied to WORK/district, the silos start,
the clock moves to --day, every source is synced and validated (the warehouse is saved as it stands
before the initial merge), the initial merge runs (initial run 1; with publish), the published tree
and the serving database are saved, then day+1 is synced and validated and saved again.

Then, every pipeline run in a fresh process on a restored copy (warehouse, published snapshots and
serving database as they were), so each run does the same work:

1. Next-day merge, pairs of A (merge alone), Q (readers alone, the quiet machine) and B (merge
   with readers): --readers processes send --queries analyst queries (a fixed mix on
   mart.hotline_rates, grid_daily, ticket, special_group_roster through pipeline.query) and --extracts
   community extracts (pipeline.extract as community_staff of one community), spread evenly over the
   A run's length so they cover the merge and its publish. Q and B run the same operations.
   --alone: A runs only (no readers), for the publish share alone when time is short.
2. Full sync of the registry (pipeline.sync('grid_registry', full_refresh=True)), the same A Q B pairs.
3. Publishing: seconds of the analyst, community and serving parts of each merge's publish against
   the merge's own seconds (pipeline.merge's wall minus its publish), for the next-day A runs and for
   --initial-runs initial merges (empty published folder, serving database dropped).
4. `--parts publish` (needs a prepared WORK): publishing alone, this code against --baseline-src (a
   checkout of the code before, e.g. `git archive`), alternating in fresh processes, --pairs pairs:
   the day-28 warehouse into an empty folder and serving database (initial), and the merged day-29
   warehouse onto each code's own day-28 snapshots and database (next day); one next-day merge
   gives the denominator. Wall and CPU seconds (this process and its children; PostgreSQL's own CPU
   not counted), with the load average before each run.

Prints the ratios and writes the JSON after every run (a stopped bench keeps what it measured).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.district_warehouse import PORTS
from onenet.settings import environment

QUERIES = [  # a fixed mix of what an analyst types into `onenet query`
    "select received_month, street, orders, response_rate, resolution_rate, satisfaction_rate "
    "from mart.hotline_rates where level = 'street' order by received_month desc, street limit 50",
    "select level, count(*) as rows, avg(response_rate) as response_rate from mart.hotline_rates group by 1",
    "select community_name, sum(new_tickets) as tickets, max(residents) as residents from mart.grid_daily "
    "where day_on >= (select max(day_on) - 7 from mart.grid_daily) group by 1 order by 2 desc limit 20",
    "select day_on, sum(green_codes), sum(yellow_codes), sum(red_codes) from mart.grid_daily group by 1 order by 1",
    "select category, count(*) as orders, avg(is_resolved::int) as resolved from mart.ticket "
    "where received_on >= (select max(received_on) - 30 from mart.ticket) group by 1 order by 2 desc",
    "select street, department, count(*) filter (where not is_responded_in_time) as late from mart.ticket "
    "group by all order by late desc limit 20",
    "select community_name, age_band, count(*) as residents from mart.special_group_roster group by all order by 1, 2",
    "select code_color, count(*) from mart.special_group_roster group by 1",
    "select grid_code, count(distinct caller_key) as callers, count(*) as orders from mart.ticket "
    "group by 1 having count(*) > count(distinct caller_key) order by 3 desc limit 20",
    "select ticket_id, street, category, content from mart.ticket where content like '%水%' "
    "order by received_at desc limit 100",
]


# --- small helpers: percentiles, medians, processes ------------------------------------------------

def pct(values: list[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) of `values`."""
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def spread(values: list[float]) -> dict[str, Any]:
    """Median, range and the values themselves."""
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "runs": [round(v, 2) for v in values]} if values else {}


def ratios(a: list[float], b: list[float]) -> dict[str, Any]:
    """B against A: each side's median, the ratio of medians and the range of per-pair ratios."""
    pairs = [y / x for x, y in zip(a, b, strict=False) if x]
    if not pairs:
        return {}
    return {"a": spread(a), "b": spread(b), "ratio_of_medians": round(statistics.median(b) / statistics.median(a), 3),
            "pair_ratios": [round(r, 3) for r in pairs], "pair_ratio_min": round(min(pairs), 3),
            "pair_ratio_max": round(max(pairs), 3)}


def link_tree(src: Path, dst: Path) -> None:
    """Save or restore a published folder as hard links, not copies: the serving database records the
    files it last served by inode (warehouse/publish/serving.py, _file_id) to load the next day by
    changed rows, as a folder that stays in place keeps them; a copy would make every restored run
    fall back to a whole load. Publishing replaces files (os.replace), never writes into one."""
    shutil.copytree(src, dst, symlinks=True, copy_function=os.link)


def _spawn(mode: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.read_side", "--mode", mode, *extra])


def _wait(proc: subprocess.Popen, result: Path, timeout: float = 3600) -> Any:
    if proc.wait(timeout=timeout) != 0:
        raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
    return json.loads(result.read_text(encoding="utf-8"))


# --- in a fresh process: one pipeline step, or one reader ------------------------------------------

def pipeline_worker(kind: str, result: Path) -> None:
    """Run `kind` (load | merge | sync) in this process; write its timings to `result`."""
    from onenet import pipeline

    timed: dict[str, float] = {}
    timed_cpu: dict[str, float] = {}

    def timing(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            # _publish_serving(url, version, audience): one call per audience, the analysts' on a
            # thread beside the community snapshots (so its CPU figure includes theirs)
            key = f"{name}_{a[2]}" if name == "serving" else name
            t, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                timed[key], timed_cpu[key] = time.perf_counter() - t, time.process_time() - c
        return wrapper

    pipeline.publish = timing("publish", pipeline.publish)  # merge() calls them through the module
    pipeline._publish_serving = timing("serving", pipeline._publish_serving)
    out: dict[str, Any] = {"kind": kind, "load_before": os.getloadavg(), "started_at": time.time()}
    t, c = time.perf_counter(), time.process_time()  # CPU: every thread of this process (DuckDB's too)
    if kind == "load":
        for source in pipeline.SOURCES:
            pipeline.sync(source)
        for source in pipeline.SOURCES:
            pipeline.validate(source)
    elif kind == "sync":
        results = pipeline.sync("grid_registry", full_refresh=True)
        out["rows_in"] = sum(r.rows_in for r in results)
        out["rows_landed"] = sum(r.rows_landed for r in results)
    else:
        summary = pipeline.merge()
        pub = summary.published
        out.update(step_seconds=summary.step_seconds, staging_mode=summary.staging_mode,
                   resolve_mode=summary.resolve_mode, publish_summary=pub.summary(),
                   publish={"analyst": pub.seconds.get("analyst", 0.0), "community": pub.seconds.get("community", 0.0),
                            "serving": timed.get("serving_analyst", 0.0) + timed.get("serving_community", 0.0),
                            "serving_analyst": timed.get("serving_analyst", 0.0),
                            "serving_community": timed.get("serving_community", 0.0), "total": timed["publish"],
                            "total_cpu": timed_cpu["publish"],
                            "serving_cpu": timed_cpu.get("serving_analyst", 0.0) + timed_cpu.get("serving_community", 0.0)},
                   communities_published=pub.communities_published, communities_unchanged=pub.communities_unchanged,
                   analyst_unchanged=pub.analyst_unchanged, serving=pub.serving)
    out["seconds"], out["cpu_seconds"] = time.perf_counter() - t, time.process_time() - c
    out["ended_at"] = time.time()
    out["load_after"] = os.getloadavg()
    if kind == "merge":
        out["merge_own"] = out["seconds"] - out["publish"]["total"]
        out["merge_own_cpu"] = out["cpu_seconds"] - out["publish"]["total_cpu"]
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result.write_text(json.dumps(out), encoding="utf-8")


def reader_worker(plan_file: Path, result: Path) -> None:
    """Run a plan's operations at their set times (or at once when behind); record each one."""
    from onenet import pipeline
    from warehouse.identity import resolve_principal

    plan = json.loads(plan_file.read_text(encoding="utf-8"))
    day = dt.date.fromisoformat(plan["day"])
    analyst = resolve_principal(role="district_analyst")
    done = []
    for i, (kind, what) in enumerate(plan["ops"]):
        delay = plan["start_at"] + i * plan["interval"] - time.time()
        if delay > 0:
            time.sleep(delay)
        started, t, error, rows = time.time(), time.perf_counter(), None, 0
        try:
            if kind == "query":
                rows = pipeline.query(QUERIES[what], who=analyst).num_rows
            else:
                who = resolve_principal(role="community_staff", community=what)
                rows = sum(sum(r.rows.values()) for r in pipeline.extract(day, community=what, who=who))
        except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the reader
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
        done.append({"kind": kind, "what": what, "started_at": started, "seconds": time.perf_counter() - t,
                     "rows": rows, "error": error})
    result.write_text(json.dumps(done), encoding="utf-8")


PUBLISH_WORKER = """
import json, os, resource, sys, time
from pathlib import Path
from onenet import pipeline, settings
from warehouse import db

def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

out = {"load_before": os.getloadavg(), "cwd": os.getcwd()}
con = db.connect(settings.warehouse_path(), memory_limit=settings.duckdb_memory_limit())
t, c = time.perf_counter(), cpu()
if sys.argv[2] == "merge":
    from warehouse.merge import merge
    summary = merge(con)
    out["resolve_mode"] = summary.resolve_mode
else:
    out["summary"] = pipeline.publish(con, "bench").summary()
out["seconds"], out["cpu_seconds"] = time.perf_counter() - t, cpu() - c
con.close()
Path(sys.argv[1]).write_text(json.dumps(out))
"""


def publish_pairs(bench: Bench) -> None:
    """Publishing alone, this code (cwd) against --baseline-src, alternating (see the docstring, part 4)."""
    args, work = bench.args, bench.work / "publish"
    codes = {"new": Path.cwd(), "old": args.baseline_src.resolve()}
    work.mkdir(exist_ok=True)
    w28, w29 = bench.base / "next-before-merge.duckdb", work / "w29.duckdb"
    report: dict[str, Any] = bench.report.setdefault("publish_pairs", {"merge": [], "initial": [], "next": []})

    def run(code: str, kind: str, warehouse: Path, published: Path, db: str | None) -> dict[str, Any]:
        out = work / f"{len(report['initial']) + len(report['next']) + len(report['merge'])}-{code}-{kind}.json"
        env = {**os.environ, "ONENET_WAREHOUSE": str(warehouse), "ONENET_PUBLISHED": str(published)}
        if db and bench.serving:
            from psycopg.conninfo import make_conninfo
            env["ONENET_SERVING_URL"] = make_conninfo(bench.serving, dbname=db)
        else:
            env.pop("ONENET_SERVING_URL", None)
        subprocess.run([sys.executable, "-c", PUBLISH_WORKER, str(out), kind], cwd=codes[code], env=env, check=True)
        got = json.loads(out.read_text(encoding="utf-8"))
        got["code"] = code
        print(f"{code:4} {kind:8} load {got['load_before'][0]:5.1f}  wall {got['seconds']:7.1f} s  "
              f"cpu {got['cpu_seconds']:7.1f} s  {got.get('summary', '')[:160]}", flush=True)
        return got

    db = bench._db() if bench.serving else None
    if not w29.exists():
        shutil.copyfile(w28, work / "merging.duckdb")
        report["merge"].append(run("new", "merge", work / "merging.duckdb", work / "unused", None))
        os.replace(work / "merging.duckdb", w29)
        bench.save()
    for pair in range(args.pairs):
        for code in ("new", "old") if pair % 2 == 0 else ("old", "new"):
            published = work / f"published-{code}"
            shutil.rmtree(published, ignore_errors=True)
            if db:
                bench._pg(f'drop database if exists "{db}_{code}" with (force)')
            shutil.copyfile(w28, work / "w.duckdb")
            report["initial"].append(run(code, "publish", work / "w.duckdb", published, db and f"{db}_{code}"))
            if pair == 0 or not (work / f"published-{code}-28").exists():
                shutil.rmtree(work / f"published-{code}-28", ignore_errors=True)
                link_tree(published, work / f"published-{code}-28")
                if db:
                    bench._pg(f'drop database if exists "{db}_{code}_28"',
                              f'create database "{db}_{code}_28" template "{db}_{code}"')
            bench.save()
    for pair in range(args.pairs):
        for code in ("new", "old") if pair % 2 == 0 else ("old", "new"):
            published = work / f"published-{code}"
            shutil.rmtree(published, ignore_errors=True)
            link_tree(work / f"published-{code}-28", published)
            if db:
                bench._pg(f'drop database if exists "{db}_{code}" with (force)',
                          f'create database "{db}_{code}" template "{db}_{code}_28"')
            shutil.copyfile(w29, work / "w.duckdb")
            report["next"].append(run(code, "publish", work / "w.duckdb", published, db and f"{db}_{code}"))
            bench.save()


def summarise_publish_pairs(p: dict[str, Any]) -> list[str]:
    lines = []
    merge = [m["seconds"] for m in p.get("merge", [])]
    merge_cpu = [m["cpu_seconds"] for m in p.get("merge", [])]
    for kind in ("initial", "next"):
        for measure in ("seconds", "cpu_seconds"):
            new = [r[measure] for r in p.get(kind, []) if r["code"] == "new"]
            old = [r[measure] for r in p.get(kind, []) if r["code"] == "old"]
            if not (new and old):
                continue
            r = ratios(old, new)
            line = (f"publish alone, {kind}, {measure}: old median {r['a']['median']} ({r['a']['min']}-{r['a']['max']}), "
                    f"new {r['b']['median']} ({r['b']['min']}-{r['b']['max']}); new/old {r['ratio_of_medians']} "
                    f"(pairs {r['pair_ratio_min']}-{r['pair_ratio_max']})")
            denominator = merge if measure == "seconds" else merge_cpu
            if kind == "next" and denominator:
                line += (f"; / next-day merge {statistics.median(denominator):.1f}: new "
                         f"{statistics.median(new) / statistics.median(denominator):.3f}, old "
                         f"{statistics.median(old) / statistics.median(denominator):.3f}")
            lines.append(line)
    loads = [round(r["load_before"][0], 1) for kind in ("merge", "initial", "next") for r in p.get(kind, [])]
    if loads:
        lines.append(f"  1-minute load before the runs: {min(loads)}-{max(loads)}")
    return lines


# --- the driver ------------------------------------------------------------------------------------

class Bench:
    """The work folder, the saved states, and running one trial (pipeline and/or readers)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.work = args, args.work.resolve()
        self.base, self.runs = self.work / "base", self.work / "runs"
        self.warehouse, self.published = self.work / "warehouse.duckdb", self.work / "published"
        self.serving = args.serving_url
        self.n = 0
        self.report: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()},
            "settings": {"readers": args.readers, "queries": args.queries, "extracts": args.extracts,
                         "pairs": args.pairs, "initial_runs": args.initial_runs, "serving_url": self.serving,
                         "duckdb_memory_limit": os.environ.get("ONENET_DUCKDB_MEMORY_LIMIT", "4GB (default)")},
            "initial": [], "merge_pairs": [], "sync_pairs": []}

    def env(self) -> dict[str, str]:
        w = self.work
        env = dict(ONENET_HOME=str(w / "home"), ONENET_DISTRICT=str(w / "district"),
                   ONENET_WAREHOUSE=str(self.warehouse), ONENET_GX_DIR=str(w / "gx"),
                   ONENET_EXPORTS=str(w / "exports"), ONENET_PUBLISHED=str(self.published),
                   ONENET_ACCESS_FILE=str(w / "etc" / "access.toml"), ONENET_ACCESS_LOG=str(w / "audit" / "access.jsonl"),
                   AIRFLOW_CONN_ONENET_HEALTH_CODES=f"file://{w / 'district' / 'health_codes' / 'drop'}?stable_seconds=0")
        if self.serving:
            env["ONENET_SERVING_URL"] = self.serving
        return env

    # saved states ----------------------------------------------------------------------------------

    def _pg(self, *statements: str) -> None:
        import psycopg
        from psycopg.conninfo import make_conninfo

        admin = make_conninfo(self.serving, dbname="postgres")
        with psycopg.connect(admin, autocommit=True) as pg:
            for s in statements:
                pg.execute(s.encode())  # fixed statements on the bench's own database

    def _db(self) -> str:
        from psycopg.conninfo import conninfo_to_dict

        return str(conninfo_to_dict(self.serving)["dbname"])

    def restore(self, state: str, *, serving: bool = True) -> None:
        """Put back the warehouse, snapshots and serving database as they stood before `state`'s merge."""
        shutil.copyfile(self.base / f"{state}-before-merge.duckdb", self.warehouse)
        Path(f"{self.warehouse}.wal").unlink(missing_ok=True)
        shutil.rmtree(self.published, ignore_errors=True)
        if state == "next":
            link_tree(self.base / "published-initial", self.published)
        if self.serving and serving:
            db = self._db()
            self._pg(f'drop database if exists "{db}" with (force)')
            if state == "next":
                self._pg(f'create database "{db}" template "{db}_initial"')

    def prepare(self) -> None:
        from simulators import clock, runner
        from simulators.health_codes import drop
        from warehouse.identity import os_user, write_default_access_file

        meta_file = self.base / "meta.json"
        if meta_file.exists():
            self.meta = json.loads(meta_file.read_text(encoding="utf-8"))
            self.report["initial"] = self.meta.get("initial", [])
            print(f"reusing {self.base}", flush=True)
            if self.args.republish_base:
                # The code under test publishes differently: its own initial merge makes the saved
                # snapshots and serving database the next-day runs start from.
                self.report["initial"] = []
                self.initial_run()
                shutil.rmtree(self.base / "published-initial", ignore_errors=True)
                link_tree(self.published, self.base / "published-initial")
                if self.serving:
                    db = self._db()
                    self._pg(f'drop database if exists "{db}_initial"', f'create database "{db}_initial" template "{db}"')
                self.meta["initial"] = self.report["initial"]
                meta_file.write_text(json.dumps(self.meta), encoding="utf-8")
            return
        root, day = self.work / "district", self.args.day
        # A prepare stopped after the initial load resumes from it (the district copy is then at that day).
        resume = (self.base / "initial-before-merge.duckdb").exists()
        if not resume:
            for folder in (self.base, root, self.published):
                shutil.rmtree(folder, ignore_errors=True)
            self.base.mkdir(parents=True)
            shutil.copytree(self.args.district, root, ignore=shutil.ignore_patterns("run", "*.sqlite-shm", "*.sqlite-wal"))
        (self.work / "etc").mkdir(mode=0o750, exist_ok=True)
        if not (self.work / "etc" / "access.toml").exists():
            write_default_access_file(self.work / "etc" / "access.toml", os_user())
        runner.up(root, ports=PORTS)
        try:
            for state, d in (("initial", day), ("next", day + 1)):
                t = time.perf_counter()
                if not (resume and state == "initial"):
                    runner.advance(root, d)
                    drop.deliver_until(root, d)
                    self.pipeline_alone("load")
                    shutil.copyfile(self.warehouse, self.base / f"{state}-before-merge.duckdb")
                    print(f"prepared {state} (day {d}) in {time.perf_counter() - t:.0f} s", flush=True)
                if state == "initial":
                    self.initial_run()
                    link_tree(self.published, self.base / "published-initial")
                    if self.serving:
                        db = self._db()
                        self._pg(f'drop database if exists "{db}_initial"', f'create database "{db}_initial" template "{db}"')
        finally:
            runner.down(root)
        index = json.loads((self.published / "community" / "communities.json").read_text(encoding="utf-8"))
        codes = sorted(index)
        step = max(1, len(codes) // self.args.extracts)
        self.meta = {"day": (clock.start_date(root) + dt.timedelta(days=day + 1)).isoformat(),
                     "communities": codes[::step][: self.args.extracts], "initial": self.report["initial"]}
        meta_file.write_text(json.dumps(self.meta), encoding="utf-8")

    # trials ----------------------------------------------------------------------------------------

    def _paths(self, label: str) -> Path:
        self.n += 1
        path = self.runs / f"{self.n:02d}-{label}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def pipeline_alone(self, kind: str) -> dict[str, Any]:
        out = self._paths(kind) / "pipeline.json"
        return _wait(_spawn("pipeline", "--kind", kind, "--result", str(out)), out)

    def plans(self) -> list[list[tuple[str, Any]]]:
        """Each reader's operations: the query mix round-robin, extracts spread evenly among them."""
        ops: list[tuple[str, Any]] = [("query", i % len(QUERIES)) for i in range(self.args.queries)]
        every = max(1, len(ops) // max(1, len(self.meta["communities"])))
        for j, code in enumerate(self.meta["communities"]):
            ops.insert(j * (every + 1), ("extract", code))
        return [ops[r:: self.args.readers] for r in range(self.args.readers)]

    def trial(self, label: str, kind: str | None, readers: bool, pace: float) -> dict[str, Any]:
        """One run: the pipeline step `kind` (or none) and/or the readers, started together."""
        folder = self._paths(label)
        load_before = os.getloadavg()
        procs = []
        if kind:
            procs.append(("pipeline", folder / "pipeline.json",
                          _spawn("pipeline", "--kind", kind, "--result", str(folder / "pipeline.json"))))
        if readers:
            start_at = time.time() + 2.0  # both sides import first
            for r, todo in enumerate(self.plans()):
                plan = folder / f"plan-{r}.json"
                plan.write_text(json.dumps({"ops": todo, "start_at": start_at, "interval": pace / len(todo),
                                            "day": self.meta["day"]}), encoding="utf-8")
                result = folder / f"reader-{r}.json"
                procs.append((f"reader-{r}", result, _spawn("reader", "--plan", str(plan), "--result", str(result))))
        got = {name: _wait(p, result) for name, result, p in procs}
        out: dict[str, Any] = {"label": label, "load_before": load_before, "load_after": os.getloadavg(),
                               "pipeline": got.get("pipeline")}
        if readers:
            ops = [op for name, v in got.items() if name.startswith("reader") for op in v]
            pipe = got.get("pipeline")
            if pipe:
                for op in ops:
                    op["overlaps"] = op["started_at"] < pipe["ended_at"] and op["started_at"] + op["seconds"] > pipe["started_at"]
            out["ops"] = ops
        self._print_trial(out)
        return out

    def _print_trial(self, t: dict[str, Any]) -> None:
        parts = [f"{t['label']:16} load {t['load_before'][0]:.1f}"]
        p = t["pipeline"]
        if p:
            parts.append(f"pipeline {p['seconds']:.1f} s")
            if "publish" in p:
                pub = p["publish"]
                parts.append(f"(merge own {p['merge_own']:.1f}, publish {pub['total']:.1f}: analyst {pub['analyst']:.1f}, "
                             f"community {pub['community']:.1f}, serving {pub['serving']:.1f})")
        if "ops" in t:
            ops = t["ops"]
            fails = [o for o in ops if o["error"]]
            lat = [o["seconds"] for o in ops]
            parts.append(f"readers {len(ops)} ops, {len(fails)} failed, p50 {pct(lat, 50):.2f} s p95 {pct(lat, 95):.2f} s"
                         + (f", {sum(o.get('overlaps', False) for o in ops)} during the pipeline" if p else ""))
            for f in fails[:3]:
                parts.append(f"\n    FAILED {f['kind']} {f['what']}: {f['error']}")
        print("  ".join(parts), flush=True)

    def initial_run(self) -> None:
        self.restore("initial")
        t = self.trial(f"initial-{len(self.report['initial']) + 1}", "merge", False, 0)
        self.report["initial"].append(t)
        self.save()

    def pairs(self, kind: str, key: str) -> None:
        """A (pipeline alone), Q (readers alone at A's pace), B (pipeline with readers), --pairs times."""
        for pair in range(self.args.pairs):
            self.restore("next", serving=kind == "merge")
            a = self.trial(f"{kind}-{pair + 1}-A", kind, False, 0)
            if self.args.alone:
                self.report[key].append({"pair": pair + 1, "A": a})
                self.save()
                continue
            pace = a["pipeline"]["seconds"]
            self.restore("next", serving=False)
            q = self.trial(f"{kind}-{pair + 1}-Q", None, True, pace)
            self.restore("next", serving=kind == "merge")
            b = self.trial(f"{kind}-{pair + 1}-B", kind, True, pace)
            self.report[key].append({"pair": pair + 1, "A": a, "Q": q, "B": b})
            self.save()

    # results ---------------------------------------------------------------------------------------

    def summarise(self) -> list[str]:
        s: dict[str, Any] = {}
        lines: list[str] = []
        for key, kind in (("merge_pairs", "next-day merge"), ("sync_pairs", "full registry sync")):
            pairs = [p for p in self.report[key] if "B" in p]  # --alone: A runs only, no ratios
            if not pairs:
                continue
            a = [p["A"]["pipeline"]["seconds"] for p in pairs]
            b = [p["B"]["pipeline"]["seconds"] for p in pairs]
            s[key] = {"pipeline_seconds": ratios(a, b), "load_before": [[round(x, 2) for x in p[side]["load_before"]]
                                                                        for p in pairs for side in "AQB"]}
            r = s[key]["pipeline_seconds"]
            lines.append(f"{kind}: alone median {r['a']['median']:.1f} s ({r['a']['min']:.1f}-{r['a']['max']:.1f}), "
                         f"with readers {r['b']['median']:.1f} s ({r['b']['min']:.1f}-{r['b']['max']:.1f}); ratio of "
                         f"medians {r['ratio_of_medians']:.3f}, per pair {r['pair_ratio_min']:.3f}-{r['pair_ratio_max']:.3f} "
                         f"(target <= 1.10: {'met' if r['ratio_of_medians'] <= 1.10 else 'NOT met'})")
            if all("cpu_seconds" in (p[side]["pipeline"] or {}) for p in pairs for side in "AB"):
                ca = [p["A"]["pipeline"]["cpu_seconds"] for p in pairs]
                cb = [p["B"]["pipeline"]["cpu_seconds"] for p in pairs]
                s[key]["pipeline_cpu_seconds"] = rc = ratios(ca, cb)
                lines.append(f"  CPU s: alone median {rc['a']['median']:.1f}, with readers {rc['b']['median']:.1f}; ratio "
                             f"{rc['ratio_of_medians']:.3f}, per pair {rc['pair_ratio_min']:.3f}-{rc['pair_ratio_max']:.3f}")
            if key == "merge_pairs":
                for part in ("merge_own", "publish"):
                    pa = [p["A"]["pipeline"][part] if part == "merge_own" else p["A"]["pipeline"]["publish"]["total"] for p in pairs]
                    pb = [p["B"]["pipeline"][part] if part == "merge_own" else p["B"]["pipeline"]["publish"]["total"] for p in pairs]
                    s[key][part] = ratios(pa, pb)
                    lines.append(f"  {part}: alone {s[key][part]['a']['median']:.1f} s, with readers "
                                 f"{s[key][part]['b']['median']:.1f} s, ratio {s[key][part]['ratio_of_medians']:.3f}")
            for what in ("query", "extract", "all"):
                quiet = [o for p in pairs for o in p["Q"]["ops"] if what in ("all", o["kind"])]
                busy = [o for p in pairs for o in p["B"]["ops"] if what in ("all", o["kind"])]
                ql, bl = [o["seconds"] for o in quiet if not o["error"]], [o["seconds"] for o in busy if not o["error"]]
                row = {"quiet": {"ops": len(quiet), "failures": sum(bool(o["error"]) for o in quiet),
                                 "p50": pct(ql, 50), "p95": pct(ql, 95)},
                       "during": {"ops": len(busy), "failures": sum(bool(o["error"]) for o in busy),
                                  "overlapping": sum(o.get("overlaps", False) for o in busy),
                                  "p50": pct(bl, 50), "p95": pct(bl, 95)}}
                if ql and bl:
                    row["p50_ratio"] = round(row["during"]["p50"] / row["quiet"]["p50"], 2)
                    row["p95_ratio"] = round(row["during"]["p95"] / row["quiet"]["p95"], 2)
                s[key][f"readers_{what}"] = row
                lines.append(f"  readers {what:7} during: {row['during']['ops']} ops ({row['during']['overlapping']} "
                             f"overlapping the pipeline), {row['during']['failures']} failed, p50 {row['during']['p50']:.3f} s, "
                             f"p95 {row['during']['p95']:.3f} s | quiet: {row['quiet']['ops']} ops, {row['quiet']['failures']} "
                             f"failed, p50 {row['quiet']['p50']:.3f} s, p95 {row['quiet']['p95']:.3f} s | ratio p50 "
                             f"{row.get('p50_ratio')}, p95 {row.get('p95_ratio')}")
        for label, runs in (("initial", [t["pipeline"] for t in self.report["initial"]]),
                            ("next day (A runs)", [p["A"]["pipeline"] for p in self.report["merge_pairs"]]),
                            ("next day with readers (B runs)", [p["B"]["pipeline"] for p in self.report["merge_pairs"] if "B" in p])):
            if not runs:
                continue
            share = [r["publish"]["total"] / r["merge_own"] for r in runs]
            row = {"merge_own": spread([r["merge_own"] for r in runs]),
                   **{part: spread([r["publish"][part] for r in runs]) for part in ("analyst", "community", "serving", "total")},
                   "publish_share": spread(share)}
            if all("total_cpu" in r["publish"] for r in runs):
                cpu_share = [r["publish"]["total_cpu"] / r["merge_own_cpu"] for r in runs]
                row["merge_own_cpu"] = spread([r["merge_own_cpu"] for r in runs])
                row["total_cpu"] = spread([r["publish"]["total_cpu"] for r in runs])
                row["publish_share_cpu"] = spread(cpu_share)
            s[f"publish {label}"] = row
            lines.append(f"publish, {label}, {len(runs)} runs: merge own median {row['merge_own']['median']:.1f} s "
                         f"({row['merge_own']['min']:.1f}-{row['merge_own']['max']:.1f}); publish {row['total']['median']:.1f} s "
                         f"({row['total']['min']:.1f}-{row['total']['max']:.1f}): analyst {row['analyst']['median']:.1f}, "
                         f"community {row['community']['median']:.1f}, serving {row['serving']['median']:.1f} (the "
                         f"analysts' part beside the communities' snapshots); share "
                         f"{row['publish_share']['median']:.3f} ({row['publish_share']['min']:.3f}-{row['publish_share']['max']:.3f}) "
                         f"(target <= 0.25: {'met' if row['publish_share']['max'] <= 0.25 else 'median met' if row['publish_share']['median'] <= 0.25 else 'NOT met'})")
            if "publish_share_cpu" in row:
                lines.append(f"  by CPU (this process's threads; PostgreSQL's own not counted): merge own "
                             f"{row['merge_own_cpu']['median']:.1f} CPU-s, publish {row['total_cpu']['median']:.1f} CPU-s; share "
                             f"{row['publish_share_cpu']['median']:.3f} ({row['publish_share_cpu']['min']:.3f}-"
                             f"{row['publish_share_cpu']['max']:.3f})")
        if self.report.get("publish_pairs"):
            lines += summarise_publish_pairs(self.report["publish_pairs"])
        self.report["summary"] = s
        return lines

    def save(self) -> None:
        self.report["machine"]["load_now"] = os.getloadavg()
        lines = self.summarise()
        self.report["lines"] = lines
        if self.args.out:
            self.args.out.write_text(json.dumps(self.report, indent=1, default=str), encoding="utf-8")

    def run(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.runs, ignore_errors=True)
        with environment(**self.env()):
            self.prepare()
            for part in self.args.parts:
                if part == "merge":
                    self.pairs("merge", "merge_pairs")
                elif part == "sync":
                    self.pairs("sync", "sync_pairs")
                elif part == "initial":
                    while len(self.report["initial"]) < self.args.initial_runs:
                        self.initial_run()
                elif part == "publish":
                    if not self.args.baseline_src:
                        raise SystemExit("--parts publish needs --baseline-src (the code to compare with)")
                    publish_pairs(self)
        self.save()
        print("\n" + "\n".join(self.report["lines"]), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--district", type=Path, help="a generated district (left untouched; copied into WORK)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/onenet-read-side"))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--day", type=int, default=28, help="the initial load's simulated day; the next day is +1")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--initial-runs", type=int, default=3)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--extracts", type=int, default=20)
    ap.add_argument("--parts", nargs="+", default=["merge", "sync", "initial"], choices=["merge", "sync", "initial", "publish"])
    ap.add_argument("--alone", action="store_true", help="--parts merge/sync: A runs only (no readers, no Q or B)")
    ap.add_argument("--baseline-src", type=Path, help="--parts publish: a checkout of the code to compare with")
    ap.add_argument("--serving-url", default=os.environ.get("ONENET_SERVING_URL"),
                    help="PostgreSQL for the serving database (dropped and re-created by the bench)")
    ap.add_argument("--republish-base", action="store_true",
                    help="on a prepared WORK: run the initial merge again with this code and save its snapshots "
                         "and serving database as the next-day runs' starting point (after a change of the layout)")
    ap.add_argument("--mode", choices=["pipeline", "reader"], help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode == "pipeline":
        pipeline_worker(args.kind, args.result)
    elif args.mode == "reader":
        reader_worker(args.plan, args.result)
    else:
        if not args.district:
            ap.error("--district is required")
        Bench(args).run()


if __name__ == "__main__":
    main()
