"""Settings of the city-management (数字城管) connector: the entity, its columns, paging and retries."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa

from connectors.common.landing import Entity

SOURCE = "city_cases"
CONN_ID = "onenet_city_cases"
# The simulator on loopback; production sets AIRFLOW_CONN_ONENET_CITY_CASES instead.
DEFAULT_URI = "http://:dev-city-key@127.0.0.1:18346"
CASES_PATH = "/api/cases"

PAGE_LIMIT = 500                 # the feed allows 1..1000
# The feed's cursor resumes exactly after the last case, so incremental reads need no overlap;
# a reconciliation judges "back-dated" against the watermark minus this (`?overlap=SECONDS`).
OVERLAP = timedelta(0)
# Reconciliation (the whole feed compared with raw by key and hash) runs weekly: the feed is a
# change log ordered by updated_at, so only back-dated or silent edits escape it, and they are
# rare; Sunday 03:30 Beijing time, after the hotline's.
RECONCILE_SCHEDULE = "30 3 * * 0"
# Cases are closed, never deleted: a case raw holds and the feed does not is a phantom.
MISSING_KIND = "phantom"

TIMEOUT_SECONDS = 30.0           # per request (connect + read)
MAX_RETRIES = 6                  # 5xx, time-outs, resets, invalid JSON: then the load fails
BACKOFF_SECONDS = 0.5            # first backoff; doubles per retry, with full jitter
MAX_BACKOFF_SECONDS = 30.0
MAX_RATE_LIMIT_WAITS = 30        # 429s honoured via Retry-After before they count as failures
# A page whose cursor is the one we asked with made no progress (a page served twice);
# this many in a row means the source is stuck, not flaky.
MAX_STALLED_PAGES = 20

_TEXT = (
    "case_id", "category_type", "category_code", "category_name", "description", "address",
    "street", "community", "reporter_type", "reporter_name", "reporter_phone", "source_ticket_id",
    "reported_at", "registered_at", "dispatched_at", "disposed_at", "verified_at", "closed_at",
    "deadline", "status", "status_name", "updated_at",
)
# Every documented field as delivered: timestamps stay ISO-8601 text (typed in staging);
# source_ticket_id is the hotline's ticket_id as the feed gives it, the link to 12345.
CASE_FIELDS = pa.schema([pa.field(name, pa.string()) for name in _TEXT]
                        + [pa.field("lon", pa.float64()), pa.field("lat", pa.float64())])

# What staging and the incident links cannot do without: missing or re-typed fails the load.
REQUIRED = {
    "case_id": pa.string(), "updated_at": pa.string(), "reported_at": pa.string(),
    "status": pa.string(), "category_type": pa.string(), "street": pa.string(),
}

CASES = Entity(SOURCE, "cases", key=("case_id",), required=REQUIRED, version="updated_at")
