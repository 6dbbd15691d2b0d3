"""A district publishes the city's audience: warehouse/publish/city/*.sql, checked by the `city`
section of policy.toml, as an atomic read-only version under <published>/city/.

Layout (the analysts' shape, Parquet only; the city reads files, never a district's warehouse):

    city/versions/<version>/parquet/city.<name>.parquet
    city/versions/<version>/manifest.json      district, rows, columns and content hash per relation
    city/current -> versions/<version>          swapped by rename(2)

Readers hold a shared lock on the version's `.readers` while they read (`hold`); a publish removes
older versions nobody holds.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from warehouse.outputs import private_umask
from warehouse.publish import ID_SHAPED, PHONE_SHAPED, POLICY_DIR

from . import keys

AUDIENCE = "city"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


class CityPublishError(RuntimeError):
    """A city relation that breaks the policy, or no city snapshot to read."""


@dataclass
class CityPublishResult:
    version: str
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"city: {sum(self.rows.values()):,} rows in {len(self.rows)} relations, "
                f"{self.seconds:.1f} s ({self.version})")


def relations() -> list[tuple[str, str]]:
    """(schema.name, SQL) of every city relation, in name order."""
    out = []
    for path in sorted((POLICY_DIR / AUDIENCE).glob("*.sql")):
        schema, _, name = path.stem.partition(".")
        if not (_IDENT.match(schema) and _IDENT.match(name)):
            raise CityPublishError(f"{path}: name it <schema>.<name>.sql in lower case")
        out.append((path.stem, path.read_text(encoding="utf-8")))
    return out


def rules() -> dict:
    policy = tomllib.loads((POLICY_DIR / "policy.toml").read_text(encoding="utf-8"))
    if AUDIENCE not in policy:
        raise CityPublishError(f"policy.toml has no [{AUDIENCE}] section")
    return policy[AUDIENCE]


def check(con: duckdb.DuckDBPyConnection, table: str, qualified: str, policy: dict) -> list[str]:
    """The city section's checks on one built relation; returns its columns."""
    columns = con.execute(f"select column_name, column_type from (describe {table})").fetchall()
    names = [c for c, _ in columns]
    forbidden = set(policy.get("forbidden_columns", [])) & set(names)
    if forbidden:
        raise CityPublishError(f"city {qualified}: policy forbids {', '.join(sorted(forbidden))}")
    hashed = [c for c in names if c in policy.get("pseudonym_columns", [])]
    for c in hashed:
        bad = con.execute(f'select count(*) from {table} where "{c}" is not null '
                          f"and not regexp_full_match(\"{c}\", '[0-9a-f]{{64}}')").fetchone()
        if bad and bad[0]:
            raise CityPublishError(f"city {qualified}: {bad[0]:,} values of {c} are not keyed hashes; "
                                   "use onenet_city_key()")
    text = [c for c, t in columns if t in ("VARCHAR", "VARCHAR[]") and c not in hashed]
    if policy.get("scan_values") and text:
        probes = ", ".join(f"count(*) filter (where regexp_matches(cast(\"{c}\" as varchar), '{ID_SHAPED}') "
                           f"or regexp_matches(cast(\"{c}\" as varchar), '{PHONE_SHAPED}'))" for c in text)
        row = con.execute(f"select {probes} from {table}").fetchone() or ()
        leaking = [f"{c} ({n:,})" for c, n in zip(text, row, strict=True) if n]
        if leaking:
            raise CityPublishError(f"city {qualified}: values shaped like an ID or phone in {', '.join(leaking)}")
    return names


def publish_city(con: duckdb.DuckDBPyConnection, root: Path, version: str) -> CityPublishResult | None:
    """Publish the city audience from the warehouse behind `con` into `root` (<published>/city);
    None when this district belongs to no city (ONENET_CITY_KEY unset)."""
    key = keys.city_key()
    if key is None:
        return None
    started = time.perf_counter()
    keys.prepare(con, key)
    policy = rules()
    result = CityPublishResult(version)
    with private_umask():
        (root / "versions").mkdir(parents=True, exist_ok=True, mode=0o750)
        tmp = root / "versions" / f".{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "parquet").mkdir(parents=True, mode=0o750)
        manifest: dict = {"version": version, "audience": AUDIENCE, "relations": {}}
        try:
            for qualified, sql in relations():
                table = "onenet_city_" + qualified.replace(".", "_")
                try:
                    con.execute(f"create or replace temp table {table} as {sql}")
                except duckdb.Error as exc:
                    raise CityPublishError(f"city {qualified}: the policy SQL failed ({exc})") from exc
                try:
                    columns = check(con, table, qualified, policy)
                    rows = con.execute(f"select count(*), coalesce(sum(hash(t)), 0)::varchar from {table} t").fetchone()
                    assert rows is not None
                    con.execute(f"copy {table} to '{tmp / 'parquet' / qualified}.parquet' (format parquet)")
                finally:
                    con.execute(f"drop table {table}")
                result.rows[qualified] = int(rows[0])
                manifest["relations"][qualified] = {"rows": int(rows[0]), "columns": columns, "hash": rows[1]}
            district = con.execute("select district_code, district_name from core.grid where grid_level = 'district' "
                                   "order by grid_code limit 1").fetchone()
            manifest["district"] = {"code": district[0], "name": district[1]} if district else None
            (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
            _install(root, tmp, version)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    _remove_unheld(root)
    result.seconds = time.perf_counter() - started
    return result


def _install(root: Path, tmp: Path, version: str) -> None:
    final = root / "versions" / version
    os.replace(tmp, final)
    (final / ".readers").touch()
    link = root / f".current-{os.getpid()}"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path("versions") / version)
    os.replace(link, root / "current")


def _remove_unheld(root: Path) -> None:
    current = (root / "current").resolve().name
    for path in sorted((root / "versions").iterdir()):
        if path.name in (current,) or path.name.startswith("."):
            continue
        try:
            fd = os.open(path / ".readers", os.O_RDONLY)
        except FileNotFoundError:
            shutil.rmtree(path, ignore_errors=True)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a city build still reads it: next time
        try:  # a reader locking it now finds .readers gone and follows `current` again
            (path / ".readers").unlink(missing_ok=True)
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


@contextmanager
def hold(published: Path) -> Iterator[Path]:
    """The current city version of a district's published folder, kept from removal for the block."""
    base = published / AUDIENCE
    for _ in range(5):
        try:
            version_dir = (base / "current").resolve(strict=True)
        except FileNotFoundError:
            raise CityPublishError(f"nothing published for the city under {published}: set ONENET_CITY_KEY "
                                   "in the district's environment and run `onenet merge`") from None
        try:
            fd = os.open(version_dir / ".readers", os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if (version_dir / ".readers").exists():
                yield version_dir
                return
        finally:
            os.close(fd)
    raise CityPublishError(f"could not hold a city version under {published}: it changed five times")
