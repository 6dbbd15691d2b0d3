"""The 12345 hotline connector: work orders from the paged REST API into raw.hotline_tickets."""

from __future__ import annotations

import logging

import duckdb

from connectors.common.config import Connection
from connectors.common.http import HttpClient
from connectors.common.json_pages import JsonPages
from connectors.common.loads import Load, LoadResult
from connectors.common.prefetch import prefetch

from . import settings
from .helpers import make_client, ticket_pages, updated_since

log = logging.getLogger(__name__)

__all__ = ["sync", "sync_tickets"]


def sync(con: duckdb.DuckDBPyConnection, conn: Connection, *, full_refresh: bool = False,
         client: HttpClient | None = None) -> list[LoadResult]:
    """Land every ticket changed since the last load (all of them with `full_refresh`).

    `client` replaces the HttpClient built from `conn` and the settings (tests pass one that
    does not sleep). Raises the load's error after recording it as failed in meta.loads.
    """
    return [sync_tickets(con, client or make_client(conn), full_refresh=full_refresh)]


def sync_tickets(con: duckdb.DuckDBPyConnection, client: HttpClient, *,
                 full_refresh: bool = False) -> LoadResult:
    """One load of `tickets`: page from the saved watermark minus the overlap to the end."""
    with Load(con, settings.TICKETS, full_refresh=full_refresh) as load:
        since = updated_since(load.state.get("watermark"), settings.OVERLAP)
        pages = JsonPages(settings.TICKETS, settings.TICKET_FIELDS)
        retries_before = client.retries
        # The next page is fetched while this one is turned into Arrow.
        for position, records in prefetch(ticket_pages(client, since, settings.PAGE_SIZE)):
            pages.add(records, position)
        pages.into(load)
        if client.retries > retries_before:
            load.note(f"{client.retries - retries_before} request(s) retried")
        # No rows: the watermark stays where it was (finish keeps the saved one).
        result = load.finish({"updated_since": since}, watermark=pages.watermark)
    log.info(result.summary())
    return result
