"""The simulated clock: which day the silos have reached, and what instant that day ends at."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

BEIJING = ZoneInfo("Asia/Shanghai")
DEFAULT_START = date(2026, 11, 1)


def manifest(root: Path) -> dict:
    """The generator's manifest of a simulated district (seed, size, days, start date)."""
    return json.loads((Path(root) / "manifest.json").read_text(encoding="utf-8"))


def start_date(root: Path) -> date:
    return date.fromisoformat(manifest(root)["start_date"])


def read_day(root: Path) -> int:
    """The simulated day the silos have reached (0 = the first day)."""
    path = Path(root) / "clock.json"
    if not path.exists():
        return 0
    return int(json.loads(path.read_text(encoding="utf-8"))["day"])


def write_day(root: Path, day: int) -> None:
    # Write-then-rename so a server reading the clock never sees a half-written file.
    path = Path(root) / "clock.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"day": day}), encoding="utf-8")
    tmp.replace(path)


def day_start_utc(start: date, day: int) -> datetime:
    """00:00 Beijing time of simulated day `day`, as a UTC instant."""
    local = datetime.combine(start + timedelta(days=day), time(0), tzinfo=BEIJING)
    return local.astimezone(UTC)


def day_end_utc(start: date, day: int) -> datetime:
    """The instant simulated day `day` ends (24:00 Beijing time), as UTC: the silos' 'now'."""
    return day_start_utc(start, day + 1)


def now_utc(root: Path) -> datetime:
    """The silos' current instant: the end of the day the clock has reached."""
    return day_end_utc(start_date(root), read_day(root))
