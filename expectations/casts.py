"""Castability expectations computed in SQL: every value must convert to the type staging casts it to.

A pattern such as ^[0-9]{4}-[0-9]{2}-[0-9]{2} lets 0000-00-00 and 2026-02-30 through; staging's
`cast(... as timestamp)` then fails the whole merge on that one row. TRY_CAST in the warehouse's
own engine is the exact test of what staging will do, so such a row is quarantined instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

from great_expectations.compatibility import pydantic
from great_expectations.execution_engine import SqlAlchemyExecutionEngine
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement

from expectations.rendering import SentenceExpectation

# The types staging casts text to; a closed list, since the name is pasted into SQL.
CAST_TYPES = ("integer", "bigint", "double", "date", "timestamp", "timestamptz")


class _TryCast(ColumnElement[Any]):
    inherit_cache = False

    def __init__(self, clause: ColumnElement[Any], type_name: str):
        self.clause = clause
        self.type_name = type_name


@compiles(_TryCast)
def _compile_try_cast(element: _TryCast, compiler: Any, **kw: Any) -> str:
    return f"TRY_CAST({compiler.process(element.clause, **kw)} AS {element.type_name.upper()})"


class ColumnValuesCastTo(ColumnMapMetricProvider):
    """Per row: does TRY_CAST(value AS type) give a value (nulls are not counted)."""

    condition_metric_name = "column_values.cast_to"
    condition_value_keys = ("type_name",)

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column, type_name: str, **kwargs):
        if type_name not in CAST_TYPES:
            raise ValueError(f"type_name must be one of {CAST_TYPES}, got {type_name!r}")
        return _TryCast(column, type_name).is_not(None)


class ExpectColumnValuesToCastTo(SentenceExpectation):
    """Expect every non-null value of the column to convert to `type_name` (DuckDB TRY_CAST).

    Args:
        column (str): The column, delivered as text.
        type_name (str): One of integer, bigint, double, date, timestamp, timestamptz.
    """

    type_name: str = pydantic.Field(description="The type staging casts the column to.")

    library_metadata: ClassVar[dict[str, Any]] = {
        "maturity": "production", "tags": ["onenet", "cast", "column map expectation"],
        "contributors": ["@onenet"], "has_full_test_suite": True, "manually_reviewed_code": True,
    }
    map_metric = "column_values.cast_to"
    success_keys = ("type_name", "mostly")
    args_keys = ("column", "type_name")

    @classmethod
    def _sentence(cls, kwargs: dict[str, Any]) -> str:
        return f"values must convert to {kwargs.get('type_name')}, as staging casts them (nulls are ignored)"
