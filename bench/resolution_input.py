"""A quick standardisation of a district's silo files into a person-records table (bench and tests only).

It stands in for helper A's staging.stg_person_records (same columns) until that lands; it reads the
generator's silo files directly (registry SQLite + changes, health-code CSV/XLSX drops, hotline and
city-case parquet), so it works at district scale without running the sync pipeline.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import zhconv
from pypinyin import Style, lazy_pinyin

from simulators.health_codes import files

SURNAMES = {"单": "shan", "曾": "zeng", "解": "xie", "仇": "qiu", "朴": "piao", "区": "ou", "查": "zha",
            "盖": "ge", "乐": "yue", "翟": "zhai", "覃": "qin", "缪": "miao", "尉迟": "yu chi", "万俟": "mo qi"}
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
CHECK = "10X98765432"


def _check_char(first17: str) -> str:
    return CHECK[sum(int(c) * w for c, w in zip(first17, WEIGHTS, strict=True)) % 11]


def std_id(raw: str | None) -> tuple[str | None, str, str | None, str | None]:
    """(id_std, id_kind, prefix6, suffix4) of one raw ID string."""
    if raw is None:
        return None, "missing", None, None
    s = re.sub(r"\s", "", unicodedata.normalize("NFKC", raw)).upper()
    if not s:
        return None, "missing", None, None
    if re.fullmatch(r"\d{6}\*+\d{3}[\dX]", s):
        return None, "masked", s[:6], s[-4:]
    if re.fullmatch(r"\d{15}", s):
        first17 = s[:6] + "19" + s[6:]
        full = first17 + _check_char(first17)
        return full, "legacy15", full[:6], full[-4:]
    if re.fullmatch(r"\d{17}[\dX]", s) and _check_char(s[:17]) == s[17]:
        return s, "valid", s[:6], s[-4:]
    return None, "invalid", None, None


def std_name(raw: str | None) -> tuple[str | None, str | None, str | None]:
    """(name_std, name_pinyin, surname): NFKC, simplified, no spaces or interpuncts; toneless pinyin."""
    if raw is None:
        return None, None, None
    s = zhconv.convert(re.sub(r"[\s·•・.]", "", unicodedata.normalize("NFKC", raw)), "zh-cn")
    if not s:
        return None, None, None
    sur = s[:2] if s[:2] in SURNAMES else s[:1]
    py = lazy_pinyin(s[len(sur):], style=Style.NORMAL)
    return s, " ".join([SURNAMES.get(sur, " ".join(lazy_pinyin(sur)))] + py), sur


def _map_table(con: duckdb.DuckDBPyConnection, name: str, values: list, fn, cols: list[str]) -> None:
    rows = [(v, *fn(v)) for v in values]
    arrays = [pa.array([r[i] for r in rows], pa.string()) for i in range(len(cols) + 1)]
    con.register(f"{name}_arrow", pa.table(arrays, names=["raw", *cols]))
    con.execute(f"create or replace temp table {name} as select * from {name}_arrow")
    con.unregister(f"{name}_arrow")


def _health(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    tables = []
    for path in sorted((root / "health_codes" / "outbox").glob("*/健康码日报_*")):
        day = re.search(r"(\d{8})", path.name)
        if not day:
            continue
        # The simulator's reference reader: any encoding, CSV or XLSX; malformed lines are skipped.
        t = files.read_export(path, skip_bad_lines=True)
        t = t.set_column(t.schema.get_field_index("record_no"), "record_no", pc.cast(t["record_no"], pa.string()))
        tables.append(t.select(["record_no", "name", "id_number", "phone", "community"]).append_column(
            "export_date", pa.array([day.group(1)] * t.num_rows, pa.string())))
    con.register("health_arrow", pa.concat_tables(tables))
    # A re-sent file repeats the day's keys: one row per (day, record number).
    con.execute("""create or replace temp table health as
        select * from health_arrow qualify row_number() over (partition by export_date, record_no) = 1""")
    con.unregister("health_arrow")


def _registry(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    db = sqlite3.connect(root / "grid_registry" / "registry.sqlite")
    for table in ("residents", "households", "grids", "grid_workers"):
        cur = db.execute(f"select * from {table}")
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
        con.register(f"{table}_arrow", pa.table([pa.array([None if r[i] is None else str(r[i]) for r in rows],
                                                          pa.string()) for i in range(len(names))], names=names))
        con.execute(f"create or replace temp table reg_{table} as select * from {table}_arrow")
        con.unregister(f"{table}_arrow")
    changes = root / "grid_registry" / "changes" / "residents_changes.parquet"
    # Latest version per resident: day-0 database plus every later change.
    con.execute(f"""create or replace temp table reg_res as
        select * exclude (rn) from (
            select *, row_number() over (partition by resident_id order by day desc) as rn from (
                select resident_id, household_id, name, id_number, sex, birth_date::date as birth_date, phone,
                       is_deleted in ('1', 'True', 'true') as is_deleted, -1 as day from reg_residents
                {"union all select resident_id, household_id, name, id_number, sex, birth_date, phone, is_deleted, day from '" + str(changes) + "'" if changes.exists() else ""}
            )) where rn = 1""")


def build(con: duckdb.DuckDBPyConnection, root: Path | str, table: str = "staging.stg_person_records") -> int:
    """Write `table` (the stg_person_records columns) from the district at `root`; return its rows."""
    root = Path(root)
    _registry(con, root)
    _health(con, root)
    con.execute(f"""create or replace temp table raw_people as
        with grid_comm as (
            select m.grid_code, coalesce(c1.name, c2.name) as community
            from reg_grids m
            left join reg_grids c1 on c1.grid_code = m.parent_code and c1.level = 'community'
            left join reg_grids a on a.grid_code = m.parent_code
            left join reg_grids c2 on c2.grid_code = a.parent_code and c2.level = 'community'
        )
        select 'grid_registry.residents' as source, r.resident_id as record_key, r.name, r.id_number,
               r.birth_date, r.sex, r.phone, h.compound, h.building, h.unit, h.room, g.community,
               h.grid_code, r.household_id, r.is_deleted, null as role
        from reg_res r left join reg_households h using (household_id) left join grid_comm g using (grid_code)
        union all
        select 'grid_registry.grid_workers', w.worker_id, w.name, null, null, null, w.phone, null, null, null, null,
               g.community, w.grid_code, null, false, '网格员'
        from reg_grid_workers w left join grid_comm g using (grid_code)
        union all
        select 'health_codes.exports', export_date || '#' || record_no, name, id_number, null, null, phone,
               null, null, null, null, community, null, null, false, null
        from health
        union all
        select 'hotline.tickets', ticket_id, caller_name, caller_id_number, null, null, caller_phone,
               null, null, null, null, null, null, null, false, null
        from '{root}/hotline/tickets.parquet'
        union all
        select 'city_cases.cases', case_id, reporter_name, null, null, null, reporter_phone,
               null, null, null, null, null, null, null, false,
               case when reporter_type = '网格员' then reporter_type end
        from '{root}/city_cases/cases.parquet' where reporter_type <> '12345转办'
    """)
    names = [r[0] for r in con.execute("select distinct name from raw_people where name is not null").fetchall()]
    _map_table(con, "name_map", names, std_name, ["name_std", "name_pinyin", "surname"])
    ids = [r[0] for r in con.execute("select distinct id_number from raw_people where id_number is not null").fetchall()]
    _map_table(con, "id_map", ids, std_id, ["id_std", "id_kind", "id_prefix6", "id_suffix4"])
    # Hotline addresses are free text: the compound is the registry compound name found in it.
    schema = table.split(".")[0] if "." in table else None
    if schema:
        con.execute(f"create schema if not exists {schema}")
    con.execute(f"""create or replace table {table} as
        with ph as (
            select *, regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g') as digits from raw_people
        ),
        ph2 as (
            select *, case when length(digits) = 13 and digits like '86%' then digits[3:] else nullif(digits, '') end as p
            from ph
        )
        select x.source || ':' || x.record_key as record_uid, x.source, x.record_key, x.name as name_raw,
               n.name_std, n.name_pinyin, n.surname, i.id_std, i.id_std is not null as id_valid,
               coalesce(i.id_kind, 'missing') as id_kind, i.id_prefix6, i.id_suffix4,
               coalesce(x.birth_date, strptime(i.id_std[7:14], '%Y%m%d')::date) as birth_date,
               coalesce(x.sex, case when i.id_std is not null then
                   case when i.id_std[17:17]::int % 2 = 1 then '男' else '女' end end) as sex,
               x.p as phone_std,
               case when x.p is null then 'missing' when regexp_full_match(x.p, '1[3-9][0-9]{{9}}') then 'mobile'
                    when length(x.p) between 10 and 12 and x.p like '0%' then 'landline' else 'invalid' end as phone_kind,
               x.compound as address_compound,
               regexp_extract(x.building, '([0-9]+)') as address_building,
               regexp_extract(x.unit, '([0-9]+)') as address_unit, x.room as address_room,
               case when x.compound is not null then concat_ws('|', x.compound, regexp_extract(x.building, '([0-9]+)'),
                    regexp_extract(x.unit, '([0-9]+)'), x.room) end as address_key,
               x.community, x.grid_code, x.household_id, x.is_deleted, null::timestamptz as seen_at,
               -- the second fields of issue #17 item 5; tickets' places are not parsed here
               case when x.compound is not null then x.compound || '|' || regexp_extract(x.building, '([0-9]+)')
                    end as home_building,
               null::varchar as reported_building, x.role as reporter_role,
               count(distinct n.name_pinyin) over (partition by x.p) as phone_holders
        from ph2 x
        left join name_map n on n.raw = x.name
        left join id_map i on i.raw = x.id_number
    """)
    con.execute(f"update {table} set phone_holders = null where phone_std is null")
    row = con.execute(f"select count(*) from {table}").fetchone()
    return int(row[0]) if row else 0


def truth_pairs_sql(table: str, truth: Path | str, resolved: str) -> str:
    """SQL giving (tp, predicted, actual) pair counts of `resolved` (record_uid, person_id) against truth."""
    return f"""
        with t as (
            select s.record_uid, tr.person_id as true_id, r.person_id as got_id
            from {table} s
            join '{truth}/source_records.parquet' tr on tr.source = s.source and tr.record_key = s.record_key
            join {resolved} r on r.record_uid = s.record_uid
        ),
        both_ as (select true_id, got_id, count(*) as n from t group by all),
        tp as (select sum(n * (n - 1) / 2) as v from both_),
        pred as (select sum(n * (n - 1) / 2) as v from (select got_id, count(*) as n from t group by 1)),
        act as (select sum(n * (n - 1) / 2) as v from (select true_id, count(*) as n from t group by 1))
        select tp.v::double, pred.v::double, act.v::double,
               (select count(distinct got_id) from t), (select count(distinct true_id) from t), (select count(*) from t)
        from tp, pred, act
    """


def incident_pairs_sql(members: str, truth: Path | str) -> str:
    """SQL giving (tp, predicted, actual, incidents, true incidents, members) of `members`
    (source, member_key, incident_id) against truth/incidents.parquet, pairwise within incidents."""
    return f"""
        with t as (
            select tr.incident_id as true_id, m.incident_id as got_id
            from {members} m
            join '{truth}/incidents.parquet' tr on tr.source = m.source and tr.record_key = m.member_key
        ),
        both_ as (select true_id, got_id, count(*) as n from t group by all),
        tp as (select sum(n * (n - 1) / 2) as v from both_),
        pred as (select sum(n * (n - 1) / 2) as v from (select got_id, count(*) as n from t group by 1)),
        act as (select sum(n * (n - 1) / 2) as v from (select true_id, count(*) as n from t group by 1))
        select tp.v::double, pred.v::double, act.v::double,
               (select count(distinct got_id) from t), (select count(distinct true_id) from t), (select count(*) from t)
        from tp, pred, act
    """


def scores(con: duckdb.DuckDBPyConnection, sql: str) -> dict:
    """Pairwise precision, recall, F1 and cluster counts from a *_pairs_sql query."""
    tp, pred, act, clusters, true_clusters, records = con.execute(sql).fetchone()  # type: ignore[misc]
    p, r = (tp / pred if pred else 1.0), (tp / act if act else 1.0)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "clusters": clusters,
            "true_clusters": true_clusters, "records": records}
