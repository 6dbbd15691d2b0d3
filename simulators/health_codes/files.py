"""Write (and, for tests, read back) the health-code platform's daily export files."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import xlsxwriter

from simulators.clock import BEIJING

# (Chinese header, input column), in the order the platform exports them.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("序号", "record_no"),
    ("姓名", "name"),
    ("身份证号", "id_number"),
    ("手机号码", "phone"),
    ("健康码状态", "code_color"),
    ("赋码时间", "color_since"),
    ("疫苗接种剂次", "vaccine_doses"),
    ("最近核酸采样时间", "last_test_at"),
    ("核酸检测结果", "last_test_result"),
    ("所属社区", "community"),
)
HEADERS: tuple[str, ...] = tuple(h for h, _ in COLUMNS)
TIME_HEADERS: tuple[str, ...] = ("赋码时间", "最近核酸采样时间")
INT_HEADERS: tuple[str, ...] = ("序号", "疫苗接种剂次")
SHEET_NAME = "健康码导出"
ENCODINGS: tuple[str, ...] = ("gb18030", "gbk", "utf-8", "utf-8-sig")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
EXCEL_EPOCH = datetime(1899, 12, 30)  # Excel's day 0 in the 1900 date system (past the 1900 bug)

# What read_export returns: the input column names with one fixed type each.
SCHEMA = pa.schema(
    [
        ("record_no", pa.int64()),
        ("name", pa.string()),
        ("id_number", pa.string()),
        ("phone", pa.string()),
        ("code_color", pa.string()),
        ("color_since", pa.timestamp("us", tz="UTC")),
        ("vaccine_doses", pa.int32()),
        ("last_test_at", pa.timestamp("us", tz="UTC")),
        ("last_test_result", pa.string()),
        ("community", pa.string()),
    ]
)

Fmt = Literal["csv", "xlsx"]
_SERIAL_TEXT = re.compile(r"^\d+(\.\d+)?$")


def export_name(day_date: date, fmt: Fmt, *, resend: bool = False) -> str:
    """The platform's file name for one day's export, e.g. 健康码日报_20261101.csv."""
    suffix = "(重发)" if resend else ""
    return f"健康码日报_{day_date:%Y%m%d}{suffix}.{fmt}"


def excel_serial(instant: datetime) -> float:
    """Excel serial day number of an instant, counted in Beijing local time, to the second."""
    local = instant.astimezone(BEIJING).replace(tzinfo=None, microsecond=0)
    delta = local - EXCEL_EPOCH
    return delta.days + delta.seconds / 86400


def from_excel_serial(serial: float) -> datetime:
    """The UTC instant of an Excel serial day number read as Beijing local time (to the second)."""
    local = EXCEL_EPOCH + timedelta(seconds=round(serial * 86400))
    return local.replace(tzinfo=BEIJING).astimezone(UTC)


def write_export(
    path: Path,
    rows: pa.Table,
    *,
    fmt: Fmt,
    excel_serial_columns: Sequence[str] = (),
    broken_line: int | None = None,
    encoding: str = "gb18030",
) -> int:
    """Write one export file; return the number of data rows written (a broken one included).

    `excel_serial_columns` names time headers written as Excel serial day numbers instead of
    "YYYY-MM-DD HH:MM:SS". `broken_line` (1-based data line, CSV only) is cut short so it has
    fewer fields than the header; file line number = broken_line + 1.
    """
    serial = set(excel_serial_columns)
    if not serial <= set(TIME_HEADERS):
        raise ValueError(f"excel_serial_columns must be among {TIME_HEADERS}, got {sorted(serial)}")
    missing = [c for _, c in COLUMNS if c not in rows.column_names]
    if missing:
        raise ValueError(f"rows lack columns {missing}")
    if broken_line is not None and not 1 <= broken_line <= rows.num_rows:
        raise ValueError(f"broken_line {broken_line} outside 1..{rows.num_rows}")
    path = Path(path)
    if fmt == "csv":
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        _write_csv(path, rows, serial, broken_line, encoding)
    elif fmt == "xlsx":
        if broken_line is not None:
            raise ValueError("broken_line applies to CSV only: an XLSX file has no lines")
        _write_xlsx(path, _records(rows), serial, _created_from(rows))
    else:
        raise ValueError(f"fmt must be 'csv' or 'xlsx', got {fmt!r}")
    return rows.num_rows


def _records(rows: pa.Table) -> list[dict[str, Any]]:
    # Keyed by Chinese header so both writers share one view of a row.
    columns = {h: rows.column(c).to_pylist() for h, c in COLUMNS}
    return [{h: columns[h][i] for h in HEADERS} for i in range(rows.num_rows)]


def _csv_field(header: str, value: Any, serial: set[str]) -> str:
    if value is None:
        return ""
    if header in TIME_HEADERS:
        if header in serial:
            # 15 significant digits: what Excel itself writes when it saves a serial as text.
            return f"{excel_serial(value):.15g}"
        return value.astimezone(BEIJING).strftime(TIME_FORMAT)
    return str(value)


def _csv_line(fields: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(fields)
    return buf.getvalue()


def _cut_line(fields: Sequence[str]) -> str:
    # Keep the first half of the fields and half of the next one, as a transfer that lost the
    # tail of a line would. The cut never falls inside a quoted field, so the damage stays on
    # this one physical line and a reader can quarantine it by line number.
    keep = len(fields) // 2
    part = fields[keep]
    needs_quotes = any(ch in part for ch in ',"\r\n')
    partial = "" if needs_quotes else part[: max(1, len(part) // 2)]
    return _csv_line(fields[:keep]) + "," + partial


def _write_csv(
    path: Path,
    rows: pa.Table,
    serial: set[str],
    broken_line: int | None,
    encoding: str,
) -> None:
    # Column-wise with Arrow compute: a district's first export has over a million rows.
    columns = [_csv_column(rows.column(c), h, serial) for h, c in COLUMNS]
    lines = pc.binary_join_element_wise(*columns, ",").to_pylist() if rows.num_rows else []
    if broken_line is not None:
        record = _records(rows.slice(broken_line - 1, 1))[0]
        lines[broken_line - 1] = _cut_line([_csv_field(h, record[h], serial) for h in HEADERS])
    path.write_bytes(("\r\n".join([_csv_line(HEADERS), *lines]) + "\r\n").encode(encoding))


def _csv_column(column: pa.ChunkedArray, header: str, serial: set[str]) -> pa.Array:
    """One column as CSV field text, the same as `_csv_field` gives value by value."""
    if header in TIME_HEADERS:
        seconds = pc.cast(column, pa.timestamp("s", tz="UTC"), safe=False)
        if header in serial:
            local = pc.add(pc.cast(pc.cast(seconds, pa.int64()), pa.float64()), 8 * 3600.0)
            days = pc.add(pc.divide(local, 86400.0), float((datetime(1970, 1, 1) - EXCEL_EPOCH).days))
            text = pa.array([None if v is None else f"{v:.15g}" for v in days.to_pylist()], pa.string())
        else:
            text = pc.strftime(pc.cast(seconds, pa.timestamp("s", tz="Asia/Shanghai")), format=TIME_FORMAT)
    else:
        text = pc.cast(column, pa.string())
        special = pc.match_substring_regex(text, '[,"\r\n]')
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
        text = pc.if_else(pc.fill_null(special, False), quoted, text)
    return pc.fill_null(text, "")


def _created_from(rows: pa.Table) -> datetime:
    # A fixed creation date derived from the data keeps the XLSX bytes reproducible.
    latest = [
        v
        for c in ("color_since", "last_test_at")
        for v in rows.column(c).to_pylist()
        if v is not None
    ]
    if not latest:
        return datetime(2000, 1, 1)
    return max(latest).astimezone(UTC).replace(tzinfo=None, microsecond=0)


def _write_xlsx(
    path: Path, records: list[dict[str, Any]], serial: set[str], created: datetime
) -> None:
    # in_memory: no temp files, and every zip member gets xlsxwriter's fixed 1980 timestamp.
    workbook = xlsxwriter.Workbook(str(path), {"in_memory": True})
    workbook.set_properties({"created": created})
    sheet = workbook.add_worksheet(SHEET_NAME)
    bold = workbook.add_format({"bold": True})
    when = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    for col, header in enumerate(HEADERS):
        sheet.write_string(0, col, header, bold)
        sheet.set_column(col, col, 20 if header in TIME_HEADERS or header == "身份证号" else 12)
    sheet.freeze_panes(1, 0)
    for row, record in enumerate(records, start=1):
        for col, header in enumerate(HEADERS):
            value = record[header]
            if value is None:
                continue
            if header in TIME_HEADERS:
                if header in serial:
                    sheet.write_number(row, col, excel_serial(value))
                else:
                    local = value.astimezone(BEIJING).replace(tzinfo=None, microsecond=0)
                    sheet.write_datetime(row, col, local, when)
            elif header in INT_HEADERS:
                sheet.write_number(row, col, int(value))
            else:
                # Always text: an 18-digit ID number as a number would lose its last digits.
                sheet.write_string(row, col, str(value))
    workbook.close()


def read_export(path: Path, *, skip_bad_lines: bool = False) -> pa.Table:
    """Reference reader for tests and the demo: CSV (GB18030/UTF-8, BOM or not) or XLSX.

    Returns the input column names typed as SCHEMA; empty fields become null, Excel serials
    become instants. A CSV line with the wrong field count raises ValueError naming its file
    line, or is dropped when `skip_bad_lines` is set.
    """
    data = Path(path).read_bytes()
    if data[:4] == b"PK\x03\x04":
        header, body = _xlsx_rows(path)
    else:
        header, body = _csv_rows(path, data, skip_bad_lines)
    unknown = set(header) ^ set(HEADERS)
    if unknown or len(header) != len(HEADERS):
        raise ValueError(f"{path}: unexpected headers {header}")
    field_of = dict(COLUMNS)
    columns = {field_of[h]: [_parse(h, row[i]) for row in body] for i, h in enumerate(header)}
    return pa.table({f.name: pa.array(columns[f.name], f.type) for f in SCHEMA}, schema=SCHEMA)


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data.decode("utf-8-sig")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("gb18030")  # GBK is a subset, so this reads both


def _csv_rows(path: Path, data: bytes, skip_bad_lines: bool) -> tuple[list[str], list[list[Any]]]:
    reader = csv.reader(io.StringIO(_decode(data), newline=""))
    header = next(reader)
    body: list[list[Any]] = []
    for fields in reader:
        if len(fields) != len(header):
            if skip_bad_lines:
                continue
            raise ValueError(
                f"{path}: line {reader.line_num} has {len(fields)} fields, expected {len(header)}"
            )
        body.append(list(fields))
    return header, body


def _xlsx_rows(path: Path) -> tuple[list[str], list[list[Any]]]:
    import openpyxl  # only the reference reader needs it

    workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        sheet = workbook[SHEET_NAME] if SHEET_NAME in workbook.sheetnames else workbook.active
        rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()
    header = [str(h) for h in rows[0]]
    width = len(header)
    return header, [(r + [None] * width)[:width] for r in rows[1:]]


def _parse(header: str, value: Any) -> Any:
    if value is None or value == "":
        return None
    if header in TIME_HEADERS:
        if isinstance(value, datetime):
            # openpyxl gives naive local time with float noise: round to the second.
            local = (value + timedelta(microseconds=500_000)).replace(microsecond=0)
            return local.replace(tzinfo=BEIJING).astimezone(UTC)
        if isinstance(value, int | float):
            return from_excel_serial(float(value))
        if _SERIAL_TEXT.match(value):
            return from_excel_serial(float(value))
        return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=BEIJING).astimezone(UTC)
    if header in INT_HEADERS:
        return int(value)
    return str(value)
