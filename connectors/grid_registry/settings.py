"""Constants of the grid-registry connector: tables, keys, required columns, paging and connection defaults."""

from __future__ import annotations

from datetime import timedelta

import pyarrow as pa

from connectors.common.landing import Entity

SOURCE = "grid_registry"

# Parents before children, so a sync lands a household's grid before the household.
TABLES = ("grids", "households", "residents", "special_groups", "grid_workers")

CURSOR = "updated_at"       # every table has it, indexed together with the primary key
# An incremental read starts at the saved updated_at minus this, inclusive: rows committed after
# the last sync with an equal or slightly older updated_at (a long transaction stamps its rows
# when it starts) are read again. Connection extra `?overlap=SECONDS` overrides it.
OVERLAP = timedelta(minutes=5)
# Reconciliation (a full keyset read of (key, updated_at, hash) against raw) runs nightly: hard
# deletes and back-dated edits leave no trace a cursor can follow, and a registry night is quiet.
RECONCILE_SCHEDULE = "30 1 * * *"     # 01:30 Beijing time, after the 00:00 sync
# A reconciliation on PostgreSQL/MariaDB fetches whole rows only for keys that may differ; when more
# than this share of the keys may (the first run: nothing to compare the source's hashes with),
# one unordered scan of the table is cheaper than fetching them key by key.
FETCH_ALL_SHARE = 0.2
# A key the registry no longer holds was deleted outright (the registry can delete rows).
MISSING_KIND = "hard_delete"
BATCH_SIZE = 50_000         # rows per keyset page (and per fetch of a first load's scan)
# A first (or full-refresh) load reads each table in one unordered scan instead of keyset pages:
# no position to resume from, and no index walk (on SQLite the ordered walk costs twice the scan).
SCAN_FIRST_LOAD = True
CONNECT_TIMEOUT_S = 10      # a dead server fails the load in seconds, not after the OS TCP timeout

TS = pa.timestamp("us", tz="UTC")
STR = pa.string()
DATE = pa.date32()
BOOL = pa.bool_()

KEYS: dict[str, tuple[str, ...]] = {
    "grids": ("grid_code",),
    "households": ("household_id",),
    "residents": ("resident_id",),
    "special_groups": ("resident_id", "group_type"),
    "grid_workers": ("worker_id",),
}

# What the warehouse relies on downstream; any other column lands as it comes (and new ones are
# reported). A column missing or arriving with another type fails the table's load (SchemaDrift).
REQUIRED: dict[str, dict[str, pa.DataType]] = {
    "grids": {"grid_code": STR, "level": STR, "name": STR, "parent_code": STR, "updated_at": TS},
    "households": {"household_id": STR, "grid_code": STR, "address": STR, "compound": STR,
                   "building": STR, "unit": STR, "room": STR, "updated_at": TS},
    "residents": {"resident_id": STR, "household_id": STR, "name": STR, "id_number": STR,
                  "sex": STR, "birth_date": DATE, "phone": STR, "residence_type": STR,
                  "updated_at": TS, "is_deleted": BOOL, "deleted_at": TS},
    "special_groups": {"resident_id": STR, "group_type": STR, "since": DATE, "updated_at": TS},
    "grid_workers": {"worker_id": STR, "name": STR, "phone": STR, "grid_code": STR,
                     "role": STR, "updated_at": TS},
}

ENTITIES: dict[str, Entity] = {
    name: Entity(SOURCE, name, key=KEYS[name], required=REQUIRED[name], version=CURSOR) for name in TABLES
}

# Connection extras passed on to the driver as URL query parameters. Anything else in an Airflow
# Connection's extra (hook options such as `cursor`) is meant for Airflow, not for the driver.
DRIVER_EXTRAS = {
    "postgresql": ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout",
                   "application_name", "options", "target_session_attrs"),
    "mysql": ("charset", "connect_timeout", "read_timeout", "ssl_ca", "ssl_cert", "ssl_key",
              "ssl_check_hostname"),
}
