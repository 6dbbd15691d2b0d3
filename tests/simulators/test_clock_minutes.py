"""The simulated clock in minutes: `onenet simulators advance --minutes 15` moves the silos' now by a
quarter hour, and the hotline API shows exactly the tickets received by then."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
import requests
from click.testing import CliRunner

from onenet.cli import main
from simulators import clock, runner
from simulators.district.generate import generate
from simulators.hotline.server import HotlineService

AUTH = {"Authorization": "Bearer dev-hotline-token"}


@pytest.fixture(scope="module")
def town(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("minutes")
    generate(root, residents=8000, seed=2, days=4)
    return root


def _received(url: str) -> set[str]:
    """Every ticket the API shows now (all pages)."""
    seen: set[str] = set()
    cursor = None
    while True:
        params = {"page_size": 1000, **({"cursor": cursor} if cursor else {})}
        body = requests.get(url + "/api/v1/tickets", params=params, headers=AUTH, timeout=10).json()
        seen.update(t["ticket_id"] for t in body["data"])
        if not body["has_more"]:
            return seen
        cursor = body["next_cursor"]


def test_advance_minutes_shows_the_quarter_hours_tickets(town, serve):
    url = serve(HotlineService(town, rate_limit=0))
    runner.advance(town, 1)
    start = clock.now_utc(town)
    tickets = duckdb.sql(f"select ticket_id, received_at from '{town}/hotline/tickets.parquet'").fetchall()
    result = CliRunner().invoke(main, ["simulators", "advance", "--root", str(town), "--minutes", "600"])
    assert result.exit_code == 0, result.output
    assert "day 1 + 600 min" in result.output and clock.read_clock(town) == (1, 600)
    before = _received(url)
    assert before == {t for t, at in tickets if at <= start + timedelta(minutes=600)}
    result = CliRunner().invoke(main, ["simulators", "advance", "--root", str(town), "--minutes", "15"])
    assert result.exit_code == 0, result.output
    after = _received(url)
    window = {t for t, at in tickets if start + timedelta(minutes=600) < at <= start + timedelta(minutes=615)}
    assert window and after - before == window  # the 10:00-10:15 calls of day 2, Beijing time
    assert requests.get(url + "/health", timeout=5).json()["server_time"].startswith(
        (start + timedelta(minutes=615)).astimezone(clock.BEIJING).isoformat()[:16])


def test_minutes_cross_midnight_and_stop_at_the_data_end(town):
    runner.advance_minutes(town, 24 * 60 - 615 + 30)  # from day 1 + 615 min to day 2 + 30 min
    assert clock.read_clock(town) == (2, 30)
    with pytest.raises(runner.SimulatorError, match="between 3"):
        runner.advance(town, 2)  # day 2 is behind the clock now
    assert runner.advance(town, 3) == 3 and clock.read_clock(town) == (3, 0)
    with pytest.raises(runner.SimulatorError, match="ends with day 3"):
        runner.advance_minutes(town, 15)
