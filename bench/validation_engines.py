"""Benchmark: one expectation suite on a district-scale table, by GE in DuckDB, by GE on pandas, by hand in SQL.

    .venv/bin/python bench/validation_engines.py [--registry PATH/registry.sqlite | --synthetic ROWS] [--runs 5]
    .venv/bin/python bench/validation_engines.py --warehouse PATH.duckdb [--sources S ...] [--runs 1]

The table is the grid registry's residents (1.26M rows with the generator's noise), copied as
delivered (strings) into `raw.grid_registry_residents` of a fresh DuckDB file; without a
registry it is synthesised in DuckDB. Each route runs the same 11 expectations and must report
the same unexpected counts; the best of `--runs` is kept. Targets (issue: validation engine):
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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb
import great_expectations as gx
import great_expectations.expectations as gxe
import pyarrow as pa
import sqlalchemy as sa

from expectations.engine import gx_context, validate_table

T = TypeVar("T")
TABLE = "raw.grid_registry_residents"
REGISTRIES = [Path("/tmp/hc_big/d/grid_registry/registry.sqlite"),
              Path("/tmp/bench13/grid_registry/registry.sqlite")]
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


def best_of(runs: int, fn: Callable[[], T]) -> tuple[float, T]:
    """The fastest of `runs` calls, and the last call's result."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


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


def run(args: argparse.Namespace, work: Path) -> None:
    """Build the table under `work`, time the three routes, print the comparison."""
    con = duckdb.connect(str(work / "warehouse.duckdb"))
    con.execute("create schema raw")
    t0 = time.perf_counter()
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
    print(f"table {TABLE}: {rows:,} rows from {source} (loaded in {time.perf_counter() - t0:.1f} s)")
    suite = gx.ExpectationSuite("grid_registry_residents", expectations=[e for _, e in SUITE])
    print(f"suite: {len(SUITE)} expectations; best of {args.runs} runs (pandas: best of 2)\n")

    # (1) By hand: one query.
    hand_s, hand_row = best_of(args.runs, lambda: con.execute(HAND_WRITTEN).fetchall()[0])
    hand = dict(zip([n for n, _ in SUITE], hand_row, strict=True))
    hand_ids_s, hand_ids = best_of(args.runs, lambda: con.execute(HAND_WRITTEN_IDS).fetchall())

    # (2) GE in DuckDB through expectations.engine, results stored in a file context; first
    # counts only (the hand-written query's work), then also every failing row's id.
    context = gx_context(work / "gx")
    validate_table(context, con, TABLE, suite, row_id=None)  # registers datasource, asset, ...
    counts_s, counts_outcome = best_of(args.runs, lambda: validate_table(context, con, TABLE, suite, row_id=None))
    log = QueryLog()
    ids_s, ids_outcome = best_of(args.runs, lambda: validate_table(context, con, TABLE, suite, row_id="_row_id"))
    statements, in_duckdb = log.statements / args.runs, log.seconds / args.runs

    # (3) GE on pandas: the same suite on a DataFrame of the same table, conversion included.
    pandas_ctx = gx.get_context(mode="ephemeral")
    pandas_ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}  # type: ignore[assignment]
    batch_definition = (pandas_ctx.data_sources.add_pandas("pandas").add_dataframe_asset("residents")
                        .add_batch_definition_whole_dataframe("all"))

    def pandas_route():
        df = con.table(TABLE).df()
        return batch_definition.get_batch(batch_parameters={"dataframe": df}).validate(suite)

    pandas_s, pandas_result = best_of(min(args.runs, 2), pandas_route)

    element_count = next(r.element_count for r in counts_outcome.results if r.element_count)
    ge = counts_by_name([(r.expectation_type, r.kwargs, {"unexpected_count": r.unexpected_count,
                                                         "observed_value": element_count})
                         for r in counts_outcome.results])
    pd_counts = counts_by_name([(r.expectation_config.type, r.expectation_config.kwargs, r.result)
                                for r in pandas_result.results])
    ids = sum(len(r.unexpected_row_ids or []) for r in ids_outcome.results)
    ids_match = all(len(r.unexpected_row_ids or []) == (r.unexpected_count or 0) for r in ids_outcome.results)
    ids_by_hand = sum(len(ids) for _, ids in hand_ids)

    print(f"{'route':<62} {'seconds':>7}")
    print(f"{'(1) hand-written DuckDB query: counts':<62} {hand_s:7.2f}")
    print(f"{'    and one more for every failing row id':<62} {hand_s + hand_ids_s:7.2f}")
    print(f"{'(2) GE in DuckDB (validate_table): counts, result stored':<62} {counts_s:7.2f}")
    print(f"{'    the same, plus every failing row id (' + format(ids, ',') + ')':<62} {ids_s:7.2f}")
    print(f"{'(3) GE on pandas: DataFrame + validate: counts':<62} {pandas_s:7.2f}")
    print()
    by_hand = hand_s + hand_ids_s
    print(f"GE-DuckDB / hand-written: {counts_s / hand_s:4.1f}x counts (target <= 2x: "
          f"{'met' if counts_s <= 2 * hand_s else 'MISSED'}); {ids_s / by_hand:4.1f}x with row ids")
    print(f"pandas / GE-DuckDB:       {pandas_s / counts_s:4.1f}x counts (target >= 10x: "
          f"{'met' if pandas_s >= 10 * counts_s else 'MISSED'}); {pandas_s / ids_s:4.1f}x against GE-DuckDB with row ids")
    print(f"same counts: GE-DuckDB = hand-written {'yes' if ge == hand else 'NO'}, "
          f"GE-pandas = hand-written {'yes' if pd_counts == hand else 'NO'}, "
          f"row ids = unexpected counts {'yes' if ids_match else 'NO'}, "
          f"= hand-written row ids {'yes' if ids == ids_by_hand else 'NO'}")
    print(f"validate_table with row ids: {statements:.0f} SQLAlchemy statements, {in_duckdb:.2f} s of them in DuckDB")
    print("\nunexpected counts:", ", ".join(f"{k} {v:,}" for k, v in hand.items()))
    if ge != hand or pd_counts != hand:
        print("GE-DuckDB:", ge, "\nGE-pandas:", pd_counts)
    con.close()


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
    parser.add_argument("--runs", type=int, default=None, help="default 5 (1 with --warehouse)")
    parser.add_argument("--warehouse", type=Path, help="time the validation step on a copy of this warehouse")
    parser.add_argument("--sources", nargs="+", default=["grid_registry", "health_codes"])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="onenet-validation-bench-") as work:
        if args.warehouse:
            args.runs = args.runs or 1
            revalidate(args, Path(work))
        else:
            args.runs = args.runs or 5
            run(args, Path(work))


if __name__ == "__main__":
    main()
