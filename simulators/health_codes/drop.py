"""Move the health-code outbox into the drop folder as the simulated clock reaches each day."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from simulators import clock

PLAN_FILE = "_delivery.json"  # written by plan_day, never delivered
LEDGER_FILE = "_delivered.json"  # what deliver already handed over, per outbox day


def outbox_dir(root: Path, day: int) -> Path:
    """ROOT/health_codes/outbox/<DDD>: what the platform hands over on simulated day `day`."""
    return Path(root) / "health_codes" / "outbox" / f"{day:03d}"


def drop_dir(root: Path) -> Path:
    """ROOT/health_codes/drop: the folder a connector watches."""
    return Path(root) / "health_codes" / "drop"


def plan_day(outbox_day_dir: Path, *, slow: list[str]) -> Path:
    """Write the day's delivery plan: which files arrive slowly (visible while incomplete)."""
    for name in slow:
        if Path(name).name != name or name.startswith(("_", ".")):
            raise ValueError(f"slow file {name!r} must be a plain export file name")
    path = Path(outbox_day_dir) / PLAN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(path, {"slow": sorted(slow)})
    return path


def deliver(root: Path, day: int, *, partial_seconds: float = 0.0) -> list[Path]:
    """Copy the files of outbox/<day> into drop/; return the drop paths written by this call.

    Idempotent: a file delivered before (recorded in the outbox's ledger, so a connector may
    move it away) or already in drop/ with the same bytes is not touched. A "slow" file is
    written under its final name in two parts with `partial_seconds` between them; others go
    to a hidden temp name and are renamed, so they appear complete at once.
    """
    source_dir = outbox_dir(root, day)
    if not source_dir.is_dir():
        return []  # the platform sent nothing that day
    target_dir = drop_dir(root)
    target_dir.mkdir(parents=True, exist_ok=True)
    slow = set(_read_json(source_dir / PLAN_FILE).get("slow", []))
    ledger_path = source_dir / LEDGER_FILE
    ledger: dict[str, str] = _read_json(ledger_path)
    written: list[Path] = []
    for source in _exports(source_dir):
        data = source.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        target = target_dir / source.name
        if ledger.get(source.name) == digest:
            continue
        if not (target.is_file() and target.read_bytes() == data):
            if source.name in slow:
                _write_slowly(target, data, partial_seconds)
            else:
                _write_atomically(target, data)
            written.append(target)
        ledger[source.name] = digest
        _write_json(ledger_path, ledger)
    return written


def deliver_until(root: Path, day: int, partial_seconds: float = 0.0) -> list[Path]:
    """Deliver days 0..day in order; return the drop paths written by this call."""
    written: list[Path] = []
    for each in range(day + 1):
        written += deliver(root, each, partial_seconds=partial_seconds)
    return written


def deliver_to_clock(root: Path, partial_seconds: float = 0.0) -> list[Path]:
    """Deliver every day up to the one the simulated clock (ROOT/clock.json) has reached."""
    return deliver_until(root, clock.read_day(root), partial_seconds)


def _exports(source_dir: Path) -> list[Path]:
    # Generation order (mtime) first, so an original lands before its re-send.
    files = [p for p in source_dir.iterdir() if p.is_file() and not p.name.startswith(("_", "."))]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _write_slowly(target: Path, data: bytes, partial_seconds: float) -> None:
    # Like an upload in progress: the final name exists while only part of the bytes are there.
    cut = max(1, len(data) // 2) if data else 0
    with target.open("wb") as out:
        out.write(data[:cut])
        out.flush()
        time.sleep(partial_seconds)
        out.write(data[cut:])


def _write_atomically(target: Path, data: bytes) -> None:
    # Hidden temp name in the same folder, then rename: readers see nothing or everything.
    tmp = target.with_name(f".{target.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)
