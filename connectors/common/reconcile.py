"""Reconciliation: the source's complete current state against raw's current state, by key and hash.

A connector reads everything the source holds now (a keyset or unordered scan, a full page-through)
into a Load made with `reconcile=Reconciliation(...)`. Inside the load's transaction, before
landing, every key is classified (KINDS); landing then adds exactly the rows that differ from
their key's current version, and a tombstone for each key the source no longer has. The run,
its counts by kind and the keys by kind go to meta.reconciliations / meta.reconciliation_keys.
"""

from __future__ import annotations

import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .exceptions import ConnectorError
from .landing import (
    LEGACY_HASH_LENGTH,
    LINEAGE,
    Entity,
    _quote,
    current_versions_sql,
    land_tombstones,
    legacy_record_hash_sql,
    record_hash_sql,
)

if TYPE_CHECKING:
    from .loads import Load

# What a reconciliation can find, in the order summaries list them.
KINDS = ("missed_update", "back_dated", "silent_change", "revert", "hard_delete", "phantom")
LABELS = {"missed_update": "missed update", "back_dated": "back-dated", "silent_change": "silent change",
          "revert": "revert", "hard_delete": "hard delete", "phantom": "phantom"}
# A run that would tombstone more than this share of raw's keys is refused: an empty or wrong
# source (another district, a truncated table) must not wipe raw. Override per run if meant.
MAX_DELETE_SHARE = 0.5
MIN_KEYS_FOR_GUARD = 20


@dataclass
class Reconciliation:
    """How to compare one entity: the cursor's overlap, and what a key missing from the source is.

    `missing_kind` is 'hard_delete' for a source that can delete rows (the registry) and
    'phantom' for one whose contract never deletes (hotline work orders, city cases are closed,
    not removed): there, a key raw holds and the source does not was never the source's.
    """

    missing_kind: str = "hard_delete"
    overlap: timedelta = timedelta(0)
    max_delete_share: float = MAX_DELETE_SHARE
    unique_keys: bool = False   # the source guarantees one row per key (a table's primary key)
    reconciliation_id: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    source_keys: int = 0
    raw_keys: int = 0
    watermark: str | None = None
    skip_missing: str | None = None   # why no tombstones are landed this run, if so
    snapshot_rows: int = 0             # rows the source delivered
    # A source that hashes its own rows (connectors.grid_registry.helpers.narrow_scan): the name of
    # the meta table that keeps, per key, the source's hash and raw's current record hash as of the
    # last reconciliation. A key whose two hashes are both unchanged is equal to raw without its
    # row being read (split); the others' rows are read and compared as usual.
    fingerprints: str | None = None
    _hashed: pa.Table | None = field(default=None, repr=False)  # (key, updated_at, _sh) of every row
    _known: pa.Table | None = field(default=None, repr=False)   # keys equal to raw: (key, _h, _v)
    # Work done in a background DuckDB cursor while the source is still being read (DuckDB
    # releases the GIL): raw's current versions, and each page's keys and record hashes.
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)
    _cursor: Any = field(default=None, repr=False)  # a duckdb cursor of the load's connection, once begun
    _raw: Future | None = field(default=None, repr=False)
    _pages: list[tuple[pa.Schema, Future]] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if self.missing_kind not in ("hard_delete", "phantom"):
            raise ValueError(f"missing_kind must be hard_delete or phantom, not {self.missing_kind!r}")

    # -- while the source is read (Load.__enter__, Load.add) ----------------------------------

    def begin(self, load: Load) -> None:
        """Start computing raw's current version of every key in the background."""
        con, entity = load.con, load.entity
        if not con.execute("select 1 from information_schema.tables where table_schema = 'raw' and table_name = ?",
                           [f"{entity.source}_{entity.name}"]).fetchall():
            return
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="reconcile")
        self._cursor = con.cursor()
        cursor = self._cursor
        cursor.execute("set timezone = 'UTC'")  # as the warehouse connection: text without an offset is UTC
        self._raw = self._pool.submit(lambda: cursor.execute(current_versions_sql(entity)).to_arrow_table())

    def add_page(self, load: Load, rows: pa.Table) -> None:
        """Hash one page's rows (source columns) in the background, as landing would."""
        if self._pool is None:
            return
        rows = _typed(rows)
        source_cols = [c for c in rows.column_names if c not in LINEAGE]
        keys = ", ".join(_quote(k) for k in load.entity.key)
        version = _version_sql(load.entity, rows.column_names)
        cursor = self._cursor

        def hashed() -> pa.Table:
            cursor.register("_rc_page", rows)
            try:
                return cursor.execute(f"select {keys}, {record_hash_sql(source_cols)} as _h, {version} as _v "
                                      "from _rc_page").to_arrow_table()
            finally:
                cursor.unregister("_rc_page")

        self._pages.append((rows.schema, self._pool.submit(hashed)))

    def split(self, load: Load, hashed: pa.Table, fetch_all_share: float) -> pa.Table | None:
        """Given the source's (key columns, updated_at, `_sh`) of every row, the keys whose whole rows
        must be read: those without a fingerprint, or whose source hash or raw current hash moved
        since it was taken. The others count as equal to raw's current version. None when more
        than `fetch_all_share` of the keys must be read: read every row then (the first run)."""
        con, entity = load.con, load.entity
        self._hashed = hashed
        keys = ", ".join(_quote(k) for k in entity.key)
        version = _quote(entity.version) if entity.version else "null::timestamptz"
        table, current = self.fingerprints, self._raw
        if table is None or current is None or not con.execute(
                "select 1 from information_schema.tables where table_schema = 'meta' and table_name = ?",
                [table]).fetchall():
            return None
        _rc_hashed_rows, _rc_current = hashed, current.result()  # noqa: F841 - scanned by name
        known = con.execute(f"""
            select {keys}, r._record_hash as _h, null::varchar as _lh, try_cast(n.{version} as timestamptz) as _v
            from _rc_hashed_rows n
            join meta.{_quote(table)} f using ({keys})
            join _rc_current r using ({keys})
            where f._sh = n._sh and f.raw_hash = r._record_hash and not r._is_tombstone
        """).to_arrow_table()
        if hashed.num_rows - known.num_rows > fetch_all_share * hashed.num_rows:
            return None
        self._known = known
        return con.execute(f"select {keys} from _rc_hashed_rows anti join known using ({keys})").to_arrow_table()

    def close(self) -> None:
        """Stop the background work (after finish, or on failure)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None

    # -- inside Load.finish's transaction -----------------------------------------------------

    def compare(self, load: Load, batch: pa.Table | None) -> pa.Table | None:
        """Classify every key of the source snapshot `batch` (and of raw) into _rc_found / _rc_missing;
        return the rows of `batch` to land: those of the keys found different (None: none)."""
        con, entity = load.con, load.entity
        self.reconciliation_id = self.reconciliation_id or f"{load.load_id}-rc-{uuid.uuid4().hex[:6]}"
        self.watermark = load.state.get("watermark")
        keys = ", ".join(_quote(k) for k in entity.key)
        raw_exists = bool(con.execute("select 1 from information_schema.tables where table_schema = 'raw' "
                                      "and table_name = ?", [f"{entity.source}_{entity.name}"]).fetchall())
        if batch is None:
            if not raw_exists:
                con.execute("create or replace temp table _rc_found as select null::varchar as kind limit 0")
                con.execute("create or replace temp table _rc_missing as select null::varchar as kind limit 0")
                return None
            batch = con.execute(f"select {keys}, null::varchar as _source_position from {entity.table} "
                                "limit 0").to_arrow_table()
        # As landing does: all-null columns are text, the hash covers the source columns only.
        batch = _typed(batch)
        source_cols = [c for c in batch.column_names if c not in LINEAGE]
        version = _version_sql(entity, batch.column_names)
        legacy = raw_exists and bool(con.execute(
            f"select 1 from {entity.table} where length(_record_hash) = {LEGACY_HASH_LENGTH} limit 1").fetchall())
        page_schemas = {schema.remove(schema.get_field_index("_source_position"))
                        if "_source_position" in schema.names else schema for schema, _ in self._pages}
        con.register("_rc_batch", batch)
        try:
            if self._pages and not legacy and len(page_schemas) == 1 and \
                    next(iter(page_schemas)).names == source_cols:
                # Every page hashed in the background with the one column set the batch has.
                con.register("_rc_hashed", pa.concat_tables([f.result() for _, f in self._pages]))
                source = "_rc_hashed"
                hashes = "_h, null::varchar as _lh, _v"
            else:
                source = "_rc_batch"
                hashes = (f"{record_hash_sql(source_cols) if source_cols else chr(39) * 2} as _h, "
                          f"{legacy_record_hash_sql(source_cols) if legacy and source_cols else 'null::varchar'}"
                          f" as _lh, {version} as _v")
            # Plus the keys whose fingerprints say they equal raw (split), with raw's hash.
            known = " union all by name select * from _rc_known" if self._known is not None else ""
            if self._known is not None:
                con.register("_rc_known", self._known)
            try:
                con.execute(f"create or replace temp table _rc_source as select {keys}, {hashes} from {source}{known}")
            finally:
                if self._known is not None:
                    con.unregister("_rc_known")
            if source == "_rc_hashed":
                con.unregister("_rc_hashed")
            if self._known is not None and _one(con, "select count(*) from _rc_source") < self._known.num_rows:
                raise ConnectorError(f"{entity.source}.{entity.name}: the unchanged keys did not all reach the "
                                     "comparison; nothing was landed")
            # A source may deliver a key twice (a row that moved during the page-through): keep its
            # latest. A table with a primary key never does, so the sort is skipped then.
            if not self.unique_keys and _one(con, f"select count(*) - count(distinct ({keys})) from _rc_source"):
                con.execute(f"create or replace temp table _rc_source as select * from _rc_source "
                            f"qualify row_number() over (partition by {keys} order by _v desc nulls last) = 1")
            self._classify(load, raw_exists)
            # Only the rows of the keys found different go on to landing (which checks them
            # against the current version once more): the unchanged millions are not hashed twice.
            match_fb = " and ".join(f"f.{_quote(k)} is not distinct from b.{_quote(k)}" for k in entity.key)
            changed = con.execute(f"select b.* from _rc_batch b where exists (select 1 from _rc_found f "
                                  f"where {match_fb})").to_arrow_table()
        finally:
            con.unregister("_rc_batch")
        self.snapshot_rows = batch.num_rows + (self._known.num_rows if self._known is not None else 0)
        return changed if changed.num_rows else None

    def _classify(self, load: Load, raw_exists: bool) -> None:
        con, entity = load.con, load.entity
        keys = ", ".join(_quote(k) for k in entity.key)
        raw = "_rc_raw"
        if raw_exists and self._raw is not None:
            con.register("_rc_raw_arrow", self._raw.result())  # computed while the source was read
            raw = "_rc_raw_arrow"
        elif raw_exists:
            con.execute(f"create or replace temp table _rc_raw as {current_versions_sql(entity)}")
        else:
            con.execute(f"create or replace temp table _rc_raw as select {keys}, null::varchar as _record_hash, "
                        "null::timestamptz as _version, false as _is_tombstone, null::bigint as _load_seq "
                        "from _rc_source limit 0")
        try:
            self._diff(con, entity, raw, raw_exists)
            self._fingerprint(con, entity, raw)
        finally:
            if raw == "_rc_raw_arrow":
                con.unregister("_rc_raw_arrow")
        self._tally(load)

    def _diff(self, con, entity: Entity, raw: str, raw_exists: bool) -> None:  # noqa: ANN001
        # One full join of the source's keys with raw's current versions gives both the keys that
        # differ and those the source no longer has (keys are never NULL: plain equality).
        match_sr = " and ".join(f"r.{_quote(k)} = s.{_quote(k)}" for k in entity.key)
        both = ", ".join(f"coalesce(s.{_quote(k)}, r.{_quote(k)}) as {_quote(k)}" for k in entity.key)
        first = _quote(entity.key[0])
        con.execute(f"""
            create or replace temp table _rc_diff as
            select {both}, s.{first} is null as absent, s._h, s._lh, s._v,
                   r._record_hash as raw_hash, r._version as raw_version,
                   coalesce(r._is_tombstone, false) as raw_tombstone
            from _rc_source s
            full join {raw} r on {match_sr}
            where (s.{first} is null and not r._is_tombstone)
               or (s.{first} is not null and (r.{first} is null or r._is_tombstone
                   or (r._record_hash <> s._h and r._record_hash is distinct from s._lh)))
        """)
        match_hd = " and ".join(f"h.{_quote(k)} = d.{_quote(k)}" for k in entity.key)
        match_ed = " and ".join(f"e.{_quote(k)} = d.{_quote(k)}" for k in entity.key)
        d_keys = ", ".join(f"d.{_quote(k)}" for k in entity.key)
        # Earlier versions are looked up for the keys that differ only, not for every key.
        earlier = (f"select distinct {d_keys} from differing d join {entity.table} h on {match_hd} "
                   "and (h._record_hash = d._h or h._record_hash = d._lh)" if raw_exists
                   else f"select {d_keys} from differing d where false")
        reach = "(try_cast(? as timestamptz) - to_microseconds(?::bigint))"
        con.execute(f"""
            create or replace temp table _rc_found as
            with differing as (
                select * from _rc_diff where not absent
            ),
            earlier as ({earlier})
            select {d_keys}, d._v as source_updated_at, d.raw_version as raw_updated_at,
                   case
                       when d.raw_hash is null or d.raw_tombstone then
                           case when e.{first} is not null then 'revert'
                                when d._v < {reach} then 'back_dated'
                                else 'missed_update' end
                       when e.{first} is not null then 'revert'
                       when d._v is not distinct from d.raw_version then 'silent_change'
                       when d._v < d.raw_version or d._v < {reach} then 'back_dated'
                       else 'missed_update'
                   end as kind
            from differing d
            left join earlier e on {match_ed}
        """, [self.watermark, _micros(self.overlap)] * 2)
        con.execute(f"create or replace temp table _rc_missing as select {', '.join(_quote(k) for k in entity.key)}, "
                    "raw_version as raw_updated_at from _rc_diff where absent")
        self.raw_keys = _one(con, f"select count(*) from {raw} where not _is_tombstone")

    def _fingerprint(self, con, entity: Entity, raw: str) -> None:  # noqa: ANN001
        """Keep, per source key, its source hash and raw's current record hash once this run has
        landed: the source's version for the keys found different, raw's unchanged one otherwise."""
        if self.fingerprints is None or self._hashed is None:
            return
        keys = ", ".join(_quote(k) for k in entity.key)
        _rc_hashed_rows = self._hashed  # noqa: F841 - scanned by name
        con.execute(f"""
            create or replace table meta.{_quote(self.fingerprints)} as
            select {keys}, n._sh,
                   case when f.{_quote(entity.key[0])} is not null or r.{_quote(entity.key[0])} is null
                        then s._h else r._record_hash end as raw_hash
            from _rc_hashed_rows n
            join _rc_source s using ({keys})
            left join _rc_found f using ({keys})
            left join {raw} r using ({keys})
        """)

    def _tally(self, load: Load) -> None:
        """Counts by kind; the guards against landing tombstones that would be wrong."""
        con, entity = load.con, load.entity
        self.source_keys = _one(con, "select count(*) from _rc_source")
        for kind, n in con.execute("select kind, count(*) from _rc_found group by kind").fetchall():
            self.counts[kind] = n
        missing = _one(con, "select count(*) from _rc_missing")
        if load._quarantine and missing:
            # A record the source holds but we could not read is absent from the snapshot too:
            # a tombstone would delete it. Land none this run; the next one decides.
            self.skip_missing = (f"{missing:,} key(s) absent from the source not tombstoned this run: "
                                 f"{len(load._quarantine):,} record(s) could not be read")
            con.execute("delete from _rc_missing")
            missing = 0
        if (self.raw_keys >= MIN_KEYS_FOR_GUARD and missing > self.max_delete_share * self.raw_keys):
            raise ConnectorError(
                f"{entity.source}.{entity.name}: reconciliation refused — {missing:,} of {self.raw_keys:,} keys "
                f"({missing / self.raw_keys:.0%}) are absent from the source, above the guard of "
                f"{self.max_delete_share:.0%}; is the connection pointing at the right database? "
                "Nothing was landed; if the deletions are real, re-run with a higher max_delete_share")
        self.counts[self.missing_kind] = missing

    def land_missing(self, load: Load) -> int:
        """Tombstones for the keys the source no longer has (raw's current version becomes one)."""
        if not _one(load.con, "select count(*) from _rc_missing"):
            return 0
        where = ("absent from the source at reconciliation " + self.reconciliation_id)
        return land_tombstones(load.con, load.entity, "_rc_missing", load.load_id, load._started_at, where)

    def record(self, load: Load) -> None:
        """The run and its keys by kind, in the load's transaction; the counts onto the load's result."""
        con, entity = load.con, load.entity
        if self.skip_missing:
            load.note(self.skip_missing)
            con.execute("update meta.loads set message = ? where load_id = ?",
                        ["; ".join(load.result.notes), load.load_id])
            load.result.message = "; ".join(load.result.notes)
        record_key = "concat_ws(',', " + ", ".join(f"cast({_quote(k)} as varchar)" for k in entity.key) + ")"
        behind = "case when try_cast(? as timestamptz) > {t} then epoch(try_cast(? as timestamptz)) - epoch({t}) end"
        con.execute(f"""
            insert into meta.reconciliation_keys
            select ?, ?, ?, {record_key}, kind, source_updated_at, raw_updated_at, try_cast(? as timestamptz),
                   {behind.format(t='source_updated_at')}, now()
            from _rc_found
        """, [self.reconciliation_id, entity.source, entity.name, self.watermark,
              self.watermark, self.watermark])
        con.execute(f"""
            insert into meta.reconciliation_keys
            select ?, ?, ?, {record_key}, ?, null, raw_updated_at, try_cast(? as timestamptz), null, now()
            from _rc_missing
        """, [self.reconciliation_id, entity.source, entity.name, self.missing_kind, self.watermark])
        c = self.counts
        con.execute(
            "insert or replace into meta.reconciliations values (?, ?, ?, ?, ?, now(), 'succeeded', ?, ?, "
            "?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [self.reconciliation_id, entity.source, entity.name, load.load_id, self.started_at,
             self.source_keys, self.raw_keys, *(c[k] for k in KINDS), self.watermark,
             self.overlap.total_seconds(), load.result.message])
        load.result.reconciled = dict(c)

    def record_failure(self, load: Load) -> None:
        """A failed run: its row says why; nothing of it was landed."""
        self.reconciliation_id = self.reconciliation_id or f"{load.load_id}-rc-{uuid.uuid4().hex[:6]}"
        load.con.execute(
            "insert or replace into meta.reconciliations (reconciliation_id, source, entity, load_id, started_at, "
            "finished_at, status, watermark, overlap_seconds, message) values (?, ?, ?, ?, ?, now(), 'failed', ?, ?, ?)",
            [self.reconciliation_id, load.entity.source, load.entity.name, load.load_id, self.started_at,
             load.state.get("watermark"), self.overlap.total_seconds(), load.result.message])


def _typed(table: pa.Table) -> pa.Table:
    """As landing does it: a column that arrived all null is text."""
    return table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                                 for f in table.schema]))


def _version_sql(entity: Entity, columns: list[str]) -> str:
    return (f"try_cast({_quote(entity.version)} as timestamptz)" if entity.version and entity.version in columns
            else "null::timestamptz")


def _one(con, sql: str) -> int:  # noqa: ANN001
    row = con.execute(sql).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _micros(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1_000_000)


__all__ = ["KINDS", "LABELS", "Entity", "Reconciliation"]
