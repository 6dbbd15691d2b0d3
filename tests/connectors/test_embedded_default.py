"""The embedded default of the HTTP sources: the running simulator's own address, never a guessed port."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from connectors.common.config import connection
from connectors.common.exceptions import ConfigurationError
from onenet import settings
from onenet.cli import main


@pytest.fixture
def district(tmp_path, monkeypatch):
    root = tmp_path / "district"
    (root / "run").mkdir(parents=True)
    monkeypatch.setenv("ONENET_DISTRICT", str(root))
    monkeypatch.setenv("ONENET_WAREHOUSE", str(tmp_path / "w.duckdb"))
    for source in ("hotline", "city_cases"):
        monkeypatch.delenv(f"AIRFLOW_CONN_ONENET_{source.upper()}", raising=False)
    return root


@pytest.mark.parametrize("source", ["hotline", "city_cases"])
def test_a_missing_run_file_is_a_clear_error_not_a_fallback_port(district, source):
    with pytest.raises(ConfigurationError) as caught:
        settings.embedded_uri(source)
    text = str(caught.value)
    assert str(district / "run" / f"{source}.json") in text
    assert "onenet simulators up" in text and f"AIRFLOW_CONN_ONENET_{source.upper()}" in text
    assert "18345" not in text and "18346" not in text


def test_the_run_file_gives_the_address(district):
    (district / "run" / "hotline.json").write_text(json.dumps({"url": "http://127.0.0.1:40123"}), encoding="utf-8")
    assert settings.embedded_uri("hotline").endswith("@127.0.0.1:40123")


def test_an_unreadable_run_file_says_so(district):
    (district / "run" / "city_cases.json").write_text("{half", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="unreadable"):
        settings.embedded_uri("city_cases")


def test_a_configured_connection_never_asks_for_the_embedded_default(district, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ONENET_HOTLINE", "http://:token@10.0.0.7:8080")
    conn = connection("onenet_hotline", lambda: settings.embedded_uri("hotline"))  # would raise if called
    assert (conn.host, conn.port) == ("10.0.0.7", 8080)


def test_sync_without_a_simulator_fails_in_one_line(district):
    result = CliRunner().invoke(main, ["sync", "hotline"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if "hotline" in line]
    assert any("no simulator is running" in line for line in lines), result.output
    assert "Traceback" not in result.output
