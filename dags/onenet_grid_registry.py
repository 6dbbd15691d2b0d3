"""
### onenet_grid_registry — the grid-management registry (网格化管理), nightly

`sync → validate → publish` for the registry's grids, households, residents, special groups and
grid workers:

- **sync** (pool `onenet_duckdb`): incremental SQL reads (updated-at watermark per table) from the
  registry database into `raw.grid_registry_*`.
- **validate** (pool `onenet_duckdb`): Great Expectations per table (ID checksum, division codes,
  mobile numbers …); critical failures to `meta.quarantine`, the rest to `staging.grid_registry_*`.
- **publish**: Asset `duckdb://onenet/staging/grid_registry`, only when new rows reached staging.

Runs at 00:00 Beijing time for the day that just ended. The registry keeps no history of a past
day, so a backfill of a past day reads the registry as it is now from the stored watermark: it
lands only rows changed since the last sync (usually none) and never lands a row twice.
Connection: `AIRFLOW_CONN_ONENET_GRID_REGISTRY` (PostgreSQL/MariaDB URI; unset: the simulated
SQLite registry).
"""

from onenet.dag_factory import data_interval_timetable, each_district, source_dag

# One DAG per district of $ONENET_DISTRICTS (onenet_grid_registry__<name>), or onenet_grid_registry without it.
globals().update(each_district(lambda district: source_dag(
    "grid_registry",
    schedule=data_interval_timetable("0 0 * * *"),
    doc_md=__doc__,
    tags=["nightly", "sql"],
    district=district,
)))
