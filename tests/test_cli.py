"""The `onenet` command line, run as a user runs it: help everywhere, one-line errors, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [[], ["simulate"], ["simulators"], ["simulators", "up"], ["simulators", "down"],
            ["simulators", "status"], ["simulators", "advance"], ["demo"], ["sync"], ["validate"], ["merge"],
            ["extract"], ["report"], ["dashboard"], ["query"], ["dictionary"], ["export"], ["reconcile"],
            ["audit"], ["audit", "verify"], ["audit", "show"]]
READERS = [["extract"], ["report", "--template", "epidemic_daily"], ["dashboard"], ["query", "select 1"], ["export"]]


def onenet(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("onenet")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "onenet")
def test_every_command_has_help(command):
    result = onenet(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: onenet" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["simulate", "--residents", "5"], "--residents"),
    (["simulate", "--residents", "lots"], "is not a valid integer"),
    (["simulators", "up", "--only", "fax"], "--only"),
    (["nonsense"], "No such command"),
])
def test_bad_arguments_give_a_clear_error(args, message):
    result = onenet(*args)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize("command", READERS, ids=lambda c: c[0])
def test_who_is_asking_is_no_option_any_more(command):
    # The OS user, mapped by the administrators' access file, is who asks: --user is gone and the
    # help offers --role and --community only as narrowing what the file grants.
    result = onenet(*command, "--user", "admin")
    assert result.returncode == 2 and "No such option" in result.stderr and "--user" in result.stderr
    helptext = " ".join(onenet(command[0], "--help").stdout.split())
    assert "--user" not in helptext and "never widens" in helptext and "never a wider one" in helptext


def test_missing_district_is_one_line_and_nonzero(tmp_path):
    result = onenet("simulators", "up", "--root", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error:")
    assert "onenet simulate" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_simulate_then_status_and_advance(tmp_path):
    out = tmp_path / "d"
    result = onenet("simulate", "--residents", "500", "--seed", "3", "--days", "4", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "500 residents" in result.stdout
    assert onenet("simulators", "status", "--root", str(out)).stdout.startswith("simulated day 0")
    assert onenet("simulators", "advance", "--root", str(out), "--days", "2").returncode == 0
    assert "simulated day 2" in onenet("simulators", "status", "--root", str(out)).stdout
    late = onenet("simulators", "advance", "--root", str(out), "--to", "9")
    assert late.returncode == 1 and "between" in late.stderr


def test_sync_all_lands_then_lands_nothing_and_fails_clearly(tmp_path):
    from simulators import runner
    from simulators.district.generate import generate

    district = tmp_path / "district"
    generate(district, residents=800, seed=9, days=4)
    runner.up(district, ports={"hotline": 0, "city_cases": 0})
    env = {"ONENET_DISTRICT": str(district), "ONENET_WAREHOUSE": str(tmp_path / "w.duckdb"),
           "AIRFLOW_CONN_ONENET_HEALTH_CODES": (district / "health_codes" / "drop").as_uri() + "?stable_seconds=0"}
    try:
        runner.advance(district, 2)
        from simulators.health_codes import drop

        # The uploader writes day 1's file slowly; with stable_seconds=0 the files must be complete.
        drop.deliver_until(district, 2)
        first = onenet("sync", "all", env=env)
        assert first.returncode == 0, first.stderr
        for entity in ("hotline.tickets", "city_cases.cases", "grid_registry.residents", "health_codes.exports"):
            line = next(x for x in first.stdout.splitlines() if x.startswith(entity))
            assert "succeeded" in line and "landed 0," not in line, line
        second = onenet("sync", "all", env=env)
        assert second.returncode == 0, second.stderr
        assert all("landed 0," in x for x in second.stdout.splitlines() if "succeeded" in x), second.stdout

        url = runner.status(district)[1].url
        bad = onenet("sync", "hotline", env={**env, "AIRFLOW_CONN_ONENET_HOTLINE": url.replace("//", "//:wrong@")})
        assert bad.returncode == 1
        last = bad.stderr.strip().splitlines()[-1]
        assert last.startswith("error: sync failed: hotline:") and "401" in last
    finally:
        runner.down(district)
