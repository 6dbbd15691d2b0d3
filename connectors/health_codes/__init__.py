"""The health-code platform's daily export files (file drop) landed into raw.health_codes_exports."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from connectors.common.config import Connection
from connectors.common.exceptions import ConfigurationError
from connectors.common.loads import Load, LoadResult

from . import helpers, settings

log = logging.getLogger(__name__)
__all__ = ["sync"]


def sync(con: duckdb.DuckDBPyConnection, conn: Connection, *, full_refresh: bool = False,
         stable_seconds: float | None = None, settle_seconds: float | None = None) -> list[LoadResult]:
    """Land every new, complete export file of the drop folder `conn.path` (file:///abs/path/to/drop).

    One load of the `exports` entity. `stable_seconds` / `settle_seconds` override the connection's
    extras of the same name, which override settings.STABLE_SECONDS / SETTLE_SECONDS.
    """
    with Load(con, settings.EXPORTS, full_refresh=full_refresh) as load:
        # Inside the load, so a bad setting is recorded in meta.loads like any failure.
        stable = _seconds(conn, "stable_seconds", stable_seconds, settings.STABLE_SECONDS)
        settle = _seconds(conn, "settle_seconds", settle_seconds, settings.SETTLE_SECONDS)
        result = _load_exports(con, load, helpers.drop_folder(conn), stable, settle)
    log.info(result.summary())
    return [result]


def _load_exports(con: duckdb.DuckDBPyConnection, load: Load, folder: Path, stable: float,
                  settle: float) -> LoadResult:
    files: dict[str, dict[str, Any]] = dict(load.state.get("files", {}))
    hashes: dict[str, str] = dict(load.state.get("hashes", {}))
    watermark: str | None = load.state.get("watermark")
    found = helpers.scan(folder, files, stable)
    for note in found.waiting:
        load.note(note)
    if found.ignored:
        load.note(f"ignored {len(found.ignored)} file(s) not named 健康码日报_YYYYMMDD[(重发)].csv|xlsx: "
                  + ", ".join(found.ignored[:10]) + (" …" if len(found.ignored) > 10 else ""))
    added: dict[str, list[pa.Table]] = {}  # export date -> rows added by this load, to spot re-sent rows
    for drop in found.ready:
        data = drop.path.read_bytes()
        if len(data) != drop.size:
            load.note(f"{drop.name}: changed while being read; left for the next sync")
            continue
        digest = hashlib.sha256(data).hexdigest()
        record = {"sha256": digest, "size": drop.size, "mtime_ns": drop.mtime_ns, "export_date": drop.export_date}
        first = hashes.get(digest)
        if first == drop.name:
            files[drop.name] = record  # touched, not changed
            continue
        if first is not None:
            load.note(f"{drop.name}: same content as {first}, which was loaded already; skipped as a re-send")
            files[drop.name] = {**record, "resend_of": first}
            continue
        young = time.time() - drop.mtime_ns / 1e9 < settle
        try:
            export = helpers.read_export(drop.name, data, young=young)
        except helpers.NotReady as why:
            load.note(f"{drop.name}: {why}; left for the next sync")
            continue
        if drop.name in files:
            load.note(f"{drop.name}: changed since it was loaded; read again (only changed rows land)")
        rows = helpers.with_file_columns(export.table, drop.export_date, drop.name)
        where = helpers.positions(drop.name, export.lines)
        if _delivered_under_another_name(drop, files, added):
            rows, where = _without_resent_rows(con, load, drop, rows, where, added)
        _add(load, drop, export, rows, where)
        added.setdefault(drop.export_date, []).append(rows)
        files[drop.name] = record
        if export.table.num_rows or export.bad:
            hashes[digest] = drop.name  # an empty or header-only file is no evidence of a re-send
        watermark = max(watermark or drop.export_date, drop.export_date)
    return load.finish({"files": files, "hashes": hashes}, watermark=watermark)


def _add(load: Load, drop: helpers.DropFile, export: helpers.Export, rows: pa.Table, where: pa.Array) -> None:
    load.add(rows, where)
    for line, raw, reason in export.bad:
        load.quarantine(f"{drop.name} line {line}", raw,
                        f"{drop.name} line {line}: {reason}; the other lines were landed — correct this "
                        "line at the source and re-send the file")
    if export.bad:
        load.note(f"{drop.name}: {len(export.bad)} broken line(s) quarantined (line "
                  + ", ".join(str(line) for line, _, _ in export.bad[:10]) + ("…" if len(export.bad) > 10 else "")
                  + ")")
    for note in export.notes:
        load.note(note)


def _delivered_under_another_name(drop: helpers.DropFile, files: dict[str, dict[str, Any]],
                                  added: dict[str, list[pa.Table]]) -> bool:
    return drop.export_date in added or any(
        name != drop.name and seen.get("export_date") == drop.export_date for name, seen in files.items())


def _without_resent_rows(con: duckdb.DuckDBPyConnection, load: Load, drop: helpers.DropFile, rows: pa.Table,
                         where: pa.Array, added: dict[str, list[pa.Table]]) -> tuple[pa.Table, pa.Array]:
    # This day came before under another name: rows identical to what it brought are a re-send's
    # copies, not new versions, even though the bytes (encoding, format) differ.
    earlier = pa.concat_tables(added[drop.export_date], promote_options="permissive") if drop.export_date in added \
        else None
    seen = helpers.delivered_before(con, settings.EXPORTS.table, rows, earlier)
    repeated = pc.sum(seen).as_py() or 0
    if repeated:
        keep = pc.invert(seen)
        rows, where = rows.filter(keep), where.filter(keep)
        load.note(f"{drop.name}: re-send of {drop.export_date}; {repeated:,} row(s) identical to rows already "
                  f"delivered were skipped, {rows.num_rows:,} differ and were read")
    return rows, where


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
