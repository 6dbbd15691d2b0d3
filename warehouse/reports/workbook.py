"""A filled template as the department's form: one workbook per template and period."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb

from warehouse import audit_log
from warehouse.access import COMMUNITY_STAFF, AccessDenied, Principal
from warehouse.excel import Column, Sheet, write_workbook
from warehouse.outputs import private_umask, safe_name
from warehouse.reports.templates_engine import Template, fill, period_bounds


@dataclass(frozen=True)
class ReportResult:
    template: str
    period: str
    path: Path
    rows: int

    def summary(self) -> str:
        return f"{self.template} {self.period}: {self.rows:,} rows → {self.path}"


def write_report(con: duckdb.DuckDBPyConnection, template: Template, on: dt.date, who: Principal,
                 out_dir: Path, *, only: str | None = None) -> ReportResult:
    """Fill `template` from `con` (the audience's snapshot) for the period containing `on` and write it
    into `out_dir`; `only` keeps one unit (community staff: their own community)."""
    if who.role == COMMUNITY_STAFF and template.unit != "community":
        raise AccessDenied(f"{template.name} has one row per {template.unit}: it covers other communities, "
                           f"which are not theirs to read")
    rows = fill(con, template, on, only)
    first, last = period_bounds(template, on)
    period = f"{first:%Y-%m-%d}" if first == last else f"{first:%Y-%m}"
    period_text = f"{first:%Y年%m月%d日}" if first == last else f"{first:%Y年%m月}"
    notes = [template.title, f"填报单位：{template.department}　统计期：{period_text}"
             f"（{first:%Y-%m-%d} 至 {last:%Y-%m-%d}）", "由 onenet 按模板自动填报，数据来自合并后发布的数据快照"]
    definitions = Sheet("指标说明", [Column("指标"), Column("口径", width=60), Column("计算公式", width=60)],
                        [(c.header, c.description, c.sql) for c in template.columns])
    sheet = Sheet(template.title[:31], template.excel_columns(), rows, title_lines=notes)
    suffix = f"_{safe_name(only)}" if only else ""
    path = out_dir / f"{safe_name(template.name)}_{period}{suffix}.xlsx"
    with private_umask():
        write_workbook(path, [sheet, definitions], title=template.title)
    audit_log.append("report", f"{template.name} {period}", principal=who, output=path, rows=len(rows))
    return ReportResult(template.name, period, path, len(rows))
