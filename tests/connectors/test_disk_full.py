"""A full disk in a pipeline step is one line naming the step, the path and the fix, not a traceback."""

from __future__ import annotations

import os
import subprocess

import duckdb
import pytest
from click.testing import CliRunner

from bench.health_codes_memory import make
from onenet import pipeline
from onenet.cli import main


def test_a_full_disk_is_found_anywhere_in_the_chain():
    try:
        try:
            raise OSError(28, "No space left on device", "/data/w.duckdb.wal")
        except OSError as inner:
            raise duckdb.FatalException("FATAL Error: database has been invalidated") from inner
    except duckdb.FatalException as outer:
        assert pipeline._disk_full(outer) == "/data/w.duckdb.wal"
    text = duckdb.IOException('IO Error: Could not write file "/mnt/x/w.duckdb": No space left on device')
    assert pipeline._disk_full(text) == "/mnt/x/w.duckdb"
    assert pipeline._disk_full(duckdb.IOException("IO Error: permission denied")) is None


@pytest.fixture
def small_disk(tmp_path):
    """A real 4 MB tmpfs (needs root to mount; skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_sync_onto_a_full_disk_fails_in_one_line(small_disk, tmp_path, monkeypatch):
    drop = tmp_path / "drop"
    make(60_000, drop)  # about 7 MB of GB18030: more than the disk holds once landed
    monkeypatch.setenv("ONENET_WAREHOUSE", str(small_disk / "w.duckdb"))
    monkeypatch.setenv("AIRFLOW_CONN_ONENET_HEALTH_CODES", f"{drop.as_uri()}?stable_seconds=0")
    result = CliRunner().invoke(main, ["sync", "health_codes"])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "Exception" not in result.output, result.output
    [line] = [x for x in result.output.splitlines() if "disk is full" in x]
    assert f"sync health_codes: the disk is full ({small_disk}" in line and "no space left on device" in line
    assert "free space on that disk" in line and "run `onenet sync health_codes` again" in line
