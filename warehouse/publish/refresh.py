"""Relations a publish carries over from the current version instead of building them again.

policy.toml's [refresh] lists relations whose data comes from sources that arrive once a night
(the grid registry, the health-code drop) but whose SQL is the heaviest of a publish (at 300k
residents community.data_issue and community.health_change were 12 of a hotline cycle's 20 s of
publishing, issue #19). Such a relation is built again when any of these changed since its
current version was built:

- the newly validated loads of a source it lists (count and latest load id per source);
- what it is built from: its SQL, the policy's macros, its audience's checks, the session's
  variables (the pseudonym pads);
- the resolver's parameters (a full merge re-estimates them);
- the day (Beijing time): so it is rebuilt at least once a day, whatever else came in.

Otherwise (the hotline's 15-minute cycles) its files are hard links to the current version's,
whose values passed the same checks (the checks are part of what must match), and the version
says so: the manifest keeps, under "refresh", what each listed relation was built from. Between
two builds such a relation can lag what the other sources brought (a caller's new phone in the
records community.data_issue compares): at most until the next night's loads or the next day.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import duckdb

if TYPE_CHECKING:
    from warehouse.publish import PublishResult, Relation

COLUMNS_FILE = "columns.parquet"
BEIJING = ZoneInfo("Asia/Shanghai")


class Refresh:
    """What each relation of [refresh] would be built from now; whether a version can carry it over."""

    def __init__(self, con: duckdb.DuckDBPyConnection, listed: dict[str, list[str]], checks: str,
                 macros: str) -> None:
        self.listed = listed
        self._con, self._checks, self._macros = con, checks, macros
        self._records: dict[str, dict] | None = None

    def records(self, rels: list[Relation]) -> dict[str, dict]:
        """Per listed relation of `rels`: the sources' validated loads, the definition's digest, the day."""
        if self._records is None:
            listed = [r for r in rels if r.qualified in self.listed]
            self._records = {}
            if listed:
                loads = self._validated_loads()
                shared = self._shared_digest()
                day = datetime.now(BEIJING).date().isoformat()
                for rel in listed:
                    definition = hashlib.sha256("\x00".join([rel.sql, shared]).encode()).hexdigest()[:32]
                    self._records[rel.qualified] = {
                        "sources": {s: loads.get(s, "0:") for s in sorted(self.listed[rel.qualified])},
                        "definition": definition, "day": day}
        return self._records

    def carried(self, rel: Relation, rels: list[Relation], manifests: list[dict | None]) -> bool:
        """Whether every one of `manifests` (the current versions) holds `rel` built from what it
        would be built from now, so its entry and files can be carried over."""
        record = self.records(rels).get(rel.qualified)
        if record is None or not manifests:
            return False
        return all(m is not None and rel.qualified in m.get("relations", {})
                   and rel.qualified not in m.get("shared", [])
                   and m.get("refresh", {}).get(rel.qualified) == record for m in manifests)

    def _validated_loads(self) -> dict[str, str]:
        rows = self._con.execute(
            "select l.source, count(*), max(l.load_id) from meta.validated_loads v "
            "join meta.loads l using (load_id) group by l.source").fetchall()
        return {source: f"{n}:{latest}" for source, n, latest in rows}

    def _shared_digest(self) -> str:
        variables = self._con.execute(
            "select coalesce(string_agg(name || '=' || md5(cast(value as varchar)), ',' order by name), '') "
            "from duckdb_variables()").fetchall()[0][0]
        try:
            # the estimated parameters only: a run's parameters also hold its timings and counts
            parameters = self._con.execute(
                "select coalesce(md5(cast(json_extract(parameters, ['$.lambda', '$.threshold', '$.u_floor', "
                "'$.comparisons', '$.config']) as varchar)), '') from meta.resolution_runs "
                "order by started_at desc limit 1").fetchall()
        except duckdb.CatalogException:
            parameters = []
        resolver = parameters[0][0] if parameters else ""
        return "\x00".join([self._macros, self._checks, variables, resolver])


def carry_over(qualified: str, previous: tuple[dict | None, Path | None], target: Path,
               result: PublishResult) -> dict:
    """Link one relation's files from the current version into `target` (a version's parquet/);
    return its manifest entry, unchanged."""
    manifest, folder = previous
    assert manifest is not None and folder is not None
    entry = manifest["relations"][qualified]
    source = folder / "parquet" / f"{qualified}.parquet"
    dest = target / f"{qualified}.parquet"
    dest.mkdir(mode=0o750)
    os.link(source / COLUMNS_FILE, dest / COLUMNS_FILE)
    for part in entry["parts"].values():
        for f in part["files"]:
            os.link(source / f, dest / f)
        result.parts_linked += 1
    return json.loads(json.dumps(entry))


def listed(policy: dict[str, Any]) -> dict[str, list[str]]:
    """policy.toml's [refresh]: relation -> the sources whose new data rebuild it."""
    return {str(k): [str(s) for s in v] for k, v in policy.get("refresh", {}).items()}
