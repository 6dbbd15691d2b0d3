"""Roles decide which published audience a reader opens and where its output goes; community staff are
bound to their community; every read and every refusal is a record of the access log."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pyarrow.parquet as pq
import pytest

from onenet import pipeline
from warehouse import audit_log
from warehouse.access import AccessDenied, Principal
from warehouse.identity import os_user, write_default_access_file
from warehouse.publish import policy
from warehouse.query import QueryError

DAY = dt.date(2026, 11, 20)


def test_community_staff_are_bound_to_a_community_and_roles_are_known():
    assert Principal("wang", "community_staff", community="幸福村").community == "幸福村"
    with pytest.raises(AccessDenied, match="no community"):
        Principal("wang", "community_staff")
    with pytest.raises(AccessDenied, match="unknown role"):
        Principal("x", "admin")


def _private_tree(folder):
    """Every file under `folder` is 0640 and every folder 0750."""
    for base, _dirs, files in os.walk(folder):
        assert stat.S_IMODE(os.stat(base).st_mode) == 0o750, base
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(base, name)).st_mode) == 0o640, (base, name)


def test_analysts_read_the_district_marts_into_their_own_folder_but_no_extract(published_town):
    town = published_town
    analyst = Principal(os_user(), "district_analyst")
    with pytest.raises(AccessDenied, match="community staff"):
        pipeline.extract(DAY, who=analyst)
    dashboard = pipeline.dashboard(who=analyst)
    assert dashboard == town.exports / "analyst" / "dashboard" / "index.html"
    report = pipeline.report("hotline_monthly", DAY, who=analyst)
    assert report.path == town.exports / "analyst" / "reports" / "hotline_monthly_2026-11.xlsx"
    folder, counts = pipeline.export_marts(who=analyst)
    assert folder == town.exports / "analyst" / "marts"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{q}.parquet" for q in counts)
    forbidden = set(policy()["analyst"]["forbidden_columns"])
    for path in folder.iterdir():
        assert not forbidden & set(pq.read_schema(path).names), path.name
    assert counts["mart.special_group_roster"] == town.oracle("select count(*) from mart.special_group_roster")[0][0]
    assert sorted(p.name for p in town.exports.iterdir()) == ["analyst"]  # nothing in a community's folder
    _private_tree(town.exports)
    records = [(r["action"], r["role"], r["outcome"], r["output"])
               for r in audit_log.tail(100, town.log) if r["action"] != "publish"]
    assert records == [("extract", "district_analyst", "denied", None),
                       ("dashboard", "district_analyst", "allowed", str(dashboard)),
                       ("report", "district_analyst", "allowed", str(report.path)),
                       ("export", "district_analyst", "allowed", str(folder))]
    assert not any(r["full_values"] for r in audit_log.tail(100, town.log))
    assert audit_log.verify(town.log).ok


def test_community_staff_read_their_community_into_its_own_folder_but_no_dashboard(published_town):
    town = published_town
    (code, name), (other_code, _) = town.communities()[:2]
    staff = Principal(os_user(), "community_staff", community=name)
    with pytest.raises(AccessDenied, match="analysts"):
        pipeline.dashboard(who=staff)
    with pytest.raises(AccessDenied, match="street"):
        pipeline.report("hotline_monthly", DAY, who=staff)
    report = pipeline.report("epidemic_daily", DAY, who=staff)
    assert report.path.parent == town.exports / "community" / code / "reports"
    folder, counts = pipeline.export_marts(who=staff)
    assert folder == town.exports / "community" / code / "marts"
    assert "mart.ticket" not in counts and counts["community.ticket"] == town.oracle(
        "select count(*) from core.ticket where community_code = ?", [code])[0][0] > 0
    for path in folder.iterdir():
        table = pq.read_table(path)
        if "community_code" in table.column_names:
            assert set(table.column("community_code").to_pylist()) <= {code}, path.name
    assert not (town.exports / "analyst").exists() and not (town.exports / "community" / other_code).exists()
    _private_tree(town.exports)
    records = [(r["action"], r["role"], r["community"], r["outcome"])
               for r in audit_log.tail(100, town.log) if r["action"] != "publish"]
    assert records == [("dashboard", "community_staff", name, "denied"),
                       ("report", "community_staff", name, "denied"),  # the street-level form
                       ("report", "community_staff", name, "allowed"),
                       ("export", "community_staff", name, "allowed")]
    assert audit_log.tail(1, town.log)[0]["full_values"]  # full phones left in the export


def test_the_access_file_not_the_environment_decides(published_town, monkeypatch, tmp_path):
    town = published_town
    code, name = town.communities()[0]
    folder = tmp_path / "etc"
    folder.mkdir(mode=0o755)
    access = write_default_access_file(folder / "access.toml", os_user(), "community_staff", community=name)
    monkeypatch.setenv("ONENET_ACCESS_FILE", str(access))
    for var, value in (("ONENET_ROLE", "data_engineer"), ("ONENET_USER", "admin"), ("USER", "admin"),
                       ("ONENET_COMMUNITY", town.communities()[1][1])):
        monkeypatch.setenv(var, value)
    # With no principal given, each reader asks the access file: this OS user is staff of one community.
    n = pipeline.query("select count(*) as n from community.ticket").column("n").to_pylist()
    assert n == [town.oracle("select count(*) from core.ticket where community_code = ?", [code])[0][0]]
    with pytest.raises(QueryError, match="does not exist|not found"):
        pipeline.query("select * from core.person")
    with pytest.raises(AccessDenied):
        pipeline.dashboard()
    assert [r["outcome"] for r in audit_log.tail(3, town.log)] == ["allowed", "denied", "denied"]
    assert {(r["os_user"], r["role"], r["community"]) for r in audit_log.tail(3, town.log)} == {
        (os_user(), "community_staff", name)}


def test_a_refused_report_is_logged(published_town):
    town = published_town
    staff = Principal(os_user(), "community_staff", community=town.communities()[0][1])
    with pytest.raises(AccessDenied):
        pipeline.report("hotline_monthly", DAY, who=staff)
    last = audit_log.tail(1, town.log)[0]
    assert (last["action"], last["outcome"]) == ("report", "denied")
