"""Benchmark: run the same DuckDB workload under several DuckDB versions and print them side by side.

    .venv/bin/python bench/duckdb_versions.py [--pairs 32000] [--versions 1.5.6 2.0.0]

Each version gets a throwaway venv under --cache (reused on later runs). Every step of
bench/duckdb_workload.py runs through bench/compare.py: --rounds rounds (default 3), each version in
a fresh process per round, the order rotating; seconds are medians of the step's own timed part
(imports and data generation excluded on every version), peak MB the highest seen. Ratios are
last / first version: the ratio of medians and the range of per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as a file (python bench/duckdb_versions.py): the repository must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import compare  # noqa: E402

WORKLOAD = Path(__file__).with_name("duckdb_workload.py")
TIMED = ["cluster", "string_similarity", "group_window", "arrow_roundtrip"]
SLOWER = 1.25  # a ratio above this counts as a regression in the verdict

Results = dict[str, dict[str, dict]]  # version -> step -> the workload's JSON
Spatial = dict[str, tuple[bool, list[str]]]  # version -> (exact wheel found, same-series wheels)


def ensure_venv(cache: Path, version: str) -> Path:
    """Return the python of a venv holding duckdb==version, creating it if needed."""
    venv = cache / version
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import duckdb, numpy, pyarrow; assert duckdb.__version__ == '{version}'"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} (duckdb=={version}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", f"duckdb=={version}",
                          "pyarrow", "numpy"], capture_output=True, text=True)
    if pip.returncode != 0:
        raise RuntimeError(f"pip install duckdb=={version} failed: {pip.stderr.strip()[-300:]}")
    return python


def run_step(python: Path, step: str, args: argparse.Namespace) -> dict:
    cmd = [str(python), str(WORKLOAD), "--step", step, "--pairs", str(args.pairs), "--seed", str(args.seed)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timeout after {args.timeout} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        # A crash (segfault, OOM kill) never prints JSON: keep the tail of stderr instead.
        tail = (proc.stderr.strip().splitlines() or [""])[-1]
        return {"ok": False, "error": f"exit {proc.returncode}: {tail[:150]}"}
    return json.loads(lines[-1])


def step_sides(pythons: dict[str, Path], step: str, args: argparse.Namespace) -> list[compare.Side]:
    return [compare.Side(v, [str(py), str(WORKLOAD), "--step", step, "--pairs", str(args.pairs), "--seed",
                             str(args.seed)], timeout=args.timeout) for v, py in pythons.items()]


def summarise_step(comp: compare.Comparison) -> dict[str, dict]:
    """Per version: ok, median seconds, highest peak MB, the last run's detail, or the first error."""
    out = {}
    for v in comp.sides:
        runs = [r for r in comp.runs if r.side == v]
        bad = [r for r in runs if not r.ok or not (r.report or {}).get("ok")]
        if bad:
            r = bad[0]
            out[v] = {"ok": False, "error": r.error or (r.report or {}).get("error", "no JSON")}
            continue
        secs = [r.reported_s for r in runs if r.reported_s is not None]
        out[v] = {"ok": True, "seconds": compare.median(secs), "peak_rss_mb": max(r.peak_mb for r in runs),
                  "detail": (runs[-1].report or {}).get("detail")}
    return out


def spatial_wheels(python: Path, version: str) -> tuple[bool, list[str]]:
    """Whether pip finds duckdb-extension-spatial==version, and the same-series releases it has.

    The wheel is downloaded to a temp dir and thrown away, never installed.
    """
    with tempfile.TemporaryDirectory(prefix="onenet-spatial-") as tmp:
        proc = subprocess.run([str(python), "-m", "pip", "download", "-q", "--no-deps", "-d", tmp,
                               f"duckdb-extension-spatial=={version}"], capture_output=True, text=True)
    if proc.returncode == 0:
        return True, [version]
    # pip's error lists what the index has: keep the same-series releases, the nearest candidates.
    listed = re.search(r"from versions: ([^)]*)", proc.stderr)
    series = version.rsplit(".", 1)[0] + "."
    return False, [v.strip() for v in (listed.group(1) if listed else "").split(",")
                   if v.strip().startswith(series)]


def fmt_ratio(new: float | None, old: float | None) -> str:
    return f"{new / old:.2f}x" if new is not None and old else "-"


def print_table(versions: list[str], results: Results, spatial: Spatial, stats: dict[str, dict]) -> None:
    old, new = versions[0], versions[-1]
    head = ["step"] + [f"{v} s (median)" for v in versions] + [f"{v} peak MB" for v in versions]
    head += [f"s {new}/{old}", "per round", f"MB {new}/{old}"]
    rows = []
    for step in TIMED:
        res = [results[v][step] for v in versions]
        secs = [r.get("seconds") if r.get("ok") else None for r in res]
        mem = [r.get("peak_rss_mb") if r.get("ok") else None for r in res]
        cells = [f"{s:.2f}" if s is not None else "ERROR" for s in secs]
        cells += [f"{m:.0f}" if m is not None else "ERROR" for m in mem]
        st = stats[step]
        spread = (f"{st['pair_ratio_min']:.2f}-{st['pair_ratio_max']:.2f}" if st["pair_ratio_min"] is not None
                  else "-")
        rows.append([step, *cells, fmt_ratio(secs[-1], secs[0]), spread, fmt_ratio(mem[-1], mem[0])])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, [("-" * w) for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    print()
    # Errors, correctness numbers and API facts do not fit a numeric table: list them per version.
    for v in versions:
        print(f"[duckdb {v}]  baseline RSS (imports + connect): {results[v]['api_check'].get('base_rss_mb', '?')} MB")
        for step in [*TIMED, "api_check"]:
            outcome = results[v][step]
            text = json.dumps(outcome["detail"], ensure_ascii=False) if outcome.get("ok") else f"ERROR {outcome['error']}"
            print(f"  {step:18} {text}")
        found, same = spatial[v]
        series = v.rsplit(".", 1)[0] + ".x"
        text = "found" if found else f"not found (index has {', '.join(same) or 'none'} for {series})"
        print(f"  {'spatial wheel':18} pip download duckdb-extension-spatial=={v}: {text}")


def verdict(versions: list[str], results: Results, spatial: Spatial) -> str:
    old, new = versions[0], versions[-1]
    problems = []
    for step in TIMED:
        a, b = results[old][step], results[new][step]
        if a.get("ok") and not b.get("ok"):
            problems.append(f"{step} fails")
        elif a.get("ok") and b.get("ok"):
            if b["seconds"] > SLOWER * a["seconds"]:
                problems.append(f"{step} {b['seconds'] / a['seconds']:.1f}x slower")
            if b["peak_rss_mb"] > SLOWER * a["peak_rss_mb"]:
                problems.append(f"{step} {b['peak_rss_mb'] / a['peak_rss_mb']:.1f}x memory")
    api_old, api_new = (results[v]["api_check"].get("detail", {}) for v in (old, new))
    for call, ok in api_old.items():
        if ok == "yes" and api_new.get(call) != "yes":
            problems.append(f"{call} gone")
    if spatial[old][1] and not spatial[new][1]:
        problems.append(f"no spatial wheel for {new.rsplit('.', 1)[0]}.x")
    c_old, c_new = results[old]["cluster"], results[new]["cluster"]
    cluster = (f"cluster step {fmt_ratio(c_new.get('seconds'), c_old.get('seconds'))} time, "
               f"{fmt_ratio(c_new.get('peak_rss_mb'), c_old.get('peak_rss_mb'))} memory")
    if problems:
        return f"Verdict: keep duckdb {old}; {new}: {', '.join(problems)} ({cluster})."
    return f"Verdict: {new} shows no regression beyond {SLOWER}x against {old} ({cluster})."


TIMED_WHAT = ("seconds the workload step reports for its timed part (interpreter start, imports and "
              "generating its input excluded on every version)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=32_000, help="candidate pairs for the cluster step")
    parser.add_argument("--versions", nargs="+", default=["1.5.6", "2.0.0"])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/onenet-duckdb-bench"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rounds", "--repeat", type=int, default=3,
                        help="rounds per step, every version once per round in a fresh process")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per step before giving up")
    parser.add_argument("--json", type=Path, help="every run and statistic")
    args = parser.parse_args()
    pythons = {v: ensure_venv(args.cache, v) for v in args.versions}
    comps = []
    results: Results = {v: {} for v in pythons}
    stats: dict[str, dict] = {}
    for step in TIMED:
        comp = compare.run_rounds(step_sides(pythons, step, args), rounds=args.rounds, timed=TIMED_WHAT,
                                  measure="reported", title=f"duckdb step {step}")
        comps.append(comp)
        for v, res in summarise_step(comp).items():
            results[v][step] = res
        stats[step] = comp.stats(args.versions[-1], args.versions[0])
        print(comp.report([(args.versions[-1], args.versions[0])]), flush=True)
    for v, python in pythons.items():  # facts, not timings: once per version
        results[v]["api_check"] = run_step(python, "api_check", args)
    spatial: Spatial = {v: spatial_wheels(python, v) for v, python in pythons.items()}
    print()
    print_table(args.versions, results, spatial, stats)
    print()
    print(verdict(args.versions, results, spatial))
    if args.json:
        compare.write_json(args.json, comps, results=results)


if __name__ == "__main__":
    main()
