"""The 数字城管 connector: the city-management case change feed into raw.city_cases_cases."""

from __future__ import annotations

import logging

import duckdb

from connectors.common import config
from connectors.common.config import Connection
from connectors.common.http import HttpClient
from connectors.common.json_pages import JsonPages
from connectors.common.loads import Load, LoadResult
from connectors.common.prefetch import prefetch
from connectors.common.reconcile import Reconciliation

from . import settings
from .helpers import case_pages, make_client

log = logging.getLogger(__name__)

__all__ = ["reconcile", "sync", "sync_cases"]


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


def reconcile(con: duckdb.DuckDBPyConnection, conn: Connection, *, reset_cursor: bool = False,
              client: HttpClient | None = None) -> list[LoadResult]:
    """Follow the whole feed from its start (every case as it is now) and land the difference with
    raw's current state (connectors.common.reconcile); `reset_cursor` also stores the feed's end
    cursor (what `sync --full-refresh` does)."""
    client = client or make_client(conn)
    spec = Reconciliation(missing_kind=settings.MISSING_KIND,
                          overlap=config.overlap(conn, settings.OVERLAP, settings.SOURCE))
    with Load(con, settings.CASES, reconcile=spec) as load:
        cursor = None
        pages = JsonPages(settings.CASES, settings.CASE_FIELDS)
        for position, records, following in prefetch(case_pages(client, None, settings.PAGE_LIMIT)):
            pages.add(records, position)
            cursor = following
        pages.into(load)
        if reset_cursor:
            result = load.finish({"cursor": cursor}, watermark=pages.watermark)
        else:
            result = load.finish({k: v for k, v in load.state.items() if k != "watermark"})
    log.info(result.summary())
    return [result]
