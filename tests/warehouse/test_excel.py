"""Workbooks read back with openpyxl: text stays text, formulas never start from source text, print setup."""

from __future__ import annotations

import datetime as dt

import openpyxl
import pytest

from warehouse.excel import Column, Sheet, display_width, write_workbook

HOSTILE = ["=HYPERLINK(\"http://evil\",\"点我\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "正常文本",
           "a\x00b\x07c", "Robert'); DROP TABLE residents;--"]


@pytest.fixture
def book(tmp_path):
    rows = [(text, i, 0.5, dt.date(2026, 11, 3), dt.datetime(2026, 11, 3, 1, 30, tzinfo=dt.UTC))
            for i, text in enumerate(HOSTILE)]
    sheet = Sheet("工单明细", [Column("内容"), Column("序号", "int"), Column("比例", "percent"),
                           Column("日期", "date"), Column("时间", "datetime")], rows, title_lines=("标题", "说明"))
    path = tmp_path / "book.xlsx"
    counts = write_workbook(path, [sheet], title="测试")
    return path, counts


def test_hostile_text_is_written_as_quoted_text_never_as_a_formula(book):
    path, counts = book
    assert counts == {"工单明细": len(HOSTILE)}
    ws = openpyxl.load_workbook(path)["工单明细"]
    values = [ws.cell(row=r, column=1) for r in range(5, 5 + len(HOSTILE))]
    for cell in values:
        assert cell.data_type == "s", (cell.coordinate, cell.value)
    starts_like_formula = [c for c in values if str(c.value).startswith(("=", "+", "-", "@", "\t"))]
    assert len(starts_like_formula) == 5
    assert all(c.quotePrefix for c in starts_like_formula)
    assert not values[5].quotePrefix
    assert values[6].value == "abc"  # control characters removed, the rest kept
    assert values[7].value == HOSTILE[7]


def test_types_header_filter_freeze_and_a4_landscape(book):
    path, _ = book
    ws = openpyxl.load_workbook(path)["工单明细"]
    assert [c.value for c in ws[4]] == ["内容", "序号", "比例", "日期", "时间"]
    assert ws.freeze_panes == "A5"
    assert ws.auto_filter.ref == f"A4:E{4 + len(HOSTILE)}"
    assert ws.page_setup.orientation == "landscape" and int(ws.page_setup.paperSize) == 9
    assert ws.cell(row=5, column=2).value == 0 and ws.cell(row=5, column=2).data_type == "n"
    assert ws.cell(row=5, column=4).value == dt.datetime(2026, 11, 3)
    assert ws.cell(row=5, column=4).number_format == "yyyy-mm-dd"
    # An instant is shown in Beijing time.
    assert ws.cell(row=5, column=5).value == dt.datetime(2026, 11, 3, 9, 30)
    assert ws.column_dimensions["A"].width >= display_width(HOSTILE[0])


def test_display_width_counts_han_twice():
    assert display_width("幸福村") == 6 and display_width("ab") == 2


def test_libreoffice_opens_the_workbook_and_shows_text_as_typed(book, tmp_path):
    """Converted by LibreOffice headless (Debian package, installed by `make system-deps`)."""
    import shutil
    import subprocess

    path, _ = book
    soffice = shutil.which("soffice")
    assert soffice, "LibreOffice is missing: run `make system-deps`"
    out = tmp_path / "lo"
    subprocess.run([soffice, f"-env:UserInstallation=file://{tmp_path}/lo-profile", "--headless",
                    "--convert-to", "csv:Text - txt - csv (StarCalc):44,34,76", "--outdir", str(out), str(path)],
                   check=True, capture_output=True, timeout=120)
    text = (out / "book.csv").read_text(encoding="utf-8")
    assert "工单明细" not in text  # only the data sheet, not its name
    assert '=HYPERLINK(""http://evil"",""点我"")' in text  # the text as typed, not a link or a value
    assert "+1+1" in text and "-2+3" in text and "@SUM(A1)" in text and "正常文本" in text
    assert "2026-11-03" in text


def test_long_text_wraps_codes_do_not_and_a_day_shows_no_time(tmp_path):
    from warehouse.excel import PRINT_SCALE_MIN, column_px, print_scale

    long = "龙腾家园3号楼3单元地下车库入口垃圾桶满溢的问题，污水横流，请尽快处理" * 2
    # a Beijing midnight (a silo that keeps days) and a real time
    rows = [("GD2026110600021", dt.datetime(2026, 10, 31, 16, tzinfo=dt.UTC), dt.datetime(2026, 11, 1, 9, 30),
             long, long, long, long)] * 3
    columns = [Column("工单号"), Column("日", "datetime"), Column("时", "datetime")] + [
        Column(f"长文本{i}", width=40) for i in range(4)]
    write_workbook(tmp_path / "w.xlsx", [Sheet("宽表", columns, rows)])
    ws = openpyxl.load_workbook(tmp_path / "w.xlsx")["宽表"]
    widths = [ws.column_dimensions[c].width for c in "ABCDEFG"]
    assert widths[0] >= len("GD2026110600021")  # a code is never narrowed into two lines
    assert widths[3] < 35 and ws.cell(row=2, column=4).alignment.wrap_text  # long text gave way and wraps
    assert print_scale([w - 0.71 for w in widths]) >= PRINT_SCALE_MIN - 0.01, [column_px(w) for w in widths]
    assert ws.row_dimensions[2].height > 2 * 16  # as tall as its wrapped text
    assert ws.cell(row=2, column=2).number_format == "yyyy-mm-dd"
    assert ws.cell(row=2, column=2).value == dt.datetime(2026, 11, 1)
    assert ws.cell(row=2, column=3).number_format == "yyyy-mm-dd hh:mm"
    assert ws.print_title_rows == "$1:$1"  # the header repeats on every printed page
