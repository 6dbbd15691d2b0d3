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
