"""SQL for analysts: a read-only connection, schema rules per role, personal columns masked, every read logged."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from warehouse import db
from warehouse.access import COMMUNITY_STAFF, DATA_ENGINEER, AccessDenied, Principal, log_access
from warehouse.masking import mask_id, mask_phone

# Analysts read the marts (pseudonymised person keys) and reference data; the layers below hold
# raw personal records and are for data engineers.
ANALYST_SCHEMAS = frozenset({"mart", "ref"})
ID_COLUMN = re.compile(r"(^|_)(id_number|id_std|id_raw|caller_id_number)(_|$)")
PHONE_COLUMN = re.compile(r"(^|_)phone(_|$)")


class QueryError(Exception):
    """A query that could not run: the message carries DuckDB's reason."""


def readonly_connection(path: Path) -> duckdb.DuckDBPyConnection:
    """The warehouse opened read-only, with no access to files or the network beyond it."""
    if not Path(path).exists():
        raise QueryError(f"no warehouse at {path}; build one with `onenet sync all`, `onenet validate all` "
                         f"and `onenet merge` (or set ONENET_WAREHOUSE)")
    try:
        con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": False})
    except duckdb.IOException as exc:
        raise QueryError(f"cannot open the warehouse {path} read-only ({exc})") from exc
    con.execute("set timezone = 'Asia/Shanghai'")
    return con


def check_tables(con: duckdb.DuckDBPyConnection, sql: str, who: Principal) -> set[str]:
    """The tables `sql` reads, after checking the principal's role may read them."""
    if who.role == COMMUNITY_STAFF:
        raise AccessDenied(f"user {who.user!r} is community staff: SQL access is for analysts and "
                           f"engineers; use `onenet extract --community {who.community}`")
    try:
        tables = con.get_table_names(sql, qualified=True)
    except duckdb.Error as exc:
        raise QueryError(f"the query does not parse: {exc}") from exc
    if who.role != DATA_ENGINEER:
        outside = sorted(t for t in tables if t.split(".")[0] not in ANALYST_SCHEMAS)
        if outside:
            raise AccessDenied(f"role {who.role} reads the schemas {', '.join(sorted(ANALYST_SCHEMAS))} "
                               f"only; {', '.join(outside)} hold personal records (ask a data engineer)")
    return tables


def mask_table(table: pa.Table, who: Principal) -> tuple[pa.Table, bool]:
    """Mask ID and phone columns the principal may not see in full; say whether any full value left."""
    full = False
    for i, name in enumerate(table.column_names):
        column = table.column(i)
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            continue
        if ID_COLUMN.search(name):
            masker, allowed = mask_id, who.sees_full_ids
        elif PHONE_COLUMN.search(name):
            masker, allowed = mask_phone, who.sees_full_phones
        else:
            continue
        if allowed:
            full = full or pc.count(column).as_py() > 0
            continue
        # Distinct values only: a column of a million rows has far fewer distinct numbers.
        distinct = pc.unique(column)
        masked = pa.array([masker(v) for v in distinct.to_pylist()], pa.string())
        table = table.set_column(i, name, pc.take(masked, pc.index_in(column, distinct)))
    return table, full


def run_query(path: Path, sql: str, who: Principal) -> pa.Table:
    """Run `sql` read-only as `who`; the result is masked for the role and the read is logged."""
    con = readonly_connection(path)
    try:
        check_tables(con, sql, who)
        try:
            table = con.execute(sql).to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from exc
    finally:
        con.close()
    table, full = mask_table(table, who)
    log = db.connect(path)  # the log is written before anything is handed out
    try:
        log_access(log, who, "query", sql.strip()[:2000], table.num_rows, full_values=full)
    finally:
        log.close()
    return table


def write_result(table: pa.Table, out: Path) -> None:
    """Write a result as CSV (UTF-8 with BOM, so Excel shows Chinese) or Parquet, by the file suffix."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        pq.write_table(table, out)
    elif out.suffix == ".csv":
        with out.open("wb") as fh:
            fh.write("\ufeff".encode())
            pacsv.write_csv(table, fh)
    else:
        raise QueryError(f"cannot write {out.name}: use a .csv or .parquet file name")
