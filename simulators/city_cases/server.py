"""The 数字城管 simulator: an API-key protected change feed of city-management cases over HTTP."""

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
    iso_from_us,
    json_response,
)
from simulators.http_common import (
    main as common_main,
)

NAME = "city_cases"
DEFAULT_PORT = 18346
KEY_ENV = "ONENET_SIM_CITY_API_KEY"
DEFAULT_KEY = "dev-city-key"
LIST_PATH = "/api/cases"
DEFAULT_LIMIT = 200

CASES = EventSpec(
    key="case_id",
    events=(
        ("reported_at", "reported", "上报"),
        ("registered_at", "registered", "立案"),
        ("dispatched_at", "dispatched", "派遣"),
        ("disposed_at", "disposed", "处置"),
        ("verified_at", "verified", "核查"),
        ("closed_at", "closed", "结案"),
    ),
)


class CityCasesService(Service):
    """GET /api/cases (a change feed by updated_at, case_id) and GET /api/cases/<id>."""

    name = NAME

    def __init__(
        self,
        root: Path,
        api_keys: Sequence[str] = (DEFAULT_KEY,),
        rate_limit: float = 0.0,
        faults: Faults | None = None,
    ) -> None:
        super().__init__(root, Credentials("X-Api-Key", tuple(api_keys)), rate_limit, faults)
        self.cases = EventTable(self.root / "city_cases" / "cases.parquet", CASES)
        self.cases.view(self.clock.now_us())  # load and sort now, so a bad file fails at start

    def route(self, method: str, path: str) -> Handler:
        """The feed endpoint or the single-case endpoint."""
        if path == LIST_PATH:
            handler: Handler = self.list_cases
        elif path.startswith(LIST_PATH + "/") and len(path) > len(LIST_PATH) + 1:
            handler = partial(self.get_case, unquote(path[len(LIST_PATH) + 1 :]))
        else:
            raise ApiError(404, "not_found", f"no endpoint {path}")
        if method != "GET":
            raise ApiError(405, "method_not_allowed", "use GET")
        return handler

    def list_cases(self, request: Request) -> Response:
        """The cases after the cursor (from the start without one); the cursor always resumes."""
        query = Query(request.query, {"cursor", "limit"})
        limit = query.integer("limit", DEFAULT_LIMIT, 1, 1000)
        token = query.text("cursor")
        cursor = Cursor.decode(token) if token is not None else Cursor(None, None)
        view = self.cases.view(self.clock.now_us())
        start = 0
        if cursor.updated_us is not None and cursor.key is not None:
            start = view.position_after(cursor.updated_us, cursor.key)
            if start > 0 and self.faults.duplicate_page():
                start = max(0, start - limit)
        end = min(start + limit, view.count)
        # An empty page hands the caller's position back, so a stored cursor is never lost.
        resume = (
            view.cursor_after(end - 1) if end > start else Cursor(cursor.updated_us, cursor.key)
        )
        return json_response(
            200,
            {
                "cases": view.records(view.rows[start:end]),
                "cursor": resume.encode(),
                "has_more": end < view.count,
                "server_time": iso_from_us(view.now_us),
            },
        )

    def get_case(self, case_id: str, request: Request) -> Response:
        """One case as of now; 404 when unknown or not yet reported."""
        Query(request.query, set())
        view = self.cases.view(self.clock.now_us())
        row = view.find(case_id)
        if row is None:
            raise ApiError(404, "not_found", f"no case {case_id}")
        record = view.records(np.array([row]))[0]
        return json_response(200, {"case": record, "server_time": iso_from_us(view.now_us)})


def build_service(
    root: Path, api_keys: Sequence[str], rate_limit: float, faults: Faults
) -> CityCasesService:
    """The city-cases service for a ROOT (the ServerSpec factory)."""
    return CityCasesService(root, api_keys, rate_limit, faults)


SPEC = ServerSpec(
    name=NAME,
    default_port=DEFAULT_PORT,
    credential_env=KEY_ENV,
    default_credential=DEFAULT_KEY,
    build=build_service,
    description="Simulated 数字城管 city-management case feed (loopback only).",
)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m simulators.city_cases.server --root DIR [...]`."""
    return common_main(argv, SPEC)


if __name__ == "__main__":
    sys.exit(main())
