"""Generate a simulated district: the true population, each silo's noisy view, and the ground truth.

Layout of the output folder (see README, 'The simulated district'):
    manifest.json, clock.json
    grid_registry/registry.sqlite (+ changes/ for later days)     the grid registry's database
    hotline/tickets.parquet                                        what the hotline server serves
    city_cases/cases.parquet                                       what the case feed serves
    health_codes/outbox/DDD/ -> health_codes/drop/                 daily export files
    truth/                                                         ground truth, never read by connectors
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simulators.clock import DEFAULT_START, day_start_utc, write_day
from simulators.grid_registry import registry

from . import divisions, events_view, health_view, population, registry_view
from .noise import NoiseRates
from .surge import SurgeSpec
from .views import NoiseLog

GENERATOR_VERSION = "1"
SILO_DIRS = ("grid_registry", "hotline", "city_cases", "health_codes", "truth", "run")
MAX_RESIDENTS = 5_000_000


class GeneratorError(ValueError):
    """A district cannot be generated with these arguments; the message says what to change."""


@dataclass
class Step:
    """Progress reporting: `start(name, total)` then `advance(n)`; both optional."""

    start: Callable[[str, int], None] = lambda name, total: None
    advance: Callable[[int], None] = lambda n: None


def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / "manifest.json").exists():
            raise GeneratorError(f"{out} is not empty and holds no simulated district; choose an empty folder")
        for name in SILO_DIRS:  # replace an earlier district, and nothing else
            shutil.rmtree(out / name, ignore_errors=True)
        for name in ("manifest.json", "clock.json"):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")


def generate(out: Path, *, residents: int, seed: int, days: int = 30, start: date = DEFAULT_START,
             rates: NoiseRates | None = None, step: Step | None = None, surge: SurgeSpec | None = None) -> dict:
    """Generate a district into `out`; deterministic for a seed (same arguments, same bytes).

    `surge` adds the surge month (simulators/district/surge.py); without it nothing changes.
    """
    if not 100 <= residents <= MAX_RESIDENTS:
        raise GeneratorError(f"--residents must be between 100 and {MAX_RESIDENTS:,}, got {residents:,}")
    if not 1 <= days <= 365:
        raise GeneratorError(f"--days must be between 1 and 365, got {days}")
    if surge is not None:
        try:
            surge = surge.resolved(days)
        except ValueError as exc:
            raise GeneratorError(str(exc)) from exc
    rates = rates or NoiseRates()
    step = step or Step()
    out = Path(out)
    _prepare(out)
    day0_us = int(day_start_utc(start, 0).timestamp()) * 1_000_000
    log = NoiseLog()

    step.start("population", 1)
    grids = population.build_grids(seed, residents)
    hh = population.build_households(seed, residents, grids, days)
    persons = population.build_persons(seed, hh, days, outsiders=max(50, residents // 20))
    step.advance(1)

    step.start("grid registry", 1)
    tables, changes, truth, workers = registry_view.build(seed, grids, hh, persons, rates, day0_us, days, log)
    registry.build(out, tables, changes)
    step.advance(1)

    step.start("hotline and city cases", 1)
    tickets, cases, ev_truth, incidents = events_view.build(
        seed, grids, hh, persons, rates, day0_us, days, workers, log, surge)
    _write_parquet(tickets, out / "hotline" / "tickets.parquet")
    _write_parquet(cases, out / "city_cases" / "cases.parquet")
    step.advance(1)

    step.start("health-code files", days)
    health_truth = health_view.build(seed, out, grids, hh, persons, rates, start, day0_us, days, log, step.advance,
                                     surge)
    truth = pa.concat_tables([truth, ev_truth, health_truth])
    (out / "health_codes" / "drop").mkdir(parents=True, exist_ok=True)

    step.start("ground truth", 1)
    _write_truth(out / "truth", grids, hh, persons, truth, incidents, log)
    step.advance(1)

    counts = {
        "persons_true": int(persons.is_resident.sum()), "outsiders_true": int((~persons.is_resident).sum()),
        "households": len(hh.household_id), "micro_grids": len(grids.building_code),
        "registry_residents_day0": tables["residents"].num_rows, "registry_changes": changes.num_rows,
        "hotline_tickets": tickets.num_rows, "city_cases": cases.num_rows,
        "health_code_rows": health_truth.num_rows,
    }
    manifest = {
        "generator_version": GENERATOR_VERSION, "seed": seed, "residents": residents, "days": days,
        "start_date": start.isoformat(), "timezone": "Asia/Shanghai",
        "district": {"code": divisions.HOME_CODE, "name": divisions.HOME_CITY + divisions.HOME_DISTRICT},
        "division_codes_source": divisions.source(), "grid_sizes": population.sizes_for(residents),
        "counts": counts, "noise": rates.as_dict(),
    }
    if surge is not None:  # only then: a district without a surge keeps its manifest byte for byte
        manifest["surge"] = surge.as_dict()
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    write_day(out, 0)
    return manifest


def _write_truth(folder: Path, g, hh, p, links: pa.Table, incidents: pa.Table, log: NoiseLog) -> None:
    has_hh = p.household >= 0
    hidx = np.maximum(p.household, 0)
    b = hh.building[hidx]
    persons = pa.table({
        "person_id": p.person_id, "name": p.name, "sex": np.where(p.sex == "M", "男", "女"),
        "birth_date": pa.array(p.birth, pa.date32()), "id_number": p.id18,
        "phone": pa.array(p.phone, pa.string()), "contact_phone": pa.array(p.contact_phone, pa.string()),
        "old_phone": pa.array(p.old_phone, pa.string()),
        "household_id": pa.array(np.where(has_hh, hh.household_id[hidx], None), pa.string()),
        "micro_grid_code": pa.array(np.where(has_hh, g.building_code[b], None), pa.string()),
        "community": pa.array(np.where(has_hh, g.building_community[b], None), pa.string()),
        "relation": p.relation, "is_resident": p.is_resident, "is_migrant": has_hh & hh.migrant[hidx],
        "arrived_day": np.where(has_hh, hh.arrived_day[hidx], -1).astype(np.int32),
        "left_day": p.left_day.astype(np.int32),
        "special_group": pa.array(np.where(p.special == "", None, p.special), pa.string()),
    })
    _write_parquet(persons, folder / "persons.parquet")
    _write_parquet(links, folder / "source_records.parquet")
    _write_parquet(incidents, folder / "incidents.parquet")
    _write_parquet(log.table(), folder / "noise.parquet")
