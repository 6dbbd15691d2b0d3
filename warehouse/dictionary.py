"""The data dictionary of what analysts read: every `mart` relation of the analysts' snapshot (or of
the warehouse, for the check that no mart column goes undescribed)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import duckdb

DICTIONARY = Path(__file__).parent / "models" / "marts" / "_dictionary.toml"


def load() -> dict:
    """Table → {description, grain, columns: {column: meaning}} from the committed dictionary file."""
    return tomllib.loads(DICTIONARY.read_text(encoding="utf-8"))


def undocumented(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Mart tables and columns of the warehouse that the dictionary does not describe."""
    entries = load()
    missing = []
    for table, column in con.execute("select table_name, column_name from duckdb_columns() "
                                     "where schema_name = 'mart' order by table_name, column_index").fetchall():
        if column not in entries.get(table, {}).get("columns", {}):
            missing.append(f"mart.{table}.{column}")
    return missing


def render_markdown(con: duckdb.DuckDBPyConnection) -> str:
    """The dictionary as Markdown: one section per mart, columns with their types from the warehouse."""
    entries = load()
    lines = ["# onenet 数据字典（mart 层）", "",
             "分析人员可查询的表（发布的分析人员快照）。人员以化名键 person_key 出现；不含身份证号、电话、姓名、"
             "住址与出生日期；工单与案件的文字已隐去证件号、电话与车牌。", ""]
    # Tables or views: a snapshot's relations are views over its Parquet files.
    tables = [r[0] for r in con.execute("select table_name from information_schema.tables where table_schema = 'mart' "
                                        "order by table_name").fetchall()]
    for table in tables:
        entry = entries.get(table, {})
        rows = con.execute(f"select count(*) from mart.{table}").fetchone()
        lines += [f"## mart.{table}", "", entry.get("description", "（未描述）"), "",
                  f"- 粒度：{entry.get('grain', '（未描述）')}", f"- 行数：{rows[0] if rows else 0:,}", "",
                  "| 列 | 类型 | 说明 |", "|---|---|---|"]
        for column, dtype in con.execute("select column_name, data_type from duckdb_columns() where schema_name = "
                                         "'mart' and table_name = ? order by column_index", [table]).fetchall():
            lines.append(f"| {column} | {dtype} | {entry.get('columns', {}).get(column, '（未描述）')} |")
        lines.append("")
    return "\n".join(lines)
