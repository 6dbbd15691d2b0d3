"""The 12345 hotline simulator over real loopback HTTP: auth, limits, paging, as-of view, faults, CLI."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from simulators import clock
from simulators.hotline.server import TICKETS, HotlineService
from simulators.http_common import FaultConfig, Faults, Service
from tests.simulators.conftest import as_of, build_root, instant, raw_rows, write_tickets

AUTH = {"Authorization": "Bearer dev-hotline-token"}
EVENTS = [c for c, _, _ in TICKETS.events]
CODES = [code for _, code, _ in TICKETS.events]
LIST = "/api/v1/tickets"
REPO = Path(__file__).resolve().parents[2]

Serve = Callable[[Service], str]


def start(district: Path, serve: Serve, rate_limit: float = 0, **faults: Any) -> str:
    """A hotline server on a free port, with the given fault switches on."""
    service = HotlineService(district, rate_limit=rate_limit, faults=Faults(FaultConfig(**faults)))
    return serve(service)


def fetch_all(url: str, page_size: int, **params: str) -> tuple[list[dict], str]:
    """Follow next_cursor to the end; returns the tickets and the first page's server_time."""
    tickets: list[dict] = []
    cursor = None
    server_time = None
    for _ in range(1000):
        query: dict[str, Any] = {"page_size": page_size, **params}
        if cursor:
            query["cursor"] = cursor
        body = requests.get(url + LIST, params=query, headers=AUTH, timeout=10).json()
        server_time = server_time or body["server_time"]
        tickets.extend(body["data"])
        assert body["has_more"] == (body["next_cursor"] is not None)
        if not body["has_more"]:
            return tickets, server_time
        cursor = body["next_cursor"]
    raise AssertionError("paging did not end")


def test_health_needs_no_credential(district: Path, serve: Serve) -> None:
    body = requests.get(start(district, serve) + "/health", timeout=5).json()
    assert body["status"] == "ok" and body["name"] == "hotline" and body["day"] == 0
    assert body["server_time"] == "2026-11-02T00:00:00+08:00"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "dev-hotline-token"}],
    ids=["missing", "wrong", "no-scheme"],
)
def test_data_and_admin_need_the_token(district: Path, serve: Serve, headers: dict) -> None:
    url = start(district, serve)
    for path in (LIST, f"{LIST}/GD20261101000000", "/_admin/faults"):
        response = requests.get(url + path, headers=headers, timeout=5)
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized" and response.json()["message"]


def test_rate_limit_answers_429_with_retry_after(district: Path, serve: Serve) -> None:
    url = start(district, serve, rate_limit=1)
    assert requests.get(url + LIST, headers=AUTH, timeout=5).status_code == 200
    response = requests.get(url + LIST, headers=AUTH, timeout=5)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"] == "rate_limited"


@pytest.mark.parametrize("page_size", [1, 7, 1000])
def test_paging_returns_every_visible_ticket_once(
    district: Path, serve: Serve, page_size: int
) -> None:
    clock.write_day(district, 2)
    now = clock.now_utc(district)
    tickets, _ = fetch_all(start(district, serve), page_size)
    ids = [t["ticket_id"] for t in tickets]
    expected = {
        r["ticket_id"]
        for r in raw_rows(district / "hotline/tickets.parquet")
        if r["received_at"] <= now
    }
    assert len(ids) == len(set(ids)) and set(ids) == expected and 10 < len(ids) < 50
    keys = [(instant(t["updated_at"]), t["ticket_id"]) for t in tickets]
    assert keys == sorted(keys)


def test_as_of_view_hides_future_events_and_satisfaction(district: Path, serve: Serve) -> None:
    clock.write_day(district, 1)
    now = clock.now_utc(district)
    tickets, _ = fetch_all(start(district, serve), 1000)
    raw = {r["ticket_id"]: r for r in raw_rows(district / "hotline/tickets.parquet")}
    hidden_events = hidden_ratings = 0
    for ticket in tickets:
        row = raw[ticket["ticket_id"]]
        for column in EVENTS:
            seen = row[column] is not None and row[column] <= now
            assert instant(ticket[column]) == (row[column] if seen else None)
            hidden_events += row[column] is not None and not seen
        rated = row["rated_at"] is not None and row["rated_at"] <= now
        assert ticket["satisfaction"] == (row["satisfaction"] if rated else None)
        hidden_ratings += row["satisfaction"] is not None and not rated
        index, updated = as_of(row, EVENTS, now)
        assert ticket["status"] == CODES[index] and instant(ticket["updated_at"]) == updated
        assert instant(ticket["resolve_deadline"]) == row["resolve_deadline"]
        assert ticket["updated_at"].endswith("+08:00")
    assert hidden_events > 0 and hidden_ratings > 0


def test_advancing_the_clock_adds_and_updates_tickets(district: Path, serve: Serve) -> None:
    clock.write_day(district, 1)
    url = start(district, serve)
    before, server_time = fetch_all(url, 50)
    clock.write_day(district, 3)
    after, _ = fetch_all(url, 50)
    old = {t["ticket_id"]: t["status"] for t in before}
    new = {t["ticket_id"]: t["status"] for t in after}
    assert set(old) < set(new)
    changed = {k for k in old if new[k] != old[k]}
    assert changed
    # An incremental pull from the last server_time brings the changed old tickets and the new ones.
    delta, _ = fetch_all(url, 7, updated_since=server_time)
    delta_ids = {t["ticket_id"] for t in delta}
    assert changed <= delta_ids and set(new) - set(old) <= delta_ids
    watermark = datetime.fromisoformat(server_time)
    assert all(datetime.fromisoformat(t["updated_at"]) >= watermark for t in delta)


def test_single_ticket_by_id(district: Path, serve: Serve) -> None:
    clock.write_day(district, 1)
    url = start(district, serve)
    now = clock.now_utc(district)
    rows = raw_rows(district / "hotline/tickets.parquet")
    seen = next(r for r in rows if r["received_at"] <= now)
    future = next(r for r in rows if r["received_at"] > now)
    body = requests.get(f"{url}{LIST}/{seen['ticket_id']}", headers=AUTH, timeout=5).json()
    assert body["data"]["ticket_id"] == seen["ticket_id"] and body["data"]["status"] in CODES
    for ticket_id in (future["ticket_id"], "GD00000000000000"):
        response = requests.get(f"{url}{LIST}/{ticket_id}", headers=AUTH, timeout=5)
        assert response.status_code == 404 and response.json()["error"] == "not_found"


@pytest.mark.parametrize(
    "query",
    [
        "updated_since=yesterday",
        "page_size=0",
        "page_size=1001",
        "page_size=abc",
        "cursor=not-a-cursor",
        "pagesize=10",
        "page_size=5&page_size=6",
    ],
)
def test_bad_parameters_are_400_with_a_message(district: Path, serve: Serve, query: str) -> None:
    response = requests.get(f"{start(district, serve)}{LIST}?{query}", headers=AUTH, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request" and response.json()["message"]


def test_cursor_keeps_its_updated_since(district: Path, serve: Serve) -> None:
    clock.write_day(district, 3)
    url = start(district, serve)
    since = "2026-11-02T00:00:00+08:00"
    params: dict[str, Any] = {"updated_since": since, "page_size": 2}
    first = requests.get(url + LIST, params=params, headers=AUTH, timeout=5).json()
    cursor = first["next_cursor"]
    # An unescaped '+' (a space once decoded) is accepted too.
    same = requests.get(
        f"{url}{LIST}?updated_since=2026-11-02T00:00:00+08:00&cursor={cursor}",
        headers=AUTH,
        timeout=5,
    )
    assert same.status_code == 200
    other = requests.get(
        url + LIST,
        params={"updated_since": "2026-11-03", "cursor": cursor},
        headers=AUTH,
        timeout=5,
    )
    assert other.status_code == 400 and "updated_since" in other.json()["message"]


def test_truncate_fault_sends_a_cut_body(district: Path, serve: Serve) -> None:
    response = requests.get(
        start(district, serve, truncate_rate=1.0) + LIST, headers=AUTH, timeout=5
    )
    assert response.status_code == 200
    assert len(response.content) == int(response.headers["Content-Length"])
    with pytest.raises(ValueError):
        json.loads(response.content)


def test_duplicate_page_fault_repeats_the_previous_page(district: Path, serve: Serve) -> None:
    clock.write_day(district, 3)
    url = start(district, serve)
    first = requests.get(url + LIST, params={"page_size": 5}, headers=AUTH, timeout=5).json()
    switched = requests.post(
        url + "/_admin/faults", json={"duplicate_page_rate": 1.0}, headers=AUTH, timeout=5
    )
    assert switched.json()["duplicate_page_rate"] == 1.0
    again = requests.get(
        url + LIST, params={"page_size": 5, "cursor": first["next_cursor"]}, headers=AUTH, timeout=5
    ).json()
    assert [t["ticket_id"] for t in again["data"]] == [t["ticket_id"] for t in first["data"]]


def test_error_burst_then_recovery(district: Path, serve: Serve) -> None:
    url = start(district, serve)
    requests.post(url + "/_admin/faults", json={"error_burst": 3}, headers=AUTH, timeout=5)
    statuses = [requests.get(url + LIST, headers=AUTH, timeout=5).status_code for _ in range(4)]
    assert statuses == [503, 503, 503, 200]
    assert requests.get(url + "/_admin/faults", headers=AUTH, timeout=5).json()["error_burst"] == 0


def test_error_rate_is_seeded_and_reproducible(district: Path, serve: Serve) -> None:
    runs = []
    for _ in range(2):
        url = serve(HotlineService(district, faults=Faults(FaultConfig(error_rate=0.5), seed=42)))
        runs.append(
            [requests.get(url + LIST, headers=AUTH, timeout=5).status_code for _ in range(12)]
        )
    assert runs[0] == runs[1]
    assert set(runs[0]) - {200} and set(runs[0]) <= {200, 500, 502, 503}


def test_slow_fault_delays_answers(district: Path, serve: Serve) -> None:
    url = start(district, serve, slow_ms=300)
    began = time.monotonic()
    assert requests.get(url + LIST, headers=AUTH, timeout=5).status_code == 200
    assert time.monotonic() - began >= 0.3


@pytest.mark.parametrize("body", [{"error_rate": 2}, {"slow": 5}, {"error_burst": -1}, [1]])
def test_admin_rejects_bad_switches(district: Path, serve: Serve, body: object) -> None:
    response = requests.post(
        start(district, serve) + "/_admin/faults", json=body, headers=AUTH, timeout=5
    )
    assert response.status_code == 400 and response.json()["message"]


def test_reloads_the_parquet_when_it_changes(district: Path, serve: Serve) -> None:
    clock.write_day(district, 4)
    url = start(district, serve)
    before, _ = fetch_all(url, 1000)
    path = district / "hotline/tickets.parquet"
    write_tickets(path, 80, seed=8)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a mtime surely different
    after, _ = fetch_all(url, 1000)
    assert len(after) == 80 > len(before)


def test_cli_announces_itself_and_cleans_up_on_sigterm(district: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "simulators.hotline.server",
        "--root",
        str(district),
        "--port",
        "0",
    ]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE)
    run_file = district / "run" / "hotline.json"
    try:
        deadline = time.monotonic() + 20
        while not run_file.exists():
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "no run file"
            time.sleep(0.05)
        info = json.loads(run_file.read_text(encoding="utf-8"))
        assert info["name"] == "hotline" and info["pid"] == process.pid
        assert info["url"] == f"http://127.0.0.1:{info['port']}"
        assert requests.get(info["url"] + "/health", timeout=5).json()["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert not run_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stderr:
            process.stderr.close()


def test_cli_refuses_other_hosts(district: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "simulators.hotline.server",
        "--root",
        str(district),
        "--host",
        "0.0.0.0",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "127.0.0.1" in result.stderr


@pytest.fixture(scope="module")
def big_district(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200,000 tickets (and a few cases): the upper end of the expected size."""
    root = build_root(tmp_path_factory.mktemp("big"), n_tickets=10, n_cases=10)
    write_tickets(root / "hotline/tickets.parquet", 200_000)
    clock.write_day(root, 4)
    return root


def test_pages_stay_fast_at_200k_tickets(big_district: Path, serve: Serve) -> None:
    url = start(big_district, serve)
    session = requests.Session()
    session.headers.update(AUTH)
    cursor, timings = None, []
    for _ in range(15):
        began = time.perf_counter()
        body = session.get(
            url + LIST,
            params={"page_size": 200, **({"cursor": cursor} if cursor else {})},
            timeout=10,
        ).json()
        timings.append(time.perf_counter() - began)
        cursor = body["next_cursor"]
    assert statistics.median(timings) < 0.1, timings
