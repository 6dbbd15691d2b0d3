"""The dlt side of bench/connectors_vs_dlt.py: one initial load with dlt's verified sources, printed as JSON."""

# Runs with the throwaway dlt venv's python, never ours: it imports nothing from onenet.

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time

# No telemetry from a benchmark, and no progress chatter on stdout (stdout carries the JSON).
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")

import dlt  # noqa: E402
import pandas  # noqa: E402, F401 - pay the one-time pandas import outside the timed part, as our side does
from dlt.sources.filesystem import filesystem, read_csv  # noqa: E402
from dlt.sources.rest_api import rest_api_source  # noqa: E402
from dlt.sources.sql_database import sql_database  # noqa: E402

# Our connectors start from nothing too; a date before any simulated record plays "no state".
SINCE_EVER = "2000-01-01T00:00:00+08:00"
REGISTRY_TABLES = ["grids", "households", "residents", "special_groups", "grid_workers"]
# The English names connectors.health_codes lands the 10 headers under. dlt's default naming
# convention would turn every Chinese header into "x" and collapse them into one column.
HEALTH_COLUMNS = ["record_no", "name", "id_number", "phone", "code_color", "color_since", "vaccine_doses",
                  "last_test_at", "last_test_result", "community"]


def hotline(a: argparse.Namespace):
    # Same paging as connectors.hotline: 500 per page, follow next_cursor, updated_since on updated_at.
    return rest_api_source({
        "client": {
            "base_url": a.url,
            "auth": {"type": "bearer", "token": a.secret},
            "paginator": {"type": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"},
        },
        "resources": [{
            "name": "tickets", "primary_key": "ticket_id", "write_disposition": "merge",
            "endpoint": {
                "path": "/api/v1/tickets", "data_selector": "data",
                "params": {
                    "page_size": 500,
                    "updated_since": {"type": "incremental", "cursor_path": "updated_at",
                                      "initial_value": SINCE_EVER},
                },
            },
        }],
    })


def city_cases(a: argparse.Namespace):
    # The feed's cursor is never null, so has_more decides the end, as in connectors.city_cases.
    return rest_api_source({
        "client": {
            "base_url": a.url,
            "auth": {"type": "api_key", "name": "X-Api-Key", "api_key": a.secret, "location": "header"},
            "paginator": {"type": "cursor", "cursor_path": "cursor", "cursor_param": "cursor",
                          "has_more_path": "has_more"},
        },
        "resources": [{
            "name": "cases", "primary_key": "case_id", "write_disposition": "merge",
            "endpoint": {
                "path": "/api/cases", "data_selector": "cases", "params": {"limit": 500},
                "incremental": {"cursor_path": "updated_at", "initial_value": SINCE_EVER},
            },
        }],
    })


def grid_registry(a: argparse.Namespace):
    # Primary keys come from reflection; incremental on updated_at like our keyset cursor.
    source = sql_database(credentials=a.url, table_names=REGISTRY_TABLES, backend=a.backend,
                          chunk_size=50_000, reflection_level="full")
    for resource in source.resources.values():
        resource.apply_hints(incremental=dlt.sources.incremental("updated_at"), write_disposition="merge")
    return source


def health_codes(a: argparse.Namespace):
    # New files by modification date; every column as text, decoded as GB18030 by pandas.
    files = filesystem(bucket_url=a.url, file_glob=a.file_glob,
                       incremental=dlt.sources.incremental("modification_date"))
    # Append, not merge: the file has no key of its own (export_date comes from the file name).
    reader = read_csv(encoding="gb18030", dtype=str, header=0, names=HEALTH_COLUMNS, chunksize=50_000)
    return (files | reader).with_name("exports").apply_hints(write_disposition="append")


SOURCES = {"hotline": hotline, "city_cases": city_cases, "grid_registry": grid_registry,
           "health_codes": health_codes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", choices=SOURCES)
    parser.add_argument("--url", required=True, help="base URL, SQLAlchemy URL or folder URL")
    parser.add_argument("--secret", default="", help="token or API key")
    parser.add_argument("--dest", required=True, help="DuckDB file to load into")
    parser.add_argument("--pipelines-dir", required=True, help="dlt's working folder (its state lives here)")
    parser.add_argument("--file-glob", default="*.csv", help="health_codes: which files of the folder")
    parser.add_argument("--backend", default="pyarrow", help="sql_database backend")
    parser.add_argument("--loader-file-format", default=None, help="insert_values (dlt's duckdb default), parquet")
    a = parser.parse_args()
    pipeline = dlt.pipeline(pipeline_name=f"bench_{a.source}", destination=dlt.destinations.duckdb(a.dest),
                            dataset_name="raw", pipelines_dir=a.pipelines_dir)
    # Timed like our side: from building the source (sql_database reflects here) to the commit.
    t0 = time.perf_counter()
    info = pipeline.run(SOURCES[a.source](a), loader_file_format=a.loader_file_format)
    seconds = time.perf_counter() - t0
    info.raise_on_failed_jobs()
    counts = pipeline.last_trace.last_normalize_info.row_counts
    rows = sum(n for table, n in counts.items() if not table.startswith("_dlt"))
    print(json.dumps({"rows": rows, "seconds": seconds, "tables": counts, "dlt": dlt.__version__,
                      "duckdb": importlib.metadata.version("duckdb"),
                      "connectorx": importlib.metadata.version("connectorx"),
                      "python": sys.version.split()[0]}))


if __name__ == "__main__":
    main()
