"""
### onenet_city_cases — the digital city-management system (数字城管), hourly

`sync → validate → publish` for city-management cases:

- **sync** (pool `onenet_duckdb`): reads the cases API from the connector's cursor into
  `raw.city_cases_cases` (key + record hash: nothing lands twice).
- **validate** (pool `onenet_duckdb`): Great Expectations; critical failures to `meta.quarantine`,
  the rest to `staging.city_cases_cases`.
- **publish**: Asset `duckdb://onenet/staging/city_cases`, only when new rows reached staging.

Data interval: one Beijing-time hour. A re-run or backfill of a past hour catches up from the
connector's cursor and lands nothing the warehouse already holds. Connection:
`AIRFLOW_CONN_ONENET_CITY_CASES` (unset: the simulator on 127.0.0.1).
"""

from onenet.dag_factory import data_interval_timetable, each_district, source_dag

# One DAG per district of $ONENET_DISTRICTS (onenet_city_cases__<name>), or onenet_city_cases without it.
globals().update(each_district(lambda district: source_dag(
    "city_cases",
    schedule=data_interval_timetable("0 * * * *"),
    doc_md=__doc__,
    tags=["hourly", "http"],
    district=district,
)))
