"""Reconciliation of the grid registry (SQLite, PostgreSQL, MariaDB): raw converges to the source,
every divergence is found with its kind; a re-typed column fails its table alone."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors import grid_registry
from connectors.common.config import parse_uri
from connectors.common.exceptions import ConnectorError, SchemaDrift
from connectors.common.landing import current_versions_sql
from connectors.grid_registry import settings
from simulators.grid_registry import database, registry
from tests.connectors import test_grid_registry_connector as base
from tests.connectors.test_grid_registry_connector import (
    CONN_ID,
    airflow_uri,
    registry_file,
    source_rows,
    sqlite_conn,
)

# The registry connector tests' fixtures: a generated village, a private copy, a fresh warehouse,
# throwaway PostgreSQL and MariaDB databases.
village, root, con = base.village, base.root, base.con
postgres_url, mariadb_url = base.postgres_url, base.mariadb_url

SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"


def _ts(at: datetime) -> str:
    return at.astimezone(UTC).strftime(SQLITE_TS)


def _state(con, entity: str) -> dict:
    return json.loads(con.execute("select state from meta.source_state where source = 'grid_registry' "
                                  "and entity = ?", [entity]).fetchone()[0])


def current(con, name: str) -> dict[str, str]:
    """resident_id (or the table's key) -> raw's current record hash, tombstones left out."""
    entity = settings.ENTITIES[name]
    rows = con.execute(f"select {', '.join(entity.key)}, _record_hash from ({current_versions_sql(entity)}) "
                       "where not _is_tombstone").fetchall()
    return {",".join(map(str, r[:-1])): r[-1] for r in rows}


def kinds(con) -> dict[tuple[str, str], str]:
    return {(e, k): kind for e, k, kind in con.execute(
        "select entity, record_key, kind from meta.reconciliation_keys").fetchall()}


def test_a_revert_lands_again_at_sync(root, con):
    """A -> B -> A inside the cursor's reach: landing compares with the current version only."""
    conn = sqlite_conn(root)
    grid_registry.sync(con, conn)
    with sqlite3.connect(registry_file(root)) as lite:
        rid, name, at = lite.execute("select resident_id, name, updated_at from residents "
                                     "order by updated_at desc, resident_id desc limit 1").fetchone()
        lite.execute("update residents set name = '改名' where resident_id = ?", [rid])
    assert {r.entity: r.rows_landed for r in grid_registry.sync(con, conn)}["residents"] == 1
    with sqlite3.connect(registry_file(root)) as lite:
        lite.execute("update residents set name = ? where resident_id = ?", [name, rid])
    assert {r.entity: r.rows_landed for r in grid_registry.sync(con, conn)}["residents"] == 1
    assert con.execute(f"select name from ({current_versions_sql(settings.ENTITIES['residents'])}) c "
                       "join raw.grid_registry_residents r using (resident_id, _record_hash) "
                       "where resident_id = ?", [rid]).fetchone() == (name,)


def _diverge(root: Path, con) -> dict[str, tuple[str, str]]:
    """Apply every registry divergence after a first sync; return {case: (table, key)}."""
    state = _state(con, "residents")
    watermark = datetime.fromisoformat(state["updated_at"])
    cases: dict[str, tuple[str, str]] = {}
    with sqlite3.connect(registry_file(root)) as lite:
        ids = [r[0] for r in lite.execute("select resident_id from residents where resident_id < ? "
                                          "order by resident_id limit 6", [state["key"][0]]).fetchall()]
        lite.execute("delete from residents where resident_id = ?", [ids[0]])
        lite.execute("delete from special_groups where resident_id = ?", [ids[0]])
        cases["hard delete"] = ("residents", ids[0])
        lite.execute("update residents set name = name || '鑫' where resident_id = ?", [ids[1]])
        cases["silent change"] = ("residents", ids[1])
        lite.execute("update residents set phone = '13900000001', updated_at = ? where resident_id = ?",
                     [_ts(watermark - timedelta(days=2)), ids[2]])
        cases["back-dated update"] = ("residents", ids[2])
        row = lite.execute("select * from residents where resident_id = ?", [ids[3]]).fetchone()
        columns = [c[1] for c in lite.execute("pragma table_info(residents)").fetchall()]
        new = dict(zip(columns, row, strict=True)) | {"resident_id": "X-LATE-0001",
                                                       "updated_at": _ts(watermark - timedelta(days=3))}
        lite.execute(f"insert into residents ({', '.join(new)}) values ({', '.join('?' * len(new))})", list(new.values()))
        cases["insert with older updated_at"] = ("residents", "X-LATE-0001")
        # Equal to the saved updated_at, key below the saved key: the inclusive cursor reads it.
        lite.execute("update residents set phone = '13900000002', updated_at = ? where resident_id = ?",
                     [_ts(watermark), ids[4]])
        cases["equal watermark, lower key"] = ("residents", ids[4])
    return cases


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                                     pytest.param("mariadb", marks=pytest.mark.mariadb)])
def test_reconciliation_converges_raw_and_reports_every_kind(backend, request, root, con):
    url = database.sqlite_url(root) if backend == "sqlite" else request.getfixturevalue(f"{backend}_url")

    def connection():
        if backend == "sqlite":
            return sqlite_conn(root)
        registry.load_into(url, root)  # the server copy is a snapshot of the SQLite file
        return parse_uri(CONN_ID, airflow_uri(url))

    grid_registry.sync(con, connection())
    cases = _diverge(root, con)
    synced = {r.entity: r for r in grid_registry.sync(con, connection())}
    # The scheduled sync catches only the equal-watermark update; the cursor cannot see the rest.
    assert synced["residents"].rows_landed == 1
    with sqlite3.connect(registry_file(root)) as lite:  # a change after the sync, before reconciling
        lite.execute("update residents set phone = '13900000003', updated_at = ? where resident_id = "
                     "(select max(resident_id) from residents where resident_id < 'X')",
                     [_ts(datetime.now(UTC))])
        missed = lite.execute("select max(resident_id) from residents where resident_id < 'X'").fetchone()[0]
        name, rid = lite.execute("select name, resident_id from residents where resident_id = ?",
                                 [cases["silent change"][1]]).fetchone()
    results = {r.entity: r for r in grid_registry.reconcile(con, connection())}
    found = kinds(con)
    assert found[("residents", cases["hard delete"][1])] == "hard_delete"
    assert found[("residents", cases["silent change"][1])] == "silent_change"
    assert found[("residents", cases["back-dated update"][1])] == "back_dated"
    assert found[("residents", cases["insert with older updated_at"][1])] == "back_dated"
    assert found[("residents", missed)] == "missed_update"
    assert ("residents", cases["equal watermark, lower key"][1]) not in found  # the cursor had it
    sg_deleted = [k for (e, k), kind in found.items() if e == "special_groups"]
    assert all(found[("special_groups", k)] == "hard_delete" for k in sg_deleted)
    assert results["residents"].reconciled == {"missed_update": 1, "back_dated": 2, "silent_change": 1,
                                               "revert": 0, "hard_delete": 1, "phantom": 0}
    assert results["residents"].rows_landed == 5  # four versions and one tombstone
    assert sum(r.reconciled["hard_delete"] for r in results.values()) == 1 + len(sg_deleted)
    # How far behind the watermark the late rows arrived: two and three days.
    behind = dict(con.execute("select record_key, seconds_behind_watermark from meta.reconciliation_keys "
                              "where kind = 'back_dated' and entity = 'residents'").fetchall())
    assert behind == {cases["back-dated update"][1]: 2 * 86400.0, "X-LATE-0001": 3 * 86400.0}
    run = con.execute("select status, source_keys, raw_keys, back_dated, hard_delete from meta.reconciliations "
                      "where entity = 'residents'").fetchall()
    assert run == [("succeeded", source_rows(url, "residents").num_rows, source_rows(url, "residents").num_rows,
                    2, 1)]
    # Raw's current state is the source's, key by key; a second run finds and lands nothing.
    again = grid_registry.reconcile(con, connection())
    assert [r.rows_landed for r in again] == [0] * len(settings.TABLES)
    assert all(set(r.reconciled.values()) == {0} for r in again)
    assert cases["hard delete"][1] not in current(con, "residents")
    assert con.execute("select name from raw.grid_registry_residents where resident_id = ? "
                       "order by rowid desc limit 1", [rid]).fetchone() == (name,)
    assert len(current(con, "residents")) == source_rows(url, "residents").num_rows
    # The cursor did not move: a reconciliation is no sync.
    assert _state(con, "residents")["updated_at"] == _state(con, "residents")["watermark"]


@pytest.mark.parametrize("server", [pytest.param("postgres", marks=pytest.mark.postgres),
                                    pytest.param("mariadb", marks=pytest.mark.mariadb)])
def test_a_server_hashes_its_rows_and_only_rows_that_may_differ_are_read(server, request, root, con):
    """PostgreSQL and MariaDB hash their rows: after the first reconciliation only (key, updated_at,
    hash) is read, plus the whole rows whose source hash or raw version moved, so a row restored
    to the very bytes it had (its source hash as fingerprinted) is still read once raw moved on."""
    url = request.getfixturevalue(f"{server}_url")

    def connection():
        registry.load_into(url, root)  # the server copy is a snapshot of the SQLite file
        return parse_uri(CONN_ID, airflow_uri(url))

    grid_registry.sync(con, connection())
    first = {r.entity: r for r in grid_registry.reconcile(con, connection())}
    assert "whole row(s) fetched" not in (first["residents"].message or "")  # no fingerprints yet: one scan
    total = source_rows(url, "residents").num_rows
    with sqlite3.connect(registry_file(root)) as lite:
        ids = [r[0] for r in lite.execute("select resident_id from residents where resident_id not in "
                                          "(select resident_id from special_groups) order by resident_id "
                                          "limit 3").fetchall()]
        reverted, silent, gone = ids
        name, stamp = lite.execute("select name, updated_at from residents where resident_id = ?",
                                   [reverted]).fetchone()
        lite.execute("update residents set name = name || '改', updated_at = ? where resident_id = ?",
                     [_ts(datetime.now(UTC)), reverted])
    assert {r.entity: r for r in grid_registry.sync(con, connection())}["residents"].rows_landed == 1
    with sqlite3.connect(registry_file(root)) as lite:
        lite.execute("update residents set name = ?, updated_at = ? where resident_id = ?", [name, stamp, reverted])
        lite.execute("update residents set name = name || '鑫' where resident_id = ?", [silent])
        lite.execute("delete from residents where resident_id = ?", [gone])
    results = {r.entity: r for r in grid_registry.reconcile(con, connection())}
    found = kinds(con)
    assert found[("residents", reverted)] == "revert"
    assert found[("residents", silent)] == "silent_change"
    assert found[("residents", gone)] == "hard_delete"
    assert f"{total - 1:,} row hashes read from the source, 2 whole row(s) fetched" in results["residents"].message
    assert results["residents"].rows_landed == 3 and results["residents"].rows_in == total
    assert len(current(con, "residents")) == total - 1
    assert con.execute("select name from raw.grid_registry_residents where resident_id = ? "
                       "order by rowid desc limit 1", [reverted]).fetchone() == (name,)
    again = {r.entity: r for r in grid_registry.reconcile(con, connection())}
    assert all(set(r.reconciled.values()) == {0} and r.rows_landed == 0 for r in again.values())
    assert "0 whole row(s) fetched" in again["residents"].message


def test_full_refresh_reconciles_and_restarts_the_cursor(root, con):
    conn = sqlite_conn(root)
    grid_registry.sync(con, conn)
    _diverge(root, con)
    results = {r.entity: r for r in grid_registry.reconcile(con, conn, reset_cursor=True)}
    assert results["residents"].reconciled["hard_delete"] == 1
    newest = max(source_rows(database.sqlite_url(root), "residents")["updated_at"].to_pylist())
    assert datetime.fromisoformat(_state(con, "residents")["updated_at"]) == newest


def test_an_empty_source_table_is_refused_not_tombstoned(root, con):
    conn = sqlite_conn(root)
    grid_registry.sync(con, conn)
    with sqlite3.connect(registry_file(root)) as lite:
        lite.execute("delete from households")
    with pytest.raises(ConnectorError, match=r"households: reconciliation refused — \d+ of \d+ keys"):
        grid_registry.reconcile(con, conn, tables=["households"])
    assert con.execute("select count(*) from raw.grid_registry_households where _record_hash = 'tombstone'"
                       ).fetchone() == (0,)
    assert con.execute("select status from meta.reconciliations").fetchall() == [("failed",)]


def test_a_column_whose_type_changed_fails_its_table_alone(root, con):
    conn = sqlite_conn(root)
    grid_registry.sync(con, conn)
    before = con.execute("select max(load_seq) from meta.loads").fetchone()[0]
    later = _ts(datetime.now(UTC))
    with sqlite3.connect(registry_file(root)) as lite:
        lite.execute("alter table residents drop column moved_in_on")
        lite.execute("alter table residents add column moved_in_on integer")
        lite.execute("update residents set moved_in_on = 20200101, updated_at = ? where rowid % 50 = 0", [later])
        lite.execute("update households set room = '999', updated_at = ? where rowid % 50 = 0", [later])
        lite.execute("update grid_workers set role = '网格员', updated_at = ? where rowid % 5 = 0", [later])
    with pytest.raises(SchemaDrift) as caught:
        grid_registry.sync(con, conn)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("raw.grid_registry_residents: column 'moved_in_on' changed type from DATE to BIGINT")
    loads = dict(con.execute("select entity, status from meta.loads where load_seq > ?", [before]).fetchall())
    assert loads["residents"] == "failed"
    assert {loads[t] for t in ("grids", "households", "special_groups", "grid_workers")} == {"succeeded"}
    assert con.execute("select count(*) from raw.grid_registry_households where room = '999'").fetchone()[0] > 0


def test_the_overlap_comes_from_the_connection_or_the_settings():
    from connectors.common.config import overlap
    from connectors.common.exceptions import ConfigurationError

    default = timedelta(minutes=5)
    assert overlap(parse_uri(CONN_ID, "sqlite:////x.sqlite?overlap=120"), default, "grid_registry") == \
        timedelta(seconds=120)
    assert overlap(parse_uri(CONN_ID, "sqlite:////x.sqlite"), default, "grid_registry") == default
    for bad in ("-1", "soon", "nan"):
        with pytest.raises(ConfigurationError, match=rf"extra overlap='{bad}'; it must be a number of seconds"):
            overlap(parse_uri(CONN_ID, f"sqlite:////x.sqlite?overlap={bad}"), default, "grid_registry")


@pytest.mark.parametrize("seconds", [0, 86400])
def test_the_registry_cursor_reads_the_saved_instant_again_and_the_overlap_before_it(root, con, seconds):
    conn = parse_uri(CONN_ID, f"sqlite:///{registry_file(root)}?overlap={seconds}")
    grid_registry.sync(con, conn)
    state = _state(con, "residents")
    watermark = datetime.fromisoformat(state["updated_at"])
    with sqlite3.connect(registry_file(root)) as lite:
        lower = lite.execute("select resident_id from residents where resident_id < ? order by resident_id limit 2",
                             [state["key"][0]]).fetchall()
        # equal to the saved instant, below the saved key; and an hour behind it
        lite.execute("update residents set phone = '13900000008', updated_at = ? where resident_id = ?",
                     [_ts(watermark), lower[0][0]])
        lite.execute("update residents set phone = '13900000009', updated_at = ? where resident_id = ?",
                     [_ts(watermark - timedelta(hours=1)), lower[1][0]])
    results = {r.entity: r for r in grid_registry.sync(con, conn)}
    assert results["residents"].rows_landed == (1 if seconds == 0 else 2)
    assert _state(con, "residents") == state  # the position never moves backwards
    # How late they arrived is on the load: at the watermark, and an hour behind it.
    late = con.execute("select late_rows, max_seconds_behind_watermark from meta.loads where load_id = ?",
                       [results["residents"].load_id]).fetchone()
    assert late == ((1, 0.0) if seconds == 0 else (2, 3600.0))
    assert f"{late[0]} row(s) arrived at or behind the watermark" in results["residents"].message


@pytest.mark.parametrize("first", ["scan", "keyset"])
def test_a_row_dated_in_the_future_lands_but_never_moves_the_cursor(root, con, first):
    """The registry's clock ahead: the row lands, the position stays at the latest credible row, the
    clock problem is recorded once for the silo's owner, and the next real change is not missed."""
    from connectors.common import freshness

    conn = sqlite_conn(root)
    if first == "keyset":
        grid_registry.sync(con, conn)
    state = _state(con, "residents") if first == "keyset" else None
    ahead = datetime.now(UTC) + timedelta(days=400)
    with sqlite3.connect(registry_file(root)) as lite:
        future_id, later_id = [r[0] for r in lite.execute(
            "select resident_id from residents order by resident_id limit 2").fetchall()]
        lite.execute("update residents set phone = '13900000007', updated_at = ? where resident_id = ?",
                     [_ts(ahead), future_id])
    results = {r.entity: r for r in grid_registry.sync(con, conn)}
    saved = _state(con, "residents")
    limit = datetime.now(UTC) + freshness.TOLERANCE
    assert datetime.fromisoformat(saved["updated_at"]) <= limit
    assert datetime.fromisoformat(results["residents"].watermark_after) <= limit
    assert saved["key"] != [future_id]
    if state is not None:
        assert saved == state  # nothing credible changed: the position did not move at all
    assert con.execute("select phone from raw.grid_registry_residents where resident_id = ? "
                       "and _load_id = ?", [future_id, results["residents"].load_id]).fetchone() == ("13900000007",)
    assert "dated later than now + 10 min" in results["residents"].message
    finding = con.execute("select record_key, kind, source_updated_at, seconds_behind_watermark "
                          "from meta.reconciliation_keys where kind = 'future_dated'").fetchall()
    assert [(k, kind) for k, kind, _, _ in finding] == [(future_id, "future_dated")]
    assert finding[0][2] == ahead.replace(microsecond=ahead.microsecond) and finding[0][3] < -399 * 86400

    # A real change after it, stamped now: the next sync lands it (a cursor in the future would
    # have skipped it), and the future row, read again, is neither landed nor recorded twice.
    with sqlite3.connect(registry_file(root)) as lite:
        lite.execute("update residents set phone = '13900000006', updated_at = ? where resident_id = ?",
                     [_ts(datetime.now(UTC)), later_id])
    again = {r.entity: r for r in grid_registry.sync(con, conn)}
    assert again["residents"].rows_landed == 1
    assert con.execute("select count(*) from meta.reconciliation_keys where kind = 'future_dated'"
                       ).fetchone() == (1,)
    assert datetime.fromisoformat(_state(con, "residents")["updated_at"]) <= datetime.now(UTC) + freshness.TOLERANCE


def test_onenet_reconcile_prints_each_table_and_the_totals_by_kind(root, tmp_path):
    from click.testing import CliRunner

    from onenet.cli import main
    from onenet.settings import environment

    env = {"AIRFLOW_CONN_ONENET_GRID_REGISTRY": f"sqlite:///{registry_file(root)}",
           "ONENET_WAREHOUSE": str(tmp_path / "cli.duckdb")}
    with environment(**env):
        assert CliRunner().invoke(main, ["sync", "grid_registry"]).exit_code == 0
        with sqlite3.connect(registry_file(root)) as lite:
            lite.execute("delete from grid_workers where rowid = 1")
        out = CliRunner().invoke(main, ["reconcile", "grid_registry"])
        assert out.exit_code == 0, out.output
        lines = out.output.strip().splitlines()
        assert any(line.startswith("grid_registry.grid_workers: reconciled, succeeded; missed update 0, "
                                   "back-dated 0, silent change 0, revert 0, hard delete 1, phantom 0; landed 1")
                   for line in lines), out.output
        assert lines[-1] == ("found: missed update 0, back-dated 0, silent change 0, revert 0, hard delete 1, "
                             "phantom 0")
        # --full-refresh reconciles too: nothing left to land
        again = CliRunner().invoke(main, ["sync", "grid_registry", "--full-refresh"])
        assert again.exit_code == 0 and "hard delete 0" in again.output
