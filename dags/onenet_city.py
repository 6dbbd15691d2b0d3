"""
### onenet_city — the city warehouse, from what the districts publish for the city

Exists only when `ONENET_DISTRICTS` lists two districts or more and `ONENET_CITY_KEY` is set
(the key every district publishes its city snapshot with; `onenet.districts.city`).

Scheduled on the districts' city-snapshot Airflow Assets with **OR** (`file://onenet/<name>/published/city`,
one per district, emitted by `onenet_merge__<name>` after it published): any district that
publishes — a day's merge, or a merge after a back-dated correction in one of its silos — leads
to a city build, and a district that is down never holds the others back (the city keeps its last
published snapshot, until it is older than `ONENET_CITY_MAX_AGE_HOURS`). Events that arrive while
a build runs are collected into the next run (`max_active_runs=1`): two publishes of a district
before a build make one build over its current snapshot.

- **build_city** (pool `onenet_city_duckdb`, 1 slot: the city warehouse's one writer): checks that
  every district has a city snapshot, not older than 48 h (`ONENET_CITY_MAX_AGE_HOURS`) and not
  older than the publish its Asset event announced; otherwise fails naming each district, what was
  found and what to do (retried: a lagging shared folder catches up). Then
  `warehouse.city.build.build` — what `onenet city build` runs — over every district's
  `<published>` folder into the `[city]` warehouse of the districts file (default `city.duckdb`
  beside it): land replaced from the current versions, city persons resolved (incrementally when
  few district persons changed), ids stable, marts rebuilt, in one transaction. Publishes
  `duckdb://onenet_city/core`.

**Priority 30**, as a merge (`weight_rule` absolute; its pool is its own, so it never waits for a
district's writer, nor they for it: it reads published files only). **Timeout 60 min per try**:
the city build at 4 × 30k residents took 122 s (62 s on seed 2), 31 s again with nothing changed.
"""

from onenet import districts
from onenet.dag_factory import city_dag

city = districts.city()
if city is not None:
    onenet_city = city_dag(city, doc_md=__doc__)
