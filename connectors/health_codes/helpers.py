"""The drop folder's files: discovery, completeness, encoding detection, CSV/XLSX reading, Excel serials."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import struct
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from connectors.common.config import Connection
from connectors.common.exceptions import (
    ConfigurationError,
    SchemaDrift,
    SourceUnavailable,
)
from connectors.common.landing import record_hash_sql

from . import settings
from .exceptions import UnreadableFile

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
    ctime_ns: int = 0  # the inode's change time: moves on any write, even one that restores the mtime

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
         sleep: Callable[[float], None] = time.sleep, *, compare_ctime: bool = False) -> Scan:
    """The export files that are new or changed since `known` (name -> size, mtime_ns) and stable.

    A file counts as stable when its size and mtime are the same in two looks `stable_seconds`
    apart; an upload in progress changes one of them. Hidden names (".x.part") are skipped.
    `compare_ctime` (the nightly re-check) also takes a file whose inode change time moved: a
    rewrite that restored the old mtime (cp -p, rsync -t) still moves it.
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
        if seen.get("size") == st.st_size and seen.get("mtime_ns") == st.st_mtime_ns and (
                not compare_ctime or seen.get("ctime_ns") == st.st_ctime_ns):
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
        found.ready.append(DropFile(path, export_date, resend, size, mtime_ns, st.st_ctime_ns))
    # Originals before their re-sends, so a re-send is recognised as one.
    found.ready.sort(key=lambda f: (f.export_date, f.resend, f.mtime_ns, f.name))
    return found


# --- one file -----------------------------------------------------------------------------------

def set_aside(file_name: str) -> str:
    """The end of every message about a file that cannot be read at all: what happened, what to do."""
    return (f"the file was set aside (meta.quarantined_files) and the rest of the drop was landed — ask the "
            f"platform to re-export it; a replaced file is read again by the next sync, or run "
            f"`onenet sync health_codes --retry-file {file_name}`")


@dataclass
class Export:
    """One file read whole: its rows as text, the line of each row, and the lines that could not be read."""

    table: pa.Table                      # landing columns, all text
    lines: pa.Array                      # int64: CSV physical line / XLSX row number of each row
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (line, raw text, reason)
    notes: list[str] = field(default_factory=list)


@dataclass
class Chunk:
    """Part of a file: rows as text (times normalised), the line of each, the lines that could not be read."""

    table: pa.Table
    lines: pa.Array
    bad: list[tuple[int, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Probe:
    """What one pass over a file's bytes tells before it is read: its identity, format and encoding."""

    sha256: str
    size: int
    is_zip: bool
    bom: bool
    utf8: bool                 # valid UTF-8 as a whole (after a BOM); False for a zip
    ends_with_newline: bool
    blank: bool                # nothing but white space (and a BOM)
    head: bytes                # the first bytes (hints: UTF-16)


class MixedEncoding(Exception):  # noqa: N818 - a signal to the caller, not a failure
    """A GB18030 file turned out to hold lines that decode only one by one, after rows of it were
    given out: read it again from the start, line by line (mode='by-line')."""


Opener = Callable[[], BinaryIO]


def probe(opener: Opener, block_size: int = settings.READ_BLOCK_BYTES) -> Probe:
    """One streaming pass over a file's bytes: sha256, size, zip signature, BOM, UTF-8 validity."""
    digest = hashlib.sha256()
    size, head, last, carry = 0, b"", b"", b""
    utf8: bool | None = None
    with opener() as source:
        while block := source.read(block_size):
            digest.update(block)
            if utf8 is None:  # the first block
                head = block[:4096]
                utf8 = not block.startswith(ZIP_MAGIC)
                text = block[len(BOM):] if block.startswith(BOM) else block
            else:
                text = block
            size += len(block)
            last = block[-1:]
            if utf8:
                # Whole lines at a time: a line break never falls inside a UTF-8 character.
                data = carry + text if carry else text
                cut = data.rfind(b"\n") + 1
                utf8 = _is_utf8(memoryview(data)[:cut]) if cut else True
                carry = data[cut:]
    if utf8 and carry:
        utf8 = _is_utf8(carry)
    bom = head.startswith(BOM)
    return Probe(digest.hexdigest(), size, head.startswith(ZIP_MAGIC), bom, bool(utf8), last == b"\n",
                 size < 4096 and not head.removeprefix(BOM).strip(), head)


def _line_blocks(source: BinaryIO, block_size: int) -> Iterator[tuple[bytes, int, int]]:
    """(bytes, number of their first line, offset of their first byte): whole lines, about
    `block_size` bytes at a time. Bytes after the last line break come last, on their own."""
    carry, line, offset = b"", 1, 0
    while block := source.read(block_size):
        data = carry + block if carry else block
        cut = data.rfind(b"\n") + 1
        if not cut:
            carry = data
            continue
        whole = data[:cut] if cut < len(data) else data
        yield whole, line, offset
        line += whole.count(b"\n")
        offset += cut
        carry = data[cut:]
    if carry:
        yield carry, line, offset


class ExportReader:
    """Reads one export file in chunks (whole lines of a CSV, rows of an XLSX), so memory stays
    bounded whatever the file's size. Iterate `chunks()`; afterwards `rows`, `bad_lines`, `notes`.

    `young` (modified recently) turns signs of an unfinished upload into NotReady; on an old file
    the same signs raise UnreadableFile naming the file, line and byte, or are read as they are.
    """

    def __init__(self, file_name: str, opener: Opener, found: Probe, *, young: bool, mode: str | None = None,
                 block_size: int | None = None, chunk_rows: int | None = None):
        self.file_name, self.opener, self.probe, self.young = file_name, opener, found, young
        self.mode = mode            # 'utf-8', 'gb18030' or 'by-line'; None: decided from the probe
        # The settings as they are now (not when this module was imported): tests shrink them.
        self.block_size = block_size or settings.READ_BLOCK_BYTES
        self.chunk_rows = chunk_rows or settings.XLSX_CHUNK_ROWS
        self.names: list[str] = list(settings.HEADERS.values())
        self.rows = 0
        self.bad_lines: list[int] = []
        self.notes: list[str] = []
        self._gb_lines: list[int] = []
        self._given = False         # a chunk was given out: a change of decoding needs a restart

    def chunks(self) -> Iterator[Chunk]:
        """The file's rows, chunk by chunk. Raises NotReady, UnreadableFile, SchemaDrift or MixedEncoding."""
        name = self.file_name
        if self.probe.blank:
            if self.young and self.probe.size == 0:
                raise NotReady("empty so far")
            self.notes.append(f"{name}: empty file; no rows")
            return
        if self.probe.is_zip:
            parts = self._xlsx_chunks()
        else:
            if self.young and not self.probe.ends_with_newline:
                raise NotReady("does not end in a line break yet")
            parts = self._csv_chunks()
        for chunk in parts:
            chunk.table = normalise_times(chunk.table)
            self.rows += chunk.table.num_rows
            self.bad_lines.extend(line for line, _, _ in chunk.bad)
            self._given = True
            yield chunk
        if self._gb_lines:
            self.notes.insert(0, f"{name}: mixed encodings — UTF-8 with line(s) in GB18030 read as GB18030: "
                              + ", ".join(map(str, self._gb_lines[:10])) + (" …" if len(self._gb_lines) > 10 else ""))
        if self.rows == 0 and not self.bad_lines:
            self.notes.append(f"{name}: header only; no rows")

    # --- CSV

    def utf8_blocks(self) -> Iterator[tuple[bytes, int, int, bool]]:
        """(UTF-8 bytes, first line, byte offset, is the tail without a final line break) of the
        file's whole lines, BOM removed. GB18030 covers GBK.

        A file whose Chinese header is UTF-8 but which is not UTF-8 as a whole (a UTF-8 file to
        which a GB18030 system appended lines), or whose lines do not all decode as GB18030, is read
        line by line: a line valid as UTF-8 is UTF-8, any other GB18030.
        """
        p = self.probe
        if self.mode is None:
            self.mode = "utf-8" if p.utf8 else "by-line" if p.bom else "gb18030"
        with self.opener() as source:
            for data, line, offset in _line_blocks(source, self.block_size):
                tail = not data.endswith(b"\n")
                if offset == 0 and p.bom:
                    data, offset = data[len(BOM):], len(BOM)
                if offset <= len(BOM) and self.mode == "gb18030":
                    header = data[: data.find(b"\n")] if not tail else data
                    if _is_utf8(header) and not header.isascii():
                        self.mode = "by-line"  # a UTF-8 Chinese header: GB18030 might "decode" UTF-8 lines wrongly
                yield self._decode(data, line, offset, tail), line, offset, tail

    def _decode(self, data: bytes, line: int, offset: int, tail: bool) -> bytes:
        if self.mode == "utf-8":
            return data
        if self.mode == "gb18030":
            try:
                return data.decode("gb18030").encode("utf-8")
            except UnicodeDecodeError as exc:
                if self.young and not tail:
                    raise NotReady(f"bytes at offset {offset + exc.start} do not decode yet") from exc
                if tail:  # a cut last line is held back anyway: keep what decodes
                    return data.decode("gb18030", errors="replace").encode("utf-8")
                if self._given:
                    raise MixedEncoding(self.file_name) from exc
                self.mode = "by-line"  # nothing given out yet: go on line by line from here
        mixed, gb_lines, start, end = _decode_by_line(data)
        if mixed is None:
            if tail:
                return data.decode("utf-8", errors="replace").encode("utf-8")
            if self.young:
                raise NotReady(f"bytes at offset {offset + start} do not decode yet")
            raise self._undecodable(data, line, offset, start, end)
        self._gb_lines.extend(line - 1 + n for n in gb_lines)
        return mixed

    def _undecodable(self, data: bytes, line: int, offset: int, start: int, end: int) -> UnreadableFile:
        bad_line = line + data.count(b"\n", 0, start)
        head = self.probe.head
        hint = (" (it looks like UTF-16: re-export it as GB18030 or UTF-8)"
                if head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head[:64] else "")
        encoding = "utf-8-sig" if self.probe.bom else "gb18030"
        return UnreadableFile(
            f"{settings.SOURCE}: {self.file_name} line {bad_line}: bytes {data[start:end + 3].hex(' ')} at offset "
            f"{offset + start} are not valid {encoding} (nor UTF-8){hint}; {set_aside(self.file_name)}",
            line=bad_line, byte_offset=offset + start)

    def _csv_chunks(self) -> Iterator[Chunk]:
        names: list[str] | None = None
        for body, line, _, tail in self.utf8_blocks():
            if names is None:  # the first block starts with the header line
                end = body.find(b"\n")
                header = (body[:end] if end >= 0 else body).rstrip(b"\r").decode("utf-8")
                names = self.names = _csv_header(self.file_name, header)
                body, line = (body[end + 1:] if end >= 0 else b""), line + 1
                if not body:
                    continue
            if tail:
                if body.strip():
                    # An old CSV without its final line break: the upload may have stopped inside this
                    # line, and a cut line can still have every field (a value cut short). It is held
                    # back, not landed as if whole; a re-sent whole file lands it.
                    yield Chunk(_empty_table(names), pa.array([], pa.int64()), [(
                        line, body.decode("utf-8", errors="replace").rstrip("\r"),
                        "the file ends inside this line (no final line break), so it may be cut off")])
                continue
            yield _parse_csv(names, body, line)

    # --- XLSX

    def _xlsx_chunks(self) -> Iterator[Chunk]:
        import openpyxl  # only XLSX days need it; keeps CSV-only runs light

        name = self.file_name
        try:
            with self.opener() as source, zipfile.ZipFile(source) as archive:
                damaged = archive.testzip()
            if damaged:
                raise zipfile.BadZipFile(f"member {damaged} fails its CRC check")
        except (zipfile.BadZipFile, EOFError) as exc:
            if self.young:
                raise NotReady("not a complete XLSX (zip) yet") from exc
            raise UnreadableFile(f"{settings.SOURCE}: {name} starts like an XLSX but is not a valid zip ({exc}); "
                                 f"{set_aside(name)} (or ask for the file again)") from exc
        with self.opener() as source:
            try:
                book = openpyxl.load_workbook(source, read_only=True, data_only=True)
            except Exception as exc:  # openpyxl raises many types for a zip that is not a workbook
                raise UnreadableFile(f"{settings.SOURCE}: {name} is a zip but not a readable workbook ({exc}); "
                                     f"{set_aside(name)} (or ask for the file again)") from exc
            try:
                yield from self._sheet_chunks(book)
            finally:
                book.close()

    def _sheet_chunks(self, book: Any) -> Iterator[Chunk]:
        name = self.file_name
        if settings.SHEET_NAME in book.sheetnames:
            sheet = book[settings.SHEET_NAME]
        else:
            sheet = book.worksheets[0]
            self.notes.append(f"{name}: no sheet {settings.SHEET_NAME!r}; read the first sheet {sheet.title!r}")
        rows = sheet.iter_rows(values_only=True)
        header = list(next(rows, None) or ())
        while header and header[-1] is None:
            header.pop()
        if not header:
            self.notes.append(f"{name}: empty sheet; no rows")
            return
        names = self.names = column_names(name, [None if h is None else str(h) for h in header])
        width = len(names)
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
            if len(numbers) >= self.chunk_rows:
                yield _xlsx_chunk(names, columns, numbers, bad)
                columns, numbers, bad = [[] for _ in range(width)], [], []
        if numbers or bad:
            yield _xlsx_chunk(names, columns, numbers, bad)


def _xlsx_chunk(names: list[str], columns: list[list[str | None]], numbers: list[int],
                bad: list[tuple[int, str, str]]) -> Chunk:
    table = pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, columns, strict=True)})
    return Chunk(table, pa.array(numbers, pa.int64()), bad)


def read_file(file_name: str, opener: Opener, *, young: bool, found: Probe | None = None) -> Export:
    """A whole file read into one Export (small files and tests); the connector streams chunks instead."""
    found = found or probe(opener)
    mode = None
    while True:
        reader = ExportReader(file_name, opener, found, young=young, mode=mode)
        try:
            chunks = list(reader.chunks())
        except MixedEncoding:
            mode = "by-line"
            continue
        break
    tables = [c.table for c in chunks] or [_empty_table(reader.names)]
    table = pa.concat_tables(tables, promote_options="permissive")
    lines = pa.concat_arrays([c.lines for c in chunks]) if chunks else pa.array([], pa.int64())
    return Export(table, lines, [b for c in chunks for b in c.bad], reader.notes)


def read_export(file_name: str, data: bytes, *, young: bool) -> Export:
    """Read one export file's bytes whole: XLSX by its zip signature, anything else as CSV."""
    return read_file(file_name, lambda: io.BytesIO(data), young=young)


def detect_encoding(data: bytes) -> str:
    """'utf-8-sig' if the bytes start with a BOM, else 'utf-8' if they are valid UTF-8, else 'gb18030'."""
    if data.startswith(BOM):
        return "utf-8-sig"
    return "utf-8" if _is_utf8(data) else "gb18030"


def to_utf8(file_name: str, data: bytes, *, young: bool = False, notes: list[str] | None = None) -> bytes:
    """The file's text as UTF-8 bytes (BOM removed), decoded as ExportReader decodes it."""
    opener = lambda: io.BytesIO(data)  # noqa: E731
    found = probe(opener)
    mode = None
    while True:
        reader = ExportReader(file_name, opener, found, young=young, mode=mode)
        try:
            text = b"".join(block for block, _, _, _ in reader.utf8_blocks())
        except MixedEncoding:
            mode = "by-line"
            continue
        break
    if notes is not None and reader._gb_lines:
        notes.append(f"{file_name}: mixed encodings — UTF-8 with line(s) in GB18030 read as GB18030: "
                     + ", ".join(map(str, reader._gb_lines[:10])) + (" …" if len(reader._gb_lines) > 10 else ""))
    return text


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


def _is_utf8(data: bytes | memoryview) -> bool:
    # Arrow's validator is SIMD: far faster than decoding into a Python str just to check.
    array = pa.LargeStringArray.from_buffers(1, pa.py_buffer(struct.pack("<qq", 0, len(data))), pa.py_buffer(data))
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _csv_header(file_name: str, header_line: str) -> list[str]:
    try:
        headers = next(csv.reader([header_line], strict=True))
    except csv.Error as exc:
        raise SchemaDrift(f"{settings.SOURCE}: {file_name} line 1: the header cannot be parsed ({exc}); "
                          f"{set_aside(file_name)}") from exc
    return column_names(file_name, headers)


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
            + f"; headers found: {found}. Re-export it with the standard headers: {set_aside(file_name)}")
    clashes = sorted({n for n in names if names.count(n) > 1 or n in settings.DERIVED_COLUMNS})
    if clashes:
        raise SchemaDrift(f"{settings.SOURCE}: {file_name} line 1: header(s) {clashes} appear twice or clash with "
                          f"the connector's own columns; fix the header and re-send: {set_aside(file_name)}")
    return names


def _parse_csv(names: list[str], body: bytes, first_line: int) -> Chunk:
    """Parse whole UTF-8 CSV lines (no header) in bulk with pyarrow; broken lines come back in `bad`."""
    # Only a short tail can be blank; stripping a big body just to look would copy it.
    if len(body) < 4096 and not body.strip():
        return Chunk(_empty_table(names), pa.array([], pa.int64()))
    invalid: list[str] = []

    def skip(row: pacsv.InvalidRow) -> str:
        invalid.append(row.text)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=names, block_size=_CSV_BLOCK),
            parse_options=pacsv.ParseOptions(invalid_row_handler=skip),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                 strings_can_be_null=True, null_values=[""]))
    except pa.ArrowInvalid:
        return _read_line_by_line(names, body, first_line)  # a quote left open across a block boundary
    located = _locate_lines(body, table.num_rows, invalid, first_line)
    if located is None:
        return _read_line_by_line(names, body, first_line)  # some record spans lines: an unbalanced quote
    lines, bad = located
    return Chunk(table, lines, [(n, text, f"{_count_fields(text)} fields, expected {len(names)}")
                                for n, text in bad])


def _locate_lines(body: bytes, good: int, invalid: list[str],
                  first_line: int) -> tuple[pa.Array, list[tuple[int, str]]] | None:
    """Line numbers of the parsed rows and of the skipped ones, or None if a record is not one line.

    The platform writes one record per physical line. When every record took exactly one
    non-empty line, the good rows are the non-empty lines that are not bad, in order.
    """
    if not invalid and good == body.count(b"\n"):
        return _counting(first_line, good), []  # the common case: no arithmetic on the text at all
    lines = _physical_lines(body)
    index = pc.indices_nonzero(pc.greater(pc.utf8_length(lines), 0))
    if len(index) != good + len(invalid):
        return None
    texts = pc.cast(lines.take(index), pa.string())
    is_bad = pc.is_in(texts, value_set=pa.array(invalid, pa.string()))
    if (pc.sum(is_bad).as_py() or 0) != len(invalid):
        return None
    numbers = pc.add(index, first_line)
    bad = list(zip(numbers.filter(is_bad).to_pylist(), texts.filter(is_bad).to_pylist(), strict=True))
    return pc.cast(numbers.filter(pc.invert(is_bad)), pa.int64()), bad


def _physical_lines(body: bytes) -> pa.Array:
    whole = pa.LargeStringArray.from_buffers(1, pa.py_buffer(struct.pack("<qq", 0, len(body))), pa.py_buffer(body))
    return pc.utf8_rtrim(pc.split_pattern(whole, "\n").flatten(), "\r")


def _read_line_by_line(names: list[str], body: bytes, first_line: int) -> Chunk:
    # The slow, exact path for damaged files: each physical line is parsed on its own, so an
    # unbalanced quote spoils only its own line instead of swallowing the lines after it.
    columns: list[list[str | None]] = [[] for _ in names]
    numbers: list[int] = []
    bad: list[tuple[int, str, str]] = []
    for number, line in enumerate(body.decode("utf-8").split("\n"), start=first_line):
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
    return Chunk(table, pa.array(numbers, pa.int64()), bad)


def _count_fields(line: str) -> int:
    try:
        return len(next(csv.reader([line])))
    except (csv.Error, StopIteration):
        return 0


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
    # Scanned by variable name, not registered: a view registered inside the load's open
    # transaction would keep its rows in memory until the commit.
    _hc_rows = rows.append_column("_hc_i", _counting(0, rows.num_rows))  # noqa: F841
    _hc_earlier = earlier if earlier is not None else rows.slice(0, 0)  # noqa: F841
    seen = con.execute(f"select _hc_i from _hc_rows where {digest} in ({' union all '.join(sources)})"
                       ).to_arrow_table().column("_hc_i")
    return pc.is_in(_counting(0, rows.num_rows), value_set=seen.combine_chunks())


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _empty_table(names: Sequence[str] = tuple(settings.HEADERS.values())) -> pa.Table:
    return pa.table({n: pa.array([], pa.string()) for n in names})


def _counting(start: int, n: int) -> pa.Array:
    # start, start + 1, ... without numpy: pyarrow's numpy bridge imports pandas on first use (~1 s).
    return pc.add(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n)), start - 1)
