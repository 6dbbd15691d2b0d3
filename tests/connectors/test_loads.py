"""The load contract every connector shares: one transaction, key + hash de-duplication, drift, state."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from connectors.common.exceptions import SchemaDrift, SourceUnavailable
from connectors.common.landing import Entity
from connectors.common.loads import Load
from warehouse import db

TICKETS = Entity("demo", "tickets", key=("id",), required={"id": pa.string(), "updated_at": pa.string()})


@pytest.fixture
def con(tmp_path):
    c = db.connect(tmp_path / "w.duckdb")
    yield c
    c.close()


def rows(*items) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(("id", "updated_at", "v"), i, strict=True)) for i in items])


def one_load(con, table, state=None, position="page 1"):
    with Load(con, TICKETS) as load:
        load.add(table, position)
        return load.finish(state or {}, watermark=max(table["updated_at"].to_pylist()))


def test_lands_once_by_key_and_hash(con):
    r = one_load(con, rows(("a", "1", 1), ("b", "1", 2), ("a", "1", 1)))
    assert (r.rows_in, r.rows_landed, r.duplicates_skipped) == (3, 2, 1)
    again = one_load(con, rows(("a", "1", 1), ("b", "1", 2)))
    assert again.rows_landed == 0 and again.duplicates_skipped == 2
    update = one_load(con, rows(("a", "2", 10)))
    assert update.rows_landed == 1  # a new version of a is a new row
    assert con.execute("select count(*), count(distinct _load_id) from raw.demo_tickets").fetchall() == [(3, 2)]
    lineage = con.execute("select _source_position, length(_record_hash) from raw.demo_tickets limit 1").fetchall()
    assert lineage == [("page 1", 16)]


def test_versions_hashed_by_the_old_md5_are_still_recognised(con):
    one_load(con, rows(("a", "1", 1), ("b", "1", 2)))
    # A raw table landed before the hash changed holds md5(to_json(...)) hashes (32 hex digits).
    con.execute("update raw.demo_tickets set _record_hash = md5(to_json(struct_pack(id := id, "
                "updated_at := updated_at, v := v)))")
    again = one_load(con, rows(("a", "1", 1), ("b", "1", 2), ("b", "2", 3)))
    assert (again.rows_landed, again.duplicates_skipped) == (1, 2)
    hashes = con.execute("select length(_record_hash), count(*) from raw.demo_tickets group by 1 order by 1").fetchall()
    assert hashes == [(16, 1), (32, 2)]


def test_state_and_loads_row_move_with_the_rows(con):
    r = one_load(con, rows(("a", "5", 1)), state={"cursor": "x"})
    state = json.loads(con.execute("select state from meta.source_state").fetchall()[0][0])
    assert state == {"cursor": "x", "watermark": "5"}
    row = con.execute("select status, rows_in, rows_landed, watermark_before, watermark_after from meta.loads "
                      "where load_id = ?", [r.load_id]).fetchall()
    assert row == [("succeeded", 1, 1, None, "5")]


def test_a_failed_load_lands_nothing_and_keeps_the_state(con):
    one_load(con, rows(("a", "1", 1)), state={"cursor": "before"})
    with pytest.raises(SourceUnavailable), Load(con, TICKETS) as load:
        load.add(rows(("z", "9", 9)), "page 1")
        raise SourceUnavailable("demo: page 2 failed")
    assert con.execute("select count(*) from raw.demo_tickets").fetchall() == [(1,)]
    assert json.loads(con.execute("select state from meta.source_state").fetchall()[0][0])["cursor"] == "before"
    assert con.execute("select status, message from meta.loads order by started_at desc limit 1").fetchall() == [
        ("failed", "demo: page 2 failed")]


def test_missing_or_retyped_required_column_fails_the_whole_load(con):
    one_load(con, rows(("a", "1", 1)))
    with pytest.raises(SchemaDrift, match="'updated_at' is missing"), Load(con, TICKETS) as load:
        load.add(pa.table({"id": ["b"], "v": [1]}), "page 1")
        load.finish({})
    with pytest.raises(SchemaDrift, match="'id' of tickets arrived as int64"), Load(con, TICKETS) as load:
        load.add(pa.table({"id": [7], "updated_at": ["2"], "v": [1]}), "page 1")
        load.finish({})
    assert con.execute("select count(*) from raw.demo_tickets").fetchall() == [(1,)]


def test_a_new_source_column_is_landed_and_reported(con):
    one_load(con, rows(("a", "1", 1)))
    with Load(con, TICKETS) as load:
        load.add(pa.table({"id": ["b"], "updated_at": ["2"], "v": [2], "district": ["江岸区"]}), "page 1")
        r = load.finish({})
    assert "new source column 'district'" in r.message
    assert con.execute("select district from raw.demo_tickets where id = 'b'").fetchall() == [("江岸区",)]
    assert con.execute("select column_name from meta.schema_changes").fetchall() == [("district",)]


def test_quarantined_records_reconcile(con):
    with Load(con, TICKETS) as load:
        load.add(rows(("a", "1", 1), ("a", "1", 1)), "file x.csv")
        load.quarantine("x.csv line 4", "a,b,\"c", "unbalanced quote")
        r = load.finish({})
    assert r.rows_in == r.rows_landed + r.duplicates_skipped + r.rows_quarantined == 3
    q = con.execute("select position, raw_record, reasons from meta.quarantine").fetchall()
    assert q[0][0] == "x.csv line 4" and json.loads(q[0][2])[0]["message"] == "unbalanced quote"


def test_an_interrupted_load_is_marked(con):
    Load(con, TICKETS).__enter__()  # a process that died after starting its load
    one_load(con, rows(("a", "1", 1)))
    assert con.execute("select status from meta.loads order by started_at").fetchall()[0] == ("interrupted",)


def test_a_value_reverted_to_an_earlier_version_lands_again(con):
    assert one_load(con, rows(("a", "1", 1))).rows_landed == 1
    assert one_load(con, rows(("a", "1", 2))).rows_landed == 1        # A -> B
    reverted = one_load(con, rows(("a", "1", 1)))                     # B -> A: equal to an earlier version
    assert (reverted.rows_landed, reverted.duplicates_skipped) == (1, 0)
    assert one_load(con, rows(("a", "1", 1))).rows_landed == 0        # A again: the current version
    seqs = con.execute("select l.load_seq from raw.demo_tickets r join meta.loads l on l.load_id = r._load_id "
                       "order by r.rowid").fetchall()
    assert [s for (s,) in seqs] == sorted(s for (s,) in seqs) and len({s for (s,) in seqs}) == 3


def test_a_reconciliation_tombstones_what_the_source_lost_and_a_key_may_come_back(con):
    from connectors.common.reconcile import Reconciliation

    one_load(con, rows(("a", "1", 1), ("b", "1", 2), ("c", "1", 3)))

    def reconcile(table):
        with Load(con, TICKETS, reconcile=Reconciliation(missing_kind="phantom")) as load:
            load.add(table, "page 1")
            return load.finish({})

    r = reconcile(rows(("a", "1", 1), ("c", "1", 30)))
    assert r.reconciled == {"missed_update": 0, "back_dated": 0, "silent_change": 1, "revert": 0,
                            "hard_delete": 0, "phantom": 1}
    assert (r.rows_in, r.rows_landed, r.duplicates_skipped) == (3, 2, 1)  # 2 read + 1 tombstone
    assert con.execute("select id, _record_hash, _is_tombstone, v from raw.demo_tickets where _load_id = ? "
                       "order by id", [r.load_id]).fetchall() == [
        ("b", "tombstone", True, None), ("c", con.execute("select _record_hash from raw.demo_tickets "
                                                          "where v = 30").fetchone()[0], None, 30)]
    assert set(reconcile(rows(("a", "1", 1), ("c", "1", 30))).reconciled.values()) == {0}
    assert one_load(con, rows(("b", "1", 2))).rows_landed == 1  # back in the source: lands again
    assert reconcile(rows(("a", "1", 1), ("b", "1", 2), ("c", "1", 30))).rows_landed == 0
