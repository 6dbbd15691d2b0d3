"""Two districts' pipelines on Airflow's CeleryExecutor, with two workers as two hosts (issue #19 part 2).

Each Celery worker runs in its own network namespace and UTS namespace (its own address on a
private /24 behind a bridge, its own hostname), like a separate machine. The root namespace is the
"control host": PostgreSQL (metadata, 127.0.0.1 only), the api-server, scheduler and dag-processor,
the test's own Redis (the broker, on the bridge address) and socat forwards to the loopback-only
simulated hotline and city feed of each district. The workers reach nothing but the bridge: the
metadata database is on the control host's loopback, which a worker cannot reach, so the tasks
can only have run through the execution API. The warehouses sit in one shared folder.

One set of DAG files serves both districts ($ONENET_DISTRICTS). The test unpauses the three
API/database sources and the merge of both districts and checks that:
- tasks ran on both hosts, and the two districts' tasks overlapped in time on different hosts;
- with the hotline sync of one district running (its silo slowed so the sync is mid-request),
  SIGKILL on every process of that worker's namespace: the scheduler finds the task's heartbeat
  gone, the retry runs on the other worker and succeeds;
- nothing landed twice: every raw table's (key, record hash) counts equal a clean run's (the same
  silos synced once, in-process, into a fresh warehouse), in both districts; both merged.

Needs root and iproute2 (`ip netns`), redis-server and socat; skipped without them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from onenet import districts as districts_mod
from onenet.celery_worker import WARM_MODULES
from tests.dags.conftest import DAGS, REPO
from tests.dags.test_real_scheduler import PG, Airflow, _pg, metadata_db  # noqa: F401 - a fixture

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(1200)]

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
NAMES = ("east", "west")
SEEDS = {"east": 11, "west": 12}
RESIDENTS, DAY = 1000, 3
SOURCES = ("hotline", "city_cases", "grid_registry")  # through Airflow; health codes staged before
TIMEOUT = 800.0  # the stack, from its start to the last run (520 s in all at load 22 on 2 cores)


def _missing_tools() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces (ip netns add)"
    for tool in ("ip", "redis-server", "socat", "unshare"):
        if not shutil.which(tool):
            return f"needs `{tool}` (iproute2, redis-server, socat, util-linux; `make system-deps`)"
    return None


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Hosts:
    """A bridge on the root namespace and two worker namespaces, each a "host" with its own name."""

    def __init__(self) -> None:
        tag = secrets.token_hex(2)
        used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
        net = next(n for n in random.sample(range(20, 250), 230) if f" 10.231.{n}." not in used)
        self.prefix = f"10.231.{net}"
        self.control = f"{self.prefix}.1"
        self.bridge = f"onbr{tag}"
        self.ns = {f"onenet-w{i}": f"onw{i}{tag}" for i in (1, 2)}  # hostname -> namespace
        self.addr = {h: f"{self.prefix}.{i + 1}" for i, h in enumerate(self.ns, start=1)}

    def create(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.control}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for host, ns in self.ns.items():
            _run("ip", "netns", "add", ns)
            outer, inner = f"{ns}o", f"{ns}i"
            _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            _run("ip", "link", "set", inner, "netns", ns)
            _run("ip", "link", "set", outer, "master", self.bridge, "up")
            _run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.addr[host]}/24", "dev", inner)
            _run("ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            # `ip netns exec` mounts /etc/netns/<ns>/* over /etc: the host knows its own name, and
            # has no DNS to wait for.
            etc = Path("/etc/netns") / ns
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(f"127.0.0.1 localhost\n{self.addr[host]} {host}\n", encoding="ascii")
            (etc / "resolv.conf").write_text("options timeout:1 attempts:1\n", encoding="ascii")

    def command(self, host: str, argv: list[str]) -> list[str]:
        """`argv` run on `host`: in its network namespace, with its own UTS namespace and hostname."""
        script = f'hostname {host} && exec "$@"'
        return ["ip", "netns", "exec", self.ns[host], "unshare", "--uts", "--", "sh", "-c", script, "sh", *argv]

    def kill(self, host: str) -> list[int]:
        """SIGKILL every process in the host's network namespace (the worker and its task processes)."""
        out = subprocess.run(["ip", "netns", "pids", self.ns[host]], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    def destroy(self) -> None:
        for host, ns in self.ns.items():
            self.kill(host)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
            shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    reason = _missing_tools()
    if reason:
        pytest.skip(reason)
    h = Hosts()
    try:
        h.create()
        yield h
    finally:
        h.destroy()


class Children:
    """Processes the test starts on the control host (Redis, socat), stopped in the finalizer."""

    def __init__(self, logs: Path) -> None:
        self.logs, self.procs = logs, list[subprocess.Popen]()

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait_port(host: str, port: int, what: str, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{what} did not listen on {host}:{port}")


def _raw_counts(warehouse: Path) -> dict[str, list[tuple]]:
    """Per raw table: every (key, record hash) with how many rows it has, sorted."""
    import duckdb

    from connectors.city_cases.settings import CASES
    from connectors.grid_registry.settings import ENTITIES
    from connectors.health_codes.settings import EXPORTS
    from connectors.hotline.settings import TICKETS

    out = {}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        for entity in (TICKETS, CASES, EXPORTS, *ENTITIES.values()):
            table, keys = f"raw.{entity.source}_{entity.name}", ", ".join(entity.key)
            out[table] = con.execute(f"select {keys}, _record_hash, count(*) from {table} "
                                     f"group by all order by all").fetchall()
    finally:
        con.close()
    return out


def _difference(warehouse: Path, clean: Path) -> dict[str, dict[str, list[tuple]]]:
    """Per raw table that differs, the (key, hash, count) rows only one side has: the failure's reason."""
    ours, theirs = _raw_counts(warehouse), _raw_counts(clean)
    out = {}
    for table in sorted(set(ours) | set(theirs)):
        a, b = set(ours.get(table, [])), set(theirs.get(table, []))
        if a != b:
            out[table] = {"only_airflow": sorted(a - b)[:20], "only_clean": sorted(b - a)[:20]}
    return out


def test_two_districts_on_two_celery_hosts_survive_a_killed_worker(hosts, metadata_db, tmp_path):  # noqa: F811
    import duckdb
    import requests

    from simulators import runner
    from simulators.district.generate import generate
    from simulators.health_codes import drop

    logs = tmp_path / "logs"
    logs.mkdir()
    shared = tmp_path / "shared"  # the folder every host mounts (here: the same filesystem)
    children = Children(logs)
    roots = {name: shared / name / "district" for name in NAMES}
    airflow: Airflow | None = None
    workers: dict[str, subprocess.Popen] = {}
    try:
        # --- two small districts, their silos up; the HTTP silos forwarded onto the bridge ---------
        lines = []
        for name in NAMES:
            root = roots[name]
            generate(root, residents=RESIDENTS, seed=SEEDS[name], days=30)
            runner.up(root, ports={"hotline": 0, "city_cases": 0})
            runner.advance(root, DAY)
            drop.deliver_until(root, DAY)
            conns = {"health_codes": f"{(root / 'health_codes' / 'drop').as_uri()}?stable_seconds=0"}
            for source, secret in (("hotline", "dev-hotline-token"), ("city_cases", "dev-city-key")):
                local = json.loads((root / "run" / f"{source}.json").read_text(encoding="utf-8"))["url"]
                port = _free_port(hosts.control)
                children.start(f"socat-{name}-{source}", [
                    "socat", f"TCP-LISTEN:{port},bind={hosts.control},reuseaddr,fork",
                    f"TCP:{local.removeprefix('http://')}"])
                _wait_port(hosts.control, port, f"socat for {name}'s {source}")
                conns[source] = f"http://:{secret}@{hosts.control}:{port}?timeout=30"
            lines += [f'[[district]]\nname = "{name}"\nsimulated = "district"\n[district.connections]']
            lines += [f'{source} = "{uri}"' for source, uri in conns.items()]
        config = shared / "districts.toml"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        found = {d.name: d for d in districts_mod.load(config)}

        # Health codes wait for a day's file (a sensor on the triggerer); staged here, directly. The
        # clean run: the same silos (their clock stays at DAY) synced once into a fresh warehouse.
        clean = {name: tmp_path / f"clean-{name}.duckdb" for name in NAMES}
        # Both in fresh processes, as the Airflow tasks run: nothing of this test process's state (earlier
        # tests' imports and caches) can make the reference differ from the run it is compared with.
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "ONENET_"))}
        script = ("import sys\nfrom onenet import pipeline\nvalidate = sys.argv[1] == 'validate'\n"
                  "for source in sys.argv[2:]:\n    pipeline.sync(source)\n"
                  "    if validate:\n        pipeline.validate(source)\n")
        for name in NAMES:
            for env, argv in (({**base_env, **found[name].env()}, ["validate", "health_codes"]),
                              ({**base_env, **found[name].env(), "ONENET_WAREHOUSE": str(clean[name]),
                                "ONENET_GX_DIR": str(tmp_path / "gx-clean")}, ["sync", *SOURCES, "health_codes"])):
                done = subprocess.run([sys.executable, "-c", script, *argv], env=env, cwd=REPO,
                                      capture_output=True, text=True, timeout=300)
                assert done.returncode == 0, done.stderr[-3000:]

        # --- the control host: Redis on the bridge, Airflow on PostgreSQL --------------------------
        redis_port, api_port = _free_port(hosts.control), _free_port(hosts.control)
        children.start("redis", ["redis-server", "--bind", hosts.control, "--port", str(redis_port),
                                 "--save", "", "--appendonly", "no", "--protected-mode", "no"])
        _wait_port(hosts.control, redis_port, "redis-server")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "ONENET_"))}
        from onenet import orchestration as orch

        env.update(orch.airflow_env(shared / "airflow", DAGS, f"postgresql+psycopg2://{PG}/{metadata_db}"))
        env.update({
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+psycopg://{PG}/{metadata_db}",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{hosts.control}:{redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"redis://{hosts.control}:{redis_port}/1",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{hosts.control}:{api_port}/execution/",
            "AIRFLOW__API__HOST": hosts.control,
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            # A killed worker's task is found by its missing heartbeat: 30 s, not the default 5 min.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
            "ONENET_DISTRICTS": str(config),
            "ONENET_RETRY_DELAY_SECONDS": "5",
        })
        airflow = Airflow(env, logs)
        airflow.cli("db", "migrate", timeout=240)
        pools = tmp_path / "pools.json"
        pools.write_text(json.dumps(districts_mod.pools(tuple(found.values()))), encoding="utf-8")
        airflow.cli("pools", "import", str(pools))
        airflow.start("api-server", "api-server")
        airflow.start("dag-processor", "dag-processor")
        airflow.start("scheduler", "scheduler")
        for host in hosts.ns:
            name = host.removeprefix("onenet-")
            with open(logs / f"worker-{host}.log", "wb") as log:
                workers[host] = subprocess.Popen(
                    hosts.command(host, [AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@{host}",
                                         "--without-mingle", "--without-gossip"]),
                    env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + TIMEOUT
        meta = _pg(metadata_db)

        def wait(what: str, check, every: float = 1.0):
            while time.monotonic() < deadline:
                airflow.check_alive()
                for host, proc in workers.items():
                    assert proc.poll() is None or host == killed, \
                        f"worker {host} exited:\n{(logs / f'worker-{host}.log').read_text(errors='replace')[-3000:]}"
                value = check()
                if value:
                    return value
                time.sleep(every)
            raise AssertionError(f"timed out waiting for {what}\nscheduler:\n{airflow.tail('scheduler')}\n"
                                 + "\n".join(f"{h}:\n{(logs / f'worker-{h}.log').read_text(errors='replace')[-2000:]}"
                                             for h in workers))

        killed: str | None = None
        dag_ids = [f"onenet_{s}__{n}" for n in NAMES for s in SOURCES] + [f"onenet_merge__{n}" for n in NAMES]
        wait("the dag-processor to parse the districts' DAGs", lambda: meta.execute(
            "select count(*) from dag where dag_id = any(%s)", (dag_ids,)).fetchone()[0] == len(dag_ids))
        wait("both workers to be ready", lambda: all(
            "ready." in (logs / f"worker-{h}.log").read_text(errors="replace") for h in workers))
        for h in workers:  # onenet/celery_worker.py: the tasks' imports done once, before the pool forks
            assert f"{len(WARM_MODULES)} task modules imported" in (logs / f"worker-{h}.log").read_text(errors="replace"), h

        # East's hotline answers slowly: its sync is still in the silo's request when the worker dies.
        hotline_east = json.loads((roots["east"] / "run" / "hotline.json").read_text(encoding="utf-8"))["url"]
        faults = f"{hotline_east}/_admin/faults"
        auth = {"Authorization": "Bearer dev-hotline-token"}
        requests.post(faults, json={"slow_ms": 8000}, headers=auth, timeout=10).raise_for_status()
        # Unpausing lets the scheduler create each source's latest interval run (catchup is off).
        airflow.cli("dags", "unpause", "--treat-dag-id-as-regex", "-y", "^(" + "|".join(dag_ids) + ")$")

        def running_east_hotline():
            return meta.execute("select hostname from task_instance where dag_id = 'onenet_hotline__east' "
                                "and task_id = 'sync' and state = 'running' and coalesce(hostname, '') <> ''"
                                ).fetchone()

        (victim,) = wait("east's hotline sync to run", running_east_hotline, every=0.3)
        assert victim in hosts.ns, victim
        time.sleep(2.0)  # inside the slow request
        assert running_east_hotline() == (victim,), "the sync finished before the kill: the silo was not slow"
        killed = victim
        assert hosts.kill(victim), f"no process in {victim}'s namespace"
        workers[victim].wait(timeout=30)
        requests.post(faults, json={}, headers=auth, timeout=10).raise_for_status()  # the retry runs at speed

        def settled():
            runs = meta.execute("select dag_id, state from dag_run where dag_id = any(%s)", (dag_ids,)).fetchall()
            pending = meta.execute("select count(*) from asset_dag_run_queue where target_dag_id = any(%s)",
                                   (dag_ids,)).fetchone()[0]
            done = {d for d, st in runs if st == "success"}
            busy = [r for r in runs if r[1] not in ("success", "failed")]
            failed = [r for r in runs if r[1] == "failed"]
            assert not failed, f"failed runs: {failed}\n{airflow.tail('scheduler')}"
            return runs if done == set(dag_ids) and not busy and not pending else None

        wait("every run of both districts to finish", settled, every=2.0)
        tis = meta.execute("select dag_id, task_id, try_number, state, hostname, start_date, end_date "
                           "from task_instance where dag_id = any(%s)", (dag_ids,)).fetchall()
        history = meta.execute("select dag_id, task_id, try_number, state, hostname from task_instance_history "
                               "where dag_id = any(%s)", (dag_ids,)).fetchall()
    finally:
        if airflow is not None:
            airflow.stop()
        hosts.destroy()  # the workers, then the namespaces (again in the fixture: idempotent)
        children.stop()
        for root in roots.values():
            if (root / "manifest.json").exists():
                runner.down(root)

    survivor = next(h for h in hosts.ns if h != killed)
    # Tasks ran on both hosts, and the two districts' pipelines ran at the same time on different ones.
    hostnames = {row[4] for row in tis} | {row[4] for row in history}
    assert set(hosts.ns) <= hostnames, hostnames
    ran = [(d.rsplit("__", 1)[1], h, s, e) for d, _, _, st, h, s, e in tis if st == "success" and s and e]
    assert any(a[0] != b[0] and a[1] != b[1] and a[2] < b[3] and b[2] < a[3] for a in ran for b in ran), ran
    # The killed try was on the victim; the retry ran on the other worker and succeeded.
    earlier = [r for r in history if r[:2] == ("onenet_hotline__east", "sync")]
    assert any(r[4] == killed and r[3] in ("failed", "up_for_retry") for r in earlier), earlier
    final = next(r for r in tis if r[:2] == ("onenet_hotline__east", "sync"))
    assert final[2] >= 2 and final[3] == "success" and final[4] == survivor, final

    # Nothing landed twice: raw equals the clean run's, key by key; and both districts merged.
    for name in NAMES:
        warehouse = found[name].warehouse
        assert _raw_counts(warehouse) == _raw_counts(clean[name]), (name, _difference(warehouse, clean[name]))
        con = duckdb.connect(str(warehouse), read_only=True)
        try:
            for table in ("core.person", "core.ticket"):
                assert (con.execute(f"select count(*) from {table}").fetchone() or [0])[0] > 0, (name, table)
        finally:
            con.close()
