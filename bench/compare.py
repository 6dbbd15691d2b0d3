"""One way to compare two (or more) sides: runs alternate in fresh processes, medians and their spread.

Every side-by-side bench runs its sides through `run_rounds`: each round runs every side once, each
run a new process (a command), the order rotating per round when `alternate` (A B, B A, A B, ...),
so a side never always runs first on a machine whose load drifts. Each run records its wall time,
the load average before and after, its peak RSS and, when its last stdout line is a JSON object with
"seconds", the time the side measured itself. `summarize` and friends are pure statistics on lists of
timings; `Comparison.report` prints the table and `to_json` gives the raw runs.

The caller must say what is timed (`timed=`): process wall time (interpreter start, imports and input
loading included on both sides) or the sides' own seconds (stating what they exclude). A ratio of
timings that do not cover the same work is not a ratio of speeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Measure = Literal["wall", "reported"]
REPO = Path(__file__).resolve().parents[1]
# A process's peak RSS on Linux carries over from before its exec: a side forked from this (large)
# process would report at least this process's size. So a small interpreter forks the side and
# writes the side's own peak (KiB) to a file: `python -c LAUNCHER PEAK_FILE CMD...`.
LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


# ---- statistics (pure) ----

def median(values: Sequence[float]) -> float:
    """The median (the mean of the middle two for an even count)."""
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def pair_ratios(a: Sequence[float | None], b: Sequence[float | None]) -> list[float]:
    """a[i] / b[i] for every round where both sides have a timing (a failed run is None)."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} timings against {len(b)}: rounds must pair up")
    return [x / y for x, y in zip(a, b, strict=True) if x is not None and y is not None]


def summarize(a: Sequence[float | None], b: Sequence[float | None]) -> dict:
    """Median of each side, ratio of the medians (a / b) and the range of the per-round ratios."""
    ok_a = [x for x in a if x is not None]
    ok_b = [x for x in b if x is not None]
    ratios = pair_ratios(a, b)
    med_a = median(ok_a) if ok_a else None
    med_b = median(ok_b) if ok_b else None
    return {
        "n_a": len(ok_a), "n_b": len(ok_b), "pairs": len(ratios),
        "median_a": med_a, "median_b": med_b,
        "ratio_of_medians": med_a / med_b if med_a is not None and med_b else None,
        "pair_ratio_min": min(ratios) if ratios else None,
        "pair_ratio_max": max(ratios) if ratios else None,
        "pair_ratios": ratios,
        "a": list(a), "b": list(b),
    }


def order(n_sides: int, rounds: int, alternate: bool = True) -> list[list[int]]:
    """Side indexes in run order per round: rotated by one each round when `alternate`."""
    if n_sides < 1 or rounds < 1:
        raise ValueError("need at least 1 side and 1 round")
    base = list(range(n_sides))
    return [base[r % n_sides:] + base[:r % n_sides] if alternate else list(base) for r in range(rounds)]


# ---- running ----

@dataclass
class Side:
    """One side: a command run in a fresh process (cwd defaults to the repository root)."""

    name: str
    cmd: list[str]
    env: dict[str, str] | None = None  # added to os.environ
    cwd: Path | None = None
    timeout: float | None = None  # a run past it is killed and counts as failed
    before: Callable[[], None] | None = None  # untimed, before each run (e.g. remove the last output)


@dataclass
class Run:
    side: str
    round: int
    position: int  # 0 = ran first in its round
    wall_s: float
    reported_s: float | None
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    peak_mb: float
    returncode: int
    report: dict | None = None  # the side's JSON line
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.error


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "+-_." else "_" for c in name)


def parse_report(stdout: str) -> dict | None:
    """The last stdout line that is a JSON object, or None."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None
    return None


def run_once(side: Side, rnd: int, position: int, log_dir: Path | None = None) -> Run:
    """Run one side in a new process: its wall time (launcher included), stdout's JSON, its peak RSS."""
    if side.before:
        side.before()
    env = {**os.environ, **(side.env or {})}
    err_path = (log_dir / f"{_safe(side.name)}.r{rnd}.stderr") if log_dir else None
    with tempfile.TemporaryFile("w+") as out, \
            (err_path.open("w+") if err_path else tempfile.TemporaryFile("w+")) as err, \
            tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        # Its own process group, so a timeout kills its children too (servers, DuckDB helpers).
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, peak.name, *side.cmd], stdout=out, stderr=err,
                                env=env, cwd=side.cwd or REPO, start_new_session=True)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(side.timeout, kill) if side.timeout else None
        if timer:
            timer.start()
        _, status, _ = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if timer:
            timer.cancel()
        load_after = os.getloadavg()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read()
        err.seek(0)
        tail = " | ".join(err.read().strip().splitlines()[-3:])
        peak_kib = peak.read().strip()
    report = parse_report(stdout)
    reported = report.get("seconds") if report else None
    error = ""
    if timed_out.is_set():
        error = f"timed out after {side.timeout:.0f} s"
    elif proc.returncode != 0:
        error = f"exit {proc.returncode}: {tail}"
    return Run(side=side.name, round=rnd, position=position, wall_s=wall,
               reported_s=float(reported) if isinstance(reported, int | float) else None,
               load_before=load_before, load_after=load_after,
               peak_mb=int(peak_kib) / 1024 if peak_kib else 0.0,  # Linux: KiB; none if killed
               returncode=proc.returncode, report=report, error=error)


@dataclass
class Comparison:
    """The runs of a set of sides and what was timed; statistics on demand."""

    title: str
    timed: str
    measure: Measure
    sides: list[str]
    runs: list[Run] = field(default_factory=list)

    def timings(self, side: str) -> list[float | None]:
        """This side's timing per round (None for a failed run or a run that reported no seconds)."""
        by_round = {r.round: r for r in self.runs if r.side == side}
        out: list[float | None] = []
        for rnd in sorted({r.round for r in self.runs}):
            run = by_round.get(rnd)
            value = None if run is None or not run.ok else (run.wall_s if self.measure == "wall" else run.reported_s)
            out.append(value)
        return out

    def stats(self, a: str, b: str) -> dict:
        """summarize() of side a against side b (ratio = a / b)."""
        return {"a_side": a, "b_side": b, **summarize(self.timings(a), self.timings(b))}

    def to_json(self, pairs: Sequence[tuple[str, str]] | None = None) -> dict:
        pairs = pairs or [(self.sides[0], s) for s in self.sides[1:]]
        return {"title": self.title, "timed": self.timed, "measure": self.measure, "sides": self.sides,
                "stats": [self.stats(a, b) for a, b in pairs], "runs": [asdict(r) for r in self.runs]}

    def report(self, pairs: Sequence[tuple[str, str]] | None = None) -> str:
        """The runs and the summary as printable text."""
        pairs = pairs or [(self.sides[0], s) for s in self.sides[1:]]
        width = max(len(s) for s in self.sides)
        lines = [f"== {self.title}", f"timed: {self.timed} ({self.measure})",
                 f"{'round':>5} {'side':<{width}} {'wall s':>8} {'own s':>8} {'load before':>11} "
                 f"{'load after':>10} {'peak MB':>8}  note"]
        for r in self.runs:
            own = f"{r.reported_s:8.2f}" if r.reported_s is not None else f"{'-':>8}"
            lines.append(f"{r.round + 1:>5} {r.side:<{width}} {r.wall_s:8.2f} {own} {r.load_before[0]:11.2f} "
                         f"{r.load_after[0]:10.2f} {r.peak_mb:8,.0f}  {r.error}")
        for a, b in pairs:
            s = self.stats(a, b)
            lines.append(summary_line(a, b, s))
        return "\n".join(lines)


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def summary_line(a: str, b: str, s: dict) -> str:
    """One line: both medians, the ratio of medians and the per-round range."""
    return (f"{a} / {b}: median {_fmt(s['median_a'])} s vs {_fmt(s['median_b'])} s, "
            f"ratio of medians {_fmt(s['ratio_of_medians'], '.3f')}, per-round ratios "
            f"{_fmt(s['pair_ratio_min'], '.3f')}-{_fmt(s['pair_ratio_max'], '.3f')} "
            f"({s['pairs']} pairs; runs ok {s['n_a']}/{s['n_b']})")


def run_rounds(sides: Sequence[Side], *, rounds: int = 3, timed: str, measure: Measure = "wall",
               alternate: bool = True, title: str = "", log_dir: Path | None = None,
               progress: bool = True) -> Comparison:
    """Run every side once per round in fresh processes, in rotating order; at least 3 rounds by default."""
    if not timed.strip():
        raise ValueError("say what is timed, e.g. timed='process wall incl. imports and input loading'")
    names = [s.name for s in sides]
    if len(set(names)) != len(names):
        raise ValueError(f"side names must differ: {names}")
    comp = Comparison(title=title or " vs ".join(names), timed=timed, measure=measure, sides=names)
    for rnd, idxs in enumerate(order(len(sides), rounds, alternate)):
        for pos, i in enumerate(idxs):
            run = run_once(sides[i], rnd, pos, log_dir)
            comp.runs.append(run)
            if progress:
                own = f", own {run.reported_s:.2f} s" if run.reported_s is not None else ""
                print(f"  round {rnd + 1}/{rounds} {run.side}: {run.wall_s:.2f} s wall{own}, load "
                      f"{run.load_before[0]:.2f}->{run.load_after[0]:.2f}, peak {run.peak_mb:,.0f} MB"
                      f"{'  ' + run.error if run.error else ''}", flush=True)
    return comp


def write_json(path: Path, comparisons: Sequence[Comparison], **extra: object) -> None:
    """All comparisons of a bench (raw runs included) in one JSON file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**extra, "comparisons": [c.to_json() for c in comparisons]}, indent=1,
                               default=str), encoding="utf-8")
