"""The hotline's client and paging."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from connectors.common.config import Connection
from connectors.common.exceptions import (
    ConfigurationError,
    InvalidPage,
    SourceUnavailable,
)
from connectors.common.http import HttpClient, client_for
from connectors.common.json_pages import page_position, parse_instant

from . import settings


def make_client(conn: Connection, **options: Any) -> HttpClient:
    """An HttpClient sending the Bearer token of `conn`; `options` override the settings' defaults."""
    return client_for(conn, settings, credential_name="token", placeholder="TOKEN",
                      headers=lambda s: {"Authorization": f"Bearer {s}"}, **options)


def updated_since(watermark: str | None, overlap: timedelta) -> str | None:
    """Where an incremental read starts: the saved watermark minus the overlap (None: from the start)."""
    if watermark is None:
        return None
    moment = parse_instant(watermark)
    if moment is None:
        raise ConfigurationError(f"{settings.SOURCE}: the saved watermark {watermark!r} is not an ISO-8601 "
                                 "time; run the sync with full_refresh=True")
    return (moment - overlap).isoformat()


def ticket_pages(client: HttpClient, since: str | None, page_size: int,
                 max_stalled: int = settings.MAX_STALLED_PAGES) -> Iterator[tuple[str, list[Any]]]:
    """(position, tickets) of every page updated at or after `since` (all when None), to the end."""
    path = settings.TICKETS_PATH
    cursor: str | None = None
    stalled = 0
    for page in itertools.count(1):
        where = page_position(page, cursor, f"updated_since {since}" if since else "start")
        params: dict[str, Any] = {"page_size": page_size}
        # The cursor carries the updated_since it was issued for: send the same value with it
        # on every page (a different one is refused), never a new one.
        if since:
            params["updated_since"] = since
        if cursor:
            params["cursor"] = cursor
        body = client.get_json(path, params, position=where)
        records, has_more, following = body.get("data"), body.get("has_more"), body.get("next_cursor")
        if not isinstance(records, list) or not isinstance(has_more, bool) or (
                has_more and not isinstance(following, str)):
            raise InvalidPage(f"{settings.SOURCE}: {where} of {path} is not a ticket page (expected data, "
                              "has_more and next_cursor); the API changed — check the hotline's documentation "
                              "against the connector")
        yield where, records
        if not has_more:
            return
        # A page served twice hands back the cursor we asked with; many in a row is a stuck source.
        stalled = stalled + 1 if following == cursor else 0
        if stalled >= max_stalled:
            raise SourceUnavailable(f"{settings.SOURCE}: {where} of {path} was served {stalled} times in a "
                                    "row without progress; the source is stuck — the load was not landed, "
                                    "re-run later")
        cursor = following


