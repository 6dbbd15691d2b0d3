"""A real Airflow: scheduler, dag-processor and api-server on this machine's PostgreSQL run a source DAG end to end.

Not dag.test(): the scheduler picks the triggered run, the LocalExecutor hands the tasks to
task-SDK workers, which talk to the api-server's execution API; the test then reads the result
in the warehouse and the Asset event in the metadata database. The runs are triggered as an
engineer does, without a logical date: `airflow dags trigger <dag>` and the REST API's
`POST /api/v2/dags/<dag>/dagRuns` with `"logical_date": null` (issue #16).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from onenet import orchestration as orch
from onenet import pipeline
from tests.dags.conftest import DAGS, REPO

pytestmark = pytest.mark.postgres

PG = "postgres@127.0.0.1:5432"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "onenet_grid_registry"
TIMEOUT = 240.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg(dbname: str = "postgres"):
    import psycopg

    return psycopg.connect(f"postgresql://{PG}/{dbname}", autocommit=True)


@pytest.fixture
def metadata_db():
    """A fresh PostgreSQL database for Airflow's metadata, dropped afterwards."""
    try:
        admin = _pg()
    except Exception as exc:  # noqa: BLE001 - any connection failure means: no server here
        # This machine and CI run PostgreSQL: a missing server is a failure, not a reason to skip.
        pytest.fail(f"PostgreSQL on 127.0.0.1:5432 is not reachable ({exc}); start it, or deselect "
                    f"with -m 'not postgres'")
    name = f"onenet_airflow_test_{secrets.token_hex(4)}"
    admin.execute(f'create database "{name}"')
    try:
        yield name
    finally:
        admin.execute(f'drop database if exists "{name}" with (force)')
        admin.close()


class Airflow:
    """The Airflow components as child processes, each in its own process group."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.procs = env, logs, {}

    def cli(self, *args: str, timeout: float = 180) -> str:
        out = subprocess.run([AIRFLOW, *args], env=self.env, cwd=REPO, capture_output=True, text=True,
                             timeout=timeout)
        assert out.returncode == 0, f"airflow {' '.join(args)} failed:\n{out.stdout[-1500:]}\n{out.stderr[-3000:]}"
        return out.stdout

    def start(self, name: str, *args: str) -> None:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
        self.procs[name] = subprocess.Popen([AIRFLOW, *args], env=self.env, cwd=REPO, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"airflow {name} exited with {proc.returncode}:\n{self.tail(name)}"

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        end = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def con_rows(warehouse: Path) -> int:
    """Rows landed in every raw grid_registry table."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return sum(con.execute(f"select count(*) from raw.{t}").fetchone()[0]
                   for t in orch.STAGED_TABLES["grid_registry"])
    finally:
        con.close()


def _wait(what: str, check, airflow: Airflow, deadline: float, every: float = 1.0):
    while time.monotonic() < deadline:
        airflow.check_alive()
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}\nscheduler:\n{airflow.tail('scheduler')}\n"
                         f"dag-processor:\n{airflow.tail('dag-processor')}")


def _xcom(meta, run_id: str, task_id: str) -> dict:
    """A task's return value, from the metadata database."""
    (value,) = meta.execute("select value from xcom where run_id = %s and task_id = %s and key = 'return_value'",
                            (run_id, task_id)).fetchone()
    return value if isinstance(value, dict) else json.loads(value)


def _trigger_through_api(port: int, dag_id: str) -> str:
    """POST /api/v2/dags/<dag_id>/dagRuns with no logical date; the new run's id."""
    import httpx

    base = f"http://127.0.0.1:{port}"
    token = httpx.get(f"{base}/auth/token", timeout=30).json()["access_token"]  # all-admins test auth
    response = httpx.post(f"{base}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None},
                          headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert response.status_code == 200, response.text
    return str(response.json()["dag_run_id"])


def test_the_scheduler_runs_a_source_dag_end_to_end(metadata_db, village, onenet_env, tmp_path):
    with_merge = hasattr(pipeline, "merge")
    if with_merge:
        # The other three sources staged already (directly, in this process), so that the merge the
        # grid registry's Asset event triggers has every source to resolve.
        for source in ("hotline", "city_cases", "health_codes"):
            pipeline.sync(source)
            pipeline.validate(source)
    began = time.monotonic()
    port = _free_port()
    warehouse = onenet_env
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "ONENET_"))}
    env.update(orch.airflow_env(tmp_path / "airflow", DAGS,
                                f"postgresql+psycopg2://{PG}/{metadata_db}"))
    env.update({
        # Airflow 3 also opens the metadata database asynchronously: psycopg 3 does both.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+psycopg://{PG}/{metadata_db}",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        # A loaded 2-core test machine: give the workers' calls to the execution API time.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
        "ONENET_DISTRICT": str(village.root),
        "ONENET_WAREHOUSE": str(warehouse),
        "ONENET_GX_DIR": str(tmp_path / "gx"),
    })
    # The group robot staff read, on loopback: the 07:00 extract's deadline alert comes here.
    from tests.dags.test_alerts import Robot

    robot = Robot()
    env["AIRFLOW_CONN_ONENET_ALERTS"] = robot.uri()
    logs = tmp_path / "logs"
    logs.mkdir()
    airflow = Airflow(env, logs)
    try:
        airflow.cli("db", "migrate", timeout=180)
        airflow.cli("pools", "set", orch.POOL, "1", orch.POOL_DESCRIPTION)
        migrated = time.monotonic()
        deadline = migrated + TIMEOUT  # from the start of the components to the end of the runs
        airflow.start("api-server", "api-server")
        airflow.start("dag-processor", "dag-processor")
        airflow.start("scheduler", "scheduler")
        meta = _pg(metadata_db)

        def parsed():
            return meta.execute("select 1 from dag where dag_id = %s", (DAG_ID,)).fetchone()

        _wait(f"the dag-processor to parse {DAG_ID}", parsed, airflow, deadline)
        was_parsed = time.monotonic()
        run_id = f"onenet_test_{secrets.token_hex(3)}"
        # As the README shows it: no logical date, so the run has only its run_after.
        airflow.cli("dags", "trigger", DAG_ID, "--run-id", run_id)
        # Unpausing also lets the scheduler create the run of the latest nightly interval (catchup
        # is off): two runs, one after the other (max_active_runs=1), the second landing nothing.
        airflow.cli("dags", "unpause", "--treat-dag-id-as-regex", "-y",
                    f"^({DAG_ID}|onenet_merge)$" if with_merge else f"^{DAG_ID}$")

        def settled():
            states = dict(meta.execute("select run_id, state from dag_run where dag_id = %s",
                                       (DAG_ID,)).fetchall())
            done = states.get(run_id) in ("success", "failed") and all(
                st in ("success", "failed") for st in states.values())
            return states if done else None

        states = _wait(f"run {run_id} to finish", settled, airflow, deadline, every=2.0)
        tis = meta.execute("select run_id, task_id, state from task_instance where dag_id = %s",
                           (DAG_ID,)).fetchall()
        task_logs = "\n".join(p.read_text(errors="replace")[-2000:]
                              for p in (tmp_path / "airflow" / "logs").rglob("*.log") if DAG_ID in str(p))
        assert set(states.values()) == {"success"}, f"{states}\n{tis}\n{task_logs}\n{airflow.tail('scheduler')}"
        mine = {task: st for rid, task, st in tis if rid == run_id}
        assert mine["sync"] == "success" and mine["validate"] == "success"
        # The manual run has no logical date; its sync covered up to its run_after.
        logical_date, run_after = meta.execute("select logical_date, run_after from dag_run where run_id = %s",
                                               (run_id,)).fetchone()
        assert logical_date is None
        synced = _xcom(meta, run_id, "sync")
        assert datetime.fromisoformat(synced["data_interval"][1]) == run_after, (synced, run_after)
        assert synced["day"] == orch.run_interval("0 0 * * *", None, None, run_after)[0].astimezone(
            orch.BEIJING).date().isoformat()
        # Exactly one run published (the one that landed the rows); the other found nothing new.
        published = [rid for rid, task, st in tis if task == "publish" and st == "success"]
        assert len(published) == 1 and all(st in ("success", "skipped") for _, t, st in tis if t == "publish")
        events = meta.execute(
            "select e.extra, e.source_run_id from asset_event e join asset a on a.id = e.asset_id "
            "where a.uri = %s", (orch.asset_uri("grid_registry"),)).fetchall()
        extras = [e if isinstance(e, dict) else json.loads(e) for e, _ in events]
        assert [rid for _, rid in events] == published, events
        assert set(extras[0]["tables"]) == set(orch.STAGED_TABLES["grid_registry"])
        ran = time.monotonic()
        if with_merge:
            # The Asset event of grid_registry triggers the merge DAG (scheduled on the staging Assets).
            def merged():
                row = meta.execute("select state, run_type from dag_run where dag_id = 'onenet_merge' "
                                   "and state in ('success', 'failed')").fetchone()
                return row
            merge_state, run_type = _wait("the Asset-triggered merge", merged, airflow, deadline, every=2.0)
            assert (merge_state, run_type) == ("success", "asset_triggered"), airflow.tail("scheduler")
        merged_at = time.monotonic()
        # The REST API, as a script or the UI calls it: a run without a logical date. It finds nothing new.
        api_run = _trigger_through_api(port, DAG_ID)
        def api_done():
            row = meta.execute("select state, logical_date, run_type from dag_run where run_id = %s",
                               (api_run,)).fetchone()
            return row if row and row[0] in ("success", "failed") else None
        api_state, api_logical, api_type = _wait(f"the REST-triggered run {api_run}", api_done, airflow, deadline)
        api_tis = dict(meta.execute("select task_id, state from task_instance where run_id = %s",
                                    (api_run,)).fetchall())
        assert (api_state, api_logical, api_type) == ("success", None, "manual"), (api_tis, airflow.tail("scheduler"))
        assert api_tis == {"sync": "success", "validate": "success", "publish": "skipped"}
        assert _xcom(meta, api_run, "sync")["rows_landed"] == 0
        rest_done = time.monotonic()
        # The 07:00 extract's deadline (its logical date + 1 h): a run of two hours ago, left queued on
        # the paused DAG, has missed it; the scheduler queues the callback, the LocalExecutor runs it.
        from datetime import UTC, timedelta

        seven = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
        airflow.cli("dags", "trigger", "onenet_daily_extract", "--logical-date", seven.isoformat())

        def alerted():
            return [t for t in robot.texts() if "未按时完成" in t]
        (text,) = _wait("the deadline alert of onenet_daily_extract", alerted, airflow, deadline, every=2.0)
        assert "DAG：onenet_daily_extract" in text and "07:00 社区日报导出：截至" in text, text
        finished_at = time.monotonic()
    finally:
        airflow.stop()
        robot.close()

    # The tasks ran in worker processes; the warehouse holds what they landed and validated.
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        raw = con.execute("select count(*) from raw.grid_registry_residents").fetchone()[0]
        staged = con.execute("select count(*) from staging.grid_registry_residents").fetchone()[0]
        quarantined = con.execute(
            "select count(*) from meta.quarantine where source = 'grid_registry' and entity = 'residents'").fetchone()[0]
        loads = con.execute("select count(*) from meta.loads where source = 'grid_registry' "
                            "and status <> 'succeeded'").fetchone()[0]
    finally:
        con.close()
    assert raw > 0 and staged > 0 and staged + quarantined >= raw
    assert loads == 0, "every grid_registry load succeeded"
    assert extras[0]["rows_landed"] == con_rows(warehouse)
    if with_merge:
        con = duckdb.connect(str(warehouse), read_only=True)
        try:
            assert con.execute("select count(*) from core.person_source").fetchone()[0] > 0
        finally:
            con.close()
    print(f"\nreal scheduler: migrate {migrated - began:.1f} s, parsed after {was_parsed - migrated:.1f} s, "
          f"trigger to both runs done {ran - was_parsed:.1f} s, merge {merged_at - ran:.1f} s, "
          f"REST-triggered run {rest_done - merged_at:.1f} s, deadline alert {finished_at - rest_done:.1f} s, "
          f"total {time.monotonic() - began:.1f} s; residents raw {raw}, staged {staged}")
