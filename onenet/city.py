"""What the city DAG (onenet_city) calls: check every district's published city snapshot, then build the city.

Importing this module is cheap (standard library only): DAG files import it at parse time. The
build itself is warehouse.city.build.build, the function `onenet city build` calls.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from onenet.districts import City, District

log = logging.getLogger(__name__)

# A district's city snapshot (<published>/city/current), one Asset per district:
# file://onenet/<name>/published/city (District.asset_uri). Its merge emits it after publishing.
SNAPSHOT_ASSET_URI = "file://onenet/published/city"
# The city warehouse the build writes; never under duckdb://onenet/<name>/, a district's space.
CITY_ASSET_URI = "duckdb://onenet_city/core"
MAX_AGE_ENV = "ONENET_CITY_MAX_AGE_HOURS"
# A healthy district publishes at least daily: every merge, and the 07:00 extract publishes again.
DEFAULT_MAX_AGE = timedelta(hours=48)
_STAMP = "%Y%m%dT%H%M%S%f"  # warehouse.publish.new_version: a version name starts with its UTC instant


class CityInputsNotReady(RuntimeError):
    """A district's published city snapshot is missing or stale; the message names each district,
    what was found and what to do. The city warehouse is left as the last good build made it."""


def published_dir(district: District) -> Path:
    """Where the district's merge publishes (its $ONENET_PUBLISHED); the city snapshot is under city/."""
    return Path(district.env()["ONENET_PUBLISHED"])


def max_age() -> timedelta:
    value = os.environ.get(MAX_AGE_ENV, "").strip()
    return timedelta(hours=float(value)) if value else DEFAULT_MAX_AGE


def version_instant(version_dir: Path) -> datetime:
    """When a city version was published: the UTC instant its name starts with (else its folder's mtime)."""
    try:
        return datetime.strptime(version_dir.name[:21], _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(version_dir.stat().st_mtime, UTC)


def announced(triggering_asset_events: Any, by_uri: dict[str, str]) -> dict[str, datetime]:
    """District name → when its newest city-snapshot event of this run was emitted (Airflow's
    triggering_asset_events: Asset → events; `by_uri`: snapshot Asset URI → district name)."""
    found: dict[str, datetime] = {}
    for asset, events in (triggering_asset_events or {}).items():
        name = by_uri.get(getattr(asset, "uri", None) or "")  # an AssetAlias key has no URI
        if name and events:
            found[name] = max(e.timestamp for e in events)
    return found


def check_inputs(city: City, announced: dict[str, datetime], *, announced_within: timedelta,
                 now: datetime | None = None, oldest: timedelta | None = None) -> dict[str, dict[str, str]]:
    """Each district's current city version, or CityInputsNotReady naming every district that is not ready.

    - missing: no <published>/city/current (the district's merge has not run with ONENET_CITY_KEY,
      or its folder is not reachable from this worker);
    - stale: older than `oldest` (ONENET_CITY_MAX_AGE_HOURS, default 48 h: the district stopped
      publishing), or older than what the district's Asset event announced: its merge published at
      most `announced_within` (the merge's timeout per try) before the event, so an older `current`
      means this worker does not see that publish yet (shared storage lagging) or it was rolled back.
    """
    now = now or datetime.now(UTC)
    oldest = oldest if oldest is not None else max_age()
    found: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for d in city.districts:
        base = published_dir(d) / "city"
        try:
            version_dir = (base / "current").resolve(strict=True)
        except FileNotFoundError:
            problems.append(f"district {d.name}: no published city snapshot at {base}/current; run its merge "
                            f"({d.dag_id('onenet_merge')}) with ONENET_CITY_KEY set, and check that this worker "
                            f"sees {base.parent}")
            continue
        at = version_instant(version_dir)
        when = f"{at:%Y-%m-%d %H:%M:%S} UTC"
        if now - at > oldest:
            problems.append(f"district {d.name}: its city snapshot {version_dir.name} is stale, published {when} "
                            f"({(now - at).total_seconds() / 3600:.1f} h ago, more than "
                            f"{oldest.total_seconds() / 3600:g} h); look at {d.dag_id('onenet_merge')} and its sources")
        elif d.name in announced and at < announced[d.name] - announced_within:
            problems.append(f"district {d.name}: its merge announced a publish at {announced[d.name]:%Y-%m-%d %H:%M:%S} "
                            f"UTC, but {base}/current is still {version_dir.name} (published {when}): the shared "
                            "folder lags behind on this worker, or current was moved back; a retry reads it again")
        found[d.name] = {"version": version_dir.name, "published_at": at.isoformat()}
    if problems:
        raise CityInputsNotReady("city build not started: " + "; ".join(problems))
    return found


def build_city(city: City, announced: dict[str, datetime], *, announced_within: timedelta) -> dict[str, Any]:
    """Check the districts' city snapshots (check_inputs), then build the city warehouse from them with
    warehouse.city.build.build, as `onenet city build` does: one transaction, stable city person ids,
    land.* replaced from the current versions, so a build over the same versions changes nothing."""
    from warehouse.city.build import build

    versions = check_inputs(city, announced, announced_within=announced_within)
    log.info("city build from %s (new publishes from %s)",
             ", ".join(f"{n} {v['version']}" for n, v in versions.items()), ", ".join(sorted(announced)) or "none")
    summary = build(city.warehouse, [published_dir(d) for d in city.districts])
    for line in summary.lines():
        log.info(line)
    return {"warehouse": str(city.warehouse), "announced": sorted(announced), "versions": versions,
            "summary": summary.lines()}
