"""The grid-registry connector against a generated village on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import Column, DateTime, Engine, MetaData, String, Table, create_engine, event
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from connectors import grid_registry
from connectors.common.config import Connection, parse_uri
from connectors.common.exceptions import (
    ConfigurationError,
    ConnectorError,
    SchemaDrift,
    SourceUnavailable,
)
from connectors.grid_registry import helpers, settings
from simulators.district.generate import generate
from simulators.grid_registry import database, registry
from warehouse import db

CONN_ID = "onenet_grid_registry"
LINEAGE = "_load_id, _extracted_at, _record_hash, _source_position"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_ADMIN = "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"
README = Path(grid_registry.__file__).with_name("README.md")


# ---------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture(scope="module")
def village(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 2,000-resident village at day 0; tests copy it before changing anything."""
    root = tmp_path_factory.mktemp("village")
    generate(root, residents=2000, seed=1, days=10)
    return root


@pytest.fixture
def root(village: Path, tmp_path: Path) -> Path:
    """This test's own copy of the village (advance() and SQL edits stay in it)."""
    return Path(shutil.copytree(village, tmp_path / "district"))


@pytest.fixture
def con(tmp_path: Path):
    c = db.connect(tmp_path / "w.duckdb")
    yield c
    c.close()


def sqlite_conn(root: Path) -> Connection:
    """The Connection of the embedded default form: sqlite:////abs/path."""
    return parse_uri(CONN_ID, f"sqlite:///{registry_file(root)}")


def registry_file(root: Path) -> Path:
    return (root / "grid_registry" / "registry.sqlite").resolve()


def source_rows(url: str, name: str) -> pa.Table:
    return database.read_table(url, name).sort_by([(k, "ascending") for k in settings.KEYS[name]])


def landed(con, name: str, *, latest: bool = False) -> pa.Table:
    """The source columns landed for `name` (every version, or the latest per key), by key."""
    keys = ", ".join(settings.KEYS[name])
    latest_only = f"qualify row_number() over (partition by {keys} order by updated_at desc) = 1" if latest else ""
    return con.execute(f"select * exclude ({LINEAGE}) from raw.grid_registry_{name} {latest_only} "
                       f"order by {keys}").to_arrow_table()


def key_set(table: pa.Table, name: str) -> set[tuple]:
    return set(zip(*(table.column(k).to_pylist() for k in settings.KEYS[name]), strict=True))


def by_table(results) -> dict[str, object]:
    return {r.entity: r for r in results}


def assert_mirrors(con, url: str) -> None:
    """Every source row landed exactly once, with the same values and types."""
    for name in settings.TABLES:
        expected = source_rows(url, name)
        got = landed(con, name)
        assert got.num_rows == expected.num_rows, name
        assert key_set(got, name) == key_set(expected, name), name
        assert got.select(expected.column_names).to_pylist() == expected.to_pylist(), name


def changed_rows(before: pa.Table, after: pa.Table) -> set[tuple]:
    """(resident_id, updated_at) of the rows whose updated_at moved or that are new."""
    old = set(zip(before["resident_id"].to_pylist(), before["updated_at"].to_pylist(), strict=True))
    new = set(zip(after["resident_id"].to_pylist(), after["updated_at"].to_pylist(), strict=True))
    return new - old


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every SQL statement any SQLAlchemy engine sends while the test runs."""
    seen: list[str] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", capture)


# ---------------------------------------------------------------------------------------------
# Connection → SQLAlchemy URL


@pytest.mark.parametrize(("uri", "expected"), [
    ("sqlite:////data/grid/registry.sqlite", "sqlite:////data/grid/registry.sqlite"),
    ("sqlite:///data/grid/registry.sqlite", "sqlite:////data/grid/registry.sqlite"),
    ("sqlite://///data/grid/registry.sqlite", "sqlite:////data/grid/registry.sqlite"),
    ("sqlite://var/registry.sqlite", "sqlite:///var/registry.sqlite"),
    ('{"conn_type": "sqlite", "host": "/data/Grid/registry.sqlite"}', "sqlite:////data/Grid/registry.sqlite"),
    ("postgres://reader:p%40ss@db.example:5433/grid?sslmode=require&cursor=dictcursor",
     "postgresql+psycopg://reader:p%40ss@db.example:5433/grid?sslmode=require"),
    ("postgresql://postgres@127.0.0.1/test", "postgresql+psycopg://postgres@127.0.0.1/test"),
    ("mysql://root@127.0.0.1:3306/grid", "mysql+pymysql://root@127.0.0.1:3306/grid?charset=utf8mb4"),
    ("mariadb://reader:pw@10.0.0.5/grid?charset=utf8", "mysql+pymysql://reader:pw@10.0.0.5/grid?charset=utf8"),
    ("mysql+mysqldb://root@h/grid", "mysql+mysqldb://root@h/grid?charset=utf8mb4"),
    ("postgres://?sqlalchemy_url=postgresql%2Bpsycopg2%3A%2F%2Fx%40h%2Fdb", "postgresql+psycopg2://x@h/db"),
    ("mysql://?sqlalchemy_url=mysql%2Bpymysql%3A%2F%2Froot%40h%2Fdb", "mysql+pymysql://root@h/db?charset=utf8mb4"),
])
def test_connection_maps_to_a_sqlalchemy_url(uri, expected):
    url = helpers.sqlalchemy_url(parse_uri(CONN_ID, uri))
    assert url.render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(("uri", "message"), [
    ("oracle://scott@h/grid", "scheme 'oracle' is not supported"),
    ("sqlite://", "names no database file"),
    ("postgres://?sqlalchemy_url=not-a-url", "is not a SQLAlchemy URL"),
])
def test_a_bad_connection_says_what_to_fix(uri, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        helpers.sqlalchemy_url(parse_uri(CONN_ID, uri))
    assert "AIRFLOW_CONN_ONENET_GRID_REGISTRY" in str(info.value)


def test_the_readme_uris_parse_and_map():
    uris = re.findall(r"AIRFLOW_CONN_ONENET_GRID_REGISTRY='([^']+)'", README.read_text(encoding="utf-8"))
    backends = {helpers.sqlalchemy_url(parse_uri(CONN_ID, u)).get_backend_name() for u in uris}
    assert backends == {"sqlite", "postgresql", "mysql"}


def test_keyset_sql_never_offsets_and_expands_where_row_values_are_slow():
    md = MetaData()
    groups = Table("special_groups", md, Column("resident_id", String(32), primary_key=True),
                   Column("group_type", String(8), primary_key=True), Column("updated_at", DateTime()))
    after = helpers.Position(datetime(2026, 1, 1, tzinfo=UTC), ("R1", "残疾人"))
    key = settings.KEYS["special_groups"]
    pg = str(helpers.keyset_query(groups, key, after, 7, "postgresql").compile(dialect=postgresql.dialect()))
    my = str(helpers.keyset_query(groups, key, after, 7, "mysql").compile(dialect=mysql.dialect()))
    assert "(special_groups.updated_at, special_groups.resident_id, special_groups.group_type) >" in pg
    assert "special_groups.updated_at >= %s AND (special_groups.updated_at > %s OR " \
           "special_groups.resident_id > %s OR special_groups.resident_id = %s AND " \
           "special_groups.group_type > %s)" in my
    lite = str(helpers.keyset_query(groups, key, after, 7, "sqlite").compile(dialect=sqlite.dialect()))
    assert "(special_groups.updated_at, special_groups.resident_id, special_groups.group_type) >" in lite
    for sql in (pg, my, lite):
        assert "LIMIT" in sql and "OFFSET" not in sql
        assert "ORDER BY special_groups.updated_at, special_groups.resident_id, special_groups.group_type" in sql


def test_a_saved_state_with_another_key_asks_for_a_full_refresh():
    with pytest.raises(ConfigurationError, match="full_refresh=True"):
        helpers.Position.from_state({"updated_at": "2026-01-01T00:00:00+00:00", "key": ["R1"]},
                                    "special_groups", settings.KEYS["special_groups"])


# ---------------------------------------------------------------------------------------------
# SQLite: the embedded default


def test_a_full_sync_lands_every_row_once_and_a_second_lands_nothing(village, con):
    url = database.sqlite_url(village)
    results = by_table(grid_registry.sync(con, sqlite_conn(village)))
    assert list(results) == list(settings.TABLES)
    assert_mirrors(con, url)
    for name, r in results.items():
        assert (r.status, r.rows_in, r.rows_landed) == ("succeeded", source_rows(url, name).num_rows,
                                                        source_rows(url, name).num_rows)
    # The saved keyset position is the source's last (updated_at, key).
    for name in settings.TABLES:
        key = settings.KEYS[name]
        last = source_rows(url, name).sort_by([("updated_at", "ascending")] + [(k, "ascending") for k in key])
        row = last.slice(last.num_rows - 1).to_pylist()[0]
        state = json.loads(con.execute("select state from meta.source_state where entity = ?", [name]).fetchone()[0])
        assert state == {"updated_at": row["updated_at"].isoformat(), "key": [row[k] for k in key],
                         "watermark": row["updated_at"].isoformat()}
    positions = con.execute("select count(*) filter (where _source_position = 'special_groups pk=' || resident_id "
                            "|| ',' || group_type), count(*) from raw.grid_registry_special_groups").fetchone()
    assert positions[0] == positions[1] > 0
    again = by_table(grid_registry.sync(con, sqlite_conn(village)))
    # The second sync re-reads, inclusively, the rows within the overlap before the saved
    # updated_at (the source's clock is not trusted) and lands none of them.
    for name, r in again.items():
        rows = source_rows(url, name)
        newest = max(rows["updated_at"].to_pylist())
        within = sum(1 for at in rows["updated_at"].to_pylist() if at >= newest - settings.OVERLAP)
        assert (r.status, r.rows_in, r.duplicates_skipped, r.rows_landed) == ("succeeded", within, within, 0), name
    assert_mirrors(con, url)


def test_after_advance_only_the_changed_residents_land_then_full_refresh_adds_nothing(root, con):
    url = database.sqlite_url(root)
    grid_registry.sync(con, sqlite_conn(root))
    before = source_rows(url, "residents")
    assert registry.advance(root, 5) > 0
    after = source_rows(url, "residents")
    changed = changed_rows(before, after)
    deleted = [r for r in after.to_pylist() if (r["resident_id"], r["updated_at"]) in changed and r["is_deleted"]]
    assert changed and deleted, "the village's days 1-5 should move, add and soft-delete residents"

    results = by_table(grid_registry.sync(con, sqlite_conn(root)))
    assert results["residents"].rows_landed == len(changed)
    assert results["residents"].rows_in == len(changed) + results["residents"].duplicates_skipped
    assert all(r.rows_landed == 0 for name, r in results.items() if name != "residents")
    new_versions = con.execute("select resident_id, updated_at from raw.grid_registry_residents where _load_id = ?",
                               [results["residents"].load_id]).to_arrow_table()
    assert set(zip(new_versions["resident_id"].to_pylist(), new_versions["updated_at"].to_pylist(),
                   strict=True)) == changed
    assert landed(con, "residents", latest=True).to_pylist() == after.to_pylist()
    assert landed(con, "residents").num_rows == before.num_rows + len(changed)

    counts = {n: landed(con, n).num_rows for n in settings.TABLES}
    refresh = grid_registry.sync(con, sqlite_conn(root), full_refresh=True)
    assert [r.rows_landed for r in refresh] == [0] * len(settings.TABLES)
    assert refresh[2].rows_in == after.num_rows and refresh[2].duplicates_skipped == after.num_rows
    assert {n: landed(con, n).num_rows for n in settings.TABLES} == counts
    assert con.execute("select count(*) from meta.loads where full_refresh and status = 'succeeded'"
                       ).fetchone() == (len(settings.TABLES),)


@pytest.mark.parametrize("form", ["row values", "expanded"])
def test_tiny_pages_over_equal_timestamps_return_every_row_once(root, con, statements, monkeypatch, form):
    if form == "expanded":
        monkeypatch.setattr(helpers, "ROW_VALUE_DIALECTS", ())  # the MariaDB form, on SQLite
    monkeypatch.setattr(settings, "SCAN_FIRST_LOAD", False)  # keyset pages from the very start
    with sqlite3.connect(registry_file(root)) as lite:
        # Three instants for 1,951 residents; one for all special groups (composite key ties).
        lite.execute("update residents set updated_at = '2026-01-0' || (rowid % 3 + 1) || ' 08:00:00.000000'")
        lite.execute("update special_groups set updated_at = '2026-01-01 08:00:00.000000'")
    url = database.sqlite_url(root)
    grid_registry.sync(con, sqlite_conn(root), batch_size=7)
    sent = list(statements)  # the connector's statements only (read_table below adds its own)
    assert_mirrors(con, url)
    selects = [s for s in sent if "FROM residents" in s and s.lstrip().upper().startswith("SELECT")]
    assert len(selects) >= math.ceil(source_rows(url, "residents").num_rows / 7)
    assert all("LIMIT" in s for s in selects)
    assert not any("OFFSET" in s.upper() for s in sent)
    # Resuming from a saved position inside a run of equal timestamps picks up only what changed.
    before = source_rows(url, "residents")
    registry.advance(root, 5)
    r = by_table(grid_registry.sync(con, sqlite_conn(root), batch_size=7))["residents"]
    assert r.rows_landed == len(changed_rows(before, source_rows(url, "residents")))
    assert landed(con, "residents", latest=True).to_pylist() == source_rows(url, "residents").to_pylist()


# ---------------------------------------------------------------------------------------------
# Failures


def test_a_first_load_scan_keeps_odd_sqlite_values_and_resumes_by_keyset(root, con):
    with sqlite3.connect(registry_file(root)) as lite:
        # A REAL needing 17 digits, an integer in a text column (SQLite allows it: the strict
        # JSON parse refuses that page), and a NUMERIC column (no JSON path: driver rows).
        lite.execute("alter table grid_workers add column score real")
        lite.execute("update grid_workers set score = 0.1 + 0.2 where rowid % 2 = 0")
        lite.execute("update grid_workers set name = 12345 where rowid = 3")
        lite.execute("alter table special_groups add column weight numeric")
        lite.execute("update special_groups set weight = 2.5 where rowid % 3 = 0")
        expected_score = lite.execute("select score from grid_workers where rowid = 2").fetchone()[0]
    url = database.sqlite_url(root)
    results = by_table(grid_registry.sync(con, sqlite_conn(root), batch_size=7))
    assert all(r.status == "succeeded" and r.rows_quarantined == 0 for r in results.values())
    for name in settings.TABLES:
        assert landed(con, name).num_rows == source_rows(url, name).num_rows, name
    assert con.execute("select score from raw.grid_registry_grid_workers where score is not null limit 1"
                       ).fetchone()[0] == expected_score == 0.30000000000000004
    assert con.execute("select count(*) from raw.grid_registry_grid_workers where name = '12345'").fetchone() == (1,)
    assert con.execute("select sum(weight) from raw.grid_registry_special_groups").fetchone()[0] is not None
    # The scan saved the greatest (updated_at, key): the next sync reads nothing new.
    assert [r.rows_landed for r in grid_registry.sync(con, sqlite_conn(root))] == [0] * len(settings.TABLES)


def test_a_missing_required_column_fails_its_table_and_lands_nothing_of_it(root, con):
    with sqlite3.connect(registry_file(root)) as lite:
        lite.execute("alter table residents rename column phone to mobile")
    with pytest.raises(SchemaDrift, match=r"required column 'phone' is missing from residents"):
        grid_registry.sync(con, sqlite_conn(root))
    assert con.execute("select count(*) from information_schema.tables "
                       "where table_name = 'grid_registry_residents'").fetchone() == (0,)
    rows = dict(con.execute("select entity, status from meta.loads").fetchall())
    assert rows == {"grids": "succeeded", "households": "succeeded", "residents": "failed",
                    "special_groups": "succeeded", "grid_workers": "succeeded"}
    message = con.execute("select message from meta.loads where entity = 'residents'").fetchone()[0]
    assert "grid_registry" in message and "'phone'" in message and "residents" in message
    assert con.execute("select count(*) from meta.source_state where entity = 'residents'").fetchone() == (0,)


def test_a_retyped_required_column_fails(root, con):
    with sqlite3.connect(registry_file(root)) as lite:
        lite.execute("alter table special_groups rename column since to since_old")
        lite.execute("alter table special_groups add column since integer")
    with pytest.raises(SchemaDrift, match=r"'since' of special_groups arrived as int64, expected date32"):
        grid_registry.sync(con, sqlite_conn(root), tables=["special_groups"])


def test_an_unreadable_value_is_quarantined_and_an_unreadable_cursor_fails(root, con):
    with sqlite3.connect(registry_file(root)) as lite:
        lite.execute("update residents set birth_date = '1990-13-45' where resident_id = 'R0000001'")
        total = lite.execute("select count(*) from residents").fetchone()[0]
    r = grid_registry.sync(con, sqlite_conn(root), tables=["residents"])[0]
    assert (r.rows_in, r.rows_landed, r.rows_quarantined) == (total, total - 1, 1)
    position, reasons = con.execute("select position, reasons from meta.quarantine").fetchone()
    assert position == "residents pk=R0000001" and "birth_date: '1990-13-45' is not a date" in reasons

    with sqlite3.connect(registry_file(root)) as lite:
        lite.execute("update residents set updated_at = 'yesterday' where resident_id = 'R0000002'")
    with pytest.raises(ConnectorError, match=r"residents pk=R0000002: updated_at 'yesterday' is not a timestamp"):
        grid_registry.sync(con, sqlite_conn(root), tables=["residents"])


def test_an_unreachable_database_fails_clearly_and_records_the_load(con):
    conn = parse_uri(CONN_ID, "postgres://reader:s3cret@127.0.0.1:1/grid")
    with pytest.raises(SourceUnavailable, match=r"cannot connect to postgresql\+psycopg://reader:\*\*\*@127.0.0.1:1/grid") as info:
        grid_registry.sync(con, conn)
    assert "s3cret" not in str(info.value) and "AIRFLOW_CONN_ONENET_GRID_REGISTRY" in str(info.value)
    # The source is down: the first load records it and the sync stops.
    assert con.execute("select entity, status, message like '%cannot connect%' from meta.loads").fetchall() == [
        ("grids", "failed", True)]


def test_a_missing_registry_file_is_unavailable_not_created(tmp_path, con):
    path = tmp_path / "nowhere" / "registry.sqlite"
    with pytest.raises(SourceUnavailable, match="does not exist"):
        grid_registry.sync(con, parse_uri(CONN_ID, f"sqlite:///{path}"))
    assert not path.exists()


def test_unknown_tables_are_refused(village, con):
    with pytest.raises(ConfigurationError, match="no table"):
        grid_registry.sync(con, sqlite_conn(village), tables=["residents", "people"])


# ---------------------------------------------------------------------------------------------
# PostgreSQL and MariaDB


def _throwaway(env: str, default: str, marker: str, create: str, drop: str) -> Iterator[str]:
    """A fresh onenet_conn_<hex> database on the server at $env (else `default`), dropped after."""
    server = make_url(os.environ.get(env, default))
    name = f"onenet_conn_{secrets.token_hex(6)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(create.format(name=name))
    except OperationalError as exc:
        admin.dispose()
        pytest.fail(f"cannot reach {server.render_as_string()}: {exc.orig}; start the server, point {env} "
                    f"at it, or deselect these tests with -m 'not {marker}'")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(drop.format(name=name))
        admin.dispose()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    yield from _throwaway("ONENET_TEST_PG_URL", PG_ADMIN, "postgres",
                          "CREATE DATABASE \"{name}\" ENCODING 'UTF8'", 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def mariadb_url() -> Iterator[str]:
    yield from _throwaway("ONENET_TEST_MARIADB_URL", MARIADB_ADMIN, "mariadb",
                          "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
                          "DROP DATABASE IF EXISTS `{name}`")


def airflow_uri(sqlalchemy_url: str) -> str:
    """The Airflow Connection URI an operator would set for the database at `sqlalchemy_url`."""
    url = make_url(sqlalchemy_url)
    scheme = "postgres" if url.get_backend_name() == "postgresql" else "mysql"
    return url.set(drivername=scheme, query={}).render_as_string(hide_password=False)


@pytest.mark.parametrize("server", [pytest.param("postgres", marks=pytest.mark.postgres),
                                    pytest.param("mariadb", marks=pytest.mark.mariadb)])
def test_a_server_registry_syncs_incrementally(server, request, root, con, statements):
    url = request.getfixturevalue(f"{server}_url")
    registry.load_into(url, root)
    conn = parse_uri(CONN_ID, airflow_uri(url))
    first = grid_registry.sync(con, conn, batch_size=7)  # every grid shares one updated_at: ties
    assert all(r.status == "succeeded" for r in first)
    assert_mirrors(con, url)
    assert not any("OFFSET" in s.upper() for s in statements)
    assert [r.rows_landed for r in grid_registry.sync(con, conn)] == [0] * len(settings.TABLES)

    before = source_rows(url, "residents")
    registry.advance(root, 5)
    registry.load_into(url, root)  # the server copy is a snapshot: copy the advanced registry again
    after = source_rows(url, "residents")
    changed = changed_rows(before, after)
    results = by_table(grid_registry.sync(con, conn))
    assert results["residents"].rows_landed == len(changed) > 0
    assert all(r.rows_landed == 0 for name, r in results.items() if name != "residents")
    assert landed(con, "residents", latest=True).to_pylist() == after.to_pylist()
    # The same instants as the SQLite file: naive UTC and timestamptz land alike.
    assert landed(con, "residents", latest=True).to_pylist() == source_rows(database.sqlite_url(root),
                                                                           "residents").to_pylist()

    counts = {n: landed(con, n).num_rows for n in settings.TABLES}
    assert [r.rows_landed for r in grid_registry.sync(con, conn, full_refresh=True)] == [0] * len(settings.TABLES)
    assert {n: landed(con, n).num_rows for n in settings.TABLES} == counts
