"""Expectations for resident ID numbers (GB 11643) and mobile numbers, in SQL (DuckDB) and pandas."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from datetime import date
from typing import Any, ClassVar

import pandas as pd
import sqlalchemy as sa
from great_expectations.compatibility import pydantic
from great_expectations.execution_engine import PandasExecutionEngine, SqlAlchemyExecutionEngine
from great_expectations.expectations.metrics.map_metric_provider import (
    ColumnMapMetricProvider,
    column_condition_partial,
)

from expectations.rendering import SentenceExpectation
from warehouse.reference import division_codes

# --- The rules, shared by the pure-Python reference and the SQL -------------------------------

# ISO 7064 MOD 11-2 over the first 17 digits; the remainder 0..10 indexes the check character.
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"

# Format noise staging fixes (not a wrong number): full-width characters, spaces, lower-case x.
_WHITESPACE = " \t\r\n\u00a0\u3000"
_ID_FROM, _ID_TO = "０１２３４５６７８９Ｘｘ＊", "0123456789XX*"
_PHONE_FROM, _PHONE_TO = "０１２３４５６７８９＋", "0123456789+"
_PHONE_DROP = _WHITESPACE + "-－()（）"

# Anchored, ASCII classes only and no backslashes, so Python re, RE2 (DuckDB) and PostgreSQL agree.
ID18 = r"^[0-9]{17}[0-9X]$"
ID15 = r"^[0-9]{15}$"
MASKED6 = r"^[0-9]{6}[*]+[0-9]{3}[0-9X]$"   # first 6 + last 4 kept, any number of '*' between
MASKED3 = r"^[0-9]{3}[*]+[0-9]{3}[0-9X]$"   # first 3 + last 4 kept
MOBILE = r"^([+]?86|0086)?1[3-9][0-9]{9}$"
LANDLINE = r"^0[1-9][0-9]{1,2}[0-9]{7,8}$"  # 0 + 2-3 digit area code + 7-8 digit number
# Values made only of these characters are left unchanged by the normalisation.
_ID_CLEAN = r"^[0-9X*]*$"
_PHONE_CLEAN = r"^[0-9+]*$"

MIN_BIRTH = date(1900, 1, 1)

# Dialects whose translate() maps and deletes characters in one call; others get nested replace().
_TRANSLATE_DIALECTS = {"duckdb", "postgresql"}

ID_CLASSES = ("valid", "masked", "legacy15", "invalid_format", "invalid_division",
              "invalid_birth_date", "future_birth_date", "invalid_check_char")


# --- Pure-Python reference -----------------------------------------------------------------------

_ID_TABLE = str.maketrans(_ID_FROM, _ID_TO, _WHITESPACE)
_PHONE_TABLE = str.maketrans(_PHONE_FROM, _PHONE_TO, _PHONE_DROP)
_ID18_RE, _ID15_RE = re.compile(ID18), re.compile(ID15)
_MASKED6_RE, _MASKED3_RE = re.compile(MASKED6), re.compile(MASKED3)
_MOBILE_RE, _LANDLINE_RE = re.compile(MOBILE), re.compile(LANDLINE)


def normalise_resident_id(value: str) -> str:
    """Remove format noise: full-width digits and letters to ASCII, no spaces, upper-case X."""
    return str(value).translate(_ID_TABLE).upper()


def check_char(body17: str) -> str:
    """The GB 11643 check character of a 17-digit body."""
    return CHECK_CHARS[sum(int(d) * w for d, w in zip(body17, WEIGHTS, strict=True)) % 11]


def _date(yyyymmdd: str) -> date | None:
    try:
        return date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return None


def classify_resident_id(value: str, divisions: Collection[str] | None = None,
                         today: date | None = None) -> str:
    """Classify one ID number: one of ID_CLASSES ("valid", "masked", "legacy15" or why it is invalid).

    `divisions` defaults to every current and historical GB/T 2260 code (stdnum's list). A code is
    never judged against the birth year: a person keeps the number for life, whatever the code's
    later fate, and may hold a code newer than their birth date.
    """
    codes = division_codes() if divisions is None else divisions
    today = today or date.today()
    n = normalise_resident_id(value)
    if _ID18_RE.match(n):
        birth = _date(n[6:14])
        if n[:6] not in codes:
            return "invalid_division"
        if birth is None or birth < MIN_BIRTH:
            return "invalid_birth_date"
        if birth > today:
            return "future_birth_date"
        return "valid" if n[17] == check_char(n[:17]) else "invalid_check_char"
    if _ID15_RE.match(n):
        if n[:6] not in codes:
            return "invalid_division"
        return "legacy15" if _date("19" + n[6:12]) else "invalid_birth_date"
    if _MASKED6_RE.match(n):
        return "masked" if n[:6] in codes else "invalid_division"
    if _MASKED3_RE.match(n):
        return "masked" if any(code.startswith(n[:3]) for code in codes) else "invalid_division"
    return "invalid_format"


def is_valid_resident_id(value: str, *, allow_masked: bool = True, allow_legacy15: bool = True,
                         divisions: Collection[str] | None = None, today: date | None = None) -> bool:
    """What the expectation counts as expected: valid, or masked / legacy15 when allowed."""
    kind = classify_resident_id(value, divisions, today)
    return kind == "valid" or (kind == "masked" and allow_masked) or (kind == "legacy15" and allow_legacy15)


def legacy15_to_18(value: str) -> str:
    """Upgrade an old 15-digit number to 18 characters (century 19, new check character)."""
    n = normalise_resident_id(value)
    if not _ID15_RE.match(n):
        raise ValueError(f"not a 15-digit ID number: {value!r}")
    body = n[:6] + "19" + n[6:]
    return body + check_char(body)


def normalise_phone(value: str) -> str:
    """Drop spaces, dashes and parentheses (ASCII or full-width); full-width digits to ASCII."""
    return str(value).translate(_PHONE_TABLE)


def is_valid_mobile_number(value: str, *, allow_landline: bool = False) -> bool:
    """A mainland mobile (1[3-9] + 9 digits, optionally +86/86/0086), or with allow_landline a landline."""
    n = normalise_phone(value)
    return bool(_MOBILE_RE.match(n) or (allow_landline and _LANDLINE_RE.match(n)))


# --- SQL ------------------------------------------------------------------------------------------


def _text(value: str) -> sa.ColumnElement[str]:
    """A string constant written into the SQL rather than bound.

    GE renders `unexpected_index_query` by substituting bound values with Python's repr(), which
    mangles backslashes, tabs and non-printable spaces; an inline literal survives unchanged.
    """
    return sa.literal_column("'" + value.replace("'", "''") + "'", sa.String)


def _normalised(column: sa.ColumnElement[Any], src: str, dst: str, drop: str, dialect: str, *,
                clean: str, upper: bool = False) -> sa.ColumnElement[str]:
    """The value without format noise; a value matching `clean` (already normal) is left as it is."""
    value: sa.ColumnElement[str] = sa.cast(column, sa.String)
    mapped = value
    if dialect in _TRANSLATE_DIALECTS:
        # translate() deletes the characters of `src` that have no counterpart in `dst`.
        mapped = sa.func.translate(value, _text(src + drop), _text(dst))
    else:
        for a, b in zip(src, dst, strict=True):
            mapped = sa.func.replace(mapped, _text(a), _text(b))
        for ch in drop:
            mapped = sa.func.replace(mapped, _text(ch), _text(""))
    if upper:
        mapped = sa.func.upper(mapped)
    # DuckDB's translate() costs about 1 s per million values, a regex a tenth of that, and
    # nearly every delivered value is already clean.
    return sa.case((value.regexp_match(_text(clean)), value), else_=mapped)


def _once(value: sa.ColumnElement[str],
          test: Callable[[sa.ColumnElement[str]], sa.ColumnElement[bool]]) -> sa.ColumnElement[bool]:
    """`test(n)` with n = `value` computed once per row: a scalar subquery over a one-row table.

    Inline, every mention of n repeats its whole expression and DuckDB evaluates each one (its
    common-subexpression pass does not look inside CASE): the ID check mentions n 43 times and
    took 36 s on 1.27M rows. DuckDB turns the correlated subquery into a join on the column's
    distinct values, so `test` also runs once per distinct value.
    """
    bound = sa.select(value.label("n")).subquery("normalised")
    return sa.select(test(bound.c.n)).scalar_subquery()


def _table(name: str) -> sa.TableClause:
    if not re.fullmatch(r"(\w+\.)?\w+", name):
        raise ValueError(f"not a table name: {name!r}")
    schema, _, table = name.rpartition(".")
    return sa.table(table, sa.column("code"), schema=schema or None)


def _real_date(year: sa.ColumnElement[int], month: sa.ColumnElement[int],
               day: sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
    """Calendar arithmetic instead of a date parser, so it is the same in every dialect."""
    leap = sa.or_(sa.and_(year % 4 == 0, year % 100 != 0), year % 400 == 0)
    days = sa.case((month == 2, sa.case((leap, 29), else_=28)),
                   (month.in_([4, 6, 9, 11]), 30), else_=31)
    return sa.and_(month.between(1, 12), day >= 1, day <= days)


def resident_id_condition(column: sa.ColumnElement[Any], *, allow_masked: bool = True,
                          allow_legacy15: bool = True, division_table: str = "ref.division_codes",
                          dialect: str = "duckdb", today: date | None = None) -> sa.ColumnElement[bool]:
    """SQL that is true for the values `is_valid_resident_id` accepts (false, never NULL, otherwise).

    The division check is `code IN (SELECT code FROM division_table)`. Digits are cast only inside
    the CASE branch whose pattern proved them digits: AND does not short-circuit in DuckDB.
    """
    codes = _table(division_table)
    today = today or date.today()
    normalised = _normalised(column, _ID_FROM, _ID_TO, _WHITESPACE, dialect, clean=_ID_CLEAN, upper=True)
    return _once(normalised, lambda n: _resident_id_checks(n, codes, allow_masked, allow_legacy15, today))


def _resident_id_checks(n: sa.ColumnElement[str], codes: sa.TableClause, allow_masked: bool,
                        allow_legacy15: bool, today: date) -> sa.ColumnElement[bool]:
    """The checks of `resident_id_condition` on a normalised value `n`."""

    def part(start: int, length: int) -> sa.ColumnElement[str]:
        return sa.func.substr(n, start, length)

    def number(start: int, length: int) -> sa.ColumnElement[int]:
        return sa.cast(part(start, length), sa.Integer)

    def known(code: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
        return code.in_(sa.select(codes.c.code))

    terms = [number(i + 1, 1) * w for i, w in enumerate(WEIGHTS)]
    total = sum(terms[1:], terms[0])
    id18 = sa.and_(
        known(part(1, 6)),
        _real_date(number(7, 4), number(11, 2), number(13, 2)),
        number(7, 8).between(int(MIN_BIRTH.strftime("%Y%m%d")), int(today.strftime("%Y%m%d"))),
        sa.func.substr(_text(CHECK_CHARS), total % 11 + 1, 1) == part(18, 1),
    )
    branches: list[tuple[sa.ColumnElement[bool], sa.ColumnElement[bool]]] = [(n.regexp_match(_text(ID18)), id18)]
    if allow_legacy15:
        id15 = sa.and_(known(part(1, 6)), _real_date(number(7, 2) + 1900, number(9, 2), number(11, 2)))
        branches.append((n.regexp_match(_text(ID15)), id15))
    if allow_masked:
        branches.append((n.regexp_match(_text(MASKED6)), known(part(1, 6))))
        prefixes = sa.select(sa.func.substr(codes.c.code, 1, 3))
        branches.append((n.regexp_match(_text(MASKED3)), part(1, 3).in_(prefixes)))
    return sa.case(*branches, else_=sa.false())


def mobile_condition(column: sa.ColumnElement[Any], *, allow_landline: bool = False,
                     dialect: str = "duckdb") -> sa.ColumnElement[bool]:
    """SQL that is true for the values `is_valid_mobile_number` accepts."""
    normalised = _normalised(column, _PHONE_FROM, _PHONE_TO, _PHONE_DROP, dialect, clean=_PHONE_CLEAN)
    if not allow_landline:
        return _once(normalised, lambda n: n.regexp_match(_text(MOBILE)))
    return _once(normalised, lambda n: sa.or_(n.regexp_match(_text(MOBILE)), n.regexp_match(_text(LANDLINE))))


def _dialect_name(kwargs: dict[str, Any]) -> str:
    engine = kwargs.get("_sqlalchemy_engine")
    return engine.dialect.name if engine is not None else "duckdb"


# --- Metrics --------------------------------------------------------------------------------------


class ColumnValuesValidCnResidentId(ColumnMapMetricProvider):
    """Per row: is the value a valid (or allowed masked / legacy) resident ID number."""

    condition_metric_name = "column_values.valid_cn_resident_id"
    condition_value_keys = ("allow_masked", "allow_legacy15", "division_table")
    default_kwarg_values = {"allow_masked": True, "allow_legacy15": True,
                            "division_table": "ref.division_codes"}

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column, allow_masked=True, allow_legacy15=True,
                    division_table="ref.division_codes", **kwargs):
        return resident_id_condition(column, allow_masked=allow_masked, allow_legacy15=allow_legacy15,
                                     division_table=division_table, dialect=_dialect_name(kwargs))

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, allow_masked=True, allow_legacy15=True, **kwargs):
        # No warehouse here: the codes come from the same stdnum list ref.division_codes is loaded
        # from. Each distinct value is classified once (the same person recurs across loads).
        today = date.today()
        verdict = {v: is_valid_resident_id(v, allow_masked=allow_masked, allow_legacy15=allow_legacy15,
                                           today=today) for v in column.unique()}
        return column.map(verdict).astype(bool)


class ColumnValuesValidCnMobile(ColumnMapMetricProvider):
    """Per row: is the value a mainland mobile number (or, if allowed, a landline)."""

    condition_metric_name = "column_values.valid_cn_mobile"
    condition_value_keys = ("allow_landline",)
    default_kwarg_values = {"allow_landline": False}

    @column_condition_partial(engine=SqlAlchemyExecutionEngine)
    def _sqlalchemy(cls, column, allow_landline=False, **kwargs):
        return mobile_condition(column, allow_landline=allow_landline, dialect=_dialect_name(kwargs))

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, allow_landline=False, **kwargs):
        n = column.astype(str).str.translate(_PHONE_TABLE)
        ok = n.str.match(MOBILE)
        if allow_landline:
            ok = ok | n.str.match(LANDLINE)
        return ok.astype(bool)


# --- Expectations ---------------------------------------------------------------------------------

_LIBRARY_METADATA: dict[str, Any] = {
    "maturity": "production",
    "tags": ["onenet", "identity", "china", "column map expectation"],
    "contributors": ["@onenet"],
    "requirements": ["python-stdnum"],
    "has_full_test_suite": True,
    "manually_reviewed_code": True,
}


class _IdentityExpectation(SentenceExpectation):
    """Shared rendering: a sentence per expectation, with the options that loosen it."""


class ExpectColumnValuesToBeValidResidentId(_IdentityExpectation):
    """Expect column values to be valid Chinese resident ID numbers (居民身份证号, GB 11643).

    After removing format noise (full-width characters, spaces, lower-case x) a value is expected
    when it is an 18-character number with a known GB/T 2260 division code (current or historical,
    never judged against the birth year), a real birth date from 1900 to today and the right
    ISO 7064 MOD 11-2 check character; or, if allowed, an old 15-digit number with a known code
    and a real 19YYMMDD date, or a masked number (first 6 or first 3 and last 4 kept, '*' between)
    whose visible code is known. Nulls are ignored (use a not-null expectation for completeness).

    Args:
        column (str): The column holding ID numbers.
        allow_masked (bool): Count masked numbers as expected. Default True.
        allow_legacy15 (bool): Count valid 15-digit numbers as expected. Default True.
        division_table (str): The table of known codes (column `code`) on SQL routes; the pandas
            route uses the stdnum list that table is loaded from. Default "ref.division_codes".
    """

    allow_masked: bool = pydantic.Field(default=True, description="Count masked numbers as expected.")
    allow_legacy15: bool = pydantic.Field(default=True, description="Count valid 15-digit numbers as expected.")
    division_table: str = pydantic.Field(default="ref.division_codes",
                                         description="Table of known division codes (column `code`).")

    library_metadata: ClassVar[dict[str, Any]] = dict(_LIBRARY_METADATA)
    map_metric = "column_values.valid_cn_resident_id"
    success_keys = ("allow_masked", "allow_legacy15", "division_table", "mostly")
    args_keys = ("column",)

    @classmethod
    def _sentence(cls, kwargs: dict[str, Any]) -> str:
        text = "values must be valid resident ID numbers (GB 11643: known division code, real birth date, check character)"
        allowed = [what for key, what in (("allow_masked", "masked numbers"), ("allow_legacy15", "old 15-digit numbers"))
                   if kwargs.get(key, True)]
        return text + (f"; {' and '.join(allowed)} are accepted" if allowed else "")


class ExpectColumnValuesToBeValidMobileNumber(_IdentityExpectation):
    """Expect column values to be mainland Chinese mobile numbers (11 digits starting 1[3-9]).

    Spaces, dashes, parentheses and a +86 / 86 / 0086 prefix are format, not errors. With
    allow_landline a landline with its area code (0 + 2-3 digits, then 7-8 digits, e.g.
    027-82345678 or (027)82345678) is expected too. Nulls are ignored.

    Args:
        column (str): The column holding phone numbers.
        allow_landline (bool): Also accept landlines with an area code. Default False.
    """

    allow_landline: bool = pydantic.Field(default=False, description="Also accept landlines with an area code.")

    library_metadata: ClassVar[dict[str, Any]] = dict(_LIBRARY_METADATA)
    map_metric = "column_values.valid_cn_mobile"
    success_keys = ("allow_landline", "mostly")
    args_keys = ("column",)

    @classmethod
    def _sentence(cls, kwargs: dict[str, Any]) -> str:
        text = "values must be mainland mobile numbers (11 digits starting 1[3-9], +86 allowed)"
        return text + (" or landlines with an area code" if kwargs.get("allow_landline") else "")
