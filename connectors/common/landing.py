"""Land a batch of delivered rows into raw.<source>_<entity>: schema checks, key + hash de-duplication."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from .exceptions import SchemaDrift

LINEAGE = ("_load_id", "_extracted_at", "_record_hash", "_source_position")


@dataclass(frozen=True)
class Entity:
    """What a connector declares about one entity it lands."""

    source: str
    name: str
    key: tuple[str, ...]                                  # the source's primary key
    required: dict[str, pa.DataType] = field(default_factory=dict)  # columns that must come, typed

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
         extracted_at: str) -> Landed:
    """Insert rows whose (key, record hash) is not in raw yet; call inside the load's transaction.

    `batch` holds the source columns plus `_source_position`. New source columns are added to the
    raw table (and reported); the hash covers the source columns only, so the same record
    delivered twice (an overlap window, a page served twice, a re-run) lands once.
    """
    check_required(entity, batch)
    source_cols = [c for c in batch.column_names if c not in LINEAGE]
    # Columns that arrive all-null have no type yet; land them as text.
    batch = batch.cast(pa.schema([
        pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in batch.schema
    ]))
    con.register("_incoming", batch)
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
        key_cols = ", ".join(_quote(k) for k in entity.key)
        cols = ", ".join(_quote(c) for c in source_cols)
        # Against what raw holds already: nothing to compare with on a first load into an empty table.
        checks = []
        if existing and con.execute(f"select 1 from {entity.table} limit 1").fetchall():
            key_match = " and ".join(f"r.{_quote(k)} is not distinct from i.{_quote(k)}" for k in entity.key)
            checks.append(f"not exists (select 1 from {entity.table} r where {key_match} and r._record_hash = i._h)")
            legacy = con.execute(f"select 1 from {entity.table} where length(_record_hash) = "
                                 f"{LEGACY_HASH_LENGTH} limit 1").fetchall()
            if legacy:
                # Versions landed with the old md5 hash: compare those by that hash, so a record
                # delivered again after the change of hash still lands once.
                checks.append(f"not exists (select 1 from {entity.table} r where {key_match} and "
                              f"r._record_hash = {legacy_record_hash_sql(source_cols, 'i')})")
        where = ("where " + " and ".join(checks)) if checks else ""
        landed = con.execute(f"""
            insert into {entity.table} ({cols}, _load_id, _extracted_at, _record_hash, _source_position)
            with numbered as (
                select i.*, {record_hash_number_sql(source_cols, 'i')} as _hn from _incoming i
            ), hashed as (
                select *, printf('%016x', _hn) as _h from numbered
            ), fresh as (
                select * from hashed i
                {where}
                qualify row_number() over (partition by {key_cols}, _hn order by _source_position) = 1
            )
            select {cols}, ?::varchar, ?::timestamptz, _h, _source_position from fresh
        """, [load_id, extracted_at]).fetchall()[0][0]
    finally:
        con.unregister("_incoming")
    return Landed(batch.num_rows, landed, batch.num_rows - landed, new_columns)
