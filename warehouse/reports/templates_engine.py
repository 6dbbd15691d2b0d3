"""Load a report template (TOML) and fill it with one set-based query: one row per community or street.

A template names the form (title, department), the unit a row stands for (community or street),
the period it covers (day or month), the published relation it reads with that relation's date
column, and each column as a SQL expression over that relation. See templates/*.toml.

Templates are code, not input: they load only from the shipped folder and from the folder an
administrator configures ($ONENET_TEMPLATES_DIR), and their SQL runs on the reader's audience
snapshot, where the warehouse's restricted schemas (core, meta, raw, staging) do not exist.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import duckdb

from warehouse.excel import Column

TEMPLATES = Path(__file__).parent / "templates"
UNITS = {"community": "select distinct community_name as unit, street_name as parent from mart.grid "
                      "where grid_level = 'community'",
         "street": "select distinct street_name as unit, district_name as parent from mart.grid "
                   "where grid_level = 'street'"}
PERIODS = ("day", "month")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")


class TemplateError(ValueError):
    """A template that cannot be used; the message names the file and the field to fix."""


@dataclass(frozen=True)
class TemplateColumn:
    header: str
    sql: str
    kind: str = "int"
    description: str = ""


@dataclass(frozen=True)
class Template:
    """A declared form: what a row is, which period, where its figures come from."""

    name: str
    title: str
    department: str
    unit: str
    period: str
    source: str
    date_column: str
    unit_column: str
    columns: tuple[TemplateColumn, ...]
    where: str = "true"
    total_row: bool = True
    path: Path | None = None

    def excel_columns(self) -> list[Column]:
        unit_header = "社区" if self.unit == "community" else "街道"
        parent_header = "所属街道" if self.unit == "community" else "所属区"
        return [Column(unit_header), Column(parent_header)] + [Column(c.header, c.kind) for c in self.columns]


def template_dirs() -> list[Path]:
    """Where templates may come from: the shipped folder, then the deployment file's `templates` (else
    $ONENET_TEMPLATES_DIR): administrators'."""
    from onenet import deployment

    extra = deployment.setting("templates", os.environ.get("ONENET_TEMPLATES_DIR"))
    return [TEMPLATES, *([Path(extra).resolve()] if extra else [])]


def load_template(path_or_name: str | Path) -> Template:
    """Read a template by name (or file name) from the shipped or the administrators' folder."""
    folders = template_dirs()
    given = Path(path_or_name)
    if given.suffix or given.parent != Path("."):
        path = given.resolve()
        if path.parent not in folders:
            raise TemplateError(f"{given}: templates load only from {' or '.join(str(f) for f in folders)} "
                                f"(an administrator adds a form there, or sets ONENET_TEMPLATES_DIR)")
    else:
        path = next((f / f"{given}.toml" for f in folders if (f / f"{given}.toml").exists()), folders[0] / "x")
    if not path.exists():
        known = ", ".join(sorted({p.stem for f in folders for p in f.glob("*.toml")}))
        raise TemplateError(f"no template {path_or_name}: one of: {known}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(f"{path.name}: not valid TOML ({exc})") from exc
    rep = data.get("report", {})
    missing = [k for k in ("name", "title", "department", "unit", "period", "source", "date_column")
               if not rep.get(k)]
    if missing:
        raise TemplateError(f"{path.name}: [report] lacks {', '.join(missing)}")
    if rep["unit"] not in UNITS:
        raise TemplateError(f"{path.name}: unit {rep['unit']!r} must be one of {', '.join(UNITS)}")
    if rep["period"] not in PERIODS:
        raise TemplateError(f"{path.name}: period {rep['period']!r} must be one of {', '.join(PERIODS)}")
    rep.setdefault("unit_column", rep["unit"])
    for key in ("source", "date_column", "unit_column"):
        if not _IDENT.match(rep[key]):
            raise TemplateError(f"{path.name}: {key} {rep[key]!r} must be a plain (schema.)name")
    columns = []
    for i, col in enumerate(data.get("columns", []), start=1):
        if not col.get("header") or not col.get("sql"):
            raise TemplateError(f"{path.name}: column {i} needs a header and a sql expression")
        if ";" in col["sql"]:
            raise TemplateError(f"{path.name}: column {col['header']}: one expression, no ';'")
        columns.append(TemplateColumn(col["header"], col["sql"], col.get("kind", "int"), col.get("description", "")))
    if not columns:
        raise TemplateError(f"{path.name}: declare at least one [[columns]]")
    return Template(rep["name"], rep["title"], rep["department"], rep["unit"], rep["period"], rep["source"],
                    rep["date_column"], rep["unit_column"], tuple(columns), rep.get("where", "true"),
                    bool(rep.get("total_row", True)), path)


def period_bounds(template: Template, on: dt.date) -> tuple[dt.date, dt.date]:
    """[first, last] day the report for `on` covers: that day, or its calendar month."""
    if template.period == "day":
        return on, on
    first = on.replace(day=1)
    nxt = (first + dt.timedelta(days=32)).replace(day=1)
    return first, nxt - dt.timedelta(days=1)


def fill_sql(template: Template) -> str:
    """The one query that fills the form; parameters: first day, last day, unit filter (or NULL)."""
    exprs = ",\n        ".join(f"{c.sql} as c{i}" for i, c in enumerate(template.columns))
    outs = ", ".join(f"figures.c{i}" for i in range(len(template.columns)))
    zeros = ", ".join(
        f"coalesce(figures.c{i}, 0)" if c.kind in ("int", "float") else f"figures.c{i}"
        for i, c in enumerate(template.columns))
    return f"""
with units as (
    {UNITS[template.unit]}
),
rows_in_period as (
    select * from {template.source}
    where {template.date_column} between $first and $last and ({template.where})
),
figures as (
    select {template.unit_column} as unit,
        {exprs}
    from rows_in_period
    group by all
),
by_unit as (
    select units.unit, units.parent, {zeros}
    from units left join figures on figures.unit = units.unit
    where $only is null or units.unit = $only
),
total as (
    select '合计' as unit, null as parent, {outs.replace('figures.', '')}
    from (select {exprs} from rows_in_period
          where $only is null or {template.unit_column} = $only) figures
)
select * from (select 0 as part, * from by_unit {"union all select 1, * from total" if template.total_row else ""})
order by part, unit
"""


def fill(con: duckdb.DuckDBPyConnection, template: Template, on: dt.date,
         only: str | None = None) -> list[tuple]:
    """The filled rows (unit, parent, figures…) for the period containing `on`; `only` keeps one unit."""
    first, last = period_bounds(template, on)
    try:
        rows = con.execute(fill_sql(template), {"first": first, "last": last, "only": only}).fetchall()
    except duckdb.Error as exc:
        raise TemplateError(f"{template.path.name if template.path else template.name}: the snapshot "
                            f"cannot compute it ({str(exc).splitlines()[0]}); check source, date_column and "
                            f"each column's sql") from exc
    return [r[1:] for r in rows]
