"""The grid registry under a simulation root: build it at day 0, advance it day by day, copy it out."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simulators.grid_registry.database import (
    SQLITE_PATH,
    RegistryInputError,
    apply_changes,
    create_and_load,
    read_table,
    sqlite_url,
)
from simulators.grid_registry.schema import TABLE_ORDER, arrow_schema

CHANGES_PATH = Path("grid_registry") / "changes" / "residents_changes.parquet"
APPLIED_DAY_PATH = Path("grid_registry") / "applied_day.json"


def _changes_schema() -> pa.Schema:
    return arrow_schema("residents").append(pa.field("day", pa.int32()))


def applied_day(root: Path | str) -> int:
    """The last simulated day whose resident changes are in the registry (0 right after build)."""
    path = Path(root) / APPLIED_DAY_PATH
    if not path.exists():
        raise FileNotFoundError(f"{path}: no grid registry under {root}; run build() first")
    return int(json.loads(path.read_text(encoding="utf-8"))["day"])


def _write_applied_day(root: Path, day: int) -> None:
    # Write-then-rename: a reader never sees half a file. Kept outside the registry database,
    # which must look like the real system and has no notion of a simulated day.
    path = root / APPLIED_DAY_PATH
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"day": day}), encoding="utf-8")
    tmp.replace(path)


def _conform_changes(changes: pa.Table) -> pa.Table:
    schema = _changes_schema()
    missing = [n for n in schema.names if n not in changes.column_names]
    unknown = [n for n in changes.column_names if n not in schema.names]
    if missing or unknown:
        raise RegistryInputError(
            f"residents_changes: missing columns {missing}, unexpected columns {unknown}; "
            "expected the residents columns plus day (int32)"
        )
    try:
        return changes.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise RegistryInputError(f"residents_changes: cannot cast to the contract: {exc}") from exc


def _pending(root: Path, after: int, upto: int) -> pa.Table:
    changes = pq.read_table(root / CHANGES_PATH)
    day = changes.column("day")
    return changes.filter(pc.and_(pc.greater(day, after), pc.less_equal(day, upto)))


def build(
    root: Path | str, tables: dict[str, pa.Table], residents_changes: pa.Table
) -> dict[str, int]:
    """Write the day-0 registry to ROOT/grid_registry/registry.sqlite and stash the changes.

    Any existing registry under `root` is replaced. Changes dated day 0 or earlier are applied at
    once (they are part of the day-0 state); later ones wait in
    ROOT/grid_registry/changes/residents_changes.parquet for advance(). Returns row counts.
    """
    root = Path(root)
    changes = _conform_changes(residents_changes)
    db_path = root / SQLITE_PATH
    db_path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        db_path.with_name(db_path.name + suffix).unlink(missing_ok=True)
    (root / APPLIED_DAY_PATH).unlink(missing_ok=True)
    counts = create_and_load(sqlite_url(root), tables)
    (root / CHANGES_PATH).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(changes, root / CHANGES_PATH)
    apply_changes(sqlite_url(root), _pending(root, after=-(2**31), upto=0))
    _write_applied_day(root, 0)
    return counts


def advance(root: Path | str, day: int) -> int:
    """Apply every resident change with applied_day < change.day <= `day`; return how many.

    Idempotent: a second call for the same (or an earlier) day applies nothing. The database
    commits before the applied day is recorded; if the process dies in between, the next call
    re-applies the same full-state upserts, which leaves the same rows.
    """
    root = Path(root)
    done = applied_day(root)
    if day <= done:
        return 0
    applied = apply_changes(sqlite_url(root), _pending(root, after=done, upto=day))
    _write_applied_day(root, day)
    return applied


def load_into(url: str, root: Path | str) -> dict[str, int]:
    """Copy the registry's current SQLite state into the database at `url`; return row counts.

    The target schema is dropped and recreated: use a database of its own, e.g.
    postgresql+psycopg://user@host/grid_registry or mysql+pymysql://user@host/grid_registry.
    """
    source = sqlite_url(root)
    return create_and_load(url, {name: read_table(source, name) for name in TABLE_ORDER})
