"""The city-management feed's client and change-feed paging."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from connectors.common.config import Connection
from connectors.common.exceptions import InvalidPage, SourceUnavailable
from connectors.common.http import HttpClient, client_for

# The JSON-page handling is the same for every JSON-over-HTTP source; it lives with the hotline
# until it moves to connectors.common.
from connectors.common.json_pages import page_position

from . import settings

__all__ = ["case_pages", "make_client"]


def make_client(conn: Connection, **options: Any) -> HttpClient:
    """An HttpClient sending the X-Api-Key of `conn`; `options` override the settings' defaults."""
    return client_for(conn, settings, credential_name="API key", placeholder="API_KEY",
                      headers=lambda s: {"X-Api-Key": s}, **options)


def case_pages(client: HttpClient, cursor: str | None, limit: int,
               max_stalled: int = settings.MAX_STALLED_PAGES) -> Iterator[tuple[str, list[Any], str]]:
    """(position, cases, cursor after them) of every page from `cursor` (the start when None)."""
    path = settings.CASES_PATH
    stalled = 0
    for page in itertools.count(1):
        where = page_position(page, cursor)
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        try:
            body = client.get_json(path, params, position=where)
        except SourceUnavailable as exc:
            if page == 1 and cursor:
                # A refused stored cursor (the feed was rebuilt) will fail every run the same way.
                raise SourceUnavailable(f"{exc} (this request resumed from the stored cursor; if the "
                                        "source refuses it for good, run the sync with full_refresh=True)"
                                        ) from exc
            raise
        records, has_more, following = body.get("cases"), body.get("has_more"), body.get("cursor")
        if not isinstance(records, list) or not isinstance(has_more, bool) or not isinstance(following, str):
            raise InvalidPage(f"{settings.SOURCE}: {where} of {path} is not a case page (expected cases, "
                              "cursor and has_more); the API changed — check the feed's documentation "
                              "against the connector")
        yield where, records, following
        if not has_more:
            return
        # A page served twice hands back the cursor we asked with; many in a row is a stuck source.
        stalled = stalled + 1 if following == cursor else 0
        if stalled >= max_stalled:
            raise SourceUnavailable(f"{settings.SOURCE}: {where} of {path} was served {stalled} times in a "
                                    "row without progress; the source is stuck — the load was not landed, "
                                    "re-run later")
        cursor = following
