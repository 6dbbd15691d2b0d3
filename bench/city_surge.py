"""The city merge on the surge's worst day (issue #19): "under 10 minutes for the 4-district city".

    .venv/bin/python -m bench.city_surge --out /tmp/cs --districts 4 --residents 300000 [--seed 1] \
        [--peak 5] [--day W] [--reuse] [--full-too] [--memory-limit 8GB] [--threads 2] [--json F]

1. A city of --districts x --residents with a surge month (simulators/city/generate.py,
   SurgeSpec(peak=--peak)) in OUT/city; --reuse keeps it when its manifest has the same size, seed
   and surge.
2. The worst day W: the day the city's hotline receives most tickets (bench/surge.py's
   hotline_volume over every district's silo files; the earliest on a tie), unless --day says.
   A normal day is the median of the days outside the surge.
3. The day before: every district's initial load to day W-1 through the real pipeline with
   ONENET_CITY_KEY set, so each merge publishes the district's city snapshot (bench/city.py's
   run_districts, into OUT/run/<code>/); then the city warehouse OUT/city.duckdb built from those
   published folders (warehouse.city.build.build), timed.
4. The worst day: for every district in turn its silos up, bench/surge.py's next_day for day W
   (the clock to W's end, sync the four sources, validate them, merge with publish: the functions
   the Airflow tasks call, each step a fresh process), silos down; each district's run timed. Then
   the city build again on day W's published snapshots into the same city warehouse (as the
   onenet_city DAG does: city persons resolved incrementally when few changed), timed by step
   (land / resolve / marts): the figure against the 10-minute target. --full-too also builds a
   fresh city warehouse from the same snapshots (OUT/city-full.duckdb), as after a lost warehouse.
5. City persons scored after day W as bench/city.py scores them (pairwise over source records,
   movers, stale registrations, cross-district callers and tickets).

Checks printed with the figures: every district published a new city version for day W, the city
build was given only the districts' published folders, and the city's core.ticket holds each
district's tickets of day W. --memory-limit and --threads set DuckDB's limits of every pipeline
connection (initial load, next-day steps) and of the city builds; without them the pipeline's own
defaults apply (ONENET_DUCKDB_MEMORY_LIMIT or 4GB for the steps, DuckDB's for the city build).
Everything a step writes (pseudonym key, access log, snapshots) stays under OUT. Prints a table
and writes every figure to --json (default OUT/city_surge.json).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

TARGET_S = 600.0  # issue #19: the city merge on the surge's worst day, 4 districts


def city_volume(city: Path, manifest: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Per day: tickets and cases of the whole city and of each district (bench/surge.py's hotline_volume)."""
    from bench.surge import hotline_volume
    from simulators import clock

    out: dict[int, dict[str, Any]] = {}
    for day in range(int(manifest["days"])):
        per = {str(d["code"]): hotline_volume(city / d["folder"], clock.start_date(city / d["folder"]), day)
               for d in manifest["districts"]}
        out[day] = {"tickets": sum(v["tickets"] for v in per.values()),
                    "cases": sum(v["cases"] for v in per.values()), "districts": per}
    return out


def worst_day(volume: dict[int, dict[str, Any]]) -> int:
    """The day with the most tickets (the earliest of equals); never day 0, which has no day before."""
    return max((d for d in volume if d > 0), key=lambda d: (volume[d]["tickets"], -d))


def city_build(city_db: Path, published: list[Path], memory_limit: str | None, threads: int | None,
               hide: Sequence[Path] = ()) -> dict[str, Any]:
    """warehouse.city.build.build over the districts' published folders, timed; its summary as a dict.
    `hide`: files moved aside while it runs (the districts' warehouses: the build must not need them)."""
    from bench.district_warehouse import _capped_connections
    from warehouse.city.build import build

    hidden = [(f, f.with_name(f.name + ".hidden")) for f in hide if f.exists()]
    for f, aside in hidden:
        f.rename(aside)
    try:
        t = time.perf_counter()
        with _capped_connections(memory_limit, threads):
            summary = build(city_db, published)
        wall = time.perf_counter() - t
    finally:
        for f, aside in hidden:
            aside.rename(f)
    for line in summary.lines():
        print("    " + line, flush=True)
    return {"wall_s": round(wall, 2), "steps_s": {k: round(v, 2) for k, v in summary.seconds.items()},
            "resolve_mode": summary.resolve_mode, "district_persons": summary.district_persons,
            "city_persons": summary.city_persons, "movers": summary.movers, "tickets": summary.tickets,
            "double_registered": summary.double_registered,
            "cross_district_tickets": summary.cross_district_tickets, "districts": summary.districts,
            "load_average": [round(x, 1) for x in os.getloadavg()]}


def tickets_in_city(city_db: Path, date: Any) -> dict[str, int]:
    """Tickets received on `date` (Beijing) per district in the city's core.ticket."""
    import duckdb

    with duckdb.connect(str(city_db), read_only=True) as con:
        rows = con.execute("select district_code, count(*) from core.ticket where received_on = ? group by 1",
                           [date]).fetchall()
    return {str(code): int(n) for code, n in rows}


def next_day_runs(run: Path, manifest: dict[str, Any], day: int, key: str,
                  memory_limit: str | None, threads: int | None) -> dict[str, dict[str, Any]]:
    """Each district's next-day run for `day` (bench/surge.py's next_day), silos up around it."""
    from bench.city import district_env
    from bench.district_warehouse import PORTS, pipeline_env
    from bench.surge import THREADS_ENV, next_day
    from simulators import clock, runner

    out: dict[str, dict[str, Any]] = {}
    for d in manifest["districts"]:
        code = str(d["code"])
        target = run / code
        root = target / "district"
        env = {**os.environ, **pipeline_env(target), **district_env(target, key)}
        if memory_limit:
            env["ONENET_DUCKDB_MEMORY_LIMIT"] = memory_limit
        if threads:
            env[THREADS_ENV] = str(threads)
        runner.up(root, ports=PORTS)
        try:
            r = next_day(env, root, day, clock.start_date(root), extract=False)
        finally:
            runner.down(root)
        r["load_average"] = [round(x, 1) for x in os.getloadavg()]
        out[code] = r
        print(f"  {code}: {_next_day_line(r)}", flush=True)
    return out


def _parts(r: dict[str, Any]) -> dict[str, float]:
    """A next-day run's wall seconds by part (sync, validate: the four sources; merge; its publish)."""
    m = r["merge"]
    return {"sync": sum(v["wall_s"] for k, v in r.items() if k.startswith("sync ")),
            "validate": sum(v["wall_s"] for k, v in r.items() if k.startswith("validate ")),
            "merge": m["wall_s"], "publish": sum(m.get("publish", {}).values()),
            "city publish": m.get("publish", {}).get("city", 0.0)}


def _next_day_line(r: dict[str, Any]) -> str:
    p, m = _parts(r), r["merge"]
    steps = ", ".join(f"{k} {v:.1f}" for k, v in m.get("merge_steps", {}).items())
    return (f"{r['total_s']:9.1f}  (sync {p['sync']:.1f}, validate {p['validate']:.1f}, merge {p['merge']:.1f}: "
            f"{steps}; publish {p['publish']:.1f} of which city {p['city publish']:.1f}); clock {r['advance_s']:.1f} s")


def _build_line(b: dict[str, Any]) -> str:
    steps_s = {k: v for k, v in b["steps_s"].items() if k != "total"}
    steps = " / ".join(f"{v:.1f}" for v in steps_s.values())
    other = b["wall_s"] - sum(steps_s.values())  # closing (older builds: opening, the counts, the commit)
    return (f"{b['wall_s']:9.1f}  ({' / '.join(steps_s)} / other: {steps} / {other:.1f}; resolve {b['resolve_mode']}; "
            f"{b['district_persons']:,} district persons -> {b['city_persons']:,} city persons)")


def _generate(city: Path, args: argparse.Namespace) -> float:
    """Generate the city (or keep it, with --reuse, when it is the one asked for); seconds taken."""
    from simulators.city.generate import generate_city
    from simulators.district.surge import SurgeSpec

    if args.reuse and (city / "manifest.json").exists():
        m = json.loads((city / "manifest.json").read_text(encoding="utf-8"))
        have = (len(m["districts"]), m["residents_per_district"], m["seed"], (m.get("surge") or {}).get("peak"))
        want = (args.districts, args.residents, args.seed, args.peak)
        if have != want:
            raise SystemExit(f"--reuse: {city} holds districts, residents, seed, peak {have}, not {want}")
        return 0.0
    t = time.perf_counter()
    generate_city(city, districts=args.districts, residents=args.residents, seed=args.seed,
                  surge=SurgeSpec(peak=args.peak))
    return round(time.perf_counter() - t, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for the city, the districts' runs, the city warehouse")
    ap.add_argument("--districts", type=int, default=4)
    ap.add_argument("--residents", type=int, default=300_000, help="residents per district")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--peak", type=float, default=5.0, help="the surge's hotline peak, x a quiet day (2 to 10)")
    ap.add_argument("--day", type=int, help="the day to run instead of the worst day by tickets")
    ap.add_argument("--reuse", action="store_true", help="keep OUT/city if it is the city asked for")
    ap.add_argument("--full-too", action="store_true", help="also build day W's city from scratch (OUT/city-full.duckdb)")
    ap.add_argument("--memory-limit", help="DuckDB memory_limit of the pipeline's and the city build's connections")
    ap.add_argument("--threads", type=int, help="DuckDB threads of the pipeline's and the city build's connections")
    ap.add_argument("--json", type=Path, help="report [default: OUT/city_surge.json]")
    args = ap.parse_args()

    from bench.city import run_districts, score
    from onenet.settings import environment
    from simulators import clock
    from simulators.district.surge import SurgeSpec

    out: Path = args.out.resolve()
    city, run, city_db = out / "city", out / "run", out / "city.duckdb"
    report_path: Path = args.json or out / "city_surge.json"
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, "-m", "bench.city_surge", *sys.argv[1:]]),
                              "districts": args.districts, "residents": args.residents, "seed": args.seed,
                              "peak": args.peak, "target_s": TARGET_S, "seconds": {}}
    seconds: dict[str, float] = report["seconds"]
    seconds["generate"] = _generate(city, args)
    manifest = json.loads((city / "manifest.json").read_text(encoding="utf-8"))
    spec = SurgeSpec.from_dict(manifest["surge"])

    volume = city_volume(city, manifest)
    day = args.day if args.day is not None else worst_day(volume)
    if not 1 <= day < int(manifest["days"]):
        raise SystemExit(f"--day must be from 1 to {int(manifest['days']) - 1}")
    normal_days = [d for d in volume if spec.level(d) == 0.0] or list(volume)  # a surge the whole period: all
    normal = {k: statistics.median(volume[d][k] for d in normal_days) for k in ("tickets", "cases")}
    date = clock.start_date(city / manifest["districts"][0]["folder"]) + timedelta(days=day)
    report.update(day=day, date=date.isoformat(), surge=manifest["surge"], level=spec.level(day),
                  chosen_by="--day" if args.day is not None else "most tickets",
                  volume={"day": volume[day], "day_before": volume[day - 1], "normal_day_median": normal,
                          "normal_days": normal_days, "tickets_per_day": {d: v["tickets"] for d, v in volume.items()}})
    print(f"city {city}: {args.districts} x {args.residents:,} residents, seed {args.seed}, surge x{spec.peak:g} "
          f"(peak days {spec.peak_day}-{spec.peak_day + spec.peak_days - 1}); generated in {seconds['generate']:.1f} s",
          flush=True)
    print(f"day {day} ({date}, surge level {spec.level(day):.2f}, {report['chosen_by']}): {volume[day]['tickets']:,} "
          f"tickets, {volume[day]['cases']:,} cases in the city; a normal day (median of {len(normal_days)}): "
          f"{normal['tickets']:,.0f} tickets, {normal['cases']:,.0f} cases", flush=True)

    # Each step's files (pseudonym key, access log) under OUT, never the checkout's var/; no serving database.
    os.environ.pop("ONENET_SERVING_URL", None)
    if run.exists():
        shutil.rmtree(run)
    for f in (city_db, out / "city-full.duckdb"):
        for g in (f, f.with_name(f.name + ".wal")):
            g.unlink(missing_ok=True)
    key = secrets.token_urlsafe(32)  # the city's key, issued to its districts
    published = [run / str(d["code"]) / "published" for d in manifest["districts"]]
    with ExitStack() as stack:
        stack.enter_context(environment(ONENET_HOME=str(run / "home")))
        if args.memory_limit:
            stack.enter_context(environment(ONENET_DUCKDB_MEMORY_LIMIT=args.memory_limit))

        print(f"--- the day before: every district's initial load to day {day - 1}", flush=True)
        t = time.perf_counter()
        reports = run_districts(city, run, to_day=day - 1, key=key, memory_limit=args.memory_limit,
                                threads=args.threads)
        seconds["initial loads"] = round(time.perf_counter() - t, 2)
        report["initial"] = {c: {"total_s": r["total_seconds"], "seconds": r["seconds"], "quality": r["quality"],
                                 "peak_rss_mb": r["peak_rss_mb"]} for c, r in reports.items()}
        print(f"--- the day before: city build from {len(published)} published folders", flush=True)
        report["city_build_day_before"] = city_build(city_db, published, args.memory_limit, args.threads)
        seconds["city build, day before"] = report["city_build_day_before"]["wall_s"]

        print(f"--- day {day}: each district's next-day run", flush=True)
        t = time.perf_counter()
        runs = next_day_runs(run, manifest, day, key, args.memory_limit, args.threads)
        seconds["next-day runs (with silos up/down)"] = round(time.perf_counter() - t, 2)
        report["next_day"] = runs
        report["next_day_sum_s"] = round(sum(r["total_s"] for r in runs.values()), 2)
        print(f"--- day {day}: city build on the day's published snapshots (district warehouses moved aside)",
              flush=True)
        warehouses = [run / str(d["code"]) / "warehouse.duckdb" for d in manifest["districts"]]
        report["city_build"] = city_build(city_db, published, args.memory_limit, args.threads, hide=warehouses)
        seconds["city build, day W"] = report["city_build"]["wall_s"]
        if args.full_too:
            print(f"--- day {day}: the same city built from scratch", flush=True)
            report["city_build_full"] = city_build(out / "city-full.duckdb", published, args.memory_limit, args.threads)
            seconds["city build from scratch, day W"] = report["city_build_full"]["wall_s"]

    before = {str(d["code"]): d["version"] for d in report["city_build_day_before"]["districts"]}
    after = {str(d["code"]): d["version"] for d in report["city_build"]["districts"]}
    in_city = tickets_in_city(city_db, date)
    report["checks"] = {
        "worst_day_busier_than_normal": volume[day]["tickets"] > normal["tickets"],
        "new_city_version_per_district": {c: after[c] != before.get(c) for c in after},
        # given only the published folders, and built while the districts' warehouses were moved aside
        "city_reads_only_published": sorted(str(p) for p in published)
        == sorted(d["published"] for d in report["city_build"]["districts"]),
        "day_tickets": {c: {"silo": v["tickets"], "city": in_city.get(c, 0)} for c, v in volume[day]["districts"].items()},
    }
    print("--- scores after the worst day", flush=True)
    t = time.perf_counter()
    report["scores"] = score(city, run, city_db)
    seconds["score"] = round(time.perf_counter() - t, 2)
    report_path.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    _print_table(report)
    print(f"report: {report_path}")


def _print_table(r: dict[str, Any]) -> None:
    v, b = r["volume"], r["city_build"]
    day = r["day"]
    print()
    print(f"{r['districts']} districts x {r['residents']:,} residents, surge x{r['peak']:g}, seed {r['seed']}; "
          f"load average at the end {r['city_build']['load_average']}")
    print(f"worst day: day {day} ({r['date']}, {r['chosen_by']}): {v['day']['tickets']:,} tickets "
          f"({v['day']['tickets'] / max(v['normal_day_median']['tickets'], 1):.1f}x a normal day's "
          f"{v['normal_day_median']['tickets']:,.0f}), {v['day']['cases']:,} cases "
          f"({v['normal_day_median']['cases']:,.0f}); the day before {v['day_before']['tickets']:,} tickets")
    print()
    print(f"{'':44}{'wall s':>9}  detail")
    for code, x in r["initial"].items():
        pipeline_s = sum(s for k, s in x["seconds"].items() if k.startswith(("sync", "validate", "merge")))
        print(f"{'initial load to day ' + str(day - 1) + ', ' + code:44}{x['total_s']:9.1f}  "
              f"sync + validate + merge {pipeline_s:.1f} s")
    print(f"{'city build, day before':44}{_build_line(r['city_build_day_before'])}")
    for code, x in r["next_day"].items():
        print(f"{'day ' + str(day) + ' next-day run, ' + code:44}{_next_day_line(x)}")
    print(f"{'day ' + str(day) + ' next-day runs, sum of districts':44}{r['next_day_sum_s']:9.1f}  "
          f"longest {max(x['total_s'] for x in r['next_day'].values()):.1f} s")
    print(f"{'CITY BUILD ON DAY ' + str(day) + ' (target <= 600 s)':44}{_build_line(b)}  "
          f"{'met' if b['wall_s'] <= TARGET_S else 'NOT met'}")
    if "city_build_full" in r:
        print(f"{'city build on day ' + str(day) + ' from scratch':44}{_build_line(r['city_build_full'])}")
    print()
    c = r["checks"]
    print(f"checks: worst day busier than a normal day: {c['worst_day_busier_than_normal']}; every district "
          f"published a new city version: {all(c['new_city_version_per_district'].values())}; the city read only "
          f"the published folders: {c['city_reads_only_published']}; day {day}'s tickets silo/city per district: "
          + ", ".join(f"{k} {x['silo']}/{x['city']}" for k, x in c["day_tickets"].items()))
    s = r["scores"]
    p = s["persons_records"]
    print(f"scores after day {day}: persons precision {p['precision']:.5f} recall {p['recall']:.5f} "
          f"({p['clusters']:,} city persons for {p['true_clusters']:,} true, {p['records']:,} records); "
          + "; ".join(f"{k} {s[k]['linked']}/{s[k]['on_record_in_both']}"
                      for k in ("movers", "stale_registrations", "cross_callers"))
          + f"; cross-district tickets {s['cross_district_tickets']['right']} right of "
          f"{s['cross_district_tickets']['found']} found ({s['cross_district_tickets']['true']} in the whole month)")
    print("phases: " + ", ".join(f"{k} {x:.1f} s" for k, x in r["seconds"].items()))


if __name__ == "__main__":
    main()
