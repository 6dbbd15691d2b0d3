"""Connection settings: an Airflow Connection URI (AIRFLOW_CONN_<ID>) or the embedded default."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qsl, unquote, urlsplit

from .exceptions import ConfigurationError


@dataclass(frozen=True)
class Connection:
    """The parts of an Airflow-style connection a connector needs."""

    conn_id: str
    scheme: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = None
    path: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        scheme = self.extra.get("scheme", "http" if self.scheme in ("http", "https") else self.scheme)
        if self.scheme == "https":
            scheme = "https"
        port = f":{self.port}" if self.port else ""
        return f"{scheme}://{self.host}{port}{self.path}".rstrip("/")


def parse_uri(conn_id: str, uri: str) -> Connection:
    """Parse an Airflow connection URI (or its JSON form) into a Connection."""
    if uri.lstrip().startswith("{"):
        data = json.loads(uri)
        return Connection(conn_id, data.get("conn_type", ""), data.get("host"), data.get("port"),
                          data.get("login"), data.get("password"), data.get("schema") or "",
                          {k: str(v) for k, v in (data.get("extra") or {}).items()})
    parts = urlsplit(uri)
    if not parts.scheme:
        raise ConfigurationError(f"{conn_id}: {uri!r} is not a connection URI (scheme://login:password@host:port/path)")
    extra = dict(parse_qsl(parts.query))
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"{conn_id}: bad port in connection URI ({exc})") from exc
    return Connection(conn_id, parts.scheme.replace("-", "_"), unquote(parts.hostname or "") or None, port,
                      unquote(parts.username) if parts.username else None,
                      unquote(parts.password) if parts.password else None, unquote(parts.path), extra)


def connection(conn_id: str, default_uri: str | Callable[[], str]) -> Connection:
    """$AIRFLOW_CONN_<CONN_ID> if set; else, inside an Airflow task, a Connection stored in Airflow
    (UI, CLI, secrets backend); else `default_uri` (the embedded simulator). A callable default is
    only called when needed, so a default that cannot be made (no simulator running) does not stop
    a source that has its own connection."""
    uri = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}") or _stored_in_airflow(conn_id)
    if not uri:
        uri = default_uri() if callable(default_uri) else default_uri
    return parse_uri(conn_id, uri)


def _stored_in_airflow(conn_id: str) -> str | None:
    """The URI of an Airflow-stored Connection when running as an Airflow task, else None.

    Only inside a task: the CLI must not reach for Airflow's metadata database, and a plain
    import of airflow here would cost seconds per command.
    """
    if "airflow.sdk.execution_time.task_runner" not in sys.modules:
        return None
    from airflow.sdk import Connection as AirflowConnection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return str(AirflowConnection.get(conn_id).get_uri())
    except AirflowNotFoundException:
        return None


def overlap(conn: Connection, default: timedelta, source: str) -> timedelta:
    """A cursor's overlap window: the connection's `?overlap=SECONDS` extra, else the source's setting.

    An incremental read starts this far before the saved watermark (inclusive), so a change
    committed upstream with a slightly older clock is still read; landing skips what is current.
    """
    if "overlap" not in conn.extra:
        return default
    try:
        seconds = float(conn.extra["overlap"])
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ConfigurationError(f"{source}: the connection {conn.conn_id} has extra overlap={conn.extra['overlap']!r}; "
                                 "it must be a number of seconds, 0 or more (e.g. ?overlap=3600)")
    return timedelta(seconds=seconds)
