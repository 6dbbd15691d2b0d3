"""Benchmark: publish about a million rows into the PostgreSQL serving database, then again unchanged, then with one relation changed.

    .venv/bin/python bench/serving_load.py [--rows 1000000] [--communities 20] [--url postgresql://postgres@127.0.0.1:5432/postgres]

Builds Parquet inputs shaped like the published relations (Chinese text, NULLs, timestamptz, lists,
structs) in a temporary folder: half the rows in one analyst relation, a fifth in a second, the rest
in a community relation split over --communities files. Publishes them with
warehouse.publish.serving.publish_serving into a throwaway database on the server at --url, with
throwaway roles, and drops both at the end. Prints seconds per step and what DuckDB alone spends
hashing the rows (the cost of "publish only what changed" when nothing changed).
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from pathlib import Path

import duckdb
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from warehouse.publish import serving

TICKETS = """
select i::bigint as ticket_id, '街道' || (i % 37) as street, ['城管', '环保', '住建', '市场监管'][1 + i % 4] as department,
       case when i % 9 = 0 then null else '市民反映小区楼道堆放杂物，存在消防隐患，请尽快处理，编号' || i end as summary,
       timestamptz '2026-11-01 00:00:00+08' + i * interval 7 second as reported_at,
       date '2026-11-01' + (i % 30)::integer as day, (i % 5 = 0) as is_overdue,
       case when i % 4 = 0 then null else ['噪音', '夜间'] end as tags, (i % 1000) / 7.0 as hours_to_close
from range({rows}) t(i)
"""
GRID_DAILY = """
select 'G' || lpad((i % 5000)::varchar, 6, '0') as grid_code, date '2026-11-01' + (i // 5000)::integer as day,
       (i % 300)::integer as residents, (i % 17)::integer as elderly, (i % 3)::integer as incidents,
       (i * 0.37)::decimal(14, 2) as subsidy, {'source': '网格', 'v': i % 7} as detail
from range({rows}) t(i)
"""
COMMUNITY_TICKETS = """
select '{code}' as community_code, '社区{code}' as community_name, i::bigint as ticket_id,
       '1380013' || lpad((i % 10000)::varchar, 4, '0') as phone,
       '居民来电：' || (i % 100) || '号楼电梯故障' as body,
       timestamptz '2026-11-01 00:00:00+08' + i * interval 11 second as created_at
from range({rows}) t(i)
"""


def fill(template: str, **values: object) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", str(value))
    return template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--communities", type=int, default=20)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="an administrative login on the server; a throwaway database is made there")
    args = parser.parse_args()
    tickets, grid = args.rows // 2, args.rows // 5
    per_community = (args.rows - tickets - grid) // args.communities
    communities = [(f"1101050010{n:02d}", f"社区{n}") for n in range(args.communities)]
    database = f"onenet_serving_bench_{secrets.token_hex(4)}"
    prefix = f"onenet_b{secrets.token_hex(3)}_"
    url = make_conninfo(args.url, dbname=database)

    with tempfile.TemporaryDirectory(prefix="onenet-serving-bench-") as tmp:
        folder = Path(tmp)
        con = duckdb.connect()
        started = time.monotonic()

        def write(query: str, name: str) -> Path:
            path = folder / name
            con.execute(f"copy ({query}) to '{path}' (format parquet)")
            return path

        analyst = {"mart.hotline_tickets": write(fill(TICKETS, rows=tickets), "mart.hotline_tickets.parquet"),
                   "mart.grid_daily": write(fill(GRID_DAILY, rows=grid), "mart.grid_daily.parquet")}
        community = {"ticket": [write(fill(COMMUNITY_TICKETS, code=code, rows=per_community), f"ticket.{code}.parquet")
                                for code, _name in communities]}
        total = tickets + grid + per_community * len(communities)
        print(f"inputs: {total:,} rows in {2 + len(communities)} Parquet files "
              f"({sum(p.stat().st_size for p in folder.iterdir()) / 1e6:.0f} MB), built in {time.monotonic() - started:.1f} s")

        hash_started = time.monotonic()
        duck = duckdb.connect()
        duck.execute("set timezone = 'UTC'")
        for key, path in analyst.items():
            rel = serving._Relation(serving.ANALYST_SCHEMA, key.split(".")[1], (path,))
            source = serving._source(rel)
            serving._content_hash(duck, source, serving._columns(duck, rel, source))
        rel = serving._Relation(serving.COMMUNITY_SCHEMA, "ticket", tuple(community["ticket"]))
        source = serving._source(rel)
        serving._content_hash(duck, source, serving._columns(duck, rel, source))
        hashing = time.monotonic() - hash_started

        try:
            first = serving.publish_serving(url, "b1", analyst, community, communities, role_prefix=prefix)
            again = serving.publish_serving(url, "b2", analyst, community, communities, role_prefix=prefix)
            analyst["mart.grid_daily"] = write(fill(GRID_DAILY, rows=grid) + " where i % 1000 <> 0",
                                               "mart.grid_daily.changed.parquet")
            changed = serving.publish_serving(url, "b3", analyst, community, communities, role_prefix=prefix)
            with psycopg.connect(url) as pg:
                size = pg.execute("select pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
        finally:
            with psycopg.connect(args.url, autocommit=True) as pg:
                pg.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database)))
                for (role,) in pg.execute("select rolname from pg_roles where starts_with(rolname, %s)",
                                          [prefix]).fetchall():
                    pg.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))

    print(f"{'step':<44} {'seconds':>8} {'rows/s':>10}")
    print(f"{'first publish (' + str(len(first.published)) + ' relations, ' + f'{sum(first.rows.values()):,} rows)':<44} "
          f"{first.seconds:>8.2f} {sum(first.rows.values()) / first.seconds:>10,.0f}")
    print(f"{'unchanged (' + str(len(again.skipped)) + ' skipped)':<44} {again.seconds:>8.2f}")
    print(f"{'one relation changed (' + ', '.join(changed.published) + ')':<44} {changed.seconds:>8.2f}")
    print(f"{'of which DuckDB hashing every row':<44} {hashing:>8.2f}")
    print(f"database size after: {size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
