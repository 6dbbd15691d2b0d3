"""The reading commands run as a user runs them, on a copy of the merged town: output, files, errors, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import openpyxl
import pytest

DAY = "2026-11-20"


@pytest.fixture
def env(town_warehouse, tmp_path):
    return {**os.environ, "ONENET_WAREHOUSE": str(town_warehouse), "ONENET_EXPORTS": str(tmp_path / "exports"),
            "ONENET_USER": "tester", "ONENET_ROLE": "", "ONENET_COMMUNITY": ""}


def onenet(env: dict, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("onenet")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, env=env)


def _communities(env):
    con = duckdb.connect(env["ONENET_WAREHOUSE"], read_only=True)
    try:
        return [r[0] for r in con.execute("select community_name from core.grid where grid_level = 'community' "
                                          "order by grid_code").fetchall()]
    finally:
        con.close()


def test_merge_again_is_idempotent_and_summarised(env):
    result = onenet(env, "merge")
    assert result.returncode == 0, result.stderr
    assert "golden persons" in result.stdout and "health_codes.exports" in result.stdout
    con = duckdb.connect(env["ONENET_WAREHOUSE"], read_only=True)
    assert con.execute("select count(*), count(distinct persons) from meta.merge_runs "
                       "where status = 'succeeded'").fetchone() == (2, 1)


def test_extract_for_staff_and_refusal_of_another_community(env):
    mine, other = _communities(env)[:2]
    ok = onenet(env, "extract", "--date", DAY, "--role", "community_staff", "--community", mine)
    assert ok.returncode == 0, ok.stderr
    path = Path(ok.stdout.split(": ", 1)[1].split(" (")[0])
    assert path.exists() and openpyxl.load_workbook(path).sheetnames[0] == "今日概况"
    env_staff = {**env, "ONENET_ROLE": "community_staff", "ONENET_COMMUNITY": mine}
    refused = onenet(env_staff, "extract", "--date", DAY, "--community", other)
    assert refused.returncode == 1 and other in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_report_query_dashboard_dictionary_export(env, tmp_path):
    report = onenet(env, "report", "--template", "hotline_monthly", "--date", DAY)
    assert report.returncode == 0, report.stderr
    assert "hotline_monthly 2026-11" in report.stdout
    bad = onenet(env, "report", "--template", "nosuch", "--date", DAY)
    assert bad.returncode == 1 and "epidemic_daily" in bad.stderr
    query = onenet(env, "query", "select count(*) as n from mart.grid_daily")
    assert query.returncode == 0 and query.stdout.strip()
    out = tmp_path / "rates.csv"
    assert onenet(env, "query", "select * from mart.hotline_rates", "--out", str(out)).returncode == 0
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")
    denied = onenet(env, "query", "select * from core.person")
    assert denied.returncode == 1 and "core.person" in denied.stderr
    dash = onenet(env, "dashboard")
    assert dash.returncode == 0 and "file://" in dash.stdout
    assert onenet(env, "dictionary").returncode == 0
    export = onenet(env, "export")
    assert export.returncode == 0 and "special_group_roster" in export.stdout
