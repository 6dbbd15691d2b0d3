"""The reading commands run as a user runs them, on a copy of the merged town published into the test's
own folder: who the OS user is comes from the access file, output lands in the audience's folder,
refusals are one line and exit 1, every read and refusal is in the access log."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import openpyxl
import pyarrow.parquet as pq
import pytest

from warehouse import audit_log
from warehouse.identity import os_user, write_default_access_file

DAY = "2026-11-20"


@pytest.fixture
def env(published_town):
    town = published_town
    return {**os.environ, "ONENET_WAREHOUSE": str(town.warehouse), "ONENET_EXPORTS": str(town.exports),
            "ONENET_PUBLISHED": str(town.published), "ONENET_ACCESS_LOG": str(town.log)}


def onenet(env: dict, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("onenet")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, env=env)


def _as(env: dict, tmp_path: Path, role: str, community: str | None = None) -> dict:
    """The environment of an OS user whom the administrators' access file maps to `role`."""
    folder = tmp_path / f"etc-{role}"
    folder.mkdir(mode=0o755)
    path = write_default_access_file(folder / "access.toml", os_user(), role, community=community)
    return {**env, "ONENET_ACCESS_FILE": str(path)}


def _records(env: dict) -> list[dict]:
    return [r for r in audit_log.tail(1000, Path(env["ONENET_ACCESS_LOG"])) if r["action"] != "publish"]


def _one_line_refusal(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def test_merge_again_is_idempotent_summarised_and_publishes(env, published_town):
    town = published_town
    before = json.loads((town.published / "analyst" / "current" / "manifest.json").read_text(encoding="utf-8"))
    result = onenet(env, "merge")
    assert result.returncode == 0, result.stderr
    assert "golden persons" in result.stdout and "health_codes.exports" in result.stdout
    assert "published" in result.stdout
    con = duckdb.connect(env["ONENET_WAREHOUSE"], read_only=True)
    try:
        assert con.execute("select count(*), count(distinct persons) from meta.merge_runs "
                           "where status = 'succeeded'").fetchone() == (2, 1)
    finally:
        con.close()
    after = json.loads((town.published / "analyst" / "current" / "manifest.json").read_text(encoding="utf-8"))
    assert after["relations"] == before["relations"]  # the same data publishes the same relations


def test_extract_for_staff_and_refusals(env, published_town, tmp_path):
    town = published_town
    (code, mine), (other_code, other) = town.communities()[:2]
    ok = onenet(env, "extract", "--date", DAY, "--role", "community_staff", "--community", mine)
    assert ok.returncode == 0, ok.stderr
    path = Path(ok.stdout.split(": ", 1)[1].split(" (")[0])
    assert path == town.exports / "community" / code / "extracts" / "20261120" / f"{mine}_20261120.xlsx"
    assert openpyxl.load_workbook(path).sheetnames[0] == "今日概况"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    staff = _as(env, tmp_path, "community_staff", mine)
    _one_line_refusal(onenet(staff, "extract", "--date", DAY, "--community", other), other)
    _one_line_refusal(onenet(staff, "extract", "--date", DAY, "--role", "data_engineer"), "widen")
    analyst = _as(env, tmp_path, "district_analyst")
    _one_line_refusal(onenet(analyst, "extract", "--date", DAY), "community staff")
    assert not (town.exports / "community" / other_code).exists()
    records = [(r["action"], r["role"], r["outcome"]) for r in _records(env)]
    assert records == [("extract", "community_staff", "allowed"), ("identify", None, "denied"),
                       ("identify", None, "denied"), ("extract", "district_analyst", "denied")]
    assert audit_log.verify(Path(env["ONENET_ACCESS_LOG"])).ok


def test_report_query_dashboard_dictionary_export_as_an_analyst(env, published_town, tmp_path):
    town = published_town
    analyst = _as(env, tmp_path, "district_analyst")
    report = onenet(analyst, "report", "--template", "hotline_monthly", "--date", DAY)
    assert report.returncode == 0, report.stderr
    assert "hotline_monthly 2026-11" in report.stdout
    assert (town.exports / "analyst" / "reports" / "hotline_monthly_2026-11.xlsx").exists()
    bad = onenet(analyst, "report", "--template", "nosuch", "--date", DAY)
    assert bad.returncode == 1 and "epidemic_daily" in bad.stderr
    query = onenet(analyst, "query", "select count(*) as n from mart.grid_daily")
    expected = town.oracle("select count(*) from mart.grid_daily")[0][0]
    assert query.returncode == 0, query.stderr
    assert str(expected) in query.stdout.replace(",", "")
    out = tmp_path / "rates.csv"
    assert onenet(analyst, "query", "select * from mart.hotline_rates", "--out", str(out)).returncode == 0
    assert out.read_bytes().startswith(b"\xef\xbb\xbf") and stat.S_IMODE(out.stat().st_mode) == 0o640
    _one_line_refusal(onenet(analyst, "query", "select * from core.person"), "core")
    dash = onenet(analyst, "dashboard")
    assert dash.returncode == 0 and "file://" in dash.stdout
    assert (town.exports / "analyst" / "dashboard" / "index.html").as_uri() in dash.stdout
    assert onenet(analyst, "dictionary").returncode == 0  # what analysts read, from their snapshot
    export = onenet(analyst, "export")
    assert export.returncode == 0 and "mart.special_group_roster" in export.stdout
    roster = pq.read_schema(town.exports / "analyst" / "marts" / "mart.special_group_roster.parquet")
    assert not {"id_number", "phone", "name", "birth_date"} & set(roster.names)
    assert sorted(p.name for p in town.exports.iterdir()) == ["analyst"]
    assert (town.exports / "analyst" / "dictionary.md").read_text(encoding="utf-8").count("## mart.") >= 13
    records = [(r["action"], r["role"], r["outcome"]) for r in _records(env)]
    assert records == [("report", "district_analyst", "allowed"), ("query", "district_analyst", "allowed"),
                       ("query", "district_analyst", "allowed"), ("query", "district_analyst", "denied"),
                       ("dashboard", "district_analyst", "allowed"), ("export", "district_analyst", "allowed")]


def test_community_staff_get_no_dashboard_and_export_only_their_community(env, published_town, tmp_path):
    town = published_town
    (code, mine), (other_code, _) = town.communities()[:2]
    staff = _as(env, tmp_path, "community_staff", mine)
    _one_line_refusal(onenet(staff, "dashboard"), "analysts")
    export = onenet(staff, "export")
    assert export.returncode == 0, export.stderr
    folder = town.exports / "community" / code / "marts"
    assert str(folder) in export.stdout
    tickets = pq.read_table(folder / "community.ticket.parquet")
    assert set(tickets.column("community_code").to_pylist()) == {code}
    assert not (town.exports / "analyst").exists() and not (town.exports / "community" / other_code).exists()
    assert [(r["action"], r["outcome"]) for r in _records(env)] == [("dashboard", "denied"), ("export", "allowed")]



def test_staff_bound_by_name_may_pass_their_own_code_but_no_other(env, published_town, tmp_path):
    town = published_town
    (code, mine), (other_code, _) = town.communities()[:2]
    staff = _as(env, tmp_path, "community_staff", mine)  # bound by the community's name
    own = onenet(staff, "query", "select distinct community_code from community.ticket", "--community", code)
    assert own.returncode == 0, own.stderr
    assert code in own.stdout and other_code not in own.stdout
    _one_line_refusal(onenet(staff, "query", "select 1", "--community", other_code), other_code)


PRIORITY = """
import os, sys
from onenet import pipeline
from warehouse.identity import Principal
limits = pipeline._as_reader(Principal("someone", sys.argv[1], "c1" if sys.argv[1] == "community_staff" else None))
print(os.getpriority(os.PRIO_PROCESS, 0), limits.get("threads"), limits.get("memory_limit"))
"""


@pytest.mark.parametrize("role, expected", [("district_analyst", "10 1 512MB"), ("community_staff", "10 1 512MB"),
                                            ("data_engineer", "0 None None")])
def test_readers_other_than_engineers_yield_their_cpu_to_the_pipeline(role, expected):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONENET_READER_")}
    done = subprocess.run([sys.executable, "-c", PRIORITY, role], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == expected.split()
    lowered = subprocess.run([sys.executable, "-c", PRIORITY, role], capture_output=True, text=True, timeout=120,
                             env={**env, "ONENET_READER_NICE": "0", "ONENET_READER_THREADS": "2"})
    assert lowered.stdout.split()[0] == "0"  # 0 leaves the priority as it was
