"""The 12345 hotline connector: work orders from the paged REST API into raw.hotline_tickets."""

from __future__ import annotations

import logging
from datetime import timedelta

import duckdb

from connectors.common import config
from connectors.common.config import Connection
from connectors.common.http import HttpClient
from connectors.common.json_pages import JsonPages
from connectors.common.loads import Load, LoadResult
from connectors.common.prefetch import prefetch
from connectors.common.reconcile import Reconciliation

from . import settings
from .helpers import make_client, ticket_pages, updated_since

log = logging.getLogger(__name__)

__all__ = ["reconcile", "sync", "sync_tickets"]


def sync(con: duckdb.DuckDBPyConnection, conn: Connection, *, full_refresh: bool = False,
         client: HttpClient | None = None) -> list[LoadResult]:
    """Land every ticket changed since the last load (all of them with `full_refresh`).

    `client` replaces the HttpClient built from `conn` and the settings (tests pass one that
    does not sleep). Raises the load's error after recording it as failed in meta.loads.
    """
    return [sync_tickets(con, client or make_client(conn), full_refresh=full_refresh,
                         overlap=config.overlap(conn, settings.OVERLAP, settings.SOURCE))]


def sync_tickets(con: duckdb.DuckDBPyConnection, client: HttpClient, *,
                 full_refresh: bool = False, overlap: timedelta = settings.OVERLAP) -> LoadResult:
    """One load of `tickets`: page from the saved watermark minus the overlap to the end."""
    with Load(con, settings.TICKETS, full_refresh=full_refresh) as load:
        since = updated_since(load.state.get("watermark"), overlap)
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


def reconcile(con: duckdb.DuckDBPyConnection, conn: Connection, *, reset_cursor: bool = False,
              client: HttpClient | None = None) -> list[LoadResult]:
    """Page through every ticket the hotline holds now and land the difference with raw's current
    state (connectors.common.reconcile); `reset_cursor` also restarts the watermark from this read
    (what `sync --full-refresh` does)."""
    client = client or make_client(conn)
    spec = Reconciliation(missing_kind=settings.MISSING_KIND,
                          overlap=config.overlap(conn, settings.OVERLAP, settings.SOURCE))
    with Load(con, settings.TICKETS, reconcile=spec) as load:
        pages = JsonPages(settings.TICKETS, settings.TICKET_FIELDS)
        for position, records in prefetch(ticket_pages(client, None, settings.PAGE_SIZE)):
            pages.add(records, position)
        pages.into(load)
        if reset_cursor:
            result = load.finish({"updated_since": None}, watermark=pages.watermark)
        else:
            result = load.finish({k: v for k, v in load.state.items() if k != "watermark"})
    log.info(result.summary())
    return [result]
