"""The daily community extract: one workbook per community and day, from its published snapshot.

It reads the community audience's relations (warehouse/publish/community: the community's rows
only, phones in full, IDs masked), never the warehouse, so a workbook cannot hold what its
community may not see. Set-based: each sheet's query runs once for all the communities written
(one or all 186, their snapshots opened as one connection), and its rows are split by community.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb

from warehouse import audit_log
from warehouse.access import Principal
from warehouse.excel import Column, Sheet, write_workbook
from warehouse.outputs import private_umask, safe_name
from warehouse.publish import community_folder

SOURCE_NAMES = {"hotline": "12345热线", "city_cases": "数字城管", "grid_registry": "网格管理系统",
                "health_codes": "健康码平台"}


class ExtractError(RuntimeError):
    """An extract that cannot be written; the message names the community and the fix."""


@dataclass(frozen=True)
class ExtractResult:
    community: str
    day: dt.date
    path: Path
    rows: dict[str, int]

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v:,}" for k, v in self.rows.items())
        return f"{self.community} {self.day}: {self.path} ({parts})"


def _sql(name: str) -> str:
    return resources.files("warehouse.extracts").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


# One query per sheet for every community written at once: the big tables are scanned once a day,
# not once per community. Each query's first column is the community, its rows in sheet order.
SHEET_QUERIES = ("tickets", "cases", "code_changes", "roster", "data_issues")


@dataclass(frozen=True)
class ExtractData:
    """The rows of every community's extract for one day, fetched set-based; unmasked."""

    day: dt.date
    sheets: dict[str, dict[str, list[tuple]]]  # query name -> community code -> rows without the community
    counts: dict[str, tuple[int, int, int]]  # community -> (residents, special group, tickets still open)
    freshness: list[tuple]


def _by_community(con: duckdb.DuckDBPyConnection, name: str, names: list[str],
                  day: dt.date) -> dict[str, list[tuple]]:
    """Run one query for all `names` (community codes) and split its rows by the leading community column."""
    split: dict[str, list[tuple]] = {community: [] for community in names}
    for row in con.execute(_sql(name), {"communities": names, "day": day}).fetchall():
        split[row[0]].append(row[1:])
    return split


def fetch(con: duckdb.DuckDBPyConnection, names: list[str], day: dt.date) -> ExtractData:
    """Everything the extracts of `names` on `day` show: each sheet's query and the counts run once."""
    counts = {community: rows[0] for community, rows in _by_community(con, "counts", names, day).items()}
    return ExtractData(day=day, sheets={q: _by_community(con, q, names, day) for q in SHEET_QUERIES},
                       counts=counts, freshness=con.execute(_sql("freshness"), {"day": day}).fetchall())


def build_sheets(data: ExtractData, code: str, community: str) -> list[Sheet]:
    """The sheets of one community's extract (`code`, shown as `community`), as its snapshot holds them."""
    day = data.day
    rows = {q: data.sheets[q][code] for q in SHEET_QUERIES}
    tickets, cases, changes = rows["tickets"], rows["cases"], rows["code_changes"]
    roster, issues = rows["roster"], rows["data_issues"]
    residents, special, still_open = data.counts[code]
    new_tickets = sum(1 for t in tickets if t[1] == "新增")
    overdue = sum(1 for t in tickets if t[-1])
    overview = [
        ("社区", community, ""), ("日期", day, "北京时间自然日"),
        ("常住人口（去重后）", residents, "网格、健康码、热线、城管四个系统合并为一人一档"),
        ("重点人群", special, "独居老人、残疾人、困境儿童等"),
        ("今日新增热线工单", new_tickets, "见“热线工单”"),
        ("未办结热线工单", still_open, "截至当日24时未办结，含今日新增"),
        ("超期或响应超时工单", overdue, ""),
        ("未结城管案件", len(cases), "见“城管案件”"),
        ("今日转黄码/红码人员", len(changes), "见“健康码变化”"),
        ("数据待核", len(issues), "见“数据待核”，下次走访时核实"),
    ]
    for source, synced_at, until, stale, failed, message in data.freshness:
        state = "数据滞后" if stale else "正常"
        note = f"最新数据截至 {until or '无'}"
        if failed:
            state, note = "同步失败", f"{note}；最近一次同步失败：{message or ''}"[:300]
        overview.append((f"数据来源：{SOURCE_NAMES.get(source, source)}", state,
                         f"{note}；最近同步 {synced_at:%Y-%m-%d %H:%M}" if synced_at else note))
    return [
        Sheet("今日概况", [Column("项目"), Column("数值"), Column("说明")], overview,
              title_lines=(f"{community} 社区日报 {day:%Y年%m月%d日}", "本表由 onenet 自动生成，同一人只出现一次")),
        Sheet("热线工单", [Column("工单号"), Column("类型"), Column("受理时间", "datetime"), Column("类别"),
                       Column("紧急程度"), Column("诉求内容", width=50), Column("地址", width=36),
                       Column("来电人"), Column("联系电话"), Column("承办单位"), Column("状态"),
                       Column("响应时限", "datetime"), Column("办结时限", "datetime"), Column("超期")], tickets),
        Sheet("城管案件", [Column("案件号"), Column("上报时间", "datetime"), Column("大类"), Column("小类"),
                       Column("描述", width=40), Column("地址", width=36), Column("上报人类型"),
                       Column("热线转办工单号"), Column("状态"), Column("处置时限", "datetime"),
                       Column("超期")], cases),
        Sheet("健康码变化", [Column("姓名"), Column("身份证号"), Column("联系电话"), Column("现码色"),
                        Column("原码色"), Column("变码时间", "datetime"), Column("网格"),
                        Column("住址", width=36)], changes),
        Sheet("重点人群", [Column("姓名"), Column("类别"), Column("身份证号"), Column("联系电话"),
                       Column("最近联系来源"), Column("最近联系时间", "datetime"), Column("网格"),
                       Column("住址", width=36), Column("健康码")], roster),
        Sheet("数据待核", [Column("来源系统"), Column("记录号"), Column("字段"), Column("系统中的值"),
                       Column("合并后的值"), Column("问题", width=40)], issues),
    ]


def write_extracts(con: duckdb.DuckDBPyConnection, communities: list[tuple[str, str]], day: dt.date,
                   who: Principal, out_dir: Path) -> list[ExtractResult]:
    """Write the workbook of each (code, name) in `communities` from `con`, the community snapshots
    opened together (warehouse.publish.snapshot.open_communities); each query runs once for all."""
    if not communities:
        return []
    data = fetch(con, [code for code, _ in communities], day)
    with private_umask():
        return [_write_one(data, code, name, who, out_dir) for code, name in communities]


def extract_path(out_dir: Path, code: str, community: str, day: dt.date) -> Path:
    """`<exports>/community/<folder>/extracts/<day>/<community>_<day>.xlsx`: one folder per community,
    whoever wrote it (the workbook is the same: it comes from the community's own snapshot)."""
    name = f"{safe_name(community)}_{day:%Y%m%d}.xlsx"
    return out_dir / "community" / community_folder(code) / "extracts" / f"{day:%Y%m%d}" / name


def _write_one(data: ExtractData, code: str, community: str, who: Principal, out_dir: Path) -> ExtractResult:
    """Write one community's workbook from the fetched rows and log the read."""
    path = extract_path(out_dir, code, community, data.day)
    rows = write_workbook(path, build_sheets(data, code, community), title=f"{community} 社区日报 {data.day}")
    # Full phones leave in every workbook (staff call their residents); IDs are masked.
    audit_log.append("extract", f"{community} ({code}) {data.day}", principal=who, output=path,
                     rows=sum(v for k, v in rows.items() if k != "今日概况"), full_values=True)
    return ExtractResult(community, data.day, path, rows)
