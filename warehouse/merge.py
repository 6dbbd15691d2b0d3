"""One merge run: staging → person resolution → core → marts, in one transaction, recorded in meta.merge_runs."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb

from warehouse import db


class MergeError(RuntimeError):
    """A merge that could not finish; nothing of it was committed. The message names the step."""


@dataclass
class MergeSummary:
    """What one merge produced; `summary_lines()` is what the CLI and the demo print."""

    run_id: str
    records_per_source: dict[str, int] = field(default_factory=dict)
    persons_per_source: dict[str, int] = field(default_factory=dict)
    persons: int = 0
    links: int = 0
    incidents: int = 0
    incident_tickets: int = 0
    incident_cases: int = 0
    warnings: int = 0
    table_rows: dict[str, int] = field(default_factory=dict)
    step_seconds: dict[str, float] = field(default_factory=dict)
    staging_mode: str = "full"
    resolve_mode: str = "full"
    resolve_note: str = ""
    published: Any = None  # warehouse.publish.PublishResult, set by the pipeline after the merge commits

    @property
    def seconds(self) -> float:
        return sum(self.step_seconds.values())

    def summary_lines(self) -> list[str]:
        lines = [f"merge {self.run_id}: {self.persons:,} golden persons from "
                 f"{sum(self.records_per_source.values()):,} source records; {self.links:,} records linked "
                 f"to another record's person; {self.seconds:.1f} s"]
        for source, n in sorted(self.records_per_source.items()):
            lines.append(f"  {source}: {n:,} records → {self.persons_per_source.get(source, 0):,} persons")
        lines.append(f"  incidents: {self.incidents:,} (from {self.incident_tickets:,} hotline tickets and "
                     f"{self.incident_cases:,} city cases)")
        lines.append(f"  warnings: {self.warnings:,}")
        lines.append(f"  staging: {self.staging_mode}; persons resolved: {self.resolve_mode} ({self.resolve_note})")
        lines.append("  steps: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.step_seconds.items()))
        if self.published is not None:
            lines.append(f"  {self.published.summary()}")
        return lines


def merge(con: duckdb.DuckDBPyConnection, *, run_id: str | None = None, full: bool = False) -> MergeSummary:
    """Rebuild staging, persons, core and marts from what validation passed; all or nothing.

    Staging is refreshed for the keys validated since the last merge, and persons are resolved
    incrementally (only those the changed records can touch, with the last full run's parameters),
    unless `full` is set or that is not possible; the resolver records which it did and why in
    meta.resolution_runs.

    Idempotent: a second run on the same staged data leaves every core and mart table identical
    (person ids are stable; see warehouse/resolve).
    """
    from warehouse import models

    run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-merge-" + uuid.uuid4().hex[:8]
    summary = MergeSummary(run_id)
    staging_info: dict[str, str] = {}
    started = datetime.now(UTC)
    step = "start"
    try:
        with db.transaction(con):
            for step, run in (("staging", lambda: _staging(con, full, staging_info, summary)),
                              ("resolve", lambda: _resolve(con, run_id, full, summary)),
                              ("core", lambda: models.build_core(con, incremental=_touched_persons(con, summary))),
                              ("marts", lambda: models.build_marts(con))):
                t0 = time.perf_counter()
                result = run()
                summary.step_seconds[step] = round(time.perf_counter() - t0, 3)
                if isinstance(result, dict):
                    summary.table_rows.update({k: int(v) for k, v in result.items()})
            _fill_summary(con, summary)
            con.execute("insert into meta.merge_runs values (?, ?, now(), 'succeeded', ?, ?, ?, ?, ?, ?, ?, null)",
                        [run_id, started, sum(summary.records_per_source.values()), summary.persons,
                         summary.links, summary.incidents, summary.warnings,
                         json.dumps(summary.step_seconds), json.dumps(summary.table_rows, sort_keys=True)])
    except Exception as exc:  # any failure: nothing committed, the failure recorded, one clear error
        _record_failure(con, run_id, started, step, exc)
        raise MergeError(f"merge {run_id} failed in step {step}: {str(exc).splitlines()[0]}; "
                         f"nothing was committed — fix the cause and run `onenet merge` again") from exc
    return summary


def _staging(con: duckdb.DuckDBPyConnection, full: bool, info: dict[str, str], summary: MergeSummary) -> dict:
    from warehouse import standardise

    counts = standardise.build_staging(con, full=full, info=info)
    summary.staging_mode = info.get("mode", "full")
    return counts


def _resolve(con: duckdb.DuckDBPyConnection, run_id: str, full: bool, summary: MergeSummary) -> None:
    from warehouse.resolve import resolve
    from warehouse.resolve.person_config import PERSON_CONFIG

    result = resolve(con, PERSON_CONFIG, run_id=run_id, mode="full" if full else "auto")
    summary.resolve_mode = result.parameters.get("mode", "full")
    p = result.parameters
    summary.resolve_note = str(p.get("why") or
                               f"{p.get('records_resolved', 0):,} records of {p.get('persons_touched', 0):,} "
                               f"persons resolved again, {p.get('identical_to_known', 0):,} new records "
                               f"identical to a known profile")


def _touched_persons(con: duckdb.DuckDBPyConnection, summary: MergeSummary) -> bool:
    """Fill temp table touched_persons when staging and persons were both refreshed incrementally.

    Touched: persons the resolver re-resolved (warehouse/resolve/incremental.py), and persons holding
    a source record whose staging row changed or whose special groups changed (temp tables left by
    warehouse/standardise/incremental.py). False means the core models are rebuilt in full.
    """
    from warehouse.models import TOUCHED
    from warehouse.resolve.incremental import touched_table
    from warehouse.resolve.person_config import PERSON_CONFIG

    if summary.staging_mode != "incremental" or summary.resolve_mode != "incremental":
        return False
    con.execute(f"""
        create or replace temp table {TOUCHED} as
        select person_id from {touched_table(PERSON_CONFIG)}
        union
        select p.person_id from core.person_source p
        join _changed_records c on c.source = p.source and c.record_key = p.record_key
        union
        select p.person_id from core.person_source p
        where p.source = 'grid_registry.residents'
          and p.record_key in (select resident_id from _keys_stg_grid_registry__special_groups)
    """)
    return True


def _fill_summary(con: duckdb.DuckDBPyConnection, s: MergeSummary) -> None:
    for source, records, persons in con.execute(
            "select source, count(*), count(distinct person_id) from core.person_source group by all").fetchall():
        s.records_per_source[source] = records
        s.persons_per_source[source] = persons
    s.persons = con.execute("select count(*) from core.person").fetchone()[0]  # type: ignore[index]
    s.links = con.execute("select count(*) from core.person_source "
                          "where linked_record_uid is not null").fetchone()[0]  # type: ignore[index]
    s.incidents, s.incident_tickets, s.incident_cases = con.execute(
        "select count(distinct incident_id), count(*) filter (where member_type = 'ticket'), "
        "count(*) filter (where member_type = 'case') from core.incident_member").fetchone()  # type: ignore[misc]
    s.warnings = con.execute("select count(*) from mart.warnings").fetchone()[0]  # type: ignore[index]


def _record_failure(con: duckdb.DuckDBPyConnection, run_id: str, started: datetime, step: str,
                    exc: Exception) -> None:
    # The failed transaction is gone; the failure itself is worth keeping.
    with contextlib.suppress(duckdb.Error):
        con.execute("insert into meta.merge_runs (run_id, started_at, finished_at, status, message) "
                    "values (?, ?, now(), 'failed', ?)", [run_id, started, f"step {step}: {exc}"[:2000]])
