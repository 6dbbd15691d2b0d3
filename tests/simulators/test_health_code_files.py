"""Health-code export files and their drop-folder delivery, written and read back for real."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import time
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import openpyxl
import pyarrow as pa
import pytest

from simulators.clock import BEIJING
from simulators.health_codes.drop import (
    LEDGER_FILE,
    PLAN_FILE,
    deliver,
    deliver_until,
    drop_dir,
    outbox_dir,
    plan_day,
)
from simulators.health_codes.files import (
    HEADERS,
    SCHEMA,
    SHEET_NAME,
    export_name,
    read_export,
    write_export,
)

TS = pa.timestamp("us", tz="UTC")
DAY = date(2026, 11, 1)
# 2026-11-01 08:30 Beijing, the instant whose Excel serial the tests check by hand.
TEST_AT = datetime(2026, 11, 1, 8, 30, tzinfo=BEIJING)
# Serial by hand: 1899-12-30 is day 0, so 1900-01-01 is day 2. From 1900-01-01 to 2026-01-01
# are 126 years with 31 leap days (1904..2024; 1900 is not one): 126 * 365 + 31 = 46021 days.
# Jan..Oct 2026 add 31+28+31+30+31+30+31+31+30+31 = 304. Day = 2 + 46021 + 304 = 46327;
# 08:30 is 8.5 / 24 = 0.3541666... of a day.
TEST_SERIAL = 46327 + 8.5 / 24


def sample_rows(n: int = 6) -> pa.Table:
    """Rows with the awkward cases: "·" names, commas, quotes, nulls, noisy IDs."""
    names = ["张三", "阿依古丽·买买提", "李四", '王"小"五', "欧阳娜娜", "赵六"]
    ids = [
        "110101199003071234",
        "65010219850612002x",
        " 110101 19900307 1234 ",
        "１１０１０１１９９００３０７１２３４",
        "110101********1234",
        "110101900307123",
    ]
    phones = ["13800138000", None, "+86 139-0013-9000", "86-13700137000", None, "010-12345678"]
    communities = [
        "幸福里社区",
        "幸福里社区,东区",
        "和平社区",
        "光明社区",
        "和平社区",
        "幸福里社区",
    ]
    colors = ["绿码", "黄码", "红码", "绿码", "绿码", "黄码"]
    results = ["阴性", None, "阳性", "阴性", None, "阴性"]
    base = datetime(2026, 10, 30, 1, 2, 3, tzinfo=UTC)
    test_times: list[datetime | None] = [base + timedelta(hours=h) for h in range(6)]
    test_times[4] = None  # never tested
    rows = [
        {
            "name": names[i % 6] if i < 6 else f"{names[i % 6]}{i}",
            "id_number": ids[i % 6],
            "phone": phones[i % 6],
            "code_color": colors[i % 6],
            "color_since": base + timedelta(hours=7 * i, seconds=i),
            "vaccine_doses": i % 4,
            "last_test_at": test_times[i % 6] if i else TEST_AT,
            "last_test_result": results[i % 6],
            "community": communities[i % 6],
            "record_no": 1000 + i,
        }
        for i in range(n)
    ]
    schema = pa.schema(
        [
            ("name", pa.string()),
            ("id_number", pa.string()),
            ("phone", pa.string()),
            ("code_color", pa.string()),
            ("color_since", TS),
            ("vaccine_doses", pa.int8()),
            ("last_test_at", TS),
            ("last_test_result", pa.string()),
            ("community", pa.string()),
            ("record_no", pa.int64()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def as_read(rows: pa.Table) -> pa.Table:
    """The input in read_export's column order and types."""
    return rows.select(SCHEMA.names).cast(SCHEMA)


def csv_lines(path: Path, encoding: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_bytes().decode(encoding), newline="")))


@pytest.mark.parametrize("encoding", ["gb18030", "gbk", "utf-8", "utf-8-sig"])
def test_csv_round_trip(tmp_path: Path, encoding: str) -> None:
    rows = sample_rows()
    path = tmp_path / export_name(DAY, "csv")
    assert write_export(path, rows, fmt="csv", encoding=encoding) == rows.num_rows
    assert read_export(path).equals(as_read(rows))
    data = path.read_bytes()
    assert data.count(b"\r\n") == rows.num_rows + 1 and data.count(b"\n") == data.count(b"\r\n")
    assert data.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig")


def test_csv_is_really_gb18030(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    write_export(path, sample_rows(), fmt="csv")
    data = path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    header = data.split(b"\r\n")[0]
    assert header.split(b",")[1] == "姓名".encode("gb18030") == b"\xd0\xd5\xc3\xfb"
    assert header == ",".join(HEADERS).encode("gb18030")
    # The minority name's interpunct survives as GB18030 bytes.
    assert "阿依古丽·买买提".encode("gb18030") in data


def test_xlsx_round_trip_and_layout(tmp_path: Path) -> None:
    rows = sample_rows()
    path = tmp_path / export_name(DAY, "xlsx")
    assert write_export(path, rows, fmt="xlsx") == rows.num_rows
    assert read_export(path).equals(as_read(rows))
    workbook = openpyxl.load_workbook(path)
    sheet = workbook[SHEET_NAME]
    assert [c.value for c in sheet[1]] == list(HEADERS)
    assert all(c.font.b for c in sheet[1])
    since = sheet.cell(row=2, column=HEADERS.index("赋码时间") + 1)
    assert since.is_date and isinstance(since.value, datetime)
    ident = sheet.cell(row=2, column=HEADERS.index("身份证号") + 1)
    assert ident.data_type == "s" and ident.value == "110101199003071234"


def test_xlsx_bytes_are_deterministic(tmp_path: Path) -> None:
    rows = sample_rows(50)
    first, second = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    write_export(first, rows, fmt="xlsx", excel_serial_columns=["最近核酸采样时间"])
    time.sleep(1.1)  # a wall-clock timestamp anywhere in the file would now differ
    write_export(second, rows, fmt="xlsx", excel_serial_columns=["最近核酸采样时间"])
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, second)]
    assert digest[0] == digest[1]
    with zipfile.ZipFile(first) as archive:
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        core = archive.read("docProps/core.xml").decode()
    latest = max(v for c in ("color_since", "last_test_at") for v in rows[c].to_pylist() if v)
    assert f'<dcterms:created xsi:type="dcterms:W3CDTF">{latest:%Y-%m-%dT%H:%M:%S}Z' in core


def test_excel_serial_columns_csv(tmp_path: Path) -> None:
    rows = sample_rows()
    path = tmp_path / "serial.csv"
    write_export(path, rows, fmt="csv", excel_serial_columns=["最近核酸采样时间", "赋码时间"])
    lines = csv_lines(path, "gb18030")
    test_at = lines[1][HEADERS.index("最近核酸采样时间")]
    assert test_at == "46327.3541666667"
    assert float(test_at) == pytest.approx(TEST_SERIAL, abs=1e-9)
    since = lines[1][HEADERS.index("赋码时间")]
    # 2026-10-30 01:02:03 UTC is 09:02:03 Beijing on day 46325.
    assert float(since) == pytest.approx(46325 + (9 * 3600 + 2 * 60 + 3) / 86400, abs=1e-9)
    assert lines[5][HEADERS.index("最近核酸采样时间")] == ""  # a null stays empty
    assert read_export(path).equals(as_read(rows))


def test_excel_serial_columns_xlsx(tmp_path: Path) -> None:
    rows = sample_rows()
    path = tmp_path / "serial.xlsx"
    write_export(path, rows, fmt="xlsx", excel_serial_columns=["最近核酸采样时间"])
    sheet = openpyxl.load_workbook(path)[SHEET_NAME]
    cell = sheet.cell(row=2, column=HEADERS.index("最近核酸采样时间") + 1)
    assert isinstance(cell.value, float) and not cell.is_date
    assert cell.value == pytest.approx(TEST_SERIAL, abs=1e-9)
    assert sheet.cell(row=6, column=HEADERS.index("最近核酸采样时间") + 1).value is None
    assert sheet.cell(row=2, column=HEADERS.index("赋码时间") + 1).is_date
    assert read_export(path).equals(as_read(rows))


def test_serial_columns_must_be_time_columns(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="excel_serial_columns"):
        write_export(tmp_path / "x.csv", sample_rows(), fmt="csv", excel_serial_columns=["姓名"])


@pytest.mark.parametrize("broken", range(1, 7))
def test_broken_line_breaks_only_that_line(tmp_path: Path, broken: int) -> None:
    rows = sample_rows()
    path = tmp_path / "broken.csv"
    assert write_export(path, rows, fmt="csv", broken_line=broken) == rows.num_rows
    reader = csv.reader(io.StringIO(path.read_bytes().decode("gb18030"), newline=""))
    widths: dict[int, int] = {}
    for fields in reader:
        widths[reader.line_num] = len(fields)
    bad = {line for line, width in widths.items() if width != len(HEADERS)}
    assert bad == {broken + 1}  # file line = data line + 1 (the header)
    assert len(widths) == rows.num_rows + 1  # no line swallowed the next one
    with pytest.raises(ValueError, match=f"line {broken + 1} "):
        read_export(path)
    kept = [i for i in range(rows.num_rows) if i != broken - 1]
    assert read_export(path, skip_bad_lines=True).equals(as_read(rows.take(kept)))


def test_broken_line_is_csv_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="CSV only"):
        write_export(tmp_path / "x.xlsx", sample_rows(), fmt="xlsx", broken_line=1)


def test_resend_has_new_name_and_same_rows(tmp_path: Path) -> None:
    rows = sample_rows()
    original = tmp_path / export_name(DAY, "csv")
    resent = tmp_path / export_name(DAY, "csv", resend=True)
    assert original.name == "健康码日报_20261101.csv"
    assert resent.name == "健康码日报_20261101(重发).csv"
    assert export_name(DAY, "xlsx") == "健康码日报_20261101.xlsx"
    write_export(original, rows, fmt="csv")
    write_export(resent, rows, fmt="csv", encoding="utf-8-sig")
    assert read_export(resent).equals(read_export(original))
    assert csv_lines(resent, "utf-8-sig")[1:] == csv_lines(original, "gb18030")[1:]


def make_outbox(root: Path, day: int, rows: pa.Table, *, slow: list[str]) -> list[Path]:
    day_dir = outbox_dir(root, day)
    day_dir.mkdir(parents=True)
    paths = [day_dir / export_name(DAY + timedelta(days=day), "csv")]
    write_export(paths[0], rows, fmt="csv")
    paths.append(day_dir / export_name(DAY + timedelta(days=day), "xlsx", resend=True))
    write_export(paths[1], rows, fmt="xlsx")
    plan_day(day_dir, slow=slow)
    return paths


def test_deliver_is_idempotent_and_waits_for_the_day(tmp_path: Path) -> None:
    rows = sample_rows()
    day0 = make_outbox(tmp_path, 0, rows, slow=[])
    day1 = make_outbox(tmp_path, 1, rows, slow=[])
    delivered = deliver_until(tmp_path, 0)
    assert sorted(p.name for p in delivered) == sorted(p.name for p in day0)
    drop = drop_dir(tmp_path)
    assert sorted(p.name for p in drop.iterdir()) == sorted(p.name for p in day0)
    assert json.loads((outbox_dir(tmp_path, 0) / PLAN_FILE).read_text()) == {"slow": []}
    for source in day0:
        assert (drop / source.name).read_bytes() == source.read_bytes()
    stamps = {p.name: p.stat().st_mtime_ns for p in drop.iterdir()}
    time.sleep(0.01)
    assert deliver(tmp_path, 0) == []
    assert {p.name: p.stat().st_mtime_ns for p in drop.iterdir()} == stamps
    # A connector that archives what it loaded does not get it again.
    (drop / day0[0].name).unlink()
    assert deliver_until(tmp_path, 0) == []
    assert sorted(p.name for p in deliver_until(tmp_path, 1)) == sorted(p.name for p in day1)
    names = {p.name for p in drop.iterdir()}
    assert PLAN_FILE not in names and LEDGER_FILE not in names
    assert not any(n.startswith(".") for n in names)  # no temp file left behind
    assert deliver(tmp_path, 7) == []  # a day with no outbox: nothing sent


def test_slow_file_is_seen_incomplete_then_complete(tmp_path: Path) -> None:
    rows = sample_rows(400)
    day0 = make_outbox(tmp_path, 0, rows, slow=[export_name(DAY, "csv")])
    target = drop_dir(tmp_path) / day0[0].name
    final = day0[0].stat().st_size
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if target.exists():
                seen.append(target.stat().st_size)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        started = time.monotonic()
        deliver(tmp_path, 0, partial_seconds=0.3)
        assert time.monotonic() - started >= 0.3
    finally:
        stop.set()
        watcher.join()
    assert any(0 < size < final for size in seen), seen[:5]
    assert target.stat().st_size == final
    assert target.read_bytes() == day0[0].read_bytes()
    assert read_export(target).equals(as_read(rows))
    # The fast file never shows up half written.
    assert (drop_dir(tmp_path) / day0[1].name).read_bytes() == day0[1].read_bytes()


def test_interrupted_slow_delivery_is_redone(tmp_path: Path) -> None:
    rows = sample_rows()
    day0 = make_outbox(tmp_path, 0, rows, slow=[])
    drop = drop_dir(tmp_path)
    drop.mkdir(parents=True)
    (drop / day0[0].name).write_bytes(day0[0].read_bytes()[:50])  # left by a crashed upload
    assert {p.name for p in deliver(tmp_path, 0)} == {p.name for p in day0}
    assert (drop / day0[0].name).read_bytes() == day0[0].read_bytes()
