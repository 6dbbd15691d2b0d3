"""The divergence corpus (tests/data/divergence): after one scheduled sync and one reconciliation,
every key's current state in raw and staging is the source's, and every divergence was reported
with its kind — on a generated village, its silos on loopback, a real DuckDB warehouse."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from connectors.common.landing import current_versions_sql
from connectors.common.reconcile import KINDS
from onenet import orchestration, pipeline
from onenet.settings import environment
from simulators import runner
from simulators.district.generate import generate
from tests.warehouse.village import PORTS
from warehouse import db
from warehouse.standardise import build_staging

CORPUS = Path(__file__).resolve().parents[1] / "data" / "divergence"
RECONCILED = ("grid_registry", "hotline", "city_cases")
# Staging's latest-version models and their keys, by raw table.
MODELS = {
    "grid_registry.residents": ("stg_grid_registry__residents", "resident_id"),
    "grid_registry.special_groups": ("stg_grid_registry__special_groups", "resident_id || ',' || group_type"),
    "grid_registry.households": ("stg_grid_registry__households", "household_id"),
    "grid_registry.grid_workers": ("stg_grid_registry__grid_workers", "worker_id"),
    "grid_registry.grids": ("stg_grid_registry__grids", "grid_code"),
    "hotline.tickets": ("stg_hotline__tickets", "ticket_id"),
    "city_cases.cases": ("stg_city_cases__cases", "case_id"),
}


def _corpus():
    spec = importlib.util.spec_from_file_location("divergence_apply", CORPUS / "apply.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A village through a day of the pipeline with the corpus applied; the findings and the warehouse."""
    apply = _corpus()
    folder = tmp_path_factory.mktemp("divergence")
    root, warehouse = folder / "district", folder / "warehouse.duckdb"
    generate(root, residents=2500, seed=7, days=14)
    found: dict[str, list[str]] = {}
    with environment(ONENET_DISTRICT=str(root), ONENET_WAREHOUSE=str(warehouse), ONENET_GX_DIR=str(folder / "gx")):
        runner.up(root, ports=PORTS)
        try:
            runner.advance(root, 10)
            for source in RECONCILED:
                pipeline.sync(source)
                pipeline.validate(source)
            _staging(warehouse, full=True)
            found |= apply.phase1(root, warehouse)
            for source in RECONCILED:  # an earlier nightly reconciliation lands the phase-1 versions
                pipeline.reconcile(source)
            runner.advance(root, 11)
            for source in RECONCILED:
                pipeline.sync(source)
            found |= apply.phase2(root, warehouse)
            synced = {source: pipeline.sync(source) for source in RECONCILED}  # the scheduled sync
            found |= apply.phase3(root, warehouse)
            started = datetime.now(UTC)
            with _open(warehouse) as con:
                before = con.execute("select coalesce(max(finished_at), now()) from meta.reconciliations").fetchone()[0]
            # What the reconciliation DAG's task runs, then validation as in that DAG.
            reports = {s: orchestration.reconcile_source(s, started, started) for s in RECONCILED}
            for source in RECONCILED:
                pipeline.validate(source)
            info = _staging(warehouse, full=False)
            until = datetime.now(UTC)
            again = {s: pipeline.reconcile(s) for s in RECONCILED}
        finally:
            runner.down(root)
    incremental = folder / "incremental.duckdb"
    shutil.copyfile(warehouse, incremental)
    _staging(warehouse, full=True)
    return {"root": root, "warehouse": warehouse, "incremental": incremental, "found": found,
            "synced": synced, "reports": reports, "again": again, "since": before, "until": until, "staging": info}


def _open(path: Path) -> duckdb.DuckDBPyConnection:
    return db.connect(path)


def _staging(warehouse: Path, *, full: bool) -> dict[str, str]:
    info: dict[str, str] = {}
    with _open(warehouse) as con, db.transaction(con):
        build_staging(con, full=full, info=info)
    return info


def test_every_case_is_reported_with_its_kind_and_nothing_else(run):
    cases = _corpus().CASES
    assert set(run["found"]) == set(cases), "every case of cases.toml was applied"
    expected = {(keys[0], key, cases[case]["expected"]) for case, keys in run["found"].items() for key in keys[1:]
                if cases[case]["expected"] not in ("cursor", "future_dated")}
    with duckdb.connect(str(run["warehouse"]), read_only=True) as con:
        reported = set(con.execute(
            "select k.source || '.' || k.entity, k.record_key, k.kind from meta.reconciliation_keys k "
            "join meta.reconciliations r using (reconciliation_id) where r.started_at between ? and ?",
            [run["since"], run["until"]]).fetchall())
        runs = con.execute("select source, entity, status from meta.reconciliations where started_at between ? and ? "
                           "order by all", [run["since"], run["until"]]).fetchall()
    assert reported == expected
    assert {kind for _, _, kind in expected} == set(KINDS), "the corpus covers every kind"
    assert all(status == "succeeded" for _, _, status in runs) and len(runs) == 7
    # The DAG task's report counts the same findings.
    counted = {}
    for report in run["reports"].values():
        for kind, n in report["found"].items():
            counted[kind] = counted.get(kind, 0) + n
    assert counted == {kind: sum(1 for e in expected if e[2] == kind) for kind in KINDS}


def test_the_cursor_cases_landed_with_the_scheduled_sync(run):
    cases = _corpus().CASES
    cursor = [keys for case, keys in run["found"].items() if cases[case]["expected"] in ("cursor", "future_dated")]
    assert cursor
    with duckdb.connect(str(run["warehouse"]), read_only=True) as con:
        for source_entity, *keys in cursor:
            source, entity = source_entity.split(".")
            loads = [r.load_id for r in run["synced"][source] if r.entity == entity]
            for key in keys:
                assert con.execute(f"select count(*) from raw.{source}_{entity} where resident_id = ? "
                                   "and _load_id = ?", [key, loads[0]]).fetchone() == (1,)


def test_a_registry_clock_ahead_moves_no_cursor_and_is_recorded_for_the_silo(run):
    from connectors.common.freshness import TOLERANCE

    cases = _corpus().CASES
    ahead = [(case, keys) for case, keys in run["found"].items() if cases[case]["expected"] == "future_dated"]
    assert ahead
    with duckdb.connect(str(run["warehouse"]), read_only=True) as con:
        for _, (source_entity, *keys) in ahead:
            source, entity = source_entity.split(".")
            [load] = [r for r in run["synced"][source] if r.entity == entity]
            finished = con.execute("select finished_at from meta.loads where load_id = ?",
                                   [load.load_id]).fetchone()[0]
            assert datetime.fromisoformat(load.watermark_after) <= finished + TOLERANCE
            state = con.execute("select state from meta.source_state where source = ? and entity = ?",
                                [source, entity]).fetchone()[0]
            assert datetime.fromisoformat(json.loads(state)["updated_at"]) <= datetime.now(UTC) + TOLERANCE
            recorded = con.execute("select reconciliation_id, record_key from meta.reconciliation_keys "
                                   "where kind = 'future_dated' and source = ? and entity = ?",
                                   [source, entity]).fetchall()
            assert recorded == [(load.load_id, key) for key in keys]


def test_raw_converged_a_second_reconciliation_finds_nothing(run):
    for source, results in run["again"].items():
        for r in results:
            assert r.rows_landed == 0 and set(r.reconciled.values()) == {0}, (source, r.entity, r.reconciled)


def _current(con, source_entity: str) -> tuple[dict[str, str], set[str]]:
    """raw's current record hash per key (a tombstone's is 'tombstone'), and the keys whose current
    version validation quarantined (staging keeps their previous version: left out of the comparison)."""
    from connectors import city_cases, grid_registry, hotline

    source, entity = source_entity.split(".")
    ent = {"grid_registry": lambda: grid_registry.settings.ENTITIES[entity],
           "hotline": lambda: hotline.settings.TICKETS, "city_cases": lambda: city_cases.settings.CASES}[source]()
    key = MODELS[source_entity][1]
    rows = con.execute(f"""
        with c as ({current_versions_sql(ent)})
        select {key}, c._record_hash, exists (
            select 1 from meta.quarantine q where q.load_id = r._load_id and q.position = r._source_position
            and q.stage = 'validate') as quarantined
        from c
        join raw.{source}_{entity} r using ({", ".join(ent.key)}, _record_hash)
    """).fetchall()
    return {k: h for k, h, q in rows if not q}, {k for k, _, q in rows if q}


@pytest.mark.parametrize("built", ["incremental", "full"])
def test_staging_holds_the_source_current_state_key_by_key(run, built):
    # The merge after the reconciliation refreshed staging for the changed keys only.
    assert run["staging"]["mode"] == "incremental", run["staging"]
    path = run["incremental"] if built == "incremental" else run["warehouse"]
    with duckdb.connect(str(path), read_only=True) as con:
        for source_entity, (model, key) in MODELS.items():
            raw, held = _current(con, source_entity)
            live = {k: h for k, h in raw.items() if h != "tombstone"}
            staged = {k: h for k, h in con.execute(f"select {key}, _record_hash from staging.{model}").fetchall()
                      if k not in held}
            if source_entity == "grid_registry.residents":
                gone = {k for k, h in raw.items() if h == "tombstone"}
                hard = {r[0] for r in con.execute(f"select {key} from staging.{model} where is_hard_deleted "
                                                  "and is_deleted").fetchall()}
                assert hard == gone and gone, built
                staged = {k: h for k, h in staged.items() if k not in gone}
            assert staged == live, (built, source_entity)


def test_the_cases_read_as_the_source_says(run):
    root, found = run["root"], run["found"]
    memo = _corpus()._memo(root)
    with duckdb.connect(str(run["warehouse"]), read_only=True) as con:
        ticket = memo["revert_ticket"]
        assert con.execute("select department from staging.stg_hotline__tickets where ticket_id = ?",
                           [ticket["ticket_id"]]).fetchone() == (ticket["department"],)
        for case in ("hotline_phantom", "city_phantom"):
            model, key = MODELS[found[case][0]]
            assert con.execute(f"select count(*) from staging.{model} where {key} = ?",
                               [found[case][1]]).fetchone() == (0,)
        gone = found["registry_hard_delete"][1]
        assert con.execute("select is_deleted, is_hard_deleted from staging.stg_grid_registry__residents "
                           "where resident_id = ?", [gone]).fetchone() == (True, True)
        assert con.execute("select count(*) from staging.stg_grid_registry__special_groups where resident_id = ?",
                           [gone]).fetchone() == (0,)
        with sqlite3.connect(root / "grid_registry" / "registry.sqlite") as lite:
            for case in ("registry_silent_change", "registry_revert_from_backup", "registry_back_dated_update",
                         "registry_insert_older_updated_at", "registry_equal_watermark_lower_key",
                         "registry_future_updated_at"):
                rid = found[case][1]
                source = lite.execute("select name, phone from residents where resident_id = ?", [rid]).fetchone()
                assert con.execute("select name, phone from staging.stg_grid_registry__residents "
                                   "where resident_id = ?", [rid]).fetchone() == source, case
        tickets = pq.read_table(root / "hotline" / "tickets.parquet").to_pylist()
        contents = {t["ticket_id"]: t["content"] for t in tickets}
        for case in ("hotline_silent_change", "hotline_back_dated_update", "hotline_missed_update"):
            tid = found[case][1]
            assert con.execute("select content from staging.stg_hotline__tickets where ticket_id = ?",
                               [tid]).fetchone() == (contents[tid],), case
        # How late the back-dated rows came, for the silo's owner.
        late = con.execute("select record_key, seconds_behind_watermark from meta.reconciliation_keys "
                           "where kind = 'back_dated' and found_at > ?", [run["since"]]).fetchall()
        assert late and all(seconds > 3600 for _, seconds in late)
