"""Fixtures for warehouse tests: one validated village per test session, copied per test."""

from __future__ import annotations

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
