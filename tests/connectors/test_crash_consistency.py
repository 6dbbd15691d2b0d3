"""A sync killed with SIGKILL at random points, then re-run, equals one clean run; state never runs ahead."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from simulators.district.generate import generate

SYNC = "from onenet import pipeline; [pipeline.sync(s) for s in ('grid_registry', 'health_codes')]"
TRIALS = 6


@pytest.fixture(scope="module")
def village(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash") / "district"
    generate(root, residents=3000, seed=4, days=6)
    from simulators.health_codes import drop
    drop.deliver_until(root, 3)
    return root


def _env(village, warehouse):
    return {**os.environ, "ONENET_DISTRICT": str(village), "ONENET_WAREHOUSE": str(warehouse),
            # Files in the drop folder are complete here: no need to wait for them to settle.
            "AIRFLOW_CONN_ONENET_HEALTH_CODES": f"file://{village / 'health_codes' / 'drop'}?stable_seconds=0"}


def _run(village, warehouse, kill_after: float | None = None) -> int:
    proc = subprocess.Popen([sys.executable, "-c", SYNC], env=_env(village, warehouse),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if kill_after is None:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
        return 0
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.returncode


def _fingerprint(warehouse) -> dict:
    """Raw rows per table by (key columns, record hash), and the saved state; load ids excluded."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        tables = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw' order by 1").fetchall()]
        raw = {t: con.execute(f"select count(*), count(distinct _record_hash), "
                              f"sum(hash(_record_hash, _source_position)) from raw.{t}").fetchall()[0]
               for t in tables}
        state = {(s, e): json.loads(st).get("watermark") for s, e, st in
                 con.execute("select source, entity, state from meta.source_state").fetchall()}
        return {"raw": raw, "state": state}
    finally:
        con.close()


def _state_not_ahead(warehouse) -> None:
    """Every saved state belongs to a load whose rows are all in raw (or that landed nothing)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        migrated = con.execute("select count(*) from information_schema.tables "
                               "where table_schema = 'meta' and table_name = 'source_state'").fetchall()[0][0]
        if not migrated:  # killed while the warehouse was being created: no state, nothing ahead
            return
        for source, entity, load_id in con.execute("select source, entity, load_id from meta.source_state").fetchall():
            landed = con.execute("select rows_landed, status from meta.loads where load_id = ?", [load_id]).fetchall()
            assert landed and landed[0][1] == "succeeded", (source, entity, landed)
            if landed[0][0]:
                n = con.execute(f"select count(*) from raw.{source}_{entity} where _load_id = ?", [load_id]).fetchall()
                assert n[0][0] == landed[0][0], (source, entity)
    finally:
        con.close()


def test_killed_syncs_recover_to_one_clean_run(village, tmp_path):
    clean = tmp_path / "clean.duckdb"
    started = time.perf_counter()
    _run(village, clean)
    duration = time.perf_counter() - started
    expected = _fingerprint(clean)
    assert expected["raw"] and all(v[0] > 0 for v in expected["raw"].values())

    rng = random.Random(20261124)
    for trial in range(TRIALS):
        warehouse = tmp_path / f"trial{trial}.duckdb"
        # Spread the kills over the whole run: start-up, extraction, landing, state.
        _run(village, warehouse, kill_after=rng.uniform(0.2, duration * 1.1))
        if warehouse.exists():
            _state_not_ahead(warehouse)
        _run(village, warehouse)
        assert _fingerprint(warehouse) == expected, f"trial {trial}"
