"""A city's initial load: N districts on Airflow's CeleryExecutor (2 workers) vs one after another (issue #19).

    .venv/bin/python -m bench.celery_city [--districts 4] [--residents 100000] [--day 28] [--pairs 3] \
        [--workers 2] [--work /tmp/onenet-city] [--out city.json]

1. N districts are generated (seeds 1..N, 30 days; reused when WORK/generated/<name> exists), their
   16 silos start on free loopback ports and move to day D.
2. Airflow on this machine's PostgreSQL (a fresh database, dropped at the end), its own Redis, the
   api-server, scheduler and dag-processor, and W Celery workers of concurrency 1 (one task per
   core); one set of DAG files for every district ($ONENET_DISTRICTS). The scheduler creates no
   runs of its own (`use_job_schedule` off): the bench triggers them through the REST API.
3. Pairs, alternating which goes first, each on fresh warehouses:
   - **celery**: the 4 source DAGs of every district triggered at once for day D; each district's
     merge (full) is triggered as soon as its 4 sources are done; timed from the first trigger to
     the last merge's success. Per-task durations come from the metadata database.
   - **sequential**: one fresh process calls onenet.pipeline for district after district: sync the
     4 sources, validate them, merge — the calls the tasks make. The Airflow processes are stopped
     (SIGSTOP) meanwhile, so they take no CPU from it.
Prints a table and the ratio celery / sequential per pair; from the per-task figures, the work
(sum of task durations) and the longest district chain, which bound the wall time on more cores.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PG = "postgres@127.0.0.1:5432"
SOURCES = ("grid_registry", "health_codes", "hotline", "city_cases")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg(db: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(f"postgresql://{PG}/{db}", autocommit=True)


class Stack:
    """Redis and the Airflow components as child processes, each in its own process group."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.procs = env, logs, dict[str, subprocess.Popen]()

    def cli(self, *args: str) -> None:
        out = subprocess.run([AIRFLOW, *args], env=self.env, cwd=REPO, capture_output=True, text=True, timeout=300)
        if out.returncode:
            raise RuntimeError(f"airflow {' '.join(args)}: {out.stderr[-2000:]}")

    def start(self, name: str, argv: list[str]) -> None:
        with open(self.logs / f"{name}.log", "wb") as log:
            self.procs[name] = subprocess.Popen(argv, env=self.env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def signal(self, sig: int) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, sig)

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {(self.logs / f'{name}.log').read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class Api:
    """The REST API as a script calls it (the test auth manager: every user an admin)."""

    def __init__(self, port: int) -> None:
        import httpx

        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:  # the api-server may still be starting when the DAGs are parsed and the workers ready
            try:
                token = httpx.get(f"{self.base}/auth/token", timeout=30).json()["access_token"]
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        self.client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def unpause(self, dag_id: str) -> None:
        self.client.patch(f"{self.base}/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

    def forget_runs(self, dag_id: str) -> None:
        """Delete the DAG's runs: a logical date can have one run, and every pair loads day D again."""
        runs = self.client.get(f"{self.base}/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100})
        runs.raise_for_status()
        for run in runs.json()["dag_runs"]:
            self.client.delete(f"{self.base}/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}").raise_for_status()

    def trigger(self, dag_id: str, logical_date: str | None, conf: dict | None = None) -> str:
        r = self.client.post(f"{self.base}/api/v2/dags/{dag_id}/dagRuns",
                             json={"logical_date": logical_date, "conf": conf or {}})
        r.raise_for_status()
        return str(r.json()["dag_run_id"])


def _districts_file(work: Path, names: list[str], roots: dict[str, Path]) -> Path:
    lines = []
    for name in names:
        drop = (roots[name] / "health_codes" / "drop").as_uri()
        lines += [f'[[district]]\nname = "{name}"\nhome = "{work / "homes" / name}"\nsimulated = "{roots[name]}"',
                  "[district.connections]", f'health_codes = "{drop}?stable_seconds=0"']
    path = work / "districts.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _fresh_homes(work: Path, names: list[str]) -> None:
    for name in names:
        shutil.rmtree(work / "homes" / name, ignore_errors=True)
        (work / "homes" / name).mkdir(parents=True)


SEQUENTIAL = """
import json, sys, time
from onenet import districts, pipeline
from onenet.settings import environment
out = []
for d in districts.configured():
    with environment(**d.env()):
        for step, call in ([("sync " + s, lambda s=s: pipeline.sync(s)) for s in sys.argv[1:]]
                           + [("validate " + s, lambda s=s: pipeline.validate(s)) for s in sys.argv[1:]]
                           + [("merge", lambda: pipeline.merge(full=True))]):
            began = time.monotonic(); call(); out.append([d.name, step, time.monotonic() - began])
            print(d.name, step, round(out[-1][2], 1), flush=True)
print(json.dumps(out))
"""


def run_sequential(env: dict[str, str], work: Path, names: list[str]) -> dict[str, Any]:
    _fresh_homes(work, names)
    began = time.monotonic()
    out = subprocess.run([sys.executable, "-c", SEQUENTIAL, *SOURCES], env=env, cwd=REPO, capture_output=True,
                         text=True)
    seconds = time.monotonic() - began
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    steps = json.loads(out.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, "steps": steps}


def run_celery(api: Api, stack: Stack, meta: Any, work: Path, names: list[str], day_end: str) -> dict[str, Any]:
    _fresh_homes(work, names)
    for dag_id in [f"onenet_{s}__{n}" for n in names for s in (*SOURCES, "merge")]:
        api.forget_runs(dag_id)  # the last pair's runs of day D, task figures read already
    began = time.monotonic()
    runs = {(n, s): api.trigger(f"onenet_{s}__{n}", day_end) for n in names for s in SOURCES}
    merges: dict[str, str] = {}
    while len(merges) < len(names) or not _all_done(meta, list(merges.values())):
        stack.check()
        states = dict(meta.execute("select run_id, state from dag_run where run_id = any(%s)",
                                   (list(runs.values()) + list(merges.values()),)).fetchall())
        failed = [r for r, st in states.items() if st == "failed"]
        if failed:
            raise RuntimeError(f"failed runs: {failed}")
        for n in names:
            if n not in merges and all(states.get(runs[(n, s)]) == "success" for s in SOURCES):
                merges[n] = api.trigger(f"onenet_merge__{n}", None, {"full": True})
        time.sleep(0.5)
    seconds = time.monotonic() - began
    ids = list(runs.values()) + list(merges.values())
    tis = meta.execute("select dag_id, task_id, hostname, extract(epoch from start_date), extract(epoch from end_date), "
                       "extract(epoch from queued_dttm) from task_instance where run_id = any(%s)", (ids,)).fetchall()
    return {"seconds": seconds, "tasks": [[d, t, h, float(s), float(e), float(q) if q else None]
                                          for d, t, h, s, e, q in tis]}


def _all_done(meta: Any, run_ids: list[str]) -> bool:
    if not run_ids:
        return False
    states = [st for (st,) in meta.execute("select state from dag_run where run_id = any(%s)", (run_ids,)).fetchall()]
    if "failed" in states:
        raise RuntimeError(f"a merge failed: {run_ids}")
    return len(states) == len(run_ids) and set(states) == {"success"}


def figures(celery: dict[str, Any]) -> dict[str, float]:
    """Work (sum of task durations), the longest district chain, and waiting between tasks."""
    tasks = celery["tasks"]
    work = sum(e - s for *_, s, e, _ in tasks)
    chains: dict[str, float] = {}
    for dag, _, _, s, e, _ in tasks:
        district = dag.rsplit("__", 1)[1]
        chains[district] = chains.get(district, 0.0) + (e - s)
    heavy = sum(e - s for _, t, _, s, e, _ in tasks if t in ("sync", "validate", "merge"))
    by_task: dict[str, float] = {}
    for _, t, _, s, e, _ in tasks:
        by_task[t] = by_task.get(t, 0.0) + (e - s)
    waits = [s - q for *_, s, _, q in tasks if q is not None]
    return {"work_s": work, "heavy_s": heavy, "longest_chain_s": max(chains.values()), "task_count": len(tasks),
            "light_s": work - heavy, "task_s": {t: round(v, 1) for t, v in sorted(by_task.items())},
            "queued_to_start_s": round(sum(waits), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--districts", type=int, default=4)
    parser.add_argument("--residents", type=int, default=100_000)
    parser.add_argument("--day", type=int, default=28)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/onenet-city"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # A bench stopped with SIGTERM (or SIGINT, ignored in a background job) still stops its Airflow,
    # Redis and silos and drops its database (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from onenet import districts as districts_mod
    from onenet import orchestration as orch
    from simulators import clock, runner
    from simulators.district.generate import generate
    from simulators.health_codes import drop

    work = args.work.resolve()
    names = [f"d{i}" for i in range(1, args.districts + 1)]
    roots = {n: work / "generated" / f"{n}-{args.residents}" for n in names}
    for i, n in enumerate(names, start=1):
        if not (roots[n] / "manifest.json").exists():
            t = time.monotonic()
            generate(roots[n], residents=args.residents, seed=i, days=30)
            print(f"generated {n}: {args.residents:,} residents (seed {i}) in {time.monotonic() - t:.1f} s", flush=True)
    config = _districts_file(work, names, roots)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    db = f"onenet_celery_bench_{secrets.token_hex(3)}"
    admin = _pg()
    admin.execute(f'create database "{db}"')
    stack: Stack | None = None
    results: list[dict[str, Any]] = []
    try:
        for n in names:
            runner.up(roots[n], ports={"hotline": 0, "city_cases": 0})
            runner.advance(roots[n], args.day)
            drop.deliver_until(roots[n], args.day)
        the_day = clock.start_date(roots[names[0]]) + timedelta(days=args.day)
        day_end = orch.day_end_utc(the_day).isoformat()
        redis_port, api_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "ONENET_"))}
        env.update(orch.airflow_env(work / "airflow", REPO / "dags", f"postgresql+psycopg2://{PG}/{db}"))
        env.update({
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+psycopg://{PG}/{db}",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"redis://127.0.0.1:{redis_port}/1",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(api_port), "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
            "ONENET_DISTRICTS": str(config),
        })
        stack = Stack(env, logs)
        stack.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                              "--appendonly", "no"])
        stack.cli("db", "migrate")
        pools = work / "pools.json"
        pools.write_text(json.dumps(districts_mod.pools(districts_mod.load(config))), encoding="utf-8")
        stack.cli("pools", "import", str(pools))
        for name in ("api-server", "dag-processor", "scheduler"):
            stack.start(name, [AIRFLOW, name])
        for w in range(1, args.workers + 1):
            stack.start(f"worker{w}", [AIRFLOW, "celery", "worker", "--celery-hostname", f"w{w}@%h",
                                       "--without-mingle", "--without-gossip"])
        meta = _pg(db)
        dag_ids = [f"onenet_{s}__{n}" for n in names for s in (*SOURCES, "merge")]
        deadline = time.monotonic() + 300
        while meta.execute("select count(*) from dag where dag_id = any(%s)", (dag_ids,)).fetchone()[0] < len(dag_ids):
            stack.check()
            if time.monotonic() > deadline:
                raise RuntimeError("the dag-processor did not parse the districts' DAGs in 5 minutes")
            time.sleep(1)
        while not all("ready." in (logs / f"worker{w}.log").read_text(errors="replace")
                      for w in range(1, args.workers + 1)):
            stack.check()
            time.sleep(1)
        api = Api(api_port)
        for dag_id in dag_ids:
            api.unpause(dag_id)
        for pair in range(args.pairs):
            order = ("celery", "sequential") if pair % 2 == 0 else ("sequential", "celery")
            row: dict[str, Any] = {"pair": pair + 1, "order": list(order)}
            for arm in order:
                if arm == "celery":
                    row["celery"] = run_celery(api, stack, meta, work, names, day_end)
                    row["celery"].update(figures(row["celery"]))
                else:
                    stack.signal(signal.SIGSTOP)
                    try:
                        row["sequential"] = run_sequential(env, work, names)
                    finally:
                        stack.signal(signal.SIGCONT)
                print(f"pair {pair + 1} {arm}: {row[arm]['seconds']:.1f} s", flush=True)
            row["ratio"] = row["celery"]["seconds"] / row["sequential"]["seconds"]
            load = os.getloadavg()[0]
            row["load"] = load
            print(f"pair {pair + 1}: celery {row['celery']['seconds']:.1f} s, sequential "
                  f"{row['sequential']['seconds']:.1f} s, ratio {row['ratio']:.2f} (load {load:.1f}); celery work "
                  f"{row['celery']['work_s']:.1f} s in {row['celery']['task_count']} tasks, longest district chain "
                  f"{row['celery']['longest_chain_s']:.1f} s; by task {row['celery']['task_s']}; queued to start "
                  f"{row['celery']['queued_to_start_s']:.1f} s in all", flush=True)
            results.append(row)
            if args.out:  # after every pair: a long run stopped early keeps what it measured
                args.out.write_text(json.dumps({"districts": args.districts, "residents": args.residents,
                                                "day": args.day, "workers": args.workers, "pairs": results},
                                               indent=1), encoding="utf-8")
    finally:
        if stack is not None:
            stack.stop()
        for n in names:
            runner.down(roots[n])
        admin.execute(f'drop database if exists "{db}" with (force)')
    ratios = sorted(r["ratio"] for r in results)
    print(f"celery / sequential: {', '.join(f'{r:.2f}' for r in ratios)} (median {ratios[len(ratios) // 2]:.2f}; "
          f"target <= 1.2)")


if __name__ == "__main__":
    main()
