"""The drop folder's files: discovery, completeness, encoding detection, CSV/XLSX reading, Excel serials."""

from __future__ import annotations

import csv
import io
import json
import re
import struct
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from connectors.common.config import Connection
from connectors.common.exceptions import (
    ConfigurationError,
    ConnectorError,
    SchemaDrift,
    SourceUnavailable,
)
from connectors.common.landing import record_hash_sql

from . import settings

BOM = b"\xef\xbb\xbf"
ZIP_MAGIC = b"PK\x03\x04"
_SERIAL = re.compile(settings.SERIAL)
_CSV_BLOCK = 8 << 20  # large blocks: fewer chunks for pyarrow's threads to stitch


class NotReady(Exception):  # a state of the file, not a failure of the load
    """The file is not complete yet: leave it for the next sync; nothing failed."""


# --- the folder ---------------------------------------------------------------------------------

def drop_folder(conn: Connection) -> Path:
    """The folder of a `file:///abs/path/to/drop` connection; fails naming the connection if unusable."""
    where = f"{settings.SOURCE}: connection {conn.conn_id!r}"
    if conn.scheme != "file":
        raise ConfigurationError(f"{where} has scheme {conn.scheme!r}; use a file URI: file:///abs/path/to/drop")
    if conn.host not in (None, "", "localhost"):
        raise ConfigurationError(f"{where} names host {conn.host!r}; a drop folder is local — write the absolute "
                                 f"path after three slashes: file:///{conn.host}{conn.path}")
    if not conn.path.startswith("/"):
        raise ConfigurationError(f"{where} has no absolute path; use file:///abs/path/to/drop")
    folder = Path(conn.path)
    if not folder.is_dir():
        raise SourceUnavailable(f"{where}: drop folder {folder} does not exist or is not a folder — check the "
                                "connection's path and that the share is mounted; nothing was landed")
    return folder


@dataclass(frozen=True)
class DropFile:
    """A daily export file seen in the drop folder, with the size and mtime it had when seen."""

    path: Path
    export_date: str  # YYYY-MM-DD, from the file name
    resend: bool
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Scan:
    """What a look at the drop folder found."""

    ready: list[DropFile] = field(default_factory=list)      # complete by size/mtime, new or changed
    waiting: list[str] = field(default_factory=list)         # notes on files still being written
    ignored: list[str] = field(default_factory=list)         # names that are not daily exports
    unchanged: int = 0                                       # loaded before and untouched since


def parse_name(name: str) -> tuple[str, bool] | None:
    """(export date YYYY-MM-DD, is a re-send) of a daily export's file name, or None if it is not one."""
    match = settings.FILE_NAME.match(name)
    if not match:
        return None
    try:
        day = datetime.strptime(match["date"], "%Y%m%d").date()
    except ValueError:
        return None
    return day.isoformat(), match["resend"] is not None


def scan(folder: Path, known: dict[str, dict[str, Any]], stable_seconds: float,
         sleep: Callable[[float], None] = time.sleep) -> Scan:
    """The export files that are new or changed since `known` (name -> size, mtime_ns) and stable.

    A file counts as stable when its size and mtime are the same in two looks `stable_seconds`
    apart; an upload in progress changes one of them. Hidden names (".x.part") are skipped.
    """
    found = Scan()
    first: dict[Path, tuple[str, bool, int, int]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue  # a hidden temp file of an upload, or a sub-folder such as an archive
        parsed = parse_name(path.name)
        if parsed is None:
            found.ignored.append(path.name)
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            continue  # moved away between listing and looking
        seen = known.get(path.name) or {}
        if seen.get("size") == st.st_size and seen.get("mtime_ns") == st.st_mtime_ns:
            found.unchanged += 1
            continue
        first[path] = (*parsed, st.st_size, st.st_mtime_ns)
    if first and stable_seconds > 0:
        sleep(stable_seconds)
    for path, (export_date, resend, size, mtime_ns) in first.items():
        try:
            st = path.stat()
        except FileNotFoundError:
            found.waiting.append(f"{path.name}: disappeared while being checked; left for the next sync")
            continue
        if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
            found.waiting.append(f"{path.name}: still being written (size or mtime changed within "
                                 f"{stable_seconds:g} s); left for the next sync")
            continue
        found.ready.append(DropFile(path, export_date, resend, size, mtime_ns))
    # Originals before their re-sends, so a re-send is recognised as one.
    found.ready.sort(key=lambda f: (f.export_date, f.resend, f.mtime_ns, f.name))
    return found


# --- one file -----------------------------------------------------------------------------------

@dataclass
class Export:
    """One file read: its rows as text, the line of each row, and the lines that could not be read."""

    table: pa.Table                      # landing columns, all text
    lines: pa.Array                      # int64: CSV physical line / XLSX row number of each row
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (line, raw text, reason)
    notes: list[str] = field(default_factory=list)


def read_export(file_name: str, data: bytes, *, young: bool) -> Export:
    """Read one export file's bytes: XLSX by its zip signature, anything else as CSV.

    `young` (modified recently) turns signs of an unfinished upload into NotReady; on an old file
    the same signs fail the load (ConnectorError) naming the file, or are read as they are.
    """
    # Only a short file can be blank; stripping a big one just to look would copy it.
    if len(data) < 4096 and not data.removeprefix(BOM).strip():
        if young and not data:
            raise NotReady("empty so far")
        return Export(_empty_table(), pa.array([], pa.int64()), notes=[f"{file_name}: empty file; no rows"])
    if data.startswith(ZIP_MAGIC):
        export = read_xlsx(file_name, data, young=young)
    else:
        if young and not data.endswith(b"\n"):
            raise NotReady("does not end in a line break yet")
        notes: list[str] = []
        body = to_utf8(file_name, data, young=young, notes=notes)
        # An old CSV without its final line break: the upload may have stopped inside that last
        # line, and a cut line can still have every field (a value cut short). It is held back,
        # not landed as if whole; the other lines land, and a re-sent whole file lands it.
        last = body.rfind(b"\n")
        cut = body[last + 1:] if not body.endswith(b"\n") and last >= 0 and body[last + 1:].strip() else b""
        export = read_csv(file_name, body[:last + 1] if cut else body)
        if cut:
            export.bad.append((body.count(b"\n") + 1, cut.decode("utf-8", errors="replace").rstrip("\r"),
                               "the file ends inside this line (no final line break), so it may be cut off"))
        export.notes[:0] = notes
    export.table = normalise_times(export.table)
    if export.table.num_rows == 0 and not export.bad:
        export.notes.append(f"{file_name}: header only; no rows")
    return export


def detect_encoding(data: bytes) -> str:
    """'utf-8-sig' if the bytes start with a BOM, else 'utf-8' if they are valid UTF-8, else 'gb18030'."""
    if data.startswith(BOM):
        return "utf-8-sig"
    return "utf-8" if _is_utf8(data) else "gb18030"


def to_utf8(file_name: str, data: bytes, *, young: bool = False, notes: list[str] | None = None) -> bytes:
    """The file's text as UTF-8 bytes (BOM removed); GB18030 covers GBK. Undecodable: see read_export.

    A file whose Chinese header is UTF-8 but which is not UTF-8 as a whole (a UTF-8 file to which
    a GB18030 system appended lines), or that decodes as neither as a whole, is read line by line:
    a line valid as UTF-8 is UTF-8, any other GB18030; which lines were GB18030 goes to `notes`.
    """
    encoding = detect_encoding(data)
    if encoding == "utf-8":
        return data
    if encoding == "utf-8-sig" and _is_utf8(data[3:]):
        return data[3:]
    body = data.removeprefix(BOM)
    header = body[: body.find(b"\n")]
    try:
        if encoding == "utf-8-sig" or (_is_utf8(header) and not header.isascii()):
            # The Chinese header is UTF-8 but the file is not: lines in another encoding were added.
            # Decoding the whole file as GB18030 might "succeed" into other characters; go by line.
            raise UnicodeDecodeError("utf-8", b"", 0, 1, "UTF-8 header, not UTF-8 as a whole")
        return data.decode(encoding).encode("utf-8")
    except UnicodeDecodeError as exc:
        if young:
            raise NotReady(f"bytes at offset {exc.start} do not decode yet") from exc
        mixed, line, start, end = _decode_by_line(body)
        if mixed is not None:
            if notes is not None and line:
                notes.append(f"{file_name}: mixed encodings — UTF-8 with line(s) in GB18030 read as GB18030: "
                             + ", ".join(map(str, line[:10])) + (" …" if len(line) > 10 else ""))
            return mixed
        offset = start + (3 if data.startswith(BOM) else 0)
        bad_line = data.count(b"\n", 0, offset) + 1
        hint = (" (it looks like UTF-16: re-export it as GB18030 or UTF-8)"
                if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:64] else "")
        raise ConnectorError(
            f"{settings.SOURCE}: {file_name} line {bad_line}: bytes {data[offset:offset + end - start + 3].hex(' ')} "
            f"at offset {offset} are not valid {encoding} (nor UTF-8){hint}; nothing of this load was landed — ask "
            "the platform to re-export the file, or move it out of the drop folder") from exc


def _decode_by_line(data: bytes) -> tuple[bytes | None, list[int], int, int]:
    """(UTF-8 text, numbers of the lines read as GB18030, 0, 0) if every line decodes as UTF-8 or
    GB18030; else (None, [], start, end) of the first bytes that decode as neither."""
    out: list[bytes] = []
    gb_lines: list[int] = []
    offset = 0
    for number, line in enumerate(data.split(b"\n"), start=1):
        if _is_utf8(line):
            out.append(line)
        else:
            try:
                out.append(line.decode("gb18030").encode("utf-8"))
                gb_lines.append(number)
            except UnicodeDecodeError as exc:
                return None, [], offset + exc.start, offset + exc.end
        offset += len(line) + 1
    return b"\n".join(out), gb_lines, 0, 0


def _is_utf8(data: bytes) -> bool:
    # Arrow's validator is SIMD: far faster than decoding into a Python str just to check.
    array = pa.LargeStringArray.from_buffers(1, pa.py_buffer(struct.pack("<qq", 0, len(data))), pa.py_buffer(data))
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def column_names(file_name: str, headers: Sequence[str | None]) -> list[str]:
    """The landing column of each header; SchemaDrift naming the file and header if one is missing."""
    names = []
    for i, header in enumerate(headers):
        text = (header or "").strip()
        names.append(settings.HEADERS.get(text, text or f"column_{i + 1}"))
    missing = [h for h, column in settings.HEADERS.items() if column not in names]
    if missing:
        found = ", ".join(repr((h or "").strip()) for h in headers)
        raise SchemaDrift(
            f"{settings.SOURCE}: {file_name} line 1: required header {missing[0]!r} is missing"
            + (f" (also {', '.join(map(repr, missing[1:]))})" if missing[1:] else "")
            + f"; headers found: {found}. Nothing of this load was landed — ask the platform to re-export the "
            "file with the standard headers, or move it out of the drop folder")
    clashes = sorted({n for n in names if names.count(n) > 1 or n in settings.DERIVED_COLUMNS})
    if clashes:
        raise SchemaDrift(f"{settings.SOURCE}: {file_name} line 1: header(s) {clashes} appear twice or clash with "
                          "the connector's own columns; nothing of this load was landed — fix the header and re-send")
    return names


def read_csv(file_name: str, body: bytes) -> Export:
    """Parse UTF-8 CSV bytes in bulk with pyarrow; broken lines come back in `bad` with their line."""
    header_end = body.find(b"\n")
    header_line = body[: header_end if header_end >= 0 else len(body)].rstrip(b"\r").decode("utf-8")
    try:
        headers = next(csv.reader([header_line], strict=True))
    except csv.Error as exc:
        raise SchemaDrift(f"{settings.SOURCE}: {file_name} line 1: the header cannot be parsed ({exc}); nothing "
                          "of this load was landed — fix the header and re-send the file") from exc
    names = column_names(file_name, headers)
    rest = len(body) - header_end - 1
    # Only a short tail can be blank; slicing a big body just to look would copy it.
    if header_end < 0 or (rest < 4096 and not body[header_end + 1:].strip()):
        return Export(_empty_table(names), pa.array([], pa.int64()))
    invalid: list[str] = []

    def skip(row: pacsv.InvalidRow) -> str:
        invalid.append(row.text)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=_CSV_BLOCK),
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=True, null_values=[""]))
    except pa.ArrowInvalid:
        return _read_line_by_line(names, body)  # a quote left open across a block boundary
    located = _locate_lines(body, table.num_rows, invalid)
    if located is None:
        return _read_line_by_line(names, body)  # some record spans lines: an unbalanced quote
    lines, bad = located
    return Export(table, lines, [(n, text, f"{_count_fields(text)} fields, expected {len(names)}")
                                 for n, text in bad])


def _locate_lines(body: bytes, good: int, invalid: list[str]) -> tuple[pa.Array, list[tuple[int, str]]] | None:
    """Line numbers of the parsed rows and of the skipped ones, or None if a record is not one line.

    The platform writes one record per physical line. When every record took exactly one
    non-empty line, the good rows are the non-empty lines that are not bad, in order.
    """
    data_lines = body.count(b"\n") - (1 if body.endswith(b"\n") else 0)
    if not invalid and good == data_lines:
        return _counting(2, good), []  # the common case: no arithmetic on the text at all
    lines = _physical_lines(body)
    index = pc.indices_nonzero(pc.greater(pc.utf8_length(lines), 0))
    index = index.filter(pc.greater(index, 0))  # line 1 is the header
    if len(index) != good + len(invalid):
        return None
    texts = pc.cast(lines.take(index), pa.string())
    is_bad = pc.is_in(texts, value_set=pa.array(invalid, pa.string()))
    if (pc.sum(is_bad).as_py() or 0) != len(invalid):
        return None
    numbers = pc.add(index, 1)
    bad = list(zip(numbers.filter(is_bad).to_pylist(), texts.filter(is_bad).to_pylist(), strict=True))
    return pc.cast(numbers.filter(pc.invert(is_bad)), pa.int64()), bad


def _physical_lines(body: bytes) -> pa.Array:
    whole = pa.LargeStringArray.from_buffers(1, pa.py_buffer(struct.pack("<qq", 0, len(body))), pa.py_buffer(body))
    return pc.utf8_rtrim(pc.split_pattern(whole, "\n").flatten(), "\r")


def _read_line_by_line(names: list[str], body: bytes) -> Export:
    # The slow, exact path for damaged files: each physical line is parsed on its own, so an
    # unbalanced quote spoils only its own line instead of swallowing the lines after it.
    columns: list[list[str | None]] = [[] for _ in names]
    numbers: list[int] = []
    bad: list[tuple[int, str, str]] = []
    for number, line in enumerate(body.decode("utf-8").split("\n")[1:], start=2):
        line = line.rstrip("\r")
        if not line:
            continue
        try:
            fields = next(csv.reader([line], strict=True))
        except csv.Error as exc:
            bad.append((number, line, f"unbalanced quote ({exc})"))
            continue
        if len(fields) != len(names):
            bad.append((number, line, f"{len(fields)} fields, expected {len(names)}"))
            continue
        for column, value in zip(columns, fields, strict=True):
            column.append(value or None)
        numbers.append(number)
    table = pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, columns, strict=True)})
    return Export(table, pa.array(numbers, pa.int64()), bad)


def _count_fields(line: str) -> int:
    try:
        return len(next(csv.reader([line])))
    except (csv.Error, StopIteration):
        return 0


def read_xlsx(file_name: str, data: bytes, *, young: bool) -> Export:
    """Read the export sheet with openpyxl (read-only); cells become text, row numbers are lines."""
    import openpyxl  # only XLSX days need it; keeps CSV-only runs light

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            damaged = archive.testzip()
        if damaged:
            raise zipfile.BadZipFile(f"member {damaged} fails its CRC check")
    except (zipfile.BadZipFile, EOFError) as exc:
        if young:
            raise NotReady("not a complete XLSX (zip) yet") from exc
        raise ConnectorError(f"{settings.SOURCE}: {file_name} starts like an XLSX but is not a valid zip ({exc}); "
                             "nothing of this load was landed — ask for the file again, or move it out of the "
                             "drop folder") from exc
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for a zip that is not a workbook
        raise ConnectorError(f"{settings.SOURCE}: {file_name} is a zip but not a readable workbook ({exc}); "
                             "nothing of this load was landed — ask for the file again") from exc
    try:
        notes = []
        if settings.SHEET_NAME in book.sheetnames:
            sheet = book[settings.SHEET_NAME]
        else:
            sheet = book.worksheets[0]
            notes.append(f"{file_name}: no sheet {settings.SHEET_NAME!r}; read the first sheet {sheet.title!r}")
        rows = sheet.iter_rows(values_only=True)
        header = list(next(rows, None) or ())
        while header and header[-1] is None:
            header.pop()
        if not header:
            return Export(_empty_table(), pa.array([], pa.int64()), notes=[f"{file_name}: empty sheet; no rows"])
        names = column_names(file_name, [None if h is None else str(h) for h in header])
        export = _xlsx_body(rows, len(names))
    finally:
        book.close()
    columns, numbers, bad = export
    table = pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, columns, strict=True)})
    return Export(table, pa.array(numbers, pa.int64()), bad, notes)


def _xlsx_body(rows: Any, width: int) -> tuple[list[list[str | None]], list[int], list[tuple[int, str, str]]]:
    columns: list[list[str | None]] = [[] for _ in range(width)]
    numbers: list[int] = []
    bad: list[tuple[int, str, str]] = []
    for number, row in enumerate(rows, start=2):
        if all(v is None for v in row):
            continue  # openpyxl pads gaps and trailing rows with empty ones
        if any(v is not None for v in row[width:]):
            raw = json.dumps([cell_text(v) for v in row], ensure_ascii=False)
            bad.append((number, raw, f"values beyond the {width} headed columns"))
            continue
        for i in range(width):
            columns[i].append(cell_text(row[i]) if i < len(row) else None)
        numbers.append(number)
    return columns, numbers, bad


def cell_text(value: Any) -> str | None:
    """An XLSX cell as text: numbers without a float tail, datetimes as local 'YYYY-MM-DD HH:MM:SS'."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # repr round-trips, so a serial day number survives to normalise_times unchanged.
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime):
        # openpyxl's datetimes carry float noise of a few microseconds: round to the second.
        return (value + timedelta(microseconds=500_000)).replace(microsecond=0).strftime(settings.TIME_FORMAT)
    if isinstance(value, date):
        return f"{value:%Y-%m-%d} 00:00:00"
    return str(value)


# --- times --------------------------------------------------------------------------------------

def normalise_times(table: pa.Table) -> pa.Table:
    """Replace Excel serial day numbers in the time columns by their Beijing local time text."""
    for column in settings.TIME_COLUMNS:
        if column in table.column_names:
            i = table.column_names.index(column)
            table = table.set_column(i, column, serials_to_text(table.column(i)))
    return table


def serials_to_text(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Each value matching ^\\d+(\\.\\d+)?$ read as days since 1899-12-30 (Beijing local), to the second."""
    is_serial = pc.fill_null(pc.match_substring_regex(values, settings.SERIAL), False)
    if not pc.any(is_serial).as_py():
        return values
    number = pc.cast(pc.if_else(is_serial, values, "0"), pa.float64())
    is_serial = pc.and_(is_serial, pc.less_equal(number, settings.MAX_SERIAL))
    number = pc.if_else(is_serial, number, 0.0)  # keep out-of-range values away from the arithmetic
    seconds = pc.add(pc.cast(pc.round(pc.multiply(number, 86400.0)), pa.int64()),
                     settings.EXCEL_EPOCH_UNIX_DAYS * 86400)
    text = pc.strftime(pc.cast(seconds, pa.timestamp("s")), format=settings.TIME_FORMAT)
    return pc.if_else(is_serial, text, values)


def serial_to_text(value: float) -> str:
    """One Excel serial day number as Beijing local 'YYYY-MM-DD HH:MM:SS' (the rule serials_to_text applies)."""
    local = datetime(1899, 12, 30) + timedelta(seconds=round(value * 86400))
    return local.strftime(settings.TIME_FORMAT)


# --- rows, positions and re-sends ---------------------------------------------------------------

def positions(file_name: str, lines: pa.Array) -> pa.Array:
    """'<file name> line <n>' for each row."""
    n = len(lines)
    return pc.binary_join_element_wise(pa.repeat(pa.scalar(f"{file_name} line "), n),
                                       pc.cast(lines, pa.string()), pa.repeat(pa.scalar(""), n))


def with_file_columns(table: pa.Table, export_date: str, file_name: str) -> pa.Table:
    """The table plus the columns taken from the file name: export_date and file_name."""
    n = table.num_rows
    return (table.append_column("export_date", pa.repeat(pa.scalar(export_date), n))
                 .append_column("file_name", pa.repeat(pa.scalar(file_name), n)))


def delivered_before(con: duckdb.DuckDBPyConnection, raw_table: str, rows: pa.Table,
                     earlier: pa.Table | None) -> pa.Array:
    """A mask: which rows equal (all but file_name) a row landed before or in `earlier`, for that day.

    A re-send may come in another encoding or format: its bytes differ, but its rows do not, and
    they must not land again as new versions just because file_name differs.
    """
    compared = sorted(c for c in rows.column_names if c != "file_name")
    digest = record_hash_sql(compared)
    sources = []
    raw_columns = {r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema || '.' || table_name = ?",
        [raw_table]).fetchall()}
    if set(compared) <= raw_columns:
        sources.append(f"select {digest} as h from {raw_table} "
                       "where export_date in (select distinct export_date from _hc_rows)")
    if earlier is not None and set(compared) <= set(earlier.column_names):
        sources.append(f"select {digest} as h from _hc_earlier")
    if not sources:
        return pa.array([False] * rows.num_rows, pa.bool_())
    # Numbered rows: the answer says which rows were seen, whatever order the join returns them in.
    con.register("_hc_rows", rows.append_column("_hc_i", _counting(0, rows.num_rows)))
    con.register("_hc_earlier", earlier if earlier is not None else rows.slice(0, 0))
    try:
        seen = con.execute(f"select _hc_i from _hc_rows where {digest} in ({' union all '.join(sources)})"
                           ).to_arrow_table().column("_hc_i")
    finally:
        con.unregister("_hc_rows")
        con.unregister("_hc_earlier")
    return pc.is_in(_counting(0, rows.num_rows), value_set=seen.combine_chunks())


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _empty_table(names: Sequence[str] = tuple(settings.HEADERS.values())) -> pa.Table:
    return pa.table({n: pa.array([], pa.string()) for n in names})


def _counting(start: int, n: int) -> pa.Array:
    # start, start + 1, ... without numpy: pyarrow's numpy bridge imports pandas on first use (~1 s).
    return pc.add(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n)), start - 1)
