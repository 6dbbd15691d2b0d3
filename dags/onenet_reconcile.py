"""
### onenet_reconcile_<source> — raw converges to the source (issue #14)

`reconcile → validate → publish` for each source whose connector can reconcile:

- **reconcile** (pool `onenet_duckdb`): reads the source's complete current state (the registry
  in one scan per table, the APIs in a full page-through), compares keys and record hashes with
  raw's current version of each key and lands exactly the difference: missed, back-dated and
  silent updates, reverts, and a tombstone for each key the source no longer has (hard delete,
  or phantom for a source that never deletes). Each run is in `meta.reconciliations`, the keys
  by kind in `meta.reconciliation_keys`.
- **validate** (pool `onenet_duckdb`): as after a sync; tombstones carry only the key and pass.
- **publish**: the source's staging Asset, so the merge picks the changes up; skipped when raw
  already matched the source.

Cadence (Beijing time) is each connector's `RECONCILE_SCHEDULE` in its `settings.py`, with the
reason beside it: the registry nightly (hard deletes and back-dated edits leave no trace a cursor
can follow; one scan of 1.84M rows is cheap at night), the hotline and city feeds weekly (a full
page-through costs the rate-limited API one request per page, and what escapes their cursors is
rare). The health-code drop gets its DAG here once its connector has `reconcile()` and a
`RECONCILE_SCHEDULE` (the hook: add a line below). Airflow DAGs only; each task calls one
function of `onenet.orchestration`.
"""

from onenet.dag_factory import reconcile_dag

onenet_reconcile_grid_registry = reconcile_dag("grid_registry", doc_md=__doc__)
onenet_reconcile_hotline = reconcile_dag("hotline", doc_md=__doc__)
onenet_reconcile_city_cases = reconcile_dag("city_cases", doc_md=__doc__)
