"""Benchmark: each connector's initial full load against dlt's verified sources and DuckDB's read_csv, side by side."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import duckdb
import requests

from simulators import clock
from simulators.district.generate import generate
from simulators.health_codes import drop

OURS_SIDE = Path(__file__).with_name("ours_side.py")
DLT_SIDE = Path(__file__).with_name("dlt_side.py")
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
    ours_s: float
    peer_rows: int | None  # None: the peer did not finish within its budget
    peer_s: float
    target: float  # ours rows/s must be at least this multiple of the peer's

    @property
    def peer_rate(self) -> float:
        # Over budget, the peer's rows/s is at most rows / budget, so the ratio is a lower bound.
        return (self.peer_rows if self.peer_rows is not None else self.rows) / self.peer_s

    @property
    def ratio(self) -> float:
        return (self.rows / self.ours_s) / self.peer_rate


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


def run_side(cmd: list[str], what: str, budget: float) -> dict:
    """Run one side's load in its own process; {"rows": None} if it did not finish within `budget`."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        return {"rows": None, "seconds": budget}
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_ours(source: str, uri: str, dest: Path) -> dict:
    """One initial load into a new warehouse; ours_side times sync() only."""
    return run_side([sys.executable, str(OURS_SIDE), source, uri, str(dest)], f"our {source}", 3600)


def run_dlt(python: Path, source: str, url: str, work: Path, budget: float, *,
            backend: str = "pyarrow", file_format: str = "parquet") -> dict:
    """One initial load with dlt in its own venv, into its own DuckDB file."""
    tag = f"{source}_{backend}_{file_format}"
    dest, pipelines = work / f"dlt_{tag}.duckdb", work / f"dlt_pipelines_{tag}"
    dest.unlink(missing_ok=True)
    shutil.rmtree(pipelines, ignore_errors=True)  # no saved state: an initial load
    return run_side([str(python), str(DLT_SIDE), source, "--url", url, "--secret", SECRETS.get(source, ""),
                     "--dest", str(dest), "--pipelines-dir", str(pipelines), "--backend", backend,
                     "--loader-file-format", file_format], f"dlt {source}", budget)


def run_read_csv(path: Path, dest: Path) -> dict:
    """DuckDB's own CSV reader landing the file as text into a new database file, as our landing does."""
    dest.unlink(missing_ok=True)
    con = duckdb.connect(str(dest))
    try:
        t0 = time.perf_counter()
        con.execute("create table exports as select * from read_csv(?, all_varchar = true)", [str(path)])
        seconds = time.perf_counter() - t0
        rows = con.execute("select count(*) from exports").fetchall()[0][0]
    finally:
        con.close()
    return {"rows": rows, "seconds": seconds}


def print_table(rows: list[Row]) -> None:
    head = ["connector", "peer", "rows", "ours s", "ours rows/s", "peer s", "peer rows/s", "ratio", "target met?"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for r in rows:
        over = r.peer_rows is None
        verdict = "yes" if r.ratio >= r.target else "NO"
        target = f"≥ {r.target:g}x" if r.target >= 1 else f"within {1 / r.target:g}x"
        print(f"| {r.connector} | {r.peer} | {r.rows:,} | {r.ours_s:.2f} | {r.rows / r.ours_s:,.0f} | "
              f"{'> ' if over else ''}{r.peer_s:.2f} | {'< ' if over else ''}{r.peer_rate:,.0f} | "
              f"{'≥ ' if over else ''}{r.ratio:.2f}x | {verdict} ({target}) |")


def http_floor(source: str, url: str) -> dict:
    """A bare requests loop over the same pages (500 each): what the simulator and HTTP cost alone."""
    path, rows_key, next_key, size = {"hotline": ("/api/v1/tickets", "data", "next_cursor", "page_size"),
                                      "city_cases": ("/api/cases", "cases", "cursor", "limit")}[source]
    auth = {"Authorization": f"Bearer {SECRETS[source]}"} if source == "hotline" else {"X-Api-Key": SECRETS[source]}
    rows, params = 0, {size: 500}
    t0 = time.perf_counter()
    with requests.Session() as session:
        while True:
            page = session.get(url + path, params=params, headers=auth, timeout=30).json()
            rows += len(page[rows_key])
            if not page["has_more"]:
                break
            params = {size: 500, "cursor": page[next_key]}
    return {"rows": rows, "seconds": time.perf_counter() - t0}


def best_of(runs: list[dict]) -> dict:
    """The fastest run: the one the machine disturbed least (another job may share these 2 cores)."""
    return min(runs, key=lambda r: r["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--district", type=Path, default=Path("/tmp/onenet-bench-dlt/d"))
    parser.add_argument("--residents", type=int, default=1_300_000)
    parser.add_argument("--days", type=int, default=30, help="days generated; the HTTP clock goes to the last")
    parser.add_argument("--health-day", type=int, default=1, help="health-code files of days 0..this")
    parser.add_argument("--work", type=Path, default=Path("/tmp/onenet-bench-dlt/run"))
    parser.add_argument("--dlt-venv", type=Path, default=Path("/tmp/onenet-dlt-venv"))
    parser.add_argument("--dlt-budget", type=float, default=300, help="seconds one dlt load may take")
    parser.add_argument("--repeat", type=int, default=2, help="runs per load, sides taking turns; the fastest counts")
    parser.add_argument("--only", nargs="+", choices=CONNECTORS, default=list(CONNECTORS))
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

    def compare(label: str, ours: Callable[[], dict], peers: dict[str, Callable[[], dict]], target: float) -> None:
        """Each round runs ours, then every peer; the fastest run of each side is compared."""
        ours_runs: list[dict] = []
        peer_runs: dict[str, list[dict]] = {name: [] for name in peers}
        for _ in range(args.repeat):
            ours_runs.append(ours())
            for name, run in peers.items():
                peer_runs[name].append(run())
        mine = best_of(ours_runs)
        print(f"  {label}: ours {mine['rows']:,} rows, " + ", ".join(f"{r['seconds']:.2f}" for r in ours_runs) + " s",
              flush=True)
        for name, runs in peer_runs.items():
            theirs = best_of(runs)
            versions.update({k: theirs[k] for k in ("dlt", "duckdb", "connectorx") if k in theirs})
            rows.append(Row(label, name, mine["rows"], mine["seconds"], theirs["rows"], theirs["seconds"], target))
            print(f"    {name}: {theirs['rows'] if theirs['rows'] is None else format(theirs['rows'], ',')} rows, "
                  + ", ".join(f"{r['seconds']:.2f}" for r in runs) + " s", flush=True)

    def dlt(source: str, url: str, **options: str) -> Callable[[], dict]:
        return partial(run_dlt, python, source, url, work, args.dlt_budget, **options)

    for source in [s for s in ("hotline", "city_cases") if s in args.only]:
        proc, url = start_server(root, source, work / f"{source}.log")
        try:
            uri = url.replace("http://", f"http://:{SECRETS[source]}@")
            # dlt's duckdb default file format is insert_values; parquet is its fast path: both.
            compare(source, partial(run_ours, source, uri, work / f"ours_{source}.duckdb"),
                    {f"dlt rest_api ({fmt})": dlt(source, url, file_format=fmt)
                     for fmt in ("parquet", "insert_values")}, 5)
            floor = best_of([http_floor(source, url) for _ in range(args.repeat)])
            floors.append(f"{source} {floor['seconds']:.2f} s")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if "grid_registry" in args.only:
        url = f"sqlite:///{root / 'grid_registry' / 'registry.sqlite'}"
        compare("grid_registry", partial(run_ours, "grid_registry", url, work / "ours_grid_registry.duckdb"),
                {f"dlt sql_database ({b})": dlt("grid_registry", url, backend=b) for b in ("connectorx", "pyarrow")}, 5)
    if "health_codes" in args.only:
        days, big_gb, big_utf8, utf8_file = prepare_drops(root, work, args.health_day)
        compare(f"health_codes, days 0..{args.health_day}",
                partial(run_ours, "health_codes", f"file://{days}?stable_seconds=0", work / "ours_health_codes.duckdb"),
                {"dlt filesystem+read_csv (parquet)": dlt("health_codes", f"file://{days}")}, 5)
        for name, folder in (("UTF-8 copy", big_utf8), ("GB18030 original", big_gb)):
            compare(f"health_codes, biggest file ({name})",
                    partial(run_ours, "health_codes", f"file://{folder}?stable_seconds=0",
                            work / "ours_health_codes_big.duckdb"),
                    {"duckdb read_csv (UTF-8 copy)": partial(run_read_csv, utf8_file, work / "read_csv.duckdb")}, 0.5)

    print(f"\n{args.residents:,} residents, {manifest['days']} days; health-code files of days 0..{args.health_day}. "
          f"Initial full loads, best of {args.repeat}, imports excluded on both sides; ratio = ours rows/s / peer "
          f"rows/s. Ours: duckdb {duckdb.__version__}; peer venv: {versions}. Bare HTTP loop over the same pages "
          f"(the floor for both sides): {'; '.join(floors) or '-'}. Load average at the end: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}.\n")
    print_table(rows)


if __name__ == "__main__":
    main()
