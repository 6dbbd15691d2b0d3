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
rare), the health-code drop nightly (its `reconcile` is the re-check: only files whose change
time moved are opened, so a file replaced in place with its old size and mtime, or restored to
earlier bytes, is read again and its changed rows land). Another source gets its DAG here once
its connector has `reconcile()` and a `RECONCILE_SCHEDULE` (add a line below). Airflow DAGs
only; each task calls one function of `onenet.orchestration`.
"""

from functools import partial

from onenet.dag_factory import each_district, reconcile_dag

# Per district of $ONENET_DISTRICTS (onenet_reconcile_<source>__<name>), or one each without it.
for _source in ("grid_registry", "hotline", "city_cases", "health_codes"):
    globals().update(each_district(partial(reconcile_dag, _source, doc_md=__doc__)))
