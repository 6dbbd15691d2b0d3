"""Benchmark: one expectation suite on a district-scale table, by GE in DuckDB, by GE on pandas, by hand in SQL.

    .venv/bin/python bench/validation_engines.py [--registry PATH/registry.sqlite | --synthetic ROWS] [--runs 3]
    .venv/bin/python bench/validation_engines.py --warehouse PATH.duckdb [--sources S ...] [--runs 1]

The table is the grid registry's residents (1.26M rows with the generator's noise), copied as
delivered (strings) into `raw.grid_registry_residents` of a fresh DuckDB file; without a
registry it is synthesised in DuckDB. Each route runs the same 11 expectations and must report
the same unexpected counts. The five routes run through bench/compare.py: `--runs` rounds (default
3), each route in a fresh process per round, the order rotating; each process runs its route once
untimed, then once timed; medians, ratio of medians and per-round range are reported. Targets (issue: validation engine):
GE-in-DuckDB within 2x of the hand-written query, and at least 10x faster than GE on pandas.

With --warehouse, the whole validation step instead: a copy of an already validated warehouse
(e.g. bench/e2e.py's initial-before-merge.duckdb) forgets the validation of --sources (runs,
validated loads, their staging rows and quarantine), and `onenet.pipeline.validate` runs again;
the results must equal the ones the warehouse held.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import great_expectations as gx
import great_expectations.expectations as gxe
import pyarrow as pa
import sqlalchemy as sa

if not __package__:  # run as a file (python bench/validation_engines.py): the repository must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import compare  # noqa: E402
from expectations.engine import gx_context, validate_table  # noqa: E402

TABLE = "raw.grid_registry_residents"
REGISTRIES = [Path("/tmp/hc_big/d/grid_registry/registry.sqlite"),
              Path("/tmp/bench13/grid_registry/registry.sqlite"),
              Path("/tmp/district13/grid_registry/registry.sqlite")]
RELATIONS = ["户主", "配偶", "子女", "父母", "其他"]
ID_NUMBER = r"^([0-9]{17}[0-9X]|[0-9]{15})$"
MOBILE = r"^(\+?86|0086)?1[3-9][0-9]{9}$"

# (name of the hand-written count, expectation): the suite, and what each route must agree on.
SUITE = [
    ("rows", gxe.ExpectTableRowCountToBeBetween(min_value=1)),
    ("resident_id_null", gxe.ExpectColumnValuesToNotBeNull(column="resident_id")),
    ("resident_id_duplicated", gxe.ExpectColumnValuesToBeUnique(column="resident_id")),
    ("resident_id_length", gxe.ExpectColumnValueLengthsToEqual(column="resident_id", value=8)),
    ("household_id_null", gxe.ExpectColumnValuesToNotBeNull(column="household_id")),
    ("sex_in_set", gxe.ExpectColumnValuesToBeInSet(column="sex", value_set=["男", "女"])),
    ("relation_in_set", gxe.ExpectColumnValuesToBeInSet(column="relation", value_set=RELATIONS)),
    ("id_number_regex", gxe.ExpectColumnValuesToMatchRegex(column="id_number", regex=ID_NUMBER)),
    ("phone_regex", gxe.ExpectColumnValuesToMatchRegex(column="phone", regex=MOBILE)),
    ("birth_year_between", gxe.ExpectColumnValuesToBeBetween(column="birth_year", min_value=1900, max_value=2026)),
    ("moved_in_before_birth", gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A="moved_in_on", column_B="birth_date", or_equal=True, ignore_row_if="either_value_is_missing")),
]

# The same counts by hand, as one would write them: one scan with a filtered count per
# expectation (nulls are not failures, as in GE), and a group-by for the duplicates.
HAND_WRITTEN = f"""
select count(*) as rows,
       count(*) filter (where resident_id is null) as resident_id_null,
       (select coalesce(sum(n), 0) from (select count(*) as n from {TABLE} where resident_id is not null
                                         group by resident_id having count(*) > 1)) as resident_id_duplicated,
       count(*) filter (where length(resident_id) <> 8) as resident_id_length,
       count(*) filter (where household_id is null) as household_id_null,
       count(*) filter (where sex not in ('男', '女')) as sex_in_set,
       count(*) filter (where relation not in ({", ".join(f"'{r}'" for r in RELATIONS)})) as relation_in_set,
       count(*) filter (where not regexp_matches(id_number, '{ID_NUMBER}')) as id_number_regex,
       count(*) filter (where not regexp_matches(phone, '{MOBILE}')) as phone_regex,
       count(*) filter (where not (birth_year between 1900 and 2026)) as birth_year_between,
       count(*) filter (where moved_in_on < birth_date) as moved_in_before_birth
from {TABLE}
"""


# And every failing row's id, by hand: one filtered select per rule, grouped into lists (a
# little faster here than one scan with ten filtered list aggregates).
_FAILS = [
    "resident_id is null",
    f"resident_id in (select resident_id from {TABLE} group by all having count(*) > 1)",
    "length(resident_id) <> 8",
    "household_id is null",
    "sex not in ('男', '女')",
    "relation not in (" + ", ".join(f"'{r}'" for r in RELATIONS) + ")",
    f"not regexp_matches(id_number, '{ID_NUMBER}')",
    f"not regexp_matches(phone, '{MOBILE}')",
    "not (birth_year between 1900 and 2026)",
    "moved_in_on < birth_date",
]
HAND_WRITTEN_IDS = "select rule, list(_row_id order by _row_id) from (\n" + "\nunion all\n".join(
    f"select {i} as rule, _row_id from {TABLE} where {c}" for i, c in enumerate(_FAILS)) + "\n) group by all"


def load_registry(con: duckdb.DuckDBPyConnection, registry: Path) -> None:
    """Copy the registry's residents, as delivered, in Arrow chunks (not timed)."""
    src = sqlite3.connect(f"file:{registry}?mode=ro", uri=True)
    cursor = src.execute("select * from residents order by resident_id")
    names = [d[0] for d in cursor.description]
    con.execute(f"create table {TABLE} ({', '.join(f'{n} varchar' for n in names)})")
    while rows := cursor.fetchmany(200_000):
        chunk = pa.table({n: pa.array([None if v is None else str(v) for v in col], pa.string())
                          for n, col in zip(names, zip(*rows, strict=True), strict=True)})
        con.from_arrow(chunk).insert_into(TABLE)
    src.close()


def synthesise(con: duckdb.DuckDBPyConnection, rows: int) -> None:
    """An equivalent table made in DuckDB: same columns, roughly the registry's noise."""
    con.execute(f"""
        create table {TABLE} as
        with r as (
            select i, [(hash(i, k) % 100)::int for k in range(10)] as p,
                   date '1930-01-01' + (hash(i) % 30000)::int as born
            from range({rows}) t(i))
        select 'R' || lpad(i::varchar, 7, '0') as resident_id,
               'H' || lpad((i // 3)::varchar, 7, '0') as household_id,
               '张伟' as name,
               case when p[2] < 1 then null
                    when p[3] < 4 then '420102 ' || strftime(born, '%Y%m%d') || ' 123x'
                    else '420102' || strftime(born, '%Y%m%d') || lpad((i % 10000)::varchar, 4, '0') end
                   as id_number,
               ['男', '女'][p[4] % 2 + 1] as sex,
               strftime(born, '%Y-%m-%d') as birth_date,
               case when p[5] < 5 then null
                    when p[6] < 15 then '+86 139 0000 ' || lpad((i % 10000)::varchar, 4, '0')
                    else '139' || lpad((i % 100000000)::varchar, 8, '0') end as phone,
               {RELATIONS}[p[7] % 5 + 1] as relation,
               ['户籍', '流动'][p[8] % 2 + 1] as residence_type,
               strftime(born + (p[9] * 200 - 500), '%Y-%m-%d') as moved_in_on,
               '2026-10-01 00:00:00' as updated_at, '0' as is_deleted, null::varchar as deleted_at
        from r
    """)


class QueryLog:
    """Counts SQL statements SQLAlchemy sends and the time spent inside DuckDB executing them."""

    def __init__(self) -> None:
        self.statements, self.seconds, self._t0 = 0, 0.0, 0.0
        sa.event.listen(sa.Engine, "before_cursor_execute", self._before)
        sa.event.listen(sa.Engine, "after_cursor_execute", self._after)

    def _before(self, *args: object) -> None:
        self._t0 = time.perf_counter()

    def _after(self, *args: object) -> None:
        self.statements += 1
        self.seconds += time.perf_counter() - self._t0


def rule(expectation_type: str, kwargs: dict) -> tuple[str, str | None]:
    """What identifies an expectation of the suite across the routes' result types."""
    return expectation_type, kwargs.get("column") or kwargs.get("column_A")


def counts_by_name(results: list[tuple[str, dict, dict]]) -> dict[str, int | None]:
    """(type, kwargs, result) per expectation -> unexpected count by hand-written name."""
    names = {rule(e.expectation_type, e.configuration.kwargs): n for n, e in SUITE}
    return {names[rule(t, kwargs)]: result["unexpected_count"] if result.get("unexpected_count") is not None
            else result.get("observed_value") for t, kwargs, result in results}


ROUTES = {
    "hand": "(1) hand-written DuckDB query: counts",
    "hand+ids": "    and one more query for every failing row id",
    "ge": "(2) GE in DuckDB (validate_table): counts, result stored",
    "ge+ids": "    the same, plus every failing row id",
    "pandas": "(3) GE on pandas: DataFrame + validate: counts",
}
TIMED = ("seconds of one validation of the table in a fresh process, after one untimed run of the same route "
         "in that process (imports, opening the DuckDB file, GE's datasource registration and a warm buffer "
         "cache on every route alike); pandas: the DataFrame conversion is timed")


def route(name: str, table_file: Path, gx_dir: Path) -> dict:
    """One route, warmed once then timed once: its seconds and what it found (one side of the comparison)."""
    con = duckdb.connect(str(table_file))
    try:
        if name in ("hand", "hand+ids"):
            def once() -> dict:
                row = con.execute(HAND_WRITTEN).fetchall()[0]
                out: dict = {"counts": dict(zip([n for n, _ in SUITE], row, strict=True))}
                if name == "hand+ids":
                    out["ids"] = sum(len(ids) for _, ids in con.execute(HAND_WRITTEN_IDS).fetchall())
                return out
        elif name in ("ge", "ge+ids"):
            suite = gx.ExpectationSuite("grid_registry_residents", expectations=[e for _, e in SUITE])
            context = gx_context(gx_dir)
            row_id = "_row_id" if name == "ge+ids" else None
            log = QueryLog()

            def once() -> dict:
                log.statements, log.seconds = 0, 0.0
                outcome = validate_table(context, con, TABLE, suite, row_id=row_id)
                n = next(r.element_count for r in outcome.results if r.element_count)
                out: dict = {"counts": counts_by_name([
                    (r.expectation_type, r.kwargs, {"unexpected_count": r.unexpected_count, "observed_value": n})
                    for r in outcome.results])}
                if row_id:
                    out["ids"] = sum(len(r.unexpected_row_ids or []) for r in outcome.results)
                    out["ids_match_counts"] = all(len(r.unexpected_row_ids or []) == (r.unexpected_count or 0)
                                                  for r in outcome.results)
                    out["statements"], out["in_duckdb_s"] = log.statements, log.seconds
                return out
        else:
            suite = gx.ExpectationSuite("grid_registry_residents", expectations=[e for _, e in SUITE])
            ctx = gx.get_context(mode="ephemeral")
            ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}  # type: ignore[assignment]
            batch_definition = (ctx.data_sources.add_pandas("pandas").add_dataframe_asset("residents")
                                .add_batch_definition_whole_dataframe("all"))

            def once() -> dict:
                df = con.table(TABLE).df()
                result = batch_definition.get_batch(batch_parameters={"dataframe": df}).validate(suite)
                configs = [(r.expectation_config, r.result) for r in result.results]
                return {"counts": counts_by_name([(c.type, c.kwargs, res) for c, res in configs if c is not None])}
        once()  # warm-up, untimed (see TIMED)
        t0 = time.perf_counter()
        out = once()
        return {"seconds": time.perf_counter() - t0, **out}
    finally:
        con.close()


def build_table(args: argparse.Namespace, work: Path) -> tuple[Path, int, str]:
    """The residents table in WORK/warehouse.duckdb, numbered, with a typed birth year (not timed)."""
    path = work / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema raw")
    if args.synthetic or not args.registry:
        synthesise(con, args.synthetic or 1_264_530)
        source = "synthesised in DuckDB"
    else:
        load_registry(con, args.registry)
        source = str(args.registry)
    # Numbered rows, as the runner numbers a batch; and, since GE compares only numbers and
    # dates with "between" and raw dates are strings, a typed birth year.
    con.execute(f"create or replace table {TABLE} as select row_number() over () as _row_id, *, "
                f"try_cast(left(birth_date, 4) as integer) as birth_year from {TABLE}")
    rows = con.execute(f"select count(*) from {TABLE}").fetchall()[0][0]
    con.close()
    return path, rows, source


def run(args: argparse.Namespace, work: Path) -> None:
    """Build the table under `work`, run the five routes in rounds of fresh processes, print the comparison."""
    t0 = time.perf_counter()
    table_file, rows, source = build_table(args, work)
    print(f"table {TABLE}: {rows:,} rows from {source} (loaded in {time.perf_counter() - t0:.1f} s); "
          f"suite: {len(SUITE)} expectations; {args.runs} rounds\n", flush=True)
    sides = [compare.Side(name, [sys.executable, str(Path(__file__).resolve()), "--route", name,
                                 "--table-file", str(table_file), "--gx-dir", str(work / f"gx-{name}")])
             for name in ROUTES]
    comp = compare.run_rounds(sides, rounds=args.runs, timed=TIMED, measure="reported",
                              title=f"validation routes, {rows:,} rows, {len(SUITE)} expectations", log_dir=work)
    pairs = [("ge", "hand"), ("ge+ids", "hand+ids"), ("pandas", "ge"), ("pandas", "ge+ids")]
    print(comp.report(pairs))
    reports = {name: [r.report for r in comp.runs if r.side == name and r.ok and r.report] for name in ROUTES}
    med = {name: compare.median([t for t in comp.timings(name) if t is not None]) if reports[name] else None
           for name in ROUTES}
    print(f"\n{'route':<62} {'median s':>8}")
    for name, label in ROUTES.items():
        print(f"{label:<62} {med[name] if med[name] is not None else float('nan'):8.2f}")
    st = {p: comp.stats(*p) for p in pairs}
    ge_hand, ids_hand = st[("ge", "hand")], st[("ge+ids", "hand+ids")]
    pd_ge, pd_ids = st[("pandas", "ge")], st[("pandas", "ge+ids")]
    print()
    if ge_hand["ratio_of_medians"] and pd_ge["ratio_of_medians"]:
        print(f"GE-DuckDB / hand-written: {ge_hand['ratio_of_medians']:4.2f}x counts "
              f"(per round {ge_hand['pair_ratio_min']:.2f}–{ge_hand['pair_ratio_max']:.2f}; target <= 2x: "
              f"{'met' if ge_hand['ratio_of_medians'] <= 2 else 'MISSED'}); {_r(ids_hand)} with row ids")
        print(f"pandas / GE-DuckDB:       {pd_ge['ratio_of_medians']:4.1f}x counts "
              f"(per round {pd_ge['pair_ratio_min']:.1f}–{pd_ge['pair_ratio_max']:.1f}; target >= 10x: "
              f"{'met' if pd_ge['ratio_of_medians'] >= 10 else 'MISSED'}); {_r(pd_ids)} against GE-DuckDB with row ids")
    counts = {name: [rep["counts"] for rep in reps] for name, reps in reports.items()}
    hand = counts["hand"][0] if counts["hand"] else None
    same = {name: bool(c) and all(x == hand for x in c) for name, c in counts.items()}
    ids = {rep["ids"] for name in ("hand+ids", "ge+ids") for rep in reports[name]}
    ids_match = all(rep.get("ids_match_counts") for rep in reports["ge+ids"])
    agree = ", ".join(f"{n} {'yes' if ok else 'NO'}" for n, ok in same.items())
    print(f"same counts as hand-written: {agree}; "
          f"row ids = unexpected counts {'yes' if ids_match else 'NO'}, GE row ids = hand-written row ids "
          f"{'yes' if len(ids) == 1 else 'NO'} ({', '.join(format(i, ',') for i in sorted(ids))})")
    if reports["ge+ids"]:
        last = reports["ge+ids"][-1]
        print(f"validate_table with row ids: {last['statements']} SQLAlchemy statements, "
              f"{last['in_duckdb_s']:.2f} s of them in DuckDB (last run)")
    if hand:
        print("\nunexpected counts:", ", ".join(f"{k} {v:,}" for k, v in hand.items()))
    if args.json:
        compare.write_json(args.json, [comp], rows=rows, source=source)
        print(f"runs and statistics: {args.json}")


def _r(s: dict) -> str:
    if not s["ratio_of_medians"]:
        return "n/a"
    return f"{s['ratio_of_medians']:.2f}x (per round {s['pair_ratio_min']:.2f}–{s['pair_ratio_max']:.2f})"


RUN_COLUMNS = "source, entity, status, rows_in, rows_passed, rows_quarantined, rows_warned, message, results"


def forget_validation(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """Undo every validation run of `source`: its loads become pending again."""
    runs = [r[0] for r in con.execute("select run_id from meta.validation_runs where source = ?", [source]).fetchall()]
    entities = {r[0] for r in con.execute("select entity from meta.validation_runs where source = ?", [source]).fetchall()}
    con.execute("delete from meta.validated_loads where run_id in (select unnest(?::varchar[]))", [runs])
    for entity in sorted(entities):
        con.execute(f"delete from staging.{source}_{entity} where _validation_run_id in (select unnest(?::varchar[]))",
                    [runs])
    con.execute("delete from meta.quarantine where stage = 'validate' and source = ?", [source])
    con.execute("delete from meta.validation_runs where source = ?", [source])


def runs_of(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, tuple]:
    """What a validation run of each table of `source` recorded (results parsed), by entity."""
    rows = con.execute(f"select {RUN_COLUMNS} from meta.validation_runs where source = ?", [source]).fetchall()
    return {r[1]: (*r[2:-1], json.loads(r[-1])) for r in rows}


def revalidate(args: argparse.Namespace, work: Path) -> None:
    """Time `onenet.pipeline.validate` per source on fresh copies of a validated warehouse."""
    from onenet import pipeline

    copy = work / "warehouse.duckdb"
    os.environ.update(ONENET_WAREHOUSE=str(copy), ONENET_GX_DIR=str(work / "gx"))
    for run_no in range(args.runs):
        shutil.copyfile(args.warehouse, copy)
        con = duckdb.connect(str(copy))
        before = {s: runs_of(con, s) for s in args.sources}
        for source in args.sources:
            forget_validation(con, source)
        con.close()
        for source in args.sources:
            t0 = time.perf_counter()
            results = pipeline.validate(source)
            seconds = time.perf_counter() - t0
            tables = ", ".join(f"{r.entity} {r.rows_in:,} rows {r.seconds:.1f} s" for r in results)
            con = duckdb.connect(str(copy), read_only=True)
            same = runs_of(con, source) == before[source]
            con.close()
            print(f"run {run_no + 1} validate {source}: {seconds:.1f} s ({tables}); "
                  f"results as recorded before: {'yes' if same else 'NO'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=next((p for p in REGISTRIES if p.exists()), None))
    parser.add_argument("--synthetic", type=int, default=None, help="synthesise this many rows instead")
    parser.add_argument("--runs", type=int, default=None,
                        help="rounds of every route in fresh processes, default 3 (with --warehouse: runs, default 1)")
    parser.add_argument("--json", type=Path, help="every run and statistic")
    parser.add_argument("--route", choices=list(ROUTES), help=argparse.SUPPRESS)  # one side, run by the rounds
    parser.add_argument("--table-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--gx-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warehouse", type=Path, help="time the validation step on a copy of this warehouse")
    parser.add_argument("--sources", nargs="+", default=["grid_registry", "health_codes"])
    args = parser.parse_args()
    if args.route:
        print(json.dumps(route(args.route, args.table_file, args.gx_dir)))
        return
    with tempfile.TemporaryDirectory(prefix="onenet-validation-bench-") as work:
        if args.warehouse:
            args.runs = args.runs or 1
            revalidate(args, Path(work))
        else:
            args.runs = args.runs or 3
            run(args, Path(work))


if __name__ == "__main__":
    main()
