"""Roles decide masking; community staff read their own community only; reads are logged."""

from __future__ import annotations

import duckdb
import pytest

from warehouse import db
from warehouse.access import AccessDenied, Principal, log_access, principal_from_env

ID = "420102199001011234"
PHONE = "13912345678"


def test_masking_per_role():
    engineer = Principal("zhang", "data_engineer")
    analyst = Principal("li", "district_analyst")
    staff = Principal("wang", "community_staff", community="幸福村")
    assert engineer.id_number(ID) == ID and engineer.phone(PHONE) == PHONE
    assert analyst.id_number(ID) == "420102********1234" and analyst.phone(PHONE) == "139****5678"
    assert staff.id_number(ID) == "420102********1234" and staff.phone(PHONE) == PHONE


def test_community_staff_are_bound_to_their_community():
    staff = Principal("wang", "community_staff", community="幸福村")
    staff.check_community("幸福村")
    with pytest.raises(AccessDenied, match="幸福村"):
        staff.check_community("花桥社区")
    with pytest.raises(AccessDenied, match="whole district"):
        staff.check_community(None)
    with pytest.raises(AccessDenied, match="no community"):
        Principal("wang", "community_staff")
    with pytest.raises(AccessDenied, match="unknown role"):
        Principal("x", "admin")


def test_unset_environment_falls_back_to_the_masked_analyst_role(monkeypatch):
    for var in ("ONENET_ROLE", "ONENET_COMMUNITY", "ONENET_USER"):
        monkeypatch.delenv(var, raising=False)
    who = principal_from_env()
    assert who.role == "district_analyst" and not who.sees_full_ids and not who.sees_full_phones


def test_access_log_rows(tmp_path):
    con = db.connect(tmp_path / "w.duckdb")
    log_access(con, Principal("wang", "community_staff", community="幸福村"), "extract", "幸福村_20261103.xlsx", 42)
    log_access(con, Principal("li", "district_analyst"), "query", "select 1", 1)
    rows = con.execute("select user_name, role, community, action, row_count, full_values "
                       "from meta.access_log order by accessed_at, user_name").fetchall()
    assert sorted(rows) == sorted([("wang", "community_staff", "幸福村", "extract", 42, True),
                                   ("li", "district_analyst", None, "query", 1, False)])
    with pytest.raises(duckdb.ConstraintException):
        con.execute("insert into meta.access_log (access_id, accessed_at, user_name, role, action, target, "
                    "row_count, full_values) values (null, now(), 'x', 'y', 'z', 't', 1, false)")


def test_a_deployment_binding_wins_over_the_command_line(monkeypatch):
    monkeypatch.setenv("ONENET_ROLE", "community_staff")
    monkeypatch.setenv("ONENET_COMMUNITY", "幸福村")
    who = principal_from_env(community="花桥社区")
    assert who.community == "幸福村"
    with pytest.raises(AccessDenied):
        who.check_community("花桥社区")
