"""The 12345 hotline simulator: a token-protected, keyset-paged work-order API over loopback HTTP."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from simulators.http_common import (
    ApiError,
    Credentials,
    Cursor,
    EventSpec,
    EventTable,
    Faults,
    Handler,
    Query,
    Request,
    Response,
    ServerSpec,
    Service,
    bad_request,
    iso_from_us,
    json_response,
)
from simulators.http_common import (
    main as common_main,
)

NAME = "hotline"
DEFAULT_PORT = 18345
TOKEN_ENV = "ONENET_SIM_HOTLINE_TOKEN"
DEFAULT_TOKEN = "dev-hotline-token"
LIST_PATH = "/api/v1/tickets"
DEFAULT_PAGE_SIZE = 200

TICKETS = EventSpec(
    key="ticket_id",
    events=(
        ("received_at", "received", "已受理"),
        ("dispatched_at", "dispatched", "已派单"),
        ("first_response_at", "responded", "已响应"),
        ("resolved_at", "resolved", "已办结"),
        ("closed_at", "closed", "已归档"),
        ("rated_at", "rated", "已评价"),
    ),
    # The citizen's rating does not exist before the return visit that collects it.
    gated=(("satisfaction", "rated_at"),),
)


class HotlineService(Service):
    """GET /api/v1/tickets (paged by updated_at, ticket_id) and GET /api/v1/tickets/<id>."""

    name = NAME

    def __init__(
        self,
        root: Path,
        tokens: Sequence[str] = (DEFAULT_TOKEN,),
        rate_limit: float = 0.0,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(
            root, Credentials("Authorization", tuple(tokens), "Bearer"), rate_limit, faults
        )
        self.tickets = EventTable(self.root / "hotline" / "tickets.parquet", TICKETS)
        self.tickets.view(self.clock.now_us())  # load and sort now, so a bad file fails at start

    def route(self, method: str, path: str) -> Handler:
        """The list endpoint or the single-ticket endpoint."""
        if path == LIST_PATH:
            handler: Handler = self.list_tickets
        elif path.startswith(LIST_PATH + "/") and len(path) > len(LIST_PATH) + 1:
            handler = partial(self.get_ticket, unquote(path[len(LIST_PATH) + 1 :]))
        else:
            raise ApiError(404, "not_found", f"no endpoint {path}")
        if method != "GET":
            raise ApiError(405, "method_not_allowed", "use GET")
        return handler

    def list_tickets(self, request: Request) -> Response:
        """One page of tickets with updated_at >= updated_since, after the cursor if given."""
        query = Query(request.query, {"updated_since", "page_size", "cursor"})
        page_size = query.integer("page_size", DEFAULT_PAGE_SIZE, 1, 1000)
        since_us = query.instant("updated_since")
        token = query.text("cursor")
        cursor = Cursor.decode(token) if token is not None else None
        if cursor is not None:
            # The cursor carries the window it was issued for; a different one would skip rows.
            if query.text("updated_since") is not None and since_us != cursor.since_us:
                raise bad_request(
                    "cursor was issued for a different updated_since; drop one of them"
                )
            since_us = cursor.since_us
        view = self.tickets.view(self.clock.now_us())
        low = view.position_since(since_us) if since_us is not None else 0
        start = low
        if cursor is not None and cursor.updated_us is not None and cursor.key is not None:
            start = max(low, view.position_after(cursor.updated_us, cursor.key))
            if start > low and self.faults.duplicate_page():
                start = max(low, start - page_size)
        end = min(start + page_size, view.count)
        has_more = end < view.count
        next_cursor = view.cursor_after(end - 1, since_us).encode() if has_more else None
        return json_response(
            200,
            {
                "data": view.records(view.rows[start:end]),
                "next_cursor": next_cursor,
                "has_more": has_more,
                "server_time": iso_from_us(view.now_us),
            },
        )

    def get_ticket(self, ticket_id: str, request: Request) -> Response:
        """One ticket as of now; 404 when unknown or not yet received."""
        Query(request.query, set())
        view = self.tickets.view(self.clock.now_us())
        row = view.find(ticket_id)
        if row is None:
            raise ApiError(404, "not_found", f"no ticket {ticket_id}")
        record = view.records(np.array([row]))[0]
        return json_response(200, {"data": record, "server_time": iso_from_us(view.now_us)})


def build_service(
    root: Path, tokens: Sequence[str], rate_limit: float, faults: Faults
) -> HotlineService:
    """The hotline service for a ROOT (the ServerSpec factory)."""
    return HotlineService(root, tokens, rate_limit, faults)


SPEC = ServerSpec(
    name=NAME,
    default_port=DEFAULT_PORT,
    credential_env=TOKEN_ENV,
    default_credential=DEFAULT_TOKEN,
    build=build_service,
    description="Simulated 12345 hotline work-order API (loopback only).",
)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m simulators.hotline.server --root DIR [...]`."""
    return common_main(argv, SPEC)


if __name__ == "__main__":
    sys.exit(main())
