"""Start, stop and inspect the four simulated silos as separate processes, and move their clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from simulators import clock

SILOS = ("grid_registry", "hotline", "city_cases", "health_codes")
DEFAULT_PORTS = {"hotline": 18345, "city_cases": 18346}
MODULES = {
    "grid_registry": "simulators.grid_registry.writer",
    "hotline": "simulators.hotline.server",
    "city_cases": "simulators.city_cases.server",
    "health_codes": "simulators.health_codes.uploader",
}


class SimulatorError(RuntimeError):
    """A simulator could not be started, stopped or advanced; the message says which and why."""


@dataclass
class SiloStatus:
    name: str
    running: bool
    pid: int | None
    url: str | None


def _run_file(root: Path, name: str) -> Path:
    return Path(root) / "run" / f"{name}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); reap it if it has exited.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def _read_run_file(path: Path) -> dict:
    """What a running silo announced; {} if it has not (or is being replaced as we read)."""
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    except (OSError, ValueError):
        return {}


def status(root: Path) -> list[SiloStatus]:
    out = []
    for name in SILOS:
        path = _run_file(root, name)
        info = _read_run_file(path)
        pid = info.get("pid")
        running = pid is not None and _alive(int(pid))
        out.append(SiloStatus(name, running, pid if running else None, info.get("url") if running else None))
    return out


def _check_root(root: Path) -> None:
    if not (Path(root) / "manifest.json").exists():
        raise SimulatorError(f"{root} holds no simulated district; run `onenet simulate --out {root}` first")


def _names(only: str | None) -> tuple[str, ...]:
    if only is None:
        return SILOS
    if only not in SILOS:
        raise SimulatorError(f"unknown silo {only!r}; choose one of {', '.join(SILOS)}")
    return (only,)


def up(root: Path, only: str | None = None, ports: dict[str, int] | None = None,
       timeout: float = 60.0) -> list[SiloStatus]:
    """Start the silos (all, or `only` one) in the background; return once each answers."""
    root = Path(root).resolve()
    _check_root(root)
    ports = {**DEFAULT_PORTS, **(ports or {})}
    running = {s.name for s in status(root) if s.running}
    (root / "run").mkdir(exist_ok=True)
    started = []
    for name in _names(only):
        if name in running:
            continue
        cmd = [sys.executable, "-m", MODULES[name], "--root", str(root)]
        if name in ports:
            cmd += ["--port", str(ports[name])]
        log = open(root / "run" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        started.append((name, proc))
    deadline = time.monotonic() + timeout
    for name, proc in started:
        _wait_ready(root, name, proc, deadline)
    return [s for s in status(root) if s.name in _names(only)]


def _wait_ready(root: Path, name: str, proc: subprocess.Popen, deadline: float) -> None:
    path = _run_file(root, name)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (root / "run" / f"{name}.log").read_text(encoding="utf-8", errors="replace")[-800:]
            raise SimulatorError(f"{name} simulator exited with code {proc.returncode}:\n{tail}")
        info = _read_run_file(path)
        if info:
            if "url" not in info:
                return
            try:
                if requests.get(info["url"] + "/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
        time.sleep(0.1)
    proc.terminate()
    raise SimulatorError(f"{name} simulator did not become ready in time; see {root}/run/{name}.log")


def down(root: Path, only: str | None = None, timeout: float = 10.0) -> list[str]:
    """Stop running silos with SIGTERM (SIGKILL after `timeout`); return the names stopped."""
    stopped = []
    for s in status(root):
        if s.name not in _names(only):
            continue
        if s.running and s.pid:
            os.kill(s.pid, signal.SIGTERM)
            end = time.monotonic() + timeout
            while _alive(s.pid) and time.monotonic() < end:
                time.sleep(0.05)
            if _alive(s.pid):
                os.kill(s.pid, signal.SIGKILL)
            stopped.append(s.name)
        _run_file(root, s.name).unlink(missing_ok=True)
    return stopped


def advance(root: Path, to_day: int) -> int:
    """Move the simulated clock to `to_day` (forward only); apply the day's changes if no silo process does."""
    root = Path(root)
    _check_root(root)
    days = int(clock.manifest(root)["days"])
    current, minute = clock.read_clock(root)
    first = current + 1 if minute else current  # minutes past a day's end: that day is behind us
    if not first <= to_day < days:
        raise SimulatorError(f"day must be between {first} (the clock is at day {current}"
                             f"{f' + {minute} min' if minute else ''}) and {days - 1}, got {to_day}")
    clock.write_day(root, to_day)
    _follow_day(root, to_day)
    return to_day


def advance_minutes(root: Path, minutes: int) -> tuple[int, int]:
    """Move the simulated clock `minutes` forward (the 15-minute hotline cycle); return (day, minute).

    Crossing a day's end does that day's work as `advance` does (registry changes, health drops).
    """
    root = Path(root)
    _check_root(root)
    if minutes < 1:
        raise SimulatorError(f"minutes must be at least 1, got {minutes}")
    days = int(clock.manifest(root)["days"])
    day, minute = clock.read_clock(root)
    total = day * clock.MINUTES_PER_DAY + minute + minutes
    new_day, new_minute = divmod(total, clock.MINUTES_PER_DAY)
    if (new_day, new_minute) > (days - 1, 0):
        raise SimulatorError(f"the district's data ends with day {days - 1}; the clock is at day {day} + "
                             f"{minute} min, {minutes} more minutes would pass it")
    clock.write_clock(root, new_day, new_minute)
    if new_day > day:
        _follow_day(root, new_day)
    return new_day, new_minute


def _follow_day(root: Path, to_day: int) -> None:
    """Apply the day's changes if no silo process does (the followers react to the clock themselves)."""
    from simulators.grid_registry import registry
    from simulators.health_codes import drop

    running = {s.name for s in status(root) if s.running}
    if "grid_registry" not in running:
        registry.advance(root, to_day)
    else:
        # Return once the registry shows the day: a sync started right after must see all of it.
        deadline = time.monotonic() + 120
        while registry.applied_day(root) < to_day:
            if time.monotonic() > deadline:
                raise SimulatorError(f"the grid registry writer has not applied day {to_day} after 120 s; "
                                     f"see {root / 'run'} for its log")
            time.sleep(0.05)
    if "health_codes" not in running:
        drop.deliver_until(root, to_day)
