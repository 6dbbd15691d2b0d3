"""The bad-input corpus (tests/data/bad_input) through the real path: connector sync into a real
DuckDB warehouse, Great Expectations validation, the merge and a community extract read back.

Every input row ends up landed (or skipped as an exact duplicate) or quarantined with a reason
naming its file and line / page; a file or page that cannot be read at all fails its load with a
ConnectorError naming the source, the file or page and the fix, with nothing landed; nothing in
the data executes, neither as SQL in the warehouse nor as a formula in Excel.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import openpyxl
import pytest

import connectors.city_cases as city_cases
import connectors.health_codes as health_codes
import connectors.hotline as hotline
from connectors.common.config import parse_uri
from connectors.common.exceptions import ConnectorError, InvalidPage, SchemaDrift, SourceUnavailable
from connectors.common.http import HttpClient
from connectors.common.json_pages import JsonPages
from connectors.health_codes import helpers
from expectations import runner
from tests.connectors.fixtures_http import no_sleep
from tests.data.bad_input import make_corpus
from tests.warehouse.village import build_village, copy_warehouse
from warehouse import db
from warehouse.access import Principal
from warehouse.excel import FORMULA_STARTS
from warehouse.extracts.community import write_extracts
from warehouse.merge import merge
from warehouse.publish import new_version, publish
from warehouse.publish.snapshot import communities, community_code, open_communities

CORPUS = Path(make_corpus.__file__).resolve().parent
ACCEPTED = sorted((CORPUS / "health_codes" / "accepted").iterdir())
REFUSED = sorted((CORPUS / "health_codes" / "refused").iterdir())
COMMUNITY = make_corpus.COMMUNITY
DAY = dt.date(2026, 11, 2)  # the day the corpus tickets were received
RAW_TABLES = ("raw.health_codes_exports", "raw.hotline_tickets", "raw.city_cases_cases",
              "raw.grid_registry_residents", "meta.loads", "meta.quarantine")


# --- the pieces -----------------------------------------------------------------------------------

@contextmanager
def serving(folder: Path, scenario: str) -> Iterator[str]:
    """A tiny HTTP server on loopback serving `<scenario>.page_<n>.json` of `folder` byte for byte:
    page 1 without a cursor (or with one it did not issue), page n+1 for cursor 'c<n>'."""

    class Pages(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            cursor = (parse_qs(urlsplit(self.path).query).get("cursor") or [""])[0]
            page = int(cursor[1:]) + 1 if cursor[:1] == "c" and cursor[1:].isdigit() else 1
            body = (folder / f"{scenario}.page_{page}.json").read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base signature)
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def client(source: str, url: str) -> HttpClient:
    return HttpClient(source, url, max_retries=2, sleep=no_sleep, seed=1, timeout=5)


def drop_connection(folder: Path):
    # settle_seconds=0: the copied files are judged as they are, not waited for as uploads.
    return parse_uri("onenet_health_codes", f"file://{folder}?stable_seconds=0&settle_seconds=0")


def a_drop(tmp_path: Path, files: list[Path]) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    for f in files:
        shutil.copyfile(f, folder / f.name)
    return folder


def data_lines(path: Path) -> int:
    """Data records in a corpus file, counted independently of the connector."""
    data = path.read_bytes()
    if path.suffix == ".xlsx":
        ws = openpyxl.load_workbook(path, read_only=True).worksheets[0]
        return sum(1 for r in ws.iter_rows(min_row=2, values_only=True) if any(v is not None for v in r))
    return sum(1 for line in data.split(b"\n")[1:] if line.strip(b"\r"))


def tables_intact(con) -> None:
    for table in RAW_TABLES:
        con.execute(f"select count(*) from {table}").fetchall()  # raises if a table was dropped


@pytest.fixture(scope="module", autouse=True)
def corpus_clock() -> Iterator[None]:
    """The corpus's files are dated December 2026: read them as on the 31st, so none is in the future."""
    from connectors.common import freshness

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(freshness, "now", lambda: dt.datetime(2026, 12, 31, 12, 0, tzinfo=dt.UTC))
        yield


@pytest.fixture(scope="module")
def village(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small validated village (real silos, real sync and validation): the district the bad input lands in."""
    return build_village(tmp_path_factory.mktemp("village"), residents=300, days=3, to_day=2)


@pytest.fixture(scope="module")
def bad_night(village: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every accepted bad input synced, validated, merged and extracted on top of the village."""
    tmp = tmp_path_factory.mktemp("bad_night")
    warehouse = copy_warehouse(village[1], tmp / "warehouse.duckdb")
    con = db.connect(warehouse)
    out: dict[str, Any] = {"con": con}
    [out["health_codes"]] = health_codes.sync(con, drop_connection(a_drop(tmp, ACCEPTED)))
    conn_h = parse_uri("onenet_hotline", "http://:token@127.0.0.1:1")
    with serving(CORPUS / "hotline", "mixed") as url:
        [out["hotline"]] = hotline.sync(con, conn_h, client=client("hotline", url))
    conn_c = parse_uri("onenet_city_cases", "http://:key@127.0.0.1:1")
    with serving(CORPUS / "city_cases", "mixed") as url:
        [out["city_cases"]] = city_cases.sync(con, conn_c, client=client("city_cases", url))
    for source in ("health_codes", "hotline", "city_cases"):
        [out[f"validated {source}"]] = runner.validate(con, source, tmp / "gx")
    out["merge"] = merge(con)
    # The extract reads the community's published snapshot, as every reader does.
    publish(con, tmp / "published", new_version("bad-night"))
    code = community_code(tmp / "published", COMMUNITY)
    who = Principal("engineer", "data_engineer")
    with open_communities(tmp / "published", [code]) as snapshot:
        [extract] = write_extracts(snapshot, [(code, communities(tmp / "published")[code]["name"])], DAY, who,
                                   tmp / "exports")
    out["extract"] = extract.path
    yield out
    con.close()


# --- health-code files the connector reads --------------------------------------------------------

def test_every_line_of_every_accepted_file_is_landed_skipped_or_quarantined(bad_night) -> None:
    con, result = bad_night["con"], bad_night["health_codes"]
    assert result.status == "succeeded"
    load = result.load_id
    total = 0
    for path in ACCEPTED:
        lines = data_lines(path)
        total += lines
        landed = con.execute("select count(*) from raw.health_codes_exports where _load_id = ? and file_name = ?",
                             [load, path.name]).fetchall()[0][0]
        held = con.execute("select raw_record, reasons from meta.quarantine where load_id = ? and stage = 'extract' "
                           "and position like ?", [load, f"{path.name} line %"]).fetchall()
        duplicates = lines - landed - len(held)
        assert duplicates == (1 if path.name.endswith("20261210.csv") else 0), path.name
        for _, reasons in held:
            message = json.loads(reasons)[0]["message"]
            assert message.startswith(f"{path.name} line ") and "re-send" in message
    assert (result.rows_in, result.rows_landed + result.duplicates_skipped + result.rows_quarantined) == (total, total)


def test_broken_lines_are_quarantined_with_file_line_and_reason(bad_night) -> None:
    con, load = bad_night["con"], bad_night["health_codes"].load_id
    held = dict(con.execute("select position, reasons from meta.quarantine where load_id = ? and stage = 'extract'",
                            [load]).fetchall())
    assert set(held) == {"健康码日报_20261210.csv line 3", "健康码日报_20261210.csv line 4",
                         "健康码日报_20261210.csv line 6", "健康码日报_20261211.xlsx line 8"}
    assert "3 fields, expected 10" in held["健康码日报_20261210.csv line 3"]
    assert "11 fields, expected 10" in held["健康码日报_20261210.csv line 6"]
    assert "values beyond the 10 headed columns" in held["健康码日报_20261211.xlsx line 8"]


def test_mixed_encodings_are_read_line_by_line(bad_night) -> None:
    con, result = bad_night["con"], bad_night["health_codes"]
    names = [r[0] for r in con.execute("select name from raw.health_codes_exports where file_name = "
                                       "'健康码日报_20261201.csv' order by record_no::int").fetchall()]
    assert names == ["测试1", "李娜", "张伟", "刘洋"]
    assert "健康码日报_20261201.csv: mixed encodings — UTF-8 with line(s) in GB18030 read as GB18030: 4, 5" \
        in result.message
    assert "健康码日报_20261202.csv: empty file; no rows" in result.message
    assert "健康码日报_20261203.csv: header only; no rows" in result.message


def test_text_arrives_verbatim_and_nothing_executes(bad_night) -> None:
    con = bad_night["con"]
    tables_intact(con)
    names = {r[0] for r in con.execute("select name from raw.health_codes_exports").fetchall()}
    assert set(make_corpus.SQL_INJECTION) <= names
    assert set(make_corpus.FORMULAS) <= names
    assert {"王\x00伟", "李\x07\x08娜\x1b[31m", "钱\r多多", "\u8d75\u200b\u654f\u202e"} <= names
    assert "张" * 524_288 in names  # the 1 MiB name, whole
    # The injection strings went through every layer: staged or quarantined, never run.
    assert con.execute("select count(*) from raw.grid_registry_residents").fetchall()[0][0] > 0
    content = {r[0] for r in con.execute("select content from raw.hotline_tickets").fetchall()}
    assert make_corpus.SQL_INJECTION[0] in content and "长" * 100_000 in content


def test_impossible_dates_and_letter_ids_are_quarantined_or_flagged_in_validation(bad_night) -> None:
    con, load = bad_night["con"], bad_night["health_codes"].load_id
    validated = bad_night["validated health_codes"]
    assert validated.rows_in == validated.rows_passed + validated.rows_quarantined
    # Every landed row is staged or quarantined by validation, with the file and line.
    landed = {r[0] for r in con.execute("select _source_position from raw.health_codes_exports where _load_id = ?",
                                        [load]).fetchall()}
    staged = {r[0] for r in con.execute("select _source_position from staging.health_codes_exports "
                                        "where _load_id = ?", [load]).fetchall()}
    held = dict(con.execute("select position, reasons from meta.quarantine where load_id = ? and stage = 'validate'",
                            [load]).fetchall())
    assert landed == staged | set(held) and not staged & set(held)
    # Impossible dates would fail staging's cast and with it every merge: quarantined, naming the rule.
    unreal = "expect_column_values_to_cast_to(color_since)"
    for line in (2, 3, 4, 6, 9):  # 0000-00-00, 2026-02-30, 2026年2月30日, 99999999 (past Excel's end), -1
        position = f"健康码日报_20261208.csv line {line}"
        assert unreal in held.get(position, ""), (position, held.get(position))
    assert unreal in held["健康码日报_20261211.xlsx line 4"]  # 2026-02-30 in an XLSX
    assert "expect_column_values_to_cast_to(record_no)" in held["健康码日报_20261208.csv line 10"]
    # Excel serials within Excel's calendar are real dates (99999 = 2173-10-13, 0 = 1899-12-30): staged;
    # an impossible test time (2026-13-45) is not required: staged, read as unknown.
    serials = dict(con.execute("select _source_position, color_since from staging.health_codes_exports "
                               "where file_name like '%20261208%' or file_name like '%.xlsx'").fetchall())
    assert serials["健康码日报_20261208.csv line 5"] == "2173-10-13 00:00:00"
    assert serials["健康码日报_20261208.csv line 8"] == "1899-12-30 00:00:00"
    assert serials["健康码日报_20261211.xlsx line 7"] == "2173-10-13 00:00:00"
    assert "健康码日报_20261208.csv line 7" in staged
    # A missing ID is critical; an ID with letters is kept (a warning) for the data-issues sheet.
    assert "expect_column_values_to_not_be_null(id_number)" in held["健康码日报_20261209.csv line 5"]
    assert "健康码日报_20261209.csv line 2" in staged and "健康码日报_20261209.csv line 3" in staged


# --- health-code files the connector refuses ------------------------------------------------------

@pytest.mark.parametrize("path", REFUSED, ids=[p.name for p in REFUSED])
def test_an_unreadable_file_is_set_aside_whole_and_the_load_succeeds(path: Path, tmp_path: Path) -> None:
    con = db.connect(tmp_path / "w.duckdb")
    try:
        [result] = health_codes.sync(con, drop_connection(a_drop(tmp_path, [path])))
        assert (result.status, result.rows_in, result.rows_landed) == ("succeeded", 0, 0)
        [(name, sha, size, reason)] = con.execute(
            "select file_name, content_sha256, size, reason from meta.quarantined_files").fetchall()
        assert (name, size) == (path.name, path.stat().st_size) and len(sha) == 64
        assert reason.startswith(f"health_codes: {path.name}") and "--retry-file" in reason, reason
        assert any(fix in reason for fix in ("re-export", "re-send", "ask for the file again")), reason
        assert f"{path.name}: set aside — " in result.message
        assert con.execute("select count(*) from information_schema.tables where table_schema = 'raw'"
                           ).fetchall() == [(0,)]
    finally:
        con.close()


def test_the_refusals_say_what_is_wrong() -> None:
    def reason(name: str) -> str:
        path = CORPUS / "health_codes" / "refused" / name
        with pytest.raises(ConnectorError) as failure:
            helpers.read_export(name, path.read_bytes(), young=False)
        return str(failure.value)

    assert "required header '序号' is missing" in reason("健康码日报_20261221.csv")  # Big5 reads as other text
    assert "looks like UTF-16" in reason("健康码日报_20261222.csv")
    assert "looks like UTF-16" in reason("健康码日报_20261223.csv")
    assert "['name'] appear twice" in reason("健康码日报_20261224.csv")
    assert "required header '身份证号' is missing" in reason("健康码日报_20261225.csv")
    assert "not a valid zip" in reason("健康码日报_20261226.xlsx")
    assert "line 4: bytes 81 ff 80" in reason("健康码日报_20261227.csv")


def test_a_refused_file_does_not_hold_back_the_rest_of_the_drop(village, tmp_path: Path) -> None:
    # The bad file is set aside; the good one lands in the same sync.
    con = db.connect(copy_warehouse(village[1], tmp_path / "w.duckdb"))
    try:
        folder = a_drop(tmp_path, [ACCEPTED[0], REFUSED[0]])
        [result] = health_codes.sync(con, drop_connection(folder))
        assert result.status == "succeeded" and result.rows_landed == data_lines(ACCEPTED[0])
        assert con.execute("select file_name from meta.quarantined_files").fetchall() == [(REFUSED[0].name,)]
    finally:
        con.close()


# --- JSON pages ------------------------------------------------------------------------------------

def test_every_hotline_record_is_landed_or_quarantined_naming_its_page(bad_night) -> None:
    con, result = bad_night["con"], bad_night["hotline"]
    records = sum(len(json.loads((CORPUS / "hotline" / f"mixed.page_{n}.json").read_bytes())["data"]) for n in (1, 2))
    assert result.status == "succeeded"
    assert (result.rows_in, result.rows_landed + result.duplicates_skipped + result.rows_quarantined) == (
        records, records)
    held = dict(con.execute("select position, reasons from meta.quarantine where load_id = ? and stage = 'extract'",
                            [result.load_id]).fetchall())
    assert set(held) == {"page 2 (cursor …c1) record 3", "page 2 (cursor …c1) record 4",
                         "page 2 (cursor …c1) record 5"}
    assert "no ticket_id" in held["page 2 (cursor …c1) record 3"]
    assert "not an ISO-8601 time" in held["page 2 (cursor …c1) record 4"]
    assert "not a JSON object" in held["page 2 (cursor …c1) record 5"]
    # A number delivered as an object lands as its JSON text, with a note.
    urgency = con.execute("select urgency from raw.hotline_tickets where ticket_id = 'GD2026122000006'").fetchall()
    assert urgency == [('{"value": 1}',)]
    validated = bad_night["validated hotline"]
    assert validated.rows_in == validated.rows_passed + validated.rows_quarantined
    # Values that landed but cannot be used are quarantined by validation, naming the page and rule.
    checked = dict(con.execute("select json_extract_string(raw_record, '$.ticket_id'), position || ' ' || reasons "
                               "from meta.quarantine where load_id = ? and stage = 'validate'",
                               [result.load_id]).fetchall())
    status = con.execute("select _source_position, status from raw.hotline_tickets where ticket_id = 'GD2026122000012'"
                         ).fetchall()
    assert status == [("page 2 (cursor …c1)", '{"code": 1}')]
    assert checked["GD2026122000012"].startswith("page 2 (cursor …c1) ")
    assert "expect_column_values_to_be_in_set(status)" in checked["GD2026122000012"]
    assert "expect_column_values_to_cast_to(received_at)" in checked["GD2026122000007"]  # 0000-00-00


def test_every_city_case_is_landed_or_quarantined(bad_night) -> None:
    con, result = bad_night["con"], bad_night["city_cases"]
    records = len(json.loads((CORPUS / "city_cases" / "mixed.page_1.json").read_bytes())["cases"])
    assert result.status == "succeeded"
    assert result.rows_in == records == result.rows_landed + result.duplicates_skipped + result.rows_quarantined
    held = dict(con.execute("select position, reasons from meta.quarantine where load_id = ? and stage = 'extract'",
                            [result.load_id]).fetchall())
    assert set(held) == {"page 1 (cursor …) record 1", "page 1 (cursor …) record 5"} or len(held) == 2, held
    reasons = " ".join(held.values())
    assert 'lon {\\"value\\": 114.3} is not a number (documented as double)' in reasons or \
        "is not a number (documented as double)" in reasons
    assert "no case_id" in reasons
    # A number delivered as text lands in the numeric column; the 100k description whole.
    assert con.execute("select lat from raw.city_cases_cases where case_id = 'AJ202612200001'").fetchall() == []
    assert con.execute("select length(description) from raw.city_cases_cases where case_id = 'AJ202612200002'"
                       ).fetchall() == [(100_000,)]
    validated = bad_night["validated city_cases"]
    assert validated.rows_in == validated.rows_passed + validated.rows_quarantined


@pytest.mark.parametrize(("source", "scenario", "error", "words"), [
    ("hotline", "malformed", InvalidPage, "invalid or truncated JSON"),
    ("city_cases", "malformed", InvalidPage, "invalid or truncated JSON"),
    ("hotline", "not_object", InvalidPage, "the body is JSON but not an object"),
    ("hotline", "not_a_page", InvalidPage, "is not a ticket page"),
    ("hotline", "required_retyped", SchemaDrift, "required column 'status' of tickets arrived as int64"),
])
def test_an_unreadable_page_fails_the_load_naming_it(source: str, scenario: str, error: type, words: str,
                                                     tmp_path: Path) -> None:
    con = db.connect(tmp_path / "w.duckdb")
    module = {"hotline": hotline, "city_cases": city_cases}[source]
    try:
        with serving(CORPUS / source, scenario) as url, pytest.raises(error) as failure:
            module.sync(con, parse_uri(f"onenet_{source}", "http://:x@127.0.0.1:1"), client=client(source, url))
        message = str(failure.value)
        assert message.startswith(f"{source}: ") and "page 1" in message and words in message
        assert any(fix in message for fix in ("re-run", "fix the source", "check the hotline's documentation"))
        assert con.execute("select status, message from meta.loads").fetchall() == [("failed", message)]
        assert con.execute("select count(*) from information_schema.tables where table_schema = 'raw'"
                           ).fetchall() == [(0,)]
    finally:
        con.close()


def test_a_source_that_never_answers_is_a_clear_failure(tmp_path: Path) -> None:
    con = db.connect(tmp_path / "w.duckdb")
    try:
        with pytest.raises(SourceUnavailable, match=r"^hotline: .* failed at page 1 .*re-run later"):
            hotline.sync(con, parse_uri("onenet_hotline", "http://:x@127.0.0.1:9"),
                         client=client("hotline", "http://127.0.0.1:9"))
    finally:
        con.close()


# --- merge and the extract --------------------------------------------------------------------------

def test_the_merge_takes_the_bad_night(bad_night) -> None:
    summary = bad_night["merge"]
    assert summary.records_per_source.get("health_codes.exports", 0) > 0
    assert summary.records_per_source.get("hotline.tickets", 0) > 0
    tables_intact(bad_night["con"])


def test_formula_strings_are_neutralised_in_the_extract(bad_night) -> None:
    book = openpyxl.load_workbook(bad_night["extract"])
    shown: set[str] = set()
    for ws in book.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (ws.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str) and cell.value.startswith(FORMULA_STARTS):
                    assert cell.data_type == "s" and cell.quotePrefix, (ws.title, cell.coordinate, cell.value)
                    shown.add(cell.value)
    # The corpus tickets' formula strings reached the 热线工单 sheet, as text.
    # (Names arrive standardised, without spaces: "+cmd|'/Ccalc'!A0".)
    for start in ("=HYPERLINK(", "+cmd|'", "-1+1", "@SUM(", "=1+2"):
        assert any(v.startswith(start) for v in shown), (start, shown)
    tickets = book["热线工单"]
    header = next(r for r in tickets.iter_rows(values_only=True) if "诉求内容" in r)
    column = header.index("诉求内容") + 1
    contents = [c.value for c in next(tickets.iter_cols(min_col=column, max_col=column))]
    assert any(isinstance(v, str) and v.startswith("长" * 100) and v.endswith("（内容过长已截断）") for v in contents)
    assert make_corpus.SQL_INJECTION[0] in contents


# --- the fixes, one by one ------------------------------------------------------------------------

def test_a_mixed_encoding_file_decodes_line_by_line_and_a_broken_line_still_names_itself() -> None:
    mixed = "序号,姓名\n1,张伟\n".encode() + "2,李娜\n".encode("gb18030")
    notes: list[str] = []
    assert helpers.to_utf8("f.csv", mixed, notes=notes).decode() == "序号,姓名\n1,张伟\n2,李娜\n"
    assert notes == ["f.csv: mixed encodings — UTF-8 with line(s) in GB18030 read as GB18030: 3"]
    with pytest.raises(ConnectorError, match=r"^health_codes: f.csv line 4: bytes 81 ff 0a at offset \d+ are not valid"):
        helpers.to_utf8("f.csv", mixed + b"3,\x81\xff\n")


def test_a_number_that_is_no_number_holds_back_its_record_not_the_load() -> None:
    from connectors.city_cases import settings as city

    pages = JsonPages(city.CASES, city.CASE_FIELDS)
    pages.add([make_corpus.case(1, lon={"value": 1}), make_corpus.case(2, lat="30.6"),
               make_corpus.case(3, lon="east"), make_corpus.case(4, lon=True)], "page 1 (start)")
    assert [(p, r) for p, _, r in pages.held] == [
        ("page 1 (start) record 1", 'lon {"value": 1} is not a number (documented as double)'),
        ("page 1 (start) record 3", 'lon "east" is not a number (documented as double)'),
        ("page 1 (start) record 4", "lon true is not a number (documented as double)")]
    assert sum(t.num_rows for _, t in pages.pages) == 1


def test_a_name_too_long_to_be_a_name_is_not_standardised() -> None:
    from warehouse.standardise import names

    assert names.standardise_name("张" * 1_000) is None
    assert names.standardise_name("阿依古丽•买买提") == "阿依古丽·买买提"
