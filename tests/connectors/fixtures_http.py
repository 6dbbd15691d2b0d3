"""Helpers for the HTTP connector tests: simulators in threads, fault switches, warehouse snapshots."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import requests

from simulators.http_common import Service, start_server


@contextmanager
def running(service: Service) -> Iterator[str]:
    """Serve `service` on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    server = start_server(service)
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


def port_of(url: str) -> int:
    """The port of a base URL such as http://127.0.0.1:40123."""
    return int(url.rsplit(":", 1)[1])


def set_faults(url: str, headers: dict[str, str], **switches: Any) -> None:
    """Replace the simulator's fault switches (keys left out are off)."""
    requests.post(url + "/_admin/faults", json=switches, headers=headers, timeout=5).raise_for_status()


def no_sleep(_seconds: float) -> None:
    """A client `sleep` that does not wait: backoff is exercised, the test stays fast."""


def after_responses(count: int, action: Callable[[], None]) -> Callable[..., None]:
    """A requests response hook that runs `action` once, after `count` successful data pages."""
    seen = {"ok": 0}

    def hook(response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        if response.status_code == 200:
            seen["ok"] += 1
            if seen["ok"] == count:
                action()

    return hook


def versions(con: duckdb.DuckDBPyConnection, table: str, key: str) -> list[tuple[str, str]]:
    """Every (key, record hash) landed in a raw table, sorted (duplicates kept, to count them)."""
    return sorted(con.execute(f"select {key}, _record_hash from {table}").fetchall())


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    return bool(con.execute("select count(*) from information_schema.tables where table_schema = ? "
                            "and table_name = ?", [schema, name]).fetchall()[0][0])


def saved_state(con: duckdb.DuckDBPyConnection, source: str, entity: str) -> dict[str, Any] | None:
    """The state a source entity saved, or None."""
    row = con.execute("select state from meta.source_state where source = ? and entity = ?",
                      [source, entity]).fetchall()
    return json.loads(row[0][0]) if row else None


def last_load(con: duckdb.DuckDBPyConnection, source: str) -> tuple[str, str | None]:
    """(status, message) of the latest load of a source."""
    return con.execute("select status, message from meta.loads where source = ? "
                       "order by started_at desc limit 1", [source]).fetchall()[0]


def rewrite_parquet(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    """Replace a simulator's parquet with `change(table)`, so the running server reloads it."""
    table = change(pq.read_table(path))
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)  # a new inode: the server sees the file changed
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
