"""Standardisation: IDs, phones and addresses as DuckDB macros, names as UDFs, the staging models."""

from warehouse.standardise.build import MODELS, StagingModelError, build_staging, install

__all__ = ["MODELS", "StagingModelError", "build_staging", "install"]
