"""Validate what the connectors landed: run each table's suite in DuckDB, quarantine, pass on to staging.

For every source table with loads not yet validated, the view `validation.<source>_<entity>` shows
the new raw rows (numbered by `_row_id`, the raw rowid), the table's suite runs on them through
Great Expectations inside DuckDB, and then, in one transaction:
- rows failing a critical row-level expectation go to `meta.quarantine` with every expectation
  they failed and the raw row; the others go on to `staging.<source>_<entity>`;
- a failing critical table-level expectation (schema, volume) blocks the batch: nothing goes on,
  the loads stay pending, and the run says why;
- the run is recorded in `meta.validation_runs`; for every run rows in = passed + quarantined.
"""

from __future__ import annotations

import gc
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from expectations import engine
from expectations.suites import SUITES, Reference, suite_for
from warehouse import reference
from warehouse.db import transaction

VOLUME_HISTORY = 7        # earlier loads the volume floor looks at
VOLUME_MIN_HISTORY = 3    # fewer than this: no volume check yet
VOLUME_FLOOR = 0.10       # a batch below 10% of the median earlier batch is a collapse


@dataclass
class ValidationResult:
    """One source table's validation run, as the CLI summary and the DAG task report it."""

    source: str
    entity: str
    run_id: str
    status: str                 # passed / quarantined / blocked / nothing
    rows_in: int = 0
    rows_passed: int = 0
    rows_quarantined: int = 0
    rows_warned: int = 0
    message: str | None = None
    docs_url: str | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        if self.status == "nothing":
            return f"{self.source}.{self.entity}: nothing new to validate"
        text = (f"{self.source}.{self.entity}: {self.status}; in {self.rows_in:,}, passed {self.rows_passed:,}, "
                f"quarantined {self.rows_quarantined:,}, with warnings {self.rows_warned:,}, {self.seconds:.1f} s")
        return text + (f" — {self.message}" if self.message else "")


def _entities(con: duckdb.DuckDBPyConnection, source: str) -> list[str]:
    present = {r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_schema = 'raw'").fetchall()}
    return [e for s, e in SUITES if s == source and f"{s}_{e}" in present]


def _pending_loads(con: duckdb.DuckDBPyConnection, source: str, entity: str) -> list[str]:
    return [r[0] for r in con.execute(
        "select load_id from meta.loads where source = ? and entity = ? and status = 'succeeded' "
        "and rows_landed > 0 and load_id not in (select load_id from meta.validated_loads) "
        "order by started_at", [source, entity]).fetchall()]


def _reference(con: duckdb.DuckDBPyConnection, source: str, entity: str, loads: list[str]) -> Reference:
    """Which silos' tables exist to check references against; the volume floor from earlier loads."""
    ref = Reference(tables={r[0] for r in con.execute(
        "select table_name from information_schema.tables where table_schema = 'raw'").fetchall()})
    # A reconciliation lands only the difference (often a handful of rows): it is no delivery,
    # so it neither sets the volume floor nor is held to it.
    earlier = [r[0] for r in con.execute(
        "select rows_landed from meta.loads where source = ? and entity = ? and status = 'succeeded' "
        "and rows_landed > 0 and coalesce(kind, 'sync') = 'sync' and load_id not in (select unnest(?::varchar[])) "
        "order by started_at desc limit ?", [source, entity, loads, VOLUME_HISTORY]).fetchall()]
    deliveries = con.execute("select count(*) from meta.loads where load_id in (select unnest(?::varchar[])) "
                             "and coalesce(kind, 'sync') = 'sync'", [loads]).fetchall()[0][0]
    if len(earlier) >= VOLUME_MIN_HISTORY and deliveries:
        median = sorted(earlier)[len(earlier) // 2]
        ref.min_rows = max(1, int(median * VOLUME_FLOOR))
    return ref


def _create_batch(con: duckdb.DuckDBPyConnection, raw: str, batch: str, loads: list[str]) -> None:
    """The view of the loads' raw rows that the suite checks, numbered by `_row_id`.

    A view, not a copy: copying 2.26M health-code rows took 8 s and numbering them with
    row_number() over the load order another 11 s (a sort of every column). The raw rowid is
    unique and stable, since raw is append-only.
    """
    schema, name = batch.split(".", 1)
    kind = con.execute("select table_type from information_schema.tables where table_schema = ? and table_name = ?",
                       [schema, name]).fetchall()
    if kind == [("BASE TABLE",)]:  # a batch copied before the view replaced it
        con.execute(f"drop table {batch}")
    # A view cannot take parameters: the load ids (made by connectors) are quoted literals.
    ids = ", ".join("'" + load.replace("'", "''") + "'" for load in loads)
    # Tombstones (a reconciliation's "the source no longer has this key") carry only the key:
    # there is nothing in them for a suite to check, so they go on to staging as they are.
    live = f" and {_NOT_TOMBSTONE}" if _has_tombstones(con, raw) else ""
    con.execute(f"create or replace view {batch} as select rowid as _row_id, * from {raw} "
                f"where _load_id in ({ids}){live}")


_NOT_TOMBSTONE = "not coalesce(_is_tombstone, false)"


def _has_tombstones(con: duckdb.DuckDBPyConnection, raw: str) -> bool:
    schema, name = raw.split(".", 1)
    return bool(con.execute("select 1 from information_schema.columns where table_schema = ? and table_name = ? "
                            "and column_name = '_is_tombstone'", [schema, name]).fetchall())


def _pass_tombstones(con: duckdb.DuckDBPyConnection, raw: str, staging: str, loads: list[str], run_id: str) -> int:
    """Copy the loads' tombstones to staging (inside the run's transaction); return how many."""
    if not _has_tombstones(con, raw):
        return 0
    con.execute(f"alter table {staging} add column if not exists _is_tombstone boolean")
    return con.execute(f"insert into {staging} by name select *, ? as _validation_run_id from {raw} "
                       f"where _load_id in (select unnest(?::varchar[])) and _is_tombstone",
                       [run_id, loads]).fetchall()[0][0]


def _ensure_staging(con: duckdb.DuckDBPyConnection, batch: str, staging: str) -> None:
    """Staging mirrors the validated batch's columns (new source columns are added)."""
    name = staging.split(".", 1)[1]
    have = {r[0] for r in con.execute("select column_name from information_schema.columns "
                                      "where table_schema = 'staging' and table_name = ?", [name]).fetchall()}
    if not have:
        con.execute(f"create table {staging} as select * exclude (_row_id), ''::varchar as _validation_run_id "
                    f"from {batch} limit 0")
        return
    for col, dtype in con.execute(f"select column_name, column_type from (describe {batch})").fetchall():
        if col != "_row_id" and col not in have:
            con.execute(f'alter table {staging} add column "{col}" {dtype}')


def _failures(outcome: engine.ValidationOutcome) -> pa.Table:
    """(row id, rule, severity, message) for every failing row of every row-level expectation."""
    ids: list[int] = []
    rules: list[str] = []
    severities: list[str] = []
    for r in outcome.results:
        if r.success or not r.unexpected_row_ids:
            continue
        rule = r.expectation_type + (f"({r.column})" if r.column else "")
        ids += r.unexpected_row_ids
        rules += [rule] * len(r.unexpected_row_ids)
        severities += [r.meta.get("severity", "critical")] * len(r.unexpected_row_ids)
    return pa.table({"_row_id": pa.array(ids, pa.int64()), "rule": pa.array(rules, pa.string()),
                     "severity": pa.array(severities, pa.string())})


def _results_json(outcome: engine.ValidationOutcome) -> str:
    return json.dumps([{"expectation": r.expectation_type, "column": r.column, "severity": r.meta.get("severity"),
                        "success": r.success, "element_count": r.element_count,
                        "unexpected_count": r.unexpected_count} for r in outcome.results], ensure_ascii=False)


def validate_entity(con: duckdb.DuckDBPyConnection, context, source: str, entity: str,
                    outcomes: list[engine.ValidationOutcome] | None = None) -> ValidationResult:
    """Validate the pending loads of one source table (see the module docstring); GE's outcome is
    appended to `outcomes` when given."""
    started, started_at = time.perf_counter(), datetime.now(UTC)
    run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{source}-{entity}-{uuid.uuid4().hex[:8]}"
    loads = _pending_loads(con, source, entity)
    if not loads:
        return ValidationResult(source, entity, run_id, "nothing")
    raw, batch, staging = f"raw.{source}_{entity}", f"validation.{source}_{entity}", f"staging.{source}_{entity}"
    _create_batch(con, raw, batch, loads)
    rows_in = con.execute(f"select count(*) from {batch}").fetchall()[0][0]
    if rows_in == 0:  # tombstones only
        outcome = engine.ValidationOutcome(success=True, results=[], statistics={}, docs_url=None)
    else:
        suite = suite_for(source, entity, _reference(con, source, entity, loads))
        outcome = engine.validate_table(context, con, batch, suite, row_id="_row_id", run_name=run_id)
        if outcomes is not None:
            outcomes.append(outcome)
    result = ValidationResult(source, entity, run_id, "passed", rows_in=rows_in, docs_url=outcome.docs_url)

    blocking = [r for r in outcome.results if not r.success and r.meta.get("severity") == "critical"
                and r.unexpected_row_ids is None]
    failures = _failures(outcome)
    con.register("_failures", failures)
    try:
        with transaction(con):
            if blocking:
                result.status = "blocked"
                result.message = "blocked, nothing passed on: " + "; ".join(
                    f"{r.expectation_type}({r.column or ''}) failed: {r.meta.get('why') or r.kwargs}"
                    for r in blocking)
            else:
                con.execute(f"""
                    insert into meta.quarantine
                    select b._load_id, ?, ?, 'validate', b._source_position,
                           to_json(b)::varchar,
                           (select to_json(list({{'rule': f.rule, 'severity': f.severity}} order by f.rule))
                              from _failures f where f._row_id = b._row_id)::varchar,
                           now()
                    from {batch} b
                    where b._row_id in (select _row_id from _failures where severity = 'critical')
                """, [source, entity])
                _ensure_staging(con, batch, staging)
                con.execute(f"insert into {staging} by name select * exclude (_row_id), ? as _validation_run_id "
                            f"from {batch} where _row_id not in (select _row_id from _failures "
                            f"where severity = 'critical')", [run_id])
                tombstones = _pass_tombstones(con, raw, staging, loads, run_id)
                result.rows_in += tombstones
                rows_in += tombstones
                q = con.execute("select count(distinct _row_id) filter (where severity = 'critical'), "
                                "count(distinct _row_id) filter (where severity <> 'critical') from _failures"
                                ).fetchall()[0]
                result.rows_quarantined = q[0]
                result.rows_passed = rows_in - q[0]
                result.rows_warned = con.execute(
                    "select count(distinct _row_id) from _failures where severity <> 'critical' and _row_id not in "
                    "(select _row_id from _failures where severity = 'critical')").fetchall()[0][0]
                result.status = "quarantined" if q[0] else "passed"
                warned = sorted({f"{r.expectation_type}({r.column})" for r in outcome.results
                                 if not r.success and r.meta.get("severity") != "critical"})
                result.message = ("warnings: " + ", ".join(warned)) if warned else None
                con.executemany("insert into meta.validated_loads values (?, ?)", [[lid, run_id] for lid in loads])
            result.seconds = time.perf_counter() - started
            con.execute("insert into meta.validation_runs values (?, ?, ?, ?, now(), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [run_id, source, entity, started_at.isoformat(), result.status, result.rows_in,
                         result.rows_passed, result.rows_quarantined, result.rows_warned, json.dumps(loads),
                         result.message, _results_json(outcome), result.docs_url])
    finally:
        con.unregister("_failures")
    return result


def validate(con: duckdb.DuckDBPyConnection, source: str, gx_dir: Path) -> list[ValidationResult]:
    """Validate every table of `source` that has new loads; rebuild Data Docs once at the end."""
    if con.execute("select count(*) from ref.division_codes").fetchall()[0][0] == 0:
        reference.load_division_codes(con)
    context = engine.gx_context(gx_dir)
    outcomes: list[engine.ValidationOutcome] = []
    results = [validate_entity(con, context, source, entity, outcomes) for entity in _entities(con, source)]
    if any(r.status != "nothing" for r in results):
        # only this run's pages (and the index): re-rendering the whole store grew with every cycle
        docs = engine.build_docs(context, only=outcomes)
        for r in results:
            r.docs_url = r.docs_url or docs.as_uri()
    return results


# Great Expectations' import leaves a few hundred thousand objects that live until the process ends.
# Moved to the collector's permanent generation, they are no longer traversed by every full
# collection, nor at interpreter shutdown: a fresh validate process spent about 5 s (at load 10)
# after its work, tearing them down (issue #19).
gc.freeze()
