"""Daily community extracts on a merged two-community town, written from the published community
snapshots: own rows only, full phones and masked IDs, safe cells, private files, every workbook logged.
The warehouse is read only as the tests' oracle."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import shutil
import stat
import subprocess

import openpyxl
import pytest

from onenet import pipeline
from tests.warehouse.pdf_text import page_text_sizes
from warehouse import audit_log, db, models
from warehouse.access import AccessDenied, Principal
from warehouse.excel import write_workbook
from warehouse.extracts.community import build_sheets, extract_path, fetch, write_extracts
from warehouse.identity import os_user
from warehouse.publish import ID_SHAPED
from warehouse.publish.snapshot import SnapshotError, open_communities

DAY = dt.date(2026, 11, 20)
SHEETS = ["今日概况", "热线工单", "城管案件", "健康码变化", "重点人群", "数据待核"]
MASKED_ID = re.compile(r"^\d{6}\*+[\dX]{4}$")
MASKED_PHONE = re.compile(r"^\d{3}\*+\d{4}$")
FULL_ID = re.compile(ID_SHAPED)


def _staff(name: str) -> Principal:
    return Principal(os_user(), "community_staff", community=name)


def _engineer() -> Principal:
    return Principal(os_user(), "data_engineer")


def _sheet(path, name):
    ws = openpyxl.load_workbook(path)[name]
    header_row = next(i for i, row in enumerate(ws.iter_rows(values_only=True), start=1) if row[0] and row[1])
    rows = list(ws.iter_rows(min_row=header_row, values_only=True))
    return rows[0], rows[1:]


def _cells(path):
    """Every cell of every sheet: sheet name, coordinate, value, number format and quote prefix."""
    return [(ws.title, c.coordinate, c.value, c.number_format, c.quotePrefix)
            for ws in openpyxl.load_workbook(path).worksheets for row in ws.iter_rows() for c in row]


def _extracts(town) -> list:
    return [r for r in audit_log.tail(1000, town.log) if r["action"] == "extract"]


def test_an_extract_holds_its_own_community_and_nothing_of_the_other(published_town):
    town = published_town
    (mine_code, mine), (other_code, other) = town.communities()[:2]
    [result] = pipeline.extract(DAY, who=_staff(mine))
    path = result.path
    assert path == extract_path(town.exports, mine_code, mine, DAY)
    assert path == town.exports / "community" / mine_code / "extracts" / f"{DAY:%Y%m%d}" / f"{mine}_{DAY:%Y%m%d}.xlsx"
    assert openpyxl.load_workbook(path).sheetnames == SHEETS
    _, tickets = _sheet(path, "热线工单")
    ids = {r[0] for r in tickets}
    owners = dict(town.oracle("select ticket_id, community_code from core.ticket"))
    assert ids and all(owners[t] == mine_code for t in ids)
    expected = {r[0] for r in town.oracle(
        "select ticket_id from core.ticket where community_code = ? and received_on = ?", [mine_code, DAY])}
    assert expected and expected <= ids  # every new ticket of the day is there
    _, roster = _sheet(path, "重点人群")
    other_names = {r[0] for r in town.oracle(
        "select name from mart.special_group_roster where community_code = ?", [other_code])}
    mine_names = {r[0] for r in town.oracle(
        "select name from mart.special_group_roster where community_code = ?", [mine_code])}
    assert {r[0] for r in roster} == mine_names
    assert len(roster) == town.oracle(
        "select count(*) from mart.special_group_roster where community_code = ?", [mine_code])[0][0]
    _, cases = _sheet(path, "城管案件")
    case_owner = dict(town.oracle("select case_id, community_code from core.city_case"))
    assert all(case_owner[r[0]] == mine_code for r in cases)
    assert other_names - mine_names  # the other community has people this extract must not show
    assert not (town.exports / "community" / other_code).exists()
    # Private files in one folder per community: 0640, folders 0750.
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    for folder in (path.parent, path.parent.parent, town.exports / "community" / mine_code):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o750, folder


def test_staff_and_engineers_get_full_phones_and_masked_ids_analysts_get_nothing(published_town):
    town = published_town
    code, mine = town.communities()[0]
    staff = pipeline.extract(DAY, who=_staff(mine))[0].path
    staff_cells = _cells(staff)
    _, roster = _sheet(staff, "重点人群")
    assert roster and all(MASKED_ID.match(r[2]) for r in roster if r[2])
    assert any(r[2] for r in roster)
    # Staff call their residents: the freshest phone of any silo, in full.
    phones = dict(town.oracle("select name || '|' || grid_name, coalesce(latest_contact_phone, phone) "
                              "from mart.special_group_roster where community_code = ?", [code]))
    assert any(r[3] for r in roster) and all(r[3] is None or not MASKED_PHONE.match(r[3]) for r in roster)
    assert {r[3] for r in roster if r[3]} == {p for p in phones.values() if p}
    _, changes = _sheet(staff, "健康码变化")
    assert all(MASKED_ID.match(r[1]) for r in changes if r[1])
    # No full ID number anywhere in the workbook, and no birth date next to a masked ID.
    assert not [c for c in staff_cells if isinstance(c[2], str) and FULL_ID.search(c[2])]
    for sheet in SHEETS[1:]:
        assert not any("出生" in str(h) for h in _sheet(staff, sheet)[0]), sheet
    # An engineer writing the same community's extract gets the same workbook in the same place:
    # it comes from the community's snapshot, not from what the engineer could read.
    engineer = pipeline.extract(DAY, community=code, who=_engineer())[0].path
    assert engineer == staff and _cells(engineer) == staff_cells
    # Analysts do not get community extracts at all; the refusal is logged and nothing is written.
    shutil.rmtree(town.exports)
    with pytest.raises(AccessDenied, match="community staff"):
        pipeline.extract(DAY, who=Principal(os_user(), "district_analyst"))
    assert not town.exports.exists()
    denied = audit_log.tail(1, town.log)[0]
    assert (denied["action"], denied["role"], denied["outcome"], denied["output"]) == (
        "extract", "district_analyst", "denied", None)


def test_staff_read_only_their_community_and_every_workbook_is_logged(published_town):
    town = published_town
    (mine_code, mine), (other_code, other) = town.communities()[:2]
    # Naming another community does not widen what staff read: they get their own extract only.
    results = pipeline.extract(DAY, community=other, who=_staff(mine))
    assert [(r.community, r.path.parent.parent.parent.name) for r in results] == [(mine, mine_code)]
    assert not (town.exports / "community" / other_code).exists()
    with pytest.raises(SnapshotError, match="不存在社区"):
        pipeline.extract(DAY, community="不存在社区", who=_engineer())
    [logged] = _extracts(town)
    result = results[0]
    assert {k: logged[k] for k in ("os_user", "role", "community", "action", "target", "output", "rows",
                                   "full_values", "outcome")} == {
        "os_user": os_user(), "role": "community_staff", "community": mine, "action": "extract",
        "target": f"{mine} ({mine_code}) {DAY}", "output": str(result.path),
        "rows": sum(v for k, v in result.rows.items() if k != "今日概况"), "full_values": True,
        "outcome": "allowed"}
    assert audit_log.verify(town.log).ok


def test_no_cell_starts_a_formula_from_source_text(town):
    code, mine = town.communities()[0]
    ticket = town.oracle("select ticket_id from core.ticket where community_code = ? and received_on = ? limit 1",
                         [code, DAY])[0][0]
    con = db.connect(town.warehouse)
    try:
        con.execute("update core.ticket set content = '=HYPERLINK(\"http://evil.example\",\"点我\")', "
                    "caller_name = '@SUM(1+1)' where ticket_id = ?", [ticket])
    finally:
        con.close()
    town.publish()
    path = pipeline.extract(DAY, who=_staff(mine))[0].path
    wb = openpyxl.load_workbook(path)
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (ws.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str) and cell.value.startswith(("=", "+", "-", "@")):
                    assert cell.quotePrefix, (ws.title, cell.coordinate, cell.value)
    _, tickets = _sheet(path, "热线工单")
    hostile = next(r for r in tickets if r[0] == ticket)
    assert hostile[3].startswith("=HYPERLINK") and hostile[5] == "@SUM(1+1)"


def test_the_workbook_opens_in_libreoffice_with_the_warehouses_figures(published_town, tmp_path):
    town = published_town
    code, mine = town.communities()[0]
    path = pipeline.extract(DAY, who=_staff(mine))[0].path
    soffice = shutil.which("soffice")
    assert soffice, "LibreOffice is missing: run `make system-deps`"
    subprocess.run([soffice, f"-env:UserInstallation=file://{tmp_path}/lo", "--headless", "--convert-to",
                    "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1",
                    "--outdir", str(tmp_path / "csv"), str(path)], check=True, capture_output=True, timeout=180)
    overview = next((tmp_path / "csv").glob("*今日概况*.csv")).read_text(encoding="utf-8")
    new_today = town.oracle("select count(*) from core.ticket where community_code = ? and received_on = ?",
                            [code, DAY])[0][0]
    residents, special = town.oracle("select count(*) filter (where is_resident), "
                                     "count(*) filter (where is_resident and is_special_group) "
                                     "from core.person where community_code = ?", [code])[0]
    assert new_today and residents
    assert f"今日新增热线工单,{new_today}," in overview
    assert f"常住人口（去重后）,{residents}," in overview
    assert f"重点人群,{special}," in overview
    tickets_csv = next((tmp_path / "csv").glob("*热线工单*.csv")).read_text(encoding="utf-8")
    # cells of several lines (a deadline per line) are one quoted CSV field each
    assert len(list(csv.reader(io.StringIO(tickets_csv)))) == openpyxl.load_workbook(path)["热线工单"].max_row


def test_all_communities_at_once_equal_each_written_alone(published_town, monkeypatch, tmp_path):
    town = published_town
    communities = town.communities()
    assert len(communities) >= 2
    together = pipeline.extract(DAY, who=_engineer())
    monkeypatch.setenv("ONENET_EXPORTS", str(tmp_path / "alone"))
    alone = [pipeline.extract(DAY, community=code, who=_engineer())[0] for code, _ in communities]
    assert [r.community for r in together] == [name for _, name in communities]
    for one, other in zip(together, alone, strict=True):
        assert one.rows == other.rows and one.path.parent.name == f"{DAY:%Y%m%d}"
        assert one.path.relative_to(town.exports) == other.path.relative_to(tmp_path / "alone")
        assert all(one.rows[s] for s in ("热线工单", "重点人群"))  # the comparison is not of empty sheets
        assert _cells(one.path) == _cells(other.path)
    logged = [(r["output"], r["rows"]) for r in _extracts(town)]
    assert sorted(logged) == sorted((str(r.path), sum(v for k, v in r.rows.items() if k != "今日概况"))
                                    for r in together + alone)  # one record per workbook


def test_write_extracts_reads_only_the_snapshots_it_is_given(published_town, tmp_path):
    town = published_town
    (mine_code, mine), (other_code, _) = town.communities()[:2]
    with open_communities(town.published, [mine_code]) as con:
        # The connection holds the community's relations only: nothing of the warehouse exists there.
        with pytest.raises(Exception, match="core"):
            con.execute("select count(*) from core.person").fetchall()
        tickets = con.execute("select count(*), count(distinct community_code) from community.ticket").fetchone()
        [result] = write_extracts(con, [(mine_code, mine)], DAY, _staff(mine), tmp_path)
    assert tickets == (town.oracle("select count(*) from core.ticket where community_code = ?", [mine_code])[0][0], 1)
    assert result.path == extract_path(tmp_path, mine_code, mine, DAY) and result.rows["热线工单"] > 0
    assert not (tmp_path / "community" / other_code).exists()


def _to_pdf(paths, out, profile) -> None:
    soffice = shutil.which("soffice")
    assert soffice, "LibreOffice is missing: run `make system-deps`"
    subprocess.run([soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--convert-to", "pdf",
                    "--outdir", str(out), *map(str, paths)], check=True, capture_output=True, timeout=300)


def test_every_sheet_prints_on_a4_landscape_at_8_pt_or_more(published_town, tmp_path):
    """Printed by LibreOffice, every page of every sheet is A4 landscape and its smallest text is 8 pt
    or more (the sheet scaled to fit one page wide draws 11 pt text at 11 pt x its scale)."""
    town = published_town
    code, mine = town.communities()[0]
    path = pipeline.extract(DAY, who=_staff(mine))[0].path
    # Each sheet alone too, from the same rows, so a failure names the sheet that prints too small.
    with open_communities(town.published, [code]) as con:
        sheets = build_sheets(fetch(con, [code], DAY), code, mine)
    alone = []
    for i, sheet in enumerate(sheets):
        alone.append(tmp_path / "alone" / f"{i}.xlsx")
        write_workbook(alone[-1], [sheet])
    _to_pdf([path, *alone], tmp_path / "pdf", tmp_path / "lo")
    whole = (tmp_path / "pdf" / path.with_suffix(".pdf").name).read_bytes()
    assert re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)", whole) and all(
        (round(float(w)), round(float(h))) == (842, 595)
        for w, h in re.findall(rb"/MediaBox\s*\[\s*0 0 ([\d.]+) ([\d.]+)", whole))  # A4 landscape
    pages = page_text_sizes(whole)
    smallest = {}
    for i, sheet in enumerate(sheets):
        sheet_pages = page_text_sizes((tmp_path / "pdf" / f"{i}.pdf").read_bytes())
        assert sheet_pages and all(sheet_pages), sheet.name
        smallest[sheet.name] = min(min(p) for p in sheet_pages)
    assert len(pages) >= len(sheets) and all(pages)
    assert min(min(p) for p in pages) >= 8, f"printed text below 8 pt: {smallest}"
    assert all(size >= 8 for size in smallest.values()), f"printed text below 8 pt: {smallest}"


def test_dates_show_no_false_time_and_addresses_one_form(published_town):
    town = published_town
    code, mine = town.communities()[0]
    path = pipeline.extract(DAY, who=_staff(mine))[0].path
    wb = openpyxl.load_workbook(path)
    midnight = [(ws.title, c.coordinate, c.number_format) for ws in wb.worksheets for row in ws.iter_rows()
                for c in row if isinstance(c.value, dt.datetime) and c.value.time() == dt.time(0)]
    assert midnight, "no date-only value to check (the registry and health codes keep days)"
    assert all(fmt == "yyyy-mm-dd" for _, _, fmt in midnight), midnight[:5]
    # Every address is the standardised form (compound, 号楼, 单元, room), without the district prefix;
    # what was written is kept below it only where it reads differently.
    std = {r[0]: r[1] for r in town.oracle(
        "select ticket_id, split_part(address_key, '|', 1) || split_part(address_key, '|', 2) || '号楼' "
        "from core.ticket where community_code = ? and address_key is not null", [code])}
    header, tickets = _sheet(path, "热线工单")
    at = header.index("地址")
    checked = [(r[0], r[at]) for r in tickets if r[0] in std]
    assert checked and all(address.startswith(std[t]) for t, address in checked), checked[:5]
    assert not [a for _, a in checked if a.startswith("武汉市")]
    as_written = [a for _, a in checked if "\n（原：" in a]
    assert len(as_written) < len(checked)
    for sheet, column in (("城管案件", "地址"), ("健康码变化", "住址"), ("重点人群", "住址")):
        header, rows = _sheet(path, sheet)
        assert not [r for r in rows if r[header.index(column)] and r[header.index(column)].startswith("武汉市")], sheet


def test_data_checks_say_in_chinese_what_differs_and_show_only_the_difference(town):
    """数据待核: one row per fix, in Chinese, the two values masked so their difference shows, the fix
    touching the most residents first; computed from full values, only masked ones published."""
    code, mine = town.communities()[0]
    # Two residents of one household: the registry holds one family mobile for both, the health-code
    # platform another with its last three digits in another order (one fix, two residents).
    household, first, second = town.oracle(
        "select p.household_id, min(p.person_id), max(p.person_id) from core.person p "
        "join core.person_source s using (person_id) join staging.stg_person_records r using (record_uid) "
        "where p.community_code = ? and p.household_id is not null and r.source = 'health_codes.exports' "
        "group by 1 having count(distinct p.person_id) >= 2 order by 1 limit 1", [code])[0]
    con = db.connect(town.warehouse)
    try:
        for source, phone in (("grid_registry.residents", "13912345678"), ("health_codes.exports", "13912345867")):
            con.execute("update staging.stg_person_records set phone_std = ?, phone_kind = 'mobile' "
                        "where source = ? and record_uid in (select record_uid from core.person_source "
                        "where person_id in (?, ?))", [phone, source, first, second])
        # the comparison runs in the merge (core.data_issue_finding), as it would after these records came in
        with db.transaction(con):
            models.build_core(con)
    finally:
        con.close()
    town.publish()
    path = pipeline.extract(DAY, who=_staff(mine))[0].path
    header, rows = _sheet(path, "数据待核")
    assert header == ("问题", "涉及系统", "系统中的值", "对照值", "说明", "走访时核实", "涉及居民", "居民", "住址", "记录号")
    problem, silos, shown, other, _, action, residents, names, _, _ = rows[0]
    assert (problem, silos, shown, other, residents) == (
        "手机号与网格登记不一致", "健康码平台 ↔ 网格管理系统", "********867", "********678", 2)
    assert "手机号" in action and len(names.split("、")) == 2
    assert [r[6] for r in rows] == sorted((r[6] for r in rows), reverse=True)  # most residents first
    problems = {r[0] for r in rows}
    assert {"身份证号校验位错误", "姓名与网格登记不一致"} <= problems
    for problem, _, shown, other, detail, action, *_ in rows:
        assert not re.search(r"[A-Za-z_]", problem + detail + action), problem  # no codes left in English
        assert shown and shown.strip("*") != "", (problem, shown)
        # an ID's difference may lie in its hidden birth date: then the reason says so
        assert shown != other or (problem.startswith("身份证号") and detail), (problem, shown)
        for value in (shown, other or ""):
            assert not FULL_ID.search(value) and not re.search(r"1[3-9]\d{9}", value), (problem, value)
        if problem.startswith("身份证号") and "不一致" not in problem and "字符" not in problem:
            assert MASKED_ID.match(shown) and detail, (problem, shown)  # the masked form and the reason
        if problem.startswith("姓名"):
            assert "*" in shown and len(shown) == len(other) or "字数" in detail
    # What was published holds no full value: the comparison ran inside the pipeline.
    with open_communities(town.published, [code]) as con:
        columns = [r[0] for r in con.execute("select column_name from (describe community.data_issue)").fetchall()]
        assert not {"value_full", "other_full"} & set(columns)
        values = [v for row in con.execute("select * from community.data_issue").fetchall() for v in row
                  if isinstance(v, str)]
    assert values and not [v for v in values if FULL_ID.search(v) or re.search(r"1[3-9]\d{9}", v)]
