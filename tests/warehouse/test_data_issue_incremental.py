"""community.data_issue read from core.data_issue_finding (kept by the merge, per touched person) is
the same relation, row for row, as the earlier publish SQL that compared every record from scratch
(data_issue_from_scratch.sql, the publish SQL before issue #13's change), on a real village: after the
first merge and after a next-day incremental merge that changed, merged, split and dropped persons."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from tests.warehouse.test_merge import _stage_until
from warehouse import db, models
from warehouse.merge import merge
from warehouse.publish import POLICY_DIR, _prepare

FROM_SCRATCH = (Path(__file__).parent / "data_issue_from_scratch.sql").read_text(encoding="utf-8")
PUBLISHED = (POLICY_DIR / "community" / "community.data_issue.sql").read_text(encoding="utf-8")


def _rows(con, sql: str) -> list[tuple]:
    return con.execute(f"select * from ({sql}) order by all").fetchall()


def _count(con, sql: str, params: list | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
    assert row is not None
    return int(row[0])


def _assert_same(con) -> int:
    """Both ways agree on every row (and column); returns the number of rows."""
    _prepare(con)
    before, after = _rows(con, FROM_SCRATCH), _rows(con, PUBLISHED)
    columns = [r[0] for r in con.execute(f"select column_name from (describe ({FROM_SCRATCH}))").fetchall()]
    assert [r[0] for r in con.execute(f"select column_name from (describe ({PUBLISHED}))").fetchall()] == columns
    assert len(after) == len(before)
    assert after == before
    return len(after)


def _valid_id(division: str, n: int) -> str:
    """A valid 18-digit ID number (GB 11643 check digit) no generated resident holds."""
    body = f"{division}19{n % 100:02d}0101{n % 1000:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def _inject_day(root: Path, warehouse: Path, day: int) -> dict[str, list[str]]:
    """Add resident changes on `day` to the registry simulator's pending changes, chosen on the merged
    warehouse so the next merge merges, splits, drops and changes persons with findings:
    merge: a resident alone in their person takes the identity of a resident of another person;
    split: a resident of a person with other silos' records takes a new name and ID number;
    deleted: a resident with findings is deleted in the registry; changed: a new mobile number."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from simulators.grid_registry import registry
    from simulators.grid_registry.database import read_table, sqlite_url

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        links = """(select ps.person_id, r.record_key, r.source, r.id_kind, count(*) over (partition by ps.person_id) as n
                    from core.person_source ps join staging.stg_person_records r using (record_uid)
                    where not r.is_deleted)"""
        alone = [r[0] for r in con.execute(f"select record_key from {links} where source = 'grid_registry.residents' "
                                           "and n = 1 and id_kind = 'valid' order by record_key limit 3").fetchall()]
        crowded = [r[0] for r in con.execute(f"select record_key from {links} where source = 'grid_registry.residents' "
                                             "and n >= 3 and id_kind = 'valid' order by record_key limit 6").fetchall()]
        with_findings = [r[0] for r in con.execute(
            "select distinct record_key from core.data_issue_finding where source = 'grid_registry.residents' "
            "order by record_key limit 3").fetchall()]
        phones = dict(con.execute(
            "select record_key, phone_std from staging.stg_person_records where source = 'grid_registry.residents' "
            "and phone_kind = 'mobile' and not is_deleted order by record_key desc limit 10").fetchall())
    finally:
        con.close()
    residents = {r["resident_id"]: r for r in read_table(sqlite_url(root), "residents").to_pylist()}
    # after every change the registry holds, so the connector's cursor sees them
    at = max(r["updated_at"] for r in residents.values())
    used = {*alone, *crowded, *with_findings}
    phoned = [k for k in phones if k not in used][:3]
    rows, chosen = [], {"merge": alone, "split": crowded[3:], "deleted": with_findings, "changed": phoned}
    for i, (kind, keys) in enumerate(chosen.items()):
        for j, key in enumerate(keys):
            row = dict(residents[key])
            if kind == "merge":
                donor = residents[crowded[j]]
                row.update({c: donor[c] for c in ("name", "id_number", "sex", "birth_date", "phone")})
            elif kind == "split":
                row.update(name="甄试" + "一二三"[j], id_number=_valid_id(row["id_number"][:6], 37 + j),
                           birth_date=None, phone=None)
            elif kind == "deleted":
                row.update(is_deleted=True, deleted_at=at)
            else:
                row["phone"] = phones[key][:-1] + str((int(phones[key][-1]) + 1) % 10)
            row["updated_at"] = at + timedelta(hours=1, minutes=i, seconds=j)
            row["day"] = day
            rows.append(row)
    path = root / registry.CHANGES_PATH
    changes = pq.read_table(path)
    extra = pa.Table.from_pylist(rows, schema=changes.schema)
    pq.write_table(pa.concat_tables([changes, extra]), path)
    return chosen


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    """(warehouse merged on day 10 with day 11 synced and validated on top, rows published after the
    first merge, persons of the first merge, the injected changes)."""
    from tests.warehouse.village import build_village

    folder = tmp_path_factory.mktemp("data_issue")
    root, warehouse = build_village(folder, residents=2000, seed=11, to_day=10)
    c = db.connect(warehouse)
    try:
        merge(c)
        first_rows = _assert_same(c)
        persons = {r[0] for r in c.execute("select distinct person_id from core.person_source").fetchall()}
    finally:
        c.close()
    chosen = _inject_day(root, warehouse, 11)
    _stage_until(root, warehouse, folder / "gx", 11)
    return warehouse, first_rows, persons, chosen


def test_first_merge_and_next_day_publish_the_same_data_issue(days, tmp_path):
    from tests.warehouse.village import copy_warehouse

    warehouse, first_rows, persons_before, chosen = days
    assert first_rows > 50  # the village has wrong values to fix
    c = db.connect(copy_warehouse(warehouse, tmp_path / "w.duckdb"))
    try:
        summary = merge(c)
        assert (summary.staging_mode, summary.resolve_mode) == ("incremental", "incremental")
        touched = {r[0] for r in c.execute("select person_id from touched_persons").fetchall()}
        assert 0 < len(touched) < 0.5 * summary.persons
        # The day changed persons every way the finding table must follow.
        changes = dict(c.execute("select change, count(*) from meta.person_id_changes "
                                 "where run_id = ? group by 1", [summary.run_id]).fetchall())
        persons_after = {r[0] for r in c.execute("select distinct person_id from core.person_source").fetchall()}
        gone = persons_before - persons_after
        assert changes.get("merge", 0) > 0 and changes.get("split", 0) > 0, (changes, len(gone))
        deleted = _count(c, "select count(*) from staging.stg_person_records where is_deleted and record_key in "
                            "(select unnest(?::varchar[]))", [chosen["deleted"]])
        assert deleted == len(chosen["deleted"]) > 0
        assert _count(c, "select count(*) from core.data_issue_finding where record_key in "
                         "(select unnest(?::varchar[]))", [chosen["deleted"]]) == 0
        findings_touched = _count(c, "select count(distinct person_id) from core.data_issue_finding "
                                     "where person_id in (select person_id from touched_persons)")
        assert findings_touched > 0
        assert _count(c, "select count(*) from core.data_issue_finding where person_id not in "
                         "(select person_id from core.person_source)") == 0
        _assert_same(c)

        # The rows kept for untouched persons plus those refreshed equal a rebuild from scratch.
        kept = _rows(c, "select * from core.data_issue_finding")
        with db.transaction(c):
            models.build_core(c)
        assert _rows(c, "select * from core.data_issue_finding") == kept
    finally:
        c.close()


def test_findings_hold_full_values_only_inside_the_warehouse(days, tmp_path):
    """The full values stay in core (engineers only); the published relation shows masked forms and
    passes the community audience's checks."""
    from tests.warehouse.village import copy_warehouse
    from warehouse.publish import Relation, _check, _columns, policy

    warehouse, _, _, _ = days
    c = db.connect(copy_warehouse(warehouse, tmp_path / "w.duckdb"))
    try:
        _prepare(c)
        full = {r[0] for r in c.execute(
            "select value_full from core.data_issue_finding where problem like '身份证号%' and length(value_full) = 18 "
            "union select other_full from core.data_issue_finding where length(other_full) = 18").fetchall()}
        assert full
        c.execute(f"create temp table published as {PUBLISHED}")
        shown = {v for row in c.execute("select * from published").fetchall() for v in row if isinstance(v, str)}
        assert not any(f in v for f in full for v in shown)
        rel = Relation("community", "community", "data_issue", PUBLISHED)
        _check(c, _columns(c, "published"), "published", rel, policy()["community"])
    finally:
        c.close()
