"""Compound-key uniqueness computed in SQL, with failing rows GE can name.

GE's own ExpectCompoundColumnsToBeUnique counts correctly, but the query it renders to fetch the
failing rows (`unexpected_index_query`) selects from the table *and* its grouped subquery side by
side: in DuckDB that is an ambiguous `_row_id` (a batch with any repeated key could never be
validated again), and elsewhere it would be a cross join. Here the condition is a column-map
condition on the table itself, `row(key...) NOT IN (repeated keys)`, so the failing-row query is a
plain `SELECT _row_id FROM batch WHERE NOT (...)`. `row()` compares nulls inside the key as equal,
as a unique index on the key would.
"""

from __future__ import annotations

from typing import Any, ClassVar

import sqlalchemy as sa
from great_expectations.compatibility import pydantic
from great_expectations.execution_engine import SqlAlchemyExecutionEngine
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)

from expectations.rendering import SentenceExpectation


class CompoundKeyUnique(ColumnMapMetricProvider):
    """Per row: is (column, *with_columns) held by no other row of the batch."""

    condition_metric_name = "column_values.compound_key_unique"
    condition_value_keys = ("with_columns",)
    default_kwarg_values = {"with_columns": []}

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column: Any, with_columns: list[str], **kwargs: Any) -> Any:
        table = kwargs["_table"]
        source = table.subquery() if isinstance(table, sa.Select) else table
        names = [column.name, *with_columns]
        key = sa.func.row(*(sa.column(n) for n in names))
        repeated = (sa.select(sa.func.row(*(sa.column(n) for n in names)))
                    .select_from(source.alias("keys"))
                    .group_by(*(sa.column(n) for n in names))
                    .having(sa.func.count() > 1))
        return sa.not_(key.in_(repeated))


class ExpectCompoundKeyToBeUnique(SentenceExpectation):
    """Expect no two rows to share the key (column, *with_columns); rows with a null `column` are skipped.

    Args:
        column (str): The key's first column (rows where it is null are left to a not-null check).
        with_columns (list[str]): The key's other columns; nulls in them compare as equal.
    """

    with_columns: list[str] = pydantic.Field(default_factory=list, description="The key's other columns.")

    library_metadata: ClassVar[dict[str, Any]] = {
        "maturity": "production", "tags": ["onenet", "uniqueness", "column map expectation"],
        "contributors": ["@onenet"], "has_full_test_suite": True, "manually_reviewed_code": True,
    }
    map_metric = "column_values.compound_key_unique"
    success_keys = ("with_columns", "mostly")
    args_keys = ("column", "with_columns")

    @classmethod
    def _sentence(cls, kwargs: dict[str, Any]) -> str:
        others = list(kwargs.get("with_columns") or [])
        key = " + ".join(["the column", *others]) if others else "the column"
        return f"values must be unique: no two rows share the key ({key}); rows with a null column are skipped"
