"""The districts of a city, from configuration: one set of DAGs serves them all.

$ONENET_DISTRICTS names a TOML file; each `[[district]]` gets its own DAGs (`onenet_hotline__<name>`
…), its own warehouse, its own pool of one slot and its own Assets:

    [[district]]
    name = "pudong"                           # [a-z][a-z0-9_]*: DAG ids, pool, Assets, tags
    home = "/srv/onenet/pudong"               # optional; default <the file's folder>/<name>
    warehouse = "/srv/onenet/pudong/warehouse.duckdb"   # optional; default <home>/warehouse.duckdb
    simulated = "/srv/onenet/pudong/district" # optional: a simulated district's silos (ONENET_DISTRICT)
    queue = "pudong"                          # optional Celery queue; default: any worker
    [district.connections]                    # optional: the silos' endpoints (Airflow connection URIs)
    hotline = "http://:token@10.1.0.5:8080"
    grid_registry = "postgresql://onenet@10.1.0.6/registry"

    [city]                                    # optional: where the city warehouse lives (onenet_city)
    warehouse = "/srv/onenet/city.duckdb"     # default <the file's folder>/city.duckdb
    queue = "city"                            # optional Celery queue; default: any worker

Unset: no districts, and every DAG file builds today's single-district DAG (ids, pool and Assets as
before). The city DAG (onenet_city) exists only with two districts or more and ONENET_CITY_KEY set
(`city()`). Only the standard library is imported here: DAG files read this at parse time.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tomllib
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

ENV = "ONENET_DISTRICTS"
CITY_KEY_ENV = "ONENET_CITY_KEY"  # = warehouse.city.keys.ENV: districts publish for the city only with it
CITY_POOL = "onenet_city_duckdb"  # never a district's: theirs all start onenet_duckdb_
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
SOURCES = ("hotline", "city_cases", "grid_registry", "health_codes")  # = orchestration.SOURCES


class DistrictsMisconfigured(ValueError):
    """The districts file is wrong; the message names the file, the district and the fix."""


@dataclass(frozen=True)
class District:
    """One district: where its warehouse and files live, and how its silos are reached."""

    name: str
    home: Path
    warehouse: Path
    simulated: Path | None = None
    queue: str | None = None
    connections: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    @property
    def pool(self) -> str:
        """Its own pool of one slot: DuckDB allows one writing process per warehouse file, so the
        districts' writers never wait for each other."""
        return f"onenet_duckdb_{self.name}"

    def dag_id(self, base: str) -> str:
        return f"{base}__{self.name}"

    def asset_uri(self, uri: str) -> str:
        """A single-district Asset URI moved under the district: duckdb://onenet/core → duckdb://onenet/<name>/core."""
        scheme, rest = uri.split("://onenet/", 1)
        return f"{scheme}://onenet/{self.name}/{rest}"

    def env(self) -> dict[str, str]:
        """The environment that points every onenet setting (onenet.settings) at this district."""
        values = {"ONENET_HOME": str(self.home), "ONENET_WAREHOUSE": str(self.warehouse),
                  "ONENET_GX_DIR": str(self.home / "gx"), "ONENET_EXPORTS": str(self.home / "exports"),
                  "ONENET_PUBLISHED": str(self.home / "published"),
                  "ONENET_DISTRICT": str(self.simulated or self.home / "district")}
        for source, uri in self.connections.items():
            values[f"AIRFLOW_CONN_ONENET_{source.upper()}"] = uri
        return values


@dataclass(frozen=True)
class City:
    """The city over the configured districts: its warehouse, built from their published city snapshots."""

    districts: tuple[District, ...]
    warehouse: Path
    queue: str | None = None
    pool: str = CITY_POOL  # one slot: the city warehouse's one writer


def _district(raw: dict, base: Path, path: Path) -> District:
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise DistrictsMisconfigured(f"{path}: district name {name!r} must match {_NAME.pattern} "
                                     f"(it becomes part of DAG ids, a pool and Asset URIs)")
    unknown = set(raw) - {"name", "home", "warehouse", "simulated", "queue", "connections"}
    if unknown:
        raise DistrictsMisconfigured(f"{path}: district {name}: unknown key(s) {sorted(unknown)}")
    conns = raw.get("connections") or {}
    if set(conns) - set(SOURCES):
        raise DistrictsMisconfigured(f"{path}: district {name}: connections for unknown source(s) "
                                     f"{sorted(set(conns) - set(SOURCES))}; sources are {', '.join(SOURCES)}")
    home = (base / raw.get("home", name)).resolve()
    return District(name=name, home=home, warehouse=(home / raw.get("warehouse", "warehouse.duckdb")).resolve(),
                    simulated=(home / raw["simulated"]).resolve() if raw.get("simulated") else None,
                    queue=raw.get("queue") or None, connections={k: str(v) for k, v in conns.items()})


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DistrictsMisconfigured(f"{ENV}={path}: cannot read the districts file ({exc})") from exc


def load(path: Path) -> tuple[District, ...]:
    """The districts of a TOML file (relative paths are relative to the file's folder)."""
    data = _read(path)
    found = tuple(_district(d, path.parent, path) for d in data.get("district", []))
    names = [d.name for d in found]
    if not found or len(set(names)) != len(names):
        raise DistrictsMisconfigured(f"{path}: needs one [[district]] or more, each name once (found {names})")
    for d in found:  # one writer per file: two districts on one warehouse would take two pools' slots
        if sum(o.warehouse == d.warehouse for o in found) > 1:
            raise DistrictsMisconfigured(f"{path}: districts share the warehouse {d.warehouse}")
    return found


def configured() -> tuple[District, ...]:
    """The districts $ONENET_DISTRICTS lists; () when it is unset (the single-district default)."""
    value = os.environ.get(ENV, "").strip()
    return load(Path(value)) if value else ()


def load_city(path: Path) -> City:
    """The city of a districts file: its districts and its `[city]` table (all keys optional)."""
    found, raw = load(path), _read(path).get("city") or {}
    unknown = set(raw) - {"warehouse", "queue"}
    if unknown:
        raise DistrictsMisconfigured(f"{path}: [city]: unknown key(s) {sorted(unknown)}")
    warehouse = (path.parent / raw.get("warehouse", "city.duckdb")).resolve()
    if any(d.warehouse == warehouse for d in found):
        raise DistrictsMisconfigured(f"{path}: [city] warehouse {warehouse} is a district's warehouse")
    return City(districts=found, warehouse=warehouse, queue=raw.get("queue") or None)


def city() -> City | None:
    """The city onenet_city builds: None unless $ONENET_DISTRICTS lists two districts or more and
    $ONENET_CITY_KEY is set (without the key no district publishes anything for a city)."""
    value = os.environ.get(ENV, "").strip()
    if not value or not os.environ.get(CITY_KEY_ENV):
        return None
    found = load_city(Path(value))
    return found if len(found.districts) >= 2 else None


def for_dags() -> list[District | None]:
    """What DAG files build for: each configured district, or [None] (today's one district)."""
    return list(configured()) or [None]


def active(district: District | None) -> AbstractContextManager[None]:
    """A block run with the district's settings (the environment restored after), or as is for None."""
    if district is None:
        return nullcontext()
    from onenet.settings import environment

    return environment(**district.env())


def pools(found: tuple[District, ...], city: City | None = None) -> dict[str, dict[str, object]]:
    """The districts' pools (and the city's) in `airflow pools import`'s format (one slot each)."""
    out: dict[str, dict[str, object]] = {
        d.pool: {"slots": 1, "description": f"DuckDB warehouse writers of district {d.name} (one at a time)",
                 "include_deferred": False} for d in found}
    if city is not None:
        out[city.pool] = {"slots": 1, "description": "DuckDB writer of the city warehouse (onenet_city)",
                          "include_deferred": False}
    return out


def main(argv: list[str]) -> int:
    """`python -m onenet.districts pools` prints the pools to import; `list` prints the districts."""
    found = configured()
    if argv[:1] == ["pools"]:
        print(json.dumps(pools(found, city()), indent=2))
    elif argv[:1] == ["list"]:
        for d in found:
            print(f"{d.name}\t{d.warehouse}\t{d.queue or '-'}")
    else:
        print("usage: python -m onenet.districts pools|list  (reads $ONENET_DISTRICTS)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
