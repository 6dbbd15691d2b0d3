"""The README's real-scheduler steps, run exactly as written (issue #16): the block is read from dags/README.md.

Only the three variables the block's first line defaults (port, database, AIRFLOW_HOME) and
ONENET_HOME (where `onenet simulate` writes) are set, to a free port, a throwaway database and
temporary folders; the rest is the README's text. If the README drifts, this test runs the drift.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.dags.conftest import REPO
from tests.dags.test_real_scheduler import _free_port, _pg

pytestmark = pytest.mark.postgres

README = REPO / "dags" / "README.md"
MARKER = "<!-- the block below is run by tests/dags/test_readme_scheduler.py"
TIMEOUT = 300.0


def readme_block() -> str:
    """The shell block that follows the marker in dags/README.md."""
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, "dags/README.md lost the marker of its tested scheduler block"
    m = re.search(r"```sh\n(.*?)```", text[text.index(MARKER):], re.S)
    assert m, "no ```sh block after the marker in dags/README.md"
    return m.group(1)


def restart_lines() -> str:
    """The block up to and including the scheduler's line: what the README says restarts the components."""
    lines = readme_block().splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if "airflow scheduler" in line)
    return "".join(lines[:last + 1])


def test_the_block_unpauses_the_merge_and_sizes_airflow_for_two_cores():
    block = readme_block()
    assert re.search(r"dags unpause .*onenet_\(grid_registry\|merge\)", block)
    assert block.index("dags unpause") < block.index("airflow scheduler")  # unpaused before anything runs
    assert "AIRFLOW__CORE__PARALLELISM=4" in block and "AIRFLOW__API__WORKERS=1" in block
    assert "AIRFLOW__CORE__DEFAULT_TIMEZONE=Asia/Shanghai" in block
    assert "--logical-date" not in block  # the trigger as an engineer types it


def test_the_ui_timezone_option_the_issue_names_does_not_exist_in_this_airflow():
    """Why the README sets core.default_timezone and explains the UI instead (checked, not assumed)."""
    from airflow.configuration import conf

    assert not conf.has_option("api", "default_ui_timezone")
    assert conf.has_option("core", "default_timezone")


def _env(tmp_path: Path, port: int, db: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "ONENET_"))}
    env.update({"ONENET_AIRFLOW_PORT": str(port), "ONENET_AIRFLOW_DB": db,
                "AIRFLOW_HOME": str(tmp_path / "airflow-pg"), "ONENET_HOME": str(tmp_path / "var")})
    return env


def _api(port: int, method: str, path: str, token: str | None = None, **kw):
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, f"http://127.0.0.1:{port}{path}", headers=headers, timeout=30, **kw)


def _login(port: int, password: str, deadline: float) -> str:
    """A token for admin with `password`, waiting for the api-server to come up."""
    import httpx

    while True:
        try:
            r = _api(port, "POST", "/auth/token", json={"username": "admin", "password": password})
            assert r.status_code == 201, r.text
            return str(r.json()["access_token"])
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_the_readme_scheduler_path_works_when_followed_literally(tmp_path):
    port, db = _free_port(), f"onenet_airflow_readme_{secrets.token_hex(4)}"
    env = _env(tmp_path, port, db)
    home = Path(env["AIRFLOW_HOME"])
    out = open(tmp_path / "block.log", "wb")  # noqa: SIM115 - the components keep writing after bash exits
    began = time.monotonic()
    shell = subprocess.Popen(["bash", "-c", readme_block()], cwd=REPO, env=env, stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
    restarted = None
    admin = _pg()
    try:
        assert shell.wait(timeout=240) == 0, (tmp_path / "block.log").read_text(errors="replace")[-4000:]
        block_done = time.monotonic()
        meta = _pg(db)
        deadline = time.monotonic() + TIMEOUT

        def component_logs() -> str:
            return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}"
                             for p in sorted(home.glob("*.log")))

        def settled(sql: str, *args):
            while time.monotonic() < deadline:
                row = meta.execute(sql, args).fetchone()
                if row and row[0] in ("success", "failed"):
                    return row
                time.sleep(2)
            raise AssertionError(f"timed out: {sql}\n{component_logs()}")

        # The manual run (no logical date) and the merge its Asset event triggers, both succeed.
        state, logical = settled("select state, logical_date from dag_run where dag_id = 'onenet_grid_registry' "
                                 "and run_type = 'manual'")
        assert (state, logical) == ("success", None), component_logs()
        (merge,) = settled("select state from dag_run where dag_id = 'onenet_merge' and run_type = 'asset_triggered' "
                           "and state in ('success', 'failed')")
        assert merge == "success", component_logs()
        ran = time.monotonic()
        paused = dict(meta.execute("select dag_id, is_paused from dag where dag_id in "
                                   "('onenet_grid_registry', 'onenet_merge', 'onenet_hotline')").fetchall())
        assert paused == {"onenet_grid_registry": False, "onenet_merge": False, "onenet_hotline": True}

        # The admin's password is the file's; the api-server never printed it.
        passwords = json.loads((home / "passwords.json").read_text())
        assert set(passwords) == {"admin"} and oct((home / "passwords.json").stat().st_mode & 0o777) == "0o600"
        token = _login(port, passwords["admin"], deadline)
        assert _api(port, "GET", "/api/v2/dags/onenet_merge", token).json()["is_paused"] is False
        assert passwords["admin"] not in (home / "api-server.log").read_text(errors="replace")
        assert _api(port, "POST", "/auth/token", json={"username": "admin", "password": "wrong"}).status_code == 401

        # Restart the components as the README says (its block up to the scheduler, in a new shell):
        # the same password still logs in, and nothing was generated.
        os.killpg(shell.pid, signal.SIGTERM)
        time.sleep(5)
        restarted = subprocess.Popen(["bash", "-c", restart_lines()], cwd=REPO, env=env, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        assert restarted.wait(timeout=240) == 0, (tmp_path / "block.log").read_text(errors="replace")[-4000:]
        assert json.loads((home / "passwords.json").read_text()) == passwords
        _login(port, passwords["admin"], time.monotonic() + 120)
        print(f"\nREADME block {block_done - began:.1f} s, runs done {ran - block_done:.1f} s, "
              f"restart and login {time.monotonic() - ran:.1f} s")
    finally:
        for proc in (shell, restarted):
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        time.sleep(3)
        for proc in (shell, restarted):
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        out.close()
        subprocess.run([str(REPO / ".venv" / "bin" / "onenet"), "simulators", "down"], cwd=REPO, env=env,
                       capture_output=True, timeout=60)
        admin.execute(f'drop database if exists "{db}" with (force)')
        admin.close()
