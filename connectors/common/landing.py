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
        hash_expr = "md5(to_json(struct_pack(" + ", ".join(f"{_quote(c)} := i.{_quote(c)}" for c in sorted(source_cols)) + ")))"
        key_match = " and ".join(f"r.{_quote(k)} is not distinct from i.{_quote(k)}" for k in entity.key)
        cols = ", ".join(_quote(c) for c in source_cols)
        before = con.execute(f"select count(*) from {entity.table}").fetchall()[0][0]
        con.execute(f"""
            insert into {entity.table} ({cols}, _load_id, _extracted_at, _record_hash, _source_position)
            with hashed as (
                select i.*, {hash_expr} as _h from _incoming i
            ), fresh as (
                select * from hashed i
                where not exists (
                    select 1 from {entity.table} r where {key_match} and r._record_hash = i._h
                )
                qualify row_number() over (
                    partition by {", ".join(_quote(k) for k in entity.key)}, _h order by _source_position) = 1
            )
            select {cols}, ?::varchar, ?::timestamptz, _h, _source_position from fresh
        """, [load_id, extracted_at])
        after = con.execute(f"select count(*) from {entity.table}").fetchall()[0][0]
    finally:
        con.unregister("_incoming")
    landed = after - before
    return Landed(batch.num_rows, landed, batch.num_rows - landed, new_columns)
