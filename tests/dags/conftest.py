"""Airflow for the DAG tests: a private AIRFLOW_HOME with a SQLite metadata database, and a running village.

Airflow reads its configuration when first imported, so the environment is set here, at
collection time, before any test module imports airflow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from onenet import orchestration as orch

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
_HOME = Path(tempfile.mkdtemp(prefix="onenet-airflow-test-"))
os.environ.update(orch.airflow_env(_HOME / "airflow", DAGS))
VILLAGE_DAY = 3  # the simulated day the village's silos have reached


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """The migrated SQLite metadata database (with the onenet_duckdb pool), shared by the session."""
    orch.prepare_airflow(_HOME / "airflow", DAGS)
    yield _HOME / "airflow"
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def dags(airflow_db) -> dict:
    return orch.load_dags(DAGS)


class Village:
    """A generated village whose silos run on free loopback ports, at simulated day VILLAGE_DAY."""

    def __init__(self, root: Path) -> None:
        from simulators import clock

        self.root = root
        self.start = clock.start_date(root)

    def day(self, n: int) -> date:
        return self.start + timedelta(days=n)


@pytest.fixture(scope="session")
def village(tmp_path_factory) -> Iterator[Village]:
    from simulators import runner
    from simulators.district.generate import generate

    root = tmp_path_factory.mktemp("airflow-village") / "district"
    generate(root, residents=2000, seed=1, days=30)
    runner.up(root, ports={"hotline": 0, "city_cases": 0})
    try:
        runner.advance(root, VILLAGE_DAY)
        from simulators.health_codes import drop

        drop.deliver_until(root, VILLAGE_DAY)  # the uploader delivers on its own a moment later
        yield Village(root)
    finally:
        runner.down(root)


@pytest.fixture
def onenet_env(village, tmp_path, monkeypatch) -> Path:
    """A fresh warehouse for this test, pointed at the village (health files read without waiting)."""
    monkeypatch.setenv("ONENET_DISTRICT", str(village.root))
    monkeypatch.setenv("ONENET_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("ONENET_GX_DIR", str(tmp_path / "gx"))
    monkeypatch.setenv("ONENET_EXPORTS", str(tmp_path / "exports"))
    # Each test's own snapshots and access log: what a run published or recorded is the test's alone.
    monkeypatch.setenv("ONENET_PUBLISHED", str(tmp_path / "published"))
    monkeypatch.setenv("ONENET_ACCESS_LOG", str(tmp_path / "audit" / "access-log.jsonl"))
    monkeypatch.delenv("ONENET_SERVING_URL", raising=False)
    drop = village.root / "health_codes" / "drop"
    monkeypatch.setenv("AIRFLOW_CONN_ONENET_HEALTH_CODES", f"{drop.as_uri()}?stable_seconds=0")
    return tmp_path / "warehouse.duckdb"
