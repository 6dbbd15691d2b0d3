"""Staging models on a real validated village, measured against the generator's ground truth."""

from __future__ import annotations

import duckdb
import pytest

from tests.warehouse.village import copy_warehouse
from warehouse import db
from warehouse.standardise import MODELS, build_staging

KEYS = {
    "stg_grid_registry__grids": ("grid_registry_grids", ["grid_code"]),
    "stg_grid_registry__households": ("grid_registry_households", ["household_id"]),
    "stg_grid_registry__residents": ("grid_registry_residents", ["resident_id"]),
    "stg_grid_registry__special_groups": ("grid_registry_special_groups", ["resident_id", "group_type"]),
    "stg_grid_registry__grid_workers": ("grid_registry_grid_workers", ["worker_id"]),
    "stg_hotline__tickets": ("hotline_tickets", ["ticket_id"]),
    "stg_city_cases__cases": ("city_cases_cases", ["case_id"]),
    "stg_health_codes__exports": ("health_codes_exports", ["export_date", "record_no"]),
}

PERSON_RECORD_COLUMNS = [
    ("record_uid", "VARCHAR"), ("source", "VARCHAR"), ("record_key", "VARCHAR"),
    ("name_raw", "VARCHAR"), ("name_std", "VARCHAR"), ("name_pinyin", "VARCHAR"), ("surname", "VARCHAR"),
    ("id_std", "VARCHAR"), ("id_valid", "BOOLEAN"), ("id_kind", "VARCHAR"), ("id_prefix6", "VARCHAR"),
    ("id_suffix4", "VARCHAR"), ("birth_date", "DATE"), ("sex", "VARCHAR"), ("phone_std", "VARCHAR"),
    ("phone_kind", "VARCHAR"), ("address_compound", "VARCHAR"), ("address_building", "VARCHAR"),
    ("address_unit", "VARCHAR"), ("address_room", "VARCHAR"), ("address_key", "VARCHAR"),
    ("community", "VARCHAR"), ("grid_code", "VARCHAR"), ("household_id", "VARCHAR"),
    ("is_deleted", "BOOLEAN"), ("seen_at", "TIMESTAMP WITH TIME ZONE"),
    # second fields of thin records (issue #17 item 5)
    ("home_building", "VARCHAR"), ("reported_building", "VARCHAR"), ("reporter_role", "VARCHAR"),
    ("phone_holders", "BIGINT"),
]


def _build(village, path):
    """A connection to the warehouse at `path` after one build_staging inside one transaction,
    with the ground truth as temp views."""
    con = db.connect(path)
    with db.transaction(con):
        counts = build_staging(con)
    assert set(counts) == {f"staging.{m}" for m in MODELS}
    for table, n in counts.items():
        assert con.execute(f"select count(*) from {table}").fetchone() == (n,)
    truth = village[0] / "truth"
    con.execute(f"create temp view truth_records as select * from '{truth / 'source_records.parquet'}'")
    con.execute(f"create temp view truth_noise as select * from '{truth / 'noise.parquet'}'")
    con.execute(f"create temp view truth_persons as select * from '{truth / 'persons.parquet'}'")
    # Truth holds day-0 households; a resident changed later (a move among the changes) is left out.
    changes = village[0] / "grid_registry" / "changes" / "residents_changes.parquet"
    con.execute(f"create temp view moved_residents as select distinct resident_id from '{changes}' "
                f"where household_id is not null")
    return con


@pytest.fixture(scope="module")
def built(village, tmp_path_factory):
    """One built copy of the village for the read-only tests of this module."""
    con = _build(village, copy_warehouse(village[1], tmp_path_factory.mktemp("staging") / "w.duckdb"))
    yield con
    con.close()


@pytest.fixture
def built_private(village, village_warehouse):
    """A built copy of the village that a test may change."""
    con = _build(village, village_warehouse)
    yield con
    con.close()


def one(con: duckdb.DuckDBPyConnection, sql: str):
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0] if len(row) == 1 else row


def checksum(con: duckdb.DuckDBPyConnection, table: str) -> tuple | None:
    """Row count and an order-independent digest of every value of `table`."""
    return con.execute(
        f"select count(*), md5(coalesce(string_agg(r, chr(10) order by r), '')) "
        f"from (select cast(t as varchar) as r from {table} as t)").fetchone()


# --- the build ----------------------------------------------------------------------------------

def test_build_opens_no_transaction_of_its_own(village_warehouse):
    """Rolled back by the caller, the build leaves nothing behind (it committed nothing itself)."""
    con = db.connect(village_warehouse)
    con.execute("begin transaction")
    build_staging(con)
    assert one(con, "select count(*) from staging.stg_person_records") > 0
    con.execute("rollback")
    left = con.execute("select table_name from duckdb_tables() "
                       "where schema_name = 'staging' and table_name like 'stg_%'").fetchall()
    assert left == []
    con.close()


def test_build_twice_gives_identical_tables(built):
    before = {m: checksum(built, f"staging.{m}") for m in MODELS}
    with db.transaction(built):
        build_staging(built)
    after = {m: checksum(built, f"staging.{m}") for m in MODELS}
    assert after == before
    assert all(v is not None and v[0] > 0 for v in before.values())


# --- grain and completeness ---------------------------------------------------------------------

@pytest.mark.parametrize("model", sorted(KEYS))
def test_one_row_per_key_and_every_validated_key_staged(built, model):
    source, key = KEYS[model]
    cols = ", ".join(key)
    n, distinct = built.execute(f"select count(*), count(distinct ({cols})) from staging.{model}").fetchone()
    assert n == distinct > 0
    # the stg key columns are typed; compare as text
    as_text = ", ".join(f"cast({c} as varchar)" if c != "export_date" else f"cast(cast({c} as date) as varchar)"
                        for c in key)
    missing = one(built, f"""
        select count(*) from (
            select distinct {as_text} from staging.{source}
            except
            select {as_text} from staging.{model})""")
    assert missing == 0


def test_person_records_columns_are_the_contract(built):
    got = built.execute("select column_name, data_type from duckdb_columns() "
                        "where schema_name = 'staging' and table_name = 'stg_person_records' "
                        "order by column_index").fetchall()
    assert got == PERSON_RECORD_COLUMNS
    n, uids = built.execute("select count(*), count(distinct record_uid) from staging.stg_person_records").fetchone()
    assert n == uids
    assert one(built, "select count(*) from staging.stg_person_records "
                      "where record_uid <> source || ':' || record_key or seen_at is null or is_deleted is null") == 0


def test_every_truth_record_that_reached_staging_is_a_person_record(built, capsys):
    """Coverage of the ground truth: the only records missing are those never validated into staging."""
    rows = built.execute("""
        select t.source, count(*) as truth, count(p.record_uid) as found
        from truth_records t
        left join staging.stg_person_records p on p.source = t.source and p.record_key = t.record_key
        group by t.source order by t.source""").fetchall()
    with capsys.disabled():
        for source, truth, found in rows:
            print(f"\ncoverage {source}: {found}/{truth} ({found / truth:.1%})", end="")
    # a truth record not found must be absent upstream too: quarantined (broken line) or not yet synced
    lost_here = one(built, """
        select count(*)
        from truth_records t
        left join staging.stg_person_records p on p.source = t.source and p.record_key = t.record_key
        where p.record_uid is null and (
               (t.source = 'grid_registry.residents'
                and t.record_key in (select resident_id from staging.grid_registry_residents))
            or (t.source = 'hotline.tickets' and t.record_key in (select ticket_id from staging.hotline_tickets))
            or (t.source = 'city_cases.cases' and t.record_key in (select case_id from staging.city_cases_cases))
            or (t.source = 'grid_registry.grid_workers'
                and t.record_key in (select worker_id from staging.grid_registry_grid_workers))
            or (t.source = 'health_codes.exports' and t.record_key in (
                select strftime(cast(export_date as date), '%Y%m%d') || '#' || record_no
                from staging.health_codes_exports)))""")
    assert lost_here == 0
    total, found = (sum(r[1] for r in rows), sum(r[2] for r in rows))
    assert found / total > 0.98
    # and nothing in person records that the truth does not know
    assert one(built, """
        select count(*) from staging.stg_person_records p
        anti join truth_records t on p.source = t.source and p.record_key = t.record_key""") == 0


# --- standardised values against the truth ------------------------------------------------------

def _noisy(built, fields: tuple[str, ...], select: str, where: str = "true"):
    field_list = ", ".join(f"'{f}'" for f in fields)
    return built.execute(f"""
        select n.kind, {select}
        from truth_noise n
        join staging.stg_person_records p on p.source = n.source and p.record_key = n.record_key
        join truth_records t on t.source = n.source and t.record_key = n.record_key
        join truth_persons pe on pe.person_id = t.person_id
        where n.field in ({field_list}) and {where}""").fetchall()


def test_format_noise_ids_come_out_valid_and_equal_to_the_truth(built):
    rows = _noisy(built, ("id_number", "caller_id_number"), "p.id_valid, p.id_std = pe.id_number, p.id_kind",
                  "n.kind not like '%typo%' and n.kind not like '%masked%' and n.kind <> 'missing'")
    kinds = {k for k, *_ in rows}
    assert {"legacy15", "lower_x", "fullwidth", "spaces"} <= kinds
    bad = [r for r in rows if not (r[1] and r[2])]
    assert bad == []
    assert all(kind == ("legacy15" if k.startswith("legacy15") else "valid") for k, _, _, kind in rows)


def test_typo_ids_come_out_invalid_and_masked_ones_keep_prefix_and_suffix(built):
    typos = _noisy(built, ("id_number", "caller_id_number"), "p.id_kind, p.id_std",
                   "n.kind like '%typo%' and n.kind not like '%masked%'")
    assert typos and all(kind == "invalid" and std is None for _, kind, std in typos)
    masked = _noisy(built, ("caller_id_number",), "p.id_kind, p.id_prefix6 = left(pe.id_number, 6), "
                    "p.id_suffix4 = right(pe.id_number, 4)", "n.kind like 'masked%'")
    assert masked and all(r[1:] == ("masked", True, True) for r in masked)


def test_birth_date_and_sex_from_valid_ids_match_the_truth(built):
    wrong = one(built, """
        select count(*) from staging.stg_person_records p
        join truth_records t on t.source = p.source and t.record_key = p.record_key
        join truth_persons pe on pe.person_id = t.person_id
        where p.id_valid and (p.birth_date <> pe.birth_date or p.sex <> pe.sex or p.id_std <> pe.id_number)""")
    assert wrong == 0
    assert one(built, "select count(*) from staging.stg_person_records where id_valid") > 3000


def test_name_noise_is_undone_or_shares_the_pinyin(built):
    rows = _noisy(built, ("name", "caller_name", "reporter_name"),
                  "p.name_std = std_name(pe.name), p.name_pinyin = std_name_pinyin(std_name(pe.name))",
                  "n.kind <> 'missing'")
    kinds = {k for k, *_ in rows}
    assert {"homophone", "traditional", "spaced"} <= kinds
    for kind, same_std, same_pinyin in rows:
        assert same_pinyin, kind
        if kind in ("traditional", "spaced"):
            assert same_std, kind


def test_formatted_phones_come_out_as_the_true_number(built):
    rows = _noisy(built, ("phone", "caller_phone", "reporter_phone"),
                  "p.phone_std, p.phone_kind, [pe.phone, pe.contact_phone, pe.old_phone]",
                  "n.kind like '%formatted%'")
    assert len(rows) > 100
    for _, std, kind, truth_phones in rows:
        assert kind in ("mobile", "landline") and std in truth_phones


def test_registry_residents_sit_in_their_true_community_and_grid(built):
    wrong, n = built.execute("""
        select count(*) filter (where p.community <> pe.community or p.grid_code <> pe.micro_grid_code), count(*)
        from staging.stg_person_records p
        join truth_records t on t.source = p.source and t.record_key = p.record_key
        join truth_persons pe on pe.person_id = t.person_id
        where p.source = 'grid_registry.residents' and not p.is_deleted
          and p.record_key not in (select resident_id from moved_residents)""").fetchone()
    assert n > 1500 and wrong == 0


# --- addresses, types, latest versions -----------------------------------------------------------

def test_household_free_text_parses_to_the_structured_columns(built):
    agree, n = built.execute("""
        select count(*) filter (where address_parsed_key = address_key), count(*)
        from staging.stg_grid_registry__households""").fetchone()
    assert n > 500 and agree == n
    assert one(built, "select count(*) from staging.stg_grid_registry__households "
                      "where address_key is null or address_unit is null or address_room is null") == 0


def test_ticket_and_case_addresses_name_a_registry_building(built):
    for model in ("stg_hotline__tickets", "stg_city_cases__cases"):
        unplaced = one(built, f"""
            select count(*) from staging.{model} s
            where not exists (
                select 1 from staging.stg_grid_registry__households h
                where h.address_compound = s.address_compound and h.address_building = s.address_building)""")
        assert unplaced == 0, model
    assert one(built, "select count(*) from staging.stg_hotline__tickets "
                      "where address_unit is null or address_room is null or address_key is null") == 0


def test_health_exports_are_typed(built):
    rows = built.execute("""
        select distinct code_color, color from staging.stg_health_codes__exports order by color""").fetchall()
    assert set(rows) <= {("绿码", "green"), ("黄码", "yellow"), ("红码", "red")} and ("绿码", "green") in rows
    types = dict(built.execute("""
        select column_name, data_type from duckdb_columns()
        where schema_name = 'staging' and table_name = 'stg_health_codes__exports'""").fetchall())
    assert types["export_date"] == "DATE" and types["record_no"] == "INTEGER"
    assert types["color_since"] == types["last_test_at"] == "TIMESTAMP WITH TIME ZONE"
    # a local (Beijing) wall-clock time in the file is the same wall-clock time in Asia/Shanghai
    mismatched = one(built, """
        select count(*) from staging.stg_health_codes__exports s
        join staging.health_codes_exports r
          on cast(r.export_date as date) = s.export_date and cast(r.record_no as integer) = s.record_no
        where strftime(timezone('Asia/Shanghai', s.color_since), '%Y-%m-%d %H:%M:%S') <> r.color_since""")
    assert mismatched == 0


def test_ticket_timestamps_are_instants(built):
    types = dict(built.execute("""
        select column_name, data_type from duckdb_columns()
        where schema_name = 'staging' and table_name = 'stg_hotline__tickets'""").fetchall())
    assert all(types[c] == "TIMESTAMP WITH TIME ZONE"
               for c in ("received_at", "dispatched_at", "closed_at", "updated_at", "resolve_deadline"))
    # '...T11:32:11+08:00' is 03:32:11 UTC
    assert one(built, """
        select count(*) from staging.stg_hotline__tickets s
        join staging.hotline_tickets r using (ticket_id)
        where s.received_at <> cast(r.received_at as timestamptz)""") == 0


def test_latest_version_wins_and_deleted_residents_stay(built_private):
    built = built_private
    ticket = one(built, "select ticket_id from staging.stg_hotline__tickets order by ticket_id limit 1")
    resident = one(built, "select resident_id from staging.stg_grid_registry__residents order by resident_id limit 1")
    with db.transaction(built):
        # a later load with a newer version, and an even later load with an older updated_at (a
        # back-dated change, or a revert a reconciliation landed); each validated by a new
        # validation run, as validation tags every row it appends. Loads are ordered by load_seq.
        built.execute("""
            insert into meta.loads (load_id, source, entity, started_at, status, load_seq)
            select name, 'test', 'test', now(), 'succeeded', (select max(load_seq) from meta.loads) + seq
            from (values ('zz-newer', 1), ('zzz-replayed', 2), ('zz-deleted', 3)) as t(name, seq)""")
        built.execute("""
            insert into staging.hotline_tickets
            select * replace (
                strftime(cast(updated_at as timestamptz) + interval 1 hour, '%Y-%m-%dT%H:%M:%S+00:00') as updated_at,
                '已关闭(新)' as status_name, 'zz-newer' as _load_id, _extracted_at + interval 1 day as _extracted_at,
                'run-newer' as _validation_run_id)
            from staging.hotline_tickets where ticket_id = $1
            union all
            select * replace (
                strftime(cast(updated_at as timestamptz) - interval 1 day, '%Y-%m-%dT%H:%M:%S+00:00') as updated_at,
                '旧' as status_name, 'zzz-replayed' as _load_id, _extracted_at + interval 2 day as _extracted_at,
                'run-replayed' as _validation_run_id)
            from staging.hotline_tickets where ticket_id = $1""", [ticket])
        built.execute("""
            insert into staging.grid_registry_residents
            select * replace (updated_at + interval 1 day as updated_at, true as is_deleted,
                              updated_at + interval 1 day as deleted_at, 'zz-deleted' as _load_id,
                              'run-deleted' as _validation_run_id)
            from staging.grid_registry_residents where resident_id = $1""", [resident])
        build_staging(built)
    # the latest load wins, whatever the source's clock says
    assert one(built, f"select status_name from staging.stg_hotline__tickets where ticket_id = '{ticket}'") == "旧"
    assert one(built, f"select count(*) from staging.stg_hotline__tickets where ticket_id = '{ticket}'") == 1
    deleted = built.execute(f"""
        select p.is_deleted, r._load_id from staging.stg_person_records p
        join staging.stg_grid_registry__residents r on r.resident_id = p.record_key
        where p.record_uid = 'grid_registry.residents:{resident}'""").fetchone()
    assert deleted == (True, "zz-deleted")


def test_a_tombstone_removes_a_ticket_and_marks_a_resident_hard_deleted(built_private):
    built = built_private
    ticket = one(built, "select ticket_id from staging.stg_hotline__tickets order by ticket_id limit 1 offset 1")
    resident = one(built, "select resident_id from staging.stg_grid_registry__residents "
                          "where not is_deleted order by resident_id limit 1 offset 1")
    with db.transaction(built):
        built.execute("insert into meta.loads (load_id, source, entity, started_at, status, load_seq, kind) "
                      "select 'zz-tomb', 'test', 'test', now(), 'succeeded', max(load_seq) + 1, 'reconcile' "
                      "from meta.loads")
        for table, key, value in (("hotline_tickets", "ticket_id", ticket),
                                  ("grid_registry_residents", "resident_id", resident)):
            built.execute(f"alter table staging.{table} add column if not exists _is_tombstone boolean")
            built.execute(f"insert into staging.{table} ({key}, _load_id, _extracted_at, _record_hash, "
                          "_source_position, _validation_run_id, _is_tombstone) "
                          "values ($1, 'zz-tomb', now(), 'tombstone', 'test', 'run-tomb', true)", [value])
        build_staging(built)
    assert one(built, f"select count(*) from staging.stg_hotline__tickets where ticket_id = '{ticket}'") == 0
    row = built.execute("select is_deleted, is_hard_deleted, deleted_at is not null, name is not null "
                        "from staging.stg_grid_registry__residents where resident_id = $1", [resident]).fetchall()
    assert row == [(True, True, True, True)]  # the last real version's values, marked deleted
