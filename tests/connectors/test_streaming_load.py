"""A load that lands each batch as it is added: one transaction still, and undo() of one file's rows."""

from __future__ import annotations

import pyarrow as pa
import pytest

from connectors.common.exceptions import SourceUnavailable
from connectors.common.landing import Entity
from connectors.common.loads import Load
from warehouse import db

ROWS = Entity("demo", "rows", key=("id",), required={"id": pa.string()})


@pytest.fixture
def con(tmp_path):
    c = db.connect(tmp_path / "w.duckdb")
    yield c
    c.close()


def rows(*ids: str, v: str = "1") -> pa.Table:
    return pa.table({"id": list(ids), "v": [v] * len(ids)})


def count(con, where: str = "true") -> int:
    return con.execute(f"select count(*) from raw.demo_rows where {where}").fetchall()[0][0]


def test_batches_land_as_added_and_commit_once(con, tmp_path):
    with Load(con, ROWS) as load:
        load.land_as_added()
        load.add(rows("a", "b"), "f1 line 2")
        assert count(con) == 2  # landed already, inside the load's open transaction
        load.add(rows("b", "c"), "f2 line 2")  # b is a duplicate of the first batch
        r = load.finish({}, watermark=None)
    assert (r.rows_in, r.rows_landed, r.duplicates_skipped) == (4, 3, 1)
    assert con.execute("select rows_in, rows_landed, status from meta.loads").fetchall() == [(4, 3, "succeeded")]


def test_undo_takes_back_one_files_rows_and_counts(con):
    with Load(con, ROWS) as load:
        load.land_as_added()
        load.add(rows("a"), "good.csv line 2")
        mark = load.mark()
        load.add(rows("x", "y"), pa.array(["bad.csv line 2", "bad.csv line 3"]))
        load.quarantine("bad.csv line 4", "x,", "broken")
        load.undo(mark, "bad.csv line ")
        load.add(rows("z"), "later.csv line 2")
        r = load.finish({}, watermark=None)
    assert (r.rows_in, r.rows_landed, r.rows_quarantined) == (2, 2, 0)
    assert sorted(i for (i,) in con.execute("select id from raw.demo_rows").fetchall()) == ["a", "z"]
    assert con.execute("select count(*) from meta.quarantine").fetchall() == [(0,)]


def test_a_failure_after_eager_landing_lands_nothing(con):
    with pytest.raises(SourceUnavailable), Load(con, ROWS) as load:
        load.land_as_added()
        load.add(rows("a", "b"), "f line 2")
        raise SourceUnavailable("demo: gone half-way")
    assert con.execute("select count(*) from information_schema.tables where table_schema = 'raw'").fetchall() \
        == [(0,)]
    assert con.execute("select status, message from meta.loads").fetchall() == [("failed", "demo: gone half-way")]
    # The connection is usable again: the next load works.
    with Load(con, ROWS) as load:
        load.add(rows("a"), "f line 2")
        assert load.finish({}).rows_landed == 1


def test_statements_run_on_finish_commit_with_the_load_or_not_at_all(con):
    con.execute("create table meta.demo_notes (t varchar)")
    with Load(con, ROWS) as load:
        load.execute_on_finish("insert into meta.demo_notes values (?)", ["kept"])
        load.finish({})
    with pytest.raises(SourceUnavailable), Load(con, ROWS) as load:
        load.execute_on_finish("insert into meta.demo_notes values (?)", ["lost"])
        raise SourceUnavailable("demo: gone")
    assert con.execute("select t from meta.demo_notes").fetchall() == [("kept",)]


def test_landed_batches_are_not_held_in_memory_until_the_commit(con):
    # A view registered inside an open transaction keeps its Arrow data until the commit; landing
    # scans the batch by name instead, so a file landed block by block does not pile up in memory.
    n = 100_000
    with Load(con, ROWS) as load:
        load.land_as_added()
        base = pa.total_allocated_bytes()
        for i in range(6):
            load.add(pa.table({"id": [f"k{i}-{j}" for j in range(n)], "v": ["x" * 60] * n}), f"f{i} line 2")
        held = pa.total_allocated_bytes() - base
        assert load.finish({}).rows_landed == 6 * n
    assert held < 12 << 20, held  # one batch is about 8 MB; all six would be 48 MB


def buffer_setting(con) -> int:
    return int(con.execute("select current_setting('write_buffer_row_group_count')").fetchall()[0][0])


def test_eager_landing_writes_row_groups_at_once_and_restores_the_setting(con):
    before = buffer_setting(con)
    with Load(con, ROWS) as load:
        load.land_as_added()
        load.add(rows("a"), "f line 2")
        assert buffer_setting(con) == 1  # each full row group of the open insert goes to the file
        load.finish({}, watermark=None)
    assert buffer_setting(con) == before
    with pytest.raises(SourceUnavailable), Load(con, ROWS) as load:
        load.land_as_added()
        load.add(rows("b"), "f line 2")
        raise SourceUnavailable("gone")
    assert buffer_setting(con) == before


def test_keys_vouched_new_land_once_even_when_they_repeat_across_batches(con):
    with Load(con, ROWS) as load:
        load.land_as_added()
        load.expect_new_keys()
        load.add(rows("a", "b"), "f line 2")
        load.add(rows("b", "c"), "f line 4")            # b again, the same: a duplicate
        load.add(rows("c", v="2"), "f line 6")          # c again, changed: a new version
        load.add(pa.table({"id": ["d", "d"], "v": ["1", "1"]}), "f line 7")  # d twice in one batch
        r = load.finish({}, watermark=None)
    assert (r.rows_in, r.rows_landed, r.duplicates_skipped) == (7, 5, 2)
    assert con.execute("select id, v from raw.demo_rows order by id, v").fetchall() == [
        ("a", "1"), ("b", "1"), ("c", "1"), ("c", "2"), ("d", "1")]


def test_landings_are_whole_row_groups_the_rest_waits_and_undo_takes_it_back_too(con, monkeypatch):
    from connectors.common import loads

    monkeypatch.setattr(loads, "ROW_GROUP_ROWS", 4)
    seen: list[list[int]] = []
    real = loads.land

    def spy(con_, entity, batch, *args, **kwargs):
        seen.append([b.num_rows for b in batch.to_batches()])
        return real(con_, entity, batch, *args, **kwargs)

    monkeypatch.setattr(loads, "land", spy)
    with Load(con, ROWS) as load:
        load.land_as_added(6)
        load.add(rows(*"abcdefg"), "good.csv line 2")  # 7 waiting: 4 land, 3 wait
        assert seen == [[4]] and count(con) == 4
        mark = load.mark()  # lands the 3 waiting
        assert seen[-1] == [3] and count(con) == 7
        load.add(rows(*"hij"), "bad.csv line 2")
        load.add(rows(*"klmn"), "bad.csv line 5")  # 7 waiting: 4 land, 3 of bad.csv wait
        assert seen[-1] == [4] and count(con, "starts_with(_source_position, 'bad.csv')") == 4
        load.undo(mark, "bad.csv line ")  # the landed and the waiting rows of bad.csv, all of them
        load.add(rows("z"), "later.csv line 2")
        r = load.finish({}, watermark=None)
    assert (r.rows_in, r.rows_landed) == (8, 8)
    assert sorted(i for (i,) in con.execute("select id from raw.demo_rows").fetchall()) == [*"abcdefg", "z"]
    # Record batches of a whole row group each (the last may be shorter), whatever came in.
    assert loads.row_groups(pa.concat_tables([rows(*"abc"), rows(*"defgh"), rows("i")])).to_batches()[0].num_rows == 4
    assert [b.num_rows for b in loads.row_groups(rows(*"abcdefghij")).to_batches()] == [4, 4, 2]
