"""Open an audience's published snapshot for reading, and remove versions no reader holds.

A reader follows `current` to one version, takes a shared lock on that version's `.readers` file
for as long as it reads, and opens its DuckDB file read-only with file access limited to that
version (analysts: no file access at all; community staff: their own Parquet files only). It never
opens the warehouse and never takes a lock the pipeline waits for. Cleanup removes an older
version only when it can take the lock exclusively, i.e. when no reader holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from warehouse.publish import community_folder

DATABASES = {"analyst": "snapshot.duckdb", "community": "snapshot.duckdb"}



class SnapshotError(RuntimeError):
    """No snapshot to read: the message says which and how to get one."""


@dataclass(frozen=True)
class Snapshot:
    """An open, read-only snapshot of one audience (and community)."""

    con: duckdb.DuckDBPyConnection
    audience: str
    version: str
    path: Path                      # the version folder
    community_code: str | None = None

    def parquet(self, qualified: str) -> Path:
        """The Parquet file of a relation ("mart.hotline_rates") in this version."""
        return self.path / "parquet" / f"{qualified}.parquet"

    def relations(self) -> list[str]:
        """Every relation of the snapshot, as schema.name."""
        return sorted(p.stem for p in (self.path / "parquet").glob("*.parquet"))


def audience_dir(root: Path, audience: str, community_code: str | None = None) -> Path:
    if audience == "community":
        if not community_code:
            raise SnapshotError("a community snapshot needs the community")
        return root / "community" / community_folder(community_code)
    return root / audience


def communities(root: Path) -> dict[str, dict]:
    """Published communities: code -> {name, folder}."""
    try:
        return json.loads((root / "community" / "communities.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def community_code(root: Path, community: str) -> str:
    """The code of a community given by code or by (unique) name."""
    index = communities(root)
    if community in index:
        return community
    codes = [code for code, c in index.items() if c["name"] == community]
    if len(codes) == 1:
        return codes[0]
    if not codes:
        raise SnapshotError(f"no published community {community!r}; run `onenet merge` (it publishes) or "
                            f"check the name")
    raise SnapshotError(f"{len(codes)} communities are named {community!r}: give its code "
                        f"({', '.join(sorted(codes))})")


@contextmanager
def open_snapshot(root: Path, audience: str, community_code: str | None = None) -> Iterator[Snapshot]:
    """The current snapshot of `audience` (and community), read-only, held for the block."""
    with hold_version(root, audience, community_code) as version_dir:
        con = _connect(version_dir, audience)
        try:
            yield Snapshot(con, audience, version_dir.name, version_dir, community_code)
        finally:
            con.close()


def shared_relations(version_dir: Path) -> set[str]:
    """Community relations without a community column (the same rows in every community's snapshot),
    as the publish that wrote the version recorded them in its manifest."""
    manifest = json.loads((version_dir / "manifest.json").read_text(encoding="utf-8"))
    return set(manifest.get("shared", []))


def parquet_files(version_dir: Path) -> dict[str, Path]:
    """A held version's relations ("mart.hotline_rates") and their Parquet files."""
    return {p.stem: p for p in sorted((version_dir / "parquet").glob("*.parquet"))}


@contextmanager
def hold_version(root: Path, audience: str, community_code: str | None = None) -> Iterator[Path]:
    """The folder of the current version of `audience` (and community), kept from removal for the
    block (a shared lock on its `.readers`), without opening its database."""
    base = audience_dir(root, audience, community_code)
    for _ in range(5):  # the version may be replaced between following the link and locking it
        try:
            version_dir = (base / "current").resolve(strict=True)
        except FileNotFoundError:
            raise SnapshotError(f"nothing published for {audience}"
                                f"{' ' + community_code if community_code else ''} under {root}; run "
                                "`onenet merge` (it publishes every audience's snapshot)") from None
        try:
            fd = os.open(version_dir / ".readers", os.O_RDONLY)
        except FileNotFoundError:
            continue
        fcntl.flock(fd, fcntl.LOCK_SH)
        if not (version_dir / ".readers").exists():  # removed just before we locked it
            os.close(fd)
            continue
        try:
            yield version_dir
        finally:
            os.close(fd)
        return
    raise SnapshotError(f"could not hold a version of {base}: it changed five times while opening")


def _connect(version_dir: Path, audience: str) -> duckdb.DuckDBPyConnection:
    """The version's DuckDB file read-only; external access off (the community's own files excepted)."""
    con = duckdb.connect(str(version_dir / DATABASES[audience]), read_only=True)
    if audience == "community":
        # Its views read its Parquet files: only this version's folder is reachable.
        con.execute("set allowed_directories = ?", [[str(version_dir / "parquet") + "/"]])
    con.execute("set timezone = 'Asia/Shanghai'")
    con.execute("set enable_external_access = false")
    con.execute("set lock_configuration = true")
    return con


def remove_old_versions(base: Path) -> list[str]:
    """Remove every version but the current one that no reader holds; return the names removed."""
    versions = base / "versions"
    if not versions.exists():
        return []
    try:
        current = (base / "current").resolve(strict=True).name
    except FileNotFoundError:
        current = None
    removed = []
    for path in sorted(versions.iterdir()):
        if path.name == current or path.name.startswith("."):
            continue
        lock = path / ".readers"
        try:
            fd = os.open(lock, os.O_RDONLY)
        except FileNotFoundError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # a reader still holds it: next time
            continue
        try:
            lock.unlink()  # a reader that locks it now sees it gone and follows `current` again
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
        finally:
            os.close(fd)
    return removed


@contextmanager
def open_communities(root: Path, codes: list[str]) -> Iterator[duckdb.DuckDBPyConnection]:
    """Several communities' snapshots as one read-only connection: each relation a view over the
    union of their Parquet files, so a query runs once for all of them (the daily extract run)."""
    with ExitStack() as stack:
        snapshots = [stack.enter_context(open_snapshot(root, "community", code)) for code in codes]
        con = duckdb.connect()
        stack.callback(con.close)
        relations = snapshots[0].relations() if snapshots else []
        shared = shared_relations(snapshots[0].path) if snapshots else set()
        for qualified in relations:
            files = [str(s.parquet(qualified)) for s in snapshots]
            schema = qualified.split(".")[0]
            con.execute(f"create schema if not exists {schema}")
            # Each file is one community's rows; relations shared by all (freshness) are read once.
            source = files[:1] if qualified in shared else files
            con.execute(f"create view {qualified} as select * from read_parquet({source!r})")
        con.execute("set allowed_directories = ?", [[str(s.path / "parquet") + "/" for s in snapshots]])
        con.execute("set timezone = 'Asia/Shanghai'")
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")
        yield con
