"""Where things live: one place decides the folders and source addresses, from the environment."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote


def home() -> Path:
    """The project's working folder (warehouse, simulated district, exports): $ONENET_HOME or ./var."""
    return Path(os.environ.get("ONENET_HOME", "var")).resolve()


def district_dir() -> Path:
    """The simulated district the simulators serve: $ONENET_DISTRICT or <home>/district."""
    env = os.environ.get("ONENET_DISTRICT")
    return Path(env).resolve() if env else home() / "district"


def warehouse_path() -> Path:
    """The DuckDB warehouse file: $ONENET_WAREHOUSE or <home>/warehouse.duckdb."""
    env = os.environ.get("ONENET_WAREHOUSE")
    return Path(env).resolve() if env else home() / "warehouse.duckdb"


def gx_dir() -> Path:
    """Great Expectations' project folder (stored results, Data Docs): $ONENET_GX_DIR or <home>/gx."""
    env = os.environ.get("ONENET_GX_DIR")
    return Path(env).resolve() if env else home() / "gx"


def exports_dir() -> Path:
    """Where extracts, reports and the dashboard are written: $ONENET_EXPORTS or <home>/exports."""
    env = os.environ.get("ONENET_EXPORTS")
    return Path(env).resolve() if env else home() / "exports"


def deployment() -> str:
    """`demo` (the embedded default) or `production`: $ONENET_DEPLOYMENT. Production refuses defaults
    that are only safe on a demo machine (a generated pseudonym key, for one). A host's deployment file
    (onenet/deployment.py) decides instead where it exists."""
    from onenet import deployment as host

    value = os.environ.get("ONENET_DEPLOYMENT", "demo").strip().lower() or "demo"
    if value not in ("demo", "production"):
        raise ValueError(f"ONENET_DEPLOYMENT must be demo or production, not {value!r}")
    return host.setting("mode", value) or value


def published_dir() -> Path:
    """Where each audience's read-only snapshots are published: the deployment file's `published`,
    else $ONENET_PUBLISHED or <home>/published."""
    from onenet import deployment as host

    env = host.setting("published", os.environ.get("ONENET_PUBLISHED"))
    return Path(env).resolve() if env else home() / "published"


def serving_url() -> str | None:
    """The PostgreSQL serving database analysts connect to ($ONENET_SERVING_URL); None: not published there."""
    return os.environ.get("ONENET_SERVING_URL") or None


def lock_timeout() -> float:
    """Seconds a CLI step waits for the warehouse while a pipeline task holds it: $ONENET_LOCK_TIMEOUT or 900."""
    return float(os.environ.get("ONENET_LOCK_TIMEOUT", "900"))


def duckdb_memory_limit() -> str:
    """DuckDB's memory limit for pipeline steps: $ONENET_DUCKDB_MEMORY_LIMIT or 4GB.

    DuckDB's own default is 80% of RAM; a district-scale merge then peaks near 8 GB. With 3 GB it
    spills to disk and peaks at 3.7 GB of process memory without getting slower (bench/README.md).
    """
    return os.environ.get("ONENET_DUCKDB_MEMORY_LIMIT", "4GB")


def reader_nice() -> int:
    """How far a non-engineer's reading command (query, extract, report, dashboard, export) lowers its
    own CPU priority, so the pipeline keeps the cores: $ONENET_READER_NICE or 10 (0: unchanged, at
    most 19). Its IO priority drops to the lowest best-effort level with it."""
    return max(0, min(19, int(os.environ.get("ONENET_READER_NICE", "10"))))


def reader_threads() -> int:
    """DuckDB threads of a non-engineer's reading command: $ONENET_READER_THREADS or 1."""
    return max(1, int(os.environ.get("ONENET_READER_THREADS", "1")))


def reader_memory_limit() -> str:
    """DuckDB's memory limit for a non-engineer's reading command: $ONENET_READER_MEMORY_LIMIT or 512MB."""
    return os.environ.get("ONENET_READER_MEMORY_LIMIT", "512MB")


def lower_priority(nice: int) -> None:
    """Run this process (threads started later inherit it) at least `nice` lower in CPU priority and,
    when lowered at all, at the lowest best-effort IO priority (Linux ioprio_set; skipped elsewhere).
    Idempotent: calling it again never lowers further than `nice`."""
    if nice <= 0:
        return
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current < nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    except (OSError, AttributeError):  # not permitted or not POSIX: run as is
        return
    _lowest_best_effort_io()


_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "arm64": 30}


def _lowest_best_effort_io() -> None:
    import ctypes
    import platform

    number = _IOPRIO_SET.get(platform.machine())
    if number is None or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        # IOPRIO_WHO_PROCESS (1), this process (0), class best-effort (2) << 13 | level 7 (the lowest).
        libc.syscall(number, 1, 0, (2 << 13) | 7)
    except OSError:
        return


# Connection ids: set AIRFLOW_CONN_<ID> (an Airflow Connection URI) to point a source at a real system.
CONN_IDS = {
    "hotline": "onenet_hotline",
    "city_cases": "onenet_city_cases",
    "grid_registry": "onenet_grid_registry",
    "health_codes": "onenet_health_codes",
}


def _sim_url(source: str) -> str:
    """host:port of the running simulator of `source`, from the run file it writes when it starts.

    No guess at a usual port: a silo of another district may listen there. Without the run file
    the embedded default is a clear error naming the file and both ways out.
    """
    from connectors.common.exceptions import ConfigurationError

    district = district_dir()
    run = district / "run" / f"{source}.json"
    try:
        url = json.loads(run.read_text(encoding="utf-8"))["url"]
    except FileNotFoundError:
        raise ConfigurationError(
            f"{source}: no simulator is running for the district {district} ({run} is missing) and no connection "
            f"is configured — start it with `onenet simulators up --root {district}`, or point the source at "
            f"its system with AIRFLOW_CONN_{CONN_IDS[source].upper()}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"{source}: the simulator's run file {run} is unreadable ({exc!r}) — restart it "
                                 f"with `onenet simulators down` then `onenet simulators up --root {district}`") from exc
    return str(url).replace("http://", "")


def embedded_uri(source: str) -> str:
    """The embedded default of a source: the simulated silo on loopback or in the district folder.

    The credentials are the simulators' development values (overridable by the same variables
    the simulators read); they guard nothing real. Real systems come from AIRFLOW_CONN_*.
    """
    d = district_dir()
    if source == "hotline":
        token = quote(os.environ.get("ONENET_SIM_HOTLINE_TOKEN", "dev-hotline-token"), safe="")
        return f"http://:{token}@{_sim_url(source)}"
    if source == "city_cases":
        key = quote(os.environ.get("ONENET_SIM_CITY_API_KEY", "dev-city-key"), safe="")
        return f"http://:{key}@{_sim_url(source)}"
    if source == "grid_registry":
        return f"sqlite:///{d / 'grid_registry' / 'registry.sqlite'}"
    if source == "health_codes":
        return (d / 'health_codes' / 'drop').as_uri()  # percent-encoded: spaces, '#' and '%' survive
    raise KeyError(source)


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for a block (a run pointed at another district or warehouse), then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
