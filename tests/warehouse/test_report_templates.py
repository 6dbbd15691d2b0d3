"""Report templates filled from a hand-made warehouse and checked against a hand computation."""

from __future__ import annotations

import datetime as dt
import textwrap

import duckdb
import pytest

from warehouse.reports import TemplateError, fill, load_template


@pytest.fixture
def con():
    con = duckdb.connect()
    con.execute("create schema core; create schema mart")
    con.execute("""create table core.grid as select * from (values
        ('community', '幸福村', '大智街道', '江岸区'), ('community', '花桥社区', '大智街道', '江岸区'),
        ('community', '百步亭社区', '后湖街道', '江岸区'), ('street', '大智街道', '大智街道', '江岸区'),
        ('street', '后湖街道', '后湖街道', '江岸区')) t(grid_level, community_name, street_name, district_name)""")
    # Five tickets of 幸福村 on 11-03: 2 responded in time, 3 resolved, 2 rated of which 1 satisfied;
    # one 花桥社区 ticket that day; one 幸福村 ticket the day before (outside a daily report).
    con.execute("""create table core.ticket as select * from (values
        ('幸福村', '大智街道', date '2026-11-03', true,  true,  true,  true),
        ('幸福村', '大智街道', date '2026-11-03', true,  true,  true,  false),
        ('幸福村', '大智街道', date '2026-11-03', false, true,  false, false),
        ('幸福村', '大智街道', date '2026-11-03', false, false, false, false),
        ('幸福村', '大智街道', date '2026-11-03', false, false, false, false),
        ('花桥社区', '大智街道', date '2026-11-03', true, true,  true,  true),
        ('幸福村', '大智街道', date '2026-11-02', true,  true,  true,  true))
        t(community, street, received_on, is_responded_in_time, is_resolved, is_rated, is_satisfied)""")
    return con


def _template(tmp_path, period="day", unit="community", extra=""):
    path = tmp_path / "t.toml"
    path.write_text(textwrap.dedent(f"""
        [report]
        name = "t"
        title = "测试报表"
        department = "测试部门"
        unit = "{unit}"
        period = "{period}"
        source = "core.ticket"
        date_column = "received_on"
        {extra}

        [[columns]]
        header = "工单数"
        sql = "count(*)"

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


def test_daily_report_per_community_equals_a_hand_computation(con, tmp_path):
    rows = fill(con, _template(tmp_path), dt.date(2026, 11, 3))
    assert rows == [("幸福村", "大智街道", 5, 0.4, 0.5), ("百步亭社区", "后湖街道", 0, None, None),
                    ("花桥社区", "大智街道", 1, 1.0, 1.0), ("合计", None, 6, 0.5, 2 / 3)]


def test_monthly_report_per_street_and_one_unit_only(con, tmp_path):
    t = _template(tmp_path, period="month", unit="street")
    assert fill(con, t, dt.date(2026, 11, 20)) == [
        ("后湖街道", "江岸区", 0, None, None), ("大智街道", "江岸区", 7, 4 / 7, 3 / 4), ("合计", None, 7, 4 / 7, 3 / 4)]
    assert fill(con, _template(tmp_path), dt.date(2026, 11, 3), only="花桥社区") == [
        ("花桥社区", "大智街道", 1, 1.0, 1.0), ("合计", None, 1, 1.0, 1.0)]


def test_bad_templates_name_the_field_to_fix(con, tmp_path):
    with pytest.raises(TemplateError, match="unit 'grid'"):
        _template(tmp_path, unit="grid")
    with pytest.raises(TemplateError, match="no template nosuch"):
        load_template("nosuch")
    broken = _template(tmp_path, extra='where = "no_such_column > 1"')
    with pytest.raises(TemplateError, match="cannot compute"):
        fill(con, broken, dt.date(2026, 11, 3))
