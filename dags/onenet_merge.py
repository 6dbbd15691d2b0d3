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
"""

from datetime import timedelta
from typing import Any

from airflow.sdk import Param, dag, task

from onenet import orchestration as orch
from onenet.dag_factory import CORE_ASSET, DEFAULT_ARGS, START_DATE, source_asset

STAGED = (source_asset("hotline") | source_asset("city_cases") | source_asset("grid_registry")
          | source_asset("health_codes"))


@dag(schedule=STAGED, start_date=START_DATE, catchup=False, max_active_runs=1,
     default_args=DEFAULT_ARGS, doc_md=__doc__, tags=["onenet", "merge", "asset-triggered"],
     params={"full": Param(False, type="boolean",
                           description="Resolve every record again and re-estimate the match parameters")})
def onenet_merge() -> None:
    @task(pool=orch.POOL, outlets=[CORE_ASSET], execution_timeout=timedelta(hours=2))
    def merge(triggering_asset_events: Any = None, params: Any = None) -> dict[str, Any]:
        """Entity resolution: staging → core."""
        uris = [asset.uri for asset in (triggering_asset_events or {})]
        return orch.merge_sources(orch.sources_of(uris), full=bool((params or {}).get("full", False)))

    merge()


onenet_merge()
