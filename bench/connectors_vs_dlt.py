"""Benchmark: each connector's initial full load against dlt's verified sources and DuckDB's read_csv, side by side."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import requests

if not __package__:  # run as a file (python bench/connectors_vs_dlt.py): the repository must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import compare  # noqa: E402
from simulators import clock  # noqa: E402
from simulators.district.generate import generate  # noqa: E402
from simulators.health_codes import drop  # noqa: E402

OURS_SIDE = Path(__file__).with_name("ours_side.py")
DLT_SIDE = Path(__file__).with_name("dlt_side.py")
PEER_SIDE = Path(__file__).with_name("peer_side.py")
DLT_VERSION = "1.31.0"
# The peer's venv gets our DuckDB version, so the destination engine is the same on both sides.
DLT_PACKAGES = [f"dlt[duckdb]=={DLT_VERSION}", f"duckdb=={duckdb.__version__}", "sqlalchemy", "pyarrow",
                "pandas", "openpyxl", "connectorx"]
SERVERS = {"hotline": "simulators.hotline.server", "city_cases": "simulators.city_cases.server"}
SECRETS = {"hotline": "dev-hotline-token", "city_cases": "dev-city-key"}
CONNECTORS = ("hotline", "city_cases", "grid_registry", "health_codes")


@dataclass
class Row:
    connector: str
    peer: str
    rows: int
    target: float  # ours rows/s must be at least this multiple of the peer's
    stats: dict  # compare.summarize of ours against the peer (seconds)

    @property
    def speed(self) -> float | None:
        """Ours rows/s over the peer's, from the medians (same rows on both sides): peer s / ours s."""
        r = self.stats["ratio_of_medians"]
        return 1 / r if r else None

    @property
    def speed_range(self) -> tuple[float, float] | None:
        lo, hi = self.stats["pair_ratio_min"], self.stats["pair_ratio_max"]
        return (1 / hi, 1 / lo) if lo else None


def ensure_district(root: Path, residents: int, days: int) -> dict:
    """The district at `root`, generated (about 100 s at 1.3M residents) unless it matches already."""
    path = root / "manifest.json"
    if path.exists():
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if (manifest["residents"], manifest["days"], manifest["seed"]) == (residents, days, 1):
            return manifest
    print(f"generating {residents:,} residents x {days} days into {root} ...", flush=True)
    return generate(root, residents=residents, seed=1, days=days)


def ensure_dlt_venv(venv: Path) -> Path:
    """The python of a throwaway venv holding dlt; dlt never enters our lock file."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import dlt, duckdb, connectorx; assert dlt.__version__ == '{DLT_VERSION}' "
             f"and duckdb.__version__ == '{duckdb.__version__}'"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} ({' '.join(DLT_PACKAGES)}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                          *DLT_PACKAGES], capture_output=True, text=True)
    if pip.returncode != 0:
        raise RuntimeError(f"pip install into {venv} failed: {pip.stderr.strip()[-500:]}")
    return python


def start_server(root: Path, name: str, log: Path) -> tuple[subprocess.Popen, str]:
    """Start one HTTP simulator ourselves: runner.up cannot pass --rate-limit 0."""
    run_file = root / "run" / f"{name}.json"
    run_file.unlink(missing_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", SERVERS[name], "--root", str(root), "--port", "0",
                                 "--rate-limit", "0"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} simulator exited with code {proc.returncode}; see {log}")
        if run_file.exists():
            url = json.loads(run_file.read_text(encoding="utf-8"))["url"]
            try:
                if requests.get(url + "/health", timeout=2).ok:
                    return proc, url
            except requests.RequestException:
                pass
        time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"{name} simulator did not answer within 60 s; see {log}")


def prepare_drops(root: Path, work: Path, health_day: int) -> tuple[Path, Path, Path, Path]:
    """Folders for the file connector: days 0..health_day, the biggest file alone, and its UTF-8 copy."""
    drop.deliver_until(root, health_day)
    # Only the files of days 0..health_day, even if the drop folder has later days from another run.
    wanted = {p.name for d in range(health_day + 1) for p in drop.outbox_dir(root, d).glob("健康码日报_*")}
    files = sorted(p for p in drop.drop_dir(root).iterdir() if p.name in wanted)
    folders = [work / name for name in ("drop_days", "drop_big_gb18030", "drop_big_utf8")]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for p in files:
        os.link(p, folders[0] / p.name)
    big = max(files, key=lambda p: p.stat().st_size)
    os.link(big, folders[1] / big.name)
    utf8 = folders[2] / big.name
    # DuckDB cannot decode GB18030 without its encodings extension (no download here): compare on UTF-8.
    utf8.write_text(big.read_bytes().decode("gb18030"), encoding="utf-8", newline="")
    return folders[0], folders[1], folders[2], utf8


def ours_side(source: str, uri: str, dest: Path) -> compare.Side:
    """One initial load into a new warehouse; ours_side times sync() only."""
    return compare.Side("ours", [sys.executable, str(OURS_SIDE), source, uri, str(dest)], timeout=3600)


def dlt_side(python: Path, source: str, url: str, work: Path, budget: float, name: str, *,
             backend: str = "pyarrow", file_format: str = "parquet") -> compare.Side:
    """One initial load with dlt in its own venv, into its own DuckDB file, with no saved state."""
    tag = f"{source}_{backend}_{file_format}"
    dest, pipelines = work / f"dlt_{tag}.duckdb", work / f"dlt_pipelines_{tag}"

    def clean() -> None:
        dest.unlink(missing_ok=True)
        shutil.rmtree(pipelines, ignore_errors=True)  # no saved state: an initial load

    return compare.Side(name, [str(python), str(DLT_SIDE), source, "--url", url, "--secret", SECRETS.get(source, ""),
                               "--dest", str(dest), "--pipelines-dir", str(pipelines), "--backend", backend,
                               "--loader-file-format", file_format], timeout=budget, before=clean)


def print_table(rows: list[Row]) -> None:
    head = ["connector", "peer", "rows", "ours s (median)", "peer s (median)", "pairs", "speed ratio (median)",
            "per pair", "target met?"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for r in rows:
        s, speed, rng = r.stats, r.speed, r.speed_range
        verdict = "n/a" if speed is None else ("yes" if speed >= r.target else "NO")
        target = f"≥ {r.target:g}x" if r.target >= 1 else f"within {1 / r.target:g}x"
        print(f"| {r.connector} | {r.peer} | {r.rows:,} | {_f(s['median_a'])} | {_f(s['median_b'])} | "
              f"{s['pairs']} | {_f(speed)}x | {_f(rng[0]) + '–' + _f(rng[1]) if rng else 'n/a'} | "
              f"{verdict} ({target}) |")


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


TIMED = ("seconds each side reports for one initial full load into a new DuckDB file: ours sync(), dlt "
         "pipeline.run(), read_csv the create-table statement; interpreter start, imports, migrations and "
         "pipeline setup excluded on every side")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--district", type=Path, default=Path("/tmp/onenet-bench-dlt/d"))
    parser.add_argument("--residents", type=int, default=1_300_000)
    parser.add_argument("--days", type=int, default=30, help="days generated; the HTTP clock goes to the last")
    parser.add_argument("--health-day", type=int, default=1, help="health-code files of days 0..this")
    parser.add_argument("--work", type=Path, default=Path("/tmp/onenet-bench-dlt/run"))
    parser.add_argument("--dlt-venv", type=Path, default=Path("/tmp/onenet-dlt-venv"))
    parser.add_argument("--dlt-budget", type=float, default=300, help="seconds one dlt load may take")
    parser.add_argument("--pairs", "--repeat", type=int, default=3,
                        help="rounds: every side once per round, in fresh processes, the order rotating")
    parser.add_argument("--only", nargs="+", choices=CONNECTORS, default=list(CONNECTORS))
    parser.add_argument("--json", type=Path, help="every run and statistic (default WORK/connectors_vs_dlt.json)")
    args = parser.parse_args()
    root, work = args.district.resolve(), args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    manifest = ensure_district(root, args.residents, args.days)
    python = ensure_dlt_venv(args.dlt_venv)
    # The HTTP silos serve everything up to the last day: the whole 30-day ticket and case history.
    clock.write_day(root, manifest["days"] - 1)
    rows: list[Row] = []
    versions: dict = {}
    floors: list[str] = []
    comparisons: list[compare.Comparison] = []

    def run(label: str, ours: compare.Side, peers: list[compare.Side], target: float,
            extra: Sequence[compare.Side] = ()) -> compare.Comparison:
        """Ours, every peer and any extra side in rounds; a Row per peer from the medians."""
        print(f"{label}:", flush=True)
        comp = compare.run_rounds([ours, *peers, *extra], rounds=args.pairs, timed=TIMED, measure="reported",
                                  title=label, log_dir=work)
        comparisons.append(comp)
        print(comp.report(), flush=True)
        ours_rows = {r.report.get("rows") for r in comp.runs if r.side == "ours" and r.ok and r.report}
        for peer in peers:
            done = [r for r in comp.runs if r.side == peer.name and r.ok and r.report]
            reports = [r.report for r in done if r.report]
            for rep in reports:
                versions.update({k: rep[k] for k in ("dlt", "duckdb", "connectorx") if k in rep})
            peer_rows = {rep.get("rows") for rep in reports}
            if peer_rows and peer_rows != ours_rows:
                print(f"  WARNING: rows differ, ours {ours_rows} vs {peer.name} {peer_rows}")
            rows.append(Row(label, peer.name, next(iter(ours_rows), 0) or 0, target, comp.stats("ours", peer.name)))
        return comp

    for source in [s for s in ("hotline", "city_cases") if s in args.only]:
        proc, url = start_server(root, source, work / f"{source}.log")
        try:
            uri = url.replace("http://", f"http://:{SECRETS[source]}@")
            floor = compare.Side("HTTP floor", [sys.executable, str(PEER_SIDE), "http_floor", source, url,
                                                SECRETS[source]])
            # dlt's duckdb default file format is insert_values; parquet is its fast path: both.
            comp = run(source, ours_side(source, uri, work / f"ours_{source}.duckdb"),
                       [dlt_side(python, source, url, work, args.dlt_budget, f"dlt rest_api ({fmt})",
                                 file_format=fmt) for fmt in ("parquet", "insert_values")], 5, [floor])
            med = [t for t in comp.timings("HTTP floor") if t is not None]
            floors.append(f"{source} {compare.median(med):.2f} s (median; {min(med):.2f}–{max(med):.2f})"
                          if med else f"{source} failed")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if "grid_registry" in args.only:
        url = f"sqlite:///{root / 'grid_registry' / 'registry.sqlite'}"
        run("grid_registry", ours_side("grid_registry", url, work / "ours_grid_registry.duckdb"),
            [dlt_side(python, "grid_registry", url, work, args.dlt_budget, f"dlt sql_database ({b})", backend=b)
             for b in ("connectorx", "pyarrow")], 5)
    if "health_codes" in args.only:
        days, big_gb, big_utf8, utf8_file = prepare_drops(root, work, args.health_day)
        run(f"health_codes, days 0..{args.health_day}",
            ours_side("health_codes", f"file://{days}?stable_seconds=0", work / "ours_health_codes.duckdb"),
            [dlt_side(python, "health_codes", f"file://{days}", work, args.dlt_budget,
                      "dlt filesystem+read_csv (parquet)")], 5)
        for name, folder in (("UTF-8 copy", big_utf8), ("GB18030 original", big_gb)):
            run(f"health_codes, biggest file ({name})",
                ours_side("health_codes", f"file://{folder}?stable_seconds=0", work / "ours_health_codes_big.duckdb"),
                [compare.Side("duckdb read_csv (UTF-8 copy)", [sys.executable, str(PEER_SIDE), "read_csv",
                                                               str(utf8_file), str(work / "read_csv.duckdb")])], 0.5)

    print(f"\n{args.residents:,} residents, {manifest['days']} days; health-code files of days 0..{args.health_day}. "
          f"Initial full loads, {args.pairs} rounds in fresh processes, order rotating; timed: {TIMED}. "
          f"speed ratio = peer median s / ours median s (= ours rows/s over the peer's). A run past --dlt-budget "
          f"is killed and left out of its side's median. Ours: duckdb {duckdb.__version__}; peer venv: {versions}. "
          f"Bare HTTP loop over the same pages (the floor for both sides): {'; '.join(floors) or '-'}.\n")
    print_table(rows)
    out = args.json or work / "connectors_vs_dlt.json"
    compare.write_json(out, comparisons, residents=args.residents, days=manifest["days"], versions=versions,
                       floors=floors)
    print(f"\nruns and statistics: {out}")


if __name__ == "__main__":
    main()
