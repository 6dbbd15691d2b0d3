"""One load of one source entity: collect what was extracted, then land it, record it and move the
state in a single transaction — or, on any failure, land nothing and record why."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import duckdb
import pyarrow as pa

from warehouse.db import transaction

from . import freshness
from .exceptions import ConnectorError
from .landing import Entity, land


@dataclass
class LoadResult:
    """What a load did: the figures a summary line and meta.loads show."""

    source: str
    entity: str
    load_id: str
    status: str = "running"
    rows_in: int = 0
    rows_landed: int = 0
    duplicates_skipped: int = 0
    rows_quarantined: int = 0
    watermark_before: str | None = None
    watermark_after: str | None = None
    seconds: float = 0.0
    message: str | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.source}.{self.entity}: {self.status}; in {self.rows_in:,}, landed {self.rows_landed:,}, "
                f"duplicates skipped {self.duplicates_skipped:,}, quarantined {self.rows_quarantined:,}, "
                f"watermark {self.watermark_after or '-'}, {self.seconds:.1f} s"
                + (f" — {self.message}" if self.message else ""))


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Load:
    """Use as `with Load(con, entity) as load:` — add batches, quarantine rows, then `finish(state)`.

    Extraction happens before the transaction opens (the source may be slow); landing, the
    meta.loads row and the new state are then committed together, so a crash can neither move
    the state without its rows nor land rows twice.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, entity: Entity, *, full_refresh: bool = False):
        self.con = con
        self.entity = entity
        self.full_refresh = full_refresh
        self.load_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{entity.source}-{entity.name}-{uuid.uuid4().hex[:8]}"
        self.result = LoadResult(entity.source, entity.name, self.load_id)
        self._batches: list[pa.Table] = []
        self._quarantine: list[tuple[str, str | None, str]] = []
        self._started = time.perf_counter()
        self._started_at = _now()
        self.state: dict[str, Any] = {} if full_refresh else self._read_state()
        self.result.watermark_before = self.state.get("watermark")

    def _read_state(self) -> dict[str, Any]:
        row = self.con.execute("select state from meta.source_state where source = ? and entity = ?",
                               [self.entity.source, self.entity.name]).fetchall()
        return json.loads(row[0][0]) if row else {}

    def __enter__(self) -> Load:
        with transaction(self.con):
            # A load that was killed mid-way left its 'running' row behind: say so.
            self.con.execute("update meta.loads set status = 'interrupted', message = 'the process ended before "
                             "this load finished; nothing of it was landed' where source = ? and entity = ? "
                             "and status = 'running'", [self.entity.source, self.entity.name])
            self.con.execute("insert into meta.loads (load_id, source, entity, started_at, status, watermark_before, "
                             "full_refresh) values (?, ?, ?, ?, 'running', ?, ?)",
                             [self.load_id, self.entity.source, self.entity.name, self._started_at,
                              self.result.watermark_before, self.full_refresh])
        return self

    def add(self, rows: pa.Table, position: str | pa.Array) -> None:
        """Rows as delivered, with where they came from (a page, a file line, a primary key)."""
        if rows.num_rows == 0:
            return
        pos = pa.array([position] * rows.num_rows, pa.string()) if isinstance(position, str) else position
        self._batches.append(rows.append_column("_source_position", pos))

    def quarantine(self, position: str, raw_record: str | None, reason: str, rule: str = "unreadable") -> None:
        """Hold back a record that cannot be read, with where it was and why."""
        self._quarantine.append((position, raw_record, json.dumps(
            [{"rule": rule, "severity": "critical", "message": reason}], ensure_ascii=False)))

    def note(self, text: str) -> None:
        self.result.notes.append(text)

    def finish(self, state: dict[str, Any], watermark: str | None = None) -> LoadResult:
        """Land everything added, record the load and save `state`, all in one transaction."""
        r = self.result
        state = {**state, "watermark": watermark if watermark is not None else self.state.get("watermark")}
        state["watermark"], capped = freshness.capped_watermark(state["watermark"])
        if capped:
            self.note(capped)
        with transaction(self.con):
            if self._batches:
                batch = pa.concat_tables(self._batches, promote_options="permissive")
                landed = land(self.con, self.entity, batch, self.load_id, self._started_at)
                r.rows_in, r.rows_landed, r.duplicates_skipped = landed.rows_in, landed.landed, landed.duplicates
                for name, dtype in landed.new_columns:
                    self.con.execute("insert into meta.schema_changes values (?, ?, ?, ?, 'added', ?, now())",
                                     [self.load_id, self.entity.source, self.entity.name, name, dtype])
                    self.note(f"new source column {name!r} ({dtype}) landed")
            if self._quarantine:
                self.con.executemany(
                    "insert into meta.quarantine values (?, ?, ?, 'extract', ?, ?, ?, now())",
                    [[self.load_id, self.entity.source, self.entity.name, pos, raw, reasons]
                     for pos, raw, reasons in self._quarantine])
                r.rows_quarantined = len(self._quarantine)
                r.rows_in += len(self._quarantine)
            r.watermark_after = state["watermark"]
            r.status = "succeeded"
            r.seconds = time.perf_counter() - self._started
            r.message = "; ".join(r.notes) or None
            self.con.execute(
                "update meta.loads set finished_at = now(), status = 'succeeded', rows_in = ?, rows_landed = ?, "
                "duplicates_skipped = ?, rows_quarantined = ?, watermark_after = ?, message = ? where load_id = ?",
                [r.rows_in, r.rows_landed, r.duplicates_skipped, r.rows_quarantined, r.watermark_after,
                 r.message, self.load_id])
            freshness.record_loads(self.con, self.entity.source, self.entity.name, self.entity.table)
            self.con.execute(
                "insert or replace into meta.source_state values (?, ?, ?, ?, now())",
                [self.entity.source, self.entity.name, json.dumps(state, ensure_ascii=False, default=str),
                 self.load_id])
        return r

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:  # never swallows: callers may rely on that
        if exc is None:
            if self.result.status != "succeeded":
                raise ConnectorError(f"{self.entity.source}.{self.entity.name}: load ended without finish()")
            return False
        r = self.result
        r.status, r.seconds = "failed", time.perf_counter() - self._started
        r.message = str(exc) or type(exc).__name__
        with transaction(self.con):
            self.con.execute("update meta.loads set finished_at = now(), status = 'failed', message = ? "
                             "where load_id = ?", [r.message, self.load_id])
        return False
