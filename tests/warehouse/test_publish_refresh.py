"""policy.toml [refresh] (issue #19): the nightly silos' heavy community relations are carried over by a
publish that brings nothing new of their sources, and built again when a listed source brings a load."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from pathlib import Path

from tests.warehouse.village import copy_warehouse
from warehouse import db
from warehouse.publish import new_version, policy, publish
from warehouse.publish.snapshot import hold_version

HEAVY = ("community.data_issue", "community.health_change")


def _files(root: Path, code: str, version: str, qualified: str) -> list[Path]:
    folder = root / "community" / code / "versions" / version / "parquet" / f"{qualified}.parquet"
    return sorted(folder.glob("*.parquet"))


def _current(root: Path, code: str) -> tuple[str, dict]:
    folder = (root / "community" / code / "current").resolve()
    return folder.name, json.loads((folder / "manifest.json").read_text(encoding="utf-8"))


def _renamed_with_a_turn(con) -> str:
    """Rename one resident whose health code turned yellow or red; return the new name."""
    con.execute("""update core.person set name = name || '改' where person_id = (
                       select min(h.person_id) from core.health_status_history h join core.person p using (person_id)
                       where h.color in ('yellow', 'red') and p.community_code is not null)""")
    return con.execute("select name from core.person where name like '%改'").fetchone()[0]


def _compare(root: Path, codes: list[str], first: str, second: str) -> None:
    for code in codes:
        assert _current(root, code)[0] == second
        for qualified in HEAVY:
            before, after = _files(root, code, first, qualified), _files(root, code, second, qualified)
            assert [p.name for p in before] == [p.name for p in after] and after
            assert all(os.path.samefile(a, b) for a, b in zip(before, after, strict=True)), (code, qualified)
        before, after = _files(root, code, first, "community.ticket"), _files(root, code, second, "community.ticket")
        assert after and not all(os.path.samefile(a, b) for a, b in zip(before, after, strict=True))


def test_heavy_relations_are_carried_until_their_source_brings_a_load(merged_town, tmp_path):
    assert set(HEAVY) <= set(policy()["refresh"])
    warehouse = copy_warehouse(merged_town[1], tmp_path / "w.duckdb")
    root = tmp_path / "published"
    con = db.connect(warehouse)
    try:
        codes = [r[0] for r in con.execute("select distinct community_code from core.grid "
                                           "where grid_level = 'community' order by 1").fetchall()]
        first = new_version("first")
        publish(con, root, first)
        version, manifest = _current(root, codes[0])
        assert version == first and set(HEAVY) <= set(manifest["refresh"])

        # A change with no new load of the listed sources (what a hotline cycle brings to these
        # relations): every other relation is built again; the heavy ones keep their files.
        name = _renamed_with_a_turn(con)
        con.execute("update core.ticket set category = category || '（改）'")
        second = new_version("second")
        with ExitStack() as held:  # readers keep the first versions, so both can be compared
            for code in codes:
                held.enter_context(hold_version(root, "community", code))
            result = publish(con, root, second)
            _compare(root, codes, first, second)
        assert result.communities_published == len(codes)

        # The health-code drop's next load: the heavy relations are built again and show the change.
        con.execute("insert into meta.loads (load_id, source, entity, started_at, status, rows_landed) "
                    "values ('zz-test-health', 'health_codes', 'exports', now(), 'succeeded', 1)")
        con.execute("insert into meta.validated_loads values ('zz-test-health', 'zz-test-run')")
        third = new_version("third")
        publish(con, root, third)
        changed = con.execute("select count(*) from core.person where name = ?", [name]).fetchone()[0]
        assert changed == 1
        found = 0
        for code in codes:
            version, manifest = _current(root, code)
            assert version == third
            assert manifest["refresh"]["community.health_change"]["sources"]["health_codes"].endswith("zz-test-health")
            found += con.execute(f"select count(*) from read_parquet({[str(p) for p in _files(root, code, third, 'community.health_change')]}) "
                                 "where name = ?", [name]).fetchone()[0]
        assert found >= 1
    finally:
        con.close()


def test_health_changes_are_every_turn_to_yellow_or_red(merged_town, tmp_path):
    """community.health_change joins each yellow or red period to the one before it (period_no - 1):
    the same rows as a window over each resident's periods, which it replaced (issue #13)."""
    import duckdb

    warehouse = copy_warehouse(merged_town[1], tmp_path / "warehouse.duckdb")
    root = tmp_path / "published"
    con = db.connect(warehouse)
    try:
        publish(con, root, new_version("first"))
        expected = sorted(con.execute("""
            with periods as (
                select *, lag(color) over (partition by person_id order by period_no) as previous_color
                from core.health_status_history)
            select p.community_code, p.person_key, periods.color, periods.previous_color, periods.valid_from
            from periods join core.person p using (person_id)
            where p.community_code is not null and periods.color in ('yellow', 'red')
              and periods.previous_color is distinct from periods.color""").fetchall(), key=str)
    finally:
        con.close()
    files = [str(p) for p in root.glob("community/*/current/parquet/community.health_change.parquet/*.parquet")
             if p.name != "columns.parquet"]
    published = sorted(duckdb.connect().execute(
        "select community_code, person_key, color, previous_color, valid_from from read_parquet(?)",
        [files]).fetchall(), key=str)
    assert published == expected
    assert {r[3] for r in expected} >= {None, "green"}  # first periods and turns from green both appear
