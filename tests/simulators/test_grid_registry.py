"""The grid registry loads, upserts and reads back identically on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import os
import random
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
from sqlalchemy import create_engine, inspect, literal, select, tuple_
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from simulators.clock import DEFAULT_START, day_start_utc
from simulators.grid_registry import database, registry
from simulators.grid_registry.schema import UTCDateTime, metadata

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MARIADB_SERVER = "mysql+pymysql://root@127.0.0.1:3306/test?charset=utf8mb4"

TS = pa.timestamp("us", tz="UTC")
# The input types, written out here rather than taken from schema.py, so "reads back as the
# input" is checked against the contract and not against the code under test.
SCHEMAS = {
    "grids": pa.schema(
        [
            ("grid_code", pa.string()),
            ("level", pa.string()),
            ("name", pa.string()),
            ("parent_code", pa.string()),
            ("updated_at", TS),
        ]
    ),
    "households": pa.schema(
        [
            ("household_id", pa.string()),
            ("grid_code", pa.string()),
            ("address", pa.string()),
            ("compound", pa.string()),
            ("building", pa.string()),
            ("unit", pa.string()),
            ("room", pa.string()),
            ("updated_at", TS),
        ]
    ),
    "residents": pa.schema(
        [
            ("resident_id", pa.string()),
            ("household_id", pa.string()),
            ("name", pa.string()),
            ("id_number", pa.string()),
            ("sex", pa.string()),
            ("birth_date", pa.date32()),
            ("phone", pa.string()),
            ("relation", pa.string()),
            ("residence_type", pa.string()),
            ("moved_in_on", pa.date32()),
            ("updated_at", TS),
            ("is_deleted", pa.bool_()),
            ("deleted_at", TS),
        ]
    ),
    "special_groups": pa.schema(
        [
            ("resident_id", pa.string()),
            ("group_type", pa.string()),
            ("since", pa.date32()),
            ("note", pa.string()),
            ("updated_at", TS),
        ]
    ),
    "grid_workers": pa.schema(
        [
            ("worker_id", pa.string()),
            ("name", pa.string()),
            ("phone", pa.string()),
            ("grid_code", pa.string()),
            ("role", pa.string()),
            ("updated_at", TS),
        ]
    ),
}
KEYS = {
    "grids": ["grid_code"],
    "households": ["household_id"],
    "residents": ["resident_id"],
    "special_groups": ["resident_id", "group_type"],
    "grid_workers": ["worker_id"],
}
TABLES = list(SCHEMAS)

# 00:00 Beijing time, 30 days before the first simulated day; the initial import stamps most rows
# with it, which gives the keyset read plenty of ties on updated_at to break by key.
IMPORTED_AT = day_start_utc(DEFAULT_START, 0) - timedelta(days=30)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗梁"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华建国志红梅"
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _id18(division: str, birth: date, sequence: int) -> str:
    """A GB 11643 number with a correct ISO 7064 MOD 11-2 check character."""
    body = f"{division}{birth:%Y%m%d}{sequence:03d}"
    total = sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True))
    return body + "10X98765432"[total % 11]


def _community() -> tuple[dict[str, pa.Table], pa.Table]:
    """A small community: grids, ~30 households, ~80 residents, groups, workers, 3 days of changes."""
    rng = random.Random(20261101)
    grids = [
        ("440106000000", "district", "示范区", None),
        ("440106001000", "street", "龙洞街道", "440106000000"),
        ("440106001001", "community", "龙洞社区", "440106001000"),
        ("440106001001A01", "area", "龙洞社区第一片区", "440106001001"),
        ("440106001001A02", "area", "龙洞社区第二片区", "440106001001"),
        ("440106001001S01", "special", "龙洞小学专属网格", "440106001001"),
    ]
    micro = [f"440106001001A0{a}M0{m}" for a in (1, 2) for m in (1, 2)]
    grids += [
        (code, "micro", f"龙洞花园{i + 1}号楼微网格", code[:15]) for i, code in enumerate(micro)
    ]
    rng.shuffle(grids)  # children before parents: the loader must order them itself
    grid_rows = [dict(zip(SCHEMAS["grids"].names, (*g, IMPORTED_AT), strict=True)) for g in grids]

    households = []
    for i in range(30):
        building, unit, room = i // 8 + 1, i % 2 + 1, f"{i % 4 + 1}0{i % 3 + 1}"
        households.append(
            {
                "household_id": f"H{i + 1:05d}",
                "grid_code": micro[i // 8],
                "address": f"示范区龙洞街道龙洞社区龙洞花园{building}号楼{unit}单元{room}",
                "compound": "龙洞花园",
                "building": f"{building}号楼",
                "unit": f"{unit}单元",
                "room": room,
                "updated_at": IMPORTED_AT
                if i % 5
                else IMPORTED_AT + timedelta(hours=i, microseconds=7),
            }
        )

    residents: list[dict] = []
    for h in households:
        size = rng.choice((1, 2, 3, 3, 3, 4))
        surname = rng.choice(SURNAMES)
        family_phone = f"13{rng.randrange(10**9):09d}"
        for member in range(size):
            n = len(residents) + 1
            elderly = size == 1 and n % 2 == 1
            birth = (
                date(1940 + rng.randrange(15), 1 + rng.randrange(12), 1 + rng.randrange(28))
                if elderly
                else date(1960 + rng.randrange(60), 1 + rng.randrange(12), 1 + rng.randrange(28))
            )
            sequence = rng.randrange(500) * 2 + (1 if member % 2 == 0 else 0)
            id_number: str | None = _id18("440106", birth, sequence)
            if n % 11 == 0:
                id_number = f"440106{birth:%y%m%d}{sequence:03d}"  # old 15-digit number
            elif n % 13 == 0:
                id_number = id_number[:-1] + "x" if id_number.endswith("X") else f" {id_number}"
            elif n % 17 == 0:
                id_number = None
            residents.append(
                {
                    "resident_id": f"R{n:06d}",
                    "household_id": h["household_id"],
                    "name": "阿依古丽·买买提"
                    if n == 42
                    else surname + "".join(rng.sample(GIVEN, rng.choice((1, 2)))),
                    "id_number": id_number,
                    "sex": "男" if sequence % 2 else "女",
                    "birth_date": None if n % 19 == 0 else birth,
                    "phone": None
                    if n % 6 == 0
                    else (f"+86 {family_phone}" if n % 9 == 0 else family_phone),
                    "relation": "户主"
                    if member == 0
                    else rng.choice(("配偶", "子女", "父母", "其他")),
                    "residence_type": "流动" if n % 4 == 0 else "户籍",
                    "moved_in_on": date(
                        2000 + rng.randrange(26), 1 + rng.randrange(12), 1 + rng.randrange(28)
                    ),
                    "updated_at": IMPORTED_AT
                    if n % 3
                    else IMPORTED_AT + timedelta(minutes=n, microseconds=n),
                    "is_deleted": False,
                    "deleted_at": None,
                }
            )
    rng.shuffle(residents)

    specials = []
    members = {r["household_id"]: 0 for r in residents}
    for r in residents:
        members[r["household_id"]] += 1
    for r in residents:
        alone = members[r["household_id"]] == 1
        if alone and r["birth_date"] and r["birth_date"].year < 1956 and len(specials) < 4:
            specials.append((r["resident_id"], "独居老人", "每周上门一次"))
    children = [r for r in residents if r["birth_date"] and r["birth_date"].year >= 2012]
    specials += [
        (residents[5]["resident_id"], "残疾人", "肢体二级"),
        (children[0]["resident_id"], "困境儿童", None),
    ]
    special_rows = [
        {
            "resident_id": rid,
            "group_type": kind,
            "since": date(2024, 3, 1),
            "note": note,
            "updated_at": IMPORTED_AT,
        }
        for rid, kind, note in specials
    ]

    workers = [("W0001", "陈建国", "13900000001", "440106001001", "网格长")]
    workers += [
        (f"W00{10 + i}", f"林{GIVEN[i]}", f"1390000001{i}", code, "网格员")
        for i, code in enumerate(micro[::2])
    ]
    workers += [
        (f"W00{20 + i}", f"何{GIVEN[i + 5]}", f"1390000002{i}", code, "楼栋长")
        for i, code in enumerate(micro)
    ]
    worker_rows = [
        dict(zip(SCHEMAS["grid_workers"].names, (*w, IMPORTED_AT), strict=True)) for w in workers
    ]

    tables = {
        "grids": pa.Table.from_pylist(grid_rows, schema=SCHEMAS["grids"]),
        "households": pa.Table.from_pylist(households, schema=SCHEMAS["households"]),
        "residents": pa.Table.from_pylist(residents, schema=SCHEMAS["residents"]),
        "special_groups": pa.Table.from_pylist(special_rows, schema=SCHEMAS["special_groups"]),
        "grid_workers": pa.Table.from_pylist(worker_rows, schema=SCHEMAS["grid_workers"]),
    }
    return tables, _changes({r["resident_id"]: r for r in residents})


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    """An instant on simulated day `day`, `hour` Beijing time."""
    return day_start_utc(DEFAULT_START, day) + timedelta(
        hours=hour, minutes=minute, microseconds=day
    )


def _changes(residents: dict[str, dict]) -> pa.Table:
    def changed(rid: str, day: int, at: datetime, **fields: object) -> dict:
        row = {**residents[rid], **fields, "updated_at": at, "day": day}
        residents[rid] = {k: v for k, v in row.items() if k != "day"}
        return row

    rows = [
        changed("R000003", 1, _at(1, 9), phone="15812345678"),
        changed("R000020", 1, _at(1, 10), household_id="H00002", relation="其他"),  # a move
        changed("R000010", 1, _at(1, 15), phone=None),
        changed("R000010", 2, _at(2, 11), phone="+86 186-0000-1234"),  # changed twice
        {  # a new migrant into an existing household
            "resident_id": "R009001",
            "household_id": "H00005",
            "name": "阿卜杜拉·艾力",
            "id_number": _id18("650101", date(1995, 6, 12), 3),
            "sex": "男",
            "birth_date": date(1995, 6, 12),
            "phone": "17712345678",
            "relation": "其他",
            "residence_type": "流动",
            "moved_in_on": DEFAULT_START + timedelta(days=2),
            "updated_at": _at(2, 14),
            "is_deleted": False,
            "deleted_at": None,
            "day": 2,
        },
        changed("R000030", 3, _at(3, 8), is_deleted=True, deleted_at=_at(3, 8)),  # soft delete
    ]
    return pa.Table.from_pylist(
        rows, schema=SCHEMAS["residents"].append(pa.field("day", pa.int32()))
    )


def _expected_residents(residents: pa.Table, changes: pa.Table, upto: int) -> pa.Table:
    """The residents after every change up to day `upto`, worked out without the database."""
    state = {r["resident_id"]: r for r in residents.to_pylist()}
    for row in sorted(changes.to_pylist(), key=lambda r: (r["day"], r["updated_at"])):
        if row.pop("day") <= upto:
            state[row["resident_id"]] = row
    return pa.Table.from_pylist([state[k] for k in sorted(state)], schema=SCHEMAS["residents"])


def _sorted(name: str, table: pa.Table) -> pa.Table:
    return table.sort_by([(k, "ascending") for k in KEYS[name]])


def _assert_same(actual: pa.Table, expected: pa.Table) -> None:
    assert actual.schema.equals(expected.schema), f"{actual.schema}\n!=\n{expected.schema}"
    assert actual.to_pylist() == expected.to_pylist()


@pytest.fixture(scope="module")
def community() -> tuple[dict[str, pa.Table], pa.Table]:
    """The small community's tables and its resident changes (not conftest's `district`)."""
    return _community()


def _throwaway(env: str, default: str, marker: str, create: str, drop: str) -> Iterator[str]:
    """A fresh database on the server at $env (else `default`), dropped after the session."""
    server = make_url(os.environ.get(env, default))
    name = f"onenet_test_{secrets.token_hex(6)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(create.format(name=name))
    except OperationalError as exc:
        admin.dispose()
        pytest.fail(
            f"cannot reach {server.render_as_string()}: {exc.orig}; start the server, point {env} "
            f"at it, or deselect these tests with -m 'not {marker}'"
        )
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(drop.format(name=name))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    yield from _throwaway(
        "ONENET_TEST_PG_URL",
        PG_SERVER,
        "postgres",
        "CREATE DATABASE \"{name}\" ENCODING 'UTF8'",
        'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
    )


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    yield from _throwaway(
        "ONENET_TEST_MARIADB_URL",
        MARIADB_SERVER,
        "mariadb",
        "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
        "DROP DATABASE IF EXISTS `{name}`",
    )


ENGINES = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return database.sqlite_url(tmp_path)
    return request.getfixturevalue(f"{request.param}_url")


def _keyset_read(url: str, page: int) -> list[tuple[datetime, str]]:
    """Every (updated_at, resident_id) by keyset pages, as an incremental connector would read."""
    residents = metadata.tables["residents"]
    key = tuple_(residents.c.updated_at, residents.c.resident_id)
    seen: list[tuple[datetime, str]] = []
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            while True:
                query = select(residents.c.updated_at, residents.c.resident_id)
                if seen:
                    after_at, after_id = seen[-1]
                    query = query.where(
                        key > tuple_(literal(after_at, UTCDateTime()), literal(after_id))
                    )
                rows = conn.execute(
                    query.order_by(residents.c.updated_at, residents.c.resident_id).limit(page)
                ).all()
                seen += [(at, rid) for at, rid in rows]
                if len(rows) < page:
                    return seen
    finally:
        engine.dispose()


def test_load_reads_back_identical(db_url: str, community) -> None:
    tables, _ = community
    counts = database.create_and_load(db_url, tables, batch_rows=16)
    assert counts == {name: tables[name].num_rows for name in TABLES}
    for name in TABLES:
        _assert_same(database.read_table(db_url, name), _sorted(name, tables[name]))
    # The fixture really holds what the contract promises to carry.
    ids = database.read_table(db_url, "residents").column("id_number").to_pylist()
    assert {len(i) for i in ids if i} >= {15, 18} and None in ids
    assert "阿依古丽·买买提" in database.read_table(db_url, "residents").column("name").to_pylist()


def test_apply_changes_upserts_full_states(db_url: str, community) -> None:
    tables, changes = community
    database.create_and_load(db_url, tables)
    assert database.apply_changes(db_url, changes) == changes.num_rows
    _assert_same(
        database.read_table(db_url, "residents"),
        _expected_residents(tables["residents"], changes, upto=3),
    )
    # Applying the same full states again changes nothing.
    database.apply_changes(db_url, changes)
    _assert_same(
        database.read_table(db_url, "residents"),
        _expected_residents(tables["residents"], changes, upto=3),
    )


def test_failed_upsert_leaves_the_registry_unchanged(db_url: str, community) -> None:
    tables, changes = community
    database.create_and_load(db_url, tables)
    stray = changes.set_column(1, "household_id", pa.array(["H99999"] * changes.num_rows))
    with pytest.raises(database.RegistryLoadError, match="residents"):
        database.apply_changes(db_url, stray)
    _assert_same(
        database.read_table(db_url, "residents"), _sorted("residents", tables["residents"])
    )


@pytest.mark.parametrize("page", [1, 7, 50])
def test_keyset_read_returns_every_row_once(db_url: str, community, page: int) -> None:
    tables, changes = community
    database.create_and_load(db_url, tables)
    database.apply_changes(db_url, changes)
    seen = _keyset_read(db_url, page)
    expected = _expected_residents(tables["residents"], changes, upto=3)
    assert len(seen) == len({rid for _, rid in seen}) == expected.num_rows
    assert seen == sorted(
        zip(expected["updated_at"].to_pylist(), expected["resident_id"].to_pylist(), strict=True)
    )
    assert all(at.tzinfo is not None for at, _ in seen)


def test_foreign_key_violation_is_refused(db_url: str, community) -> None:
    tables, _ = community
    orphans = tables["residents"].set_column(
        1, "household_id", pa.array(["H99999"] * tables["residents"].num_rows)
    )
    with pytest.raises(database.RegistryLoadError, match="residents"):
        database.create_and_load(db_url, {**tables, "residents": orphans})


def test_contract_mismatch_names_the_columns(tmp_path, community) -> None:
    tables, _ = community
    broken = (
        tables["households"].drop_columns(["room"]).append_column("floor", pa.array(["5"] * 30))
    )
    with pytest.raises(
        database.RegistryInputError, match=r"missing columns \['room'\].*\['floor'\]"
    ):
        database.create_and_load(database.sqlite_url(tmp_path), {**tables, "households": broken})


def test_build_then_advance_day_by_day(tmp_path, community) -> None:
    tables, changes = community
    counts = registry.build(tmp_path, tables, changes)
    assert counts["residents"] == tables["residents"].num_rows
    url = database.sqlite_url(tmp_path)
    assert (tmp_path / "grid_registry" / "registry.sqlite").exists()
    stored = tmp_path / "grid_registry" / "changes" / "residents_changes.parquet"
    assert stored.exists() and registry.applied_day(tmp_path) == 0
    _assert_same(database.read_table(url, "residents"), _sorted("residents", tables["residents"]))

    before = {r["resident_id"]: r for r in database.read_table(url, "residents").to_pylist()}
    assert registry.advance(tmp_path, 1) == 3
    assert registry.advance(tmp_path, 1) == 0  # idempotent
    after = {r["resident_id"]: r for r in database.read_table(url, "residents").to_pylist()}
    moved = after["R000020"]
    assert moved["household_id"] == "H00002" != before["R000020"]["household_id"]
    assert moved["updated_at"] > before["R000020"]["updated_at"]
    assert after["R000003"]["phone"] == "15812345678"
    assert json.loads((tmp_path / "grid_registry" / "applied_day.json").read_text()) == {"day": 1}

    assert registry.advance(tmp_path, 3) == 3
    assert registry.advance(tmp_path, 3) == 0
    assert registry.advance(tmp_path, 2) == 0  # the clock never runs backwards
    final = {r["resident_id"]: r for r in database.read_table(url, "residents").to_pylist()}
    assert final["R000030"]["is_deleted"] and final["R000030"]["deleted_at"] == _at(3, 8)
    assert final["R009001"]["residence_type"] == "流动"
    assert final["R000010"]["phone"] == "+86 186-0000-1234"
    _assert_same(
        database.read_table(url, "residents"),
        _expected_residents(tables["residents"], changes, upto=3),
    )
    # The bookkeeping lives beside the database, never in it.
    engine = create_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) == set(TABLES)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
)
def test_load_into_copies_the_current_state(tmp_path, community, request, server: str) -> None:
    tables, changes = community
    registry.build(tmp_path, tables, changes)
    registry.advance(tmp_path, 2)
    url = request.getfixturevalue(f"{server}_url")
    counts = registry.load_into(url, tmp_path)
    assert counts["residents"] == tables["residents"].num_rows + 1  # the day-2 migrant
    for name in TABLES:
        _assert_same(
            database.read_table(url, name), database.read_table(database.sqlite_url(tmp_path), name)
        )


@pytest.mark.postgres
def test_postgres_stores_timestamptz_and_ignores_session_zone(postgres_url: str, community) -> None:
    tables, _ = community
    database.create_and_load(postgres_url, tables)
    beijing = make_url(postgres_url).update_query_dict({"options": "-c TimeZone=Asia/Shanghai"})
    url = beijing.render_as_string(hide_password=False)
    _assert_same(database.read_table(url, "residents"), _sorted("residents", tables["residents"]))
    engine = create_engine(postgres_url)
    try:
        columns = {c["name"]: c for c in inspect(engine).get_columns("residents")}
        assert columns["updated_at"]["type"].timezone  # timestamptz
    finally:
        engine.dispose()


@pytest.mark.mariadb
def test_mariadb_stores_utf8mb4_naive_utc_and_ignores_session_zone(
    mariadb_url: str, community
) -> None:
    tables, _ = community
    database.create_and_load(mariadb_url, tables)
    beijing = make_url(mariadb_url).update_query_dict({"init_command": "SET time_zone = '+08:00'"})
    url = beijing.render_as_string(hide_password=False)
    _assert_same(database.read_table(url, "residents"), _sorted("residents", tables["residents"]))
    engine = create_engine(mariadb_url)
    try:
        with engine.connect() as conn:
            collations = conn.exec_driver_sql(
                "SELECT table_name, table_collation FROM information_schema.tables "
                "WHERE table_schema = DATABASE()"
            ).all()
            stamp = conn.exec_driver_sql(
                "SELECT CAST(updated_at AS CHAR) FROM grids ORDER BY grid_code LIMIT 1"
            ).scalar_one()
        assert {c for _, c in collations} == {"utf8mb4_bin"} and len(collations) == len(TABLES)
        assert stamp == f"{IMPORTED_AT:%Y-%m-%d %H:%M:%S.%f}"  # naive UTC, not Beijing time
    finally:
        engine.dispose()


def test_sqlite_stores_naive_utc_text(tmp_path, community) -> None:
    tables, _ = community
    url = database.sqlite_url(tmp_path)
    database.create_and_load(url, tables)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            stamp = conn.exec_driver_sql("SELECT updated_at FROM grids LIMIT 1").scalar_one()
    finally:
        engine.dispose()
    assert stamp == f"{IMPORTED_AT:%Y-%m-%d %H:%M:%S.%f}"
    assert datetime.fromisoformat(stamp).replace(tzinfo=UTC) == IMPORTED_AT
