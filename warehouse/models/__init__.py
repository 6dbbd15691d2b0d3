"""SQL models for core and marts: list the .sql files of a layer and run them in dependency order."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from graphlib import TopologicalSorter
from pathlib import Path

import duckdb

from warehouse import pseudonym

MODELS = Path(__file__).parent
LAYERS = {"core": "core", "marts": "mart"}  # folder -> schema the folder's models create


_CREATES = re.compile(r"create\s+or\s+replace\s+table\s+(\w+)\.(\w+)", re.IGNORECASE)
_REFERS = re.compile(r"\b(core|mart)\.(\w+)\b", re.IGNORECASE)
_COMMENT = re.compile(r"--[^\n]*")
# A model whose header says `-- incremental key: person_id` can be refreshed for the persons a merge
# touched (temp table touched_persons): its reads of core.person_source are restricted to them.
_INCREMENTAL = re.compile(r"^--\s*incremental key:\s*person_id\b", re.MULTILINE)
_PERSON_SOURCE = re.compile(r"\bfrom\s+core\.person_source\b", re.IGNORECASE)
TOUCHED = "touched_persons"


class ModelError(RuntimeError):
    """A model file that cannot be run: no `create or replace table`, a cycle, or a SQL error."""


def model_files(layer: str) -> list[Path]:
    """The .sql files of `layer` ('core' or 'marts') in the order they must run.

    Order: a model runs after every model of the same layer it refers to (`core.x`, `mart.y`),
    ties broken by file name, so the order is deterministic.
    """
    if layer not in LAYERS:
        raise ModelError(f"unknown model layer {layer!r}: use one of {sorted(LAYERS)}")
    files = sorted((MODELS / layer).glob("*.sql"))
    schema = LAYERS[layer]
    by_table: dict[str, Path] = {}
    for f in files:
        table = _created_table(f)
        if not table.startswith(schema + "."):
            raise ModelError(f"{f.name}: creates {table}, but models in {layer}/ create {schema}.*")
        by_table[table] = f
    graph: dict[str, set[str]] = {}
    for table, f in by_table.items():
        text = _COMMENT.sub("", f.read_text(encoding="utf-8")).lower()
        refs = {f"{s}.{n}" for s, n in _REFERS.findall(text)}
        graph[table] = {r for r in refs if r in by_table and r != table}
    sorter = TopologicalSorter(graph)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return [by_table[t] for t in order]


def _created_table(f: Path) -> str:
    m = _CREATES.search(_COMMENT.sub("", f.read_text(encoding="utf-8")))
    if not m:
        raise ModelError(f"{f}: a model file must hold `create or replace table <schema>.<name> as ...`")
    return f"{m.group(1)}.{m.group(2)}".lower()


def sql_fingerprint(texts: Iterable[str]) -> str:
    """A short hash of a layer's SQL: when it changes, rows kept from an earlier build are suspect."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()[:16]


def version_changed(con: duckdb.DuckDBPyConnection, layer: str, fingerprint: str) -> bool:
    """True when `layer` was last built by other SQL than `fingerprint` (or never)."""
    row = con.execute("select fingerprint from meta.model_versions where layer = ?", [layer]).fetchone()
    return row is None or row[0] != fingerprint


def record_version(con: duckdb.DuckDBPyConnection, layer: str, fingerprint: str) -> None:
    con.execute("insert or replace into meta.model_versions values (?, ?, now())", [layer, fingerprint])


def is_incremental(f: Path) -> bool:
    """True when the model declares it can be refreshed per person (`-- incremental key: person_id`)."""
    return bool(_INCREMENTAL.search(f.read_text(encoding="utf-8")))


def refresh_for_touched(con: duckdb.DuckDBPyConnection, f: Path) -> None:
    """Replace the model's rows of the touched persons (and of persons no longer resolved) only.

    The model's own SQL runs with core.person_source restricted to temp table touched_persons, so
    every row it yields belongs to a touched person; rows of other persons cannot have changed.
    """
    table = _created_table(f)
    sql = re.sub(r"create\s+or\s+replace\s+table\s+\w+\.\w+\s+as\b", "", f.read_text(encoding="utf-8"),
                 count=1, flags=re.IGNORECASE)
    sql = _PERSON_SOURCE.sub(
        lambda _m: f"from (select * from core.person_source where person_id in (select person_id from {TOUCHED})) "
                   f"as person_source", sql)
    con.execute(f"create or replace temp table _refreshed as {sql}")
    con.execute(f"delete from {table} where person_id in (select person_id from {TOUCHED}) "
                f"or person_id not in (select person_id from core.person_source)")
    con.execute(f"insert into {table} select * from _refreshed")
    con.execute("drop table _refreshed")


def run_layer(con: duckdb.DuckDBPyConnection, layer: str, *, incremental: bool = False) -> dict[str, int]:
    """Run every model of `layer` in order; return {table: row count}. Opens no transaction.

    With `incremental`, models declaring `-- incremental key: person_id` are refreshed for the
    persons in temp table touched_persons instead of rebuilt (the caller fills that table).
    """
    con.execute(f"create schema if not exists {LAYERS[layer]}")
    files = model_files(layer)
    key = pseudonym.pseudonym_key()
    pseudonym.set_hmac_variables(con, key)
    # Rows refreshed by new SQL (or under a rotated pseudonym key) next to rows kept from the old
    # would mix two versions: either change rebuilds the layer in full.
    fingerprint = sql_fingerprint([*(f.read_text(encoding="utf-8") for f in files), pseudonym.fingerprint(key)])
    incremental = incremental and not version_changed(con, layer, fingerprint)
    counts: dict[str, int] = {}
    for f in files:
        table = _created_table(f)
        try:
            if incremental and is_incremental(f) and _exists(con, table):
                refresh_for_touched(con, f)
            else:
                con.execute(f.read_text(encoding="utf-8"))
        except duckdb.Error as e:
            raise ModelError(f"model {layer}/{f.name} failed: {e}") from e
        row = con.execute(f"select count(*) from {table}").fetchone()
        counts[table] = int(row[0]) if row else 0
    record_version(con, layer, fingerprint)
    return counts


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    row = con.execute("select count(*) from duckdb_tables() where schema_name = ? and table_name = ?",
                      [schema, name]).fetchone()
    return bool(row and row[0])


def build_core(con: duckdb.DuckDBPyConnection, *, incremental: bool = False) -> dict[str, int]:
    """Build the core schema (grid, household, address, person, ticket, city case, incident, ...).

    Reads staging.stg_* (standardised) and core.person_source (the resolver's output); see
    run_layer for `incremental`.
    """
    return run_layer(con, "core", incremental=incremental)


def build_marts(con: duckdb.DuckDBPyConnection, *, incremental: bool = False) -> dict[str, int]:
    """Build the mart schema from core (grid daily, hotline rates, roster, warnings, quality)."""
    return run_layer(con, "marts", incremental=incremental)
