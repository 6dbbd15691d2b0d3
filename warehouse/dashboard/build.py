"""Build the analyst dashboard from the analysts' published snapshot: one self-contained HTML file,
aggregates only. It reads `mart.*` of the snapshot (warehouse/publish/analyst), never the warehouse.

Its first section filters by street, community and month offline: the aggregates per community and
day are embedded in the page as JSON and drawn by an inline script (filter.js), nothing fetched."""

from __future__ import annotations

import datetime as dt
import json
from html import escape
from pathlib import Path

import duckdb

from warehouse.dashboard.charts import bar_chart, heat_table, line_chart
from warehouse.outputs import replacing

SOURCE_NAMES = {"grid_registry.residents": "网格登记（居民）", "grid_registry.grid_workers": "网格登记（网格员）",
                "health_codes.exports": "健康码", "hotline.tickets": "12345热线", "city_cases.cases": "数字城管"}
CSS = """
body{font-family:"Noto Sans CJK SC","Microsoft YaHei","PingFang SC",sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-left:4px solid #2f6db5;padding-left:8px}
.note{color:#666;font-size:13px} .grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
.card{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:12px}
.chart{width:100%;height:auto} .tick{font-size:11px;fill:#555}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #e3e3e3;padding:4px 8px;text-align:right}
th{background:#f0f4fa} td:first-child,th:first-child{text-align:left}
.kpi{display:flex;gap:16px;flex-wrap:wrap} .kpi div{background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px 16px}
.kpi b{display:block;font-size:24px;color:#2f6db5}
.filters{display:flex;gap:16px;margin:8px 0 12px} .filters select{font-size:14px;padding:2px 6px}
.scroll{max-height:300px;overflow:auto}
"""
FILTER_JS = Path(__file__).with_name("filter.js")


SCOPES = {"grid": "网格", "category": "类别", "community": "社区", "street": "街道"}
SIGNALS = {"tickets": "工单", "yellow_red_codes": "转黄红码"}


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> list[tuple]:
    return con.execute(sql, params or []).fetchall()


def build_dashboard(con: duckdb.DuckDBPyConnection, out: Path) -> Path:
    """Write the dashboard to `out` (an .html file) and return its path."""
    as_of = _rows(con, "select max(day_on) from mart.grid_daily")[0][0] or dt.date.today()
    sections = [_kpis(con), _filter(con), _rates(con), _volume(con), _issue_of_month(con), _heat(con, as_of),
                _dedup(con), _quality(con)]
    html = (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>onenet 区级数据看板</title>'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head><body>'
            f'<h1>onenet 区级数据看板</h1><p class="note">数据截至 {as_of:%Y-%m-%d}（北京时间）；'
            f'仅含汇总数字，不含个人信息。</p>' + "".join(sections) + "</body></html>")
    with replacing(out) as f:
        f.write(html.encode("utf-8"))
    return out


def _section(title: str, body: str, note: str = "") -> str:
    note_html = f'<p class="note">{escape(note)}</p>' if note else ""
    return f'<section><h2>{escape(title)}</h2>{note_html}{body}</section>'


def _kpis(con: duckdb.DuckDBPyConnection) -> str:
    persons, records = _rows(con, "select persons, records from mart.resolution_summary where source is null")[0]
    tickets, incidents = _rows(con, "select (select count(*) from mart.ticket), (select count(*) from mart.incident)")[0]
    # The same warnings as the table under 工单量与预警: those of the latest day with any.
    day, warnings = _rows(con, "select max(day_on), count(*) filter (where day_on = (select max(day_on) "
                               "from mart.warnings)) from mart.warnings")[0]
    label = f"最近预警日 {day:%m-%d} 的预警" if day else "预警"
    items = [("一人一档（合并后人数）", persons), ("四个系统的人员记录", records), ("热线工单", tickets),
             ("事件（工单与案件合并后）", incidents), (label, warnings)]
    return '<div class="kpi">' + "".join(f"<div>{escape(k)}<b>{v:,}</b></div>" for k, v in items) + "</div>"


def _filter(con: duckdb.DuckDBPyConnection) -> str:
    """The section filtered in the page: its data (per community and day, warnings per scope) and script."""
    days = _rows(con, """
        select street_name, community_code, community_name, strftime(day_on, '%Y-%m-%d'),
               strftime(day_on, '%Y-%m'), sum(residents)::bigint, sum(special_group_residents)::bigint,
               sum(new_tickets)::bigint, sum(open_cases)::bigint, sum(yellow_codes)::bigint,
               sum(red_codes)::bigint, sum(data_issues)::bigint
        from mart.grid_daily where community_code is not null
        group by all order by 2, 4""")
    names = ["street", "community_code", "community_name", "day", "month", "residents", "special", "new_tickets",
             "open_cases", "yellow", "red", "data_issues"]
    communities = sorted({(r[1], r[2], r[0]) for r in days})
    # grid and community warnings belong to the community their key starts with; category warnings
    # are district-wide (shown when no street or community is chosen)
    streets = {code: street for code, _, street in communities}
    warnings = [[d, t, n, sig, key[:12] if t in ("grid", "community") else None,
                 streets.get(key[:12]) if t in ("grid", "community") else None, c]
                for d, t, n, sig, key, c in _rows(con, """
                    select strftime(day_on, '%Y-%m-%d'), scope_type, scope_name, signal, scope_key, recent_count
                    from mart.warnings order by day_on, scope_type, scope_name""")]
    data = {"columns": {n: i for i, n in enumerate(names)}, "days": [list(r) for r in days],
            "streets": sorted({r[0] for r in days if r[0]}), "communities": [list(c) for c in communities],
            "months": sorted({r[4] for r in days}), "warnings": warnings, "scopes": SCOPES, "signals": SIGNALS}
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    body = ('<div class="filters"><label>街道 <select id="f-street"></select></label>'
            '<label>社区 <select id="f-community"></select></label>'
            '<label>月份 <select id="f-month"></select></label></div><div class="kpi" id="f-tiles"></div>'
            '<div class="grid"><div class="card" id="f-chart"></div><div class="card"><table id="f-table"></table>'
            '<br><div class="scroll"><table id="f-warnings"></table></div></div></div>'
            f'<script type="application/json" id="f-data">{payload}</script>'
            f'<script>{FILTER_JS.read_text(encoding="utf-8")}</script>')
    return _section("按街道、社区、月份查看", body,
                    "在此选择街道、社区和月份（离线可用）；居民、未结案件和码色为所选月份最后一天的数，工单和待核数据为全月合计；"
                    "预警表即“本月预警”所数的各条。下方各节为全区汇总。")


def _rates(con: duckdb.DuckDBPyConnection) -> str:
    rows = _rows(con, "select street, received_month, response_rate, resolution_rate, satisfaction_rate "
                      "from mart.hotline_rates where level = 'street' order by received_month, street")
    cats = [f"{r[0]} {r[1]}" for r in rows]
    chart = bar_chart("三率：按街道和月份", cats, {"响应率": [r[2] for r in rows], "解决率": [r[3] for r in rows],
                                             "满意率": [r[4] for r in rows]}, fmt=".0%", ymax=1.0)
    return _section("热线三率（按街道、月份）", f'<div class="card">{chart}</div>',
                    "响应率＝按时首次联系÷全部工单；解决率＝已解决÷全部工单；满意率＝满意与基本满意÷已评价工单")


def _volume(con: duckdb.DuckDBPyConnection) -> str:
    rows = _rows(con, "select day_on, sum(new_tickets) from mart.grid_daily group by day_on order by day_on")
    days = [r[0] for r in rows]
    # District-wide signals only: a category rising everywhere, not one building's bad week.
    warned = {r[0] for r in _rows(con, "select distinct day_on from mart.warnings "
                                       "where signal = 'tickets' and scope_type = 'category'")}
    marks = [i for i, d in enumerate(days) if d in warned]
    chart = line_chart("每日新增工单", [f"{d:%m-%d}" for d in days], {"新增工单": [float(r[1]) for r in rows]},
                       marks=marks)
    # every warning of the latest day with any: what the 预警 tile counts
    warn_rows = _rows(con, "select day_on, scope_type, scope_name, signal, recent_count, threshold from mart.warnings "
                           "where day_on = (select max(day_on) from mart.warnings) order by scope_type, scope_name")
    table = "".join(f"<tr><td>{d:%m-%d}</td><td>{SCOPES.get(t, escape(str(t)))}</td><td>{escape(str(n))}</td>"
                    f"<td>{SIGNALS.get(s, escape(str(s)))}"
                    f"</td><td>{c:,}</td><td>{th:.1f}</td></tr>" for d, t, n, s, c, th in warn_rows)
    return _section("工单量与预警", f'<div class="grid"><div class="card">{chart}</div><div class="card">'
                    f'<table><tr><th>日期</th><th>范围</th><th>名称</th><th>指标</th><th>近3日件数</th><th>日均阈值</th></tr>'
                    f'{table}</table></div></div>', "红点：当日某一类别的工单显著高于其近14日基线（近3日日均 > 基线均值 + 2 倍标准差，且近3日至少3件）")


def _issue_of_month(con: duckdb.DuckDBPyConnection) -> str:
    top = _rows(con, "select received_month, category, orders, order_share from mart.issue_of_month "
                     "where scope = 'district' order by received_month desc limit 1")
    month = top[0][0] if top else None
    cats = _rows(con, "select category, sum(orders) from mart.hotline_rates where level = 'category' "
                      "and received_month = ? group by category order by 2 desc, 1", [month])
    chart = bar_chart(f"{month} 各类别工单", [c[0] for c in cats], {"工单": [float(c[1]) for c in cats]})
    head = (f"<p><b>{escape(top[0][1])}</b>：{top[0][2]:,} 件，占 {top[0][3]:.0%}</p>" if top else "<p>暂无工单</p>")
    return _section("每月一题", f'<div class="card">{head}{chart}</div>')


def _heat(con: duckdb.DuckDBPyConnection, as_of: dt.date) -> str:
    rows = _rows(con, """
        select community_name,
               sum(residents) filter (where day_on = $as_of),
               sum(special_group_residents) filter (where day_on = $as_of),
               sum(new_tickets),
               sum(open_cases) filter (where day_on = $as_of),
               sum(yellow_codes) filter (where day_on = $as_of),
               sum(red_codes) filter (where day_on = $as_of),
               sum(data_issues)
        from mart.grid_daily where day_on > $as_of - 7
        group by community_name order by community_name""", {"as_of": as_of})
    cols = ["居民", "重点人群", "近7日工单", "未结案件", "黄码", "红码", "近7日待核数据"]
    values = [[float(v) if v is not None else None for v in r[1:]] for r in rows]
    # residents and special groups are population, not risk: not shaded as if more were worse
    table = heat_table("块数据", [str(r[0]) for r in rows], cols, values,
                       worse=[False, False, True, True, True, True, True])
    return _section("块数据（按社区）", f'<div class="card">{table}</div>', f"{as_of:%Y-%m-%d} 的网格块数据汇总")


def _dedup(con: duckdb.DuckDBPyConnection) -> str:
    rows = _rows(con, "select source, records, persons from mart.resolution_summary "
                      "where source is not null order by source")
    chart = bar_chart("记录数与合并后人数", [SOURCE_NAMES.get(r[0], r[0]) for r in rows],
                      {"记录": [float(r[1]) for r in rows], "合并后人数": [float(r[2]) for r in rows]})
    return _section("去重效果：各系统记录 vs 一人一档", f'<div class="card">{chart}</div>')


def _quality(con: duckdb.DuckDBPyConnection) -> str:
    days = _rows(con, "select day_on, sum(data_issues) from mart.grid_daily group by 1 order by 1")
    chart = line_chart("每日发现的待核数据", [f"{d:%m-%d}" for d, _ in days], {"待核": [float(n) for _, n in days]})
    rows = _rows(con, "select source, records, invalid_ids, missing_phones, disagreeing_records, disagreement_rate "
                      "from mart.source_quality order by source")
    table = "".join(f"<tr><td>{escape(SOURCE_NAMES.get(s, s))}</td><td>{r:,}</td><td>{i:,}</td><td>{m:,}</td>"
                    f"<td>{d:,}</td><td>{(rate or 0):.1%}</td></tr>" for s, r, i, m, d, rate in rows)
    runs = _rows(con, "select source, sum(rows_in), sum(rows_quarantined) from mart.validation_summary "
                      "group by 1 order by 1")
    quarantine = "".join(f"<tr><td>{escape(s)}</td><td>{n:,}</td><td>{q:,}</td></tr>" for s, n, q in runs)
    return _section("数据质量", f'<div class="grid"><div class="card">{chart}</div><div class="card"><table>'
                    f'<tr><th>系统</th><th>记录</th><th>身份证无效</th><th>缺电话</th><th>与档案不一致</th>'
                    f'<th>不一致率</th></tr>{table}</table><br><table><tr><th>来源</th><th>校验行数</th>'
                    f'<th>隔离行数</th></tr>{quarantine}</table></div></div>')
