"""A silo process that follows the simulated clock: the health-code uploader and the registry's writer.

Each polls ROOT/clock.json and, when the day changes, does what that silo does on a new day
(deliver the day's export files; apply the day's resident changes). It announces itself in
ROOT/run/<name>.json like the HTTP simulators, and stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from simulators import clock

POLL_SECONDS = 0.3


def follow(root: Path, name: str, on_day: Callable[[int], object], stop: threading.Event) -> None:
    """Call `on_day(day)` now and whenever the clock changes, until `stop` is set."""
    seen = None
    while not stop.is_set():
        day = clock.read_day(root)
        if day != seen:
            on_day(day)
            seen = day
        stop.wait(POLL_SECONDS)


def main(argv: Sequence[str] | None, name: str, make_action: Callable[[Path], Callable[[int], object]]) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m simulators.{name}.follower",
                                     description=f"Run the {name} simulator: follow the simulated clock.")
    parser.add_argument("--root", type=Path, required=True, help="the simulated district folder")
    args = parser.parse_args(argv)
    root = args.root
    if not (root / "manifest.json").exists():
        parser.error(f"{root} holds no simulated district (run `onenet simulate` first)")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run = root / "run" / f"{name}.json"
    run.parent.mkdir(parents=True, exist_ok=True)
    # Write-then-rename: `onenet simulators status` may read the file at any moment.
    tmp = run.with_suffix(".tmp")
    tmp.write_text(json.dumps({"name": name, "pid": os.getpid(), "root": str(root)}), encoding="utf-8")
    tmp.replace(run)
    try:
        follow(root, name, make_action(root), stop)
    finally:
        run.unlink(missing_ok=True)
    return 0

