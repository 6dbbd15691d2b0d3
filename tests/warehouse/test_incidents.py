"""Incident linking on the hand-made district: transfer references, same place + compatible category, repeats,
and what the callers' texts say (the same problem or another one, one unit or two)."""

from __future__ import annotations

import duckdb
import pytest

from tests.warehouse.core_fixture import build_contract_fixture
from warehouse.models import build_core

# What callers said (诉求内容) and what grid workers wrote, as the silos deliver them.
TEXTS = {
    "GD01": "光明花园1号楼楼下垃圾堆放多日无人清理",
    "GD02": "您好，光明花园1号楼垃圾堆放无人清运，味道很大",
    "GD03": "光明花园2号楼门口机动车乱停放堵塞消防通道",
    "GD04": "光明花园1号楼2单元北门垃圾桶满溢，污水横流",
    "GD05": "光明花园2号楼楼上装修噪音大",
    "GD06": "光明花园2号楼消防通道被私家车堵塞，机动车乱停放",
}
CASE_TEXTS = {"CG02": "光明花园北门垃圾桶满溢"}
# Extra tickets at GD04's building and category, within 48 h of it:
EXTRA = [
    # 2 h later, another problem (the road, not the bins): not a repeat
    ("GD07", "2026-11-10 12:00:00+08", "光明花园1号楼道路脏乱没人清扫"),
    # 10 h later, the bins again, but in unit 3 where GD04 named unit 2: another event
    ("GD08", "2026-11-10 20:00:00+08", "光明花园1号楼3单元垃圾桶满溢，没人倒"),
    # 22 h later, the same bins told in other words: a repeat of GD04
    ("GD09", "2026-11-11 08:00:00+08", "市民来电反映：光明花园1号楼北门的垃圾桶满溢了，苍蝇很多"),
    # 26 h later, the bins in unit 2 again, but at the square where GD04 and GD09 named the north gate
    # (and GD08 unit 3): another event
    ("GD10", "2026-11-11 12:00:00+08", "光明花园1号楼2单元小广场垃圾桶满溢，溢到地上"),
    # 28 h later, unit 2 and the north gate like GD04, but burning leaves, not the bins: the shared
    # place words do not make the problems alike
    ("GD11", "2026-11-11 14:00:00+08", "光明花园1号楼2单元北门焚烧落叶杂物，浓烟呛人"),
]


@pytest.fixture
def con():
    con = duckdb.connect()
    build_contract_fixture(con)
    for tid, text in TEXTS.items():
        con.execute("update staging.stg_hotline__tickets set content = ? where ticket_id = ?", [text, tid])
    for cid, text in CASE_TEXTS.items():
        con.execute("update staging.stg_city_cases__cases set description = ? where case_id = ?", [text, cid])
    for tid, at, text in EXTRA:
        con.execute("""insert into staging.stg_hotline__tickets
                       select * replace (? as ticket_id, ?::timestamptz as received_at, ? as content)
                       from staging.stg_hotline__tickets where ticket_id = 'GD04'""", [tid, at, text])
    build_core(con)
    yield con
    con.close()


def _members(con) -> dict[str, tuple[str, str, str | None]]:
    rows = con.execute("select member_key, incident_id, link_rule, linked_member_key from core.incident_member").fetchall()
    return {k: (i, r, linked) for k, i, r, linked in rows}


def test_transfer_reference_joins_case_to_its_ticket(con):
    m = _members(con)
    assert m["CG01"] == ("I-GD03", "transfer_reference", "GD03")
    assert m["GD03"][:2] == ("I-GD03", "anchor")


def test_same_building_compatible_category_within_window(con):
    m = _members(con)
    # GD07 (3 h before) is nearer in time, but tells of the road: the case joins the ticket about the bins
    assert m["CG02"] == ("I-GD04", "same_place_category", "GD04")
    # same building 3 h later but 上水井盖 is not a 环境卫生 matter
    assert m["CG03"] == ("I-CG03", "single", None)
    # compatible, same building, but 38 h after the nearest ticket (window: -12 h .. +24 h)
    assert m["CG04"] == ("I-CG04", "single", None)


def test_repeat_tickets_grouped_and_window_respected(con):
    m = _members(con)
    assert m["GD02"] == ("I-GD01", "repeat_ticket", "GD01")
    assert m["GD04"][0] == "I-GD04"  # 9 days later: a new incident
    assert m["GD05"] == ("I-GD05", "single", None)  # other category, other building


def test_repeat_needs_the_same_problem_in_the_text(con):
    m = _members(con)
    assert m["GD07"] == ("I-GD07", "single", None)  # the road, not the bins
    assert m["GD08"] == ("I-GD08", "single", None)  # the bins, but another unit
    assert m["GD09"] == ("I-GD04", "repeat_ticket", "GD04")  # the same bins in other words


def test_two_spots_are_two_events_and_place_words_are_not_the_problem(con):
    m = _members(con)
    assert m["GD10"] == ("I-GD10", "single", None)  # the square, not the north gate; unit 2, not 3
    assert m["GD11"] == ("I-GD11", "single", None)  # same unit and gate as GD04, another problem


def test_text_similarity_counts_characters_not_bytes(con):
    # DuckDB's length() and substring() count characters: a 3-character text has 2 bigrams.
    assert con.execute("select length('垃圾桶'), list_transform(range(1, length('垃圾桶')), i -> substring('垃圾桶', i, 2))"
                       ).fetchone() == (3, ["垃圾", "圾桶"])


def test_transferred_ticket_opens_its_own_incident(con):
    m = _members(con)
    # GD06 is 8 h after GD03 at the same building and category, but has its own transfer case
    assert m["GD06"][0] == "I-GD06"
    assert m["CG05"][0] == "I-GD06"


def test_incident_rollup(con):
    rows = con.execute(
        "select incident_id, ticket_count, case_count, is_open, category, grid_code from core.incident order by 1"
    ).fetchall()
    assert len(rows) == 11
    by_id = {r[0]: r[1:] for r in rows}
    assert by_id["I-GD01"] == (2, 0, False, "环境卫生", "42010200100101001")
    assert by_id["I-GD04"] == (2, 1, True, "环境卫生", "42010200100101001")
    assert by_id["I-GD03"][:2] == (1, 1)


def test_incident_ids_identical_on_rerun(con):
    before = con.execute("select * from core.incident_member order by all").fetchall()
    build_core(con)
    assert con.execute("select * from core.incident_member order by all").fetchall() == before
