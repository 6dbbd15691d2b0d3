"""One load of one source entity: collect what was extracted, then land it, record it and move the
state in a single transaction — or, on any failure, land nothing and record why."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import duckdb
import pyarrow as pa

from warehouse.db import transaction

from . import freshness
from .exceptions import ConnectorError
from .landing import Entity, land, late_rows


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
    # A reconciliation's findings: keys by kind (see connectors.common.reconcile.KINDS).
    reconciled: dict[str, int] | None = None

    def summary(self) -> str:
        if self.reconciled is not None:
            from .reconcile import LABELS

            kinds = ", ".join(f"{LABELS.get(k, k)} {n:,}" for k, n in self.reconciled.items())
            return (f"{self.source}.{self.entity}: reconciled, {self.status}; {kinds}; landed {self.rows_landed:,} "
                    f"(tombstones included), {self.seconds:.1f} s" + (f" — {self.message}" if self.message else ""))
        return (f"{self.source}.{self.entity}: {self.status}; in {self.rows_in:,}, landed {self.rows_landed:,}, "
                f"duplicates skipped {self.duplicates_skipped:,}, quarantined {self.rows_quarantined:,}, "
                f"watermark {self.watermark_after or '-'}, {self.seconds:.1f} s"
                + (f" — {self.message}" if self.message else ""))


# DuckDB's row group size (its default). An insert from Arrow builds one collection of rows per
# Arrow record batch, in parallel; a collection of a whole row group is compressed and written by
# the thread that filled it, while smaller ones are merged and compressed one by one at the end of
# the statement. So landing's record batches are made exactly this long (bench/README.md,
# health-code memory: 2x faster inserts than the CSV reader's ~70k-row blocks).
ROW_GROUP_ROWS = 122_880


def row_groups(table: pa.Table) -> pa.Table:
    """`table` as record batches of ROW_GROUP_ROWS rows (the last one shorter); a copy unless it is so already."""
    sizes = [b.num_rows for b in table.to_batches()]
    if all(n == ROW_GROUP_ROWS for n in sizes[:-1]) and (not sizes or sizes[-1] <= ROW_GROUP_ROWS):
        return table
    return pa.Table.from_batches(table.combine_chunks().to_batches(max_chunksize=ROW_GROUP_ROWS), table.schema)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Load:
    """Use as `with Load(con, entity) as load:` — add batches, quarantine rows, then `finish(state)`.

    Extraction happens before the transaction opens (the source may be slow); landing, the
    meta.loads row and the new state are then committed together, so a crash can neither move
    the state without its rows nor land rows twice.

    A connector reading sources too large for memory calls `land_as_added()` first: each batch is
    then landed when added, inside the load's one transaction (DuckDB writes large uncommitted
    appends to the database file, not to memory), and `mark()` / `undo(mark, position_prefix)`
    take back what was landed since a mark, e.g. a file found unreadable half-way.
    """

    _eager = False  # land batches as they are added (land_as_added)
    _eager_rows = 0  # ... once this many rows are waiting
    _open = False   # the load's transaction is open (eager landing began it)
    _buffer_setting: Any = None  # write_buffer_row_group_count before eager landing lowered it
    _new_keys = False  # expect_new_keys(): the rows added since hold keys raw did not have
    _span_keys: list[Any]  # ... the sorted hashes of the keys of those rows landed so far

    def __init__(self, con: duckdb.DuckDBPyConnection, entity: Entity, *, full_refresh: bool = False,
                 reconcile: Any = None):
        self.con = con
        self.entity = entity
        self.full_refresh = full_refresh
        # A connectors.common.reconcile.Reconciliation: the rows added are the source's complete
        # current state, and finish() lands their difference with raw's current state.
        self.reconcile = reconcile
        self.load_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{entity.source}-{entity.name}-{uuid.uuid4().hex[:8]}"
        self.result = LoadResult(entity.source, entity.name, self.load_id)
        self._batches: list[pa.Table] = []
        self._quarantine: list[tuple[str, str | None, str]] = []
        self._statements: list[tuple[str, list[Any]]] = []  # run by finish(), in its transaction
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
            # The load sequence orders versions (see migrations/011_load_sequence.sql). One process
            # writes the warehouse at a time, so max + 1 inside this transaction is monotonic.
            self.con.execute("insert into meta.loads (load_id, source, entity, started_at, status, watermark_before, "
                             "full_refresh, load_seq, kind) values (?, ?, ?, ?, 'running', ?, ?, "
                             "(select coalesce(max(load_seq), 0) + 1 from meta.loads), ?)",
                             [self.load_id, self.entity.source, self.entity.name, self._started_at,
                              self.result.watermark_before, self.full_refresh,
                              "reconcile" if self.reconcile is not None else "sync"])
        if self.reconcile is not None:
            self.reconcile.begin(self)
        return self

    def add(self, rows: pa.Table, position: str | pa.Array) -> None:
        """Rows as delivered, with where they came from (a page, a file line, a primary key)."""
        if rows.num_rows == 0:
            return
        pos = pa.array([position] * rows.num_rows, pa.string()) if isinstance(position, str) else position
        self._batches.append(rows.append_column("_source_position", pos))
        if self.reconcile is not None:
            self.reconcile.add_page(self, rows)
        if self._eager and sum(b.num_rows for b in self._batches) >= self._eager_rows:
            self._land_batches(whole_row_groups=True)

    def quarantine(self, position: str, raw_record: str | None, reason: str, rule: str = "unreadable") -> None:
        """Hold back a record that cannot be read, with where it was and why."""
        self._quarantine.append((position, raw_record, json.dumps(
            [{"rule": rule, "severity": "critical", "message": reason}], ensure_ascii=False)))

    def note(self, text: str) -> None:
        self.result.notes.append(text)

    def execute_on_finish(self, sql: str, params: list[Any]) -> None:
        """Run a statement of the connector's own bookkeeping (e.g. a file set aside) in finish()'s
        transaction, so it commits with the load or not at all."""
        self._statements.append((sql, params))

    def finish(self, state: dict[str, Any], watermark: str | None = None) -> LoadResult:
        """Land everything added, record the load and save `state`, all in one transaction."""
        r = self.result
        state = {**state, "watermark": watermark if watermark is not None else self.state.get("watermark")}
        if self._eager and self._batches:
            self._land_batches()  # the last rows waiting; this opens the load's transaction if need be
        state["watermark"], capped = freshness.capped_watermark(state["watermark"])
        if capped:
            self.note(capped)
        with self._transaction():
            batch = pa.concat_tables(self._batches, promote_options="permissive") if self._batches else None
            if self.reconcile is not None:
                # Classify the difference before landing it (landing changes raw's current state);
                # only the rows of keys found different are landed, the rest count as duplicates.
                batch = self.reconcile.compare(self, batch)
            if batch is not None:
                landed = land(self.con, self.entity, batch, self.load_id, self._started_at)
                r.rows_in, r.rows_landed, r.duplicates_skipped = landed.rows_in, landed.landed, landed.duplicates
                for name, dtype in landed.new_columns:
                    self.con.execute("insert into meta.schema_changes values (?, ?, ?, ?, 'added', ?, now())",
                                     [self.load_id, self.entity.source, self.entity.name, name, dtype])
                    self.note(f"new source column {name!r} ({dtype}) landed")
            if self.reconcile is not None:
                r.rows_in = self.reconcile.snapshot_rows
                r.duplicates_skipped = r.rows_in - r.rows_landed
            elif r.rows_landed:
                # Rows at or behind the watermark this load started from: the source's clock
                # handed them out late (the overlap or the inclusive bound caught them).
                late, behind = late_rows(self.con, self.entity, self.load_id, self.result.watermark_before)
                if late:
                    self.con.execute("update meta.loads set late_rows = ?, max_seconds_behind_watermark = ? "
                                     "where load_id = ?", [late, behind, self.load_id])
                    self.note(f"{late:,} row(s) arrived at or behind the watermark, the latest "
                              f"{behind:,.0f} s behind")
            if self.reconcile is not None:
                tombstones = self.reconcile.land_missing(self)
                r.rows_in, r.rows_landed = r.rows_in + tombstones, r.rows_landed + tombstones
            if self._quarantine:
                self.con.executemany(
                    "insert into meta.quarantine values (?, ?, ?, 'extract', ?, ?, ?, now())",
                    [[self.load_id, self.entity.source, self.entity.name, pos, raw, reasons]
                     for pos, raw, reasons in self._quarantine])
                r.rows_quarantined = len(self._quarantine)
                r.rows_in += len(self._quarantine)
            for sql, params in self._statements:
                self.con.execute(sql, params)
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
            if self.reconcile is not None:
                self.reconcile.record(self)
        if self.reconcile is not None:
            self.reconcile.close()
        return r

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:  # never swallows: callers may rely on that
        if exc is None:
            if self.result.status != "succeeded":
                raise ConnectorError(f"{self.entity.source}.{self.entity.name}: load ended without finish()")
            return False
        r = self.result
        r.status, r.seconds = "failed", time.perf_counter() - self._started
        r.message = str(exc) or type(exc).__name__
        if self._open:
            self._open = False
            self.con.execute("rollback")
        self._restore_buffer_setting()
        with transaction(self.con):
            self.con.execute("update meta.loads set finished_at = now(), status = 'failed', message = ? "
                             "where load_id = ?", [r.message, self.load_id])
            if self.reconcile is not None:
                self.reconcile.close()
                self.reconcile.record_failure(self)
        return False

    # --- landing as batches are added (sources too large for memory) ---------------------------

    def land_as_added(self, min_rows: int = 0) -> None:
        """Land batches as they are added (once `min_rows` are waiting) instead of all at finish(),
        in the load's one transaction. DuckDB writes an uncommitted insert to the database file
        only in whole row groups of a large insert (a few hundred thousand rows, not fewer), and
        keeps smaller ones in memory: `min_rows` of about 300,000 keeps memory flat."""
        if getattr(self, "reconcile", None) is not None:
            raise ConnectorError(f"{self.entity.source}.{self.entity.name}: a reconciliation compares the whole "
                                 "state at finish(); it cannot land as it goes")
        self._eager = True
        self._eager_rows = min_rows

    def expect_new_keys(self, new: bool = True) -> None:
        """The rows added from now on (until the next call) hold keys of which raw has no version
        yet — the caller checked, e.g. a file of an export day raw holds no row of. Eager landing
        then inserts them without comparing them with raw's current versions, as long as no key
        repeats among them (checked here, by a hash of the key, across all their batches); a
        batch in which one repeats (or might: two keys with the same hash) is compared as usual."""
        if self._eager and self._batches:
            self._land_batches()  # rows added before the call are not vouched for
        self._new_keys = new
        self._span_keys = []

    def _keys_new(self, batch: pa.Table) -> bool:
        """Whether `batch`'s keys are vouched new to raw and repeat neither within it nor in the
        span's batches landed before; records its key hashes either way."""
        if not self._new_keys:
            return False
        import numpy as np  # not at import: only eager loads need it

        _keys = batch.select(list(self.entity.key))  # noqa: F841 - scanned by name
        cols = ", ".join('"' + k.replace('"', '""') + '"' for k in self.entity.key)
        hashes = np.sort(self.con.execute(f"select hash({cols}) as h from _keys").fetchnumpy()["h"])
        new = bool(len(hashes) == 0 or not (hashes[1:] == hashes[:-1]).any())
        for seen in self._span_keys:
            if not new:
                break
            at = np.minimum(np.searchsorted(seen, hashes), len(seen) - 1)
            new = not bool((seen[at] == hashes).any())
        self._span_keys.append(hashes)
        return new

    def mark(self) -> tuple[int, int, int, int, int]:
        """Where the load stands: give it to undo() to take back what is landed after it."""
        if self._eager and self._batches:
            self._land_batches()  # what came before the mark is landed: undo() never touches it
        r = self.result
        return r.rows_in, r.rows_landed, r.duplicates_skipped, len(self._quarantine), len(self._batches)

    def undo(self, mark: tuple[int, int, int, int, int], position_prefix: str) -> None:
        """Take back the rows and quarantined records added since `mark` whose position starts with
        `position_prefix` (e.g. one file's "<name> line "), and their counts."""
        rows_in, landed, duplicates, held, batches = mark
        if self._open:
            self.con.execute(f"delete from {self.entity.table} where _load_id = ? and starts_with(_source_position, ?)",
                             [self.load_id, position_prefix])
        del self._batches[batches:]
        del self._quarantine[held:]
        self._new_keys, self._span_keys = False, []  # what comes next must be vouched for again
        r = self.result
        r.rows_in, r.rows_landed, r.duplicates_skipped = rows_in, landed, duplicates

    def _land_batches(self, whole_row_groups: bool = False) -> None:
        """Land the waiting batches; `whole_row_groups`: only a multiple of DuckDB's row group size
        of them, the rest waits for the next landing (finish() and mark() land everything)."""
        if not self._open:
            self._buffer_one_row_group()
            self.con.execute("begin transaction")
            self._open = True
        batch = pa.concat_tables(self._batches, promote_options="permissive")
        self._batches.clear()
        whole = batch.num_rows // ROW_GROUP_ROWS * ROW_GROUP_ROWS
        if whole_row_groups and 0 < whole < batch.num_rows:
            self._batches.append(batch.slice(whole))
            batch = batch.slice(0, whole)
        batch = row_groups(batch)
        landed = land(self.con, self.entity, batch, self.load_id, self._started_at, new_keys=self._keys_new(batch))
        del batch
        # Arrow's allocator keeps freed blocks for reuse; between batches nothing of them is needed.
        pa.default_memory_pool().release_unused()
        r = self.result
        r.rows_in, r.rows_landed = r.rows_in + landed.rows_in, r.rows_landed + landed.landed
        r.duplicates_skipped += landed.duplicates
        for name, dtype in landed.new_columns:
            self.con.execute("insert into meta.schema_changes values (?, ?, ?, ?, 'added', ?, now())",
                             [self.load_id, self.entity.source, self.entity.name, name, dtype])
            self.note(f"new source column {name!r} ({dtype}) landed")

    def _buffer_one_row_group(self) -> None:
        # DuckDB buffers up to `write_buffer_row_group_count` (5) row groups of an uncommitted
        # insert in memory before writing them to the database file: with 1, each row group is
        # written once full, so a load landing batch after batch holds about one row group per
        # thread (bench/README.md, health-code memory). Restored when the load's transaction ends.
        if self._buffer_setting is None:
            self._buffer_setting = self.con.execute(
                "select current_setting('write_buffer_row_group_count')").fetchall()[0][0]
            self.con.execute("set write_buffer_row_group_count = 1")

    def _restore_buffer_setting(self) -> None:
        if self._buffer_setting is not None:
            self.con.execute(f"set write_buffer_row_group_count = {int(self._buffer_setting)}")
            self._buffer_setting = None

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        # finish() commits the transaction eager landing opened, or runs in one of its own.
        if not self._open:
            with transaction(self.con):
                yield
            return
        try:
            yield
        except BaseException:
            self._open = False
            self.con.execute("rollback")
            self._restore_buffer_setting()
            raise
        self._open = False
        self.con.execute("commit")
        self._restore_buffer_setting()
