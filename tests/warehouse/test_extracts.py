"""Daily community extracts on a merged two-community town: own rows only, masking per role, safe cells."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess

import openpyxl
import pytest

from warehouse import db
from warehouse.access import AccessDenied, Principal
from warehouse.extracts.community import ExtractError, communities, write_extract, write_extracts

DAY = dt.date(2026, 11, 20)
MASKED_ID = re.compile(r"^\d{6}\*+[\dX]{4}$")
MASKED_PHONE = re.compile(r"^\d{3}\*+\d{4}$")


@pytest.fixture
def con(town_warehouse):
    con = db.connect(town_warehouse)
    yield con
    con.close()


def _sheet(path, name):
    ws = openpyxl.load_workbook(path)[name]
    header_row = next(i for i, row in enumerate(ws.iter_rows(values_only=True), start=1) if row[0] and row[1])
    rows = list(ws.iter_rows(min_row=header_row, values_only=True))
    return rows[0], rows[1:]


def test_an_extract_holds_its_own_community_and_nothing_of_the_other(con, tmp_path):
    mine, other = communities(con)[:2]
    staff = Principal("wang", "community_staff", community=mine)
    path = write_extract(con, mine, DAY, staff, tmp_path).path
    _, tickets = _sheet(path, "热线工单")
    ids = {r[0] for r in tickets}
    owners = dict(con.execute("select ticket_id, community_name from core.ticket").fetchall())
    assert ids and all(owners[t] == mine for t in ids)
    expected = {r[0] for r in con.execute(
        "select ticket_id from core.ticket where community_name = ? and received_on = ?", [mine, DAY]).fetchall()}
    assert expected <= ids  # every new ticket of the day is there
    _, roster = _sheet(path, "重点人群")
    other_names = {r[0] for r in con.execute(
        "select name from mart.special_group_roster where community_name = ?", [other]).fetchall()}
    mine_names = {r[0] for r in con.execute(
        "select name from mart.special_group_roster where community_name = ?", [mine]).fetchall()}
    assert {r[0] for r in roster} == mine_names
    assert len(roster) == con.execute(
        "select count(*) from mart.special_group_roster where community_name = ?", [mine]).fetchone()[0]
    _, cases = _sheet(path, "城管案件")
    case_owner = dict(con.execute("select case_id, community_name from core.city_case").fetchall())
    assert all(case_owner[r[0]] == mine for r in cases)
    assert other_names - mine_names  # the other community has people this extract must not show


def test_masking_per_role(con, tmp_path):
    mine = communities(con)[0]
    staff = write_extract(con, mine, DAY, Principal("wang", "community_staff", community=mine), tmp_path).path
    analyst = write_extract(con, mine, DAY, Principal("li", "district_analyst"), tmp_path).path
    engineer = write_extract(con, mine, DAY, Principal("zhang", "data_engineer"), tmp_path).path
    assert len({staff, analyst, engineer}) == 3  # one folder per role
    _, s_roster = _sheet(staff, "重点人群")
    _, a_roster = _sheet(analyst, "重点人群")
    _, e_roster = _sheet(engineer, "重点人群")
    assert all(MASKED_ID.match(r[2]) for r in s_roster if r[2])
    assert all(r[3] is None or not MASKED_PHONE.match(r[3]) for r in s_roster)  # staff call their residents
    assert all(MASKED_PHONE.match(r[3]) for r in a_roster if r[3])
    assert any(r[2] and not MASKED_ID.match(r[2]) for r in e_roster)


def test_staff_cannot_read_another_community_and_reads_are_logged(con, tmp_path):
    mine, other = communities(con)[:2]
    staff = Principal("wang", "community_staff", community=mine)
    with pytest.raises(AccessDenied, match=other):
        write_extract(con, other, DAY, staff, tmp_path)
    with pytest.raises(ExtractError, match="no community"):
        write_extract(con, "不存在社区", DAY, Principal("zhang", "data_engineer"), tmp_path)
    result = write_extract(con, mine, DAY, staff, tmp_path)
    logged = con.execute("select user_name, role, community, action, target, row_count from meta.access_log").fetchall()
    assert logged == [("wang", "community_staff", mine, "extract", str(result.path),
                       sum(v for k, v in result.rows.items() if k != "今日概况"))]


def test_no_cell_starts_a_formula_from_source_text(con, tmp_path):
    mine = communities(con)[0]
    ticket = con.execute("select ticket_id from core.ticket where community_name = ? and received_on = ? limit 1",
                         [mine, DAY]).fetchone()[0]
    con.execute("update core.ticket set content = '=HYPERLINK(\"http://evil.example\",\"点我\")', "
                "caller_name = '@SUM(1+1)' where ticket_id = ?", [ticket])
    path = write_extract(con, mine, DAY, Principal("wang", "community_staff", community=mine), tmp_path).path
    wb = openpyxl.load_workbook(path)
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (ws.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str) and cell.value.startswith(("=", "+", "-", "@")):
                    assert cell.quotePrefix, (ws.title, cell.coordinate, cell.value)
    _, tickets = _sheet(path, "热线工单")
    hostile = next(r for r in tickets if r[0] == ticket)
    assert hostile[5].startswith("=HYPERLINK") and hostile[7] == "@SUM(1+1)"


def test_the_workbook_opens_in_libreoffice_with_the_expected_figures(con, tmp_path):
    mine = communities(con)[0]
    path = write_extract(con, mine, DAY, Principal("wang", "community_staff", community=mine), tmp_path).path
    soffice = shutil.which("soffice")
    assert soffice, "LibreOffice is missing: run `make system-deps`"
    subprocess.run([soffice, f"-env:UserInstallation=file://{tmp_path}/lo", "--headless", "--convert-to",
                    "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1",
                    "--outdir", str(tmp_path / "csv"), str(path)], check=True, capture_output=True, timeout=180)
    overview = next((tmp_path / "csv").glob("*今日概况*.csv")).read_text(encoding="utf-8")
    new_today = con.execute("select count(*) from core.ticket where community_name = ? and received_on = ?",
                            [mine, DAY]).fetchone()[0]
    residents = con.execute("select count(*) from core.person where community_name = ? and is_resident",
                            [mine]).fetchone()[0]
    assert f"今日新增热线工单,{new_today}," in overview
    assert f"常住人口（去重后）,{residents}," in overview
    tickets_csv = next((tmp_path / "csv").glob("*热线工单*.csv")).read_text(encoding="utf-8")
    assert tickets_csv.count("\n") - 1 == openpyxl.load_workbook(path)["热线工单"].max_row - 1


def _cells(path):
    """Every cell of every sheet: sheet name, coordinate, value, number format and quote prefix."""
    return [(ws.title, c.coordinate, c.value, c.number_format, c.quotePrefix)
            for ws in openpyxl.load_workbook(path).worksheets for row in ws.iter_rows() for c in row]


@pytest.mark.parametrize("role", ["district_analyst", "data_engineer"])
def test_all_communities_at_once_equal_each_written_alone(con, tmp_path, role):
    names = communities(con)
    who = Principal("li", role)
    together = write_extracts(con, names, DAY, who, tmp_path / "together")
    alone = [write_extract(con, name, DAY, who, tmp_path / "alone") for name in names]
    assert [r.community for r in together] == names
    for one, other in zip(together, alone, strict=True):
        assert one.rows == other.rows and one.path.parent.name == f"{DAY:%Y%m%d}"
        assert one.path.relative_to(tmp_path / "together") == other.path.relative_to(tmp_path / "alone")
        assert all(one.rows[s] for s in ("热线工单", "重点人群"))  # the comparison is not of empty sheets
        assert _cells(one.path) == _cells(other.path)
    logged = con.execute("select target, row_count from meta.access_log").fetchall()
    assert sorted(logged) == sorted((str(r.path), sum(v for k, v in r.rows.items() if k != "今日概况"))
                                    for r in together + alone)  # one row per workbook
