"""Publish what each audience may see as read-only snapshots, built from one declared policy.

The policy is this folder: `policy.toml` (the audiences and the checks their relations must pass)
and one SQL file per published relation per audience (`analyst/<schema>.<name>.sql`,
`community/<schema>.<name>.sql`), run on the warehouse by the pipeline. Nothing else of the
warehouse reaches a reader: query, extract, report, export, dashboard and the serving database all
read these snapshots, never the warehouse.

Layout under `settings.published_dir()` (files 0640, folders 0750):

    analyst/versions/<version>/snapshot.duckdb         tables `mart.*`, `ref.*`
    analyst/versions/<version>/parquet/<schema>.<name>.parquet
    analyst/versions/<version>/manifest.json           rows, columns and content hash per relation
    analyst/current -> versions/<version>              swapped atomically (rename of a symlink)
    community/<folder>/versions/<version>/...          the same per community, only its rows;
                                                       snapshot.duckdb holds views over its Parquet
    community/communities.json                         code -> name and folder

A version is written under a temporary name and renamed into place, so a reader always opens one
complete version; older versions are removed only when no reader holds them (snapshot.py). A
community whose relations did not change keeps its current version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import tomllib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from warehouse import pseudonym
from warehouse.outputs import private_umask, safe_name

POLICY_DIR = Path(__file__).parent
AUDIENCES = ("analyst", "community")
# An 18-character ID number or an 11-digit mobile number anywhere in a value (separators allowed
# inside a phone); grid codes (12-17 digits) and ticket ids (letters + 13 digits) do not match.
ID_SHAPED = r"(^|[^0-9])[1-9][0-9]{5}(18|19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx]($|[^0-9Xx])"
PHONE_SHAPED = r"(^|[^0-9])1[3-9][0-9]([ -]?[0-9]){8}($|[^0-9])"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")


class PublishError(RuntimeError):
    """A relation that breaks its audience's policy, or a snapshot that cannot be written."""


@dataclass(frozen=True)
class Relation:
    """One published relation: its audience, schema, name and the SQL that selects it."""

    audience: str
    schema: str
    name: str
    sql: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class PublishResult:
    """What one publish wrote, for the merge summary and the logs."""

    version: str
    analyst_rows: dict[str, int] = field(default_factory=dict)
    analyst_unchanged: bool = False
    communities_published: int = 0
    communities_unchanged: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    serving: str | None = None

    def summary(self) -> str:
        analyst = "unchanged" if self.analyst_unchanged else f"{sum(self.analyst_rows.values()):,} rows"
        return (f"published {self.version}: analyst {analyst} ({len(self.analyst_rows)} relations); "
                f"communities {self.communities_published} new, {self.communities_unchanged} unchanged; "
                f"{sum(self.seconds.values()):.1f} s" + (f"; serving: {self.serving}" if self.serving else ""))


def policy() -> dict:
    """The audiences' declared checks (policy.toml)."""
    return tomllib.loads((POLICY_DIR / "policy.toml").read_text(encoding="utf-8"))


def relations(audience: str) -> list[Relation]:
    """The relations an audience gets, from its folder of SQL files, in name order."""
    if audience not in AUDIENCES:
        raise PublishError(f"unknown audience {audience!r}; one of {', '.join(AUDIENCES)}")
    found = []
    for path in sorted((POLICY_DIR / audience).glob("*.sql")):
        schema, _, name = path.stem.partition(".")
        if not (_IDENT.match(schema) and _IDENT.match(name)):
            raise PublishError(f"{path}: name it <schema>.<name>.sql in lower case")
        found.append(Relation(audience, schema, name, path.read_text(encoding="utf-8")))
    return found


def new_version(run_id: str | None = None) -> str:
    """A version name that sorts by time: UTC instant, then the merge run it came from."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    return stamp + (f"-{safe_name(run_id, max_length=60)}" if run_id else "")


def community_folder(code: str) -> str:
    """The folder of a community's snapshots: its code when that is a safe name, else a safe form + hash."""
    folder = safe_name(code)
    if folder != code:
        folder = f"{folder}_{hashlib.sha256(code.encode()).hexdigest()[:8]}"
    return folder


def publish(con: duckdb.DuckDBPyConnection, root: Path, version: str) -> PublishResult:
    """Publish every audience's relations from the warehouse behind `con` under `root`."""
    result = PublishResult(version)
    _prepare(con)
    with private_umask():
        root.mkdir(parents=True, exist_ok=True, mode=0o750)
        _remove_leftovers(root)
        started = time.perf_counter()
        _publish_analyst(con, root / "analyst", version, result)
        result.seconds["analyst"] = time.perf_counter() - started
        started = time.perf_counter()
        _publish_communities(con, root / "community", version, result)
        result.seconds["community"] = time.perf_counter() - started
    _remove_unheld(root)
    return result


def _remove_unheld(root: Path) -> None:
    """Older versions go once no reader holds them (see snapshot.remove_old_versions)."""
    from warehouse.publish.snapshot import remove_old_versions

    remove_old_versions(root / "analyst")
    for folder in (root / "community").iterdir():
        if folder.is_dir() and not folder.name.startswith("."):
            remove_old_versions(folder)


def _remove_leftovers(root: Path) -> None:
    """Half-written versions of a publish that was killed: publishing holds the warehouse's write
    lock, so no other publish is writing them; readers never see them (they follow `current`)."""
    for pattern in ("analyst/versions/.*.tmp", "community/.staging-*", "community/*/versions/.*.tmp"):
        for path in root.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    pseudonym.set_hmac_variables(con)
    con.execute((POLICY_DIR / "macros.sql").read_text(encoding="utf-8"))


# --- checks ----------------------------------------------------------------------------------------

def _check(con: duckdb.DuckDBPyConnection, table: str, relation: Relation, rules: dict) -> list[tuple[str, str]]:
    """Enforce the audience's declared checks on a built relation; return its (column, type) list."""
    columns = [(r[0], r[1]) for r in con.execute(f"select column_name, column_type from (describe {table})").fetchall()]
    forbidden = set(rules.get("forbidden_columns", [])) & {c for c, _ in columns}
    if forbidden:
        raise PublishError(f"{relation.audience} {relation.qualified}: policy forbids the columns "
                           f"{', '.join(sorted(forbidden))}; remove them from {relation.audience}/"
                           f"{relation.qualified}.sql")
    pseudonyms = [c for c, _ in columns if c in rules.get("pseudonym_columns", [])]
    for c in pseudonyms:
        row = con.execute(f"select count(*) from {table} where \"{c}\" is not null "
                          f"and not regexp_full_match(\"{c}\", '[0-9a-f]{{64}}')").fetchone()
        if row and row[0]:
            raise PublishError(f"{relation.audience} {relation.qualified}: {row[0]:,} values of {c} are not "
                               f"HMAC pseudonyms; use onenet_pseudonym() in {relation.audience}/{relation.qualified}.sql")
    text = [c for c, t in columns if (t == "VARCHAR" or t == "VARCHAR[]") and c not in pseudonyms]
    if rules.get("scan_values") and text:
        # One pass over the relation for every text column: any value shaped like an ID or a mobile.
        probes = ", ".join(
            f"count(*) filter (where regexp_matches(cast(\"{c}\" as varchar), '{ID_SHAPED}') "
            f"or regexp_matches(cast(\"{c}\" as varchar), '{PHONE_SHAPED}')) as \"{c}\"" for c in text)
        row = con.execute(f"select {probes} from {table}").fetchone() or ()
        leaking = [f"{c} ({n:,} values)" for c, n in zip(text, row, strict=True) if n]
        if leaking:
            raise PublishError(f"{relation.audience} {relation.qualified}: values shaped like an ID or phone "
                               f"number in {', '.join(leaking)}; scrub or drop them in "
                               f"{relation.audience}/{relation.qualified}.sql")
    for c in rules.get("masked_columns", []):
        if c in {name for name, _ in columns}:
            row = con.execute(f"select count(*) from {table} where \"{c}\" is not null and "
                              f"not regexp_full_match(\"{c}\", '[0-9A-Za-z]{{0,6}}[*]+[0-9Xx]{{0,4}}|[*]*')").fetchone()
            if row and row[0]:
                raise PublishError(f"{relation.audience} {relation.qualified}: {row[0]:,} values of {c} are not "
                                   f"masked; wrap it in onenet_mask_id() in {relation.audience}/{relation.qualified}.sql")
    return columns


def _content_hash(con: duckdb.DuckDBPyConnection, table: str, group_by: str | None = None) -> dict[str | None, str]:
    """An order-independent hash of a relation's rows (per value of `group_by`)."""
    if group_by:
        rows = con.execute(f"select \"{group_by}\", sum(hash(t))::varchar || ':' || count(*) from {table} t "
                           f"group by 1").fetchall()
        return {r[0]: r[1] for r in rows}
    row = con.execute(f"select coalesce(sum(hash(t)), 0)::varchar || ':' || count(*) from {table} t").fetchone()
    return {None: row[0] if row else ""}


# --- atomic versions -------------------------------------------------------------------------------

def _current_manifest(audience_dir: Path) -> dict | None:
    manifest = audience_dir / "current" / "manifest.json"
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _install(audience_dir: Path, tmp: Path, version: str, manifest: dict,
             finish: Callable[[Path], None] | None = None) -> Path:
    """Move a fully written version into place and point `current` at it, atomically.

    `finish` completes the version at its final path before anyone is pointed at it (a community's
    views name their Parquet files by absolute path, and DuckDB checks them when creating a view).
    """
    (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    final = audience_dir / "versions" / version
    os.replace(tmp, final)
    if finish:
        finish(final)
    (final / ".readers").touch()  # readers hold a shared lock on it (snapshot.py)
    link = audience_dir / f".current-{os.getpid()}"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(Path("versions") / version)
    current = audience_dir / "current"
    if current.is_dir() and not current.is_symlink():  # a copy that followed the link (cp -r): not ours
        shutil.rmtree(current)
    os.replace(link, current)  # rename(2) of a symlink: readers see old or new
    _fsync_dir(audience_dir)
    return final


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_dir(audience_dir: Path, version: str) -> Path:
    tmp = audience_dir / "versions" / f".{version}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, mode=0o750)
    return tmp


# --- analysts --------------------------------------------------------------------------------------

def _publish_analyst(con: duckdb.DuckDBPyConnection, audience_dir: Path, version: str,
                     result: PublishResult) -> None:
    rules = policy()["analyst"]
    tmp = _tmp_dir(audience_dir, version)
    (tmp / "parquet").mkdir(mode=0o750)
    manifest: dict = {"version": version, "audience": "analyst", "relations": {}}
    con.execute(f"attach '{tmp / 'snapshot.duckdb'}' as onenet_pub")
    failed = True
    try:
        for rel in relations("analyst"):
            table = f"onenet_pub.{rel.schema}.{rel.name}"
            con.execute(f"create schema if not exists onenet_pub.{rel.schema}")
            try:
                con.execute(f"create table {table} as {rel.sql}")
            except duckdb.Error as exc:
                raise PublishError(f"analyst {rel.qualified}: the policy SQL failed ({exc})") from exc
            columns = _check(con, table, rel, rules)
            rows = con.execute(f"select count(*) from {table}").fetchone()
            result.analyst_rows[rel.qualified] = int(rows[0]) if rows else 0
            manifest["relations"][rel.qualified] = {
                "rows": result.analyst_rows[rel.qualified], "columns": [c for c, _ in columns],
                "hash": _content_hash(con, table)[None]}
        current = _current_manifest(audience_dir)
        result.analyst_unchanged = bool(current and current.get("relations") == manifest["relations"])
        if not result.analyst_unchanged:
            for rel in relations("analyst"):
                con.execute(f"copy onenet_pub.{rel.schema}.{rel.name} to "
                            f"'{tmp / 'parquet' / rel.qualified}.parquet' (format parquet)")
        failed = False
    finally:
        con.execute("detach onenet_pub")
        if failed:
            shutil.rmtree(tmp, ignore_errors=True)
    if result.analyst_unchanged:
        shutil.rmtree(tmp)  # nothing changed: readers keep the version they have
        return
    _install(audience_dir, tmp, version, manifest)


# --- communities -----------------------------------------------------------------------------------

def _publish_communities(con: duckdb.DuckDBPyConnection, root: Path, version: str, result: PublishResult) -> None:
    rules = policy()["community"]
    key = rules.get("partition_by", "community_code")
    communities = con.execute(
        "select community_code, any_value(community_name) from core.grid where grid_level = 'community' "
        "and community_code is not null group by 1 order by 1").fetchall()
    staging = root / f".staging-{version}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True, mode=0o750)
    rels = relations("community")
    hashes: dict[str, dict[str | None, str]] = {}
    shared: set[str] = set()
    try:
        for rel in rels:
            table = f"onenet_pub_{rel.schema}_{rel.name}"
            try:
                con.execute(f"create or replace temp table {table} as {rel.sql}")
            except duckdb.Error as exc:
                raise PublishError(f"community {rel.qualified}: the policy SQL failed ({exc})") from exc
            columns = _check(con, table, rel, rules)
            names = {c for c, _ in columns}
            out = staging / rel.qualified
            if key in names:
                hashes[rel.qualified] = _content_hash(con, table, key)
                con.execute(f"copy (select *, md5(\"{key}\") as _part from {table}) to '{out}' "
                            "(format parquet, partition_by (_part), write_partition_columns false)")
                con.execute(f"copy (select * from {table} limit 0) to '{out}.empty.parquet' (format parquet)")
            else:  # the same for every community (e.g. source freshness)
                shared.add(rel.qualified)
                hashes[rel.qualified] = _content_hash(con, table)
                con.execute(f"copy {table} to '{out}.parquet' (format parquet)")
            con.execute(f"drop table {table}")
        index = {}
        installs: list[tuple[Path, Path, dict]] = []
        for code, name in communities:
            folder = community_folder(code)
            index[code] = {"name": name, "folder": folder}
            community_dir = root / folder
            community_dir.mkdir(mode=0o750, exist_ok=True)
            digest = {q: h.get(None if q in shared else code, "empty") for q, h in hashes.items()}
            current = _current_manifest(community_dir)
            if current and current.get("hashes") == digest and current.get("relations") == sorted(hashes):
                result.communities_unchanged += 1
                continue
            tmp = _tmp_dir(community_dir, version)
            parquet = tmp / "parquet"
            parquet.mkdir(mode=0o750)
            part = hashlib.md5(code.encode()).hexdigest()  # noqa: S324 - a partition name, not security
            for rel in rels:
                target = parquet / f"{rel.qualified}.parquet"
                if rel.qualified in shared:
                    os.link(staging / f"{rel.qualified}.parquet", target)
                    continue
                written = staging / rel.qualified / f"_part={part}"
                files = sorted(written.glob("*.parquet")) if written.exists() else []
                if len(files) == 1:
                    os.replace(files[0], target)
                elif files:  # DuckDB split a large partition: combine
                    con.execute(f"copy (select * from read_parquet({[str(f) for f in files]})) to '{target}' "
                                "(format parquet)")
                else:
                    os.link(staging / f"{rel.qualified}.empty.parquet", target)
            manifest = {"version": version, "audience": "community", "community_code": code,
                        "community_name": name, "relations": sorted(hashes), "hashes": digest,
                        "shared": sorted(shared)}
            installs.append((community_dir, tmp, manifest))
        # Each community's views file and link swap is independent of the others: a few at a time
        # (DuckDB releases the GIL while it writes a file).
        with ThreadPoolExecutor(max_workers=4) as pool:
            for _ in pool.map(lambda job: _install(job[0], job[1], version, job[2],
                                                   lambda final: _write_views(final, rels)), installs):
                result.communities_published += 1
        _write_index(root, index)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_views(version_dir: Path, rels: list[Relation]) -> None:
    """A community's DuckDB file: one view per relation over its Parquet file (at its final path)."""
    parquet = version_dir / "parquet"
    con = duckdb.connect(str(version_dir / "snapshot.duckdb"))
    try:
        for rel in rels:
            path = str(parquet / f"{rel.qualified}.parquet").replace("'", "''")
            con.execute(f"create schema if not exists {rel.schema}")
            con.execute(f"create view {rel.qualified} as select * from read_parquet('{path}')")
    finally:
        con.close()


def _write_index(root: Path, index: dict) -> None:
    tmp = root / f".communities-{os.getpid()}.json"
    tmp.write_text(json.dumps(index, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, root / "communities.json")
