"""The serving database loaded by changed rows: after any sequence of publishes every served table
equals, as a multiset of rows, what a whole load of the same files gives in a fresh database."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from tests.warehouse.test_serving import (  # noqa: F401
    COMMUNITIES,
    PG_ADMIN,
    _admin,
    _fill,
    _login,
    _write,
    role_prefix,
)
from warehouse.publish import serving
from warehouse.publish.serving import ServingError, ServingResult, publish_serving

pytestmark = pytest.mark.postgres

# Every column type the published relations use, each NULL in some rows; `k` repeats so that some
# rows are exact duplicates; `x` is the value a version changes.
KINDS = """
select j::bigint as k, j::integer as n, '街道' || j as street,
       case when j % 7 = 0 then null else j end::bigint as maybe,
       case when j % 5 = 0 then null else '城管/市容,"引号"' || chr(10) || j end as note,
       case when j % 6 = 0 then null else j / 7.0 end::double as rate,
       case when j % 8 = 0 then null else j / 3.0 end::float as ratio,
       case when j % 9 = 0 then null else (j * 1.25)::decimal(12, 2) end as amount,
       case when j % 4 = 0 then null else date '2026-11-01' + (j % 30)::integer end as day,
       case when j % 10 = 0 then null else timestamptz '2026-11-01 00:00:00+08' + j * interval 37 minute end
           as reported_at,
       case when j % 11 = 0 then null else timestamp '2026-11-01 00:00:00' + j * interval 1 second end as local_at,
       case when j % 3 = 0 then null else j % 2 = 0 end as is_open,
       case when j % 12 = 0 then null else ['噪音', null, 'a"b\\c', 'x,y', '{}', ''] end as tags,
       case when j % 13 = 0 then null else [j, null] end as counts,
       case when j % 14 = 0 then null else {'dept': '城管局', 'n': j} end as detail,
       case when j % 15 = 0 then null else ('\\xAA' || j::varchar)::blob end as raw,
       case when j % 16 = 0 then null else j * interval 90 minute end as span,
       case when j % 17 = 0 then null else uuid '00000000-0000-0000-0000-000000000000' end as ref,
       '' as empty_text
from (select i, i % {distinct} as j from range({rows}) t(i))
"""


@contextlib.contextmanager
def _fresh_database() -> Iterator[str]:
    """A new, empty database on this machine's PostgreSQL, dropped after the block."""
    name = f"onenet_serving_{secrets.token_hex(6)}"
    with _admin(PG_ADMIN) as pg:
        pg.execute(sql.SQL("create database {} encoding 'UTF8'").format(sql.Identifier(name)))
    try:
        yield make_conninfo(PG_ADMIN, dbname=name)
    finally:
        with _admin(PG_ADMIN) as pg:
            pg.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture
def database(role_prefix) -> Iterator[str]:  # noqa: F811
    """A fresh database for one test, dropped after it."""
    with _fresh_database() as url:
        yield url


def _served(url: str) -> dict[str, Counter[str]]:
    """Every served table as a multiset of its rows' text (PostgreSQL's own, exact for every type)."""
    with _admin(url) as pg:
        tables = pg.execute("select schemaname, tablename from pg_tables where schemaname in ('analyst', "
                            "'community') order by 1, 2").fetchall()
        return {f"{s}.{t}": Counter(r[0] for r in pg.execute(sql.SQL("select (t.*)::text from {} t").format(
            sql.Identifier(s, t))).fetchall()) for s, t in tables}


def _reference(analyst: dict, community: dict, prefix: str) -> dict[str, Counter[str]]:
    """What a whole load of these files serves, in a fresh database."""
    with _fresh_database() as url:
        done = publish_serving(url, "reference", analyst, community, COMMUNITIES, role_prefix=prefix)
        assert done.incremental == []
        return _served(url)


def _publish(url: str, version: str, analyst: dict, community: dict, prefix: str, **options) -> ServingResult:
    """Publish, then check the served tables equal a whole load of the same files."""
    done = publish_serving(url, version, analyst, community, COMMUNITIES, role_prefix=prefix, **options)
    assert _served(url) == _reference(analyst, community, prefix)
    return done


def _kinds(con: duckdb.DuckDBPyConnection, path: Path, rows: int = 600, distinct: int = 200, where: str = "",
           extra: str = "") -> Path:
    query = _fill(KINDS, rows=rows, distinct=distinct) + (f" where {where}" if where else "")
    return _write(con, f"{query} {extra}", path)


def test_changed_added_deleted_and_duplicated_rows_load_by_rows(database, role_prefix, tmp_path):  # noqa: F811
    con = duckdb.connect()
    v1 = _kinds(con, tmp_path / "v1.parquet")  # 600 rows, each of 200 distinct rows three times
    first = _publish(database, "v1", {"mart.kinds": v1}, {}, role_prefix)
    assert first.published == ["analyst.kinds"] and first.incremental == []

    # Rows whose k is 3 change values (a value -> NULL, NULL -> a value), k 5 loses one of its three
    # copies, k 7 gains two, k 9 goes, and new rows come.
    v2 = _write(con, f"""
        select * replace (case when k = 3 then coalesce(maybe, -1) + 1 else maybe end as maybe,
                          case when k = 3 then null else note end as note)
        from read_parquet('{v1}') where k <> 9
        qualify not (k = 5 and row_number() over (partition by k, maybe, note order by k) = 1)
        union all (select * from read_parquet('{v1}') where k = 7 limit 2)
        union all select * replace (k + 1000 as k) from read_parquet('{v1}') where k < 4
    """, tmp_path / "v2.parquet")
    second = _publish(database, "v2", {"mart.kinds": v2}, {}, role_prefix)
    assert second.published == ["analyst.kinds"] and second.incremental == ["analyst.kinds"]

    # The sign of zero changes (DuckDB's hash takes 0.0 and -0.0 alike, PostgreSQL does not), and a
    # row comes, so the content hash differs (it sums DuckDB's hashes: a sign alone goes unnoticed).
    zeros = _write(con, f"select * replace (case when k = 2 then 0.0::double when k = 4 then -(0.0::double) "
                        f"else rate end as rate) from read_parquet('{v2}')", tmp_path / "zeros.parquet")
    assert _publish(database, "v2b", {"mart.kinds": zeros}, {}, role_prefix).incremental == ["analyst.kinds"]
    flipped = _write(con, f"select * replace (case when k = 2 then -(0.0::double) when k = 4 then 0.0::double "
                          f"else rate end as rate) from read_parquet('{v2}') "
                          f"union all (select * from read_parquet('{v2}') limit 1)", tmp_path / "flipped.parquet")
    assert _publish(database, "v2c", {"mart.kinds": flipped}, {}, role_prefix).incremental == ["analyst.kinds"]
    with _admin(database) as pg:
        assert pg.execute("select count(*) from analyst.kinds where rate = 0 and k in (2, 4) "
                          "and rate::text = '-0'").fetchone()[0] == 3

    # Back to the first version, then an unchanged publish is skipped.
    third = _publish(database, "v3", {"mart.kinds": v1}, {}, role_prefix)
    assert third.incremental == ["analyst.kinds"]
    assert publish_serving(database, "v4", {"mart.kinds": v1}, {}, COMMUNITIES,
                           role_prefix=role_prefix).skipped == ["analyst.kinds"]
    with _admin(database) as pg:
        assert pg.execute("select count(*) from pg_tables where schemaname = 'serving_stage'").fetchone()[0] == 0


def test_a_large_change_loads_whole_and_json_is_never_diffed(database, role_prefix, tmp_path):  # noqa: F811
    con = duckdb.connect()
    v1 = _kinds(con, tmp_path / "v1.parquet")
    _publish(database, "v1", {"mart.kinds": v1}, {}, role_prefix)
    most = _kinds(con, tmp_path / "most.parquet", where="i % 2 = 0")  # half the rows go
    assert _publish(database, "v2", {"mart.kinds": most}, {}, role_prefix).incremental == []

    j1 = _write(con, "select i, ('{\"a\": ' || i || '}')::json as j from range(100) t(i)", tmp_path / "j1.parquet")
    j2 = _write(con, "select i, ('{\"a\": ' || i || (case when i = 5 then ' ' else '' end) || '}')::json as j "
                     "from range(100) t(i)", tmp_path / "j2.parquet")
    _publish(database, "v3", {"mart.kinds": most, "mart.j": j1}, {}, role_prefix)
    result = _publish(database, "v4", {"mart.kinds": most, "mart.j": j2}, {}, role_prefix)
    assert result.published == ["analyst.j"] and result.incremental == []


TICKET = """
select '{code}' as community_code, '{name}' as community_name, i::bigint as id,
       case when i % 4 = 0 then null else '1380013' || lpad(i::varchar, 4, '0') end as phone,
       '居民反映楼道堆物，第' || i || '号' || {edit} as body,
       case when i % 5 = 0 then null else timestamptz '2026-11-02 09:30:00+08' + i * interval 1 hour end as created_at,
       case when i % 3 = 0 then null else ['楼道', '消防'] end as tags
from range({rows}) t(i)
"""


def _tickets(con: duckdb.DuckDBPyConnection, folder: Path, version: str, rows: int, edit: str = "''") -> list[Path]:
    return [_write(con, _fill(TICKET, code=code, name=name, rows=rows + i, edit=edit),
                   folder / f"ticket.{version}.{code}.parquet") for i, (code, name) in enumerate(COMMUNITIES)]


def test_a_community_relation_by_rows_keeps_row_level_security(database, role_prefix, tmp_path,  # noqa: F811
                                                               monkeypatch):
    monkeypatch.setattr(serving, "ROWS_SHARE", 0.5)  # a third of the rows go at the last step
    con = duckdb.connect()
    v1 = _tickets(con, tmp_path, "v1", 100)
    _publish(database, "v1", {}, {"ticket": v1}, role_prefix)
    # Every community changes a little: a few bodies edited, one more ticket each.
    v2 = _tickets(con, tmp_path, "v2", 101, edit="case when i % 40 = 1 then '（已处理）' else '' end")
    assert _publish(database, "v2", {}, {"ticket": v2}, role_prefix).incremental == ["community.ticket"]
    for i, (code, _name) in enumerate(COMMUNITIES):
        with _login(database, f"{role_prefix}community_{code}") as pg:
            seen = pg.execute("select community_code, count(*), count(*) filter (where body like '%已处理%') "
                              "from ticket group by 1").fetchall()
            assert seen == [(code, 101 + i, 3)]
    # A community's file given twice serves its rows twice; then once again: of each row served
    # twice, one copy goes (the other is in the file both versions share).
    twice = [*v2, v2[0]]
    assert _publish(database, "v3", {}, {"ticket": twice}, role_prefix).incremental == ["community.ticket"]
    assert _publish(database, "v4", {}, {"ticket": v2}, role_prefix).incremental == ["community.ticket"]


def test_a_changed_shape_loads_whole_and_a_vanished_relation_goes(database, role_prefix, tmp_path):  # noqa: F811
    con = duckdb.connect()
    keep = tmp_path / "keep"
    v1 = _kinds(con, tmp_path / "v1.parquet")
    tickets = _tickets(con, tmp_path, "v1", 50)
    _publish(database, "v1", {"mart.kinds": v1}, {"ticket": tickets}, role_prefix, keep_dir=keep)
    wider = _kinds(con, tmp_path / "wider.parquet", extra="")
    wider = _write(con, f"select *, 1 as added from read_parquet('{wider}')", tmp_path / "wider2.parquet")
    done = _publish(database, "v2", {"mart.kinds": wider}, {"ticket": tickets}, role_prefix, keep_dir=keep)
    assert done.published == ["analyst.kinds"] and done.incremental == [] and done.skipped == ["community.ticket"]
    retyped = _write(con, f"select * replace (n::bigint as n) from read_parquet('{wider}')", tmp_path / "retyped.parquet")
    done = _publish(database, "v3", {"mart.kinds": retyped}, {"ticket": tickets}, role_prefix, keep_dir=keep)
    assert done.published == ["analyst.kinds"] and done.incremental == []
    kept = next(keep.iterdir())  # one folder per serving database
    assert sorted(p.name for p in kept.iterdir()) == ["analyst.kinds", "community.ticket"]
    done = _publish(database, "v4", {}, {"ticket": tickets}, role_prefix, keep_dir=keep)
    assert done.dropped == ["analyst.kinds"]
    assert sorted(p.name for p in kept.iterdir()) == ["community.ticket"]
    assert len(list((kept / "community.ticket").iterdir())) == 1  # one version's links, not one per publish


def test_kept_links_outlive_the_snapshot_and_a_rewritten_file_loads_whole(database, role_prefix, tmp_path):  # noqa: F811
    con = duckdb.connect()
    keep = tmp_path / "keep"
    v1 = _kinds(con, tmp_path / "v1.parquet")
    _publish(database, "v1", {"mart.kinds": v1}, {}, role_prefix, keep_dir=keep)
    v1.unlink()  # the snapshot's old version is removed before the serving database is loaded
    v2 = _kinds(con, tmp_path / "v2.parquet", where="i % 100 <> 0")
    assert _publish(database, "v2", {"mart.kinds": v2}, {}, role_prefix, keep_dir=keep).incremental == ["analyst.kinds"]

    # Without kept links, a removed file means a whole load.
    v3 = _kinds(con, tmp_path / "v3.parquet", where="i % 50 <> 0")
    assert _publish(database, "v3", {"mart.kinds": v3}, {}, role_prefix).incremental == ["analyst.kinds"]
    v3.unlink()
    v4 = _kinds(con, tmp_path / "v4.parquet", where="i % 60 <> 0")
    assert _publish(database, "v4", {"mart.kinds": v4}, {}, role_prefix).incremental == []
    # A file rewritten in place (same path, other rows) is not trusted either.
    _kinds(con, v4, where="i % 70 <> 0")
    v5 = _kinds(con, tmp_path / "v5.parquet", where="i % 80 <> 0")
    assert _publish(database, "v5", {"mart.kinds": v5}, {}, role_prefix).incremental == []


def test_a_file_in_both_versions_is_not_read_and_days_add_up(database, role_prefix, tmp_path,  # noqa: F811
                                                             monkeypatch):
    monkeypatch.setattr(serving, "ROWS_SHARE", 0.5)  # a fifth of the rows come at once
    con = duckdb.connect()
    days = [_write(con, f"select date '2026-11-0{d}' as day_on, i::bigint as grid, (i * {d})::bigint as tickets "
                        f"from range(300) t(i)", tmp_path / f"day{d}.parquet") for d in range(1, 6)]
    _publish(database, "v1", {"mart.grid_daily": days[:4]}, {}, role_prefix)
    # A new day, and the last day's rows corrected: the first three days are the same files.
    fixed = _write(con, "select date '2026-11-04' as day_on, i::bigint as grid, (i * 4 + (i % 50 = 0)::int)::bigint "
                        "as tickets from range(300) t(i)", tmp_path / "day4b.parquet")
    done = _publish(database, "v2", {"mart.grid_daily": [*days[:3], fixed, days[4]]}, {}, role_prefix)
    assert done.incremental == ["analyst.grid_daily"]


def test_a_reader_keeps_reading_the_old_rows_during_the_swap(database, role_prefix, tmp_path):  # noqa: F811
    con = duckdb.connect()
    v1 = _kinds(con, tmp_path / "v1.parquet")
    _publish(database, "v1", {"mart.kinds": v1}, {}, role_prefix)
    before = _served(database)["analyst.kinds"]
    reader = _login(database, f"{role_prefix}analyst")
    reader.execute("begin isolation level repeatable read")
    assert reader.execute("select count(*) from kinds").fetchone()[0] == 600
    v2 = _kinds(con, tmp_path / "v2.parquet", where="i % 100 <> 0")
    try:
        # Row locks only: the swap does not wait for the reader (a lock wait would time out here).
        done = publish_serving(database, "v2", {"mart.kinds": v2}, {}, COMMUNITIES, role_prefix=role_prefix,
                               lock_timeout_s=0.2, lock_attempts=1)
        assert done.incremental == ["analyst.kinds"]
        seen = Counter(r[0] for r in reader.execute("select (t.*)::text from kinds t").fetchall())
        assert seen == before
        reader.execute("commit")
        assert reader.execute("select count(*) from kinds").fetchone()[0] == 594
    finally:
        reader.close()


def test_a_reader_mid_query_sees_the_old_or_the_new_rows(database, role_prefix, tmp_path):  # noqa: F811
    con = duckdb.connect()
    v1 = _kinds(con, tmp_path / "v1.parquet")
    _publish(database, "v1", {"mart.kinds": v1}, {}, role_prefix)
    v2 = _kinds(con, tmp_path / "v2.parquet", where="i % 100 <> 0")
    counts: list[int] = []
    stop = threading.Event()

    def read() -> None:
        with _login(database, f"{role_prefix}analyst") as pg:
            while not stop.is_set():
                counts.append(pg.execute("select count(*) from kinds").fetchone()[0])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for version, path in (("v2", v2), ("v3", v1), ("v4", v2)):
            assert publish_serving(database, version, {"mart.kinds": path}, {}, COMMUNITIES,
                                   role_prefix=role_prefix).incremental == ["analyst.kinds"]
    finally:
        stop.set()
        reader.join()
    assert counts and set(counts) <= {600, 594}


def test_a_served_table_changed_by_hand_is_refused_then_reloaded_whole(database, role_prefix, tmp_path):  # noqa: F811
    con = duckdb.connect()
    v1 = _kinds(con, tmp_path / "v1.parquet")
    _publish(database, "v1", {"mart.kinds": v1}, {}, role_prefix)
    with _admin(database) as pg:
        pg.execute("delete from analyst.kinds where k = 5")
    v2 = _kinds(con, tmp_path / "v2.parquet", where="j <> 5")
    with pytest.raises(ServingError, match="served rows matched"):
        publish_serving(database, "v2", {"mart.kinds": v2}, {}, COMMUNITIES, role_prefix=role_prefix)
    assert _publish(database, "v2", {"mart.kinds": v2}, {}, role_prefix).incremental == []


def test_file_identity_is_size_time_and_inode(tmp_path):
    path = tmp_path / "a"
    path.write_bytes(b"x")
    os.link(path, tmp_path / "b")
    assert serving._file_id(path) == serving._file_id(tmp_path / "b")
    assert serving._file_id(tmp_path / "missing") is None


def test_rows_with_a_null_in_every_column_are_matched_whole(database, role_prefix, tmp_path):  # noqa: F811
    con = duckdb.connect()
    query = ("select case when i % 2 = 0 then null else i % 50 end::bigint as a, "
             "case when i % 2 = 1 then null else '第' || (i % 50) end as b from range({rows}) t(i)")
    v1 = _write(con, _fill(query, rows=400), tmp_path / "v1.parquet")
    _publish(database, "v1", {"mart.pairs": v1}, {}, role_prefix)
    v2 = _write(con, _fill(query, rows=400) + " where i not in (0, 1, 2, 3)", tmp_path / "v2.parquet")
    assert _publish(database, "v2", {"mart.pairs": v2}, {}, role_prefix).incremental == ["analyst.pairs"]


def test_a_relation_served_before_its_files_were_kept_gets_them_when_skipped(database, role_prefix,  # noqa: F811
                                                                            tmp_path):
    con = duckdb.connect()
    keep = tmp_path / "keep"
    v1 = _kinds(con, tmp_path / "v1.parquet")
    _publish(database, "v1", {"mart.kinds": v1}, {}, role_prefix, keep_dir=keep)
    with _admin(database) as pg:  # as a serving database loaded before files were kept
        pg.execute("update serving_admin.published set files = null")
    assert publish_serving(database, "v2", {"mart.kinds": v1}, {}, COMMUNITIES, role_prefix=role_prefix,
                           keep_dir=keep).skipped == ["analyst.kinds"]
    v1.unlink()
    v3 = _kinds(con, tmp_path / "v3.parquet", where="i % 100 <> 0")
    assert _publish(database, "v3", {"mart.kinds": v3}, {}, role_prefix, keep_dir=keep).incremental == ["analyst.kinds"]


# --- the pipeline's composition: snapshots published, old versions removed, then the serving load -----

def _serve_current(url: str, root: Path, prefix: str, monkeypatch) -> ServingResult:
    """onenet.pipeline's serving load of both audiences, the analysts' then the communities', with
    this session's role prefix instead of the deployment's; one result for both."""
    from onenet import pipeline

    monkeypatch.setenv("ONENET_PUBLISHED", str(root))
    analyst, community = (pipeline._serve(url, "v", audience, role_prefix=prefix) for audience in ("analyst", "community"))
    return ServingResult("v", {**analyst.rows, **community.rows}, analyst.published + community.published,
                         analyst.incremental + community.incremental, analyst.skipped + community.skipped,
                         analyst.dropped + community.dropped)


def _serve_whole(root: Path, prefix: str, monkeypatch) -> dict[str, Counter[str]]:
    """What the pipeline's serving load of the current snapshots serves in a fresh database (whole)."""
    with _fresh_database() as fresh:
        assert _serve_current(fresh, root, prefix, monkeypatch).incremental == []
        return _served(fresh)


def _town_published_and_served(merged_town, tmp_path: Path, url: str, prefix: str, monkeypatch) -> Path:
    """The merged town published once (its own copy) and served into `url`; the published root."""
    from tests.warehouse.village import copy_warehouse
    from warehouse import db
    from warehouse.publish import new_version, publish

    root = tmp_path / "published"
    con = db.connect(copy_warehouse(merged_town[1], tmp_path / "w.duckdb"))
    try:
        publish(con, root, new_version("first"))
    finally:
        con.close()
    monkeypatch.setenv("ONENET_PUBLISHED", str(root))
    _serve_current(url, root, prefix, monkeypatch)
    return root


def _loading_into(url: str, prefix: str, errors: list[BaseException]):
    """A thread target: the pipeline's serving load of one audience into `url`, its error kept in `errors`."""
    from onenet import pipeline

    def load(audience: str) -> None:
        try:
            pipeline._serve(url, "v2", audience, role_prefix=prefix)
        except BaseException as exc:
            errors.append(exc)
    return load


def test_the_next_day_of_a_town_goes_by_rows_and_equals_a_whole_load(merged_town, database, role_prefix,  # noqa: F811
                                                                      tmp_path, monkeypatch):
    from tests.warehouse.village import copy_warehouse
    from warehouse import db
    from warehouse.publish import new_version, publish

    warehouse = copy_warehouse(merged_town[1], tmp_path / "w.duckdb")
    root = tmp_path / "published"
    con = db.connect(warehouse)
    try:
        publish(con, root, new_version("first"))
        first = _serve_current(database, root, role_prefix, monkeypatch)
        assert first.incremental == [] and first.published
        # A next day in small: a few residents renamed, a few tickets recategorised.
        con.execute("update core.person set name = name || '改' where person_id in "
                    "(select person_id from core.person where community_code is not null order by person_id limit 7)")
        con.execute("update core.ticket set category = category || '（改）' where ticket_id in "
                    "(select ticket_id from core.ticket order by ticket_id limit 9)")
        publish(con, root, new_version("second"))  # removes the first versions before the serving load
        second = _serve_current(database, root, role_prefix, monkeypatch)
    finally:
        con.close()
    assert second.incremental, second
    assert _serve_whole(root, role_prefix, monkeypatch) == _served(database)


def test_the_pipelines_publish_serves_each_audience_on_a_thread_once_its_snapshots_are_in_place(
        merged_town, database, role_prefix, tmp_path, monkeypatch):  # noqa: F811
    """onenet.pipeline.publish: each audience's tables load on a thread of their own as soon as that
    audience's snapshots are complete (the other's may still be written); both end up served."""
    import warehouse.publish as publishing
    from onenet import pipeline
    from tests.warehouse.village import copy_warehouse
    from warehouse import db

    calls: list[tuple[str, str]] = []
    real_serve = pipeline._serve
    real = {"analyst": publishing._publish_analyst, "community": publishing._publish_communities}
    done = {audience: threading.Event() for audience in real}

    def serve(url: str, version: str, audience: str) -> ServingResult:
        calls.append((audience, threading.current_thread().name))
        assert done[audience].is_set()  # its snapshots are complete before they are served
        return real_serve(url, version, audience, role_prefix=role_prefix)

    def snapshots(audience: str):
        def run(*args, **kwargs):
            try:
                return real[audience](*args, **kwargs)
            finally:
                done[audience].set()
        return run

    monkeypatch.setattr(pipeline, "_serve", serve)
    monkeypatch.setattr(publishing, "_publish_analyst", snapshots("analyst"))
    monkeypatch.setattr(publishing, "_publish_communities", snapshots("community"))
    monkeypatch.setenv("ONENET_PUBLISHED", str(tmp_path / "published"))
    monkeypatch.setenv("ONENET_EXPORTS", str(tmp_path / "exports"))
    monkeypatch.setenv("ONENET_ACCESS_LOG", str(tmp_path / "audit" / "access-log.jsonl"))
    monkeypatch.setenv("ONENET_SERVING_URL", database)
    con = db.connect(copy_warehouse(merged_town[1], tmp_path / "w.duckdb"))
    try:
        result = pipeline.publish(con, "threaded")
    finally:
        con.close()
    assert sorted(audience for audience, _ in calls) == ["analyst", "community"]
    assert all(thread.startswith("serving") for _, thread in calls), calls
    assert "analyst: " in (result.serving or "") and "; community: " in (result.serving or ""), result.serving
    served = _served(database)
    assert {k.split(".")[0] for k, rows in served.items() if rows} == {"analyst", "community"}
    assert sum(served["analyst.ticket"].values()) == result.analyst_rows["mart.ticket"]


def test_the_two_audiences_load_side_by_side_and_clear_only_their_own_leftovers(
        merged_town, database, role_prefix, tmp_path, monkeypatch):  # noqa: F811
    """Two publishes, one per audience, run at the same time (each waits for the other inside its
    load, which one lock for both would turn into a deadlock); each clears only its own audience's
    leftover stage tables, and both audiences end up served as one whole load serves them."""

    root = _town_published_and_served(merged_town, tmp_path, database, role_prefix, monkeypatch)  # the schemas, then leftovers of a killed load:
    with _admin(database) as pg:
        for table in ("as0_killed", "cs0_killed", "s0_before_letters"):
            pg.execute(sql.SQL("create table serving_stage.{} (x int)").format(sql.Identifier(table)))
    with _admin(database) as pg:  # the served tables emptied: both loads must run whole again
        for schema, table in pg.execute("select schemaname, tablename from pg_tables "
                                        "where schemaname in ('analyst', 'community')").fetchall():
            pg.execute(sql.SQL("delete from serving_admin.published where schema_name = %s and relation = %s"),
                       [schema, table])
    with _admin(database) as pg:  # the analysts' publish clears its own and the unlettered one only
        serving._clear_stage(pg, ["analyst"])
        assert {r[0] for r in pg.execute("select tablename from pg_tables where schemaname = 'serving_stage'")} \
            == {"cs0_killed"}
    both_inside = threading.Barrier(2, timeout=30)
    real_publish = serving._publish

    def publish_waiting(*args, **kwargs):
        both_inside.wait()  # each holds its own audience's lock here
        return real_publish(*args, **kwargs)

    monkeypatch.setattr(serving, "_publish", publish_waiting)
    errors: list[BaseException] = []
    load = _loading_into(database, role_prefix, errors)

    threads = [threading.Thread(target=load, args=(a,)) for a in ("analyst", "community")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [], errors
    monkeypatch.setattr(serving, "_publish", real_publish)
    with _admin(database) as pg:  # the communities' load cleared its own leftover
        assert pg.execute("select count(*) from pg_tables where schemaname = 'serving_stage'").fetchone()[0] == 0
    assert _serve_whole(root, role_prefix, monkeypatch) == _served(database)


def test_the_communities_are_served_from_the_district_copy_with_their_snapshots_rows(
        merged_town, database, role_prefix, tmp_path, monkeypatch):  # noqa: F811
    """The serving database loads the communities' relations from the district copy (one file per
    relation, a folder only the pipeline account enters), not from 186 snapshots a day: what it
    serves must be exactly the rows the communities' snapshots hold, a day later too, even when the
    warehouse has rows of a community that is not published (no login could see them)."""
    import stat

    from tests.warehouse.village import copy_warehouse
    from warehouse import db
    from warehouse.publish import DISTRICT_COPY, new_version, publish

    def served_by_community(relation: str) -> Counter[tuple]:
        with _admin(database) as pg:
            return Counter(pg.execute(sql.SQL("select community_code, count(*) from {} group by 1").format(
                sql.Identifier("community", relation))).fetchall())

    def snapshots_by_community(qualified: str) -> Counter[tuple]:
        files = [str(p) for p in root.glob(f"community/*/current/parquet/{qualified}.parquet/*.parquet")
                 if p.name != "columns.parquet"]
        return Counter(duckdb.connect().execute(
            "select community_code, count(*) from read_parquet(?) group by 1", [files]).fetchall())

    root = tmp_path / "published"
    con = db.connect(copy_warehouse(merged_town[1], tmp_path / "w.duckdb"))
    try:
        # A ticket filed under a community the registry does not list: published to no one.
        con.execute("update core.ticket set community_code = 'X999' where ticket_id = "
                    "(select min(ticket_id) from core.ticket where community_code is not null)")
        publish(con, root, new_version("first"))
        _serve_current(database, root, role_prefix, monkeypatch)
        con.execute("update core.ticket set category = category || '（改）' where ticket_id in "
                    "(select ticket_id from core.ticket where community_code <> 'X999' order by ticket_id limit 9)")
        publish(con, root, new_version("second"))
        second = _serve_current(database, root, role_prefix, monkeypatch)
        copy_version = (root / DISTRICT_COPY / "current").resolve().name
        # Nothing new since: the copy is not written again, and no community table is loaded again.
        publish(con, root, new_version("third"))
        third = _serve_current(database, root, role_prefix, monkeypatch)
    finally:
        con.close()
    assert "community.ticket" in second.incremental, second
    assert (root / DISTRICT_COPY / "current").resolve().name == copy_version
    assert not [key for key in third.published if key.startswith("community.")], third
    district = root / DISTRICT_COPY
    assert stat.S_IMODE(district.stat().st_mode) == 0o700
    copied = json.loads((district / "current" / "manifest.json").read_text(encoding="utf-8"))["relations"]
    assert "community.ticket" in copied and all(len(entry["parts"]) <= 1 for entry in copied.values())
    community = json.loads(next(root.glob("community/*/current/manifest.json")).read_text(encoding="utf-8"))
    for qualified in set(community["relations"]) - set(community["shared"]):
        served = served_by_community(qualified.split(".")[1])
        assert served == snapshots_by_community(qualified), qualified
        assert ("X999",) not in {(code,) for code, _ in served}
    assert sum(served_by_community("ticket").values()) > 0


def test_one_audiences_roles_and_grants_run_while_the_others_swap_is_open(
        merged_town, database, role_prefix, tmp_path, monkeypatch):  # noqa: F811
    """The analysts' _prepare (roles, grants; under the lock the audiences share) runs while the
    communities' swap transaction is open (under their own lock): neither may fail on the catalog
    rows the other changes, and both audiences end up served as one whole load serves them."""

    root = _town_published_and_served(merged_town, tmp_path, database, role_prefix, monkeypatch)
    with _admin(database) as pg:  # forget what was served: both audiences load and swap every table again
        pg.execute("delete from serving_admin.published")
    meet = threading.Barrier(2, timeout=60)
    prepared, communities_prepared = threading.Event(), threading.Event()
    real_prepare, real_record = serving._prepare, serving._record_parts
    swapping: list[str] = []

    def prepare(*args, **kwargs):
        if tuple(kwargs.get("schemas", ())) == ("analyst",):
            meet.wait()  # the communities' swap transaction is open now
            try:
                return real_prepare(*args, **kwargs)
            finally:
                prepared.set()
        try:
            return real_prepare(*args, **kwargs)
        finally:
            communities_prepared.set()  # and the lock the audiences share released

    def record(pg, st):
        if st.rel.schema == "community" and not swapping:
            swapping.append(st.rel.key)
            meet.wait()
            prepared.wait(10)  # keep the transaction open while the analysts' grants run (or wait on it)
        return real_record(pg, st)

    monkeypatch.setattr(serving, "_prepare", prepare)
    monkeypatch.setattr(serving, "_record_parts", record)
    errors: list[BaseException] = []
    load = _loading_into(database, role_prefix, errors)

    community = threading.Thread(target=load, args=("community",))
    community.start()  # its own _prepare first (the shared lock), then its load, then its swap
    assert communities_prepared.wait(60)
    analyst = threading.Thread(target=load, args=("analyst",))
    analyst.start()
    for t in (community, analyst):
        t.join()
    assert errors == [], errors
    assert swapping and prepared.is_set()
    monkeypatch.setattr(serving, "_prepare", real_prepare)
    monkeypatch.setattr(serving, "_record_parts", real_record)
    assert _serve_whole(root, role_prefix, monkeypatch) == _served(database)
