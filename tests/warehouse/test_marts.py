"""Mart figures on the hand-made district, each checked against a count done by hand (core_fixture.py)."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from tests.warehouse.core_fixture import M1, M2, M3, build_contract_fixture
from warehouse.models import build_core, build_marts


def _build(surge: bool = False) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    build_contract_fixture(con, surge=surge)
    build_core(con)
    build_marts(con)
    return con


@pytest.fixture
def con():
    con = _build()
    yield con
    con.close()


def _rates(con, level: str, **keys) -> tuple:
    where = " and ".join([f"{k} = ?" for k in keys] + ["level = ?"])
    return con.execute(
        "select orders, responded_in_time, resolved, rated, satisfied, response_rate, resolution_rate, "
        f"satisfaction_rate from mart.hotline_rates where {where}", [*keys.values(), level]).fetchone()


def test_hotline_rates_by_hand(con):
    # 6 orders; first contact in time: GD01 GD03 GD05 GD06; resolved: GD01 GD02 GD05 GD06;
    # rated 4 (满意, 基本满意, 不满意, 满意) of which satisfied 3
    assert _rates(con, "district", received_month="2026-11") == (6, 4, 4, 4, 3, 4 / 6, 4 / 6, 3 / 4)
    assert _rates(con, "street", street="大智街道") == (6, 4, 4, 4, 3, 4 / 6, 4 / 6, 3 / 4)
    # 环境卫生: GD01 (in time, resolved, 满意), GD02 (late, resolved, 基本满意), GD04 (nothing)
    assert _rates(con, "category", category="环境卫生") == (3, 1, 2, 2, 2, 1 / 3, 2 / 3, 1.0)
    # 区交通运输局: GD03 (in time, open, unrated), GD06 (in time, resolved, 满意)
    assert _rates(con, "department", department="区交通运输局") == (2, 2, 1, 1, 1, 1.0, 0.5, 1.0)
    # 公安江岸分局 / 噪音扰民 at the finest level: GD05 only, rated 不满意
    assert _rates(con, "street_department_category", street="大智街道", department="公安江岸分局",
                  category="噪音扰民") == (1, 1, 1, 1, 0, 1.0, 1.0, 0.0)
    unrated = con.execute("select satisfaction_rate from mart.hotline_rates where level = 'category' "
                          "and category = '交通出行'").fetchone()
    assert unrated == (1.0,)  # GD06 rated 满意; GD03 unrated is not in the denominator


def test_issue_of_month(con):
    rows = con.execute("select scope, street, category, orders, incidents, all_orders from mart.issue_of_month "
                       "order by scope").fetchall()
    # 环境卫生 3 orders (GD01+GD02 one incident, GD04 another) beats 交通出行 2
    assert rows == [("district", None, "环境卫生", 3, 2, 6), ("street", "大智街道", "环境卫生", 3, 2, 6)]


def _day(con, grid: str, day: str) -> tuple:
    return con.execute(
        "select residents, special_group_residents, new_tickets, open_cases, green_codes, yellow_codes, "
        "red_codes, data_issues from mart.grid_daily where grid_code = ? and day_on = ?", [grid, day]).fetchone()


def test_grid_daily_by_hand(con):
    # range: 11-01 (first ticket, case, export) .. 11-10 (GD04, CG02): 10 days x 2 micro-grids
    assert con.execute("select count(*), min(day_on), max(day_on) from mart.grid_daily").fetchone() == (
        20, date(2026, 11, 1), date(2026, 11, 10))
    # M1 on 11-01: 张伟 and 王芳 live there (王芳 deleted 11-04), 张伟 is in a special group; GD01 GD02 new;
    # CG03 open (closed 11-02); 张伟 green; issues: 张玮 in GD01 and in health record 20261101#1
    assert _day(con, M1, "2026-11-01") == (2, 1, 2, 1, 1, 0, 0, 2)
    # M1 on 11-03: CG03 closed, CG04 opened; 张伟 turned yellow at 08:00; 20261103#7 has 2 issues
    assert _day(con, M1, "2026-11-03") == (2, 1, 0, 1, 0, 1, 0, 2)
    # M1 on 11-04: 王芳 gone
    assert _day(con, M1, "2026-11-04") == (1, 1, 0, 1, 0, 1, 0, 0)
    # M1 on 11-10: GD04 new, CG02 and CG04 open; issue: 张玮 in GD04
    assert _day(con, M1, "2026-11-10") == (1, 1, 1, 2, 0, 1, 0, 1)
    # M2 on 11-05: 李娜; GD03 GD05 GD06; CG01 and CG05 open until 11-06
    assert _day(con, M2, "2026-11-05") == (1, 0, 3, 2, 1, 0, 0, 0)
    assert _day(con, M2, "2026-11-06") == (1, 0, 0, 0, 1, 0, 0, 0)


def test_special_group_roster(con):
    rows = con.execute(
        "select name, id_number, phone, group_types_text, grid_code, community_name, latest_contact_phone, "
        "latest_contact_source, code_color, age from mart.special_group_roster").fetchall()
    # latest record with a phone: the hotline's landline of 11-10 (any phone counts as a contact)
    assert rows == [("张伟", "420102195003070011", "13800000002", "残疾人、独居老人", M1, "幸福村",
                     "02780000000", "hotline.tickets", "yellow", 76)]
    cols = [c[0] for c in con.execute("describe mart.special_group_roster").fetchall()]
    assert "person_key" in cols and "person_id" not in cols


def test_source_quality_by_hand(con):
    rows = con.execute(
        "select source, records, persons, invalid_ids, masked_ids, missing_phones, disagreeing_records, "
        "id_disagreements, name_disagreements, birth_date_disagreements from mart.source_quality order by source"
    ).fetchall()
    assert rows == [
        # 4 health records: #3 invalid ID; #1 writes 张玮; #7 has ID_B and its birth date
        ("grid_registry.residents", 3, 3, 0, 0, 1, 0, 0, 0, 0),
        ("health_codes.exports", 4, 3, 1, 0, 0, 2, 1, 1, 1),
        # GD01 masked; GD05 no phone; GD01 and GD04 write 张玮
        ("hotline.tickets", 6, 5, 0, 1, 1, 2, 0, 2, 0),
    ]
    issue = con.execute(
        "select source_value, golden_value from mart.source_quality_issues "
        "where record_key = '20261103#7' and field = 'id_number'").fetchone()
    assert issue == ("420102********0012", "420102********0011")
    assert con.execute("select source_value from mart.source_quality_issues where issue = 'invalid_id'").fetchone() == (
        "420102********1234",)
    assert con.execute("select source_value, golden_value from mart.source_quality_issues "
                       "where record_key = 'GD04'").fetchone() == ("张*", "张*")


def test_warning_fires_on_a_surge_only():
    con = _build(surge=True)
    rows = con.execute(
        "select scope_type, scope_key, signal, day_on, recent_count, baseline_mean, is_current "
        "from mart.warnings order by scope_type").fetchall()
    # M3 / 市场监管: 3 tickets in the 14 baseline days 11-01..11-14 (mean 3/14, std sqrt(3/14 * 11/14)
    # = 0.410, threshold 1.035 a day), then 5 in 11-15..11-17 (1.67 a day >= 3 in total): fires on 11-17
    assert rows == [
        ("category", "市场监管", "tickets", date(2026, 11, 17), 5, pytest.approx(3 / 14), True),
        ("grid", M3, "tickets", date(2026, 11, 17), 5, pytest.approx(3 / 14), True),
    ]
    threshold = con.execute("select threshold from mart.warnings limit 1").fetchone()[0]
    assert threshold == pytest.approx(3 / 14 + 2 * (3 / 14 * 11 / 14) ** 0.5)


def test_no_warning_without_surge(con):
    assert con.execute("select count(*) from mart.warnings").fetchone() == (0,)


def test_clock_problems_a_reconciliation_found_go_back_to_the_silo():
    con = duckdb.connect()
    build_contract_fixture(con)
    # What two reconciliations wrote: GD01 changed with an updated_at two hours behind the cursor
    # (found twice: the latest finding counts), a household edited without its updated_at moving.
    con.execute("""
        insert into meta.reconciliation_keys values
        ('rc1', 'hotline', 'tickets', 'GD01', 'back_dated', '2026-11-03 08:00:00+08', '2026-11-02 08:00:00+08',
         '2026-11-03 10:00:00+08', 9000, '2026-11-04 03:00:00+08'),
        ('rc2', 'hotline', 'tickets', 'GD01', 'back_dated', '2026-11-03 08:00:00+08', '2026-11-02 08:00:00+08',
         '2026-11-03 10:00:00+08', 7200, '2026-11-05 03:00:00+08'),
        ('rc2', 'grid_registry', 'households', 'H1', 'silent_change', '2026-01-01 00:00:00+08',
         '2026-01-01 00:00:00+08', '2026-11-05 00:00:00+08', 26956800, '2026-11-05 03:00:00+08'),
        ('rc2', 'grid_registry', 'residents', 'R9', 'hard_delete', null, '2026-01-01 00:00:00+08',
         '2026-11-05 00:00:00+08', null, '2026-11-05 03:00:00+08')""")
    build_core(con)
    build_marts(con)
    issues = con.execute("select source, record_key, field, issue, source_value, seconds_behind_watermark, seen_on "
                         "from mart.source_quality_issues where field = 'updated_at' order by source").fetchall()
    assert issues == [
        ("grid_registry.households", "H1", "updated_at", "silent_change", "2026-01-01 00:00:00", 26956800.0,
         date(2026, 11, 5)),
        ("hotline.tickets", "GD01", "updated_at", "back_dated_change", "2026-11-03 08:00:00", 7200.0,
         date(2026, 11, 5)),
    ]
    rows = dict((r[0], r[1:]) for r in con.execute(
        "select source, records, back_dated_changes, silent_changes, max_hours_behind_watermark "
        "from mart.source_quality").fetchall())
    assert rows["hotline.tickets"] == (6, 1, 0, 2.0)
    assert rows["grid_registry.households"] == (0, 0, 1, 7488.0)  # a table without persons gets a row
    assert rows["health_codes.exports"][1:] == (0, 0, None)
