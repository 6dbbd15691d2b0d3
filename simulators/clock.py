"""The simulated clock: which day the silos have reached, minutes into the next, and what instant that is.

clock.json holds {"day": D} or {"day": D, "minute": M}: the silos' now is the end of day D (24:00
Beijing time) plus M minutes (0 <= M < 1440), so a 15-minute hotline cycle can run against them
as Airflow runs it. The day is still the last whole day: the daily silos (health-code drops, the
registry's changes) move with it, the hotline and the case feed with the instant.
"""

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


MINUTES_PER_DAY = 24 * 60


def read_clock(root: Path) -> tuple[int, int]:
    """(day, minute): the last whole simulated day the silos have reached, and minutes past its end."""
    path = Path(root) / "clock.json"
    if not path.exists():
        return 0, 0
    state = json.loads(path.read_text(encoding="utf-8"))
    return int(state["day"]), int(state.get("minute", 0))


def read_day(root: Path) -> int:
    """The simulated day the silos have reached (0 = the first day)."""
    return read_clock(root)[0]


def write_clock(root: Path, day: int, minute: int = 0) -> None:
    """Set the clock to `minute` minutes past the end of `day`."""
    if not 0 <= minute < MINUTES_PER_DAY:
        raise ValueError(f"minute must be from 0 to {MINUTES_PER_DAY - 1}, got {minute}")
    # Write-then-rename so a server reading the clock never sees a half-written file.
    path = Path(root) / "clock.json"
    tmp = path.with_suffix(".tmp")
    state = {"day": day, "minute": minute} if minute else {"day": day}
    tmp.write_text(json.dumps(state), encoding="utf-8")
    tmp.replace(path)


def write_day(root: Path, day: int) -> None:
    """Set the clock to the end of `day`."""
    write_clock(root, day, 0)


def day_start_utc(start: date, day: int) -> datetime:
    """00:00 Beijing time of simulated day `day`, as a UTC instant."""
    local = datetime.combine(start + timedelta(days=day), time(0), tzinfo=BEIJING)
    return local.astimezone(UTC)


def day_end_utc(start: date, day: int) -> datetime:
    """The instant simulated day `day` ends (24:00 Beijing time), as UTC: the silos' 'now'."""
    return day_start_utc(start, day + 1)


def instant_utc(start: date, day: int, minute: int = 0) -> datetime:
    """The instant `minute` minutes past the end of simulated day `day`, as UTC."""
    return day_end_utc(start, day) + timedelta(minutes=minute)


def now_utc(root: Path) -> datetime:
    """The silos' current instant: the end of the day the clock has reached, plus its minutes."""
    day, minute = read_clock(root)
    return instant_utc(start_date(root), day, minute)
