"""Excel workbooks people open in Excel, WPS and LibreOffice: frozen header, widths, filters, A4 landscape.

Text from the silos is written as text, never as a formula: a cell whose value begins with
= + - @ (or a tab / carriage return) gets Excel's own quote prefix, so it shows as typed and a
later edit does not turn it into a formula (CSV/formula injection).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xlsxwriter

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# XML 1.0 cannot carry C0 controls other than tab and newline; Excel refuses such a file.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_CELL_CHARS = 32767  # Excel's limit; longer text is cut and marked


@dataclass(frozen=True)
class Column:
    """One column of a sheet: its Chinese header, the kind of value, and an optional fixed width."""

    header: str
    kind: str = "text"  # text | int | float | percent | date | datetime
    width: float | None = None


@dataclass
class Sheet:
    """A sheet: name (Chinese, ≤ 31 characters), columns, rows, and optional lines above the table."""

    name: str
    columns: Sequence[Column]
    rows: Iterable[Sequence[Any]]
    title_lines: Sequence[str] = field(default_factory=tuple)


def display_width(text: str) -> int:
    """Columns a value takes on screen: Han and full-width characters count twice."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def safe_text(value: str) -> str:
    """Text as it may go into a cell: control characters removed, cut at Excel's length limit."""
    value = _CONTROL.sub("", value)
    if len(value) > MAX_CELL_CHARS:
        value = value[: MAX_CELL_CHARS - 12] + "…（内容过长已截断）"
    return value


def write_workbook(path: Path, sheets: Sequence[Sheet], *, title: str | None = None) -> dict[str, int]:
    """Write `sheets` to an .xlsx file at `path`; return the data rows written per sheet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".xlsx.part")
    wb = xlsxwriter.Workbook(str(tmp), {"strings_to_formulas": False, "strings_to_urls": False,
                                         "strings_to_numbers": False, "remove_timezone": True})
    if title:
        wb.set_properties({"title": title, "author": "onenet"})
    f = _formats(wb)
    counts = {}
    for sheet in sheets:
        counts[sheet.name] = _write_sheet(wb, f, sheet)
    wb.close()
    tmp.replace(path)  # a reader never sees half a workbook
    return counts


def _formats(wb: xlsxwriter.Workbook) -> dict[str, Any]:
    base = {"font_name": "等线", "font_size": 11, "valign": "vcenter"}
    return {
        "title": wb.add_format({**base, "bold": True, "font_size": 14}),
        "note": wb.add_format({**base, "font_color": "#555555"}),
        "header": wb.add_format({**base, "bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True}),
        "text": wb.add_format(base),
        "quoted": wb.add_format({**base, "quote_prefix": True}),
        "int": wb.add_format({**base, "num_format": "#,##0"}),
        "float": wb.add_format({**base, "num_format": "#,##0.00"}),
        "percent": wb.add_format({**base, "num_format": "0.0%"}),
        "date": wb.add_format({**base, "num_format": "yyyy-mm-dd"}),
        "datetime": wb.add_format({**base, "num_format": "yyyy-mm-dd hh:mm"}),
    }


def _write_sheet(wb: xlsxwriter.Workbook, f: dict[str, Any], sheet: Sheet) -> int:
    ws = wb.add_worksheet(sheet.name[:31])
    for i, line in enumerate(sheet.title_lines):
        ws.write_string(i, 0, safe_text(line), f["title"] if i == 0 else f["note"])
    header_row = len(sheet.title_lines) + (1 if sheet.title_lines else 0)
    widths = [max(display_width(c.header), 6) for c in sheet.columns]
    for j, col in enumerate(sheet.columns):
        ws.write_string(header_row, j, col.header, f["header"])
    r = header_row
    for r, row in enumerate(sheet.rows, start=header_row + 1):
        for j, (col, value) in enumerate(zip(sheet.columns, row, strict=True)):
            shown = _write_cell(ws, f, r, j, col, value)
            widths[j] = max(widths[j], shown)
    n = r - header_row
    for j, col in enumerate(sheet.columns):
        ws.set_column(j, j, col.width or min(max(widths[j] + 2, 8), 60))
    ws.freeze_panes(header_row + 1, 0)
    if sheet.columns:
        ws.autofilter(header_row, 0, header_row + max(n, 0), len(sheet.columns) - 1)
    # A4 landscape, one page wide, header row repeated on every printed page.
    ws.set_paper(9)
    ws.set_landscape()
    ws.fit_to_pages(1, 0)
    ws.repeat_rows(header_row)
    ws.set_footer("&C第 &P 页，共 &N 页")
    return n


def _write_cell(ws, f: dict[str, Any], r: int, j: int, col: Column, value: Any) -> int:
    """Write one value as its kind; return its display width."""
    if value is None:
        ws.write_blank(r, j, None, f["text"])
        return 0
    kind = col.kind
    if kind in ("int", "float", "percent") and isinstance(value, (int, float)):
        ws.write_number(r, j, value, f[kind])
        return len(f"{value:,.2f}") if kind == "float" else len(f"{value:,}") if kind == "int" else 6
    if kind in ("date", "datetime") and isinstance(value, (dt.date, dt.datetime)):
        if kind == "date" and isinstance(value, dt.datetime):
            value = value.date()
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            # Shown as Beijing time: a community's day is a Beijing day.
            value = value.astimezone(dt.timezone(dt.timedelta(hours=8))).replace(tzinfo=None)
        ws.write_datetime(r, j, value, f[kind])
        return 16 if kind == "datetime" else 10
    text = safe_text(str(value))
    ws.write_string(r, j, text, f["quoted"] if text.startswith(FORMULA_STARTS) else f["text"])
    return display_width(text)
