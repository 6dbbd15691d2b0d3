"""Benchmark: publish about a million rows into the PostgreSQL serving database, then again unchanged, then with one relation changed.

    .venv/bin/python bench/serving_load.py [--rows 1000000] [--communities 20] [--url postgresql://postgres@127.0.0.1:5432/postgres]

Builds Parquet inputs shaped like the published relations (Chinese text, NULLs, timestamptz, lists,
structs) in a temporary folder: half the rows in one analyst relation, a fifth in a second, the rest
in a community relation split over --communities files. Publishes them with
warehouse.publish.serving.publish_serving into a throwaway database on the server at --url, with
throwaway roles, and drops both at the end. Prints seconds per step and what DuckDB alone spends
hashing the rows (the cost of "publish only what changed" when nothing changed).

    .venv/bin/python -m bench.serving_load --next-day [--pairs 3] [--rows 1000000] [--change-every 50]

The next day: the same inputs, then a second version in which one row in --change-every of every
file differs (a value changed), so every relation and every community's part changed a little.
Each side runs in a fresh process (bench/compare.py, alternating): it loads the first version whole
into its own throwaway database (not timed), then publishes the second, timed: "rows" as
publish_serving does (by changed rows), "whole" with the served files forgotten, which is the load
before changed rows (every relation reloaded whole). Each side reports its own seconds, its
process CPU (DuckDB's threads included) and the PostgreSQL backend's CPU (/proc/<pid>/stat of
pg_backend_pid(), read at the end of the publish; parallel workers are turned off so all its work is
in that process), then the CPU of a VACUUM (ANALYZE) of the changed tables, the debt the deleted
rows leave for autovacuum.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import statistics
import sys
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
    parser.add_argument("--next-day", action="store_true", help="time the next day's publish, rows vs whole")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--change-every", type=int, default=50, help="one row in N of every file changes")
    parser.add_argument("--side", choices=["rows", "whole"], help=argparse.SUPPRESS)
    parser.add_argument("--inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(next_day_side(args.side, args.inputs, args.url)))
        return
    if args.next_day:
        next_day(args)
        return
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


# --- the next day: by changed rows vs whole -----------------------------------------------------

def _inputs(folder: Path, rows: int, n_communities: int, change_every: int) -> dict:
    """Both versions' files, and what to publish them as (written to inputs.json in `folder`)."""
    con = duckdb.connect()
    tickets, grid = rows // 2, rows // 5
    per_community = (rows - tickets - grid) // n_communities
    communities = [(f"1101050010{n:02d}", f"社区{n}") for n in range(n_communities)]
    queries = {"mart.hotline_tickets": fill(TICKETS, rows=tickets), "mart.grid_daily": fill(GRID_DAILY, rows=grid),
               **{f"ticket.{code}": fill(COMMUNITY_TICKETS, code=code, rows=per_community) for code, _ in communities}}
    # The second version: one row in `change_every` of every file has a value changed.
    changes = {"mart.hotline_tickets": "not is_overdue as is_overdue", "mart.grid_daily": "incidents + 1 as incidents",
               **{f"ticket.{code}": "body || '（已回访）' as body" for code, _ in communities}}
    paths: dict[str, dict[str, str]] = {"v1": {}, "v2": {}}
    for name, query in queries.items():
        first = folder / f"{name}.v1.parquet"
        con.execute(f"copy ({query}) to '{first}' (format parquet)")
        column = changes[name].rsplit(" as ", 1)[1]
        second = folder / f"{name}.v2.parquet"
        con.execute(f"copy (select * exclude (changes) replace (case when changes then "
                    f"{changes[name].rsplit(' as ', 1)[0]} else {column} end as {column}) from (select *, "
                    f"hash(*columns(*)) % {change_every} = 0 as changes from read_parquet('{first}'))) "
                    f"to '{second}' (format parquet)")
        paths["v1"][name], paths["v2"][name] = str(first), str(second)
    spec = {"communities": communities, "paths": paths, "rows": tickets + grid + per_community * n_communities}
    (folder / "inputs.json").write_text(json.dumps(spec, ensure_ascii=False))
    return spec


def _split(paths: dict[str, str]) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    analyst = {k: Path(v) for k, v in paths.items() if k.startswith("mart.")}
    return analyst, {"ticket": [Path(v) for k, v in sorted(paths.items()) if k.startswith("ticket.")]}


def _backend_cpu(pg: psycopg.Connection) -> float:
    """CPU seconds the connection's PostgreSQL backend has used (same machine)."""
    pid = pg.execute("select pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def next_day_side(side: str, folder: Path, admin_url: str) -> dict:
    """One run: the first version loaded whole (not timed), then the second one timed."""
    spec = json.loads((folder / "inputs.json").read_text())
    communities = [tuple(c) for c in spec["communities"]]
    database = f"onenet_serving_bench_{secrets.token_hex(4)}"
    prefix = f"onenet_b{secrets.token_hex(3)}_"
    url = make_conninfo(admin_url, dbname=database)
    # Every statement's work in the backend itself, so its /proc CPU is all of it.
    os.environ["PGOPTIONS"] = "-c max_parallel_maintenance_workers=0 -c max_parallel_workers_per_gather=0"
    backend: list[float] = []
    original = serving._publish

    def measured(pg: psycopg.Connection, *args: object, **kwargs: object) -> None:
        original(pg, *args, **kwargs)  # type: ignore[arg-type]
        backend.append(_backend_cpu(pg))

    try:
        first = serving.publish_serving(url, "d1", *_split(spec["paths"]["v1"]), communities, role_prefix=prefix)
        if side == "whole":  # forget the served files: every changed relation is loaded whole, as before
            with psycopg.connect(url, autocommit=True) as pg:
                pg.execute("update serving_admin.published set files = null")
        serving._publish = measured
        cpu0, t0 = _cpu(), time.perf_counter()
        second = serving.publish_serving(url, "d2", *_split(spec["paths"]["v2"]), communities, role_prefix=prefix)
        seconds, cpu = time.perf_counter() - t0, _cpu() - cpu0
        serving._publish = original
        with psycopg.connect(url, autocommit=True) as pg:
            before = _backend_cpu(pg)
            for key in second.published:
                pg.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier(*key.split("."))))
            vacuum = _backend_cpu(pg) - before
            size = pg.execute("select pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
    finally:
        serving._publish = original
        with psycopg.connect(admin_url, autocommit=True) as pg:
            pg.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database)))
            for (role,) in pg.execute("select rolname from pg_roles where starts_with(rolname, %s)",
                                      [prefix]).fetchall():
                pg.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))
    assert len(first.published) == 3 and len(second.published) == 3
    return {"seconds": round(seconds, 3), "cpu_s": round(cpu, 3), "pg_backend_cpu_s": round(backend[0], 3),
            "total_cpu_s": round(cpu + backend[0], 3),
            "vacuum_pg_cpu_s": round(vacuum, 3), "incremental": second.incremental, "rows": sum(second.rows.values()),
            "database_mb": round(size / 1e6)}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def next_day(args: argparse.Namespace) -> None:
    from bench import compare

    with tempfile.TemporaryDirectory(prefix="onenet-serving-nextday-") as tmp:
        folder = Path(tmp)
        started = time.monotonic()
        spec = _inputs(folder, args.rows, args.communities, args.change_every)
        print(f"inputs: {spec['rows']:,} rows per version, one in {args.change_every} changed in each of "
              f"{len(spec['paths']['v1'])} files, built in {time.monotonic() - started:.1f} s", flush=True)
        sides = [compare.Side(name, [sys.executable, "-m", "bench.serving_load", "--side", name, "--inputs", str(folder),
                                     "--url", args.url], timeout=1800) for name in ("rows", "whole")]
        comp = compare.run_rounds(sides, rounds=args.pairs, measure="reported",
                                  timed="the side's own seconds for the second version's publish_serving "
                                        "(the first version's whole load, process start and inputs excluded)",
                                  title="serving database, next day: by changed rows / whole")
    print(comp.report())
    for figure in ("cpu_s", "pg_backend_cpu_s", "total_cpu_s", "vacuum_pg_cpu_s"):
        values: dict[str, list[float]] = {
            side: [float((r.report or {}).get(figure) or 0.0) for r in sorted(comp.runs, key=lambda r: r.round)
                   if r.side == side and r.ok] for side in ("rows", "whole")}
        if values["rows"] and len(values["rows"]) == len(values["whole"]):
            rows, whole = statistics.median(values["rows"]), statistics.median(values["whole"])
            ratios = [a / b for a, b in zip(values["rows"], values["whole"], strict=True) if b]
            print(f"{figure}: rows median {rows:.2f}, whole median {whole:.2f}, ratio of medians "
                  f"{rows / whole if whole else float('nan'):.3f} (per pair {min(ratios, default=0):.3f}-"
                  f"{max(ratios, default=0):.3f})")
    for r in comp.runs:
        print(f"  round {r.round + 1} {r.side}: {json.dumps(r.report, ensure_ascii=False)}")


if __name__ == "__main__":
    main()
