"""
### onenet_hotline — the 12345 citizen hotline, every 15 minutes

`sync → validate → publish` for the hotline's tickets:

- **sync** (pool `onenet_duckdb`): pages the hotline API from the connector's cursor and lands new
  and changed tickets in `raw.hotline_tickets` (key + record hash: nothing lands twice).
- **validate** (pool `onenet_duckdb`): Great Expectations inside DuckDB; critical failures go to
  `meta.quarantine`, the rest to `staging.hotline_tickets`.
- **publish**: the Asset `duckdb://onenet/staging/hotline` gets an event (extra: day, data
  interval, tables) when new rows reached staging; skipped, with no event, when nothing was new.

Data interval: 15 minutes cut on Beijing time. The sync is incremental by the connector's state,
not by the interval, so a re-run or a backfill of a past interval catches up to the source's
present and lands only what the warehouse does not hold yet (usually nothing): it is idempotent.
Connection: `AIRFLOW_CONN_ONENET_HOTLINE` (unset: the simulator on 127.0.0.1).
"""

from onenet.dag_factory import data_interval_timetable, each_district, source_dag

# One DAG per district of $ONENET_DISTRICTS (onenet_hotline__<name>), or onenet_hotline without it.
globals().update(each_district(lambda district: source_dag(
    "hotline",
    schedule=data_interval_timetable("*/15 * * * *"),
    doc_md=__doc__,
    tags=["every-15-minutes", "http"],
    district=district,
)))
