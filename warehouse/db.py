"""The DuckDB warehouse file: opening it, migrating it, and one-transaction units of work."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb


def connect(path: Path | str, *, read_only: bool = False,
            memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open (creating if needed) the warehouse at `path`, migrated to the latest schema.

    `memory_limit` (e.g. '4GB') caps DuckDB's memory; beyond it, DuckDB spills to disk.
    """
    path = Path(path)
    if read_only:
        return duckdb.connect(str(path), read_only=True)
    # The warehouse holds full IDs, phones and birth dates: no file of it (database, WAL, temp files) may
    # be readable by other local accounts. The writer process keeps a umask without world bits from here
    # on, because DuckDB creates its WAL and temp files later, on demand.
    os.umask(os.umask(0) | 0o027)
    path.parent.mkdir(parents=True, exist_ok=True)
    _set_aside_if_unfinished(path)
    con = duckdb.connect(str(path))
    for part in (path, Path(f"{path}.wal")):  # created under an older, wider umask
        if part.exists() and part.stat().st_mode & 0o007:
            os.chmod(part, part.stat().st_mode & ~0o007 & 0o777)
    con.execute("set timezone = 'UTC'")
    if memory_limit:
        con.execute(f"set memory_limit = '{memory_limit}'")
    migrate(con)
    return con


# DuckDB writes two 4 KiB database headers after the file header before the file is usable.
_MIN_DATABASE_BYTES = 3 * 4096


def _set_aside_if_unfinished(path: Path) -> None:
    """A process killed while DuckDB created the file leaves a stub shorter than its headers, which
    DuckDB then refuses forever ("not a valid DuckDB database file"). Such a stub holds no data: it is
    renamed aside (kept, named as such) so the warehouse can be created again."""
    if path.exists() and path.stat().st_size < _MIN_DATABASE_BYTES and not Path(f"{path}.wal").exists():
        path.rename(path.with_name(f"{path.name}.unfinished-{path.stat().st_mtime_ns}"))


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply the migrations not yet applied, each in its own transaction; return their names."""
    con.execute("create schema if not exists meta")
    con.execute("create table if not exists meta.migrations (name varchar primary key, applied_at timestamptz)")
    done = {r[0] for r in con.execute("select name from meta.migrations").fetchall()}
    applied = []
    folder = resources.files("warehouse").joinpath("migrations")
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".sql") or item.name in done:
            continue
        with transaction(con):
            con.execute(item.read_text(encoding="utf-8"))
            con.execute("insert into meta.migrations values (?, now())", [item.name])
        applied.append(item.name)
    return applied


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Commit everything inside, or nothing: the unit every load, merge and extract runs in."""
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")
