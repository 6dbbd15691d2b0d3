"""The DuckDB warehouse: migrations, standardisation, resolution, models (issue: resolution)."""
