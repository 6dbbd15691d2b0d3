"""The health-code platform's daily export files (file drop) landed into raw.health_codes_exports."""

from __future__ import annotations

import logging
import time
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from connectors.common import freshness
from connectors.common.config import Connection
from connectors.common.exceptions import ConfigurationError, SchemaDrift
from connectors.common.loads import Load, LoadResult
from connectors.common.prefetch import prefetch

from . import helpers, settings
from .exceptions import UnreadableFile

log = logging.getLogger(__name__)
__all__ = ["recheck", "reconcile", "sync"]


def sync(con: duckdb.DuckDBPyConnection, conn: Connection, *, full_refresh: bool = False,
         stable_seconds: float | None = None, settle_seconds: float | None = None,
         retry_file: str | None = None, recheck: bool = False) -> list[LoadResult]:
    """Land every new, complete export file of the drop folder `conn.path` (file:///abs/path/to/drop).

    One load of the `exports` entity. `stable_seconds` / `settle_seconds` override the connection's
    extras of the same name, which override settings.STABLE_SECONDS / SETTLE_SECONDS.
    `retry_file` reads that file again even if it is unchanged (one set aside, once fixed).
    `recheck` is the nightly re-check (see `recheck`).
    """
    with Load(con, settings.EXPORTS, full_refresh=full_refresh) as load:
        # Inside the load, so a bad setting is recorded in meta.loads like any failure.
        stable = _seconds(conn, "stable_seconds", stable_seconds, settings.STABLE_SECONDS)
        settle = _seconds(conn, "settle_seconds", settle_seconds, settings.SETTLE_SECONDS)
        load.land_as_added(settings.LAND_ROWS)  # block by block: memory stays bounded
        result = _load_exports(con, load, helpers.drop_folder(conn), stable, settle, retry_file, recheck)
    log.info(result.summary())
    return [result]


def recheck(con: duckdb.DuckDBPyConnection, conn: Connection, **options: Any) -> list[LoadResult]:
    """The nightly re-check of the drop, for reconciliation: proportional to new or changed bytes.

    A file is identified by name + size + mtime + inode change time + content hash. A file whose
    name, size, mtime and change time are as last seen is not opened at all; any other is hashed
    again, and read again only if its content differs from what that name last held (so a file
    restored to earlier bytes is read, and landing brings back the reverted rows). Files that left
    the folder are listed. The load's message says how many files and bytes were read.
    """
    return sync(con, conn, recheck=True, **options)


def reconcile(con: duckdb.DuckDBPyConnection, conn: Connection, *, reset_cursor: bool = False,
              **options: Any) -> list[LoadResult]:
    """The drop's scheduled reconciliation (settings.RECONCILE_SCHEDULE): the nightly `recheck`.
    `reset_cursor` (`onenet reconcile --reset-cursor`) forgets what was known of every file, so each
    is read again; landing still adds only rows that differ from their key's current version."""
    return sync(con, conn, full_refresh=reset_cursor, recheck=True, **options)


def _load_exports(con: duckdb.DuckDBPyConnection, load: Load, folder: Path, stable: float, settle: float,
                  retry_file: str | None = None, recheck_all: bool = False) -> LoadResult:
    files: dict[str, dict[str, Any]] = dict(load.state.get("files", {}))
    hashes: dict[str, str] = dict(load.state.get("hashes", {}))
    watermark: str | None = load.state.get("watermark")
    today = _today()
    # A file set aside until its date (dated in the future) is looked at again once that day has come.
    known = {name: seen for name, seen in files.items() if not seen.get("hold_until", "") or seen["hold_until"] > today}
    if retry_file is not None:
        _check_retry(folder, retry_file, files)
        known.pop(retry_file, None)
        load.note(f"{retry_file}: read again on request (--retry-file)")
    found = helpers.scan(folder, known, stable, compare_ctime=recheck_all)
    for note in found.waiting:
        load.note(note)
    if found.ignored:
        load.note(f"ignored {len(found.ignored)} file(s) not named 健康码日报_YYYYMMDD[(重发)].csv|xlsx: "
                  + ", ".join(found.ignored[:10]) + (" …" if len(found.ignored) > 10 else ""))
    _gone(load, folder, files)
    added: set[str] = set()  # export dates this load read rows of, to spot re-sent rows
    figures = {"read": 0, "touched": 0, "bytes": 0}
    for drop in found.ready:
        try:
            probe = helpers.probe(_opener(drop.path))
        except FileNotFoundError:
            load.note(f"{drop.name}: disappeared while being read; left for the next sync")
            continue
        figures["bytes"] += probe.size
        if probe.size != drop.size:
            load.note(f"{drop.name}: changed while being read; left for the next sync")
            continue
        digest = probe.sha256
        record = {"sha256": digest, "size": drop.size, "mtime_ns": drop.mtime_ns, "ctime_ns": drop.ctime_ns,
                  "export_date": drop.export_date}
        before = files.get(drop.name)
        if before and before.get("sha256") == digest and not before.get("quarantined") and drop.name != retry_file:
            files[drop.name] = {**before, **record}  # touched, not changed
            figures["touched"] += 1
            continue
        same_day = _same_content_same_day(files, drop, digest)
        if same_day is not None:
            load.note(f"{drop.name}: same content as {same_day}, which was loaded already; skipped as a re-send")
            files[drop.name] = {**record, "resend_of": same_day}
            continue
        if drop.export_date > today:
            _set_aside(load, drop, probe, f"{settings.SOURCE}: {drop.name} is dated {drop.export_date}, later than "
                       f"today in Beijing ({today}): an export cannot come from the future. It is looked at again "
                       f"on {drop.export_date}; if its date is wrong, ask the platform to re-send it under the "
                       "right name")
            files[drop.name] = {**record, "quarantined": "future", "hold_until": drop.export_date}
            continue
        copy_of = hashes.get(digest)
        if copy_of is not None and copy_of != drop.name:
            record["copy_of"] = copy_of
            load.note(f"{drop.name}: the same bytes as {copy_of} (export of {files.get(copy_of, {}).get('export_date')})"
                      f"; landed as the export of {drop.export_date} — check with the platform that this day's "
                      "export was not a copy of another day's by mistake")
        if before and not before.get("quarantined"):
            load.note(f"{drop.name}: changed since it was loaded; read again (only changed rows land)")
        young = time.time() - drop.mtime_ns / 1e9 < settle
        resent = drop.export_date in added or _delivered_under_another_name(drop, files)
        try:
            rows = _read_file(con, load, drop, probe, young, resent)
        except helpers.NotReady as why:
            load.note(f"{drop.name}: {why}; left for the next sync")
            continue
        except (UnreadableFile, SchemaDrift) as exc:
            _set_aside(load, drop, probe, str(exc), getattr(exc, "line", 1), getattr(exc, "byte_offset", 0))
            files[drop.name] = {**record, "quarantined": "unreadable"}
            continue
        if rows is None:
            load.note(f"{drop.name}: changed while being read; left for the next sync")
            continue
        figures["read"] += 1
        if before and before.get("quarantined"):
            load.execute_on_finish("update meta.quarantined_files set released_at = now(), released_by = ? "
                                   "where source = ? and file_name = ? and released_at is null",
                                   [load.load_id, settings.SOURCE, drop.name])
            load.note(f"{drop.name}: read this time; it had been set aside ({before['quarantined']})")
        files[drop.name] = record
        added.add(drop.export_date)
        if rows:
            hashes[digest] = drop.name  # an empty or header-only file is no evidence of a re-send
            watermark = max(watermark or drop.export_date, drop.export_date)  # real rows only: empty files prove nothing
    if recheck_all:
        load.note(f"re-check: {found.unchanged} file(s) unchanged by name, size, mtime and change time (not opened), "
                  f"{figures['touched']} touched (hashed again, same content), {figures['read']} read, "
                  f"{figures['bytes']:,} bytes hashed or read")
    return load.finish({"files": files, "hashes": hashes}, watermark=watermark)


def _read_file(con: duckdb.DuckDBPyConnection, load: Load, drop: helpers.DropFile, probe: helpers.Probe,
               young: bool, resent: bool) -> int | None:
    """Land one file chunk by chunk; the number of data rows it had (broken lines included), or None
    if it changed while being read. NotReady / UnreadableFile / SchemaDrift: nothing of it stays."""
    prefix = f"{drop.name} line "
    mark = load.mark()
    mode: str | None = None
    while True:
        # A day raw holds no row of (not even from this load: it sees its own rows) cannot repeat a
        # key raw has: its rows land without the comparison with raw's current versions, unless a
        # record number repeats within the file (Load.expect_new_keys checks).
        load.expect_new_keys(_new_day(con, drop.export_date))
        reader = helpers.ExportReader(drop.name, _opener(drop.path), probe, young=young, mode=mode)
        repeated = kept = 0
        # The next blocks are read, decoded and parsed in a thread while DuckDB lands this one
        # (both release the GIL most of the time): reading no longer waits for landing, nor
        # landing for reading. The thread is only a few blocks ahead, so memory stays bounded.
        ahead = prefetch((chunk, helpers.with_file_columns(chunk.table, drop.export_date, drop.name),
                          helpers.positions(drop.name, chunk.lines)) for chunk in reader.chunks())
        try:
            with closing(ahead):  # a failure here stops the thread before it reads on
                for chunk, rows, where in ahead:
                    if resent and rows.num_rows:
                        rows, where, n = _without_resent_rows(con, rows, where)
                        repeated, kept = repeated + n, kept + rows.num_rows
                    load.add(rows, where)
                    for line, raw, reason in chunk.bad:
                        load.quarantine(f"{drop.name} line {line}", raw,
                                        f"{drop.name} line {line}: {reason}; the other lines were landed — correct "
                                        "this line at the source and re-send the file")
        except helpers.MixedEncoding:
            load.undo(mark, prefix)  # lines in two encodings: read it again from the start, line by line
            mode = "by-line"
            continue
        except (helpers.NotReady, UnreadableFile, SchemaDrift):
            load.undo(mark, prefix)
            raise
        break
    st = drop.path.stat()
    if (st.st_size, st.st_mtime_ns) != (drop.size, drop.mtime_ns):
        load.undo(mark, prefix)
        return None
    if repeated:
        load.note(f"{drop.name}: re-send of {drop.export_date}; {repeated:,} row(s) identical to rows already "
                  f"delivered were skipped, {kept:,} differ and were read")
    if reader.bad_lines:
        load.note(f"{drop.name}: {len(reader.bad_lines)} broken line(s) quarantined (line "
                  + ", ".join(str(line) for line in reader.bad_lines[:10])
                  + ("…" if len(reader.bad_lines) > 10 else "") + ")")
    for note in reader.notes:
        load.note(note)
    return reader.rows + len(reader.bad_lines)


def _new_day(con: duckdb.DuckDBPyConnection, export_date: str) -> bool:
    """Whether raw holds no row of this export date (or raw has no table yet)."""
    schema, name = settings.EXPORTS.table.split(".")
    if not con.execute("select 1 from information_schema.tables where table_schema = ? and table_name = ?",
                       [schema, name]).fetchall():
        return True
    return not con.execute(f"select 1 from {settings.EXPORTS.table} where export_date = ? limit 1",
                           [export_date]).fetchall()


def _opener(path: Path) -> helpers.Opener:
    return lambda: path.open("rb")


def _today() -> str:
    """Today in Beijing (YYYY-MM-DD) by this machine's clock plus the freshness tolerance."""
    return (freshness.now() + freshness.TOLERANCE + timedelta(hours=8)).date().isoformat()


def _check_retry(folder: Path, name: str, files: dict[str, dict[str, Any]]) -> None:
    if (folder / name).is_file():
        return
    aside = sorted(n for n, seen in files.items() if seen.get("quarantined"))
    raise ConfigurationError(f"{settings.SOURCE}: --retry-file {name!r}: no such file in the drop folder {folder}"
                             + (f"; files set aside: {', '.join(aside)}" if aside else "; no file is set aside"))


def _gone(load: Load, folder: Path, files: dict[str, dict[str, Any]]) -> None:
    """Files of the state no longer in the folder (archived or removed): listed; a set-aside one is closed."""
    gone = sorted(name for name in files if not (folder / name).exists())
    if not gone:
        return
    load.note(f"{len(gone)} file(s) read before are no longer in the drop folder (their rows stay): "
              + ", ".join(gone[:10]) + (" …" if len(gone) > 10 else ""))
    for name in gone:
        if files[name].get("quarantined"):
            load.execute_on_finish("update meta.quarantined_files set released_at = now(), released_by = ? "
                                   "where source = ? and file_name = ? and released_at is null",
                                   [f"{load.load_id} (file removed from the drop folder)", settings.SOURCE, name])
        del files[name]


def _set_aside(load: Load, drop: helpers.DropFile, probe: helpers.Probe, reason: str, line: int | None = None,
               byte_offset: int | None = None) -> None:
    """Quarantine the whole file (meta.quarantined_files, once per name and content) and say so."""
    load.note(f"{drop.name}: set aside — {reason}")
    load.execute_on_finish(
        "insert into meta.quarantined_files (source, entity, file_name, content_sha256, size, mtime_ns, reason, "
        "line, byte_offset, load_id, quarantined_at) select ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now() "
        "where not exists (select 1 from meta.quarantined_files where source = ? and file_name = ? "
        "and content_sha256 = ? and released_at is null)",
        [settings.SOURCE, settings.EXPORTS.name, drop.name, probe.sha256, probe.size, drop.mtime_ns, reason, line,
         byte_offset, load.load_id, settings.SOURCE, drop.name, probe.sha256])


def _same_content_same_day(files: dict[str, dict[str, Any]], drop: helpers.DropFile, digest: str) -> str | None:
    """The name of another file of the same export date with these very bytes, read before; else None."""
    for name, seen in files.items():
        if (name != drop.name and seen.get("sha256") == digest and seen.get("export_date") == drop.export_date
                and not seen.get("quarantined") and not seen.get("resend_of")):
            return name
    return None


def _delivered_under_another_name(drop: helpers.DropFile, files: dict[str, dict[str, Any]]) -> bool:
    return any(name != drop.name and seen.get("export_date") == drop.export_date and not seen.get("quarantined")
               for name, seen in files.items())


def _without_resent_rows(con: duckdb.DuckDBPyConnection, rows: pa.Table,
                         where: pa.Array) -> tuple[pa.Table, pa.Array, int]:
    # This day came before under another name: rows identical to what it brought are a re-send's
    # copies, not new versions, even though the bytes (encoding, format) differ. What this load
    # landed already is in raw too (its transaction sees its own rows).
    seen = helpers.delivered_before(con, settings.EXPORTS.table, rows, None)
    repeated = pc.sum(seen).as_py() or 0
    if repeated:
        keep = pc.invert(seen)
        rows, where = rows.filter(keep), where.filter(keep)
    return rows, where, repeated


def _seconds(conn: Connection, name: str, given: float | None, default: float) -> float:
    if given is not None:
        return float(given)
    text = conn.extra.get(name)
    if text is None:
        return default
    try:
        return float(text)
    except ValueError as exc:
        raise ConfigurationError(f"{settings.SOURCE}: connection {conn.conn_id!r} has {name}={text!r}; "
                                 "it must be a number of seconds, e.g. ?stable_seconds=2") from exc
