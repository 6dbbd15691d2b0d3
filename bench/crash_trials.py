"""Crash-consistency trials: SIGKILL the whole pipeline at seeded random points, re-run it, compare.

Each trial runs sync all → validate all → merge → extract (one simulated day) in a child
process (`python -c`), kills it with SIGKILL at a seeded random moment inside a chosen phase,
re-runs the pipeline to completion, and checks that the warehouse equals ONE clean run:

- raw: every table's rows per key, content hashed over every column but the load's own lineage
  (`_load_id`, `_extracted_at`);
- core.* and mart.*: every table's rows, content hashed over all columns but those in EXCLUDED;
- meta.source_state: the same watermark per (source, entity), and no state ahead of its data
  (its load succeeded and that load's rows are in raw) — checked right after the kill too;
- the extracts: the same files, the same cell values (read back with openpyxl), no `.part` left.

The child prints `PHASE <name>` before each phase. A clean run measures how long each phase
takes; a trial waits for its phase's marker, then sleeps a seeded fraction of that phase's
measured length and kills. Phases are dealt round-robin (in a seeded order), so any 4
consecutive trials cover sync, validate, merge and extract.

    .venv/bin/python bench/crash_trials.py [--trials 20] [--seed 8] [--residents 3000] [--day 4] [--next-day]

With --next-day, the day before is synced, validated and merged once first, and every run (the
clean one and each trial) starts from a copy of that warehouse: the merge killed is then the
incremental next-day merge.

Exit status 1 if any trial did not recover to the clean run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
PHASES = ("sync", "validate", "merge", "extract")

# The child: the pipeline of one day, with a marker before each phase (flushed at once).
PIPELINE = """
import datetime as dt, sys, time
def mark(p): print("PHASE", p, flush=True)
mark("start")
from onenet import pipeline
mark("sync")
for s in pipeline.SOURCES: pipeline.sync(s)
mark("validate")
for s in pipeline.SOURCES: pipeline.validate(s)
mark("merge")
pipeline.merge()
mark("extract")
pipeline.extract(dt.date.fromisoformat(sys.argv[1]))
mark("done")
"""

# Lineage of a load: which load landed a row and when; a re-run lands the same row under another.
RAW_EXCLUDED = ("_load_id", "_extracted_at")
# Columns of core/mart tables that legitimately differ between two clean runs, found by comparing
# two clean runs (`--compare-clean`, which prints exactly these): the merge run that resolved a
# record and when it did, and the wall-clock time a sync first saw a ticket's stage (the raw
# `_extracted_at`, a property of the run, not of the data). Everything else must be identical.
EXCLUDED: dict[str, tuple[str, ...]] = {
    "core.person_source": ("run_id", "resolved_at"),
    "core.ticket_history": ("first_seen_at",),
}
# Likewise in the extracts: the overview sheet says when each source was last synced (wall
# clock, to the minute), so two clean runs a minute apart differ there and nowhere else.
SYNCED_AT = re.compile(r"最近同步 \d{4}-\d{2}-\d{2} \d{2}:\d{2}")


# ---------------------------------------------------------------- the district and its silos

@dataclass
class District:
    root: Path
    day: int
    base: Path | None = None  # a warehouse folder of the day before, merged: every run starts from a copy

    @property
    def extract_date(self) -> date:
        from simulators import clock
        return clock.start_date(self.root) + timedelta(days=self.day)


def make_district(folder: Path, *, residents: int, seed: int, day: int, at_day: int | None = None) -> District:
    """Generate a district up to `day` and move it to `at_day` (default `day`): registry changes
    applied, health files delivered."""
    from simulators.district.generate import generate

    root = folder / "district"
    generate(root, residents=residents, seed=seed, days=day + 1)
    return move_to(District(root, day), day if at_day is None else at_day)


def move_to(district: District, day: int) -> District:
    """The district's silos moved to `day`: clock, registry changes, health files delivered."""
    from simulators import clock
    from simulators.grid_registry import registry
    from simulators.health_codes import drop

    clock.write_day(district.root, day)
    registry.advance(district.root, day)
    drop.deliver_until(district.root, day)
    return District(district.root, day, district.base)


def with_day_before(before: District, folder: Path) -> District:
    """Run the pipeline cleanly on `before` (the day before), then move the district one day on.

    Every later run starts from a copy of that warehouse, so its merge is the next-day,
    incremental one (staging refreshed, persons re-resolved where the day reaches, person-keyed
    core tables refreshed) — the path a crash is most likely to hit in production.
    """
    base = folder / "day_before"
    run = run_pipeline(before, base)
    if run.returncode != 0:
        raise RuntimeError(f"the day-before run failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    after = move_to(before, before.day + 1)
    return District(after.root, after.day, base)


@contextmanager
def silos(district: District) -> Iterator[None]:
    """The two HTTP silos on free loopback ports for the duration (their clock never moves)."""
    from simulators import runner

    for name in ("hotline", "city_cases"):
        runner.up(district.root, only=name, ports={"hotline": 0, "city_cases": 0})
    try:
        yield
    finally:
        runner.down(district.root)


def pipeline_env(district: District, work: Path) -> dict[str, str]:
    """The child's environment: its own warehouse, Great Expectations folder and exports."""
    from warehouse.identity import os_user, write_default_access_file

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONENET_", "AIRFLOW_CONN_ONENET_"))}
    # The child runs the pipeline as its engineer, with its own access file, snapshots and access log
    # under `work` (ONENET_HOME); every run of this process shares one pseudonym key, so person_key agrees.
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "access.toml").exists():
        write_default_access_file(work / "access.toml", os_user())
    os.environ.setdefault("ONENET_PSEUDONYM_KEY", "crash-trials-" + secrets.token_urlsafe(32))
    return {**env, "ONENET_HOME": str(work), "ONENET_PSEUDONYM_KEY": os.environ["ONENET_PSEUDONYM_KEY"],
            "ONENET_DISTRICT": str(district.root), "ONENET_WAREHOUSE": str(work / "warehouse.duckdb"),
            "ONENET_GX_DIR": str(work / "gx"), "ONENET_EXPORTS": str(work / "exports"), "PYTHONPATH": str(REPO),
            # Files in the drop folder are complete here: no need to wait for them to settle.
            "AIRFLOW_CONN_ONENET_HEALTH_CODES": f"file://{district.root / 'health_codes' / 'drop'}?stable_seconds=0"}


# ---------------------------------------------------------------- running (and killing) the pipeline

@dataclass
class Run:
    returncode: int
    marks: dict[str, float]          # phase -> seconds since the child started
    killed_in: str | None = None     # the last phase marker seen before the kill
    killed_at: float | None = None
    stderr: str = ""

    def durations(self) -> dict[str, float]:
        order = ("start", *PHASES, "done")
        return {p: self.marks[n] - self.marks[p] for p, n in zip(order, order[1:], strict=False)
                if p in self.marks and n in self.marks}


def run_pipeline(district: District, work: Path, *, kill_phase: str | None = None, kill_after: float = 0.0,
                 timeout: float = 900.0) -> Run:
    """Run the pipeline in a child; with `kill_phase`, SIGKILL it `kill_after` s after that phase began.

    A district with a `base` starts from a copy of it, unless `work` already exists (a re-run).
    """
    if district.base is not None and not work.exists():
        shutil.copytree(district.base, work, symlinks=True)  # `current` stays a link to its version
    proc = subprocess.Popen([sys.executable, "-c", PIPELINE, district.extract_date.isoformat()],
                            env=pipeline_env(district, work), cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = time.monotonic()
    marks: dict[str, float] = {}
    seen = {p: threading.Event() for p in ("start", *PHASES, "done")}
    err: list[str] = []

    def read_out() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("PHASE "):
                name = line.split()[1]
                marks[name] = time.monotonic() - started
                seen[name].set()

    def read_err() -> None:
        assert proc.stderr is not None
        err.append(proc.stderr.read())

    readers = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for t in readers:
        t.start()
    run = Run(0, marks)
    if kill_phase is not None:
        deadline = started + timeout
        while not seen[kill_phase].wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                break
        if seen[kill_phase].is_set():
            time.sleep(kill_after)
        if proc.poll() is None:
            last = max(marks, key=marks.__getitem__) if marks else "start"
            proc.send_signal(signal.SIGKILL)
            run.killed_in, run.killed_at = last, time.monotonic() - started
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for t in readers:
        t.join(timeout=10)
    run.returncode = proc.returncode
    run.stderr = "".join(err)
    return run


# ---------------------------------------------------------------- what a run leaves behind

def _tables(con: duckdb.DuckDBPyConnection, schemas: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(s, t) for s, t in con.execute(
        "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE' "
        "and table_schema in (select unnest(?::varchar[])) order by 1, 2", [list(schemas)]).fetchall()]


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str]]:
    return [(c, t) for c, t in con.execute(
        "select column_name, data_type from information_schema.columns where table_schema = ? and table_name = ? "
        "order by ordinal_position", [schema, table]).fetchall()]


def _value(column: str, dtype: str) -> str:
    # Floating sums may differ in the last bits with the order DuckDB's threads add them in.
    q = f'"{column}"'
    return f"round({q}, 6)" if dtype in ("DOUBLE", "FLOAT", "REAL") else q


def _raw_keys() -> dict[str, tuple[str, ...]]:
    from connectors.city_cases.settings import CASES
    from connectors.grid_registry.settings import ENTITIES
    from connectors.health_codes.settings import EXPORTS
    from connectors.hotline.settings import TICKETS

    return {e.table.split(".", 1)[1]: tuple(e.key) for e in (TICKETS, CASES, EXPORTS, *ENTITIES.values())}


def raw_rows(con: duckdb.DuckDBPyConnection) -> dict[str, collections.Counter]:
    """Per raw table, how often each (key, content hash) occurs; the load's lineage left out."""
    out: dict[str, collections.Counter] = {}
    keys = _raw_keys()
    for schema, table in _tables(con, ("raw",)):
        cols = [c for c, _ in _columns(con, schema, table) if c not in RAW_EXCLUDED]
        content = ", ".join(f'"{c}"' for c in cols)
        keyexpr = ", ".join(f'"{k}"::varchar' for k in keys.get(table, ())) or "''"
        rows = con.execute(f"select [{keyexpr}], hash({content}) from {schema}.{table}").fetchall()
        out[table] = collections.Counter((tuple(k), h) for k, h in rows)
    return out


def fingerprint(work: Path) -> dict:
    """What the comparison looks at: raw per key, core/mart contents, watermarks, extract cells."""
    out: dict = {"raw": {}, "tables": {}, "state": {}, "extracts": {}}
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    try:
        out["raw"] = raw_rows(con)
        for schema, table in _tables(con, ("core", "mart")):
            excluded = set(EXCLUDED.get(f"{schema}.{table}", ()))
            cols = [(c, t) for c, t in _columns(con, schema, table) if c not in excluded]
            per_col = ", ".join(f"sum(hash({_value(c, t)})::hugeint)" for c, t in cols)
            whole = ", ".join(_value(c, t) for c, t in cols)
            row = con.execute(f"select count(*), sum(hash({whole})::hugeint), {per_col} "
                              f"from {schema}.{table}").fetchall()[0]
            out["tables"][f"{schema}.{table}"] = {"rows": row[0], "hash": row[1],
                                                  "columns": dict(zip([c for c, _ in cols], row[2:], strict=True))}
        out["state"] = {(s, e): json.loads(st).get("watermark") for s, e, st in
                        con.execute("select source, entity, state from meta.source_state").fetchall()}
    finally:
        con.close()
    out["extracts"] = extract_cells(work / "exports" / "community")
    return out


def extract_cells(folder: Path) -> dict[str, object]:
    """Every file under the extracts folder: a workbook's cell values per sheet (other files: None)."""
    from openpyxl import load_workbook

    cells: dict[str, object] = {}
    if not folder.exists():
        return cells
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if path.suffix != ".xlsx":
            cells[name] = None
            continue
        wb = load_workbook(path, read_only=True)
        try:
            cells[name] = {ws.title: [tuple(SYNCED_AT.sub("最近同步 <time>", v) if isinstance(v, str) else v for v in r)
                                      for r in ws.iter_rows(values_only=True)] for ws in wb.worksheets}
        finally:
            wb.close()
    return cells


def state_not_ahead(work: Path) -> list[str]:
    """Problems with meta.source_state: a state whose load did not succeed or whose rows are not in raw."""
    path = work / "warehouse.duckdb"
    if not path.exists():
        return []
    problems = []
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return []  # killed while DuckDB created the file: a stub the next run sets aside (warehouse.db)
    try:
        if not con.execute("select count(*) from information_schema.tables "
                           "where table_schema = 'meta' and table_name = 'source_state'").fetchall()[0][0]:
            return []  # killed while the warehouse was being created
        for source, entity, load_id in con.execute("select source, entity, load_id from meta.source_state").fetchall():
            load = con.execute("select status, rows_landed from meta.loads where load_id = ?", [load_id]).fetchall()
            if not load or load[0][0] != "succeeded":
                problems.append(f"state of {source}.{entity} points at load {load_id} ({load or 'missing'})")
                continue
            n = con.execute(f"select count(*) from raw.{source}_{entity} where _load_id = ?", [load_id]).fetchall()[0][0]
            if n != (load[0][1] or 0):
                problems.append(f"state of {source}.{entity}: load {load_id} landed {load[0][1]} rows, raw holds {n}")
    finally:
        con.close()
    return problems


def compare(expected: dict, got: dict) -> list[str]:
    """Human-readable differences between two fingerprints (empty: the same)."""
    out = []
    for table in sorted(set(expected["raw"]) | set(got["raw"])):
        a, b = expected["raw"].get(table, collections.Counter()), got["raw"].get(table, collections.Counter())
        if a != b:
            missing, extra = a - b, b - a
            keys = sorted({k for k, _ in missing} | {k for k, _ in extra})[:3]
            out.append(f"raw.{table}: {sum(missing.values())} rows missing, {sum(extra.values())} extra "
                       f"(keys {keys})")
    for table in sorted(set(expected["tables"]) | set(got["tables"])):
        a, b = expected["tables"].get(table), got["tables"].get(table)
        if a is None or b is None:
            out.append(f"{table}: {'missing' if b is None else 'unexpected'}")
        elif (a["rows"], a["hash"]) != (b["rows"], b["hash"]):
            cols = [c for c in a["columns"] if a["columns"][c] != b["columns"].get(c)]
            out.append(f"{table}: {b['rows']} rows vs {a['rows']}, columns differing: {cols}")
    if expected["state"] != got["state"]:
        diff = {k: (expected["state"].get(k), got["state"].get(k))
                for k in set(expected["state"]) | set(got["state"]) if expected["state"].get(k) != got["state"].get(k)}
        out.append(f"meta.source_state watermarks differ: {diff}")
    a, b = expected["extracts"], got["extracts"]
    if set(a) != set(b):
        out.append(f"extract files differ: missing {sorted(set(a) - set(b))}, extra {sorted(set(b) - set(a))}")
    for name in sorted(set(a) & set(b)):
        if a[name] != b[name]:
            out.append(f"extract {name}: " + "; ".join(_cell_diffs(a[name], b[name] or {})))
    return out


def _cell_diffs(a: dict, b: dict, limit: int = 3) -> list[str]:
    """The first differing cells of two workbooks' values, as 'sheet!row,col: expected → got'."""
    out = []
    for sheet in a:
        rows_a, rows_b = a[sheet], b.get(sheet, [])
        if len(rows_a) != len(rows_b):
            out.append(f"{sheet}: {len(rows_b)} rows vs {len(rows_a)}")
        for i, (ra, rb) in enumerate(zip(rows_a, rows_b, strict=False)):
            for j, (va, vb) in enumerate(zip(ra, rb, strict=False)):
                if va != vb and len(out) < limit:
                    out.append(f"{sheet}!R{i + 1}C{j + 1}: {va!r} → {vb!r}")
    return out or ["sheets differ"]


# ---------------------------------------------------------------- the trials

@dataclass
class Trial:
    number: int
    phase: str                 # the phase the kill was aimed at
    kill_after: float          # seconds into that phase
    killed_in: str | None      # the last phase marker seen when the kill landed (None: it finished first)
    killed_at: float | None
    outcome: str = "ok"
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def clean_reference(district: District, folder: Path, runs: int = 1) -> tuple[dict, dict[str, float], list[str]]:
    """Fingerprint and phase durations of a clean run; with runs=2, also how two clean runs differ."""
    prints, timings = [], []
    for i in range(runs):
        work = folder / f"clean{i}"
        run = run_pipeline(district, work)
        if run.returncode != 0:
            raise RuntimeError(f"the clean run failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
        prints.append(fingerprint(work))
        timings.append(run.durations())
    diffs = compare(prints[0], prints[1]) if runs > 1 else []
    return prints[0], timings[0], diffs


def plan(trials: int, seed: int, durations: dict[str, float], reach: float = 0.9) -> list[tuple[str, float]]:
    """(phase, seconds into it) per trial: phases dealt round-robin in a seeded order, offsets uniform
    over the first `reach` of the phase's clean length (so the kill lands inside it, even if this
    run is a little faster than the clean one)."""
    rng = random.Random(seed)
    order = list(PHASES)
    rng.shuffle(order)
    return [(order[i % len(order)], rng.uniform(0.0, reach * durations.get(order[i % len(order)], 1.0)))
            for i in range(trials)]


def run_trial(district: District, folder: Path, number: int, phase: str, kill_after: float,
              expected: dict) -> Trial:
    work = folder / f"trial{number:02d}"
    t0 = time.perf_counter()
    killed = run_pipeline(district, work, kill_phase=phase, kill_after=kill_after)
    trial = Trial(number, phase, kill_after, killed.killed_in, killed.killed_at)
    if killed.killed_in is None and killed.returncode != 0:
        trial.problems.append(f"the run failed before the kill (exit {killed.returncode}): "
                              f"{killed.stderr.strip().splitlines()[-1:]}")
    trial.problems += [f"after the kill: {p}" for p in state_not_ahead(work)]
    rerun = run_pipeline(district, work)
    if rerun.returncode != 0:
        trial.problems.append(f"the re-run failed (exit {rerun.returncode}): {rerun.stderr.strip()[-1500:]}")
    else:
        trial.problems += [f"after the re-run: {p}" for p in state_not_ahead(work)]
        trial.problems += compare(expected, fingerprint(work))
    if trial.problems:
        trial.outcome = "MISMATCH"
    elif killed.killed_in is None:
        trial.outcome = "ok (finished before the kill)"
    trial.seconds = time.perf_counter() - t0
    if not trial.problems:  # a mismatching trial's folder stays, to look into
        shutil.rmtree(work, ignore_errors=True)
    return trial


def run_trials(folder: Path, *, trials: int, seed: int, residents: int, day: int, next_day: bool = False,
               echo=print) -> tuple[list[Trial], dict[str, float]]:
    district = make_district(folder, residents=residents, seed=seed, day=day, at_day=day - 1 if next_day else None)
    with silos(district):
        if next_day:
            district = with_day_before(district, folder)
            echo(f"every run starts from day {day - 1}, merged: the merge killed is the incremental one")
        expected, durations, _ = clean_reference(district, folder)
        echo("clean run, seconds per phase: " + ", ".join(f"{p} {s:.1f}" for p, s in durations.items()))
        echo(f"{'trial':>5}  {'aimed at':<9} {'+s':>6}  {'killed in':<9} {'at s':>6}  {'s':>5}  outcome")
        results = []
        for number, (phase, offset) in enumerate(plan(trials, seed, durations)):
            trial = run_trial(district, folder, number, phase, offset, expected)
            results.append(trial)
            echo(f"{number:>5}  {phase:<9} {offset:>6.2f}  {trial.killed_in or '-':<9} "
                 f"{trial.killed_at or 0:>6.2f}  {trial.seconds:>5.1f}  {trial.outcome}")
            for p in trial.problems:
                echo(f"       ! {p}")
    return results, durations


def summary(results: list[Trial]) -> str:
    by_phase = collections.Counter(t.killed_in or "finished" for t in results)
    bad = [t.number for t in results if t.outcome == "MISMATCH"]
    return (f"{len(results)} trials; killed in: "
            + ", ".join(f"{p} {by_phase[p]}" for p in ("start", *PHASES, "finished") if by_phase[p])
            + f"; recovered to the clean run: {len(results) - len(bad)}/{len(results)}"
            + (f"; MISMATCH in trials {bad}" if bad else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--residents", type=int, default=3000)
    ap.add_argument("--day", type=int, default=4, help="the simulated day the district has reached")
    ap.add_argument("--next-day", action="store_true",
                    help="start every run from the day before, already merged (the incremental merge)")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    ap.add_argument("--compare-clean", action="store_true",
                    help="only run twice cleanly and print what differs (to justify EXCLUDED)")
    args = ap.parse_args(argv)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="onenet-crash-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if args.compare_clean:
            district = make_district(folder, residents=args.residents, seed=args.seed, day=args.day)
            with silos(district):
                _, durations, diffs = clean_reference(district, folder, runs=2)
            print("seconds per phase:", durations)
            print("\n".join(diffs) or "two clean runs are identical (with EXCLUDED left out)")
            return 1 if diffs else 0
        t0 = time.perf_counter()
        results, _ = run_trials(folder, trials=args.trials, seed=args.seed, residents=args.residents, day=args.day,
                                next_day=args.next_day)
        print(summary(results) + f"; {time.perf_counter() - t0:.0f} s")
        return 1 if any(t.outcome == "MISMATCH" for t in results) else 0
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
