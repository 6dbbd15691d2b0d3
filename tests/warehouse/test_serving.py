"""The serving database on this machine's PostgreSQL: each login sees only its audience's rows, every statement is logged, publishing is atomic and skips what did not change."""

from __future__ import annotations

import datetime
import decimal
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from warehouse.publish import serving
from warehouse.publish.serving import ServingBusy, ServingInputError, publish_serving

pytestmark = pytest.mark.postgres

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
COMMUNITIES = [("110105001001", "甲社区"), ("110105001002", "乙社区"), ("110105001003", "丙社区")]
ROWS_PER_COMMUNITY = {"110105001001": 40, "110105001002": 55, "110105001003": 70}

HOTLINE_RATES = """
select i::bigint as id, '街道' || (i % 7) as street,
       case when i % 5 = 0 then null else '城管/市容' end as category,
       (i % 13)::integer as tickets, i / 7.0 as rate, (i * 1.25)::decimal(12, 2) as amount,
       date '2026-11-01' + (i % 30)::integer as day,
       timestamptz '2026-11-01 00:00:00+08' + i * interval 37 minute as reported_at,
       timestamp '2026-11-01 00:00:00' + i * interval 1 second as local_at,
       i % 2 = 0 as is_open,
       case when i % 11 = 0 then null else ['噪音', null, 'a"b\\c', 'x,y', '{}', ''] end as tags,
       [i, null, i + 1] as counts, {'dept': '城管局', 'n': i} as detail, '' as empty_text,
       'line one' || chr(10) || '第二行, "quoted"' || chr(9) || 'tab' as note
from range({rows}) t(i)
"""
DIVISION_CODES = """
select '1101050' || lpad(i::varchar, 5, '0') as code, '社区' || i as name, 4 as level from range(50) t(i)
"""
TICKET = """
select '{code}' as community_code, '{name}' as community_name, i::bigint as id,
       case when i % 4 = 0 then null else '1380013' || lpad(i::varchar, 4, '0') end as phone,
       '居民反映楼道堆物，第' || i || '号' as body,
       timestamptz '2026-11-02 09:30:00+08' + i * interval 1 hour as created_at,
       case when i % 3 = 0 then null else ['楼道', '消防'] end as tags
from range({rows}) t(i)
"""
RESIDENT_COUNT = """
select '{code}' as community_code, '{name}' as community_name, g as grid, ({rows} * g)::bigint as residents
from range(1, 4) t(g)
"""


# --- fixtures ------------------------------------------------------------------------------------

def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def _login(url: str, role: str) -> psycopg.Connection:
    """A connection as `role` (the server trusts 127.0.0.1 here, as a password would in production)."""
    return psycopg.connect(make_conninfo(url, user=role), autocommit=True)


@pytest.fixture(scope="session")
def role_prefix() -> Iterator[str]:
    """Roles are cluster-wide: a prefix of this session's own, and every role with it dropped afterwards."""
    prefix = f"onenet_t{secrets.token_hex(4)}_"
    yield prefix
    with _admin(PG_ADMIN) as pg:
        roles = [r[0] for r in pg.execute("select rolname from pg_roles where starts_with(rolname, %s)", [prefix])]
        for role in roles:
            pg.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def serving_db() -> Iterator[str]:
    """A fresh onenet_serving_<hex> database, dropped after this module."""
    name = f"onenet_serving_{secrets.token_hex(6)}"
    try:
        with _admin(PG_ADMIN) as pg:
            pg.execute(sql.SQL("create database {} encoding 'UTF8'").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        pytest.fail(f"cannot reach PostgreSQL at {PG_ADMIN}: {exc}; start the server, or deselect these "
                    "tests with -m 'not postgres'")
    try:
        yield make_conninfo(PG_ADMIN, dbname=name)
    finally:
        with _admin(PG_ADMIN) as pg:
            pg.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _fill(template: str, **values: object) -> str:
    """The template with {name} replaced (str.format would trip on DuckDB's struct and JSON braces)."""
    for name, value in values.items():
        template = template.replace("{" + name + "}", str(value))
    return template


def _write(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> Path:
    con.execute(f"copy ({query}) to '{path}' (format parquet)")
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict:
    """Published files as the snapshot step leaves them: two analyst relations, two community ones."""
    folder = tmp_path_factory.mktemp("published")
    con = duckdb.connect()
    analyst = {"mart.hotline_rates": _write(con, _fill(HOTLINE_RATES, rows=2000), folder / "mart.hotline_rates.parquet"),
               "ref.division_codes": _write(con, DIVISION_CODES, folder / "ref.division_codes.parquet")}
    community: dict[str, list[Path]] = {"ticket": [], "resident_count": []}
    for code, name in COMMUNITIES:
        rows = ROWS_PER_COMMUNITY[code]
        community["ticket"].append(_write(con, _fill(TICKET, code=code, name=name, rows=rows),
                                          folder / f"ticket.{code}.parquet"))
        community["resident_count"].append(_write(con, _fill(RESIDENT_COUNT, code=code, name=name, rows=rows),
                                                  folder / f"resident_count.{code}.parquet"))
    con.close()
    return {"analyst": analyst, "community": community, "communities": COMMUNITIES}


@pytest.fixture(scope="module")
def published(serving_db, inputs, role_prefix):
    """The inputs published once, as version v1."""
    return publish_serving(serving_db, "v1", **inputs, role_prefix=role_prefix)


def _duck_rows(paths: list[Path], where: str = "") -> list[tuple]:
    con = duckdb.connect()
    con.execute("set timezone = 'UTC'")
    files = ", ".join(f"'{p}'" for p in paths)
    rows = con.execute(f"select * from read_parquet([{files}], union_by_name = true) {where}").fetchall()
    con.close()
    return rows


def _key(row: tuple) -> tuple[str, ...]:
    return tuple(str(value) for value in row[:3])


def _tables(url: str) -> list[tuple[str, str]]:
    with _admin(url) as pg:
        return pg.execute("select schemaname, tablename from pg_tables "
                          "where schemaname not in ('pg_catalog', 'information_schema') order by 1, 2").fetchall()


def _count(pg: psycopg.Connection, schema: str, table: str) -> int:
    return pg.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))).fetchone()[0]


# --- what each login reads ------------------------------------------------------------------------

def test_rows_and_values_round_trip(serving_db, inputs, published):
    assert sorted(published.published) == ["analyst.division_codes", "analyst.hotline_rates",
                                           "community.resident_count", "community.ticket"]
    with _admin(serving_db) as pg:
        for key, path in inputs["analyst"].items():
            name = key.split(".")[1]
            expected = sorted(_duck_rows([path]), key=_key)
            served = sorted(pg.execute(sql.SQL("select * from {}").format(sql.Identifier("analyst", name))).fetchall(),
                            key=_key)
            assert published.rows[f"analyst.{name}"] == len(served) == len(expected) > 0
            assert served == expected  # Chinese text, NULL, '' vs NULL, timestamptz, lists, structs, decimals
        for name, paths in inputs["community"].items():
            expected = sorted(_duck_rows(paths), key=_key)
            served = sorted(pg.execute(sql.SQL("select * from {}").format(sql.Identifier("community", name))).fetchall(),
                            key=_key)
            assert published.rows[f"community.{name}"] == len(served) == len(expected) > 0
            assert served == expected
        types = dict(pg.execute("select column_name, data_type from information_schema.columns "
                                "where table_schema = 'analyst' and table_name = 'hotline_rates'").fetchall())
        # Planner statistics: autovacuum gathers them where it runs (this machine's server runs without
        # it); where it does not, the publish did, for every table it loaded whole.
        if pg.execute("show autovacuum").fetchone()[0] != "on":
            analyzed = {r[0] for r in pg.execute("select relname from pg_stat_all_tables where schemaname in "
                                                 "('analyst', 'community') and last_analyze is not null")}
            assert analyzed == {"division_codes", "hotline_rates", "resident_count", "ticket"}
    assert types["reported_at"] == "timestamp with time zone"
    assert types["local_at"] == "timestamp without time zone"
    assert types["tags"] == "ARRAY" and types["detail"] == "jsonb" and types["amount"] == "numeric"
    sample = next(r for r in _duck_rows([inputs["analyst"]["mart.hotline_rates"]]) if r[0] == 1)
    assert sample[1] == "街道1" and sample[10] == ["噪音", None, 'a"b\\c', "x,y", "{}", ""]


def test_analyst_login_reads_the_analyst_schema_and_nothing_else(serving_db, published, role_prefix):
    with _admin(serving_db) as pg:
        pg.execute("create table public.not_published (secret text)")  # what an administrator might leave
        pg.execute("insert into public.not_published values ('x')")
    tables = _tables(serving_db)
    closed = [t for t in tables if t[0] != "analyst"]
    assert ("serving_admin", "published") in closed and ("community", "ticket") in closed
    with _login(serving_db, f"{role_prefix}analyst") as analyst:
        assert analyst.execute("select count(*) from division_codes").fetchone()[0] == 50  # its schema by default
        for schema, table in tables:
            if schema == "analyst":
                assert _count(analyst, schema, table) == published.rows[f"analyst.{table}"]
                continue
            with pytest.raises(errors.InsufficientPrivilege):
                _count(analyst, schema, table)
        analyst.execute("set default_transaction_read_only = off")  # a login may; its grants still hold
        for statement in ["create table public.mine (i int)", "create temp table mine (i int)",
                          "create schema mine", "select community.login_community()",
                          "insert into analyst.division_codes default values", "set log_statement = 'none'"]:
            with pytest.raises(errors.InsufficientPrivilege):
                analyst.execute(statement)


def test_a_community_login_sees_only_its_own_rows(serving_db, inputs, published, role_prefix):
    for code, name in COMMUNITIES:
        with _login(serving_db, f"{role_prefix}community_{code}") as staff:
            for relation, paths in inputs["community"].items():
                expected = sorted(_duck_rows(paths, f"where community_code = '{code}'"), key=_key)
                served = sorted(staff.execute(sql.SQL("select * from {}").format(
                    sql.Identifier("community", relation))).fetchall(), key=_key)
                assert served == expected and len(served) > 0
                assert {r[1] for r in served} == {name}
            assert staff.execute("select login_community()").fetchone()[0] == code  # its schema by default
            for schema, table in _tables(serving_db):
                if schema != "community":
                    with pytest.raises(errors.InsufficientPrivilege):
                        _count(staff, schema, table)


def test_a_community_login_cannot_widen_its_rows(serving_db, published, role_prefix):
    own, other = COMMUNITIES[0][0], COMMUNITIES[1][0]
    with _login(serving_db, f"{role_prefix}community_{own}") as staff:
        def codes() -> set[str]:
            return {r[0] for r in staff.execute("select distinct community_code from community.ticket")}

        assert codes() == {own}
        staff.execute("set default_transaction_read_only = off")  # a login may; its grants still hold
        staff.execute(sql.SQL("set role {}").format(sql.Identifier(f"{role_prefix}community")))  # its group
        assert codes() == {own}
        staff.execute("reset role")
        for attempt in [sql.SQL("set role {}").format(sql.Identifier(f"{role_prefix}community_{other}")),
                        sql.SQL("set session authorization {}").format(sql.Identifier(f"{role_prefix}community_{other}")),
                        sql.SQL("set role postgres"),
                        sql.SQL("alter table community.ticket disable row level security")]:
            with pytest.raises(errors.InsufficientPrivilege):
                staff.execute(attempt)
        for setting in ["onenet.community", "app.community_code", "request.community"]:
            staff.execute("select set_config(%s, %s, false)", [setting, other])
        assert codes() == {own}
        staff.execute("set row_security = off")  # refused at query time rather than bypassing the policy
        with pytest.raises(errors.InsufficientPrivilege):
            codes()
        staff.execute("reset row_security")
        # Planner statistics would show other communities' most common values: hidden under row security.
        # (Publishing leaves ANALYZE to autovacuum where it runs: gather them now, as it will.)
        with _admin(serving_db) as admin:
            admin.execute("analyze community.ticket")
            assert admin.execute("select count(*) from pg_stats where schemaname = 'community' "
                                 "and tablename = 'ticket'").fetchone()[0] > 0
        assert staff.execute("select count(*) from pg_stats where schemaname = 'community'").fetchone()[0] == 0
        assert staff.execute("select count(*) from community.ticket where community_code = %s",
                             [other]).fetchone()[0] == 0


# --- statement logging ------------------------------------------------------------------------------

def _server_log() -> Path:
    """The file the server logs to: the collector's current file, else the Debian default."""
    with _admin(PG_ADMIN) as pg:
        current = pg.execute("select pg_current_logfile()").fetchone()[0]
        data_directory = pg.execute("show data_directory").fetchone()[0]
        major = int(pg.execute("show server_version_num").fetchone()[0]) // 10000
    path = (Path(data_directory) / current) if current else Path(f"/var/log/postgresql/postgresql-{major}-main.log")
    if not path.is_file():
        pytest.fail(f"cannot find the server log at {path}: point this test at the server's log file")
    return path


def _logged(log: Path, start: int, marker: str, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        with open(log, encoding="utf-8", errors="replace") as handle:
            handle.seek(start)
            lines = [line for line in handle if marker in line]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_every_audience_statement_reaches_the_server_log(serving_db, published, role_prefix):
    log = _server_log()
    start = log.stat().st_size
    logins = [f"{role_prefix}analyst", *(f"{role_prefix}community_{code}" for code, _ in COMMUNITIES)]
    markers = {}
    for role in logins:
        marker = f"onenet-audit-{secrets.token_hex(8)}"
        with _login(serving_db, role) as pg:
            with pytest.raises(errors.InsufficientPrivilege):
                pg.execute("set log_statement = 'none'")  # a login cannot switch its logging off
            pg.execute(f"select '{marker}' as marker")
        markers[role] = marker
    with _admin(PG_ADMIN) as pg:
        prefix = pg.execute("show log_line_prefix").fetchone()[0]
    assert "%u" in prefix, f"log_line_prefix {prefix!r} does not name the user: a logged statement says not who ran it"
    for role, marker in markers.items():
        lines = _logged(log, start, marker)
        assert lines, f"{role}'s statement with {marker} is not in {log}"
        assert any("statement:" in line and f"{role}@" in line for line in lines), lines
    with _admin(serving_db) as pg:
        settings = dict(pg.execute("select r.rolname, s.setconfig from pg_db_role_setting s "
                                   "join pg_roles r on r.oid = s.setrole where starts_with(r.rolname, %s)",
                                   [role_prefix]).fetchall())
    assert all("log_statement=all" in settings[role] for role in logins)


def test_passwords_come_from_the_environment_and_never_reach_the_log(serving_db, inputs, published, role_prefix,
                                                                      monkeypatch):
    role = f"{role_prefix}analyst"
    password = f"pw-{secrets.token_hex(8)}"
    monkeypatch.setenv(serving.password_variable(role), password)
    log = _server_log()
    start = log.stat().st_size
    database = conninfo_to_dict(serving_db)["dbname"]
    with _admin(serving_db) as pg:  # the worst case: the administrator's own statements are logged too
        pg.execute(sql.SQL("alter database {} set log_statement = 'all'").format(sql.Identifier(database)))
    try:
        publish_serving(serving_db, "v1", **inputs, role_prefix=role_prefix)
    finally:
        with _admin(serving_db) as pg:
            pg.execute(sql.SQL("alter database {} reset log_statement").format(sql.Identifier(database)))
    with _admin(serving_db) as pg:
        stored = pg.execute("select rolpassword from pg_authid where rolname = %s", [role]).fetchone()[0]
    assert stored.startswith("SCRAM-SHA-256$")
    assert _logged(log, start, "password 'SCRAM-SHA-256$")  # the statement was logged, with the hash only
    assert not _logged(log, start, password, timeout=0)
    conninfo = conninfo_to_dict(serving_db)
    with psycopg.connect(make_conninfo(**{**conninfo, "user": role, "password": password})) as pg:
        assert pg.execute("select current_user").fetchone()[0] == role


# --- publishing what changed ----------------------------------------------------------------------

def test_unchanged_inputs_are_skipped_even_when_the_files_differ(serving_db, inputs, published, role_prefix, tmp_path):
    again = publish_serving(serving_db, "v2", **inputs, role_prefix=role_prefix)
    assert again.published == [] and again.dropped == []
    assert sorted(again.skipped) == sorted(published.published)
    assert again.rows == published.rows
    # Same rows, other order and row groups: other file bytes, same content.
    con = duckdb.connect()
    shuffled = {key: _write(con, f"select * from '{path}' order by random()", tmp_path / path.name)
                for key, path in inputs["analyst"].items()}
    con.execute(f"copy (select * from '{inputs['analyst']['mart.hotline_rates']}' order by id desc) "
                f"to '{shuffled['mart.hotline_rates']}' (format parquet, row_group_size 100)")
    assert shuffled["mart.hotline_rates"].read_bytes() != inputs["analyst"]["mart.hotline_rates"].read_bytes()
    third = publish_serving(serving_db, "v3", shuffled, inputs["community"], COMMUNITIES, role_prefix=role_prefix)
    assert third.published == [] and sorted(third.skipped) == sorted(published.published)
    with _admin(serving_db) as pg:
        assert {r[0] for r in pg.execute("select version from serving_admin.published")} == {"v1"}


def test_one_changed_value_republishes_its_relation(serving_db, inputs, published, role_prefix, tmp_path):
    con = duckdb.connect()
    path = inputs["analyst"]["ref.division_codes"]
    changed = _write(con, f"select code, case when code like '%0' then name || '（改）' else name end as name, "
                          f"level from '{path}'", tmp_path / path.name)
    try:
        result = publish_serving(serving_db, "v2", {**inputs["analyst"], "ref.division_codes": changed},
                                 inputs["community"], COMMUNITIES, role_prefix=role_prefix)
        assert result.published == ["analyst.division_codes"]
        with _admin(serving_db) as pg:
            assert pg.execute("select count(*) from analyst.division_codes where name like '%（改）'").fetchone()[0] == 5
            assert pg.execute("select version from serving_admin.published "
                              "where relation = 'division_codes'").fetchone()[0] == "v2"
    finally:
        assert publish_serving(serving_db, "v1", **inputs, role_prefix=role_prefix).published == [
            "analyst.division_codes"]


def test_a_reader_sees_the_old_or_the_new_relation_never_a_half(serving_db, inputs, published, role_prefix, tmp_path):
    con = duckdb.connect()
    bigger = _write(con, _fill(HOTLINE_RATES, rows=150_000), tmp_path / "mart.hotline_rates.parquet")
    old, new = published.rows["analyst.hotline_rates"], 150_000
    seen: list[int] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            with _login(serving_db, f"{role_prefix}analyst") as reader:
                while not done.is_set():
                    seen.append(_count(reader, "analyst", "hotline_rates"))
                    time.sleep(0.005)
                seen.append(_count(reader, "analyst", "hotline_rates"))
        except BaseException as exc:  # the assertion below reports it
            failures.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        time.sleep(0.2)
        result = publish_serving(serving_db, "v2", {**inputs["analyst"], "mart.hotline_rates": bigger},
                                 inputs["community"], COMMUNITIES, role_prefix=role_prefix)
    finally:
        done.set()
        thread.join()
    try:
        assert failures == []
        assert result.published == ["analyst.hotline_rates"] and result.rows["analyst.hotline_rates"] == new
        assert set(seen) == {old, new} and seen[0] == old and seen[-1] == new
        assert seen == sorted(seen)  # once the new version is seen, the old one never comes back
    finally:
        publish_serving(serving_db, "v1", **inputs, role_prefix=role_prefix)


def test_a_reader_holding_a_table_makes_publishing_wait_then_give_up_cleanly(serving_db, inputs, published,
                                                                              role_prefix, tmp_path):
    con = duckdb.connect()
    changed = _write(con, _fill(HOTLINE_RATES, rows=10), tmp_path / "mart.hotline_rates.parquet")
    with _login(serving_db, f"{role_prefix}analyst") as reader:
        with reader.transaction():
            before = _count(reader, "analyst", "hotline_rates")  # holds its lock until the transaction ends
            started = time.monotonic()
            with pytest.raises(ServingBusy, match="analyst.hotline_rates"):
                publish_serving(serving_db, "v2", {**inputs["analyst"], "mart.hotline_rates": changed},
                                inputs["community"], COMMUNITIES, role_prefix=role_prefix, lock_timeout_s=0.3,
                                lock_attempts=3)
            assert time.monotonic() - started >= 3 * 0.3 + 2 * 0.3  # it waited, let readers run, tried again
        assert _count(reader, "analyst", "hotline_rates") == before
    with _admin(serving_db) as pg:
        assert pg.execute("select count(*) from pg_tables where schemaname = 'serving_stage'").fetchone()[0] >= 1
    assert publish_serving(serving_db, "v1", **inputs, role_prefix=role_prefix).published == []
    with _admin(serving_db) as pg:  # the next publish cleared what the failed one staged
        assert pg.execute("select count(*) from pg_tables where schemaname = 'serving_stage'").fetchone()[0] == 0


def test_a_relation_no_longer_published_is_dropped(serving_db, inputs, published, role_prefix):
    analyst = {k: v for k, v in inputs["analyst"].items() if k != "ref.division_codes"}
    try:
        result = publish_serving(serving_db, "v2", analyst, inputs["community"], COMMUNITIES, role_prefix=role_prefix)
        assert result.dropped == ["analyst.division_codes"]
        assert ("analyst", "division_codes") not in _tables(serving_db)
    finally:
        assert publish_serving(serving_db, "v1", **inputs, role_prefix=role_prefix).published == [
            "analyst.division_codes"]


def test_one_audience_at_a_time_leaves_the_other_as_it_was(serving_db, inputs, published, role_prefix, tmp_path):
    """As onenet.pipeline.publish serves: the analysts' tables (on a thread, beside the community
    snapshots), then the communities'. Neither call drops, empties or unmaps the other audience."""
    own = COMMUNITIES[0][0]
    con = duckdb.connect()
    path = inputs["analyst"]["ref.division_codes"]
    changed = _write(con, f"select code, name || '（新）' as name, level from '{path}'", tmp_path / path.name)

    def community_rows() -> dict[tuple[str, str], int]:
        with _admin(serving_db) as pg:
            return {t: _count(pg, *t) for t in _tables(serving_db) if t[0] == "community"}

    before = community_rows()
    try:
        analyst = publish_serving(serving_db, "v2", {**inputs["analyst"], "ref.division_codes": changed}, {},
                                  COMMUNITIES, role_prefix=role_prefix, schemas=("analyst",))
        assert analyst.published == ["analyst.division_codes"] and analyst.dropped == []
        assert community_rows() == before and before
        with _login(serving_db, f"{role_prefix}community_{own}") as staff:  # its login still maps to its rows
            assert {r[0] for r in staff.execute("select distinct community_code from community.ticket")} == {own}
        community = publish_serving(serving_db, "v2", {}, inputs["community"], COMMUNITIES, role_prefix=role_prefix,
                                    schemas=("community",))
        assert community.published == [] and community.dropped == []
        assert sorted(community.skipped) == ["community.resident_count", "community.ticket"]
        with _admin(serving_db) as pg:
            assert pg.execute("select count(*) from analyst.division_codes where name like '%（新）'").fetchone()[0] > 0
        for schemas, analyst_in, community_in in [(("analyst",), {}, inputs["community"]),
                                                  (("community",), inputs["analyst"], {}), ((), {}, {})]:
            with pytest.raises(ServingInputError, match="schemas"):
                publish_serving(serving_db, "v9", analyst_in, community_in, COMMUNITIES, role_prefix=role_prefix,
                                schemas=schemas)
    finally:
        assert publish_serving(serving_db, "v1", **inputs, role_prefix=role_prefix).published == [
            "analyst.division_codes"]


# --- inputs that cannot be served ---------------------------------------------------------------------

def test_inputs_that_cannot_be_served_are_refused_by_name(serving_db, inputs, role_prefix, tmp_path):
    clash = {**inputs["analyst"], "mart.division_codes": inputs["analyst"]["ref.division_codes"]}
    with pytest.raises(ServingInputError, match="ref.division_codes.*mart.division_codes|mart.division_codes.*ref"):
        publish_serving(serving_db, "v9", clash, {}, COMMUNITIES, role_prefix=role_prefix)
    with pytest.raises(ServingInputError, match="community.ticket"):
        publish_serving(serving_db, "v9", {}, {"ticket": inputs["community"]["ticket"],
                                               "core.ticket": inputs["community"]["ticket"]}, COMMUNITIES,
                        role_prefix=role_prefix)
    con = duckdb.connect()
    stray = _write(con, _fill(TICKET, code="999999999999", name="外社区", rows=3), tmp_path / "ticket.stray.parquet")
    with pytest.raises(ServingInputError, match="999999999999"):
        publish_serving(serving_db, "v9", inputs["analyst"], {"ticket": [*inputs["community"]["ticket"], stray]},
                        COMMUNITIES, role_prefix=role_prefix)
    with pytest.raises(ServingInputError, match="community code"):
        publish_serving(serving_db, "v9", {}, {}, [("a-b", "x")], role_prefix=role_prefix)


def test_serving_url_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("ONENET_SERVING_URL", raising=False)
    assert serving.serving_url() is None
    monkeypatch.setenv("ONENET_SERVING_URL", "postgresql://postgres@127.0.0.1:5432/onenet_serving")
    assert serving.serving_url() == "postgresql://postgres@127.0.0.1:5432/onenet_serving"
    assert os.environ["ONENET_SERVING_URL"].endswith("onenet_serving")


def test_other_duckdb_types_arrive_as_their_postgres_types(serving_db, inputs, published, role_prefix, tmp_path):
    con = duckdb.connect()
    zoo = _write(con, """
        select 1::tinyint as tiny, 2::utinyint as utiny, 3::uinteger as uint, 18446744073709551615::ubigint as ubig,
               1.5::float as real_number,
               'ab'::blob as bytes, '5f3c7b2e-9d1a-4c3b-8e2f-1a2b3c4d5e6f'::uuid as id, interval 1 day + interval 90 minute as span,
               time '08:30:00' as at_time, map {'甲': 1} as counts, [[1, 2], [3]] as nested, [1.25, null]::decimal(4, 2)[] as amounts,
               '{"k": [1, "二"]}'::json as doc, 'x'::enum('x', 'y') as choice, [date '2026-11-01'] as days,
               [timestamptz '2026-11-01 08:00:00+08'] as instants, [true, null] as flags
        """, tmp_path / "ref.type_zoo.parquet")
    try:
        result = publish_serving(serving_db, "v2", {**inputs["analyst"], "ref.type_zoo": zoo}, inputs["community"],
                                 COMMUNITIES, role_prefix=role_prefix)
        assert result.published == ["analyst.type_zoo"]
        with _admin(serving_db) as pg:
            types = dict(pg.execute("select column_name, format_type(atttypid, atttypmod) from information_schema.columns "
                                    "join pg_attribute on attrelid = 'analyst.type_zoo'::regclass and attname = column_name "
                                    "where table_schema = 'analyst' and table_name = 'type_zoo'").fetchall())
            row = pg.execute("select * from analyst.type_zoo").fetchone()
    finally:
        assert publish_serving(serving_db, "v1", **inputs, role_prefix=role_prefix).dropped == ["analyst.type_zoo"]
    assert types == {"tiny": "smallint", "utiny": "smallint", "uint": "bigint", "ubig": "numeric",
                     "real_number": "real", "bytes": "bytea", "id": "uuid", "span": "interval",
                     "at_time": "time without time zone", "counts": "jsonb", "nested": "jsonb",
                     "amounts": "numeric(4,2)[]", "doc": "jsonb", "choice": "text", "days": "date[]",
                     "instants": "timestamp with time zone[]", "flags": "boolean[]"}
    assert row == (1, 2, 3, 18446744073709551615, 1.5, b"ab",
                   uuid.UUID("5f3c7b2e-9d1a-4c3b-8e2f-1a2b3c4d5e6f"), datetime.timedelta(days=1, minutes=90),
                   datetime.time(8, 30), {"甲": 1}, [[1, 2], [3]], [decimal.Decimal("1.25"), None],
                   {"k": [1, "二"]}, "x", [datetime.date(2026, 11, 1)],
                   [datetime.datetime(2026, 11, 1, 0, 0, tzinfo=datetime.UTC)], [True, None])


def test_two_publishers_at_once_take_turns(serving_db, inputs, published, role_prefix, tmp_path):
    con = duckdb.connect()
    versions = {"a": _write(con, _fill(HOTLINE_RATES, rows=30_000), tmp_path / "a.parquet"),
                "b": _write(con, _fill(HOTLINE_RATES, rows=40_000), tmp_path / "b.parquet")}
    results: dict[str, serving.ServingResult] = {}
    failures: list[BaseException] = []

    def publish(name: str) -> None:
        try:
            results[name] = publish_serving(serving_db, name, {**inputs["analyst"], "mart.hotline_rates": versions[name]},
                                            inputs["community"], COMMUNITIES, role_prefix=role_prefix)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=publish, args=(name,)) for name in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        assert all(r.published == ["analyst.hotline_rates"] for r in results.values())
        with _admin(serving_db) as pg:
            served = _count(pg, "analyst", "hotline_rates")
            version = pg.execute("select version from serving_admin.published "
                                 "where relation = 'hotline_rates'").fetchone()[0]
            assert pg.execute("select count(*) from pg_tables where schemaname = 'serving_stage'").fetchone()[0] == 0
        assert served == {"a": 30_000, "b": 40_000}[version]  # the last one to swap, whole
    finally:
        publish_serving(serving_db, "v1", **inputs, role_prefix=role_prefix)


def test_a_missing_serving_database_is_created(inputs, role_prefix):
    name = f"onenet_serving_{secrets.token_hex(6)}"
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"  # as a SQLAlchemy URL, the way settings give it
    try:
        result = publish_serving(url, "v1", inputs["analyst"], {}, COMMUNITIES, role_prefix=role_prefix)
        assert sorted(result.published) == ["analyst.division_codes", "analyst.hotline_rates"]
        with _login(make_conninfo(PG_ADMIN, dbname=name), f"{role_prefix}analyst") as analyst:
            assert _count(analyst, "analyst", "division_codes") == 50
    finally:
        with _admin(PG_ADMIN) as pg:
            pg.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))



def test_a_reader_that_finishes_soon_only_delays_the_swap(serving_db, inputs, published, role_prefix, tmp_path):
    con = duckdb.connect()
    changed = _write(con, _fill(HOTLINE_RATES, rows=10), tmp_path / "mart.hotline_rates.parquet")
    reader = _login(serving_db, f"{role_prefix}analyst")
    reader.execute("begin")
    _count(reader, "analyst", "hotline_rates")
    threading.Timer(1.0, reader.close).start()  # the reader's transaction ends during the second attempt
    try:
        result = publish_serving(serving_db, "v2", {**inputs["analyst"], "mart.hotline_rates": changed},
                                 inputs["community"], COMMUNITIES, role_prefix=role_prefix, lock_timeout_s=0.5,
                                 lock_attempts=5)
        assert result.published == ["analyst.hotline_rates"] and result.rows["analyst.hotline_rates"] == 10
    finally:
        publish_serving(serving_db, "v1", **inputs, role_prefix=role_prefix)


# --- relations given in parts (per community and day): only changed parts are loaded again --------

GRID_DAILY = """
select '{code}' as community_code, date '{day}' as day_on, g::bigint as grid, ({seed} * g)::bigint as tickets,
       '第' || g || '网格' as note
from range(1, {rows} + 1) t(g)
"""


def _parts(con: duckdb.DuckDBPyConnection, folder: Path, version: str,
           days: dict[tuple[str, str], tuple[int, int]]) -> tuple[dict, dict]:
    """Files per (community, day) and their Part records as a snapshot manifest gives them:
    (community_code, day) -> (rows, seed); a part's hash stands for its content (seed and rows)."""
    community: dict[str, serving.Part] = {}
    analyst: dict[str, serving.Part] = {}
    for (code, day), (rows, seed) in sorted(days.items()):
        path = _write(con, _fill(GRID_DAILY, code=code, day=day, rows=rows, seed=seed),
                      folder / f"{version}-{code}-{day}.parquet")
        digest = f"{rows}:{seed}"
        community[f"{code}|{day}"] = serving.Part((("community_code", code), ("day_on", day)), digest, rows, (path,))
        analyst[f"{code}|{day}"] = serving.Part((("community_code", code), ("day_on", day)), digest, rows, (path,))
    return analyst, community


def test_a_relation_given_in_parts_loads_only_the_changed_parts(role_prefix, tmp_path):
    name = f"onenet_serving_{secrets.token_hex(6)}"
    url = make_conninfo(PG_ADMIN, dbname=name)
    con = duckdb.connect()
    codes = [code for code, _ in COMMUNITIES]
    v1 = {(code, f"2026-11-0{d}"): (3 + i, 1) for i, code in enumerate(codes) for d in (1, 2, 3)}
    v2 = dict(v1)
    v2[(codes[0], "2026-11-03")] = (3, 7)                     # a day's rows changed
    v2.update({(code, "2026-11-04"): (2, 1) for code in codes})  # a new day
    del v2[(codes[2], "2026-11-01")]                            # a part no longer published

    def publish(version: str, days: dict) -> tuple[serving.ServingResult, list[Path]]:
        analyst, community = _parts(con, tmp_path, version, days)
        files = [f for p in community.values() for f in p.files]
        done = publish_serving(url, version, {"mart.grid_daily": files}, {"grid_daily": files}, COMMUNITIES,
                               role_prefix=role_prefix, parts={("analyst", "mart.grid_daily"): analyst,
                                                               ("community", "grid_daily"): community})
        return done, files

    try:
        first, _ = publish("v1", v1)
        assert sorted(first.published) == ["analyst.grid_daily", "community.grid_daily"] and first.incremental == []
        second, files = publish("v2", v2)
        assert sorted(second.incremental) == ["analyst.grid_daily", "community.grid_daily"]
        expected = sorted(tuple(str(v) for v in row) for row in _duck_rows(files))
        with _admin(url) as pg:
            for table in (sql.Identifier("analyst", "grid_daily"), sql.Identifier("community", "grid_daily")):
                served = sorted(tuple(str(v) for v in row)
                                for row in pg.execute(sql.SQL("select * from {}").format(table)).fetchall())
                assert served == expected
            parts = pg.execute("select relation, part, content_hash from serving_admin.published_part "
                               "where schema_name = 'community' order by part").fetchall()
            assert parts == sorted(("grid_daily", f"{c}|{d}", f"{r}:{s}") for (c, d), (r, s) in v2.items())
        with _login(url, f"{role_prefix}community_{codes[0]}") as pg:  # row-level security still holds
            seen = pg.execute("select community_code, count(*) from community.grid_daily group by 1").fetchall()
            assert seen == [(codes[0], sum(r for (c, _), (r, _) in v2.items() if c == codes[0]))]
        third, _ = publish("v3", v2)
        assert third.published == [] and sorted(third.skipped) == ["analyst.grid_daily", "community.grid_daily"]
    finally:
        con.close()
        with _admin(PG_ADMIN) as pg:
            pg.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
