"""The health-code file-drop connector against real files in real encodings and a real DuckDB warehouse."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

import connectors.health_codes as health_codes
from connectors.common.config import parse_uri
from connectors.common.exceptions import (
    ConfigurationError,
    SourceUnavailable,
)
from connectors.health_codes import helpers, settings
from simulators.clock import BEIJING
from simulators.district.generate import generate
from simulators.health_codes import drop
from simulators.health_codes.files import COLUMNS, SCHEMA, export_name, read_export, write_export
from warehouse import db

FAST = 0.2  # stable_seconds in tests: two looks 0.2 s apart
TEXT_COLUMNS = [c for _, c in COLUMNS]
DAY = date(2026, 11, 1)


# --- helpers ------------------------------------------------------------------------------------

@pytest.fixture
def con(tmp_path):
    c = db.connect(tmp_path / "w.duckdb")
    yield c
    c.close()


@pytest.fixture
def folder(tmp_path) -> Path:
    """A drop folder of its own: the warehouse file next to it would be noted as a stray file."""
    path = tmp_path / "drop"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def village_outbox(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("village") / "district"
    generate(root, residents=2000, seed=1, days=10)
    return root


@pytest.fixture
def village(village_outbox, tmp_path) -> Path:
    # A private copy: delivering writes the simulator's ledger into the outbox.
    root = tmp_path / "district"
    shutil.copytree(village_outbox, root)
    return root


def connection(folder: Path, **extra: str):
    query = "&".join(f"{k}={v}" for k, v in {"stable_seconds": str(FAST), **extra}.items())
    return parse_uri("health_codes", f"file://{folder}?{query}")


def sync(con, folder: Path):
    [result] = health_codes.sync(con, connection(folder))
    return result


def people(n: int = 3) -> pa.Table:
    """Rows as the platform holds them (files.SCHEMA), with the values that trip readers up."""
    base = [
        dict(name="阿依古丽·买买提", id_number="11010519491231002X", phone="+86 138 0013 8000",
             community="幸福社区,东区", result="阴性"),
        dict(name='王"小"明', id_number="010101199001011234", phone="010-6512 3456", community="和平村",
             result=None),
        dict(name="李 娜", id_number="110101********1234", phone=None, community="光明社区", result="阳性"),
    ]
    rows = []
    for i in range(n):
        b = base[i % len(base)]
        rows.append({"record_no": i + 1, "name": b["name"], "id_number": b["id_number"], "phone": b["phone"],
                     "code_color": "绿码", "color_since": datetime(2026, 11, 1, 0, 30, 0, tzinfo=UTC),
                     "vaccine_doses": 3, "last_test_at": None if i % 3 == 2 else datetime(2026, 10, 31, 16, 5, 9,
                                                                                          tzinfo=UTC),
                     "last_test_result": b["result"], "community": b["community"]})
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def as_text(table: pa.Table) -> list[tuple]:
    """The reference reader's rows as the connector must land them: text, times Beijing local."""
    out = []
    for row in table.to_pylist():
        values = []
        for c in TEXT_COLUMNS:
            v = row[c]
            if isinstance(v, datetime):
                v = v.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
            values.append(None if v is None else str(v))
        out.append(tuple(values))
    return sorted(out, key=lambda r: int(r[0]))


def landed(con, file_name: str) -> list[tuple]:
    rows = con.execute(f"select {', '.join(TEXT_COLUMNS)} from raw.health_codes_exports where file_name = ?",
                       [file_name]).fetchall()
    return sorted(rows, key=lambda r: int(r[0]))


def age(path: Path, seconds: float = 3600) -> None:
    """Make a file look old, as one written long ago would."""
    past = time.time() - seconds
    os.utime(path, (past, past))


# --- the village: a generated district's drop folder --------------------------------------------

def test_village_lands_every_row_once_and_only_new_files_later(con, village):
    folder = drop.drop_dir(village)
    drop.deliver_until(village, 6)
    first = sync(con, folder)
    assert first.status == "succeeded"
    names = sorted(p.name for p in folder.iterdir())
    resends = [n for n in names if "(重发)" in n]
    assert len(resends) == 1 and resends[0].startswith("健康码日报_20261105")
    for name in names:
        expected = as_text(read_export(folder / name, skip_bad_lines=True))
        if name in resends:
            assert landed(con, name) == []
        else:
            # Every column as the reference reader sees it: encodings, XLSX, Excel serials, IDs as text.
            assert landed(con, name) == expected, name
    # Broken lines: quarantined with file, line and the raw text; everything reconciles.
    q = con.execute("select position, raw_record, reasons from meta.quarantine").fetchall()
    assert [p for p, _, _ in q] == ["健康码日报_20261103.csv line 3"]
    raw_line = (folder / "健康码日报_20261103.csv").read_bytes().decode("gb18030").split("\r\n")[2]
    assert q[0][1] == raw_line and "6 fields, expected 10" in json.loads(q[0][2])[0]["message"]
    assert first.rows_in == first.rows_landed + first.duplicates_skipped + first.rows_quarantined
    assert first.rows_landed == con.execute("select count(*) from raw.health_codes_exports").fetchall()[0][0]
    message = con.execute("select message from meta.loads where load_id = ?", [first.load_id]).fetchall()[0][0]
    assert f"{resends[0]}: same content as 健康码日报_20261105.csv" in message
    # Positions name file and physical line: data line n is file line n + 1, after the broken line too.
    assert con.execute("select _source_position from raw.health_codes_exports where file_name = "
                       "'健康码日报_20261103.csv' and record_no = '3'").fetchall() == [("健康码日报_20261103.csv line 4",)]

    again = sync(con, folder)
    assert (again.rows_in, again.rows_landed, again.message) == (0, 0, None)

    drop.deliver_until(village, 9)
    later = sync(con, folder)
    new = {"健康码日报_20261108.csv", "健康码日报_20261109.csv", "健康码日报_20261110.csv"}
    assert set(r[0] for r in con.execute("select distinct file_name from raw.health_codes_exports "
                                         "where _load_id = ?", [later.load_id]).fetchall()) == new
    for name in new:
        assert landed(con, name) == as_text(read_export(folder / name, skip_bad_lines=True))
    assert later.rows_quarantined == 1 and later.watermark_after == "2026-11-10"
    state = json.loads(con.execute("select state from meta.source_state").fetchall()[0][0])
    assert set(state["files"]) == set(names) | new and len(state["hashes"]) == len(names) - 1 + len(new)


# --- encodings, text, Excel serials -------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["gb18030", "gbk", "utf-8", "utf-8-sig"])
def test_each_encoding_reads_back_exactly(con, folder, encoding):
    rows = people(6)
    if encoding == "gb18030":  # a character outside GBK, which only GB18030 encodes
        rows = rows.set_column(1, "name", pa.array(["𠮷野家"] + rows["name"].to_pylist()[1:]))
    path = folder / export_name(DAY, "csv")
    write_export(path, rows, fmt="csv", encoding=encoding)
    assert helpers.detect_encoding(path.read_bytes()) == {"gbk": "gb18030"}.get(encoding, encoding)
    result = sync(con, folder)
    assert result.rows_landed == 6
    assert landed(con, path.name) == as_text(read_export(path))


def test_ids_and_phones_stay_text(con, folder):
    path = folder / export_name(DAY, "csv")
    write_export(path, people(3), fmt="csv")
    sync(con, folder)
    types = dict(con.execute("select column_name, data_type from information_schema.columns "
                             "where table_name = 'health_codes_exports'").fetchall())
    assert all(types[c] == "VARCHAR" for c in [*TEXT_COLUMNS, "export_date", "file_name"])
    got = con.execute("select id_number, phone, name, community from raw.health_codes_exports "
                      "order by record_no").fetchall()
    assert got == [("11010519491231002X", "+86 138 0013 8000", "阿依古丽·买买提", "幸福社区,东区"),
                   ("010101199001011234", "010-6512 3456", '王"小"明', "和平村"),
                   ("110101********1234", None, "李 娜", "光明社区")]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_excel_serials_become_beijing_local_text(con, folder, fmt):
    path = folder / export_name(DAY, fmt)
    write_export(path, people(3), fmt=fmt, excel_serial_columns=["赋码时间", "最近核酸采样时间"])
    raw = read_export(path)  # the reference sees serials and turns them into instants
    sync(con, folder)
    got = con.execute("select record_no, color_since, last_test_at from raw.health_codes_exports "
                      "order by record_no").fetchall()
    # 2026-11-01 00:30:00 UTC is 08:30:00 in Beijing; 2026-10-31 16:05:09 UTC is 2026-11-01 00:05:09.
    assert got == [("1", "2026-11-01 08:30:00", "2026-11-01 00:05:09"),
                   ("2", "2026-11-01 08:30:00", "2026-11-01 00:05:09"),
                   ("3", "2026-11-01 08:30:00", None)]
    assert landed(con, path.name) == as_text(raw)


def test_serial_conversion_rules():
    assert helpers.serial_to_text(46327.3541666667) == "2026-11-01 08:30:00"
    values = pa.chunked_array([["46327.3541666667", "2026-11-01 08:30:00", None, "46327", "9e99", "99999999"]])
    assert helpers.serials_to_text(values).to_pylist() == [
        "2026-11-01 08:30:00", "2026-11-01 08:30:00", None, "2026-11-01 00:00:00", "9e99", "99999999"]
    assert helpers.cell_text(46327.3541666667) == "46327.3541666667" and helpers.cell_text(3.0) == "3"
    assert helpers.cell_text(datetime(2026, 11, 1, 8, 29, 59, 999_990)) == "2026-11-01 08:30:00"


def test_xlsx_is_known_by_its_signature_not_its_extension(con, tmp_path, folder):
    excel = tmp_path / "excel.xlsx"
    write_export(excel, people(4), fmt="xlsx")
    path = folder / export_name(DAY, "csv")  # the Excel file saved under a .csv name
    path.write_bytes(excel.read_bytes())
    assert sync(con, folder).rows_landed == 4
    assert landed(con, path.name) == as_text(read_export(excel))


# --- completeness -------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_half_written_file_waits_for_the_rest(con, tmp_path, folder, fmt):
    whole = tmp_path / f"whole.{fmt}"
    write_export(whole, people(40), fmt=fmt)
    data = whole.read_bytes()
    path = folder / export_name(DAY, fmt)
    path.write_bytes(data[: len(data) // 2])
    first = sync(con, folder)
    assert first.rows_in == 0 and f"{path.name}: " in first.message and "left for the next sync" in first.message
    with path.open("ab") as out:
        out.write(data[len(data) // 2:])
    second = sync(con, folder)
    assert second.rows_landed == 40 and second.message is None
    assert landed(con, path.name) == as_text(read_export(path))


def test_an_old_csv_cut_inside_its_last_line_holds_that_line_back():
    # Every field is there but the last value is a character short: read as it is, it would land
    # a version of the record the platform never had (and the re-sent file another one).
    header = ",".join(settings.HEADERS).encode("gb18030")
    line = "{},张三,420102199001011234,13800000000,绿码,2026-11-01 08:00:00,3,2026-10-31 09:00:00,阴性,{}"
    data = b"\r\n".join([header, line.format(1, "幸福村").encode("gb18030"), line.format(2, "幸福").encode("gb18030")])
    export = helpers.read_export(export_name(DAY, "csv"), data, young=False)
    assert export.table.column("record_no").to_pylist() == ["1"]
    assert export.bad == [(3, line.format(2, "幸福"),
                           "the file ends inside this line (no final line break), so it may be cut off")]
    with pytest.raises(helpers.NotReady):  # a young one is still being written: waited for
        helpers.read_export(export_name(DAY, "csv"), data, young=True)
    whole = helpers.read_export(export_name(DAY, "csv"), data + "村\r\n".encode("gb18030"), young=False)
    assert whole.table.column("community").to_pylist() == ["幸福村", "幸福村"] and not whole.bad


def test_a_file_growing_between_looks_is_not_taken(tmp_path):
    path = tmp_path / export_name(DAY, "csv")
    write_export(path, people(3), fmt="csv")
    (tmp_path / f".{path.name}.part").write_bytes(b"partial")
    (tmp_path / "readme.txt").write_text("not an export")

    def upload_goes_on(_: float) -> None:
        with path.open("ab") as out:
            out.write(b"4,")

    found = helpers.scan(tmp_path, {}, 1.0, sleep=upload_goes_on)
    assert found.ready == [] and found.waiting[0].startswith(f"{path.name}: still being written")
    assert found.ignored == ["readme.txt"]


def test_empty_and_header_only_files_are_noted(con, folder):
    empty = folder / export_name(DAY, "csv")
    empty.write_bytes(b"")
    age(empty)
    header_only = folder / export_name(date(2026, 11, 2), "csv")
    header_only.write_bytes(",".join(h for h, _ in COLUMNS).encode("gb18030") + b"\r\n")
    result = sync(con, folder)
    assert (result.status, result.rows_in) == ("succeeded", 0)
    assert result.message == f"{empty.name}: empty file; no rows; {header_only.name}: header only; no rows"
    assert f"{header_only.name}: header only; no rows" in result.message


# --- damage and drift ---------------------------------------------------------------------------

def test_unbalanced_quote_and_short_lines_are_quarantined_by_line(con, folder):
    path = folder / export_name(DAY, "csv")
    write_export(path, people(6), fmt="csv", encoding="utf-8")
    lines = path.read_bytes().decode("utf-8").split("\r\n")
    lines[2] = '2,"王小明,010101199001011234'  # a quote that never closes: would swallow what follows
    lines.insert(5, "")  # a blank line is not a record
    path.write_bytes("\r\n".join(lines).encode("utf-8"))
    result = sync(con, folder)
    assert result.rows_landed == 5 and result.rows_quarantined == 1
    q = con.execute("select position, raw_record from meta.quarantine").fetchall()
    assert q == [(f"{path.name} line 3", '2,"王小明,010101199001011234')]
    positions = con.execute("select record_no, _source_position from raw.health_codes_exports "
                            "order by record_no::int").fetchall()
    assert [p for _, p in positions] == [f"{path.name} line {n}" for n in (2, 4, 5, 7, 8)]


def set_aside(con) -> list[tuple]:
    return con.execute("select file_name, reason, line, byte_offset, size, content_sha256, released_at is null "
                       "from meta.quarantined_files order by quarantined_at, file_name").fetchall()


def test_a_header_drift_sets_the_file_aside_and_the_rest_lands(con, folder):
    good = folder / export_name(DAY, "csv")
    write_export(good, people(3), fmt="csv")
    drifted = folder / export_name(date(2026, 11, 2), "csv")
    write_export(drifted, people(3), fmt="csv")
    data = drifted.read_bytes().replace("身份证号".encode("gb18030"), "身份证号码".encode("gb18030"), 1)
    drifted.write_bytes(data)
    result = sync(con, folder)
    assert (result.status, result.rows_landed, result.watermark_after) == ("succeeded", 3, "2026-11-01")
    [(name, reason, line, offset, size, sha, still_open)] = set_aside(con)
    assert (name, line, offset, size, still_open) == (drifted.name, 1, 0, len(data), True)
    assert f"{drifted.name} line 1: required header '身份证号' is missing" in reason and "--retry-file" in reason
    assert sha == hashlib.sha256(data).hexdigest()
    assert f"{drifted.name}: set aside" in result.message
    assert sync(con, folder).rows_in == 0  # unchanged: not read again, not set aside twice
    assert len(set_aside(con)) == 1
    write_export(drifted, people(3), fmt="csv")  # the platform re-exports it with the right header
    fixed = sync(con, folder)
    assert fixed.rows_landed == 3 and f"{drifted.name}: read this time; it had been set aside" in fixed.message
    assert set_aside(con)[0][-1] is False  # released


def test_an_old_file_that_does_not_decode_is_set_aside_naming_line_and_byte(con, folder):
    other = folder / export_name(date(2026, 11, 2), "csv")
    write_export(other, people(2), fmt="csv")
    path = folder / export_name(DAY, "csv")
    write_export(path, people(3), fmt="csv")
    data = path.read_bytes()[:-4] + b"\x81\r\n"  # a lone GB18030 lead byte on the last line
    path.write_bytes(data)
    # A fresh file with such bytes may still be arriving: it is waited for...
    waiting = sync(con, folder)
    assert "do not decode yet; left for the next sync" in waiting.message and waiting.rows_landed == 2
    age(path)  # ...an old one is set aside, naming file, line and byte; nothing of it lands
    result = sync(con, folder)
    assert result.status == "succeeded" and result.rows_in == 0
    [(name, reason, line, offset, _, _, _)] = set_aside(con)
    assert (name, line, offset) == (path.name, 4, len(data) - 3)
    assert re.search(f"{re.escape(path.name)} line 4: bytes 81 0d 0a at offset {offset} are not valid gb18030", reason)
    # Fixed in place, same size and mtime (as a careful copy would): only --retry-file looks again.
    stat = path.stat()
    path.write_bytes(data[:-3] + b"X\r\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sync(con, folder).rows_in == 0
    [retried] = health_codes.sync(con, connection(folder), retry_file=path.name)
    assert retried.rows_landed == 3 and "read again on request (--retry-file)" in retried.message
    assert con.execute("select count(*) from raw.health_codes_exports where file_name = ?", [path.name]
                       ).fetchall() == [(3,)]
    assert set_aside(con)[0][-1] is False
    with pytest.raises(ConfigurationError, match="no such file in the drop folder"):
        health_codes.sync(con, connection(folder), retry_file="健康码日报_20991231.csv")


def test_a_file_undecodable_deep_inside_lands_none_of_its_blocks(con, folder, monkeypatch):
    # Read in small blocks, the bad byte comes after blocks of the file were landed already:
    # they are taken back, and the other file of the drop lands in full.
    monkeypatch.setattr(settings, "READ_BLOCK_BYTES", 256)
    good = folder / export_name(date(2026, 11, 2), "csv")
    write_export(good, people(40), fmt="csv")
    path = folder / export_name(DAY, "csv")
    write_export(path, people(60), fmt="csv")
    data = path.read_bytes()
    lines = data.split(b"\r\n")
    lines[50] = lines[50] + b"\x81\xff"
    path.write_bytes(b"\r\n".join(lines))
    age(path)
    result = sync(con, folder)
    assert result.rows_landed == 40 and result.rows_quarantined == 0
    assert con.execute("select distinct file_name from raw.health_codes_exports").fetchall() == [(good.name,)]
    [(_, reason, line, _, _, _, _)] = set_aside(con)
    assert line == 51 and "line 51: bytes 81 ff" in reason


def test_a_mixed_file_read_in_blocks_decodes_every_line_as_a_whole_read_would(con, folder, monkeypatch):
    # GB18030 lines first, a UTF-8 line later: the blocks given out already are taken back and the
    # file is read again line by line, so the result equals reading it whole.
    path = folder / export_name(DAY, "csv")
    write_export(path, people(30), fmt="csv")
    utf8_line = "31,赵敏,420102199001011234,13800000000,绿码,2026-11-01 08:00:00,3,,,和平村\r\n".encode()
    path.write_bytes(path.read_bytes() + utf8_line)
    age(path)
    whole = helpers.read_export(path.name, path.read_bytes(), young=False)
    monkeypatch.setattr(settings, "READ_BLOCK_BYTES", 300)
    result = sync(con, folder)
    assert result.rows_landed == 31 == whole.table.num_rows
    assert landed(con, path.name) == sorted(
        [tuple(r[c] for c in TEXT_COLUMNS) for r in whole.table.to_pylist()], key=lambda r: int(r[0]))
    assert "mixed encodings" in result.message and "赵敏" in {r[1] for r in landed(con, path.name)}


def test_a_file_dated_in_the_future_is_set_aside_until_its_day(con, folder, monkeypatch):
    from connectors.common import freshness

    monkeypatch.setattr(freshness, "now", lambda: datetime(2026, 11, 1, 12, 0, tzinfo=UTC))  # 20:00 Beijing
    today = folder / export_name(DAY, "csv")
    write_export(today, people(2), fmt="csv")
    future = folder / export_name(date(2030, 12, 31), "csv")
    write_export(future, people(3), fmt="csv")
    result = sync(con, folder)
    assert (result.rows_landed, result.watermark_after) == (2, "2026-11-01")
    [(name, reason, _, _, _, _, _)] = set_aside(con)
    assert name == future.name and "dated 2030-12-31, later than today in Beijing (2026-11-01)" in reason
    assert sync(con, folder).rows_in == 0 and len(set_aside(con)) == 1  # not read again, not set aside twice
    monkeypatch.setattr(freshness, "now", lambda: datetime(2030, 12, 30, 16, 5, tzinfo=UTC))  # its day has come
    due = sync(con, folder)
    assert (due.rows_landed, due.watermark_after) == (3, "2030-12-31") and set_aside(con)[0][-1] is False


def test_an_empty_file_does_not_move_the_watermark(con, folder):
    write_export(folder / export_name(DAY, "csv"), people(2), fmt="csv")
    empty = folder / export_name(date(2026, 11, 3), "csv")
    empty.write_bytes(b"")
    age(empty)
    header_only = folder / export_name(date(2026, 11, 4), "csv")
    header_only.write_bytes(",".join(h for h, _ in COLUMNS).encode("gb18030") + b"\r\n")
    result = sync(con, folder)
    assert result.watermark_after == "2026-11-01"
    assert con.execute("select data_until_day from meta.source_freshness where source = 'health_codes'"
                       ).fetchall() == [(date(2026, 11, 1),)]


def test_a_byte_copy_under_a_new_date_lands_as_that_days_export(con, folder):
    day5 = folder / export_name(date(2026, 11, 5), "csv")
    write_export(day5, people(3), fmt="csv")
    sync(con, folder)
    day6 = folder / export_name(date(2026, 11, 6), "csv")
    shutil.copyfile(day5, day6)
    result = sync(con, folder)
    assert result.rows_landed == 3 and result.watermark_after == "2026-11-06"
    assert f"{day6.name}: the same bytes as {day5.name} (export of 2026-11-05); landed as the export of 2026-11-06" \
        in result.message
    assert con.execute("select export_date, count(*) from raw.health_codes_exports group by 1 order by 1"
                       ).fetchall() == [("2026-11-05", 3), ("2026-11-06", 3)]
    # A re-send of the same day with the same bytes is still skipped.
    resend = folder / export_name(date(2026, 11, 6), "csv", resend=True)
    shutil.copyfile(day5, resend)
    again = sync(con, folder)
    assert again.rows_in == 0 and f"{resend.name}: same content as {day6.name}" in again.message


def test_a_file_restored_to_earlier_bytes_is_read_again(con, folder):
    path = folder / export_name(DAY, "csv")
    write_export(path, people(3), fmt="csv")
    first = path.read_bytes()
    sync(con, folder)
    changed = people(3).set_column(4, "code_color", pa.array(["红码", "绿码", "绿码"]))
    write_export(path, changed, fmt="csv")
    assert sync(con, folder).rows_landed == 1
    path.write_bytes(first)  # back to the original bytes: A -> B -> A
    restored = sync(con, folder)
    assert restored.rows_in == 3 and "changed since it was loaded" in restored.message


def test_the_nightly_recheck_reads_only_what_changed(con, folder):
    paths = [folder / export_name(date(2026, 11, d), "csv") for d in (1, 2, 3)]
    for p in paths:
        write_export(p, people(4), fmt="csv")
    sync(con, folder)
    [quiet] = health_codes.recheck(con, connection(folder))
    # the first re-check knows no change times yet: it hashes every file once, reads none
    assert quiet.rows_in == 0 and "0 read" in quiet.message
    [none] = health_codes.recheck(con, connection(folder))
    assert ("3 file(s) unchanged by name, size, mtime and change time (not opened), 0 touched (hashed again, "
            "same content), 0 read, 0 bytes hashed or read") in none.message
    # A rewrite that restores size and mtime is caught by the change time, and only that file is read.
    stat = paths[1].stat()
    data = paths[1].read_bytes()
    paths[1].write_bytes(data.replace("绿码".encode("gb18030"), "黄码".encode("gb18030"), 1))
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert sync(con, folder).rows_in == 0  # the ordinary sync trusts size + mtime
    [one] = health_codes.recheck(con, connection(folder))
    assert one.rows_landed == 1 and f"0 touched (hashed again, same content), 1 read, {len(data):,} bytes" \
        in one.message
    paths[2].unlink()
    [gone] = health_codes.recheck(con, connection(folder))
    assert f"1 file(s) read before are no longer in the drop folder (their rows stay): {paths[2].name}" \
        in gone.message


@pytest.mark.parametrize("same_sync", [False, True])
def test_a_resend_in_another_format_lands_no_row_twice(con, folder, same_sync):
    rows = people(5)
    original = folder / export_name(DAY, "csv")
    write_export(original, rows, fmt="csv")
    if not same_sync:
        sync(con, folder)
    resend = folder / export_name(DAY, "xlsx", resend=True)
    ids = rows["id_number"].to_pylist()
    corrected = rows.set_column(2, "id_number", pa.array(ids[:4] + ["110101199001011230"]))
    write_export(resend, corrected, fmt="xlsx")
    result = sync(con, folder)
    assert result.rows_landed == (6 if same_sync else 1)  # the corrected row is the only new version
    assert f"{resend.name}: re-send of 2026-11-01; 4 row(s) identical to rows already delivered were skipped" \
        in result.message
    assert con.execute("select count(*) from raw.health_codes_exports where file_name = ?",
                       [resend.name]).fetchall() == [(1,)]


def test_a_changed_file_under_a_loaded_name_lands_only_changed_rows(con, folder):
    path = folder / export_name(DAY, "csv")
    write_export(path, people(5), fmt="csv")
    sync(con, folder)
    write_export(path, people(6), fmt="csv")  # the platform rewrote the day with one more row
    result = sync(con, folder)
    assert (result.rows_in, result.rows_landed, result.duplicates_skipped) == (6, 1, 5)
    assert f"{path.name}: changed since it was loaded" in result.message



def spy_landing_paths(monkeypatch) -> dict[str, int]:
    """Counts of landings inserted without the comparison ('all') and through it ('fresh')."""
    from connectors.common import landing

    calls = {"all": 0, "fresh": 0}
    for path, name in (("all", "_insert_all"), ("fresh", "_insert_fresh")):
        real = getattr(landing, name)

        def spy(*args, _real=real, _path=path, **kwargs):
            calls[_path] += 1
            return _real(*args, **kwargs)
        monkeypatch.setattr(landing, name, spy)
    return calls


def test_a_new_days_file_lands_without_comparison_yet_never_twice(con, folder, monkeypatch):
    # A day raw has no row of lands without the comparison with raw's current versions (the fast
    # path of bench/README.md's health-code memory section), in landings of a few rows. The same
    # bytes read again under the same name (--retry-file), and the file rewritten with one row
    # changed, go through the comparison: nothing lands twice, only the changed row lands.
    monkeypatch.setattr(settings, "READ_BLOCK_BYTES", 256)
    monkeypatch.setattr(settings, "LAND_ROWS", 4)
    path = folder / export_name(DAY, "csv")
    write_export(path, people(12), fmt="csv")
    calls = spy_landing_paths(monkeypatch)
    first = sync(con, folder)
    assert (first.rows_in, first.rows_landed) == (12, 12)
    assert calls["all"] > 1 and calls["fresh"] == 0
    fast = calls["all"]
    [again] = health_codes.sync(con, connection(folder), retry_file=path.name)
    assert (again.rows_in, again.rows_landed, again.duplicates_skipped) == (12, 0, 12)
    assert calls["all"] == fast and calls["fresh"] > 1  # the day is in raw now: compared
    table = people(12)
    table = table.set_column(table.column_names.index("vaccine_doses"), "vaccine_doses",
                             pa.array([3] * 11 + [4], pa.int32()))
    write_export(path, table, fmt="csv")
    changed = sync(con, folder)
    assert (changed.rows_in, changed.rows_landed, changed.duplicates_skipped) == (12, 1, 11)
    assert con.execute("select count(*), count(distinct (record_no, _record_hash)) from raw.health_codes_exports"
                       ).fetchall() == [(13, 13)]


def test_a_record_number_repeated_across_landings_of_a_new_day_lands_once(con, folder, monkeypatch):
    # A new day's file that repeats record numbers, in separate landings: identical repeats land
    # once, a corrected repeat lands as the key's newer version (as a whole read of the file would).
    monkeypatch.setattr(settings, "READ_BLOCK_BYTES", 256)
    monkeypatch.setattr(settings, "LAND_ROWS", 3)
    path = folder / export_name(DAY, "csv")
    write_export(path, people(6), fmt="csv")
    lines = path.read_bytes().split(b"\r\n")
    repeated = lines[1]                                    # record 1 again, the same
    corrected = lines[2].replace(b",3,", b",4,", 1)        # record 2 again, with another dose count
    path.write_bytes(b"\r\n".join([*lines[:-1], repeated, corrected, b""]))
    age(path)
    calls = spy_landing_paths(monkeypatch)
    result = sync(con, folder)
    assert (result.rows_in, result.rows_landed, result.duplicates_skipped) == (8, 7, 1)
    assert calls["all"] >= 1 and calls["fresh"] >= 1  # the landings with a repeat were compared
    assert con.execute("select record_no, count(*) from raw.health_codes_exports group by 1 having count(*) > 1"
                       ).fetchall() == [("2", 2)]


# --- the connection -----------------------------------------------------------------------------

def test_the_connection_is_an_airflow_file_uri(con, tmp_path):
    conn = parse_uri("health_codes", f"file://{tmp_path}")
    assert (conn.scheme, conn.host, conn.path) == ("file", None, str(tmp_path))
    assert helpers.drop_folder(conn) == tmp_path
    with pytest.raises(ConfigurationError, match="three slashes"):
        helpers.drop_folder(parse_uri("health_codes", "file://relative/drop"))
    with pytest.raises(SourceUnavailable, match="does not exist"):
        health_codes.sync(con, parse_uri("health_codes", f"file://{tmp_path}/missing"))
    assert con.execute("select status from meta.loads").fetchall() == [("failed",)]
    assert settings.EXPORTS.table == "raw.health_codes_exports"


def test_onenet_sync_retry_file_reads_a_fixed_file_again(tmp_path, folder, monkeypatch):
    from click.testing import CliRunner

    from onenet.cli import main

    monkeypatch.setenv("ONENET_WAREHOUSE", str(tmp_path / "cli.duckdb"))
    monkeypatch.setenv("AIRFLOW_CONN_ONENET_HEALTH_CODES", f"file://{folder}?stable_seconds=0&settle_seconds=0")
    path = folder / export_name(DAY, "csv")
    write_export(path, people(3), fmt="csv")
    good = path.read_bytes()
    bad = good.replace("绿码".encode("gb18030"), b"\x81\xff\x81\xff", 1)
    path.write_bytes(bad)
    first = CliRunner().invoke(main, ["sync", "health_codes"])
    assert first.exit_code == 0, first.output
    assert f"{path.name}: set aside" in first.output and "landed 0" in first.output
    stat = path.stat()
    path.write_bytes(good)  # fixed in place: same size, mtime put back
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    retried = CliRunner().invoke(main, ["sync", "health_codes", "--retry-file", path.name])
    assert retried.exit_code == 0, retried.output
    assert "landed 3" in retried.output and "read again on request (--retry-file)" in retried.output
    wrong = CliRunner().invoke(main, ["sync", "hotline", "--retry-file", path.name])
    assert wrong.exit_code == 2 and "applies to `onenet sync health_codes` only" in wrong.output
