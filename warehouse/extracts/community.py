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
from warehouse.publish.permissions import exports_folder

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
        ("数据待核", len(issues), "见“数据待核”，每行一处待更正，下次走访时核实"),
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
        # Printed one A4 page wide at a readable size: the ticket's kind, state and lateness share
        # one cell, as do its two deadlines (excel.fit_widths narrows the long text to fit).
        Sheet("热线工单", [Column("工单号"), Column("受理时间", "datetime"), Column("类别（紧急程度）", width=10),
                       Column("诉求内容", width=30), Column("地址", width=24), Column("来电人"),
                       Column("联系电话"), Column("承办单位", width=10), Column("时限"),
                       Column("状态", width=8)], [_ticket_row(t) for t in tickets],
              title_lines=_title(community, day, "热线工单")),
        Sheet("城管案件", [Column("案件号"), Column("上报时间", "datetime"), Column("类别", width=12),
                       Column("描述", width=30), Column("地址", width=24), Column("上报人类型", width=10),
                       Column("热线转办工单号"), Column("处置时限", "time"), Column("状态", width=8)],
              [_case_row(c) for c in cases], title_lines=_title(community, day, "城管案件")),
        Sheet("健康码变化", [Column("姓名"), Column("身份证号"), Column("联系电话"), Column("现码色"),
                        Column("原码色"), Column("变码时间", "datetime"), Column("网格", width=20),
                        Column("住址", width=30)], changes, title_lines=_title(community, day, "健康码变化")),
        Sheet("重点人群", [Column("姓名"), Column("类别", width=12), Column("身份证号"), Column("联系电话"),
                       Column("最近联系来源"), Column("最近联系时间", "datetime"), Column("网格", width=20),
                       Column("住址", width=30), Column("健康码")], roster,
              title_lines=_title(community, day, "重点人群")),
        # One row per fix, the ones touching the most residents first; the two values masked so
        # that only their difference shows (community.data_issue).
        Sheet("数据待核", [Column("问题", width=12), Column("涉及系统", width=12), Column("系统中的值"),
                       Column("对照值"), Column("说明", width=22), Column("走访时核实", width=20),
                       Column("涉及居民", "int"), Column("居民", width=12), Column("住址", width=20),
                       Column("记录号", width=16)], issues,
              title_lines=_title(community, day, "数据待核")),
    ]


def _title(community: str, day: dt.date, sheet: str) -> tuple[str]:
    """The line above a sheet's table, repeated on every printed page with the header."""
    return (f"{community} {sheet}（{day:%Y年%m月%d日}）",)


def _lines(*parts: object) -> str:
    """The non-empty parts, one per line of a wrapped cell."""
    return "\n".join(str(p) for p in parts if p)


def _at(value: dt.datetime | None) -> str:
    """An instant as a short Beijing time ('11-20 09:30') for a cell shared with other text."""
    if value is None:
        return "无"
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone(dt.timedelta(hours=8)))
    return f"{value:%m-%d %H:%M}"


def _ticket_row(t: tuple) -> tuple:
    """A 热线工单 row as printed, from tickets.sql's row (kind, state and lateness in one cell)."""
    (ticket_id, kind, received_at, category, content, address, caller, phone, department, status,
     respond_by, resolve_by, overdue) = t
    return (ticket_id, received_at, category, content, address, caller, phone, department,
            _lines(f"响应 {_at(respond_by)}", f"办结 {_at(resolve_by)}"), _lines(kind, status, overdue))


def _case_row(c: tuple) -> tuple:
    """A 城管案件 row as printed, from cases.sql's row (type and kind in one cell, state and lateness in one)."""
    (case_id, reported_at, category_type, category_name, description, address, reporter_type, ticket_id,
     status, deadline, overdue) = c
    return (case_id, reported_at, _lines(category_type, category_name), description, address, reporter_type,
            ticket_id, deadline, _lines(status, overdue))


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
    exports_folder(out_dir, "community", code)  # its community's group, where the host separates them
    path = extract_path(out_dir, code, community, data.day)
    rows = write_workbook(path, build_sheets(data, code, community), title=f"{community} 社区日报 {data.day}")
    # Full phones leave in every workbook (staff call their residents); IDs are masked.
    audit_log.append("extract", f"{community} ({code}) {data.day}", principal=who, output=path,
                     rows=sum(v for k, v in rows.items() if k != "今日概况"), full_values=True)
    return ExtractResult(community, data.day, path, rows)
