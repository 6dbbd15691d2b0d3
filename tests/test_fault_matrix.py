"""The fault matrix against the real simulators: each fault ends in a clear, logged state, and the
next good run catches up with nothing lost and nothing twice.

One case per fault: a source down for a whole run, 30% 5xx, a 429 storm, answers slower than the
connector's time-out, truncated files in the health-code drop (a CSV cut mid-line, an XLSX cut
mid-zip). Syncs run through the CLI (`onenet sync`, exit code and its one-line error), with page
sizes of 10 so a small village still takes many requests, and short time-outs and retries set as
connection extras. After each case, raw is compared per key and content with a clean reference
sync of the same simulated day.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import requests

from bench.crash_trials import District, make_district, raw_rows

REPO = Path(__file__).resolve().parents[1]
DAY = 3
HTTP = {"hotline": ("simulators.hotline.server", "Authorization", "Bearer dev-hotline-token", "dev-hotline-token"),
        "city_cases": ("simulators.city_cases.server", "X-Api-Key", "dev-city-key", "dev-city-key")}
# The CLI with page sizes of 10: a small village's day is then many requests, not one.
CLI = ("import sys; from connectors.hotline import settings as h; from connectors.city_cases import settings as c; "
       "h.PAGE_SIZE = c.PAGE_LIMIT = 10; from onenet.cli import main; sys.exit(main(sys.argv[1:], prog_name='onenet'))")
QUICK = "backoff=0.01&max_backoff=0.05"  # retries without the production waits


class Silo:
    """One HTTP simulator process of the district, on a port it keeps across restarts."""

    def __init__(self, district: District, name: str) -> None:
        self.district, self.name = district, name
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self, *, rate_limit: float = 0.0, faults: dict | None = None) -> Silo:
        module = HTTP[self.name][0]
        run_file = self.district.root / "run" / f"{self.name}.json"
        run_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--root", str(self.district.root), "--port", str(self.port),
             "--rate-limit", str(rate_limit), "--faults", json.dumps(faults or {})],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"{self.name} simulator exited with {self.proc.returncode}"
            info = json.loads(run_file.read_text(encoding="utf-8")) if run_file.exists() else {}
            if info.get("pid") == self.proc.pid:
                self.port = int(info["port"])
                try:
                    if requests.get(f"{self.url}/health", timeout=2).ok:
                        return self
                except requests.RequestException:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"{self.name} simulator did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def faults(self, **switches: float) -> None:
        _, header, value, _ = HTTP[self.name]
        resp = requests.post(f"{self.url}/_admin/faults", json={"seed": 7, **switches},
                             headers={header: value}, timeout=5)
        assert resp.ok, resp.text

    def uri(self, extras: str = QUICK) -> str:
        return f"http://:{HTTP[self.name][3]}@127.0.0.1:{self.port}?{extras}"


@pytest.fixture(scope="module")
def district(tmp_path_factory) -> District:
    return make_district(tmp_path_factory.mktemp("faults"), residents=3000, seed=5, day=DAY)


@pytest.fixture(scope="module")
def silos(district: District) -> Iterator[dict[str, Silo]]:
    running = {name: Silo(district, name).start() for name in HTTP}
    yield running
    for silo in running.values():
        silo.stop()


def env_for(district: District, warehouse: Path, silos: dict[str, Silo], *, drop: Path | None = None,
            **uris: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ONENET_", "AIRFLOW_CONN_ONENET_"))}
    drop = drop or district.root / "health_codes" / "drop"
    return {**env, "ONENET_DISTRICT": str(district.root), "ONENET_WAREHOUSE": str(warehouse),
            "ONENET_HOME": str(warehouse.parent),
            "AIRFLOW_CONN_ONENET_HOTLINE": uris.get("hotline", silos["hotline"].uri()),
            "AIRFLOW_CONN_ONENET_CITY_CASES": uris.get("city_cases", silos["city_cases"].uri()),
            "AIRFLOW_CONN_ONENET_HEALTH_CODES": uris.get("health_codes", f"{drop.as_uri()}?stable_seconds=0")}


def sync(env: dict[str, str], source: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLI, "sync", source], env=env, cwd=REPO, text=True,
                          capture_output=True, timeout=120)


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The CLI's error: exactly one non-empty line on stderr besides the progress bar."""
    lines = [line for line in proc.stderr.splitlines() if line.strip().lower().startswith("error")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def loads(warehouse: Path, source: str) -> list[tuple[str, str, int]]:
    """(status, message, rows landed) of every load of `source`, oldest first."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute("select status, coalesce(message, ''), coalesce(rows_landed, 0) from meta.loads "
                           "where source = ? "
                           "order by started_at", [source]).fetchall()
    finally:
        con.close()


def raw(warehouse: Path) -> dict:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return raw_rows(con)
    finally:
        con.close()


def states(warehouse: Path, source: str) -> list:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute("select entity from meta.source_state where source = ?", [source]).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def reference(district: District, silos: dict[str, Silo], tmp_path_factory) -> dict:
    """Raw rows (per key and content) of one clean sync of every source on the same simulated day."""
    warehouse = tmp_path_factory.mktemp("reference") / "warehouse.duckdb"
    env = env_for(district, warehouse, silos)
    done = sync(env, "all")
    assert done.returncode == 0, done.stderr
    rows = raw(warehouse)
    assert all(rows[t] for t in ("hotline_tickets", "city_cases_cases", "health_codes_exports"))
    return rows


def caught_up(warehouse: Path, reference: dict, table: str) -> None:
    got = raw(warehouse)[table]
    assert got == reference[table], (f"{table}: {sum((reference[table] - got).values())} rows lost, "
                                     f"{sum((got - reference[table]).values())} extra")


def test_a_source_down_for_a_whole_run(district, silos, reference, tmp_path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    silo = silos["city_cases"]
    env = env_for(district, warehouse, silos, city_cases=silo.uri(f"max_retries=2&{QUICK}"))
    silo.stop()  # connection refused on its port for the whole run
    try:
        down = sync(env, "city_cases")
    finally:
        silo.start()
    assert down.returncode != 0
    line = error_line(down)
    assert "city_cases" in line and "ConnectionError" in line and "may be down" in line, line
    [(status, message, _)] = loads(warehouse, "city_cases")
    assert status == "failed" and "city_cases" in message and "ConnectionError" in message and "3 tries" in message
    assert states(warehouse, "city_cases") == []  # nothing landed, the state did not move
    back = sync(env, "city_cases")  # the server is back, same address
    assert back.returncode == 0, back.stderr
    caught_up(warehouse, reference, "city_cases_cases")


def test_thirty_percent_5xx(district, silos, reference, tmp_path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    silo = silos["hotline"]
    env = env_for(district, warehouse, silos)
    silo.faults(error_rate=0.3)
    try:
        flaky = sync(env, "hotline")
    finally:
        silo.faults()
    assert flaky.returncode == 0, flaky.stderr
    [(status, message, landed)] = loads(warehouse, "hotline")
    assert status == "succeeded" and "request(s) retried" in message and landed
    caught_up(warehouse, reference, "hotline_tickets")  # nothing lost to the errors
    again = sync(env, "hotline")  # the next good run: nothing new, nothing twice
    assert again.returncode == 0, again.stderr
    assert loads(warehouse, "hotline")[-1][::2] == ("succeeded", 0)
    caught_up(warehouse, reference, "hotline_tickets")


def test_a_429_storm(district, silos, reference, tmp_path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    silo = silos["hotline"]
    silo.stop()
    # One request every 2 s, against a client told not to wait for Retry-After: every page after
    # the first is refused.
    silo.start(rate_limit=0.5)
    env = env_for(district, warehouse, silos, hotline=silo.uri(f"max_rate_limit_waits=0&max_retries=2&{QUICK}"))
    try:
        storm = sync(env, "hotline")
    finally:
        silo.stop()
        silo.start()
    assert storm.returncode != 0
    line = error_line(storm)
    assert "hotline" in line and "HTTP 429" in line, line
    [(status, message, _)] = loads(warehouse, "hotline")
    assert status == "failed" and message.startswith("hotline:") and "HTTP 429" in message
    assert states(warehouse, "hotline") == []
    # The storm is over (the server restarted without the limit): the next run lands everything.
    good = sync(env_for(district, warehouse, silos), "hotline")
    assert good.returncode == 0, good.stderr
    caught_up(warehouse, reference, "hotline_tickets")


def test_answers_slower_than_the_timeout(district, silos, reference, tmp_path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    silo = silos["city_cases"]
    env = env_for(district, warehouse, silos, city_cases=silo.uri(f"timeout=0.3&max_retries=1&{QUICK}"))
    silo.faults(slow_ms=1500)
    try:
        slow = sync(env, "city_cases")
    finally:
        silo.faults()
    assert slow.returncode != 0
    line = error_line(slow)
    assert "city_cases" in line and "ReadTimeout" in line, line
    [(status, message, _)] = loads(warehouse, "city_cases")
    assert status == "failed" and "city_cases" in message and "timed out" in message
    good = sync(env, "city_cases")
    assert good.returncode == 0, good.stderr
    caught_up(warehouse, reference, "city_cases_cases")


def _cut_csv_inside_a_value(path: Path, at: float) -> bytes:
    """Cut a GB18030 CSV inside the last value of the line at `at` of its bytes (every field still
    there, the last one a character short); return the whole bytes."""
    whole = path.read_bytes()
    end = whole.index(b"\r\n", int(len(whole) * at)) - 2  # one two-byte character short
    whole[:end].decode("gb18030")  # a clean cut between characters: only the line is short
    path.write_bytes(whole[:end])
    return whole


def quarantined(warehouse: Path, source: str) -> list[tuple[str, str]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute("select position, reasons from meta.quarantine where source = ? "
                           "order by position", [source]).fetchall()
    finally:
        con.close()


def test_truncated_files_in_the_drop(district, silos, reference, tmp_path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    drop = tmp_path / "drop"
    shutil.copytree(district.root / "health_codes" / "drop", drop)
    csv, xlsx = sorted(drop.glob("*.csv"))[0], next(drop.glob("*.xlsx"))
    env = env_for(district, warehouse, silos, drop=drop)

    # A CSV that stopped inside a line long ago (judged as it is: that line is held back, the
    # rest lands), and an XLSX cut mid-zip that was just written (an upload in progress: waited for).
    whole_csv = _cut_csv_inside_a_value(csv, 0.6)
    old = time.time() - 3600
    os.utime(csv, (old, old))
    whole_xlsx = xlsx.read_bytes()
    xlsx.write_bytes(whole_xlsx[: len(whole_xlsx) // 2])
    first = sync(env, "health_codes")
    assert first.returncode == 0, first.stderr
    [(status, message, landed)] = loads(warehouse, "health_codes")
    assert status == "succeeded" and landed
    assert f"{xlsx.name}: not a complete XLSX (zip) yet; left for the next sync" in message
    cut_line = whole_csv[:len(csv.read_bytes())].count(b"\n") + 1
    assert f"{csv.name}: 1 broken line(s) quarantined (line {cut_line})" in message, message
    held = dict(quarantined(warehouse, "health_codes"))
    assert "no final line break" in held[f"{csv.name} line {cut_line}"]

    # The XLSX, still cut, is old now: judged as it is, it is set aside whole, naming it; the load succeeds.
    os.utime(xlsx, (old, old))
    cut = sync(env, "health_codes")
    assert cut.returncode == 0, cut.stderr
    status, message, _ = loads(warehouse, "health_codes")[-1]
    assert status == "succeeded" and f"{xlsx.name}: set aside — health_codes: {xlsx.name} starts like an XLSX but " \
        "is not a valid zip" in message

    # The platform re-sends both files whole: the next run lands what was missing, once.
    csv.write_bytes(whole_csv)
    xlsx.write_bytes(whole_xlsx)
    good = sync(env, "health_codes")
    assert good.returncode == 0, good.stderr
    caught_up(warehouse, reference, "health_codes_exports")
