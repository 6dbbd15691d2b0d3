"""Person resolution on a generated village, measured against the generator's ground truth."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from bench import resolution_input
from simulators.district.generate import generate
from warehouse import db
from warehouse.resolve import ResolveError, resolve
from warehouse.resolve.person_config import PERSON_CONFIG

INPUT = "staging.stg_person_records"
CHECKSUM = "select count(*), sum(hash(record_uid, person_id, link_rule, match_weight, linked_record_uid, run_id))" \
           " from core.person_source"


@pytest.fixture(scope="module")
def village_input(tmp_path_factory) -> tuple[Path, Path]:
    """(district root, warehouse with staging.stg_person_records and nothing resolved yet)."""
    folder = tmp_path_factory.mktemp("resolve")
    root = folder / "district"
    generate(root, residents=2000, seed=7)
    path = folder / "input.duckdb"
    con = db.connect(path)
    resolution_input.build(con, root)
    con.close()
    return root, path


@pytest.fixture
def con(village_input, tmp_path):
    """A private copy of the village input warehouse."""
    path = shutil.copyfile(village_input[1], tmp_path / "w.duckdb")
    c = db.connect(path)
    yield c
    c.close()


def _run(con: duckdb.DuckDBPyConnection, run_id: str | None = None):
    with db.transaction(con):
        return resolve(con, PERSON_CONFIG, run_id=run_id)


def _scores(con: duckdb.DuckDBPyConnection, truth: Path) -> tuple[float, float, float]:
    tp, pred, act, *_ = con.execute(resolution_input.truth_pairs_sql(INPUT, truth, "core.person_source")).fetchone()
    precision, recall = tp / pred, tp / act
    return precision, recall, 2 * precision * recall / (precision + recall)


def _person_of(con: duckdb.DuckDBPyConnection, record_uid: str) -> str:
    return con.execute("select person_id from core.person_source where record_uid = ?", [record_uid]).fetchone()[0]


def _plant(con: duckdb.DuckDBPyConnection, rows: list[dict]) -> None:
    for row in rows:
        cols = ", ".join(row)
        con.execute(f"insert into {INPUT} ({cols}) values ({', '.join('?' * len(row))})", list(row.values()))


def test_quality_against_truth(con, village_input):
    result = _run(con)
    precision, recall, f1 = _scores(con, village_input[0] / "truth")
    print(f"village: precision {precision:.5f} recall {recall:.5f} F1 {f1:.5f} "
          f"records {result.records} profiles {result.profiles} pairs {result.pairs_scored} {result.seconds}s")
    assert precision >= 0.995
    assert recall >= 0.98
    assert result.profiles < result.records  # repeated health exports collapse
    # Every record is resolved, soft-deleted registry rows too: nothing drops out of core.person_source.
    n_in = con.execute(f"select count(*) from {INPUT}").fetchone()[0]
    assert con.execute("select count(*) from core.person_source").fetchone()[0] == n_in
    assert con.execute("select count(*) from meta.resolution_runs").fetchone()[0] == 1


def test_different_valid_ids_never_merge_even_through_a_chain(con):
    base = {"source": "trap", "name_std": "欧阳娜娜", "name_pinyin": "ou yang na na", "surname": "欧阳",
            "sex": "女", "birth_date": "1990-05-05", "community": "trap村", "is_deleted": False}
    rows = [
        # Two different people with different valid IDs, same rare name and birth date ...
        base | {"record_key": "A", "id_std": "420102199005050028", "id_prefix6": "420102", "id_suffix4": "0028",
                "phone_std": "13900000001"},
        base | {"record_key": "B", "id_std": "420102199005051020", "id_prefix6": "420102", "id_suffix4": "1020",
                "phone_std": "13900000002"},
        # ... and records without an ID that agree strongly with both: the chain A - C - D - B.
        base | {"record_key": "C", "phone_std": "13900000001"},
        base | {"record_key": "D", "phone_std": "13900000002"},
        base | {"record_key": "E"},
    ]
    _plant(con, [r | {"record_uid": f"trap:{r['record_key']}"} for r in rows])
    _run(con)
    assert _person_of(con, "trap:A") != _person_of(con, "trap:B")
    assert _person_of(con, "trap:C") == _person_of(con, "trap:A")
    assert _person_of(con, "trap:D") == _person_of(con, "trap:B")
    mixed = con.execute(f"""
        select p.person_id from core.person_source p join {INPUT} s using (record_uid)
        where s.id_std is not null group by 1 having count(distinct s.id_std) > 1""").fetchall()
    assert mixed == []


def test_namesakes_with_different_birth_dates_stay_apart(con):
    base = {"source": "namesake", "name_std": "司马相如", "name_pinyin": "si ma xiang ru", "surname": "司马",
            "sex": "男", "address_key": "光明花园|1|1|101", "address_compound": "光明花园", "community": "幸福村",
            "phone_std": "13911112222", "is_deleted": False}
    _plant(con, [base | {"record_uid": "namesake:1", "record_key": "1", "birth_date": "1950-03-01"},
                 base | {"record_uid": "namesake:2", "record_key": "2", "birth_date": "1982-11-20"},
                 base | {"record_uid": "namesake:3", "record_key": "3", "birth_date": "1982-11-21"}])
    _run(con)
    assert _person_of(con, "namesake:1") != _person_of(con, "namesake:2")
    # A birth date one part off (a typo) is evidence, not a veto.
    assert _person_of(con, "namesake:2") == _person_of(con, "namesake:3")


def test_thin_records_do_not_merge_on_a_phone_alone(con):
    # A person with a valid ID and a phone no one else in the village has (a strong, rare value) ...
    person = {"source": "thin", "name_std": "上官婉儿", "name_pinyin": "shang guan wan er", "surname": "上官",
              "sex": "女", "birth_date": "1985-07-07", "id_std": "420102198507070046", "id_prefix6": "420102",
              "id_suffix4": "0046", "phone_std": "13977776666", "community": "thin村", "is_deleted": False}
    nameless = {"source": "thin", "phone_std": "13977776666", "is_deleted": False}
    _plant(con, [person | {"record_uid": "thin:A", "record_key": "A"},
                 person | {"record_uid": "thin:B", "record_key": "B"},
                 # ... a record with the phone and nothing else: a missing name is no evidence
                 nameless | {"record_uid": "thin:C", "record_key": "C"},
                 # ... the phone and a masked ID that matches: two fields agree
                 nameless | {"record_uid": "thin:D", "record_key": "D", "id_prefix6": "420102", "id_suffix4": "0046"},
                 # ... the phone and the name: two fields agree
                 nameless | {"record_uid": "thin:E", "record_key": "E", "name_std": "上官婉儿",
                             "name_pinyin": "shang guan wan er", "surname": "上官"}])
    result = _run(con)
    assert _person_of(con, "thin:C") != _person_of(con, "thin:A")
    assert _person_of(con, "thin:D") == _person_of(con, "thin:A") == _person_of(con, "thin:E")
    # The phone alone scores far above the threshold: what keeps C apart is the evidence rule.
    weights = result.parameters["comparisons"]["phone"]["exact"]["weight"]
    assert weights > 10
    row = con.execute("select link_rule from core.person_source where record_uid = 'thin:C'").fetchone()
    assert row == ("singleton",)


def test_a_thin_record_links_on_a_second_field_that_tells_the_person(con):
    """Issue #17 item 5: a nameless record's phone plus a field a housemate sharing the phone lacks."""
    resident = {"source": "thin2", "name_std": "欧阳修", "name_pinyin": "ou yang xiu", "surname": "欧阳",
                "sex": "男", "birth_date": "1970-01-02", "home_building": "thin花园|3", "is_deleted": False}
    caller = {"source": "thin2", "reported_building": "thin花园|3", "is_deleted": False}
    _plant(con, [
        # a phone only one named person holds, and a nameless call about that person's building: links
        resident | {"record_uid": "thin2:A", "record_key": "A", "phone_std": "13955550001", "phone_holders": 1},
        caller | {"record_uid": "thin2:B", "record_key": "B", "phone_std": "13955550001", "phone_holders": 1},
        # a household's shared phone (two named holders): the building cannot tell which of them called
        resident | {"record_uid": "thin2:C", "record_key": "C", "phone_std": "13955550002", "phone_holders": 2},
        resident | {"record_uid": "thin2:D", "record_key": "D", "phone_std": "13955550002", "phone_holders": 2,
                    "name_std": "欧阳询", "name_pinyin": "ou yang xun", "birth_date": "1972-05-06"},
        caller | {"record_uid": "thin2:E", "record_key": "E", "phone_std": "13955550002", "phone_holders": 2},
        # a nameless case a grid worker reported, and the grid workers' register: links
        {"source": "thin2", "record_uid": "thin2:F", "record_key": "F", "name_std": "诸葛亮",
         "name_pinyin": "zhu ge liang", "surname": "诸葛", "phone_std": "13955550003", "phone_holders": 1,
         "reporter_role": "网格员", "is_deleted": False},
        {"source": "thin2", "record_uid": "thin2:G", "record_key": "G", "phone_std": "13955550003",
         "phone_holders": 1, "reporter_role": "网格员", "is_deleted": False},
        # the same phone on a nameless citizen's case (no role, its place is not a home): stays apart
        {"source": "thin2", "record_uid": "thin2:H", "record_key": "H", "phone_std": "13955550003",
         "phone_holders": 1, "is_deleted": False}])
    _run(con)
    assert _person_of(con, "thin2:B") == _person_of(con, "thin2:A")
    assert _person_of(con, "thin2:E") not in (_person_of(con, "thin2:C"), _person_of(con, "thin2:D"))
    assert _person_of(con, "thin2:G") == _person_of(con, "thin2:F")
    assert _person_of(con, "thin2:H") not in (_person_of(con, "thin2:F"), _person_of(con, "thin2:G"))


def test_a_named_caller_without_a_phone_links_at_their_home_building(con):
    """Issue #17 item 5: name and the ticket's building against the registered home are two fields;
    a namesake in the building who gave a phone of their own, or a caller elsewhere, stays apart."""
    resident = {"source": "thin3", "record_uid": "thin3:A", "record_key": "A", "name_std": "慕容复",
                "name_pinyin": "mu rong fu", "surname": "慕容", "sex": "男", "birth_date": "1966-06-06",
                "home_building": "thin3花园|5", "phone_std": "13955550011", "phone_holders": 1,
                "is_deleted": False}
    caller = {"source": "thin3", "name_std": "慕容复", "name_pinyin": "mu rong fu", "surname": "慕容",
              "is_deleted": False}
    _plant(con, [
        resident,
        # the same name, no phone, a ticket about the resident's building: links
        caller | {"record_uid": "thin3:B", "record_key": "B", "reported_building": "thin3花园|5"},
        # the same name and building, but a phone of its own that differs: a namesake, stays apart
        caller | {"record_uid": "thin3:C", "record_key": "C", "reported_building": "thin3花园|5",
                  "phone_std": "13955550012", "phone_holders": 1},
        # the same name, no phone, another building: the name alone, stays apart
        caller | {"record_uid": "thin3:D", "record_key": "D", "reported_building": "thin3花园|6"}])
    _run(con)
    assert _person_of(con, "thin3:B") == _person_of(con, "thin3:A")
    assert _person_of(con, "thin3:C") != _person_of(con, "thin3:A")
    assert _person_of(con, "thin3:D") not in (_person_of(con, "thin3:A"), _person_of(con, "thin3:C"))
    rule = con.execute("select link_rule from core.person_source where record_uid = 'thin3:B'").fetchone()[0]
    assert "name exact" in rule and "home_building same building, own phone or name" in rule


def test_a_caller_between_two_namesakes_of_the_building_joins_neither(con):
    """Two residents of one building share a name; a caller gave that name, the building and no phone:
    both links score the same (refuse_ties), so the caller stays apart rather than join one by chance."""
    resident = {"source": "tie", "name_std": "东方不败", "name_pinyin": "dong fang bu bai", "surname": "东方",
                "sex": "女", "home_building": "tie花园|2", "phone_holders": 1, "is_deleted": False}
    _plant(con, [
        resident | {"record_uid": "tie:A", "record_key": "A", "birth_date": "1998-09-13", "phone_std": "13955550031",
                    "id_std": "420102199809130021", "id_prefix6": "420102", "id_suffix4": "0021"},
        resident | {"record_uid": "tie:B", "record_key": "B", "birth_date": "2002-11-16", "phone_std": "13955550032",
                    "id_std": "420102200211160040", "id_prefix6": "420102", "id_suffix4": "0040"},
        {"source": "tie", "record_uid": "tie:C", "record_key": "C", "name_std": "东方不败",
         "name_pinyin": "dong fang bu bai", "surname": "东方", "reported_building": "tie花园|2", "is_deleted": False}])
    _run(con)
    assert _person_of(con, "tie:A") != _person_of(con, "tie:B")
    assert _person_of(con, "tie:C") not in (_person_of(con, "tie:A"), _person_of(con, "tie:B"))


def _masked_typos(con, source: str, name: tuple[str, str, str], phone: str, masked: dict[str, tuple[str, str]]):
    """One person with a valid ID (record A, 420106196503258601) and records holding only a masked ID
    (key -> (prefix6, suffix4)), all with the same name and phone; resolved, each record's person by key."""
    person = {"source": source, "name_std": name[0], "name_pinyin": name[1], "surname": name[2],
              "phone_std": phone, "is_deleted": False}
    _plant(con, [person | {"record_uid": f"{source}:A", "record_key": "A", "sex": "男", "birth_date": "1965-03-25",
                           "id_std": "420106196503258601", "id_prefix6": "420106", "id_suffix4": "8601"}]
           + [person | {"record_uid": f"{source}:{key}", "record_key": key, "id_prefix6": prefix, "id_suffix4": suffix}
              for key, (prefix, suffix) in masked.items()])
    _run(con)
    return {key: _person_of(con, f"{source}:{key}") for key in ["A", *masked]}


def test_a_masked_id_one_typo_off_is_no_veto(con):
    """A masked ID cannot be checked, so a typo in it goes unnoticed: one wrong or swapped digit among its
    ten is no veto when name and phone agree; more than one is another person's ID."""
    person = _masked_typos(con, "typo", ("令狐冲", "ling hu chong", "令狐"), "13955550021", {
        "B": ("420160", "8601"),  # two adjacent digits of the prefix swapped: joins the person with the valid ID
        "C": ("420106", "1234")})  # another suffix altogether: another person's ID, stays apart
    assert person["B"] == person["A"]
    assert person["C"] not in (person["A"], person["B"])


def test_a_second_typo_cannot_join_through_the_first(con):
    """A masked ID one typo from a typo'd one that joined, but two from the person's real ID, stays
    apart: a joiner must fit the value the cluster's valid ID gives, not any value that joined it."""
    person = _masked_typos(con, "typo2", ("任盈盈", "ren ying ying", "任"), "13955550022", {
        "B": ("420106", "8061"),  # 8601 -> 8061: one swap, joins; and it sorts before the real value
        "C": ("420106", "0861")})  # 8061 -> 0861: one swap from B, two from A's real ID
    assert person["B"] == person["A"]
    assert person["C"] != person["A"]


def test_rerun_is_identical(con):
    _run(con, "run-1")
    first = con.execute(CHECKSUM).fetchone()
    result = _run(con, "run-2")
    assert con.execute(CHECKSUM).fetchone() == first
    assert result.changes == {}
    assert con.execute("select count(*) from meta.person_id_changes where run_id = 'run-2'").fetchone()[0] == 0


def test_incremental_records_join_existing_persons(con):
    # Day one without the hotline; day two the hotline tickets arrive.
    con.execute(f"create table hold as select * from {INPUT} where source = 'hotline.tickets'")
    con.execute(f"delete from {INPUT} where source = 'hotline.tickets'")
    _run(con, "day-1")
    before = dict(con.execute("select record_uid, person_id from core.person_source").fetchall())
    con.execute(f"insert into {INPUT} select * from hold")
    _run(con, "day-2")
    after = dict(con.execute("select record_uid, person_id from core.person_source").fetchall())
    assert all(after[uid] == pid for uid, pid in before.items())
    joined = [uid for uid in after if uid.startswith("hotline") and after[uid] in set(before.values())]
    assert len(joined) > 0.3 * sum(1 for uid in after if uid.startswith("hotline"))
    max_before = max(before.values())
    assert all(pid > max_before for uid, pid in after.items() if after[uid] not in set(before.values()))


def _break_an_id(con: duckdb.DuckDBPyConnection) -> tuple[str, str]:
    """Give one record of a person of 3+ records another valid ID and name: (its uid, its person)."""
    # A person held together only by a shared valid ID on two profiles: break the ID of one.
    uid, pid = con.execute(f"""
        select s.record_uid, p.person_id from {INPUT} s join core.person_source p using (record_uid)
        where s.source = 'grid_registry.residents' and s.id_std is not null and p.person_id in (
            select person_id from core.person_source group by 1 having count(*) >= 3)
        order by s.record_uid limit 1""").fetchone()
    con.execute(f"""update {INPUT} set id_std = '110101190001010000', id_prefix6 = '110101', id_suffix4 = '0000',
                    name_std = '分裂测试', name_pinyin = 'fen lie ce shi', phone_std = null
                    where record_uid = ?""", [uid])
    return uid, pid


def test_split_is_recorded_and_ids_never_reused(con):
    _run(con, "before")
    uid, pid = _break_an_id(con)
    counter_before = con.execute("select last_value from meta.id_counters where entity = 'person'").fetchone()[0]
    _run(con, "after")
    new_pid = _person_of(con, uid)
    assert new_pid != pid
    assert int(new_pid[1:]) > counter_before
    change = con.execute("select change, other_person_id from meta.person_id_changes where run_id = 'after' "
                         "and person_id = ?", [new_pid]).fetchone()
    assert change == ("split", pid)


def test_missing_input_is_a_named_error(tmp_path):
    con = db.connect(tmp_path / "empty.duckdb")
    with pytest.raises(ResolveError, match="stg_person_records"):
        resolve(con, PERSON_CONFIG)


# --- incremental runs (mode="auto"): only the neighbourhood of what changed is resolved again ---

def _auto(con: duckdb.DuckDBPyConnection, run_id: str):
    with db.transaction(con):
        return resolve(con, PERSON_CONFIG, run_id=run_id, mode="auto")


def _assignment(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute("select record_uid, person_id from core.person_source").fetchall()
    assert len(rows) == len({uid for uid, _ in rows})  # one row per record (no key enforces it)
    return dict(rows)


def _same_partition_pairs(a: dict[str, str], b: dict[str, str]) -> tuple[int, int, int]:
    """(pairs together in a, pairs together in b, pairs together in both): equal partitions iff all equal."""
    from collections import Counter

    def pairs(counts: Counter) -> int:
        return sum(n * (n - 1) // 2 for n in counts.values())

    assert a.keys() == b.keys()
    return (pairs(Counter(a.values())), pairs(Counter(b.values())),
            pairs(Counter((a[k], b[k]) for k in a)))


def _next_day(con: duckdb.DuckDBPyConnection) -> None:
    """What a day brings: held-back records arrive, some records change, some disappear."""
    con.execute(f"insert into {INPUT} select * from hold")
    # A resident's new phone, and a record whose ID was corrected by its silo.
    con.execute(f"""update {INPUT} set phone_std = '139' || right(record_uid_hash::varchar, 8)
                    from (select record_uid as uid, abs(hash(record_uid)) as record_uid_hash from {INPUT}
                          where source = 'grid_registry.residents' order by record_uid limit 20) t
                    where record_uid = t.uid""")
    con.execute(f"delete from {INPUT} where record_uid in (select record_uid from {INPUT} "
                f"where source = 'city_cases.cases' order by record_uid limit 5)")


def test_incremental_run_equals_a_full_run(con, village_input, tmp_path):
    # Day one: everything but 3% of the records; day two: they arrive, and some records change or go.
    con.execute(f"create table hold as select * from {INPUT} using sample 3 percent (reservoir, 11)")
    con.execute(f"delete from {INPUT} where record_uid in (select record_uid from hold)")
    first = _run(con, "day-1")
    assert first.parameters["mode"] == "full"
    _next_day(con)
    con.execute("checkpoint")
    full_path = shutil.copyfile(con.execute("select path from duckdb_databases() where database_name = "
                                            "current_database()").fetchone()[0], tmp_path / "full.duckdb")
    result = _auto(con, "day-2")
    assert result.parameters["mode"] == "incremental"
    assert 0 < result.parameters["records_resolved"] < 0.5 * result.records
    incremental = _assignment(con)
    inc_scores = _scores(con, village_input[0] / "truth")

    other = db.connect(full_path)
    try:
        with db.transaction(other):
            assert resolve(other, PERSON_CONFIG, run_id="day-2-full").parameters["mode"] == "full"
        full = _assignment(other)
        full_scores = _scores(other, village_input[0] / "truth")
    finally:
        other.close()
    in_a, in_b, in_both = _same_partition_pairs(incremental, full)
    # Same records, the same persons: the only difference a full run may bring is re-estimated
    # parameters, which on one day's change moves next to nothing.
    assert in_both >= 0.999 * max(in_a, in_b)
    assert abs(inc_scores[0] - full_scores[0]) < 0.002 and abs(inc_scores[1] - full_scores[1]) < 0.002
    # Ids of persons untouched by the day stay exactly where they were.
    kept = sum(1 for uid, pid in incremental.items() if full.get(uid) == pid)
    assert kept >= 0.995 * len(incremental)


def test_incremental_run_with_nothing_new_changes_nothing(con):
    _run(con, "run-1")
    before = con.execute(CHECKSUM).fetchone()
    result = _auto(con, "run-2")
    assert result.parameters["mode"] == "incremental"
    assert result.parameters["changed"] == 0 and result.parameters["records_resolved"] == 0
    assert con.execute(CHECKSUM).fetchone() == before


def test_incremental_run_records_a_split_and_drops_removed_records(con):
    _run(con, "before")
    uid, pid = _break_an_id(con)
    gone = con.execute(f"select record_uid from {INPUT} where source = 'hotline.tickets' "
                       f"order by record_uid limit 1").fetchone()[0]
    con.execute(f"delete from {INPUT} where record_uid = ?", [gone])
    result = _auto(con, "after")
    assert result.parameters["mode"] == "incremental" and result.parameters["removed"] == 1
    new_pid = _person_of(con, uid)
    assert new_pid != pid
    assert con.execute("select change, other_person_id from meta.person_id_changes where run_id = 'after' "
                       "and person_id = ?", [new_pid]).fetchone() == ("split", pid)
    assert con.execute("select count(*) from core.person_source where record_uid = ?", [gone]).fetchone()[0] == 0
    n_input = con.execute(f"select count(*) from {INPUT}").fetchone()[0]
    assert con.execute("select count(*) from core.person_source").fetchone()[0] == n_input


def test_changed_configuration_forces_a_full_run(con):
    from warehouse.resolve.person_config import person_config

    _run(con, "run-1")
    with db.transaction(con):
        result = resolve(con, person_config(threshold=0.995), run_id="run-2", mode="auto")
    assert result.parameters["mode"] == "full"
    assert "configuration" in result.parameters["why"]


def test_only_one_sided_blocking_rules_are_joined_both_ways():
    from warehouse.resolve.incremental import is_symmetric

    assert is_symmetric("l.phone_std = r.phone_std")
    assert is_symmetric("l.name_std = r.name_std and l.birth_date = r.birth_date")
    assert not is_symmetric("l.id_std is null and l.id_prefix6 = r.id_prefix6")
    assert not is_symmetric("l.name_std = r.surname")
