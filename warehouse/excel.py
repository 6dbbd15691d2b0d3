"""Excel workbooks people open in Excel, WPS and LibreOffice, and print on A4: frozen header, filters.

Printing (适老化): every sheet is laid out to fit one A4 landscape page wide at a readable size.
Long text wraps inside a capped column width (rows made as tall as their text), the widest text
columns are narrowed until the sheet prints at PRINT_SCALE_MIN or larger (11 pt text printed at
8.8 pt or more), and the title and header rows repeat on every printed page.

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

from warehouse.outputs import replacing

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# XML 1.0 cannot carry C0 controls other than tab and newline; Excel refuses such a file.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_CELL_CHARS = 32767  # Excel's limit; longer text is cut and marked
FONT_PT = 11
ROW_PT = 16.5  # one line of 11 pt Han text with its leading
# A4 landscape (11.69 in) less the 0.3 in side margins set below, in pixels at 96 dpi: what the
# columns' widths are measured against.
PRINTABLE_PX = (11.69 - 2 * 0.3) * 96
# Pixels per character of column width. Excel and WPS with Calibri (the workbook's default font)
# take 7; LibreOffice without Calibri or Carlito falls back to a wider font and takes 9.3-9.6 (measured
# from the PDF it prints, tests/warehouse/test_extracts.py). Laying out for the wider one means
# Excel prints the same sheet larger, never smaller.
CHAR_PX = 9.6
PRINT_SCALE_MIN = 0.75  # 11 pt printed at 8.25 pt at the least
MIN_WRAP_WIDTH = 10  # a wrapped column is never narrowed below 10 characters (5 Han)
DEFAULT_TEXT_CAP = 40


@dataclass(frozen=True)
class Column:
    """One column of a sheet: its Chinese header, the kind of value, and an optional fixed width."""

    header: str
    kind: str = "text"  # text | int | float | percent | date | datetime | time (dd hh:mm)
    width: float | None = None  # for text: the widest the column may be; longer text wraps


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
    with replacing(path) as out:  # a reader never sees half a workbook
        wb = xlsxwriter.Workbook(out, {"strings_to_formulas": False, "strings_to_urls": False,
                                       "strings_to_numbers": False, "remove_timezone": True})
        if title:
            wb.set_properties({"title": title, "author": "onenet"})
        f = _formats(wb)
        counts = {}
        for sheet in sheets:
            counts[sheet.name] = _write_sheet(wb, f, sheet)
        wb.close()
    return counts


def _formats(wb: xlsxwriter.Workbook) -> dict[str, Any]:
    base = {"font_name": "等线", "font_size": 11, "valign": "vcenter"}
    return {
        "title": wb.add_format({**base, "bold": True, "font_size": 14}),
        "note": wb.add_format({**base, "font_color": "#555555"}),
        "header": wb.add_format({**base, "bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True}),
        "text": wb.add_format(base),
        "quoted": wb.add_format({**base, "quote_prefix": True}),
        "wrap": wb.add_format({**base, "text_wrap": True}),
        "wrap_quoted": wb.add_format({**base, "text_wrap": True, "quote_prefix": True}),
        "int": wb.add_format({**base, "num_format": "#,##0"}),
        "float": wb.add_format({**base, "num_format": "#,##0.00"}),
        "percent": wb.add_format({**base, "num_format": "0.0%"}),
        "date": wb.add_format({**base, "num_format": "yyyy-mm-dd"}),
        "datetime": wb.add_format({**base, "num_format": "yyyy-mm-dd hh:mm"}),
        "time": wb.add_format({**base, "num_format": "mm-dd hh:mm"}),
    }


def column_px(width: float) -> float:
    """Pixels a column of `width` characters takes (CHAR_PX per character + 5 of padding)."""
    return width * CHAR_PX + 5


def print_scale(widths: Sequence[float]) -> float:
    """The scale at which columns of `widths` fit one A4 landscape page wide (1.0 when they fit)."""
    return min(1.0, PRINTABLE_PX / sum(column_px(w) for w in widths)) if widths else 1.0


def fit_widths(natural: Sequence[float], caps: Sequence[float | None], kinds: Sequence[str]) -> list[float]:
    """Column widths that print one page wide at PRINT_SCALE_MIN or more where text allows it.

    A text column is as wide as its widest value, up to its cap (its text wraps beyond that); then the
    widest text columns with a declared width (long text that may wrap) give way, one character at a
    time, down to MIN_WRAP_WIDTH, until the sheet fits. Codes, numbers and dates keep their width: a
    wrapped ticket number, date or figure is unreadable."""
    widths = [min(max(n + 1, 6), cap or (DEFAULT_TEXT_CAP if k == "text" else 60))
              for n, cap, k in zip(natural, caps, kinds, strict=True)]
    budget = PRINTABLE_PX / PRINT_SCALE_MIN
    while sum(column_px(w) for w in widths) > budget:
        shrinkable = [j for j, k in enumerate(kinds)
                      if k == "text" and caps[j] is not None and widths[j] > MIN_WRAP_WIDTH]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda j: widths[j])
        widths[widest] -= 1
    return widths


def lines_needed(text: str, width: float) -> int:
    """Lines `text` takes wrapped in a column `width` characters wide (its own line breaks kept)."""
    usable = max(width - 1.5, 1)
    return sum(max(1, -(-display_width(part) // int(usable))) for part in text.split("\n"))


def _write_sheet(wb: xlsxwriter.Workbook, f: dict[str, Any], sheet: Sheet) -> int:
    ws = wb.add_worksheet(sheet.name[:31])
    for i, line in enumerate(sheet.title_lines):
        ws.write_string(i, 0, safe_text(line), f["title"] if i == 0 else f["note"])
    header_row = len(sheet.title_lines) + (1 if sheet.title_lines else 0)
    rows = [[_shown(col, value) for col, value in zip(sheet.columns, row, strict=True)] for row in sheet.rows]
    natural = [max(display_width(c.header), 6) for c in sheet.columns]
    for row in rows:
        for j, value in enumerate(row):
            natural[j] = max(natural[j], _display(sheet.columns[j], value))
    widths = fit_widths(natural, [c.width for c in sheet.columns], [c.kind for c in sheet.columns])
    header_lines = max((lines_needed(c.header, w) for c, w in zip(sheet.columns, widths, strict=True)), default=1)
    for j, col in enumerate(sheet.columns):
        ws.write_string(header_row, j, col.header, f["header"])
        ws.set_column(j, j, widths[j])
    if header_lines > 1:
        ws.set_row(header_row, ROW_PT * header_lines)
    for r, row in enumerate(rows, start=header_row + 1):
        lines = 1
        for j, value in enumerate(row):
            wrapped = isinstance(value, str) and ("\n" in value or _display(sheet.columns[j], value) > widths[j] - 1.5)
            _write_cell(ws, f, r, j, sheet.columns[j], value, wrapped)
            if wrapped:
                lines = max(lines, lines_needed(value, widths[j]))
        if lines > 1:
            # Excel and WPS do not grow a row for wrapped text they did not lay out themselves.
            ws.set_row(r, ROW_PT * lines)
    n = len(rows)
    ws.freeze_panes(header_row + 1, 0)
    if sheet.columns:
        ws.autofilter(header_row, 0, header_row + max(n, 0), len(sheet.columns) - 1)
    # A4 landscape, narrow side margins, one page wide (fit_widths keeps the scale readable), the
    # title and header rows repeated on every printed page.
    ws.set_paper(9)
    ws.set_landscape()
    ws.set_margins(left=0.3, right=0.3, top=0.5, bottom=0.6)
    ws.center_horizontally()
    ws.fit_to_pages(1, 0)
    ws.repeat_rows(0, header_row)
    ws.set_footer("&C第 &P 页，共 &N 页")
    return n


def _beijing(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        # Shown as Beijing time: a community's day is a Beijing day.
        return value.astimezone(dt.timezone(dt.timedelta(hours=8))).replace(tzinfo=None)
    return value


def _shown(col: Column, value: Any) -> Any:
    """The value as the cell holds it: instants in Beijing time, text made safe."""
    if value is None:
        return None
    if col.kind in ("int", "float", "percent") and isinstance(value, (int, float)):
        return value
    if col.kind in ("date", "datetime", "time") and isinstance(value, (dt.date, dt.datetime)):
        if isinstance(value, dt.datetime):
            value = _beijing(value)
            if col.kind == "date":
                return value.date()
        return value
    return safe_text(str(value))


def _date_only(col: Column, value: Any) -> bool:
    """A date, or an instant at exactly 00:00 (a silo that keeps days only): shown without a time."""
    return col.kind == "date" or not isinstance(value, dt.datetime) or value.time() == dt.time(0)


def _display(col: Column, value: Any) -> int:
    """Characters `value` takes on screen as written (see _write_cell)."""
    if value is None:
        return 0
    if isinstance(value, str):
        return max(display_width(line) for line in value.split("\n"))
    if isinstance(value, (dt.date, dt.datetime)):
        return 10 if _date_only(col, value) else 11 if col.kind == "time" else 16
    if col.kind == "float":
        return len(f"{value:,.2f}")
    return len(f"{value:,}") if col.kind == "int" else 6


def _write_cell(ws, f: dict[str, Any], r: int, j: int, col: Column, value: Any, wrapped: bool = False) -> None:
    """Write one value (as _shown made it) as its kind."""
    if value is None:
        ws.write_blank(r, j, None, f["text"])
    elif isinstance(value, str):
        quoted = value.startswith(FORMULA_STARTS)
        fmt = ("wrap_quoted" if quoted else "wrap") if wrapped else ("quoted" if quoted else "text")
        ws.write_string(r, j, value, f[fmt])
    elif isinstance(value, (dt.date, dt.datetime)):
        if not isinstance(value, dt.datetime):
            value = dt.datetime.combine(value, dt.time(0))
        ws.write_datetime(r, j, value, f["date" if _date_only(col, value) else col.kind])
    else:
        ws.write_number(r, j, value, f[col.kind])
