"""Report templates: filled from a hand-made snapshot and checked against a hand computation; loaded only
from the shipped or the administrators' folder; run on the reader's published snapshot, where the
warehouse's restricted schemas do not exist; their totals equal the warehouse's own."""

from __future__ import annotations

import datetime as dt
import textwrap

import duckdb
import openpyxl
import pytest

from onenet import pipeline
from warehouse.access import Principal
from warehouse.identity import os_user
from warehouse.reports import TemplateError, fill, load_template
from warehouse.reports.templates_engine import TEMPLATES


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("create schema mart")  # what a snapshot holds: published relations only
    con.execute("""create table mart.grid as select * from (values
        ('community', '幸福村', '大智街道', '江岸区'), ('community', '花桥社区', '大智街道', '江岸区'),
        ('community', '百步亭社区', '后湖街道', '江岸区'), ('street', '大智街道', '大智街道', '江岸区'),
        ('street', '后湖街道', '后湖街道', '江岸区')) t(grid_level, community_name, street_name, district_name)""")
    # Five tickets of 幸福村 on 11-03: 2 responded in time, 3 resolved, 2 rated of which 1 satisfied;
    # one 花桥社区 ticket that day; one 幸福村 ticket the day before (outside a daily report).
    con.execute("""create table mart.ticket as select * from (values
        ('幸福村', '大智街道', date '2026-11-03', true,  true,  true,  true),
        ('幸福村', '大智街道', date '2026-11-03', true,  true,  true,  false),
        ('幸福村', '大智街道', date '2026-11-03', false, true,  false, false),
        ('幸福村', '大智街道', date '2026-11-03', false, false, false, false),
        ('幸福村', '大智街道', date '2026-11-03', false, false, false, false),
        ('花桥社区', '大智街道', date '2026-11-03', true, true,  true,  true),
        ('幸福村', '大智街道', date '2026-11-02', true,  true,  true,  true))
        t(community, street, received_on, is_responded_in_time, is_resolved, is_rated, is_satisfied)""")
    return con


@pytest.fixture
def admin_dir(tmp_path, monkeypatch):
    """The administrators' template folder ($ONENET_TEMPLATES_DIR)."""
    folder = tmp_path / "templates"
    folder.mkdir()
    monkeypatch.setenv("ONENET_TEMPLATES_DIR", str(folder))
    return folder


def _template(folder, period="day", unit="community", extra="", source="mart.ticket", name="t", column="count(*)",
              date_column="received_on"):
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""
        [report]
        name = "{name}"
        title = "测试报表"
        department = "测试部门"
        unit = "{unit}"
        period = "{period}"
        source = "{source}"
        date_column = "{date_column}"
        {extra}

        [[columns]]
        header = "工单数"
        sql = "{column}"

        [[columns]]
        header = "响应率"
        sql = "avg(is_responded_in_time::int)"
        kind = "percent"

        [[columns]]
        header = "满意率"
        sql = "sum(is_satisfied::int) / nullif(sum(is_rated::int), 0)"
        kind = "percent"
        """), encoding="utf-8")
    return load_template(path)


def test_daily_report_per_community_equals_a_hand_computation(con, admin_dir):
    rows = fill(con, _template(admin_dir), dt.date(2026, 11, 3))
    assert rows == [("幸福村", "大智街道", 5, 0.4, 0.5), ("百步亭社区", "后湖街道", 0, None, None),
                    ("花桥社区", "大智街道", 1, 1.0, 1.0), ("合计", None, 6, 0.5, 2 / 3)]


def test_monthly_report_per_street_and_one_unit_only(con, admin_dir):
    t = _template(admin_dir, period="month", unit="street")
    assert fill(con, t, dt.date(2026, 11, 20)) == [
        ("后湖街道", "江岸区", 0, None, None), ("大智街道", "江岸区", 7, 4 / 7, 3 / 4), ("合计", None, 7, 4 / 7, 3 / 4)]
    assert fill(con, _template(admin_dir), dt.date(2026, 11, 3), only="花桥社区") == [
        ("花桥社区", "大智街道", 1, 1.0, 1.0), ("合计", None, 1, 1.0, 1.0)]


def test_bad_templates_name_the_field_to_fix(con, admin_dir):
    with pytest.raises(TemplateError, match="unit 'grid'"):
        _template(admin_dir, unit="grid")
    with pytest.raises(TemplateError, match="no template nosuch"):
        load_template("nosuch")
    broken = _template(admin_dir, extra='where = "no_such_column > 1"')
    with pytest.raises(TemplateError, match="cannot compute"):
        fill(con, broken, dt.date(2026, 11, 3))


def _write(folder, name="t", source="mart.ticket", date_column="received_on", column="count(*)"):
    """A template file `name`.toml in `folder` with one column, one row per community."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(f"""
        [report]
        name = "{name}"
        title = "测试报表"
        department = "测试部门"
        unit = "community"
        unit_column = "community_name"
        period = "day"
        source = "{source}"
        date_column = "{date_column}"

        [[columns]]
        header = "数"
        sql = "{column}"
        """), encoding="utf-8")
    return path


def test_templates_load_only_from_the_shipped_or_the_administrators_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("ONENET_TEMPLATES_DIR", raising=False)
    assert load_template("hotline_monthly").path == TEMPLATES / "hotline_monthly.toml"
    outside = _write(tmp_path / "elsewhere")
    with pytest.raises(TemplateError, match="templates load only from"):
        load_template(outside)
    with pytest.raises(TemplateError, match="templates load only from"):
        load_template(str(outside))
    with pytest.raises(TemplateError, match="no template t"):
        load_template("t")  # a name is looked up in the allowed folders only
    admin = tmp_path / "admin"
    _write(admin, name="ours")
    monkeypatch.setenv("ONENET_TEMPLATES_DIR", str(admin))
    assert load_template("ours").path == admin / "ours.toml" and load_template(admin / "ours.toml").name == "ours"
    for sneaky in (admin / ".." / "elsewhere" / "t.toml", f"{admin}/../elsewhere/t.toml",
                   TEMPLATES / ".." / ".." / ".." / "tests" / "data" / "x.toml"):
        with pytest.raises(TemplateError, match="templates load only from"):
            load_template(sneaky)
    (admin / "linked.toml").symlink_to(outside)  # a link out of the folder is the file it points to
    with pytest.raises(TemplateError, match="templates load only from"):
        load_template(admin / "linked.toml")
    with pytest.raises(TemplateError, match="templates load only from"):
        pipeline.report(outside, dt.date(2026, 11, 20), who=Principal(os_user(), "district_analyst"))


@pytest.mark.parametrize("role", ["district_analyst", "community_staff"])
def test_a_template_naming_a_restricted_schema_fails_on_the_snapshot(published_town, tmp_path, monkeypatch, role):
    town = published_town
    admin = tmp_path / "admin"
    admin.mkdir()
    monkeypatch.setenv("ONENET_TEMPLATES_DIR", str(admin))
    who = Principal(os_user(), role, community=town.communities()[0][1] if role == "community_staff" else None)
    day = dt.date(2026, 11, 20)
    # The same form over a published relation works: only the restricted name makes it fail.
    over_grid_daily = {"source": "mart.grid_daily", "date_column": "day_on"}
    _write(admin, name="control", **over_grid_daily)
    assert pipeline.report("control", day, who=who).rows >= 2
    probes = {"core_source": {"source": "core.person", "date_column": "updated_at"},
              "meta_source": {"source": "meta.quarantine", "date_column": "quarantined_at"},
              "raw_source": {"source": "raw.x", "date_column": "day_on"},
              **{f"{schema}_column": {**over_grid_daily, "column": f"(select count(*) from {table})"}
                 for schema, table in (("core", "core.person"), ("meta", "meta.quarantine"),
                                       ("raw", "raw.hotline__tickets"))}}
    for name, fields in probes.items():
        _write(admin, name=name, **fields)
        table = fields.get("column", fields["source"]).split(" from ")[-1].rstrip(")").split(".")[-1]
        with pytest.raises(TemplateError, match=f"cannot compute .*{table}.* does not exist"):
            pipeline.report(name, day, who=who)
    assert {p.name for p in town.exports.rglob("*.xlsx")} == {"control_2026-11-20"
                                                             + ("_" + who.community if who.community else "")
                                                             + ".xlsx"}


def _report_rows(path):
    ws = openpyxl.load_workbook(path).worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    header = next(i for i, r in enumerate(rows) if r[0] in ("社区", "街道"))
    return rows[header], rows[header + 1:]


def test_the_monthly_hotline_report_from_the_snapshot_equals_the_warehouse(published_town):
    town = published_town
    result = pipeline.report("hotline_monthly", dt.date(2026, 11, 20), who=Principal(os_user(), "district_analyst"))
    header, rows = _report_rows(result.path)
    assert header[:4] == ("街道", "所属区", "工单总量", "按时响应")
    figures = {r[0]: r[2:] for r in rows}
    expected = town.oracle("""
        select coalesce(street, '合计'), count(*), count(*) filter (where is_responded_in_time),
               count(*) filter (where is_resolved), count(*) filter (where is_rated)
        from core.ticket where received_on between date '2026-11-01' and date '2026-11-30'
        group by rollup (street)""")
    assert expected and all(n for _, n, *_ in expected)
    for street, orders, in_time, resolved, rated in expected:
        got = figures[street]
        assert (got[0], got[1], got[3], got[5]) == (orders, in_time, resolved, rated), street
        assert got[2] == pytest.approx(in_time / orders)
    assert rows[-1][0] == "合计" and result.rows == len(rows)


def test_a_community_staff_daily_report_is_their_row_and_the_warehouses_figures(published_town):
    town = published_town
    code, name = town.communities()[0]
    day = dt.date(2026, 11, 20)
    result = pipeline.report("epidemic_daily", day, who=Principal(os_user(), "community_staff", community=name))
    header, rows = _report_rows(result.path)
    assert header[:3] == ("社区", "所属街道", "常住人口")
    assert [r[0] for r in rows] == [name, "合计"]
    residents, new_tickets = town.oracle("select sum(residents), sum(new_tickets) from mart.grid_daily "
                                         "where community_code = ? and day_on = ?", [code, day])[0]
    assert residents and rows[0][2] == rows[1][2] == residents
    assert rows[0][header.index("新增热线工单")] == new_tickets


def test_a_staff_report_is_the_same_whether_they_are_bound_by_code_or_by_name(published_town):
    town = published_town
    code, name = town.communities()[0]
    day = dt.date(2026, 11, 20)
    by_name = pipeline.report("epidemic_daily", day, who=Principal(os_user(), "community_staff", community=name))
    by_code = pipeline.report("epidemic_daily", day, who=Principal(os_user(), "community_staff", community=code))
    assert _report_rows(by_code.path)[1] == _report_rows(by_name.path)[1]
