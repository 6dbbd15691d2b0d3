"""A hand-made district in the shape of the staging and person_source contracts, for core/mart tests.

Small enough to check every figure by hand (see the comments beside the rows and the tests).
Street 大智街道 > community 幸福村 > area 第1网格 > micro-grids M1 (光明花园1号楼), M2 (光明花园2号楼).
"""

from __future__ import annotations

from typing import Any

import duckdb

from warehouse import db
from warehouse.standardise.build import macros_sql, model_sql

STREET, COMMUNITY = "大智街道", "幸福村"
M1, M2, M3 = "42010200100101001", "42010200100101002", "42010200100101003"
ID_A, ID_B, ID_C, ID_D = "420102195003070011", "420102195003080012", "420102198807150021", "420102196001010042"

ADDRESS = "address_key varchar, address_community varchar, address_compound varchar, address_building varchar, address_unit varchar, address_room varchar"


def _address(compound: str, building: str, unit: str = "1", room: str = "101") -> tuple[str, ...]:
    return (f"{compound}|{building}|{unit}|{room}", COMMUNITY, compound, building, unit, room)


def _table(con: duckdb.DuckDBPyConnection, name: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    con.execute(f"create or replace table {name} ({columns})")
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        con.executemany(f"insert into {name} values ({marks})", [list(r) for r in rows])


def _ticket(tid: str, category: str, department: str, building: str, received: str, response_deadline: str,
            first_response: str | None, resolved: str | None, satisfaction: str | None,
            status: str) -> tuple[Any, ...]:
    return (tid, "来电人", "13800000009", f"光明花园{building}号楼1单元101", *_address("光明花园", building), STREET,
            department, category, "一般", "内容", status, status, satisfaction, received, received,
            first_response, resolved, resolved, satisfaction and resolved, response_deadline,
            "2026-11-30 00:00:00+08", first_response or received)


TICKET_COLUMNS = (
    "ticket_id varchar, caller_name_std varchar, caller_phone_std varchar, address varchar, "
    + ADDRESS + ", street varchar, department varchar, category varchar, urgency varchar, content varchar, "
    "status varchar, status_name varchar, satisfaction varchar, received_at timestamptz, dispatched_at timestamptz, "
    "first_response_at timestamptz, resolved_at timestamptz, closed_at timestamptz, rated_at timestamptz, "
    "response_deadline timestamptz, resolve_deadline timestamptz, updated_at timestamptz"
)

# Six tickets in 2026-11 (all 大智街道). In time: GD01, GD03, GD05, GD06 (4/6); resolved: GD01, GD02,
# GD05, GD06 (4/6); rated: GD01 满意, GD02 基本满意, GD05 不满意, GD06 满意 -> satisfied 3/4, fully 2/4.
TICKETS = [
    _ticket("GD01", "环境卫生", "区城管局", "1", "2026-11-01 09:00:00+08", "2026-11-02 09:00:00+08",
            "2026-11-01 10:00:00+08", "2026-11-02 09:00:00+08", "满意", "rated"),
    # 11 h after GD01, same building and category: a repeat of GD01; responded late
    _ticket("GD02", "环境卫生", "区城管局", "1", "2026-11-01 20:00:00+08", "2026-11-02 20:00:00+08",
            "2026-11-03 08:00:00+08", "2026-11-03 09:00:00+08", "基本满意", "rated"),
    # transferred to case CG01
    _ticket("GD03", "交通出行", "区交通运输局", "2", "2026-11-05 10:00:00+08", "2026-11-06 10:00:00+08",
            "2026-11-05 11:00:00+08", None, None, "responded"),
    # 9 days after GD01: a new incident; never contacted
    _ticket("GD04", "环境卫生", "区城管局", "1", "2026-11-10 10:00:00+08", "2026-11-11 10:00:00+08",
            None, None, None, "dispatched"),
    _ticket("GD05", "噪音扰民", "公安江岸分局", "2", "2026-11-05 12:00:00+08", "2026-11-06 12:00:00+08",
            "2026-11-05 13:00:00+08", "2026-11-06 12:00:00+08", "不满意", "rated"),
    # 8 h after GD03, same place and category, but transferred on its own (CG05): its own incident
    _ticket("GD06", "交通出行", "区交通运输局", "2", "2026-11-05 18:00:00+08", "2026-11-06 18:00:00+08",
            "2026-11-05 19:00:00+08", "2026-11-06 10:00:00+08", "满意", "rated"),
]

CASE_COLUMNS = (
    "case_id varchar, source_ticket_id varchar, category_type varchar, category_code varchar, "
    "category_name varchar, description varchar, address varchar, " + ADDRESS + ", lon double, lat double, "
    "street varchar, community varchar, reporter_type varchar, reporter_name_std varchar, "
    "reporter_phone_std varchar, status varchar, status_name varchar, reported_at timestamptz, "
    "registered_at timestamptz, dispatched_at timestamptz, disposed_at timestamptz, verified_at timestamptz, "
    "closed_at timestamptz, deadline timestamptz, updated_at timestamptz"
)


def _case(cid: str, ref: str | None, category: str, building: str, reported: str,
          closed: str | None) -> tuple[Any, ...]:
    return (cid, ref, "事件", "S0000", category, "描述", f"光明花园{building}号楼", *_address("光明花园", building, "", ""),
            114.29, 30.69, STREET, COMMUNITY, "网格员", None, None, "closed" if closed else "dispatched",
            "结案" if closed else "派遣", reported, reported, reported, closed, closed, closed,
            "2026-11-30 00:00:00+08", closed or reported)


CASES = [
    _case("CG01", "GD03", "机动车乱停放", "2", "2026-11-05 13:00:00+08", "2026-11-06 09:00:00+08"),
    # no reference; 5 h after GD04 at the same building, 暴露垃圾 is compatible with 环境卫生
    _case("CG02", None, "暴露垃圾", "1", "2026-11-10 15:00:00+08", None),
    # 3 h after GD01 at its building, but 上水井盖 is not compatible with 环境卫生: alone
    _case("CG03", None, "上水井盖", "1", "2026-11-01 12:00:00+08", "2026-11-02 10:00:00+08"),
    # compatible with GD02 but 38 h after it (window: -12 h .. +24 h): alone
    _case("CG04", None, "暴露垃圾", "1", "2026-11-03 10:00:00+08", None),
    _case("CG05", "GD06", "机动车乱停放", "2", "2026-11-05 20:00:00+08", "2026-11-06 12:00:00+08"),
]

PERSON_COLUMNS = (
    "record_uid varchar, source varchar, record_key varchar, name_std varchar, id_std varchar, "
    "id_kind varchar, id_prefix6 varchar, id_suffix4 varchar, birth_date date, sex varchar, "
    "phone_std varchar, phone_kind varchar, household_id varchar, is_deleted boolean, seen_at timestamptz"
)


def _rec(source: str, key: str, name: str, id_std: str | None, kind: str, birth: str | None,
         sex: str | None, phone: str | None, phone_kind: str | None, household: str | None,
         seen: str, deleted: bool = False, prefix: str | None = None, suffix: str | None = None) -> tuple[Any, ...]:
    return (f"{source}:{key}", source, key, name, id_std, kind, prefix or (id_std and id_std[:6]),
            suffix or (id_std and id_std[-4:]), birth, sex, phone, phone_kind, household, deleted, seen)


REG, HEALTH, HOT = "grid_registry.residents", "health_codes.exports", "hotline.tickets"
# (record, person_id)
PERSON_RECORDS = [
    # P1 张伟: registry says 张伟 (1 record) though 张玮 is written 3 times elsewhere -> 张伟 (registry first);
    # ID_A twice, ID_B once -> ID_A; birth date of ID_A's records 1950-03-07; latest mobile 13800000002
    # (the hotline's later 027 landline is not a mobile)
    (_rec(REG, "R1", "张伟", ID_A, "valid", "1950-03-07", "男", "13800000001", "mobile", "H1",
          "2026-10-01 08:00:00+08"), "P000000001"),
    (_rec(HEALTH, "20261101#1", "张玮", ID_A, "valid", "1950-03-07", "男", "13800000002", "mobile", None,
          "2026-11-01 00:00:00+08"), "P000000001"),
    (_rec(HEALTH, "20261103#7", "张伟", ID_B, "valid", "1950-03-08", "男", "13800000002", "mobile", None,
          "2026-11-03 00:00:00+08"), "P000000001"),
    (_rec(HOT, "GD01", "张玮", None, "masked", None, None, "13800000003", "mobile", None,
          "2026-11-01 09:00:00+08", prefix="420102", suffix="0011"), "P000000001"),
    (_rec(HOT, "GD04", "张玮", None, "missing", None, None, "02780000000", "landline", None,
          "2026-11-10 10:00:00+08"), "P000000001"),
    # P2 李娜 in M2
    (_rec(REG, "R2", "李娜", ID_C, "valid", "1988-07-15", "女", "13900000001", "mobile", "H2",
          "2026-09-01 08:00:00+08"), "P000000002"),
    (_rec(HEALTH, "20261101#2", "李娜", ID_C, "valid", "1988-07-15", "女", "13900000001", "mobile", None,
          "2026-11-01 00:00:00+08"), "P000000002"),
    (_rec(HOT, "GD03", "李娜", None, "missing", None, None, "13900000002", "mobile", None,
          "2026-11-05 10:00:00+08"), "P000000002"),
    # P3 王芳: deleted from the registry on 11-04 -> not a resident
    (_rec(REG, "R3", "王芳", ID_D, "valid", "1960-01-01", "女", None, None, "H1",
          "2026-11-04 10:00:00+08", deleted=True), "P000000003"),
    # P4: a health record with an invalid ID
    (_rec(HEALTH, "20261101#3", "赵六", None, "invalid", None, None, "13700000000", "mobile", None,
          "2026-11-01 00:00:00+08", prefix="420102", suffix="1234"), "P000000004"),
    (_rec(HOT, "GD02", "钱七", None, "missing", None, None, "13600000000", "mobile", None,
          "2026-11-01 20:00:00+08"), "P000000005"),
    (_rec(HOT, "GD05", "孙八", None, "missing", None, None, None, None, None,
          "2026-11-05 12:00:00+08"), "P000000006"),
    (_rec(HOT, "GD06", "周九", None, "missing", None, None, "13500000000", "mobile", None,
          "2026-11-05 18:00:00+08"), "P000000007"),
]


def build_contract_fixture(con: duckdb.DuckDBPyConnection, *, surge: bool = False) -> None:
    """Create staging.stg_* , staging.hotline_tickets and core.person_source for the hand-made district.

    surge=True adds micro-grid M3 and nine 市场监管 tickets there: 3 in the baseline fortnight
    (11-02, 11-06, 11-10), then 5 in 11-15..11-17 -> a warning on 11-17 (see test_marts).
    """
    con.execute("set timezone = 'UTC'")
    db.migrate(con)  # as every warehouse: meta tables (model versions, ...) included
    for schema in ("staging", "core"):
        con.execute(f"create schema if not exists {schema}")
    grids = [
        ("420102", "district", "江岸区", None),
        ("420102001", "street", STREET, "420102"),
        ("420102001001", "community", COMMUNITY, "420102001"),
        ("42010200100101", "area", "第1网格", "420102001001"),
        (M1, "micro", "光明花园1号楼微网格", "42010200100101"),
        (M2, "micro", "光明花园2号楼微网格", "42010200100101"),
    ]
    households = [
        ("H1", M1, "光明花园1号楼1单元101", "光明花园", "1号楼", "1单元", "101", *_address("光明花园", "1")),
        ("H2", M2, "光明花园2号楼1单元101", "光明花园", "2号楼", "1单元", "101", *_address("光明花园", "2")),
    ]
    tickets = list(TICKETS)
    if surge:
        grids.append((M3, "micro", "光明花园3号楼微网格", "42010200100101"))
        households.append(("H3", M3, "光明花园3号楼1单元101", "光明花园", "3号楼", "1单元", "101",
                           *_address("光明花园", "3")))
        days = ["02", "06", "10", "15", "15", "16", "16", "17"]
        for i, day in enumerate(days):
            at = f"2026-11-{day} 10:00:00+08"
            tickets.append(_ticket(f"GS{i:02d}", "市场监管", "区市场监管局", "3", at, at, at, None, None, "responded"))
    # The grids go through the real staging model, which walks the hierarchy (core.grid reads it).
    _table(con, "staging.grid_registry_grids",
           "grid_code varchar, level varchar, name varchar, parent_code varchar, updated_at timestamptz, "
           "_load_id varchar, _extracted_at timestamptz, _record_hash varchar, _source_position varchar, "
           "_validation_run_id varchar",
           [(*g, "2026-01-01 00:00:00+08", "load-1", "2026-01-01 00:00:00+08", g[0], g[0], "run-1") for g in grids])
    con.execute(model_sql("stg_grid_registry__grids"))
    _table(con, "staging.stg_grid_registry__households",
           "household_id varchar, grid_code varchar, address varchar, compound varchar, building varchar, "
           "unit varchar, room varchar, " + ADDRESS + ", updated_at timestamptz",
           [(*h, "2026-01-01 00:00:00+08") for h in households])
    _table(con, "staging.stg_grid_registry__residents",
           "resident_id varchar, household_id varchar, name varchar, residence_type varchar, "
           "moved_in_on date, is_deleted boolean, deleted_at timestamptz, updated_at timestamptz",
           [("R1", "H1", "张伟", "户籍", "2020-01-01", False, None, "2026-10-01 08:00:00+08"),
            ("R2", "H2", "李娜", "流动", "2021-05-01", False, None, "2026-09-01 08:00:00+08"),
            ("R3", "H1", "王芳", "户籍", "2019-01-01", True, "2026-11-04 10:00:00+08", "2026-11-04 10:00:00+08")])
    _table(con, "staging.stg_grid_registry__special_groups",
           "resident_id varchar, group_type varchar, since date, note varchar",
           [("R1", "独居老人", "2020-01-01", None), ("R1", "残疾人", "2021-01-01", None)])
    _table(con, "staging.stg_grid_registry__grid_workers",
           "worker_id varchar, name varchar, phone varchar, grid_code varchar, role varchar", [])
    # P1 green since 10-01, yellow from 11-03 08:00; P2 green; P4 green
    _table(con, "staging.stg_health_codes__exports",
           "record_no varchar, export_date date, color varchar, code_color varchar, color_since timestamptz, "
           "file_name varchar",
           [("1", "2026-11-01", "green", "绿码", "2026-10-01 00:00:00+08", "健康码日报_20261101.csv"),
            ("2", "2026-11-01", "green", "绿码", "2026-10-02 00:00:00+08", "健康码日报_20261101.csv"),
            ("3", "2026-11-01", "green", "绿码", "2026-10-03 00:00:00+08", "健康码日报_20261101.csv"),
            ("7", "2026-11-03", "yellow", "黄码", "2026-11-03 08:00:00+08", "健康码日报_20261103.csv")])
    _table(con, "staging.stg_hotline__tickets", TICKET_COLUMNS, tickets)
    _table(con, "staging.stg_city_cases__cases", CASE_COLUMNS, CASES)
    # the validated, append-only versions (instants as text): GD01 seen twice, first as 'responded'
    versions = [(t[0], t[15], t[26], "2026-11-30 00:00:00+00", *[t[i] for i in (18, 19, 20, 21, 22, 23)])
                for t in tickets]
    versions.append(("GD01", "responded", "2026-11-01 10:00:00+08", "2026-11-01 12:00:00+00",
                     "2026-11-01 09:00:00+08", "2026-11-01 09:00:00+08", "2026-11-01 10:00:00+08", None, None, None))
    _table(con, "staging.hotline_tickets",
           "ticket_id varchar, status varchar, updated_at varchar, _extracted_at timestamptz, received_at varchar, "
           "dispatched_at varchar, first_response_at varchar, resolved_at varchar, closed_at varchar, rated_at varchar",
           [tuple(None if v is None else str(v) for v in row[:3]) + (row[3],)
            + tuple(None if v is None else str(v) for v in row[4:]) for row in versions])
    # the registry's validated versions older than the current rows (mart.grid_daily's households over
    # time): none, each resident has lived in one household
    _table(con, "staging.grid_registry_residents",
           "resident_id varchar, household_id varchar, updated_at timestamptz, _extracted_at timestamptz, "
           "_load_id varchar, _record_hash varchar", [])
    records = [r for r, _ in PERSON_RECORDS]
    _table(con, "staging.stg_person_records", PERSON_COLUMNS, records)
    _table(con, "core.person_source",
           "record_uid varchar, source varchar, record_key varchar, person_id varchar, link_rule varchar, "
           "match_weight double, match_probability double, linked_record_uid varchar",
           [(r[0], r[1], r[2], pid, "fixture", None, None, None) for r, pid in PERSON_RECORDS])
    # The IDs as each silo wrote them, for core.data_issue_finding's invalid-ID reasons: none here
    # (the hand-made records' IDs are standardised already), but the columns are part of the contract.
    con.execute("alter table staging.stg_grid_registry__residents add column id_number varchar")
    con.execute("alter table staging.stg_grid_registry__residents add column _extracted_at timestamptz")
    con.execute("alter table staging.stg_health_codes__exports add column record_key varchar")
    con.execute("alter table staging.stg_health_codes__exports add column id_number varchar")
    _table(con, "staging.stg_ids", "id_raw varchar, id_clean varchar", [])
    con.execute(macros_sql())  # the std_ ID checks it names the reasons with
