"""Fixtures for warehouse tests: one validated village per test session, copied per test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from tests.warehouse.village import build_village, copy_warehouse


@pytest.fixture(scope="session")
def village(tmp_path_factory):
    """(district root, path of a validated warehouse): 2,000 residents, all 30 days synced."""
    return build_village(tmp_path_factory.mktemp("village"))


@pytest.fixture
def village_warehouse(village, tmp_path):
    """A private, writable copy of the village warehouse."""
    return copy_warehouse(village[1], tmp_path / "warehouse.duckdb")


@pytest.fixture(scope="session")
def merged_town(tmp_path_factory):
    """(district root, merged warehouse): 12,000 residents in two communities, synced, validated, merged."""
    from warehouse import db
    from warehouse.merge import merge

    root, warehouse = build_village(tmp_path_factory.mktemp("town"), residents=12_000, seed=2)
    con = db.connect(warehouse)
    try:
        merge(con)
    finally:
        con.close()
    return root, warehouse


@pytest.fixture
def town_warehouse(merged_town, tmp_path):
    """A private, writable copy of the merged town warehouse."""
    return copy_warehouse(merged_town[1], tmp_path / "town.duckdb")


@dataclass(frozen=True)
class Town:
    """A test's own copy of the merged town, the folders its readers use, and the warehouse as oracle."""

    warehouse: Path
    published: Path
    exports: Path
    log: Path

    def oracle(self, sql: str, params: list | None = None) -> list[tuple]:
        """Rows of `sql` on the warehouse itself (read-only): what a test compares published output with."""
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def communities(self) -> list[tuple[str, str]]:
        """(code, name) of every community, in code order."""
        return self.oracle("select community_code, community_name from core.grid where grid_level = 'community' "
                           "order by community_code")

    def publish(self) -> None:
        """Publish every audience's snapshot from the warehouse, as the end of a merge does."""
        from onenet import pipeline
        from warehouse import db

        con = db.connect(self.warehouse)
        try:
            pipeline.publish(con)
        finally:
            con.close()


@pytest.fixture
def town(town_warehouse, tmp_path, monkeypatch) -> Town:
    """The merged town with this test's own warehouse copy, published folder, exports and access log
    (nothing published yet: call town.publish(), or use `published_town`)."""
    t = Town(town_warehouse, tmp_path / "published", tmp_path / "exports", tmp_path / "audit" / "access-log.jsonl")
    monkeypatch.setenv("ONENET_WAREHOUSE", str(t.warehouse))
    monkeypatch.setenv("ONENET_PUBLISHED", str(t.published))
    monkeypatch.setenv("ONENET_EXPORTS", str(t.exports))
    monkeypatch.setenv("ONENET_ACCESS_LOG", str(t.log))
    monkeypatch.delenv("ONENET_SERVING_URL", raising=False)
    monkeypatch.delenv("ONENET_TEMPLATES_DIR", raising=False)
    return t


@pytest.fixture
def published_town(town) -> Town:
    """The merged town, published into this test's own folder."""
    town.publish()
    return town
