"""Side by side: a 15-minute hotline cycle's validate and merge steps, old code against new (issue #19).

    .venv/bin/python -m bench.cycle_step --state S --baseline-src B [--src .] [--rounds 3]
        [--steps validate merge] [--memory-limit 4GB] [--json OUT]

S is the state bench/surge.py copies with `--capture S`: its work folder after the last cycle's
hotline sync, before that cycle's validate (warehouse, Great Expectations folder, published
snapshots, access file, keys). B is a checkout of the code to compare with (e.g. `git archive
<commit> | tar -x -C B`); --src is the code under test (default: this repository).

Every run starts from a fresh copy of S (copied before the run, untimed) and runs each step of
--steps in its own fresh Python process, as an Airflow task does, with the code of its side
(its folder first on sys.path). Sides go through bench/compare.py: --rounds rounds, the order
alternating, each side's own seconds = the sum of its steps' process wall times (interpreter
start, imports and the step; the copy excluded on both sides). Every step also reports its
start-up (imports until ready) and, for the merge, its steps and publish seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import compare

REPO = Path(__file__).resolve().parents[1]
TIMED = ("each side's own seconds: the wall time of every step's fresh process (interpreter start, imports "
         "and the step), summed; copying the captured state before a run is excluded on both sides")

# One step in a fresh process, run with cwd = the side's source folder (first on sys.path).
STEP = r"""
import json, sys, time
spawned = float(sys.argv[2])
step = sys.argv[1]
from onenet import pipeline
if step == "validate":
    import expectations.runner
else:
    import warehouse.merge
ready = time.time()
t = time.perf_counter()
out = {"startup_s": round(ready - spawned, 2)}
if step == "validate":
    out["validated"] = [v.summary() for v in pipeline.validate("hotline")]
else:
    summary = pipeline.merge()
    out["merge_steps"] = {k: round(v, 2) for k, v in summary.step_seconds.items()}
    out["publish"] = {k: round(v, 2) for k, v in summary.published.seconds.items()}
    out["published"] = summary.published.summary()
out["step_s"] = round(time.perf_counter() - t, 2)
print(json.dumps(out))
"""


def env_for(run: Path, memory_limit: str) -> dict[str, str]:
    """The settings of bench/surge.py's steps, pointed at a run's copy of the state."""
    return {"ONENET_DISTRICT": str(run / "district"), "ONENET_WAREHOUSE": str(run / "warehouse.duckdb"),
            "ONENET_GX_DIR": str(run / "gx"), "ONENET_PUBLISHED": str(run / "published"),
            "ONENET_EXPORTS": str(run / "exports"), "ONENET_HOME": str(run),
            "ONENET_ACCESS_FILE": str(run / "access.toml"),
            "ONENET_ACCESS_LOG": str(run / "audit" / "access-log.jsonl"),
            "ONENET_DUCKDB_MEMORY_LIMIT": memory_limit}


def side(src: Path, run: Path, steps: list[str], memory_limit: str) -> dict[str, Any]:
    """Run the steps one after another, each in a fresh process with `src`'s code; their reports."""
    env = {**os.environ, **env_for(run, memory_limit)}
    env.pop("ONENET_SERVING_URL", None)
    env["PYTHONPATH"] = str(src)
    out: dict[str, Any] = {"steps": {}}
    for step in steps:
        t = time.time()
        proc = subprocess.run([sys.executable, "-c", STEP, step, repr(t)], cwd=src, env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{step} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        report["wall_s"] = round(time.time() - t, 2)
        out["steps"][step] = report
        print(f"{step}: {json.dumps(report)}", file=sys.stderr, flush=True)
    out["seconds"] = round(sum(s["wall_s"] for s in out["steps"].values()), 2)
    return out


def main() -> None:
    """Compare the two sides, or (with --side) run one side's steps on a prepared copy."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--side", type=Path, help=argparse.SUPPRESS)  # source folder of the side to run
    ap.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--state", type=Path, help="state captured by bench/surge.py --capture")
    ap.add_argument("--baseline-src", type=Path, help="the code to compare with (a checkout)")
    ap.add_argument("--src", type=Path, default=REPO, help="the code under test [default: this repository]")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", nargs="+", default=["validate", "merge"], choices=["validate", "merge"])
    ap.add_argument("--memory-limit", default="4GB")
    ap.add_argument("--scratch", type=Path, help="where each run's copy goes [default: next to --state]")
    ap.add_argument("--json", type=Path, help="raw runs to this file")
    args = ap.parse_args()
    if args.side:
        print(json.dumps(side(args.side, args.run, args.steps, args.memory_limit)))
        return
    if not args.state or not args.baseline_src:
        ap.error("--state and --baseline-src are needed")
    run = (args.scratch or args.state.parent) / f"{args.state.name}.run"

    def fresh_copy() -> None:
        # a publish leaves a detached process deleting old versions in the copy: move it aside first
        if run.exists():
            aside = run.with_name(f"{run.name}.old-{time.time_ns()}")
            os.replace(run, aside)
            shutil.rmtree(aside, ignore_errors=True)
        subprocess.run(["cp", "-a", str(args.state), str(run)], check=True)  # keeps the snapshots' hard links

    def make(name: str, src: Path) -> compare.Side:
        cmd = [sys.executable, "-m", "bench.cycle_step", "--side", str(src.resolve()), "--run", str(run),
               "--steps", *args.steps, "--memory-limit", args.memory_limit]
        return compare.Side(name, cmd, cwd=REPO, before=fresh_copy, timeout=3600)

    new, old = make("new", args.src), make("baseline", args.baseline_src)
    logs = (args.json.parent if args.json else run.parent) / "cycle_step-logs"
    logs.mkdir(parents=True, exist_ok=True)
    comp = compare.run_rounds([new, old], rounds=args.rounds, timed=TIMED, measure="reported",
                              title=f"15-minute cycle: {' + '.join(args.steps)} (new / baseline)", log_dir=logs)
    print(comp.report())
    for r in comp.runs:
        rep = r.report or {}
        split = "; ".join(f"{k} {v['wall_s']:.1f} (start-up {v['startup_s']:.1f}"
                          + (f", publish {sum(v.get('publish', {}).values()):.1f}" if "publish" in v else "") + ")"
                          for k, v in rep.get("steps", {}).items())
        print(f"  round {r.round + 1} {r.side}: {split}")
    if args.json:
        compare.write_json(args.json, [comp], state=str(args.state), steps=args.steps,
                           baseline_src=str(args.baseline_src), src=str(args.src))
    shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    main()
