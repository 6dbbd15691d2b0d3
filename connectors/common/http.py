"""An HTTP client for paged JSON sources: retries with backoff and jitter, Retry-After, invalid pages."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import requests

from .config import Connection
from .exceptions import ConfigurationError, InvalidPage, SourceUnavailable

log = logging.getLogger(__name__)
RETRYABLE_STATUS = {500, 502, 503, 504}


class HttpClient:
    """GET JSON pages from one source; every failure names the source and the page."""

    def __init__(self, source: str, base_url: str, *, headers: dict[str, str] | None = None,
                 timeout: float = 10.0, max_retries: int = 6, backoff: float = 0.5, max_backoff: float = 30.0,
                 max_rate_limit_waits: int = 30, sleep: Callable[[float], None] = time.sleep,
                 seed: int | None = None):
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers.update(headers or {})
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_rate_limit_waits = max_rate_limit_waits
        self.sleep = sleep
        self.rng = random.Random(seed)
        self.retries = 0  # counted for the load's notes

    def _wait(self, attempt: int) -> None:
        # Exponential backoff with full jitter, so many clients do not retry in step.
        delay = min(self.max_backoff, self.backoff * 2**attempt)
        self.sleep(self.rng.uniform(0, delay))

    def get_json(self, path: str, params: dict[str, Any] | None = None, *, position: str) -> dict[str, Any]:
        """The JSON body of GET base_url + path; `position` (e.g. 'page 3') names it in errors."""
        url = self.base_url + path
        attempt = waits = 0
        last = "no answer"
        while True:
            try:
                resp = self.session.get(url, params=params, timeout=self.timeout)
            except (requests.Timeout, requests.ConnectionError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 429 and waits < self.max_rate_limit_waits:
                    waits += 1
                    self.sleep(_retry_after(resp.headers.get("Retry-After")))
                    continue
                if resp.status_code in RETRYABLE_STATUS or resp.status_code == 429:
                    last = f"HTTP {resp.status_code}"
                elif resp.status_code >= 400:
                    raise SourceUnavailable(
                        f"{self.source}: {url} answered HTTP {resp.status_code} at {position}: "
                        f"{resp.text[:200]} — check the connection's credentials and URL")
                else:
                    try:
                        body = resp.json()
                        if isinstance(body, dict):
                            return body
                        last = "the body is JSON but not an object"
                    except ValueError:
                        last = f"invalid or truncated JSON ({len(resp.content)} bytes)"
                    if attempt >= self.max_retries:
                        raise InvalidPage(f"{self.source}: {position} of {url} stayed invalid after "
                                          f"{attempt + 1} tries ({last}); the load was not landed — re-run it")
            if attempt >= self.max_retries:
                raise SourceUnavailable(f"{self.source}: {url} failed at {position} after {attempt + 1} tries "
                                        f"({last}); the source may be down — the load was not landed, re-run later")
            log.warning("%s: %s at %s, retrying (%d/%d)", self.source, last, position, attempt + 1, self.max_retries)
            self.retries += 1
            self._wait(attempt)
            attempt += 1


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, min(float(value or 1), 120.0))
    except ValueError:
        return 1.0


def client_for(conn: Connection, settings: ModuleType, *, credential_name: str, placeholder: str,
               headers: Callable[[str], dict[str, str]], **options: Any) -> HttpClient:
    """An HttpClient for `conn`: its host, its password as the credential (sent by `headers`), and
    the source's retry settings (`settings.TIMEOUT_SECONDS`, ...), which `options` override."""
    env = f"AIRFLOW_CONN_{conn.conn_id.upper()}"
    example = f"{env}='http://:{placeholder}@host:port'"
    if not conn.host:
        raise ConfigurationError(f"{settings.SOURCE}: the connection {conn.conn_id} has no host; set {example}")
    if not conn.password:
        raise ConfigurationError(f"{settings.SOURCE}: the connection {conn.conn_id} has no {credential_name}; put it "
                                 f"in the password part of {example}")
    defaults: dict[str, Any] = {
        "timeout": settings.TIMEOUT_SECONDS, "max_retries": settings.MAX_RETRIES,
        "backoff": settings.BACKOFF_SECONDS, "max_backoff": settings.MAX_BACKOFF_SECONDS,
        "max_rate_limit_waits": settings.MAX_RATE_LIMIT_WAITS,
    }
    return HttpClient(settings.SOURCE, conn.base_url, headers={**headers(conn.password), "Accept": "application/json"},
                      **{**defaults, **_extras(conn, settings.SOURCE), **options})


# Connection extras (`?timeout=5&max_retries=2` on the URI, or the JSON extra) that tune the client.
CLIENT_EXTRAS: dict[str, type] = {"timeout": float, "max_retries": int, "backoff": float, "max_backoff": float,
                                  "max_rate_limit_waits": int}


def _extras(conn: Connection, source: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in CLIENT_EXTRAS.items():
        if name not in conn.extra:
            continue
        try:
            value = kind(conn.extra[name])
        except ValueError:
            value = -1
        if value < 0 or (name == "timeout" and value == 0):
            raise ConfigurationError(f"{source}: the connection {conn.conn_id} has extra {name}="
                                     f"{conn.extra[name]!r}; it must be a {'positive' if name == 'timeout' else 'non-negative'} "
                                     f"{'number' if kind is float else 'whole number'}")
        out[name] = value
    return out
