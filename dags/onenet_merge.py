"""
### onenet_merge — resolve the staged sources into one picture, when any source has new data

Scheduled on the four staging Assets with **OR** (`hotline | city_cases | grid_registry |
health_codes`): every validated batch of any source leads to a merge, and a source that is down
(no event) never holds the others back — the merge keeps that source's last good staged rows.
Events that arrive while a merge runs are collected into the next run (`max_active_runs=1`).

- **merge** (pool `onenet_duckdb`): `onenet.pipeline.merge()` — entity resolution from `staging`
  into `core` (persons, households, incidents …); idempotent: merging the same staged data again
  leaves `core` as one merge would. Publishes the Asset `duckdb://onenet/core`.

A merge refreshes only what the new data touches (staging keys, the persons they can reach, the
person-keyed core tables) and reuses the match parameters of the last full run. Trigger the DAG
with the param `full` = true (UI "Trigger DAG w/ config", or
`airflow dags trigger onenet_merge --conf '{"full": true}'`) to resolve everything again and
re-estimate the parameters, e.g. weekly or after a large correction in a silo.

**Priority 30** (`weight_rule` absolute): behind a source's sync and validate (40), ahead of the
daily extract (20) and reconciliations (10) when they wait for the warehouse's one slot.
**Timeout 30 min per try**: the district's full merge measured 181.6 s (316.8 s under load), the
next day's incremental one 34.7 s (bench/README.md, 1.3M residents).
"""

from typing import Any

from airflow.sdk import Param, dag, task

from onenet import orchestration as orch
from onenet.dag_factory import CORE_ASSET, START_DATE, TIMEOUTS, dag_args, source_asset

STAGED = (source_asset("hotline") | source_asset("city_cases") | source_asset("grid_registry")
          | source_asset("health_codes"))


@dag(schedule=STAGED, start_date=START_DATE, catchup=False, max_active_runs=1,
     default_args=dag_args("merge"), doc_md=__doc__, tags=["onenet", "merge", "asset-triggered"],
     params={"full": Param(False, type="boolean",
                           description="Resolve every record again and re-estimate the match parameters")})
def onenet_merge() -> None:
    @task(pool=orch.POOL, outlets=[CORE_ASSET], execution_timeout=TIMEOUTS["merge"])
    def merge(triggering_asset_events: Any = None, params: Any = None) -> dict[str, Any]:
        """Entity resolution: staging → core."""
        uris = [asset.uri for asset in (triggering_asset_events or {})]
        return orch.merge_sources(orch.sources_of(uris), full=bool((params or {}).get("full", False)))

    merge()


# With $ONENET_DISTRICTS, one merge per district (onenet.dag_factory.district_merge_dag) instead.
from onenet import districts  # noqa: E402 - kept apart from the merge's own imports
from onenet.dag_factory import district_merge_dag, each_district  # noqa: E402

if districts.configured():
    globals().update(each_district(lambda district: district_merge_dag(district, doc_md=__doc__)))
else:
    onenet_merge()
