"""
### onenet_health_codes — the health-code platform's daily export, when the file has arrived

`wait_for_file → sync → validate → publish`:

- **wait_for_file**: a *deferrable* sensor (looks once, then hands the wait to the triggerer with
  the standard provider's `FileTrigger`, every 5 minutes, for up to 20 hours: no worker slot or
  process held) until `健康码日报_YYYYMMDD.csv|xlsx` (or its re-send `…(重发).csv`) for the run's
  Beijing day is in the drop folder. Needs `airflow triggerer` running.
- **sync** (pool `onenet_duckdb`): lands every new, complete export file of the drop folder into
  `raw.health_codes_exports` (file hashes: a file or a re-send with the same rows lands once).
- **validate** (pool `onenet_duckdb`): Great Expectations; critical failures to `meta.quarantine`,
  the rest to `staging.health_codes_exports`.
- **publish**: Asset `duckdb://onenet/staging/health_codes`, only when new rows reached staging.

Data interval: one Beijing day, the run starts at 00:00 of the next day. Files stay in the drop
folder, so a backfill of a past day finds its file at once and the sync lands nothing that was
loaded before. Connection: `AIRFLOW_CONN_ONENET_HEALTH_CODES` (`file:///path/to/drop`; unset:
the simulator's drop folder).
"""

from onenet.dag_factory import data_interval_timetable, each_district, source_dag

# One DAG per district of $ONENET_DISTRICTS (onenet_health_codes__<name>), or onenet_health_codes without it.
globals().update(each_district(lambda district: source_dag(
    "health_codes",
    schedule=data_interval_timetable("0 0 * * *"),
    doc_md=__doc__,
    tags=["daily", "file-drop", "sensor"],
    wait_for_daily_file=True,
    district=district,
)))
