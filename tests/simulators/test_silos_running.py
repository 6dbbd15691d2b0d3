"""The four silos as separate processes on a generated village: up, read, advance the clock, down."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from simulators import clock, runner
from simulators.district.generate import generate
from simulators.grid_registry.database import sqlite_url
from simulators.health_codes import drop, files

TOKEN = {"Authorization": "Bearer dev-hotline-token"}
KEY = {"X-Api-Key": "dev-city-key"}


@pytest.fixture(scope="module")
def village(tmp_path_factory):
    root = tmp_path_factory.mktemp("village")
    generate(root, residents=2000, seed=1, days=10)
    runner.up(root, ports={"hotline": 0, "city_cases": 0})
    yield root
    runner.down(root)


def _url(root: Path, name: str) -> str:
    return json.loads((root / "run" / f"{name}.json").read_text())["url"]


def _all_tickets(url: str, **params) -> list[dict]:
    out, cursor = [], None
    while True:
        body = requests.get(url + "/api/v1/tickets", headers=TOKEN, timeout=10,
                            params={**params, "page_size": 50, **({"cursor": cursor} if cursor else {})}).json()
        out += body["data"]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            return out


def _wait(predicate, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_all_four_silos_run_on_loopback(village):
    status = {s.name: s for s in runner.status(village)}
    assert all(s.running for s in status.values()), status
    for name in ("hotline", "city_cases"):
        assert status[name].url.startswith("http://127.0.0.1:")
    assert requests.get(_url(village, "hotline") + "/api/v1/tickets", timeout=5).status_code == 401
    assert requests.get(_url(village, "city_cases") + "/api/cases", headers=KEY, timeout=5).ok


def test_advancing_the_day_updates_every_silo(village):
    hot = _url(village, "hotline")
    engine = create_engine(sqlite_url(village))
    with engine.connect() as c:
        residents_before = c.execute(text("select count(*) from residents where is_deleted = 0")).scalar_one()
    day1 = _all_tickets(hot)
    since = requests.get(hot + "/api/v1/tickets", headers=TOKEN, params={"page_size": 1}, timeout=5).json()["server_time"]
    assert _wait(lambda: any(p.suffix == ".csv" for p in drop.drop_dir(village).iterdir()))

    runner.advance(village, 6)
    assert clock.read_day(village) == 6
    later = _all_tickets(hot, updated_since=since)
    old_ids = {t["ticket_id"] for t in day1}
    updated_old = [t for t in later if t["ticket_id"] in old_ids]
    assert updated_old, "a later sync must see updates of old tickets"
    assert len(_all_tickets(hot)) > len(day1)

    # The registry's writer applies the days' changes (arrivals, departures as soft deletes).
    def changed() -> bool:
        with engine.connect() as c:
            return c.execute(text("select count(*) from residents where is_deleted = 1")).scalar_one() > 0
    assert _wait(changed)
    with engine.connect() as c:
        assert c.execute(text("select count(*) from residents")).scalar_one() >= residents_before
    engine.dispose()

    # The uploader delivers days 0..6, including the re-sent file of day 4 under a new name.
    def delivered() -> bool:
        names = [p.name for p in drop.drop_dir(village).iterdir()]
        return len([n for n in names if not n.startswith(".")]) >= 8
    assert _wait(delivered)
    names = sorted(p.name for p in drop.drop_dir(village).iterdir())
    assert any("重发" in n for n in names) and any(n.endswith(".xlsx") for n in names)
    first = drop.drop_dir(village) / files.export_name(clock.start_date(village), "csv")
    table = files.read_export(first)
    assert table.num_rows > 1500


def test_up_refuses_a_folder_without_a_district(tmp_path):
    with pytest.raises(runner.SimulatorError, match="no simulated district"):
        runner.up(tmp_path)
    with pytest.raises(runner.SimulatorError, match="unknown silo"):
        runner.down(tmp_path, only="fax")


def test_down_stops_everything(tmp_path):
    generate(tmp_path, residents=300, seed=2, days=3)
    runner.up(tmp_path, only="hotline", ports={"hotline": 0})
    pid = next(s.pid for s in runner.status(tmp_path) if s.name == "hotline")
    assert runner.down(tmp_path) == ["hotline"]
    assert not any(s.running for s in runner.status(tmp_path))
    assert not (tmp_path / "run" / "hotline.json").exists()
    with pytest.raises(ProcessLookupError):
        import os
        os.kill(pid, 0)
