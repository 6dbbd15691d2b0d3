"""Incident linking on the hand-made district: transfer references, same place + compatible category, repeats."""

from __future__ import annotations

import duckdb
import pytest

from tests.warehouse.core_fixture import build_contract_fixture
from warehouse.models import build_core


@pytest.fixture
def con():
    con = duckdb.connect()
    build_contract_fixture(con)
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
    assert m["CG02"] == ("I-GD04", "same_place_category", "GD04")
    # same building 3 h later but 上水井盖 is not a 环境卫生 matter
    assert m["CG03"] == ("I-CG03", "single", None)
    # compatible, same building, but 38 h after the nearest ticket (window -12 h .. +24 h)
    assert m["CG04"] == ("I-CG04", "single", None)


def test_repeat_tickets_grouped_and_window_respected(con):
    m = _members(con)
    assert m["GD02"] == ("I-GD01", "repeat_ticket", "GD01")
    assert m["GD04"][0] == "I-GD04"  # 9 days later: a new incident
    assert m["GD05"] == ("I-GD05", "single", None)  # other category, other building


def test_transferred_ticket_opens_its_own_incident(con):
    m = _members(con)
    # GD06 is 8 h after GD03 at the same building and category, but has its own transfer case
    assert m["GD06"][0] == "I-GD06"
    assert m["CG05"][0] == "I-GD06"


def test_incident_rollup(con):
    rows = con.execute(
        "select incident_id, ticket_count, case_count, is_open, category, grid_code from core.incident order by 1"
    ).fetchall()
    assert len(rows) == 7
    by_id = {r[0]: r[1:] for r in rows}
    assert by_id["I-GD01"] == (2, 0, False, "环境卫生", "42010200100101001")
    assert by_id["I-GD04"] == (1, 1, True, "环境卫生", "42010200100101001")
    assert by_id["I-GD03"][:2] == (1, 1)


def test_incident_ids_identical_on_rerun(con):
    before = con.execute("select * from core.incident_member order by all").fetchall()
    build_core(con)
    assert con.execute("select * from core.incident_member order by all").fetchall() == before
