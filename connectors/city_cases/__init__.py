"""The 数字城管 connector: the city-management case change feed into raw.city_cases_cases."""

from __future__ import annotations

import logging

import duckdb

from connectors.common.config import Connection
from connectors.common.http import HttpClient
from connectors.common.json_pages import JsonPages
from connectors.common.loads import Load, LoadResult
from connectors.common.prefetch import prefetch

from . import settings
from .helpers import case_pages, make_client

log = logging.getLogger(__name__)

__all__ = ["sync", "sync_cases"]


def sync(con: duckdb.DuckDBPyConnection, conn: Connection, *, full_refresh: bool = False,
         client: HttpClient | None = None) -> list[LoadResult]:
    """Land every case that changed since the stored cursor (the whole feed with `full_refresh`).

    `client` replaces the HttpClient built from `conn` and the settings (tests pass one that
    does not sleep). Raises the load's error after recording it as failed in meta.loads.
    """
    return [sync_cases(con, client or make_client(conn), full_refresh=full_refresh)]


def sync_cases(con: duckdb.DuckDBPyConnection, client: HttpClient, *,
               full_refresh: bool = False) -> LoadResult:
    """One load of `cases`: follow the feed from the stored cursor until has_more is false."""
    with Load(con, settings.CASES, full_refresh=full_refresh) as load:
        cursor = load.state.get("cursor")
        pages = JsonPages(settings.CASES, settings.CASE_FIELDS)
        retries_before = client.retries
        # The next page is fetched while this one is turned into Arrow.
        for position, records, following in prefetch(case_pages(client, cursor, settings.PAGE_LIMIT)):
            pages.add(records, position)
            cursor = following
        pages.into(load)
        if client.retries > retries_before:
            load.note(f"{client.retries - retries_before} request(s) retried")
        # The cursor is the resume point; the watermark (latest updated_at) is for people and
        # monitoring, and stays where it was when nothing changed.
        result = load.finish({"cursor": cursor}, watermark=pages.watermark)
    log.info(result.summary())
    return result
