"""Referential expectations computed in SQL: every value must exist in another warehouse table."""

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


class ColumnValuesExistInTable(ColumnMapMetricProvider):
    """Per row: does the value occur in `ref_column` of `ref_table` (optionally filtered)."""

    condition_metric_name = "column_values.exist_in_table"
    condition_value_keys = ("ref_table", "ref_column", "ref_where")
    default_kwarg_values = {"ref_where": None}

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column, ref_table: str, ref_column: str, ref_where: str | None = None, **kwargs):
        # A subquery, not a value list: a district has ~30,000 grid codes and ~470,000 households,
        # which would make an IN list (and the suite, and Data Docs) enormous.
        ref: sa.Select = sa.select(sa.column(ref_column)).select_from(sa.text(ref_table))
        if ref_where:
            ref = ref.where(sa.text(ref_where))
        return column.in_(ref)


class ExpectColumnValuesToExistInTable(SentenceExpectation):
    """Expect every value of the column to exist in a column of another table (a reference).

    Computed in SQL as `column IN (SELECT ref_column FROM ref_table [WHERE ref_where])`; nulls are
    ignored. Used for references such as "every household's grid code exists in the grid hierarchy".

    Args:
        column (str): The referencing column.
        ref_table (str): The referenced table, e.g. "raw.grid_registry_grids".
        ref_column (str): The referenced column, e.g. "grid_code".
        ref_where (str | None): An SQL filter on the referenced table, e.g. "level = 'micro'".
    """

    ref_table: str = pydantic.Field(description="The referenced table.")
    ref_column: str = pydantic.Field(description="The referenced column.")
    ref_where: str | None = pydantic.Field(default=None, description="SQL filter on the referenced table.")

    library_metadata: ClassVar[dict[str, Any]] = {
        "maturity": "production", "tags": ["onenet", "reference", "column map expectation"],
        "contributors": ["@onenet"], "has_full_test_suite": True, "manually_reviewed_code": True,
    }
    map_metric = "column_values.exist_in_table"
    success_keys = ("ref_table", "ref_column", "ref_where", "mostly")
    args_keys = ("column", "ref_table", "ref_column")

    @classmethod
    def _sentence(cls, kwargs: dict[str, Any]) -> str:
        where = f" where {kwargs['ref_where']}" if kwargs.get("ref_where") else ""
        return f"values must exist in {kwargs.get('ref_table')}.{kwargs.get('ref_column')}{where} (nulls are ignored)"
