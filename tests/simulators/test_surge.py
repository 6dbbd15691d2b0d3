"""The surge month option of the district generator: deterministic, shaped as asked, the base untouched,
and silos that answer slower and time out more under the surge's load."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest
import requests

from simulators import clock
from simulators.district.generate import GeneratorError, generate
from simulators.district.surge import SurgeSpec
from simulators.hotline.server import HotlineService

SURGE = SurgeSpec(peak=5, start_day=4, ramp_days=3, peak_days=3, fall_days=2, code_flip_share=0.3)
AUTH = {"Authorization": "Bearer dev-hotline-token"}


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def surged(tmp_path_factory) -> Path:
    """A 6,000-resident town over 14 days with a x5 surge peaking on days 6-8."""
    root = tmp_path_factory.mktemp("surged")
    generate(root, residents=6000, seed=3, days=14, surge=SURGE)
    return root


def _per_day(root: Path, sql: str) -> dict[int, int]:
    start = clock.start_date(root)
    rows = duckdb.sql(sql.format(root=root)).fetchall()
    return {(d - start).days: n for d, n in rows}


def test_level_ramps_to_the_peak_and_falls_back():
    levels = [SURGE.level(d) for d in range(14)]
    assert levels[:4] == [0.0] * 4 and levels[11:] == [0.0] * 3
    assert levels[4] < levels[5] < levels[6] == levels[7] == levels[8] == 1.0 > levels[9] > levels[10] > 0
    assert SURGE.hotline(6) == 5.0 and SURGE.cases(6) == 3.0 and SURGE.peak_day == 6


def test_same_arguments_same_bytes_and_no_surge_unchanged(tmp_path, surged):
    again = tmp_path / "again"
    generate(again, residents=6000, seed=3, days=14, surge=SURGE)
    assert _digest(again) == _digest(surged)
    plain = tmp_path / "plain"
    manifest = generate(plain, residents=6000, seed=3, days=14)
    assert "surge" not in manifest
    assert json.loads((surged / "manifest.json").read_text())["surge"]["peak"] == 5
    # the registry is the same population either way; the hotline is not
    assert _digest(plain)["grid_registry/registry.sqlite"] == _digest(surged)["grid_registry/registry.sqlite"]
    assert _digest(plain)["hotline/tickets.parquet"] != _digest(surged)["hotline/tickets.parquet"]


def test_hotline_volume_follows_the_surge(surged):
    tickets = _per_day(surged, "select (timezone('Asia/Shanghai', received_at))::date, count(*) "
                               "from '{root}/hotline/tickets.parquet' group by 1")
    quiet = sum(tickets[d] for d in range(4)) / 4
    peak = sum(tickets[d] for d in (6, 7, 8)) / 3
    assert 3.5 < peak / quiet < 6.5
    assert tickets[4] < tickets[6] and sum(tickets[d] for d in (11, 12, 13)) / 3 < 2 * quiet
    epidemic = _per_day(surged, "select (timezone('Asia/Shanghai', received_at))::date, "
                                "avg((category = '疫情防控')::int) * 1000 from '{root}/hotline/tickets.parquet' group by 1")
    assert sum(epidemic[d] for d in (6, 7, 8)) > 1.4 * sum(epidemic[d] for d in range(3))


def test_city_cases_rise_and_codes_flip_within_a_day(surged):
    cases = _per_day(surged, "select (timezone('Asia/Shanghai', reported_at))::date, count(*) "
                             "from '{root}/city_cases/cases.parquet' group by 1")
    quiet = sum(cases.get(d, 0) for d in range(4)) / 4
    assert sum(cases[d] for d in (6, 7, 8)) / 3 > 2.5 * quiet
    truth = duckdb.sql(f"select split_part(record_key, '#', 1) as day, count(*) from "
                       f"'{surged}/truth/source_records.parquet' where source = 'health_codes.exports' "
                       f"group by 1 order by 1").fetchall()
    rows = dict(truth)
    key = (clock.start_date(surged) + timedelta(days=SURGE.peak_day)).strftime("%Y%m%d")
    others = [n for d, n in rows.items() if d != key and d != min(rows)]  # day 0 is the full export
    assert rows[key] > 0.2 * 6000 and rows[key] > 5 * max(others)


def test_bad_surge_is_refused(tmp_path):
    with pytest.raises(ValueError, match="x1 to x10"):
        SurgeSpec(peak=12)
    with pytest.raises(GeneratorError, match="does not fit"):
        generate(tmp_path / "d", residents=300, seed=1, days=5, surge=SurgeSpec(peak=3, start_day=4))


def test_silos_slower_and_timing_out_under_load(surged, serve, tmp_path):
    """At the peak the hotline answers 504 after its timeout to a share of requests, and more slowly;
    before the surge it answers every request."""
    spec = json.loads((surged / "manifest.json").read_text())
    root = tmp_path / "loaded"
    root.mkdir()
    # the same district, its silos told to time out more often and sooner, so the test is quick
    (root / "manifest.json").write_text(json.dumps({**spec, "surge": {**spec["surge"], "timeout_rate": 0.3,
                                                                       "timeout_ms": 50, "slow_ms": 20}}))
    (root / "hotline").mkdir()
    (root / "hotline" / "tickets.parquet").write_bytes((surged / "hotline" / "tickets.parquet").read_bytes())
    url = serve(HotlineService(root, rate_limit=0))

    def statuses(day: int) -> list[int]:
        clock.write_day(root, day)
        return [requests.get(url + "/api/v1/tickets", params={"page_size": 1}, headers=AUTH, timeout=10).status_code
                for _ in range(40)]

    quiet = statuses(2)
    assert set(quiet) == {200}
    peak = statuses(7)
    assert peak.count(504) >= 4 and set(peak) <= {200, 504}
