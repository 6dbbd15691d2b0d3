"""The surge month, modelled on Shanghai's March 2022: hotline volume ramping to a peak over days, a
large share of health codes changing colour within a day, more city cases, silos slower under load.

A SurgeSpec is a generator option (`generate(..., surge=SurgeSpec(peak=5))`, `onenet simulate
--surge 5`); it is written into manifest.json, where the HTTP silos read how loaded they are at
the simulated instant (`load_at`). Every draw it adds comes from its own named random stream, so a
district generated without it is byte for byte what it was.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SurgeSpec:
    """When and how hard the surge hits; days are simulated days (0 = the first)."""

    peak: float = 5.0  # hotline volume at the peak, as a multiple of a quiet day (2 to 10)
    start_day: int | None = None  # first day above normal [default: a third into the period]
    ramp_days: int = 5  # days from normal to the peak, rising linearly
    peak_days: int = 5  # days at the peak
    fall_days: int = 5  # days back down to normal
    epidemic_share: float = 0.35  # of the extra tickets, the share about the epidemic (260k of 740k)
    code_flip_share: float = 0.25  # residents whose health code turns yellow/red on the peak's first day
    city_cases: float = 3.0  # city cases at the peak, as a multiple of a quiet day
    slow_ms: int = 40  # added latency of every silo API request at the peak
    timeout_rate: float = 0.02  # share of silo API requests at the peak answered 504 after timeout_ms
    timeout_ms: int = 1500  # how long a timed-out request hangs before its 504
    rate_limit_factor: float = 4.0  # the silos' rate limit at the peak is divided by this (more 429s)

    def __post_init__(self) -> None:
        if not 1.0 <= self.peak <= 10.0:
            raise ValueError(f"surge peak must be from x1 to x10, got x{self.peak:g}")
        if self.ramp_days < 1 or self.peak_days < 1 or self.fall_days < 0:
            raise ValueError("surge ramp_days and peak_days must be at least 1, fall_days at least 0")
        for name in ("epidemic_share", "code_flip_share", "timeout_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"surge {name} must be a share from 0 to 1")
        if self.city_cases < 1.0 or self.rate_limit_factor < 1.0:
            raise ValueError("surge city_cases and rate_limit_factor must be at least 1")

    def resolved(self, days: int) -> SurgeSpec:
        """This spec with start_day placed in a `days`-day period, checked to fit in it."""
        start = self.start_day if self.start_day is not None else days // 3
        spec = SurgeSpec(**{**asdict(self), "start_day": start})
        if start < 1 or spec.peak_day >= days:
            raise ValueError(f"the surge (days {start} to {spec.peak_day + self.peak_days - 1} at its peak) "
                             f"does not fit in {days} days; choose a smaller start_day or more days")
        return spec

    @property
    def peak_day(self) -> int:
        """The first day at the peak (the day the health codes flip)."""
        return int(self.start_day or 0) + self.ramp_days - 1

    def level(self, day: int) -> float:
        """How far into the surge a day is: 0 normal, rising linearly to 1 on the peak's first day,
        1 for peak_days, then falling back to 0 over fall_days."""
        start, top = int(self.start_day or 0), self.peak_day
        after = top + self.peak_days  # the first day past the peak
        if day < start or day >= after + self.fall_days:
            return 0.0
        if day < top:
            return (day - start + 1) / self.ramp_days
        if day < after:
            return 1.0
        return 1.0 - (day - after + 1) / (self.fall_days + 1)

    def hotline(self, day: int) -> float:
        """Hotline volume on `day` as a multiple of a quiet day."""
        return 1.0 + (self.peak - 1.0) * self.level(day)

    def cases(self, day: int) -> float:
        """City cases on `day` as a multiple of a quiet day."""
        return 1.0 + (self.city_cases - 1.0) * self.level(day)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> SurgeSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in obj.items() if k in known})


def extra_per_day(base_per_day: float, days: int, factor) -> np.ndarray:
    """How many more events than a quiet day each day gets, for a volume `factor(day)`."""
    return np.array([round(base_per_day * (factor(d) - 1.0)) for d in range(days)], dtype=np.int64)


def load_at(manifest: dict, now_us: int, day0_us: int) -> float:
    """How loaded the silos are at instant `now_us` (0 quiet, 1 at the surge's peak) for a manifest:
    the level of the day the instant falls in (the end of a day, 24:00, still belongs to it)."""
    spec = manifest.get("surge")
    if not spec:
        return 0.0
    day = math.ceil((now_us - day0_us) / 86_400_000_000) - 1
    return SurgeSpec.from_dict(spec).level(day)
