"""Celery settings for onenet's Airflow workers: Airflow's own, plus the tasks' imports done once.

An Airflow 3 Celery worker forks every task from its pool process (the task SDK's supervisor forks
the task), so whatever the worker imported before its pool started is already in every task. A
fresh interpreter would import it again: Great Expectations alone costs a validate task 2-4 s on
two cores, and a city's initial load runs 56 tasks. `warm_imports` runs once per worker, on
Celery's `worker_init` signal (the worker's main process, before the pool forks), so the scheduler
and the API server, which read this module too, import nothing more.

Point Airflow at it with AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=onenet.celery_worker.CELERY_CONFIG
(docker-compose.yml does).
"""

from __future__ import annotations

import gc
import importlib
import logging
import time
from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

log = logging.getLogger(__name__)

# Airflow's own object, not a copy: its per-team configuration is applied only when this is it.
CELERY_CONFIG: dict[str, Any] = DEFAULT_CELERY_CONFIG

# What the source and merge tasks import when they run (onenet/dag_factory.py's task bodies):
# the pipeline and its connectors, Great Expectations, the merge and publishing.
WARM_MODULES = (
    "onenet.dag_factory",
    "onenet.orchestration",
    "onenet.pipeline",
    "connectors.grid_registry",
    "connectors.health_codes",
    "connectors.hotline",
    "connectors.city_cases",
    "expectations.runner",
    "warehouse.merge",
    "warehouse.publish",
)


@worker_init.connect
def warm_imports(**_: Any) -> list[str]:
    """Import WARM_MODULES in the worker; return them. A module that fails to import is logged and
    skipped: the task that needs it then fails with the real error, where it can be read."""
    began, done = time.monotonic(), []
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a warm-up must never stop the worker
            log.exception("onenet: could not pre-import %s; tasks will import it themselves", name)
        else:
            done.append(name)
    # As Airflow's own pre-imports do: kept out of the collector's reach so the forked pool process
    # and its tasks do not copy these pages by collecting them (Airflow unfreezes the main process
    # when the worker is ready).
    gc.freeze()
    log.info("onenet: %d task modules imported in %.1f s before the pool starts", len(done),
             time.monotonic() - began)
    return done
