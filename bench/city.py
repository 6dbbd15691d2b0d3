"""The city benchmark (issue #19): generate a city, run every district's pipeline, build the city,
score city persons against the city truth.

    .venv/bin/python -m bench.city --out /tmp/city30k --districts 4 --residents 30000 [--seed 1] \
        [--to-day 29] [--reuse]

Each district runs the real pipeline (bench/district_warehouse.py: silos on loopback, sync,
validate, merge, publish) with ONENET_CITY_KEY set, so it publishes its city snapshot into
OUT/run/<code>/published/city; then warehouse.city.build.build makes OUT/city.duckdb from those
folders only. Scores, printed and written as one JSON line:

- persons (records): pairwise precision/recall over every source record of every district, the
  record's city person being its district person's (core.person_source, then core.person_map),
  against truth/source_records.parquet (the same scoring as a district's, bench/resolution_input.py);
- persons (district persons): the same over district persons, each labelled with the true city
  person most of its records belong to: what the city resolution itself adds or loses;
- movers: of the true movers (truth/movers.parquet), how many have their old and new district
  persons under one city person; the same for stale registrations and cross-district callers;
- cross-district tickets: mart.cross_district_incident against truth/cross_district_tickets.parquet.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import duckdb

from onenet.settings import environment


def district_env(target: Path, key: str) -> dict[str, str]:
    """A city district's own folders (published, exports) and the city key, for its pipeline's steps."""
    return dict(ONENET_PUBLISHED=str(target / "published"), ONENET_CITY_KEY=key,
                ONENET_EXPORTS=str(target / "exports"))


def run_districts(city: Path, out: Path, *, to_day: int, key: str, memory_limit: str | None = None,
                  threads: int | None = None) -> dict[str, Any]:
    """Run each district's pipeline into out/<code>/ (warehouse, published); return their reports.
    `memory_limit` / `threads`: DuckDB settings for the pipeline's connections (bench/district_warehouse.py)."""
    from bench import district_warehouse

    manifest = json.loads((city / "manifest.json").read_text(encoding="utf-8"))
    reports = {}
    for d in manifest["districts"]:
        target = out / str(d["code"])
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        with environment(**district_env(target, key)):
            reports[str(d["code"])] = district_warehouse.build(city / d["folder"], target, to_day=to_day,
                                                               memory_limit=memory_limit, threads=threads)
    return reports


def _pairs(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, float]:
    """Pairwise precision/recall of `table` (true_id, got_id) rows."""
    tp, pred, act, got, true, n = con.execute(f"""
        with both_ as (select true_id, got_id, count(*) as n from {table} group by all)
        select (select sum(n * (n - 1) / 2) from both_)::double,
               (select sum(n * (n - 1) / 2) from (select got_id, count(*) n from {table} group by 1))::double,
               (select sum(n * (n - 1) / 2) from (select true_id, count(*) n from {table} group by 1))::double,
               (select count(distinct got_id) from {table}), (select count(distinct true_id) from {table}),
               (select count(*) from {table})
    """).fetchone()  # type: ignore[misc]
    p, r = (tp / pred if pred else 1.0), (tp / act if act else 1.0)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "clusters": got, "true_clusters": true, "records": n}


def score(city: Path, out: Path, city_db: Path) -> dict[str, Any]:
    """City persons against the city truth (see the module docstring)."""
    manifest = json.loads((city / "manifest.json").read_text(encoding="utf-8"))
    con = duckdb.connect()
    con.execute(f"attach '{city_db}' as c (read_only)")
    truth = city / "truth"
    parts = []
    for d in manifest["districts"]:
        code = d["code"]
        con.execute(f"attach '{out / str(code) / 'warehouse.duckdb'}' as w{code} (read_only)")
        parts.append(f"""
            select '{code}' as district_code, s.source, s.record_key, ps.person_id
            from w{code}.staging.stg_person_records s join w{code}.core.person_source ps using (record_uid)""")
    con.execute("create temp table assigned as " + " union all ".join(parts))
    con.execute(f"""
        create temp table rec as
        select t.city_person_id as true_id, m.city_person_id as got_id, a.district_code, a.person_id
        from assigned a
        join '{truth}/source_records.parquet' t
          on t.district_code::varchar = a.district_code and t.source = a.source and t.record_key = a.record_key
        join c.core.person_map m on m.district_code = a.district_code and m.person_id = a.person_id
    """)
    con.execute("""
        create temp table dp as
        select district_code, person_id, any_value(got_id) as got_id,
               mode(true_id order by true_id) as true_id
        from rec group by all
    """)
    result: dict[str, Any] = {"persons_records": _pairs(con, "rec"), "persons_district_persons": _pairs(con, "dp")}
    # A crossing is linked when the true person's district persons on both sides share one city person.
    con.execute("""
        create temp table holder as  -- the district person holding most of a true person's records there
        select true_id, district_code, arg_max(got_id, n) as got_id
        from (select true_id, district_code, got_id, count(*) as n from rec group by all)
        group by all
    """)
    for name, file, a, b in (("movers", "movers", "from_district", "to_district"),
                             ("stale_registrations", "stale_registrations", "home_district", "stale_district"),
                             ("cross_callers", "cross_callers", "home_district", "called_district")):
        row = con.execute(f"""
            with x as (select distinct city_person_id, {a} as a, {b} as b from '{truth}/{file}.parquet')
            select count(*), count(*) filter (where ha.got_id = hb.got_id)
            from x
            join holder ha on ha.true_id = x.city_person_id and ha.district_code = x.a::varchar
            join holder hb on hb.true_id = x.city_person_id and hb.district_code = x.b::varchar
        """).fetchone()
        total = con.execute(f"select count(distinct city_person_id) from '{truth}/{file}.parquet'").fetchone()
        assert row is not None and total is not None
        result[name] = {"true": int(total[0]), "on_record_in_both": int(row[0]), "linked": int(row[1]),
                        "recall": row[1] / row[0] if row[0] else 1.0}
    row = con.execute(f"""
        select (select count(*) from '{truth}/cross_district_tickets.parquet'),
               (select count(*) from c.mart.cross_district_incident),
               (select count(*) from c.mart.cross_district_incident m join '{truth}/cross_district_tickets.parquet' t
                  on t.district_code::varchar = m.district_code and t.ticket_id = m.ticket_id
                 and t.place_district_code::varchar = m.place_district_code)
    """).fetchone()
    assert row is not None
    result["cross_district_tickets"] = {"true": row[0], "found": row[1], "right": row[2],
                                        "precision": row[2] / row[1] if row[1] else 1.0,
                                        "recall": row[2] / row[0] if row[0] else 1.0}
    con.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--districts", type=int, default=4)
    parser.add_argument("--residents", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--to-day", type=int, default=29)
    parser.add_argument("--reuse", action="store_true", help="keep OUT/city and OUT/run if already built")
    args = parser.parse_args()
    with environment(ONENET_HOME=str(args.out / "home")):  # the pseudonym key and access log, not the checkout's var/
        run_city(args)


def run_city(args: argparse.Namespace) -> None:
    """Generate, run the districts, build the city and score it, as main's arguments say."""
    from simulators.city.generate import generate_city
    from warehouse.city.build import build

    out: Path = args.out
    seconds: dict[str, float] = {}
    city, run, city_db = out / "city", out / "run", out / "city.duckdb"
    t = time.perf_counter()
    if not (args.reuse and (city / "manifest.json").exists()):
        generate_city(city, districts=args.districts, residents=args.residents, seed=args.seed)
    seconds["generate"] = time.perf_counter() - t
    key = secrets.token_urlsafe(32)
    t = time.perf_counter()
    reports = {}
    if not (args.reuse and run.exists()):
        reports = run_districts(city, run, to_day=args.to_day, key=key)
    seconds["districts"] = time.perf_counter() - t
    city_db.unlink(missing_ok=True)
    t = time.perf_counter()
    summary = build(city_db, sorted((run / d).resolve() / "published" for d in
                                    (p.name for p in run.iterdir() if p.is_dir())))
    seconds["city build"] = time.perf_counter() - t
    for line in summary.lines():
        print(line, flush=True)
    scores = score(city, run, city_db)
    for k, v in scores.items():
        print(f"{k:26} {json.dumps(v)}", flush=True)
    print(json.dumps({"districts": args.districts, "residents": args.residents, "seconds": seconds,
                      "district_quality": {c: r.get("quality") for c, r in reports.items()},
                      "district_seconds": {c: r.get("total_seconds") for c, r in reports.items()},
                      "city_steps": summary.seconds, "scores": scores}))


if __name__ == "__main__":
    main()
