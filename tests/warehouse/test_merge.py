"""`merge` end to end on the real pipeline's village: quality against truth, idempotence, one transaction,
stable ids across an incremental day."""

from __future__ import annotations

import os

import pytest

from bench.resolution_input import truth_pairs_sql
from warehouse import db, models
from warehouse.merge import MergeError, merge


# Every core and mart table, by content: two merges of the same staged data must agree on all of them.
def _checksums(con) -> dict[str, tuple]:
    tables = [f"{s}.{t}" for s, t in con.execute(
        "select schema_name, table_name from duckdb_tables() where schema_name in ('core', 'mart') "
        "order by 1, 2").fetchall()]
    assert len(tables) >= 15
    return {t: con.execute(f"select count(*), sum(hash(columns(*))) from (select * from {t})").fetchone()
            for t in tables}


@pytest.fixture
def con(village_warehouse):
    c = db.connect(village_warehouse)
    yield c
    c.close()


def test_person_resolution_against_truth(con, village):
    merge(con)
    tp, predicted, actual, clusters, persons, records = con.execute(
        truth_pairs_sql("staging.stg_person_records", village[0] / "truth", "core.person_source")).fetchone()
    precision, recall = tp / predicted, tp / actual
    assert records == con.execute("select count(*) from staging.stg_person_records").fetchone()[0]
    assert precision >= 0.995, (precision, recall)
    assert recall >= 0.98, (precision, recall)
    # Different valid IDs never share a person.
    assert con.execute("""select count(*) from (select person_id from core.person_source ps
                          join staging.stg_person_records r using (record_uid) where r.id_std is not null
                          group by person_id having count(distinct r.id_std) > 1)""").fetchone()[0] == 0


def test_two_merges_give_identical_core_and_marts(con):
    first = merge(con)
    before = _checksums(con)
    second = merge(con)
    assert _checksums(con) == before
    assert first.persons == second.persons and first.incidents == second.incidents
    runs = con.execute("select status, persons from meta.merge_runs order by started_at").fetchall()
    assert runs == [("succeeded", first.persons), ("succeeded", first.persons)]


def test_a_failing_step_commits_nothing(con, monkeypatch):
    merge(con)
    before = _checksums(con)

    def broken(_con):
        raise RuntimeError("simulated failure in the marts")

    monkeypatch.setattr(models, "build_marts", broken)
    with pytest.raises(MergeError, match="step marts.*nothing was committed"):
        merge(con)
    assert _checksums(con) == before
    assert con.execute("select status, message like '%simulated failure%' from meta.merge_runs "
                       "order by started_at desc limit 1").fetchone() == ("failed", True)


def _stage_until(root, warehouse, gx, day: int) -> None:
    """Move the village's silos to `day`, then sync and validate every source into `warehouse`."""
    from onenet import pipeline
    from onenet.settings import environment
    from simulators import runner
    from simulators.health_codes import drop
    from tests.warehouse.village import PORTS

    with environment(ONENET_DISTRICT=str(root), ONENET_WAREHOUSE=str(warehouse), ONENET_GX_DIR=str(gx),
                     AIRFLOW_CONN_ONENET_HEALTH_CODES=f"file://{root / 'health_codes' / 'drop'}?stable_seconds=0"):
        runner.up(root, ports=PORTS)
        try:
            runner.advance(root, day)
            drop.deliver_until(root, day)
            for source in pipeline.SOURCES:
                pipeline.sync(source)
                pipeline.validate(source)
        finally:
            runner.down(root)


def test_person_ids_survive_an_incremental_day(tmp_path):
    """Day 10 merged, then days 11-29 synced and merged: yesterday's persons keep their ids."""
    from tests.warehouse.village import build_village

    root, warehouse = build_village(tmp_path, residents=2000, seed=3, to_day=10)
    c = db.connect(warehouse)
    merge(c)
    before = dict(c.execute("select record_uid, person_id from core.person_source").fetchall())
    c.close()
    _stage_until(root, warehouse, tmp_path / "gx", 29)
    c = db.connect(warehouse)
    try:
        summary = merge(c)
        after = dict(c.execute("select record_uid, person_id from core.person_source").fetchall())
        kept = sum(1 for uid, pid in before.items() if after.get(uid) == pid)
        assert len(after) > len(before)  # new records arrived
        assert kept / len(before) >= 0.995, (kept, len(before))
        changes = c.execute("select change, count(*) from meta.person_id_changes group by all").fetchall()
        assert summary.persons > 0 and changes  # new persons (at least) are recorded
    finally:
        c.close()
    assert os.environ.get("ONENET_WAREHOUSE") != str(warehouse)  # the environment was restored


def test_a_source_never_validated_does_not_stop_the_merge_and_joins_later(con, tmp_path):
    from expectations import runner

    hotline_loads = [r[0] for r in con.execute("select load_id from meta.loads where source = 'hotline'").fetchall()]
    con.execute("drop table staging.hotline_tickets")
    con.execute(f"delete from meta.validated_loads where load_id in ({', '.join('?' * len(hotline_loads))})",
                hotline_loads)
    summary = merge(con)
    assert "hotline.tickets" not in summary.records_per_source and summary.persons > 0
    results = runner.validate(con, "hotline", tmp_path / "gx")
    assert sum(r.rows_passed for r in results) > 0
    again = merge(con)
    assert again.records_per_source["hotline.tickets"] == sum(r.rows_passed for r in results)


# --- the next day: staging and persons are refreshed for what arrived, not rebuilt ---

def _staging_checksums(con) -> dict[str, tuple]:
    from warehouse.standardise.build import MODELS

    return {m: con.execute(f"select count(*), sum(hash(columns(*))) from staging.{m}").fetchone() for m in MODELS}


@pytest.fixture(scope="module")
def next_day(tmp_path_factory):
    """(warehouse merged on day 10 with day 11 synced and validated on top, gx folder)."""
    from tests.warehouse.village import build_village

    folder = tmp_path_factory.mktemp("next_day")
    root, warehouse = build_village(folder, residents=2000, seed=5, to_day=10)
    c = db.connect(warehouse)
    merge(c)
    c.close()
    _stage_until(root, warehouse, folder / "gx", 11)
    return warehouse


def test_next_day_staging_refresh_equals_a_full_rebuild(next_day, tmp_path):
    from tests.warehouse.village import copy_warehouse
    from warehouse.standardise import build_staging

    results = {}
    for name, full in (("incremental", False), ("full", True)):
        c = db.connect(copy_warehouse(next_day, tmp_path / f"{name}.duckdb"))
        try:
            info: dict[str, str] = {}
            with db.transaction(c):
                build_staging(c, full=full, info=info)
            assert info["mode"] == name, info
            results[name] = _staging_checksums(c)
            # A second build finds nothing new and changes nothing.
            with db.transaction(c):
                build_staging(c, info=info)
            assert info == {"mode": "incremental", "why": "0 new input rows"}
            assert _staging_checksums(c) == results[name]
        finally:
            c.close()
    assert results["incremental"] == results["full"]


def test_next_day_merge_is_incremental_and_agrees_with_a_full_one(next_day, tmp_path):
    from tests.warehouse.village import copy_warehouse

    assignments = {}
    for name, full in (("incremental", False), ("full", True)):
        c = db.connect(copy_warehouse(next_day, tmp_path / f"{name}.duckdb"))
        try:
            summary = merge(c, full=full)
            assert summary.resolve_mode == name
            assignments[name] = dict(c.execute("select record_uid, person_id from core.person_source").fetchall())
        finally:
            c.close()
    inc, full_run = assignments["incremental"], assignments["full"]
    assert inc.keys() == full_run.keys()
    same = sum(1 for uid, pid in inc.items() if full_run[uid] == pid)
    assert same >= 0.995 * len(inc)


def test_next_day_core_refresh_equals_a_full_rebuild(next_day, tmp_path):
    """Person-keyed core models refreshed for the touched persons equal a rebuild from scratch."""
    from tests.warehouse.village import copy_warehouse

    c = db.connect(copy_warehouse(next_day, tmp_path / "w.duckdb"))
    try:
        summary = merge(c)
        assert (summary.staging_mode, summary.resolve_mode) == ("incremental", "incremental")
        touched = c.execute("select count(*) from touched_persons").fetchone()[0]
        assert 0 < touched < 0.5 * summary.persons
        refreshed = _checksums(c)
        with db.transaction(c):
            models.build_core(c)
            models.build_marts(c)
        assert _checksums(c) == refreshed
    finally:
        c.close()


def test_new_model_sql_rebuilds_its_layer_instead_of_refreshing(next_day, tmp_path):
    """Rows kept from an earlier build must come from the same SQL: a changed layer is rebuilt."""
    from tests.warehouse.village import copy_warehouse

    c = db.connect(copy_warehouse(next_day, tmp_path / "w.duckdb"))
    try:
        c.execute("update meta.model_versions set fingerprint = 'older-sql' where layer in ('staging', 'core')")
        summary = merge(c)
        assert summary.staging_mode == "full"
        refreshed = _checksums(c)
        assert c.execute("select count(*) from meta.model_versions where fingerprint = 'older-sql'").fetchone()[0] == 0
        with db.transaction(c):
            models.build_core(c)
            models.build_marts(c)
        assert _checksums(c) == refreshed
    finally:
        c.close()
