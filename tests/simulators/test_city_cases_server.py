"""The 数字城管 case-feed simulator over real loopback HTTP: auth, limits, feed cursor, as-of view, faults, CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from simulators import clock
from simulators.city_cases.server import CASES, CityCasesService
from simulators.http_common import FaultConfig, Faults, Service
from tests.simulators.conftest import as_of, instant, raw_rows

KEY = {"X-Api-Key": "dev-city-key"}
EVENTS = [c for c, _, _ in CASES.events]
CODES = [code for _, code, _ in CASES.events]
FEED = "/api/cases"
REPO = Path(__file__).resolve().parents[2]

Serve = Callable[[Service], str]


def start(district: Path, serve: Serve, rate_limit: float = 0, **faults: Any) -> str:
    """A city-cases server on a free port, with the given fault switches on."""
    return serve(
        CityCasesService(district, rate_limit=rate_limit, faults=Faults(FaultConfig(**faults)))
    )


def drain(url: str, limit: int, cursor: str | None = None) -> tuple[list[dict], str]:
    """Read the feed from `cursor` (the start if None) until has_more is false; returns cases and cursor."""
    cases: list[dict] = []
    for _ in range(1000):
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        body = requests.get(url + FEED, params=params, headers=KEY, timeout=10).json()
        cases.extend(body["cases"])
        cursor = body["cursor"]
        assert isinstance(cursor, str)
        if not body["has_more"]:
            return cases, cursor
    raise AssertionError("the feed did not end")


def updated_after(district: Path, moment: Any, now: Any) -> set[str]:
    """Ids of the cases visible at `now` whose updated_at is later than `moment`, computed from the raw file."""
    rows = raw_rows(district / "city_cases/cases.parquet")
    return {
        r["case_id"]
        for r in rows
        if r["reported_at"] <= now and (moment is None or as_of(r, EVENTS, now)[1] > moment)
    }


def test_health_needs_no_credential(district: Path, serve: Serve) -> None:
    body = requests.get(start(district, serve) + "/health", timeout=5).json()
    assert body == {
        "status": "ok",
        "name": "city_cases",
        "day": 0,
        "server_time": "2026-11-02T00:00:00+08:00",
    }


@pytest.mark.parametrize(
    "headers", [{}, {"X-Api-Key": "wrong"}, {"Authorization": "Bearer dev-city-key"}]
)
def test_feed_needs_the_api_key(district: Path, serve: Serve, headers: dict) -> None:
    response = requests.get(start(district, serve) + FEED, headers=headers, timeout=5)
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_rate_limit_answers_429_with_retry_after(district: Path, serve: Serve) -> None:
    url = start(district, serve, rate_limit=0.5)
    assert requests.get(url + FEED, headers=KEY, timeout=5).status_code == 200
    response = requests.get(url + FEED, headers=KEY, timeout=5)
    assert response.status_code == 429 and response.json()["error"] == "rate_limited"
    assert int(response.headers["Retry-After"]) == 2  # one token at 0.5/s takes 2 s


@pytest.mark.parametrize("limit", [1, 7, 1000])
def test_feed_returns_every_visible_case_once(district: Path, serve: Serve, limit: int) -> None:
    clock.write_day(district, 2)
    url = start(district, serve)
    cases, cursor = drain(url, limit)
    ids = [c["case_id"] for c in cases]
    assert len(ids) == len(set(ids)) and set(ids) == updated_after(
        district, None, clock.now_utc(district)
    )
    keys = [(instant(c["updated_at"]), c["case_id"]) for c in cases]
    assert keys == sorted(keys)
    # At the end the stored cursor gives an empty page and hands itself back.
    body = requests.get(url + FEED, params={"cursor": cursor}, headers=KEY, timeout=5).json()
    assert body["cases"] == [] and body["cursor"] == cursor and body["has_more"] is False


def test_stored_cursor_returns_exactly_the_cases_updated_since(
    district: Path, serve: Serve
) -> None:
    clock.write_day(district, 1)
    url = start(district, serve)
    before, cursor = drain(url, 10)
    then = clock.now_utc(district)
    clock.write_day(district, 3)
    delta, _ = drain(url, 4, cursor)
    now = clock.now_utc(district)
    ids = {c["case_id"] for c in delta}
    assert ids == updated_after(district, then, now)
    old = {c["case_id"]: c["status"] for c in before}
    changed_old = {
        c["case_id"] for c in delta if c["case_id"] in old and c["status"] != old[c["case_id"]]
    }
    assert changed_old and ids - set(old)  # old cases moved on, new cases appeared


def test_empty_feed_keeps_the_start_cursor(tmp_path: Path, district: Path, serve: Serve) -> None:
    first = min(r["reported_at"] for r in raw_rows(district / "city_cases/cases.parquet"))
    clock.write_day(district, -1)  # the eve of the first day: no case yet
    assert clock.now_utc(district) < first
    url = start(district, serve)
    body = requests.get(url + FEED, headers=KEY, timeout=5).json()
    assert body["cases"] == [] and body["has_more"] is False
    clock.write_day(district, 0)
    cases, _ = drain(url, 5, body["cursor"])
    assert {c["case_id"] for c in cases} == updated_after(district, None, clock.now_utc(district))


def test_as_of_view_hides_future_events(district: Path, serve: Serve) -> None:
    clock.write_day(district, 1)
    now = clock.now_utc(district)
    cases, _ = drain(start(district, serve), 1000)
    raw = {r["case_id"]: r for r in raw_rows(district / "city_cases/cases.parquet")}
    hidden = 0
    for case in cases:
        row = raw[case["case_id"]]
        for column in EVENTS:
            seen = row[column] is not None and row[column] <= now
            assert instant(case[column]) == (row[column] if seen else None)
            hidden += row[column] is not None and not seen
        index, updated = as_of(row, EVENTS, now)
        assert case["status"] == CODES[index] and instant(case["updated_at"]) == updated
        assert case["status_name"] == CASES.events[index][2]
        assert (case["lon"], case["lat"], case["source_ticket_id"]) == (
            row["lon"],
            row["lat"],
            row["source_ticket_id"],
        )
    assert hidden > 0


def test_single_case_by_id(district: Path, serve: Serve) -> None:
    clock.write_day(district, 1)
    url = start(district, serve)
    now = clock.now_utc(district)
    rows = raw_rows(district / "city_cases/cases.parquet")
    seen = next(r for r in rows if r["reported_at"] <= now)
    future = next(r for r in rows if r["reported_at"] > now)
    body = requests.get(f"{url}{FEED}/{seen['case_id']}", headers=KEY, timeout=5).json()
    assert body["case"]["case_id"] == seen["case_id"]
    for case_id in (future["case_id"], "CG-none"):
        assert requests.get(f"{url}{FEED}/{case_id}", headers=KEY, timeout=5).status_code == 404


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "limit=many", "cursor=%%%", "page_size=5"]
)
def test_bad_parameters_are_400_with_a_message(district: Path, serve: Serve, query: str) -> None:
    response = requests.get(f"{start(district, serve)}{FEED}?{query}", headers=KEY, timeout=5)
    assert response.status_code == 400 and response.json()["message"]


def test_truncate_fault_sends_a_cut_body(district: Path, serve: Serve) -> None:
    response = requests.get(
        start(district, serve, truncate_rate=1.0) + FEED, headers=KEY, timeout=5
    )
    assert len(response.content) == int(response.headers["Content-Length"])
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_duplicate_page_fault_repeats_the_previous_page(district: Path, serve: Serve) -> None:
    clock.write_day(district, 3)
    url = start(district, serve)
    first = requests.get(url + FEED, params={"limit": 4}, headers=KEY, timeout=5).json()
    requests.post(url + "/_admin/faults", json={"duplicate_page_rate": 1.0}, headers=KEY, timeout=5)
    again = requests.get(
        url + FEED, params={"limit": 4, "cursor": first["cursor"]}, headers=KEY, timeout=5
    ).json()
    assert [c["case_id"] for c in again["cases"]] == [c["case_id"] for c in first["cases"]]
    assert again["cursor"] == first["cursor"]  # following it resumes where the client was


def test_error_burst_from_the_start_then_recovery(district: Path, serve: Serve) -> None:
    url = start(district, serve, error_burst=2)
    responses = [requests.get(url + FEED, headers=KEY, timeout=5) for _ in range(3)]
    assert [r.status_code for r in responses] == [503, 503, 200]
    assert responses[0].json()["error"] == "injected_fault"


def test_slow_fault_delays_answers(district: Path, serve: Serve) -> None:
    url = start(district, serve, slow_ms=250)
    began = time.monotonic()
    requests.get(url + FEED, headers=KEY, timeout=5)
    assert time.monotonic() - began >= 0.25


def test_cli_announces_itself_and_cleans_up_on_sigterm(district: Path) -> None:
    command = [
        sys.executable, "-m", "simulators.city_cases.server", "--root", str(district),
        "--port", "0", "--api-key", "k1", "--faults", '{"error_burst": 1}',
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE)
    run_file = district / "run" / "city_cases.json"
    try:
        deadline = time.monotonic() + 20
        while not run_file.exists():
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "no run file"
            time.sleep(0.05)
        info = json.loads(run_file.read_text(encoding="utf-8"))
        assert info["name"] == "city_cases" and info["pid"] == process.pid
        statuses = [
            requests.get(info["url"] + FEED, headers={"X-Api-Key": "k1"}, timeout=5).status_code
            for _ in range(2)
        ]
        assert statuses == [503, 200]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert not run_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stderr:
            process.stderr.close()
