"""onenet/celery_worker.py: Airflow's Celery settings kept whole, the tasks' imports done in the worker."""

from __future__ import annotations

import subprocess
import sys

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

from onenet import celery_worker, orchestration
from tests.dags.conftest import REPO


def test_the_config_is_airflows_own():
    assert celery_worker.CELERY_CONFIG is DEFAULT_CELERY_CONFIG  # Airflow applies a team's config only then
    assert orchestration.airflow_env(REPO / "tmp-airflow")["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"] \
        == "onenet.celery_worker.CELERY_CONFIG"


def test_worker_init_imports_what_the_tasks_import():
    """A fresh interpreter, as a worker is: Celery's worker_init signal imports every module, and a
    child forked afterwards (as Airflow forks each task) has them without importing."""
    script = """
import os, sys
from celery.signals import worker_init
import onenet.celery_worker as cw
assert not any(m in sys.modules for m in ("expectations.runner", "warehouse.merge", "great_expectations"))
worker_init.send(sender=None)
pid = os.fork()
if pid == 0:
    missing = [m for m in cw.WARM_MODULES + ("great_expectations", "duckdb") if m not in sys.modules]
    os._exit(1 if missing else 0)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "0"
    assert f"{len(celery_worker.WARM_MODULES)} task modules imported" in done.stdout + done.stderr


def test_a_module_that_fails_to_import_does_not_stop_the_worker(monkeypatch, caplog):
    monkeypatch.setattr(celery_worker, "WARM_MODULES", ("onenet.settings", "onenet.no_such_module"))
    monkeypatch.setattr(celery_worker.gc, "freeze", lambda: None)  # not this test process's collector
    assert celery_worker.warm_imports() == ["onenet.settings"]
    assert "could not pre-import onenet.no_such_module" in caplog.text
