"""The grid registry's five tables as SQLAlchemy Core DDL, and the Arrow schema each one loads from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    false,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

GRID_LEVELS = ("district", "street", "community", "area", "micro", "special")
SEXES = ("男", "女")
RELATIONS = ("户主", "配偶", "子女", "父母", "其他")
RESIDENCE_TYPES = ("户籍", "流动")
GROUP_TYPES = ("独居老人", "残疾人", "困境儿童")
WORKER_ROLES = ("网格长", "网格员", "楼栋长")


class UTCDateTime(TypeDecorator[datetime]):
    """An instant stored as UTC: `timestamptz` on PostgreSQL, naive UTC elsewhere.

    SQLite has no timestamp type and MariaDB's TIMESTAMP shifts with the session time zone and
    ends in 2038, so both store naive UTC (SQLite as 'YYYY-MM-DD HH:MM:SS.ffffff' text, MariaDB as
    DATETIME(6)). Values bound must be timezone-aware; values read back are aware UTC everywhere.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True, precision=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            # A naive value could be Beijing or UTC; guessing would shift a row by 8 hours.
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware instant")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _key(length: int = 32) -> TypeEngine[str]:
    # Code-point order for keys on every engine (SQLite BINARY, PostgreSQL "C", MariaDB
    # utf8mb4_bin via the table collation), so a keyset cursor means the same thing everywhere.
    return String(length).with_variant(postgresql.VARCHAR(length, collation="C"), "postgresql")


def _one_of(column: str, values: tuple[str, ...]) -> CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({listed})", name=column)


# Every table is utf8mb4 on MariaDB so Chinese round-trips; the binary collation keeps key order
# and equality identical to SQLite and PostgreSQL.
_MARIADB: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}

metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

grids = Table(
    "grids",
    metadata,
    Column("grid_code", _key(), primary_key=True, comment="网格编码"),
    Column(
        "level", String(16), nullable=False, comment="district/street/community/area/micro/special"
    ),
    Column("name", String(64), nullable=False, comment="网格名称"),
    Column("parent_code", _key(), ForeignKey("grids.grid_code"), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    _one_of("level", GRID_LEVELS),
    Index(None, "updated_at", "grid_code"),
    Index(None, "parent_code"),
    comment="网格: the grid hierarchy, district down to micro-grid, plus special grids",
    **_MARIADB,
)

households = Table(
    "households",
    metadata,
    Column("household_id", _key(), primary_key=True),
    Column("grid_code", _key(), ForeignKey("grids.grid_code"), nullable=False),
    Column("address", String(255), nullable=False, comment="完整地址"),
    Column("compound", String(64), nullable=False, comment="小区"),
    Column("building", String(16), nullable=False, comment="楼栋"),
    Column("unit", String(16), nullable=False, comment="单元"),
    Column("room", String(16), nullable=False, comment="房号"),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index(None, "updated_at", "household_id"),
    Index(None, "grid_code"),
    comment="户: one row per household, placed in its micro-grid",
    **_MARIADB,
)

residents = Table(
    "residents",
    metadata,
    Column("resident_id", _key(), primary_key=True),
    Column("household_id", _key(), ForeignKey("households.household_id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("id_number", String(32), nullable=True, comment="身份证号 as entered: may be noisy"),
    Column("sex", String(4), nullable=False),
    Column("birth_date", Date(), nullable=True),
    Column("phone", String(32), nullable=True, comment="as entered: may be noisy"),
    Column("relation", String(8), nullable=False, comment="与户主关系"),
    Column("residence_type", String(8), nullable=False, comment="户籍/流动"),
    Column("moved_in_on", Date(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("is_deleted", Boolean(), nullable=False, server_default=false()),
    Column("deleted_at", UTCDateTime(), nullable=True),
    _one_of("sex", SEXES),
    _one_of("relation", RELATIONS),
    _one_of("residence_type", RESIDENCE_TYPES),
    Index(None, "updated_at", "resident_id"),
    Index(None, "household_id"),
    comment="人口: registered and migrant residents; soft-deleted, never removed",
    **_MARIADB,
)

special_groups = Table(
    "special_groups",
    metadata,
    Column("resident_id", _key(), ForeignKey("residents.resident_id"), primary_key=True),
    Column("group_type", _key(8), primary_key=True),
    Column("since", Date(), nullable=False),
    Column("note", String(255), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    _one_of("group_type", GROUP_TYPES),
    Index(None, "updated_at", "resident_id", "group_type"),
    comment="特殊人群: elderly living alone, disabled, children in distress",
    **_MARIADB,
)

grid_workers = Table(
    "grid_workers",
    metadata,
    Column("worker_id", _key(), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("grid_code", _key(), ForeignKey("grids.grid_code"), nullable=False),
    Column("role", String(8), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    _one_of("role", WORKER_ROLES),
    Index(None, "updated_at", "worker_id"),
    Index(None, "grid_code"),
    comment="网格员: workers and the grid each is responsible for",
    **_MARIADB,
)

# Parents before children: the order to create and load in.
TABLE_ORDER = ("grids", "households", "residents", "special_groups", "grid_workers")


def primary_key(name: str) -> list[str]:
    """The primary-key column names of registry table `name`, in key order."""
    return [c.name for c in metadata.tables[name].primary_key.columns]


def _arrow_type(column: Column[Any]) -> pa.DataType:
    type_ = column.type
    if isinstance(type_, UTCDateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(type_, Boolean):
        return pa.bool_()
    if isinstance(type_, Date):
        return pa.date32()
    if isinstance(type_, String):
        return pa.string()
    raise TypeError(f"no Arrow type for {column.table.name}.{column.name} ({type_!r})")


def arrow_schema(name: str) -> pa.Schema:
    """The Arrow schema registry table `name` is loaded from and read back as.

    Every field is nullable in Arrow (the generator's default); NOT NULL is the database's job.
    """
    table = metadata.tables[name]
    return pa.schema([pa.field(c.name, _arrow_type(c)) for c in table.columns])
