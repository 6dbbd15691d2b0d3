"""Read-only SQL for the people who ask: run it on a snapshot (or, for engineers, the warehouse) and write
the result as CSV or Parquet. What a role may see is settled by what it opens (warehouse/publish), not
by inspecting the SQL: a snapshot holds nothing its audience may not read."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pyarrow as pa

from warehouse.outputs import FORMULA_STARTS, private_umask, replacing


class QueryError(Exception):
    """A query that could not run: the message carries DuckDB's reason."""


def readonly_connection(path: Path) -> duckdb.DuckDBPyConnection:
    """The warehouse opened read-only, with no access to files or the network beyond it (engineers)."""
    if not Path(path).exists():
        raise QueryError(f"no warehouse at {path}; build one with `onenet sync all`, `onenet validate all` "
                         f"and `onenet merge` (or set ONENET_WAREHOUSE)")
    try:
        con = duckdb.connect(str(path), read_only=True, config={"enable_external_access": False})
    except duckdb.IOException as exc:
        raise QueryError(f"cannot open the warehouse {path} read-only while a pipeline step writes it "
                         f"({str(exc).splitlines()[0]}); engineers may query the analysts' snapshot meanwhile "
                         f"with --role district_analyst") from exc
    con.execute("set timezone = 'Asia/Shanghai'")
    return con


_READING = {"StatementType.SELECT", "StatementType.EXPLAIN"}
_EXPLAINED = re.compile(r"\bexplain\s+(?:analy[sz]e\s+)?(.*)", re.IGNORECASE | re.DOTALL)


def _reads_only(statement: duckdb.Statement) -> bool:
    """A query, or an EXPLAIN of one: EXPLAIN ANALYZE runs what it explains, so `explain analyze
    copy ... to` would write a file."""
    if str(statement.type) not in _READING:
        return False
    if str(statement.type) != "StatementType.EXPLAIN":
        return True
    inner = _EXPLAINED.search(statement.query)
    return inner is not None and all(str(s.type) == "StatementType.SELECT"
                                     for s in duckdb.extract_statements(inner.group(1)))


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, *, read_only: bool = False) -> pa.Table:
    """Run `sql` on `con` and return the result as an Arrow table.

    `read_only`: refuse any statement but a query (a snapshot's in-memory connection would accept a
    `create table` that changes nothing published, but a reader's SQL has no business writing)."""
    try:
        if read_only and not all(_reads_only(s) for s in duckdb.extract_statements(sql)):
            raise QueryError("the snapshot is read-only: only queries (select, with, describe, show, "
                             "summarize, explain) run on it")
        return con.execute(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(str(exc).splitlines()[0]) from exc


def neutralise_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Quote-prefix every value that a spreadsheet would read as a formula (set-based, in Arrow)."""
    import pyarrow.compute as pc

    pattern = "^[" + "".join("\\" + c if c in "-" else c for c in FORMULA_STARTS) + "]"
    risky = pc.fill_null(pc.match_substring_regex(column, pattern), False)
    return pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)


def write_result(table: pa.Table, out: Path) -> None:
    """Write a result as CSV (UTF-8 with BOM, so Excel shows Chinese; cells starting with = + - @, tab
    or CR quote-prefixed so they stay text) or Parquet, by the file suffix; the file is 0640."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if out.suffix not in (".parquet", ".csv"):
        raise QueryError(f"cannot write {out.name}: use a .csv or .parquet file name")
    # A new file gets 0640 even where an older, more open file of that name existed, a reader never
    # sees half a result, and nobody can plant a link at the temporary name (outputs.replacing).
    with private_umask(), replacing(out) as fh:
        if out.suffix == ".parquet":
            pq.write_table(table, fh)
        else:
            for i, col in enumerate(table.column_names):
                column = table.column(i)
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                    table = table.set_column(i, col, neutralise_column(column))
            fh.write("\ufeff".encode())
            pacsv.write_csv(table, fh)
