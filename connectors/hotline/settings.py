"""Settings of the 12345 hotline connector: the entity, its columns, paging and retry defaults."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa

from connectors.common.landing import Entity

SOURCE = "hotline"
CONN_ID = "onenet_hotline"
# The simulator on loopback; production sets AIRFLOW_CONN_ONENET_HOTLINE instead.
DEFAULT_URI = "http://:dev-hotline-token@127.0.0.1:18345"
TICKETS_PATH = "/api/v1/tickets"

PAGE_SIZE = 500                  # the API allows 1..1000
# Re-read this much before the saved watermark: at-least-once reading, a record committed late
# upstream with an older updated_at is still caught; the Load lands each version once.
# Connection extra `?overlap=SECONDS` overrides it.
OVERLAP = timedelta(hours=1)
# Reconciliation (a full page-through compared with raw by key and hash) runs weekly: a full read
# costs the API one request per 500 tickets against its rate limit, and what a cursor misses here
# (back-dated or silent edits, reverts) is rare and not urgent. Sunday 03:00 Beijing time.
RECONCILE_SCHEDULE = "0 3 * * 0"
# Work orders are closed, never deleted: a ticket raw holds and the API does not was never the
# hotline's (e.g. landed from another district's server) — a phantom.
MISSING_KIND = "phantom"

TIMEOUT_SECONDS = 30.0           # per request (connect + read)
MAX_RETRIES = 6                  # 5xx, time-outs, resets, invalid JSON: then the load fails
BACKOFF_SECONDS = 0.5            # first backoff; doubles per retry, with full jitter
MAX_BACKOFF_SECONDS = 30.0
MAX_RATE_LIMIT_WAITS = 30        # 429s honoured via Retry-After before they count as failures
# A page whose next cursor is the one we asked with made no progress (a page served twice);
# this many in a row means the source is stuck, not flaky.
MAX_STALLED_PAGES = 20

_TEXT = (
    "ticket_id", "caller_name", "caller_phone", "caller_id_number", "address", "street",
    "department", "category", "urgency", "content",
    "received_at", "dispatched_at", "first_response_at", "resolved_at", "closed_at", "rated_at",
    "response_deadline", "resolve_deadline", "satisfaction", "status", "status_name", "updated_at",
)
# Every documented field as delivered: timestamps stay ISO-8601 text (typed in staging).
TICKET_FIELDS = pa.schema([pa.field(name, pa.string()) for name in _TEXT])

# What staging and the 三率 marts cannot do without: a missing or re-typed one fails the load.
REQUIRED = ("ticket_id", "updated_at", "received_at", "status", "street", "department", "category")

TICKETS = Entity(SOURCE, "tickets", key=("ticket_id",),
                 required={name: pa.string() for name in REQUIRED}, version="updated_at")
