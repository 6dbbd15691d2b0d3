"""A validated village warehouse built through the real pipeline: silos on loopback, sync, validate."""

from __future__ import annotations

import shutil
from pathlib import Path

from onenet.settings import environment
from simulators.district.generate import generate

# Ports apart from the demo's defaults, so tests never talk to a developer's running silos.
PORTS = {"hotline": 0, "city_cases": 0}


def build_village(folder: Path, *, residents: int = 2000, seed: int = 1, days: int = 30,
                  to_day: int = 29) -> tuple[Path, Path]:
    """Generate a village, move its silos to `to_day`, sync and validate every source.

    Returns (district root, warehouse path). The district's ground truth is in root/truth/.
    """
    from onenet import pipeline
    from simulators import runner

    root = folder / "district"
    warehouse = folder / "warehouse.duckdb"
    generate(root, residents=residents, seed=seed, days=days)
    with environment(ONENET_DISTRICT=str(root), ONENET_WAREHOUSE=str(warehouse),
              ONENET_GX_DIR=str(folder / "gx"),
              AIRFLOW_CONN_ONENET_HEALTH_CODES=f"file://{root / 'health_codes' / 'drop'}?stable_seconds=0"):
        runner.up(root, ports=PORTS)
        try:
            runner.advance(root, to_day)
            from simulators.health_codes import drop
            drop.deliver_until(root, to_day)
            for source in pipeline.SOURCES:
                pipeline.sync(source)
            for source in pipeline.SOURCES:
                pipeline.validate(source)
        finally:
            runner.down(root)
    return root, warehouse


def copy_warehouse(warehouse: Path, to: Path) -> Path:
    """A private copy of a built warehouse, so a test may write to it."""
    to.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(warehouse, to)
    return to
