"""Every private or undocumented Great Expectations name onenet relies on, in one place, with why.

GE is pinned exactly (pyproject.toml) because of these: a minor release may rename or drop any of
them without notice. `check()` looks each one up in the installed GE and names what is missing;
tests/expectations/test_ge_private.py runs it, and also fails when our code starts using a private
GE name that is not listed here. To try a newer GE: `.venv/bin/python bench/ge_upgrade.py`
(a throwaway venv with the newest GE from the index, then tests/expectations against it).

Result on 2026-12-06 (bench/README.md, "Great Expectations upgrade check"): the newest GE on the
index is 1.24.1, the pinned version: every private name present, tests/expectations 133 passed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class PrivateName:
    """A GE name that is not public API: where it lives, where we use it, why, and what could replace it."""

    module: str          # GE module the name is looked up in
    attribute: str       # dotted path inside the module ("" for the module itself)
    used_in: str
    why: str
    public_alternative: str


PRIVATE_NAMES: tuple[PrivateName, ...] = (
    PrivateName(
        "great_expectations.datasource.fluent.sql_datasource", "SQLDatasource._EXTRA_EXCLUDED_EXEC_ENG_ARGS",
        "expectations/engine.py (DuckDBDatasource)",
        "keeps our datasource field schema_name out of the execution engine's constructor arguments",
        "none: GE's own datasources (e.g. PostgresDatasource) use the same class variable"),
    PrivateName(
        "great_expectations.execution_engine", "SqlAlchemyExecutionEngine.dialect_module",
        "expectations/engine.py (DuckDBExecutionEngine.__init__)",
        "undocumented attribute: GE picks dialect-specific SQL by it; DuckDB gets PostgreSQL's module",
        "a registered DuckDB dialect in GE (GX issue: DuckDB support) would make it unnecessary"),
    PrivateName(
        "great_expectations.execution_engine", "SqlAlchemyExecutionEngine.execute_query",
        "expectations/engine.py (DuckDBExecutionEngine)",
        "overridden to buffer rows before the connection closes (duckdb_engine drops pending results)",
        "none; the override is the documented fix in GE issues #10738 / #11579"),
    PrivateName(
        "great_expectations.execution_engine", "SqlAlchemyExecutionEngine.get_inspector",
        "expectations/engine.py (DuckDBExecutionEngine)",
        "overridden so column reflection reads DuckDB's catalog (SQLAlchemy's collation query fails)",
        "none until duckdb_engine reflects columns again (duckdb_engine #1379, #1391)"),
    PrivateName(
        "great_expectations.data_context.types.base", "ProgressBarsConfig",
        "expectations/engine.py (gx_context)", "turns off tqdm bars in task logs; internal module path",
        "context.variables.progress_bars with a plain dict, if GE accepts it in a later release"),
    PrivateName(
        "great_expectations.expectations.expectation", "ColumnMapExpectation._add_mostly_pct_param",
        "expectations/rendering.py (SentenceExpectation._prescriptive_template)",
        "the 'at least N % of the time' parameter, as GE's own expectations render it",
        "none: GE's built-in expectations call it the same way"),
    PrivateName(
        "great_expectations.expectations.expectation", "ColumnMapExpectation._prescriptive_template",
        "expectations/rendering.py", "the hook GE's renderer calls for an expectation's sentence (overridden)",
        "none: GE documents overriding it for custom expectations' renderers"),
    PrivateName(
        "great_expectations.expectations.expectation", "ColumnMapExpectation._prescriptive_renderer",
        "expectations/rendering.py", "the legacy prescriptive renderer Data Docs pages still call (overridden)",
        "none in 1.x; dropped once GE renders only through _prescriptive_template"),
    PrivateName(
        "great_expectations.render.renderer.page_renderer", "ValidationResultsPageRenderer._render_validation_header",
        "expectations/data_docs.py (mark_warnings rewrites what it renders: the 'Failed' status markup)",
        "GE renders any failed expectation as a failed batch; a batch with warnings only passed",
        "a severity-aware status in GE's page renderer (GE 1.x has FailureSeverity, not yet shown)"),
)


class PrivateNameMissing(RuntimeError):
    """The installed GE lacks a private name onenet relies on; the message lists them with where they are used."""


def _lookup(name: PrivateName) -> object:
    obj: object = importlib.import_module(name.module)
    for part in filter(None, name.attribute.split(".")):
        if part == "dialect_module":  # an instance attribute set in __init__: look for its assignment
            import inspect

            if "self.dialect_module" not in inspect.getsource(obj.__init__):  # type: ignore[misc]
                raise AttributeError(part)
            return obj
        obj = getattr(obj, part)
    return obj


def check() -> list[str]:
    """Look every listed name up in the installed GE; raise PrivateNameMissing naming the missing ones."""
    import great_expectations as gx

    missing = []
    for name in PRIVATE_NAMES:
        try:
            _lookup(name)
        except (ImportError, AttributeError, OSError, TypeError):
            missing.append(f"{name.module}:{name.attribute} (used in {name.used_in})")
    if missing:
        raise PrivateNameMissing(f"great_expectations {gx.__version__} lacks: " + "; ".join(missing))
    return [f"{n.module}:{n.attribute}" for n in PRIVATE_NAMES]
