"""Great Expectations inside DuckDB: exact counts and row ids on planted defects, errors that never pass."""

from __future__ import annotations

import duckdb
import great_expectations as gx
import great_expectations.expectations as gxe
import pytest

from expectations.engine import ValidationEngineError, build_docs, gx_context, validate_table

ROWS = 1000
NULL_KEYS = {13, 77, 150, 151, 222, 300, 333, 414, 456, 512, 600, 666, 700, 777, 808, 901, 999}
DUPLICATES = {500: 400, 501: 401, 502: 402, 503: 403, 504: 404}  # row -> row whose key it repeats
BAD_CATEGORY = {5, 55, 105, 205, 305, 405, 605, 805, 905}
INVERTED = {42, 420, 842}  # resolved before received
BAD_PHONE = {7, 107, 207, 307, 407, 507}
BAD_SATISFACTION = {11, 111, 211, 311}

# Planted with literal row ids, so the expected answers below are independent of the SQL.
PLANTED = f"""
create schema raw;
create table raw.hotline_tickets as
select
    r as _row_id,
    case when r in {tuple(NULL_KEYS)} then null
         when r in {tuple(DUPLICATES)} then 'T' || lpad((r - 100)::varchar, 6, '0')
         else 'T' || lpad(r::varchar, 6, '0') end as ticket_id,
    case when r in {tuple(BAD_CATEGORY)} then 'spam'
         else ['complaint', 'consultation', 'request', 'praise'][r % 4 + 1] end as category,
    -- '+86 ' numbers match the unanchored regex by search, not as a whole string.
    case when r in {tuple(BAD_PHONE)} then '12345'
         when r % 50 = 1 then '+86 138' || lpad(r::varchar, 8, '0')
         else '138' || lpad(r::varchar, 8, '0') end as caller_phone,
    timestamptz '2026-11-01 08:00:00+08' + to_minutes(r) as received_at,
    case when r in {tuple(INVERTED)} then timestamptz '2026-11-01 08:00:00+08' + to_minutes(r) - interval 1 day
         when r % 10 = 0 then null  -- still open: not a defect, the pair expectation skips it
         else timestamptz '2026-11-01 08:00:00+08' + to_minutes(r) + interval 2 hour end as resolved_at,
    case when r in {tuple(BAD_SATISFACTION)} then 9 else r % 5 + 1 end as satisfaction
from range(1, {ROWS + 1}) t(r);
"""
COLUMNS = ["_row_id", "ticket_id", "category", "caller_phone", "received_at", "resolved_at", "satisfaction"]


def suite(name: str = "hotline_tickets") -> gx.ExpectationSuite:
    return gx.ExpectationSuite(name, expectations=[
        gxe.ExpectColumnValuesToNotBeNull(column="ticket_id"),
        gxe.ExpectColumnValuesToBeUnique(column="ticket_id"),
        gxe.ExpectColumnValuesToBeInSet(column="category", value_set=["complaint", "consultation", "request", "praise"]),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="resolved_at", column_B="received_at", or_equal=True,
                                                     ignore_row_if="either_value_is_missing"),
        # Unanchored, so it searches (DuckDB's `~` would match whole strings), and with a
        # backslash, which must reach DuckDB as one.
        gxe.ExpectColumnValuesToMatchRegex(column="caller_phone", regex=r"1[3-9]\d{9}",
                                           meta={"severity": "warning"}),
        gxe.ExpectColumnValuesToBeBetween(column="satisfaction", min_value=1, max_value=5),
        gxe.ExpectTableRowCountToBeBetween(min_value=ROWS, max_value=ROWS),
        gxe.ExpectTableColumnsToMatchSet(column_set=COLUMNS, exact_match=True),
        gxe.ExpectTableColumnsToMatchSet(column_set=[*COLUMNS, "street"], exact_match=True),
    ])


@pytest.fixture(scope="module")
def con(tmp_path_factory):
    """The caller's connection: open (outside any transaction) for the whole module."""
    c = duckdb.connect(str(tmp_path_factory.mktemp("wh") / "warehouse.duckdb"))
    c.execute(PLANTED)
    yield c
    c.close()


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    return gx_context(tmp_path_factory.mktemp("gx"))


@pytest.fixture(scope="module")
def outcome(context, con):
    return validate_table(context, con, "raw.hotline_tickets", suite(), run_name="planted")


def test_planted_defects_are_counted_and_located_exactly(outcome):
    rules = {(r.expectation_type, r.column): r for r in outcome.results if r.column}
    duplicated = set(DUPLICATES) | set(DUPLICATES.values())
    expected = {
        ("expect_column_values_to_not_be_null", "ticket_id"): NULL_KEYS,
        ("expect_column_values_to_be_unique", "ticket_id"): duplicated,
        ("expect_column_values_to_be_in_set", "category"): BAD_CATEGORY,
        ("expect_column_values_to_match_regex", "caller_phone"): BAD_PHONE,
        ("expect_column_values_to_be_between", "satisfaction"): BAD_SATISFACTION,
    }
    for key, rows in expected.items():
        r = rules[key]
        assert (r.success, r.element_count, r.unexpected_count) == (False, ROWS, len(rows)), key
        assert r.unexpected_row_ids == sorted(rows), key
        assert r.exception is None
    pair = next(r for r in outcome.results if r.expectation_type.startswith("expect_column_pair"))
    assert (pair.success, pair.unexpected_count, pair.unexpected_row_ids) == (False, 3, sorted(INVERTED))
    assert pair.element_count == ROWS
    assert not outcome.success
    assert outcome.statistics["evaluated_expectations"] == 9


def test_table_level_expectations_pass_and_fail_on_their_own(outcome):
    table_level = [r for r in outcome.results if r.expectation_type.startswith("expect_table")]
    assert [(r.expectation_type, r.success) for r in table_level] == [
        ("expect_table_row_count_to_be_between", True),
        ("expect_table_columns_to_match_set", True),
        ("expect_table_columns_to_match_set", False),
    ]
    # Table-level results carry no row ids: that is how the runner tells them from row failures.
    assert all(r.unexpected_row_ids is None for r in table_level)


def test_severity_travels_in_meta(outcome):
    severities = {r.expectation_type: r.meta["severity"] for r in outcome.results}
    assert severities["expect_column_values_to_match_regex"] == "warning"
    assert severities["expect_column_values_to_not_be_null"] == "critical"


def test_an_expectation_that_raises_is_an_error_not_a_result(context, con):
    broken = gx.ExpectationSuite("broken", expectations=[
        gxe.ExpectColumnValuesToNotBeNull(column="ticket_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="no_such_column"),
    ])
    with pytest.raises(ValidationEngineError, match="expect_column_values_to_not_be_null.*no_such_column"):
        validate_table(context, con, "raw.hotline_tickets", broken)
    with pytest.raises(ValidationEngineError, match="raw.missing not found"):
        validate_table(context, con, "raw.missing", broken)


def test_a_query_great_expectations_renders_wrongly_is_an_error_not_wrong_row_ids(context, con):
    # GE inlines parameters into unexpected_index_query with Python's repr(): 'C:\tmp' becomes
    # 'C:\\tmp', so the query would also select the rows GE counted as expected.
    con.execute(r"create table raw.paths as select range as _row_id, "
                r"case when range < 3 then 'C:\tmp' else 'D:\' end as path from range(5)")
    paths = gx.ExpectationSuite("paths", expectations=[
        gxe.ExpectColumnValuesToBeInSet(column="path", value_set=["C:\\tmp"])])
    with pytest.raises(ValidationEngineError, match="counted 2 unexpected rows, but .* selects 5"):
        validate_table(context, con, "raw.paths", paths)


def test_result_is_stored_and_data_docs_show_the_suite(context, outcome):
    keys = context.validation_results_store.list_keys()
    assert any(k.expectation_suite_identifier.name == "hotline_tickets" for k in keys)
    index = build_docs(context)
    assert index.name == "index.html" and "hotline_tickets" in index.read_text(encoding="utf-8")
    assert outcome.docs_url and outcome.docs_url.startswith(index.parent.as_uri())


@pytest.mark.parametrize("schema", ["staging", "validation"])
def test_other_schemas_and_committed_changes(context, con, schema):
    # Same table name in two schemas; each gets its own asset and reads only its own rows.
    con.execute(f"create schema if not exists {schema}")
    con.execute(f"create or replace table {schema}.tickets as from raw.hotline_tickets")
    extra = {"staging": 1, "validation": 2}[schema]
    con.execute(f"insert into {schema}.tickets (_row_id) select {ROWS} + range from range(1, {extra + 1})")
    nulls = next(r for r in validate_table(context, con, f"{schema}.tickets", suite()).results
                 if r.expectation_type == "expect_column_values_to_not_be_null")
    assert nulls.unexpected_count == len(NULL_KEYS) + extra
    assert nulls.unexpected_row_ids[-extra:] == [ROWS + i for i in range(1, extra + 1)]
    assert [a.name for a in context.data_sources.get(f"warehouse.{schema}").assets] == ["tickets"]
    # The caller's connection is still ours to write with.
    con.execute("begin; create table if not exists main.after as select 1 as x; commit")


def test_repeated_calls_reuse_what_they_registered(context, con, outcome):
    def registered():
        return ({name: [a.name for a in ds.assets] for name, ds in context.data_sources.all().items()},
                sorted(v.name for v in context.validation_definitions.all()))

    before = registered()
    validate_table(context, con, "raw.hotline_tickets", suite())
    assert registered() == before
    # One datasource per schema of the database, one table asset per table.
    assert "hotline_tickets" in before[0]["warehouse.raw"]
    assert "hotline_tickets@warehouse.raw.hotline_tickets" in before[1]


@pytest.mark.filterwarnings("ignore:You are using a generic SQLDatasource")
def test_upstream_sql_datasource_still_fails_on_duckdb(tmp_path):
    """GE's own SQL datasource on a plain duckdb:/// URL: every metric fails, on a table in `main`.

    GE fetches after closing the connection, which rolls back duckdb_engine's transaction and
    drops the result (GE issues #10738, #11579). If this test fails, upstream has fixed it:
    check whether DuckDBExecutionEngine.execute_query is still needed.
    """
    path = tmp_path / "plain.duckdb"
    with duckdb.connect(str(path)) as c:
        c.execute("create table t as select range as k from range(10)")
    plain = gx.get_context(mode="ephemeral")
    datasource = plain.data_sources.add_sql("plain", connection_string=f"duckdb:///{path}")
    batch = datasource.add_table_asset("t", table_name="t").add_batch_definition_whole_table("all").get_batch()
    result = batch.validate(gxe.ExpectColumnValuesToNotBeNull(column="k"))
    assert not result.success
    messages = [i["exception_message"] for i in result.exception_info.values()]
    assert "list index out of range" in messages
