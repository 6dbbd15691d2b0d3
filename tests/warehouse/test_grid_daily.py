"""mart.grid_daily's running counts against a brute-force count of every grid day (issue #8).

The mart counts residents, special-group residents, open cases and health codes with +1/-1 events over
intervals of days; here each figure is counted the slow, obvious way (every record against every day)
and the two must agree exactly, on the town and on a hand-made district full of edge cases.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest

from tests.warehouse.core_fixture import M1, M2, REG, build_contract_fixture
from warehouse import db
from warehouse.models import MODELS, build_core, build_marts

GRID_DAILY = MODELS / "marts" / "grid_daily.sql"
COUNTS = ("residents", "special_group_residents", "open_cases", "green_codes", "yellow_codes", "red_codes")

# Every figure by its definition: a record counts on a day when its range covers the day. Bounds are
# the first and last day with a ticket, a case or an export; a code counts when its period holds at the
# Beijing midnight that ends the day (written here as a '+08:00' literal, not with timezone()), in the
# grid of the person's registration moved into last among those covering the day. A registration is in
# the household of its newest version changed by that day (the oldest before any was), looked up day
# by day.
BRUTE_FORCE = """
with

bounds as (
    select min(d) as first_on, max(d) as last_on from (
        select received_on as d from core.ticket
        union all select reported_on from core.city_case
        union all select export_date from staging.stg_health_codes__exports
    )
),

grid_days as (
    select grid.grid_code, bounds.first_on + cast(i.range as integer) as day_on,
        cast(strftime(bounds.first_on + cast(i.range as integer) + 1, '%Y-%m-%d') || ' 00:00:00+08:00'
             as timestamptz) as day_end_at
    from core.grid as grid, bounds, range(0, bounds.last_on - bounds.first_on + 1) as i
    where grid.is_micro
),

older_versions as (
    select v.resident_id, v.household_id, v.updated_at, v._extracted_at,
        row_number() over (partition by v.resident_id order by l.load_seq desc nulls last,
            v.updated_at desc nulls last, v._extracted_at desc, v._load_id desc, v._record_hash desc) as version_rank
    from staging.grid_registry_residents as v left join meta.loads as l on l.load_id = v._load_id
    where v._record_hash <> 'tombstone'
),

versions as (
    select resident_id, household_id, version_rank,
        cast(timezone('Asia/Shanghai', coalesce(updated_at, _extracted_at)) as date) as changed_on
    from older_versions where version_rank > 1
    union all
    select resident_id, household_id, 1,
        cast(timezone('Asia/Shanghai', coalesce(updated_at, _extracted_at)) as date)
    from staging.stg_grid_registry__residents
),

held as (
    select resident.resident_id, d.day_on,
        coalesce(
            (select v.household_id from versions as v
             where v.resident_id = resident.resident_id and v.changed_on <= d.day_on
             order by v.version_rank limit 1),
            (select v.household_id from versions as v
             where v.resident_id = resident.resident_id order by v.version_rank desc limit 1)) as household_id
    from staging.stg_grid_registry__residents as resident, (select distinct day_on from grid_days) as d
),

registry as (
    select
        held.day_on,
        household.grid_code,
        coalesce(link.person_id, resident.resident_id) as identity_id,
        coalesce(resident.moved_in_on, date '1900-01-01') as from_on,
        case when resident.is_deleted
            then coalesce(cast(timezone('Asia/Shanghai', resident.deleted_at) as date), date '1900-01-01')
        end as until_on,
        (select min(coalesce(g.since, date '1900-01-01')) from staging.stg_grid_registry__special_groups as g
         where g.resident_id = resident.resident_id) as group_since
    from staging.stg_grid_registry__residents as resident
    join held on held.resident_id = resident.resident_id
    join core.household as household on household.household_id = held.household_id
    left join core.person_source as link
        on link.record_key = resident.resident_id and link.source = 'grid_registry.residents'
),

spans as (
    select held.day_on, link.person_id, resident.resident_id, household.grid_code,
        coalesce(resident.moved_in_on, date '1900-01-01') as from_on,
        case when resident.is_deleted
            then coalesce(cast(timezone('Asia/Shanghai', resident.deleted_at) as date), date '1900-01-01')
        end as until_on
    from staging.stg_grid_registry__residents as resident
    join held on held.resident_id = resident.resident_id
    join core.household as household on household.household_id = held.household_id
    join core.person_source as link
        on link.record_key = resident.resident_id and link.source = 'grid_registry.residents'
),

-- a person's code counts in the grid of the registration moved into last among those covering the day
codes as (
    select gd.grid_code, gd.day_on, period.color
    from grid_days as gd, core.health_status_history as period
    where period.valid_from < gd.day_end_at and (period.valid_to is null or period.valid_to >= gd.day_end_at)
        and gd.grid_code = (
            select s.grid_code from spans as s
            where s.person_id = period.person_id and s.day_on = gd.day_on and s.from_on <= gd.day_on
                and (s.until_on is null or s.until_on > gd.day_on)
            order by s.from_on desc, s.resident_id desc limit 1)
)

select
    gd.grid_code,
    gd.day_on,
    (select count(distinct r.identity_id) from registry as r
     where r.grid_code = gd.grid_code and r.day_on = gd.day_on and r.from_on <= gd.day_on
        and (r.until_on is null or r.until_on > gd.day_on)) as residents,
    (select count(distinct r.identity_id) from registry as r
     where r.grid_code = gd.grid_code and r.day_on = gd.day_on and r.from_on <= gd.day_on
        and (r.until_on is null or r.until_on > gd.day_on) and r.group_since <= gd.day_on)
        as special_group_residents,
    (select count(*) from core.city_case as c
     where c.grid_code = gd.grid_code and c.reported_on <= gd.day_on
        and (c.closed_on is null or c.closed_on > gd.day_on)) as open_cases,
    (select count(*) from codes as c where c.grid_code = gd.grid_code and c.day_on = gd.day_on
        and c.color = 'green') as green_codes,
    (select count(*) from codes as c where c.grid_code = gd.grid_code and c.day_on = gd.day_on
        and c.color = 'yellow') as yellow_codes,
    (select count(*) from codes as c where c.grid_code = gd.grid_code and c.day_on = gd.day_on
        and c.color = 'red') as red_codes
from grid_days as gd
order by gd.grid_code, gd.day_on
"""

COLUMNS = [
    ("grid_code", "VARCHAR"), ("day_on", "DATE"), ("grid_name", "VARCHAR"), ("area_code", "VARCHAR"),
    ("community_code", "VARCHAR"), ("community_name", "VARCHAR"), ("street_name", "VARCHAR"),
    *[(c, "BIGINT") for c in ("residents", "special_group_residents", "new_tickets", "open_cases", "green_codes",
                              "yellow_codes", "red_codes", "data_issues")],
]


def _rebuild(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(Path(GRID_DAILY).read_text(encoding="utf-8"))


def _mart(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute(f"select grid_code, day_on, {', '.join(COUNTS)} from mart.grid_daily").fetchall()


def _assert_matches_brute_force(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    assert [(c[0], c[1]) for c in con.execute("describe mart.grid_daily").fetchall()] == COLUMNS
    expected = con.execute(BRUTE_FORCE).fetchall()
    got = _mart(con)  # in the mart's own order: (grid_code, day_on)
    assert len(got) == len(expected)
    assert got == expected
    return got


def test_town_matches_brute_force(town_warehouse):
    con = db.connect(town_warehouse)
    try:
        _rebuild(con)
        got = _assert_matches_brute_force(con)
        # the town exercises every figure, not only zeros
        totals = [sum(row[i] for row in got) for i in range(2, 2 + len(COUNTS))]
        assert all(t > 0 for t in totals[:4]), dict(zip(COUNTS, totals, strict=True))
    finally:
        con.close()


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    for row in rows:
        cols = ", ".join(row)
        con.execute(f"insert into {table} ({cols}) values ({', '.join('?' * len(row))})", list(row.values()))


def _edge_district(timezone: str) -> duckdb.DuckDBPyConnection:
    """The hand-made district (11-01..11-10) plus records at the edges of every interval rule."""
    con = duckdb.connect()
    build_contract_fixture(con)
    build_core(con)
    build_marts(con)
    p2 = "P000000002"  # 李娜, of M2 (core.person.grid_code), green since 10-02
    # 李娜 also registered in M1 (H1) several times: [11-03, 11-06) and [11-05, 11-07) overlap, [11-07, 11-08)
    # touches them, [11-09, open) after a gap; R4's deletion is 11-05 23:00 UTC, i.e. 11-06 in Beijing.
    # In M2 (H2): R10 unlinked and no move-in date (always there); R8 deleted before it moved in; R9
    # deleted with no deletion time (never there).
    _insert(con, "staging.stg_grid_registry__residents", [
        dict(resident_id="R4", household_id="H1", moved_in_on="2026-11-03", is_deleted=True,
             deleted_at="2026-11-06 07:00:00+08"),
        dict(resident_id="R5", household_id="H1", moved_in_on="2026-11-05", is_deleted=True,
             deleted_at="2026-11-07 09:00:00+08"),
        dict(resident_id="R6", household_id="H1", moved_in_on="2026-11-07", is_deleted=True,
             deleted_at="2026-11-08 23:30:00+08"),
        dict(resident_id="R7", household_id="H1", moved_in_on="2026-11-09", is_deleted=False),
        dict(resident_id="R8", household_id="H2", moved_in_on="2026-11-04", is_deleted=True,
             deleted_at="2026-11-02 10:00:00+08"),
        dict(resident_id="R9", household_id="H2", moved_in_on="2026-11-01", is_deleted=True),
        dict(resident_id="R10", household_id="H2", moved_in_on=None, is_deleted=None),
    ])
    _insert(con, "core.person_source", [
        dict(record_uid=f"{REG}:{r}", source=REG, record_key=r, person_id=p2) for r in ("R4", "R5", "R6", "R7")])
    # R5 joins a group mid-span (11-06), R7 long before its span; R8's group cannot make it count
    _insert(con, "staging.stg_grid_registry__special_groups", [
        dict(resident_id="R5", group_type="低保户", since="2026-11-06"),
        dict(resident_id="R7", group_type="低保户", since=None),
        dict(resident_id="R8", group_type="低保户", since="2020-01-01"),
    ])
    # cases in M2: closed before reported, closed the day reported, open from 11-09, no grid, closed after
    # the last day, no report day; none reported outside 11-01..11-10 (that would move the mart's range)
    columns = [c[0] for c in con.execute("describe core.city_case").fetchall()]
    for case_id, grid, reported, closed in [("CX1", M2, "2026-11-04", "2026-11-02"), ("CX2", M2, "2026-11-07", "2026-11-07"),
                                            ("CX3", M2, "2026-11-09", None), ("CX4", None, "2026-11-03", None),
                                            ("CX5", M2, "2026-11-02", "2026-11-12"), ("CX6", M2, None, None)]:
        row = dict.fromkeys(columns)
        row.update(case_id=case_id, grid_code=grid, reported_on=reported, closed_on=closed)
        _insert(con, "core.city_case", [row])
    # 李娜's extra periods, at Beijing midnights and across the UTC date line
    _insert(con, "core.health_status_history", [
        dict(person_id=p2, period_no=10, color="red", valid_from="2026-11-03 00:00:00+08",
             valid_to="2026-11-05 00:00:00+08"),  # at the end of 11-03 and 11-04
        dict(person_id=p2, period_no=11, color="yellow", valid_from="2026-11-05 23:59:59+08",
             valid_to="2026-11-06 00:00:00+08"),  # one second, across the midnight ending 11-05
        dict(person_id=p2, period_no=12, color="yellow", valid_from="2026-11-07 08:00:00+08",
             valid_to="2026-11-07 20:00:00+08"),  # within a day: never at a day's end
        dict(person_id=p2, period_no=13, color="red", valid_from="2026-11-08 07:59:59+08",
             valid_to="2026-11-09 00:00:01+08"),  # 11-07 in UTC, 11-08 in Beijing: the end of 11-08 only
        dict(person_id=p2, period_no=14, color="green", valid_from="2026-10-01 00:00:00+08",
             valid_to="2026-11-01 00:00:00+08"),  # ends with 10-31, before the range
        dict(person_id=p2, period_no=15, color="green", valid_from="2026-11-20 00:00:00+08",
             valid_to=None),  # after the range
        dict(person_id=p2, period_no=16, color="grey", valid_from="2026-11-01 00:00:00+08", valid_to=None),
        dict(person_id=p2, period_no=17, color="red", valid_from=None, valid_to=None),
    ])
    con.execute(f"set timezone = '{timezone}'")
    _rebuild(con)
    return con


@pytest.mark.parametrize("timezone", ["UTC", "America/Los_Angeles"])
def test_edge_cases_match_brute_force_and_hand_counts(timezone):
    con = _edge_district(timezone)
    try:
        got = _assert_matches_brute_force(con)
    finally:
        con.close()
    days = [date(2026, 11, 1) + timedelta(days=i) for i in range(10)]
    by_grid = {grid: [row for row in got if row[0] == grid] for grid in (M1, M2)}
    assert [row[1] for row in by_grid[M1]] == days
    # M1: 张伟 every day; 王芳 until 11-03; 李娜 once a day on 11-03..11-07 (three overlapping or touching
    # spans) and from 11-09. Special: 张伟, plus 李娜 on 11-06 (R5's group) and from 11-09 (R7's)
    assert [row[2] for row in by_grid[M1]] == [2, 2, 3, 2, 2, 2, 2, 1, 2, 2]
    assert [row[3] for row in by_grid[M1]] == [1, 1, 1, 1, 1, 2, 1, 1, 2, 2]
    # M2: 李娜 (R2) and R10 every day
    assert [row[2] for row in by_grid[M2]] == [2] * 10
    # M2 open cases: CX5 from 11-02, CG01 and CG05 on 11-05, CX3 from 11-09
    assert [row[4] for row in by_grid[M2]] == [0, 1, 1, 1, 3, 1, 1, 1, 2, 2]
    # Codes count where 李娜 lived that day: the registration moved into last decides, so M2 (R2) on
    # 11-01, 11-02 and 11-08 (R6 ended with 11-07), M1 on 11-03..11-07 (R4, R5, R6) and from 11-09 (R7).
    # She is green throughout, yellow on 11-05 and red on 11-03, 11-04 and 11-08.
    assert [row[5] for row in by_grid[M2]] == [1, 1, 0, 0, 0, 0, 0, 1, 0, 0]
    assert [row[6] for row in by_grid[M2]] == [0] * 10
    assert [row[7] for row in by_grid[M2]] == [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    # M1: 张伟 green until 11-02, yellow from 11-03; 李娜 as above
    assert [row[5] for row in by_grid[M1]] == [1, 1, 1, 1, 1, 1, 1, 0, 1, 1]
    assert [row[6] for row in by_grid[M1]] == [0, 0, 1, 1, 2, 1, 1, 1, 1, 1]
    assert [row[7] for row in by_grid[M1]] == [0, 0, 1, 1, 0, 0, 0, 0, 0, 0]


def _assert_moved_on_11_09(before: list[tuple], after: list[tuple]) -> None:
    """张伟 moved from M1 to M2 on 11-09: the days before keep their figures; from 11-09 he (yellow) lives
    and counts in M2, no longer in M1 (the mart's last day, 11-10, follows)."""
    moved = date(2026, 11, 9)
    assert [r for r in after if r[1] < moved] == [r for r in before if r[1] < moved]
    changed = {(r[0], r[1]) for r in set(after) - set(before)}
    assert changed == {(grid, day) for grid in (M1, M2) for day in (moved, moved + timedelta(days=1))}
    day = {(r[0], r[1]): r for r in after}
    assert (day[(M1, moved)][2], day[(M1, moved)][6]) == (1, 0)
    assert (day[(M2, moved)][2], day[(M2, moved)][6]) == (3, 1)


def test_a_move_leaves_the_past_days_as_they_were():
    """张伟 moves from M1 to M2 on 11-09: his residence and codes follow him from that day only, so the
    grid days before it keep their figures and the publish can keep their files (issue #13). Counted by
    his current grid, every past day of both grids was restated."""
    con = _edge_district("UTC")
    try:
        before = _mart(con)
        con.execute("update staging.stg_grid_registry__residents set is_deleted = true, "
                    "deleted_at = '2026-11-09 09:00:00+08' where resident_id = 'R1'")
        _insert(con, "staging.stg_grid_registry__residents", [
            dict(resident_id="R11", household_id="H2", moved_in_on="2026-11-09", is_deleted=False)])
        _insert(con, "core.person_source", [
            dict(record_uid=f"{REG}:R11", source=REG, record_key="R11", person_id="P000000001")])
        # what core would now say of him (core is not rebuilt here: the fixture wrote into it)
        con.execute("update core.person set grid_code = ? where person_id = 'P000000001'", [M2])
        _rebuild(con)
        after = _assert_matches_brute_force(con)
    finally:
        con.close()
    _assert_moved_on_11_09(before, after)


def test_a_move_made_by_updating_the_row_leaves_the_past_days_as_they_were():
    """The registry moves 张伟 by updating his row (household H1 -> H2 at 11-09 09:00 Beijing; his
    move-in date stays). Staging keeps only the latest version, but the older one is among the validated
    versions: the days before the change stay in M1 as they were, from 11-09 he counts in M2. Counted by
    the latest version alone, every past day of both grids moved him (issue #13)."""
    con = _edge_district("UTC")
    try:
        before = _mart(con)
        _insert(con, "staging.grid_registry_residents", [
            dict(resident_id="R1", household_id="H1", updated_at="2026-10-01 08:00:00+08",
                 _extracted_at="2026-10-02 00:00:00+08", _load_id="L1", _record_hash="a"),
            dict(resident_id="R1", household_id="H2", updated_at="2026-11-09 09:00:00+08",
                 _extracted_at="2026-11-10 00:00:00+08", _load_id="L2", _record_hash="b")])
        con.execute("update staging.stg_grid_registry__residents set household_id = 'H2', "
                    "updated_at = '2026-11-09 09:00:00+08' where resident_id = 'R1'")
        con.execute("update core.person set grid_code = ? where person_id = 'P000000001'", [M2])
        _rebuild(con)
        after = _assert_matches_brute_force(con)
        # and without the older version (the mart's view before this change): every day moves
        con.execute("delete from staging.grid_registry_residents")
        _rebuild(con)
        latest_only = _assert_matches_brute_force(con)
    finally:
        con.close()
    _assert_moved_on_11_09(before, after)
    moved = date(2026, 11, 9)
    assert {r[1] for r in set(latest_only) - set(before)} >= {moved - timedelta(days=i) for i in range(1, 9)}
