"""The daily community extract: one workbook per community and day, its own rows only, masked for the role.

Set-based: each sheet's query runs once for all the communities written (one or all 186), and its
rows are split by community; a single community is the same path with a list of one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb

from warehouse.access import Principal, log_access
from warehouse.excel import Column, Sheet, write_workbook

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
    sheets: dict[str, dict[str, list[tuple]]]  # query name -> community -> rows without the community
    counts: dict[str, tuple[int, int, int]]  # community -> (residents, special group, tickets still open)
    freshness: list[tuple]


def _by_community(con: duckdb.DuckDBPyConnection, name: str, names: list[str],
                  day: dt.date) -> dict[str, list[tuple]]:
    """Run one query for all `names` and split its rows by the leading community column, keeping their order."""
    split: dict[str, list[tuple]] = {community: [] for community in names}
    for row in con.execute(_sql(name), {"communities": names, "day": day}).fetchall():
        split[row[0]].append(row[1:])
    return split


def fetch(con: duckdb.DuckDBPyConnection, names: list[str], day: dt.date) -> ExtractData:
    """Everything the extracts of `names` on `day` show: each sheet's query and the counts run once."""
    counts = {community: rows[0] for community, rows in _by_community(con, "counts", names, day).items()}
    return ExtractData(day=day, sheets={q: _by_community(con, q, names, day) for q in SHEET_QUERIES},
                       counts=counts, freshness=con.execute(_sql("freshness"), {"day": day}).fetchall())


def communities(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every community of the grid hierarchy, in code order."""
    return [r[0] for r in con.execute(
        "select community_name from core.grid where grid_level = 'community' order by grid_code").fetchall()]


def build_sheets(data: ExtractData, community: str, who: Principal) -> list[Sheet]:
    """The sheets of one community's extract; personal columns as the principal may see them."""
    day = data.day
    rows = {q: data.sheets[q][community] for q in SHEET_QUERIES}
    tickets = [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], who.phone(r[8]), *r[9:]) for r in rows["tickets"]]
    cases = rows["cases"]
    changes = [(r[0], who.id_number(r[1]), who.phone(r[2]), *r[3:]) for r in rows["code_changes"]]
    roster = [(r[0], r[1], who.id_number(r[2]), who.phone(r[3]), *r[4:]) for r in rows["roster"]]
    issues = rows["data_issues"]  # values are masked in the mart itself
    residents, special, still_open = data.counts[community]
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


def write_extracts(con: duckdb.DuckDBPyConnection, names: list[str], day: dt.date, who: Principal,
                   out_dir: Path) -> list[ExtractResult]:
    """Write the workbook of each community in `names` (see write_extract); each query runs once for all."""
    known = set(communities(con))
    for community in names:  # refuse before anything is read or written
        who.check_community(community)
        if community not in known:
            raise ExtractError(f"no community {community!r} in the grid hierarchy; "
                               f"run `onenet merge` first or check the name")
    if not names:
        return []
    data = fetch(con, names, day)
    return [_write_one(con, data, community, who, out_dir) for community in names]


def write_extract(con: duckdb.DuckDBPyConnection, community: str, day: dt.date, who: Principal,
                  out_dir: Path) -> ExtractResult:
    """Write `<out_dir>/<role>/<day>/<community>_<day>.xlsx` and log the read in meta.access_log."""
    return write_extracts(con, [community], day, who, out_dir)[0]


def _write_one(con: duckdb.DuckDBPyConnection, data: ExtractData, community: str, who: Principal,
               out_dir: Path) -> ExtractResult:
    """Write one community's workbook from the fetched rows and log the read."""
    day = data.day
    # One folder per role: the same community reads differently masked for another role.
    path = out_dir / who.role / f"{day:%Y%m%d}" / f"{community}_{day:%Y%m%d}.xlsx"
    rows = write_workbook(path, build_sheets(data, community, who), title=f"{community} 社区日报 {day}")
    log_access(con, who, "extract", str(path), sum(v for k, v in rows.items() if k != "今日概况"))
    return ExtractResult(community, day, path, rows)
