"""Land a batch of delivered rows into raw.<source>_<entity>: schema checks, key + hash de-duplication."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from .exceptions import SchemaDrift

LINEAGE = ("_load_id", "_extracted_at", "_record_hash", "_source_position", "_is_tombstone")
# The _record_hash of a tombstone: a raw row that only says "the source no longer has this key".
TOMBSTONE_HASH = "tombstone"


@dataclass(frozen=True)
class Entity:
    """What a connector declares about one entity it lands."""

    source: str
    name: str
    key: tuple[str, ...]                                  # the source's primary key
    required: dict[str, pa.DataType] = field(default_factory=dict)  # columns that must come, typed
    # The source's own clock column, if it has one: orders two versions of a key landed by the
    # same load, and tells a reconciliation how late a change arrived.
    version: str | None = None

    @property
    def table(self) -> str:
        return f"raw.{self.source}_{self.name}"


@dataclass
class Landed:
    rows_in: int
    landed: int
    duplicates: int
    new_columns: list[tuple[str, str]]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def record_hash_sql(columns: list[str] | tuple[str, ...], alias: str = "") -> str:
    """The SQL of a record's content hash over `columns`: 16 hex digits of DuckDB's 64-bit hash().

    Why this hash: the hash only has to tell two versions of the same key apart (it is compared
    with `key` equal), so 64 bits leave a collision — a new version taken for a duplicate — at
    about 1 in 10^19 per pair of versions of one key. It is 5-8x cheaper than the md5 of a JSON
    rendering of the record it replaced, which was most of landing's cost. Columns are hashed in
    name order, NULL hashes to its own constant and hash(a, b) depends on the argument order, so
    the same values in the same columns give the same hash however the source ordered them. DuckDB
    does not promise hash() stays the same across versions: if a DuckDB upgrade changed it, a
    record delivered again after the upgrade would land once more as an identical version (never
    lost). Rows hashed by the md5 of earlier versions (32 hex digits) keep being recognised; see
    LEGACY_HASH_LENGTH.
    """
    return f"printf('%016x', {record_hash_number_sql(columns, alias)})"


def record_hash_number_sql(columns: list[str] | tuple[str, ...], alias: str = "") -> str:
    """The record hash as the UBIGINT it is made of (cheaper to group by than its text)."""
    prefix = f"{alias}." if alias else ""
    return "hash(" + ", ".join(prefix + _quote(c) for c in sorted(columns)) + ")"


def legacy_record_hash_sql(columns: list[str] | tuple[str, ...], alias: str = "") -> str:
    """The md5-of-JSON record hash that raw tables landed before record_hash_sql (32 hex digits)."""
    prefix = f"{alias}." if alias else ""
    return "md5(to_json(struct_pack(" + ", ".join(f"{_quote(c)} := {prefix}{_quote(c)}" for c in sorted(columns)) + ")))"


LEGACY_HASH_LENGTH = 32


def _existing_columns(con: duckdb.DuckDBPyConnection, entity: Entity) -> dict[str, str]:
    rows = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'raw' and table_name = ? order by ordinal_position",
        [f"{entity.source}_{entity.name}"],
    ).fetchall()
    return {name: dtype for name, dtype in rows}


def check_required(entity: Entity, batch: pa.Table) -> None:
    """Fail the load if a required column is missing or arrives with another type."""
    for column, expected in entity.required.items():
        if column not in batch.column_names:
            raise SchemaDrift(f"{entity.source}: required column {column!r} is missing from {entity.name}; "
                              f"the source changed its schema — fix the source or update the connector's settings")
        got = batch.schema.field(column).type
        if got != expected and not pa.types.is_null(got):
            raise SchemaDrift(f"{entity.source}: required column {column!r} of {entity.name} arrived as {got}, "
                              f"expected {expected}; nothing of this load was landed")


def land(con: duckdb.DuckDBPyConnection, entity: Entity, batch: pa.Table, load_id: str,
         extracted_at: str, *, new_keys: bool = False) -> Landed:
    """Insert rows whose (key, record hash) is not in raw yet; call inside the load's transaction.

    `batch` holds the source columns plus `_source_position`. New source columns are added to the
    raw table (and reported); the hash covers the source columns only, so the same record
    delivered twice (an overlap window, a page served twice, a re-run) lands once.

    `new_keys`: the caller vouches that raw holds no row of any key of `batch` and that no key
    repeats within it (Load.expect_new_keys checks the repeats): every row is fresh, so they are
    inserted without the comparison.
    """
    check_required(entity, batch)
    source_cols = [c for c in batch.column_names if c not in LINEAGE]
    # Columns that arrive all-null have no type yet; land them as text.
    batch = batch.cast(pa.schema([
        pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in batch.schema
    ]))
    # Scanned by its variable name (DuckDB's replacement scan), not con.register(): a view
    # registered inside an open transaction keeps its Arrow data alive until the commit, so a load
    # landing batch after batch (Load.land_as_added) would hold every batch in memory.
    _incoming = batch  # noqa: F841
    try:
        existing = _existing_columns(con, entity)
        new_columns: list[tuple[str, str]] = []
        if not existing:
            con.execute(f"create table {entity.table} as select "
                        + ", ".join(_quote(c) for c in source_cols)
                        + ", ''::varchar as _load_id, now() as _extracted_at, ''::varchar as _record_hash, "
                        "''::varchar as _source_position from _incoming limit 0")
        else:
            types = dict(con.execute("select column_name, column_type from (describe _incoming)").fetchall())
            for c in source_cols:
                if c not in existing:
                    con.execute(f"alter table {entity.table} add column {_quote(c)} {types[c]}")
                    new_columns.append((c, types[c]))
        changed = _changed_types(con, existing, source_cols, batch)
        try:
            if new_keys:
                landed = _insert_all(con, entity, batch, source_cols, load_id, extracted_at)
            else:
                landed = _insert_fresh(con, entity, batch, source_cols, bool(existing), load_id, extracted_at)
        except (duckdb.ConversionException, duckdb.BinderException) as exc:
            if not changed:
                raise
            # One line naming the table, each column and both types, instead of DuckDB's traceback.
            raise SchemaDrift(f"{entity.table}: " + "; ".join(
                f"column {c!r} changed type from {was} to {now}" for c, was, now in changed)
                + " in the source; nothing of this table was landed (the other tables still sync) — "
                  "cast it back in the source, or migrate the raw column and update the connector") from exc
    finally:
        del _incoming
    return Landed(batch.num_rows, landed, batch.num_rows - landed, new_columns)


def _insert_all(con: duckdb.DuckDBPyConnection, entity: Entity, batch: pa.Table, source_cols: list[str],
                load_id: str, extracted_at: str) -> int:
    """Insert every row of `batch` (keys new to raw, none repeated: see land's `new_keys`)."""
    _all = batch  # noqa: F841 - scanned by name, as _incoming
    cols = ", ".join(_quote(c) for c in source_cols)
    return con.execute(f"""
        insert into {entity.table} ({cols}, _load_id, _extracted_at, _record_hash, _source_position)
        select {cols}, ?::varchar, ?::timestamptz, {record_hash_sql(source_cols)}, _source_position from _all
    """, [load_id, extracted_at]).fetchall()[0][0]


def _insert_fresh(con: duckdb.DuckDBPyConnection, entity: Entity, batch: pa.Table, source_cols: list[str],
                  existing: bool, load_id: str, extracted_at: str) -> int:
    """Insert the rows of `batch` that are fresh: one per (key, record hash) of the batch (the first
    by _source_position), and none whose key's current version in raw has that hash. Returns how
    many were inserted.

    The choice is made on a narrow projection (key, hash, position and row number), never on the
    whole rows: only the chosen rows' numbers come back, and the insert then takes those rows
    straight from the batch. Carrying every column through the de-duplication and the comparison
    with raw cost most of a landing's memory and time (bench/README.md, health-code memory).
    """
    key_cols = ", ".join(_quote(k) for k in entity.key)
    numbers = pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), batch.num_rows)), 1)
    _numbered = batch.append_column("_i", numbers)  # noqa: F841
    # Against what raw holds already: nothing to compare with on a first load into an empty table.
    # A row is skipped only when it equals its key's *current* version (the one of the latest
    # load), not any earlier one: a value reverted to an earlier version lands again. Only the
    # batch's own keys are looked up (current_versions_sql's keys_from).
    checks, current, legacy_col = [], "", ""
    if existing and con.execute(f"select 1 from {entity.table} limit 1").fetchall():
        current = f", current_versions as ({current_versions_sql(entity, 'distinct_rows')})"
        key_match = " and ".join(f"c.{_quote(k)} is not distinct from d.{_quote(k)}" for k in entity.key)
        checks.append(f"not exists (select 1 from current_versions c where {key_match} "
                      "and c._record_hash = printf('%016x', d._hn))")
        legacy = con.execute(f"select 1 from {entity.table} where length(_record_hash) = "
                             f"{LEGACY_HASH_LENGTH} limit 1").fetchall()
        if legacy:
            # Versions landed with the old md5 hash: compare those by that hash, so a record
            # delivered again after the change of hash still lands once.
            legacy_col = f", any_value({legacy_record_hash_sql(source_cols, 'i')}) as _lh"
            checks.append(f"not exists (select 1 from current_versions c where {key_match} and "
                          "c._record_hash = d._lh)")
    where = ("where " + " and ".join(checks)) if checks else ""
    fresh = con.execute(f"""
        with distinct_rows as (
            select {key_cols}, _hn, coalesce(arg_min(_i, _source_position), min(_i)) as _i{legacy_col}
            from (select i.*, {record_hash_number_sql(source_cols, 'i')} as _hn from _numbered i) i
            group by all
        ){current}
        select _i, _hn from distinct_rows d {where} order by _i
    """).to_arrow_table()
    del _numbered
    if fresh.num_rows == 0:
        return 0
    rows = batch if fresh.num_rows == batch.num_rows else batch.take(fresh.column("_i"))
    _fresh = rows.append_column("_hn", fresh.column("_hn"))  # noqa: F841 - scanned by name, as _incoming
    del rows, fresh
    cols = ", ".join(_quote(c) for c in source_cols)
    return con.execute(f"""
        insert into {entity.table} ({cols}, _load_id, _extracted_at, _record_hash, _source_position)
        select {cols}, ?::varchar, ?::timestamptz, printf('%016x', _hn), _source_position from _fresh
    """, [load_id, extracted_at]).fetchall()[0][0]


def _changed_types(con: duckdb.DuckDBPyConnection, existing: dict[str, str],
                   source_cols: list[str], batch: pa.Table) -> list[tuple[str, str, str]]:
    """(column, raw type, incoming type) of the columns that arrive with another type than raw's."""
    if not existing:
        return []
    _incoming = batch  # noqa: F841 - scanned by name, as in land()
    types = dict(con.execute("select column_name, column_type from (describe _incoming)").fetchall())
    return [(c, existing[c], types[c]) for c in source_cols
            if c in existing and c in types and existing[c] != types[c] and types[c] != "NULL"]


def current_versions_sql(entity: Entity, keys_from: str | None = None) -> str:
    """SELECT of each key's current version in raw: key columns, _record_hash, _version,
    _is_tombstone and _load_seq — the row of the load with the greatest load sequence
    (meta.loads.load_seq), and within one load the latest by the entity's clock.

    `keys_from` (a relation name) restricts it to the keys that relation holds.
    """
    key_cols = ", ".join(f"r.{_quote(k)}" for k in entity.key)
    version = f"try_cast(r.{_quote(entity.version)} as timestamptz)" if entity.version else "null::timestamptz"
    where = ""
    if keys_from:
        match = " and ".join(f"r.{_quote(k)} is not distinct from x.{_quote(k)}" for k in entity.key)
        where = f"where exists (select 1 from {keys_from} x where {match})"
    return f"""
        select {key_cols}, r._record_hash, {version} as _version,
               r._record_hash = '{TOMBSTONE_HASH}' as _is_tombstone, l.load_seq as _load_seq
        from {entity.table} r
        left join meta.loads l on l.load_id = r._load_id
        {where}
        qualify row_number() over (partition by {key_cols}
                                   order by l.load_seq desc nulls last, {version} desc nulls last,
                                            r.rowid desc) = 1"""


def land_tombstones(con: duckdb.DuckDBPyConnection, entity: Entity, keys_from: str, load_id: str,
                    extracted_at: str, position: str) -> int:
    """Land one tombstone per key of relation `keys_from` (key columns only): a raw row holding
    the key, `_is_tombstone = true`, `_record_hash = 'tombstone'` and no source values.

    Call inside the load's transaction. A key whose current version is a tombstone already is
    skipped, so a second reconciliation lands nothing.
    """
    con.execute(f"alter table {entity.table} add column if not exists _is_tombstone boolean")
    key_cols = ", ".join(_quote(k) for k in entity.key)
    match = " and ".join(f"c.{_quote(k)} is not distinct from x.{_quote(k)}" for k in entity.key)
    return con.execute(f"""
        insert into {entity.table} ({key_cols}, _load_id, _extracted_at, _record_hash, _source_position,
                                    _is_tombstone)
        with current_versions as ({current_versions_sql(entity, keys_from)})
        select {", ".join(f"x.{_quote(k)}" for k in entity.key)}, ?::varchar, ?::timestamptz,
               '{TOMBSTONE_HASH}', ?, true
        from {keys_from} x
        where not exists (select 1 from current_versions c where {match} and c._is_tombstone)
    """, [load_id, extracted_at, position]).fetchall()[0][0]


def late_rows(con: duckdb.DuckDBPyConnection, entity: Entity, load_id: str,
              watermark: str | None) -> tuple[int, float | None]:
    """(rows, greatest seconds behind) of the rows load `load_id` landed whose `entity.version`
    clock is at or behind `watermark`: rows the cursor's overlap or inclusive bound caught late."""
    if not entity.version or not watermark:
        return 0, None
    version = f"try_cast({_quote(entity.version)} as timestamptz)"
    row = con.execute(f"""
        select count(*), max(epoch(try_cast(? as timestamptz)) - epoch({version}))
        from {entity.table}
        where _load_id = ? and {version} <= try_cast(? as timestamptz)
    """, [watermark, load_id, watermark]).fetchone()
    return (int(row[0]), row[1]) if row else (0, None)
