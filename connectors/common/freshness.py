"""Honest freshness: each load's newest real data instant, and watermarks that never run ahead of the clock.

What counts as a **real data row** and its instant, per source (the SQL in `DATA_TIME`):

- hotline, city_cases: a landed ticket / case row; its `updated_at` (ISO-8601 text with offset).
- grid_registry: a landed row of any table; its `updated_at` (timestamptz).
- health_codes: a landed export row. An export of day D vouches for the state of day D, so its
  instant is the newest of its own times (`color_since`, `last_test_at`, Beijing local) but at
  least the start of D and at most D 23:59:59 (Beijing): never later than the day the row was
  exported, never taken from a file's name alone — an empty or header-only file lands no row and
  so proves nothing; a file dated in the future is set aside before it lands.

In every source a row dated later than the moment it was extracted plus `TOLERANCE` is not
counted (it is counted in `rows_future` instead): a clock in the future is no evidence of data.

With the simulators, a source caught up to simulated day D has its newest real row inside Beijing
day D (tickets, cases and registry changes are stamped through the day; day D's export holds the
tests and code changes of day D), so `meta.source_freshness.data_until_day` is the clock's day.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import duckdb

log = logging.getLogger(__name__)

# How far ahead of this machine's clock a source's clock may run before its times are not trusted.
TOLERANCE = timedelta(minutes=10)
_TOLERANCE_SQL = "interval 10 minutes"

_LOCAL = "'%Y-%m-%d %H:%M:%S'"
_HEALTH_DAY = "try_cast(export_date as timestamp)"
DATA_TIME: dict[str, tuple[str, tuple[str, ...]]] = {
    # source -> (SQL of a raw row's data instant as timestamptz, the raw columns it needs)
    "hotline": ("try_cast(updated_at as timestamptz)", ("updated_at",)),
    "city_cases": ("try_cast(updated_at as timestamptz)", ("updated_at",)),
    "grid_registry": ("try_cast(updated_at as timestamptz)", ("updated_at",)),
    "health_codes": (
        "timezone('Asia/Shanghai', least(greatest(try_strptime(color_since, " + _LOCAL + "), "
        "try_strptime(last_test_at, " + _LOCAL + "), " + _HEALTH_DAY + "), "
        + _HEALTH_DAY + " + interval '86399 seconds'))",
        ("export_date", "color_since", "last_test_at")),
}


def now() -> datetime:
    """This machine's clock (UTC): what "the future" is measured against. Tests replace it."""
    return datetime.now(UTC)


def record_loads(con: duckdb.DuckDBPyConnection, source: str, entity: str, table: str) -> None:
    """Write meta.load_data_times for every succeeded load of `source.entity` that landed rows and
    has none yet: the load just finished and, once after an upgrade, the loads before it.

    Call inside the load's transaction, after its meta.loads row says succeeded.
    """
    if source not in DATA_TIME:
        return  # a source without a declared data instant shows no data_until rather than a guess
    expression, needs = DATA_TIME[source]
    schema, _, name = table.partition(".")
    columns = {r[0] for r in con.execute(
        "select column_name from information_schema.columns where table_schema = ? and table_name = ?",
        [schema, name]).fetchall()}
    if not columns:
        return
    missing = [c for c in (*needs, "_load_id", "_extracted_at") if c not in columns]
    if missing:
        log.warning("%s.%s: raw table %s lacks %s; its freshness cannot be computed", source, entity, table, missing)
        return
    pending = [r[0] for r in con.execute(
        "select load_id from meta.loads where source = ? and entity = ? and status = 'succeeded' "
        "and rows_landed > 0 and load_id not in (select load_id from meta.load_data_times)",
        [source, entity]).fetchall()]
    if not pending:
        return
    con.execute(f"""
        insert into meta.load_data_times
        with dated as (
            select _load_id, _extracted_at + {_TOLERANCE_SQL} as latest_credible, {expression} as t
            from {table} where _load_id in (select unnest(?::varchar[]))
        )
        select _load_id, ?, ?, max(t) filter (where t <= latest_credible),
               count(t) filter (where t <= latest_credible), count(t) filter (where t > latest_credible)
        from dated group by _load_id
    """, [pending, source, entity])


def capped_watermark(watermark: str | None, at: datetime | None = None) -> tuple[str | None, str | None]:
    """(the watermark to save, a note or None): a watermark beyond now + TOLERANCE is cut back to it.

    A watermark is a date ('YYYY-MM-DD', compared in Beijing time) or an ISO-8601 instant; anything
    else (an opaque cursor) is kept as it is.
    """
    if not isinstance(watermark, str):
        return watermark, None
    latest = (at or now()) + TOLERANCE
    try:
        if len(watermark) == 10:
            day = date.fromisoformat(watermark)
            today = (latest + timedelta(hours=8)).date()  # Beijing has no daylight saving time
            if day <= today:
                return watermark, None
            capped = today.isoformat()
        else:
            instant = datetime.fromisoformat(watermark.replace("Z", "+00:00"))
            if instant.tzinfo is None:
                instant = instant.replace(tzinfo=UTC)
            if instant <= latest:
                return watermark, None
            capped = latest.isoformat(timespec="seconds")
    except ValueError:
        return watermark, None
    return capped, (f"watermark {watermark} is later than now + {TOLERANCE.seconds // 60} min (the source sent "
                    f"data dated in the future); kept at {capped} — check the source's clock")
