"""The closing summary of a pipeline run, read from the warehouse: what a person wants to know at the end."""

from __future__ import annotations

from pathlib import Path

import duckdb

from onenet import settings
from warehouse import audit_log


def pipeline_summary(warehouse: Path, gx_dir: Path | None = None, exports: Path | None = None) -> list[str]:
    """Rows per source, quarantined, golden persons vs records per silo, incidents, warnings, and where things are."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        lines = ["rows per source (landed in raw / quarantined at load or validation):"]
        for source, landed, quarantined in con.execute("""
                select l.source, sum(l.rows_landed), coalesce(max(q.n), 0)
                from meta.loads l
                left join (select source, count(*) n from meta.quarantine group by source) q using (source)
                where l.status = 'succeeded' group by l.source order by l.source""").fetchall():
            lines.append(f"  {source:<14} {landed:>10,} landed  {quarantined:>6,} quarantined")
        persons = con.execute("select count(*) from core.person").fetchone()
        lines.append(f"one person, one record: {persons[0] if persons else 0:,} golden persons from")
        for source, records, people in con.execute(
                "select source, count(*), count(distinct person_id) from core.person_source "
                "group by source order by source").fetchall():
            lines.append(f"  {source:<27} {records:>10,} records → {people:,} persons")
        incidents = con.execute("""select count(*), sum(ticket_count), sum(case_count),
                                   count(*) filter (where ticket_count + case_count > 1)
                                   from core.incident""").fetchone()
        if incidents:
            lines.append(f"incidents: {incidents[0]:,} from {incidents[1] or 0:,} hotline tickets and "
                         f"{incidents[2] or 0:,} city cases ({incidents[3]:,} joined more than one report)")
        warnings = con.execute("select count(*), count(*) filter (where is_current) from mart.warnings").fetchone()
        if warnings:
            lines.append(f"warnings: {warnings[0]:,} over the period, {warnings[1]:,} on the last day")
    finally:
        con.close()
    exports = exports or settings.exports_dir()
    docs = (gx_dir or settings.gx_dir()) / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    lines += ["where things are:",
              f"  warehouse   {warehouse}",
              f"  Data Docs   {docs.as_uri() if docs.exists() else '(not built)'}",
              f"  published   {settings.published_dir()}  (try `onenet query --role district_analyst "
              f"\"select * from mart.hotline_rates\"`)",
              f"  extracts    {exports / 'community'}  (one folder per community)",
              f"  reports     {exports / 'analyst' / 'reports'}",
              f"  dashboard   {(exports / 'analyst' / 'dashboard' / 'index.html').as_uri()}",
              f"  access log  {audit_log.log_path()}  (`onenet audit verify`)"]
    return lines
