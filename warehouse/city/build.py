"""Build the city warehouse from the districts' published city snapshots: land, resolve, marts.

    land.*          each district's city relations as published, with its district code
    city_work.*     the resolver's input
    core.*          person_source (resolver output), person_map, person, person_history, ticket
    mart.*          hotline_rates, issue_of_month, cross_district_incident

Reads only what the districts published for the city (warehouse/city/publish.py), never a
district's warehouse. Runs in one transaction; city person ids are stable across builds
(warehouse/resolve/stable_ids.py: a cluster keeps the id most of its district persons held).
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from warehouse import db
from warehouse.resolve import resolve

from .person_config import CITY_PERSON_CONFIG
from .publish import hold

LANDED = ("district", "place", "person", "person_history", "ticket", "city_case")


class CityBuildError(RuntimeError):
    """The districts given cannot make one city (the message says which and why)."""


@dataclass
class CityBuildSummary:
    districts: list[dict] = field(default_factory=list)
    district_persons: int = 0
    city_persons: int = 0
    movers: int = 0
    double_registered: int = 0
    tickets: int = 0
    cross_district_tickets: int = 0
    resolve_mode: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    def lines(self) -> list[str]:
        names = ", ".join(f"{d['name']} ({d['code']}, version {d['version']})" for d in self.districts)
        return [f"city built from {len(self.districts)} districts: {names}",
                f"  {self.district_persons:,} district persons -> {self.city_persons:,} city persons "
                f"({self.movers:,} moved between districts, {self.double_registered:,} registered in two)",
                f"  city persons resolved: {self.resolve_mode}",
                f"  {self.tickets:,} tickets, {self.cross_district_tickets:,} about a place in another district",
                "  steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items() if k != "total")
                + (f"; total {self.seconds['total']:.1f} s" if "total" in self.seconds else "")]


def _land(con, published: list[Path], stack: ExitStack) -> list[dict]:
    """Hold each district's current city version and copy its relations into land.*."""
    districts: list[dict] = []
    files: dict[str, list[tuple[int, str]]] = {name: [] for name in LANDED}
    for root in published:
        version_dir = stack.enter_context(hold(root))
        manifest = json.loads((version_dir / "manifest.json").read_text(encoding="utf-8"))
        d = manifest.get("district") or {}
        if any(x["code"] == d.get("code") for x in districts):
            raise CityBuildError(f"district {d.get('code')} given twice ({root})")
        districts.append({"code": d.get("code"), "name": d.get("name"), "version": manifest["version"],
                          "published": str(root)})
        for name in LANDED:
            files[name].append((d["code"], str(version_dir / "parquet" / f"city.{name}.parquet")))
    con.execute("create schema if not exists land")
    for name, parts in files.items():
        union = " union all by name ".join(
            f"select '{code}' as district_code, * exclude (district_code) from read_parquet('{path}')"
            if name in ("person", "district") else f"select '{code}' as district_code, * from read_parquet('{path}')"
            for code, path in parts)
        con.execute(f"create or replace table land.{name} as {union}")
    return districts


def build(city_db: Path, published: list[Path]) -> CityBuildSummary:
    """Build (or rebuild) the city warehouse at `city_db` from the districts' published folders."""
    if len(published) < 1:
        raise CityBuildError("give at least one district's published folder")
    summary = CityBuildSummary()
    began = time.perf_counter()
    con = db.connect(city_db)
    summary.seconds["open"] = time.perf_counter() - began
    try:
        with ExitStack() as stack, db.transaction(con):
            t = time.perf_counter()
            summary.districts = _land(con, published, stack)
            summary.seconds["land"] = time.perf_counter() - t
            for schema in ("city_work", "core", "mart"):
                con.execute(f"create schema if not exists {schema}")
            t = time.perf_counter()
            con.execute(_sql("01_person_input.sql"))
            # incremental when only some district persons changed since the last build (the resolver decides)
            result = resolve(con, CITY_PERSON_CONFIG, mode="auto")
            summary.resolve_mode = f"{result.parameters.get('mode')} ({result.parameters.get('why', '')})".replace(" ()", "")
            summary.seconds["resolve"] = time.perf_counter() - t
            t = time.perf_counter()
            for name in sorted(resources.files("warehouse.city").joinpath("sql").iterdir(), key=lambda p: p.name):
                if name.name.endswith(".sql") and not name.name.startswith("01_"):
                    con.execute(name.read_text(encoding="utf-8"))
            summary.seconds["marts"] = time.perf_counter() - t
            t = time.perf_counter()
            row = con.execute("""
                select (select count(*) from land.person), (select count(*) from core.person),
                       (select count(*) filter (where is_mover) from core.person),
                       (select count(*) filter (where is_double_registered) from core.person),
                       (select count(*) from core.ticket), (select count(*) from mart.cross_district_incident)
            """).fetchone()
            assert row is not None
            (summary.district_persons, summary.city_persons, summary.movers, summary.double_registered,
             summary.tickets, summary.cross_district_tickets) = (int(x) for x in row)
            assert result.records == summary.district_persons
        summary.seconds["counts and commit"] = time.perf_counter() - t
    finally:
        con.close()
    summary.seconds["total"] = time.perf_counter() - began
    return summary


def _sql(name: str) -> str:
    return resources.files("warehouse.city").joinpath("sql", name).read_text(encoding="utf-8")
