"""Open an audience's published snapshot for reading, and remove versions no reader holds.

A reader follows `current` to one version, takes a shared lock on that version's `.readers` file
for as long as it reads, and gets an in-memory DuckDB connection holding one view per relation
over that version's Parquet files, with file access limited to that version's Parquet folder and
the configuration locked. It never opens the warehouse and never takes a lock the pipeline waits
for. Cleanup moves an older version aside only when it can take the lock exclusively, i.e. when
no reader holds it; a background process deletes what was moved aside.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from warehouse.publish import community_folder


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
        """The Parquet folder of a relation ("mart.hotline_rates") in this version: its part files and a
        0-row columns.parquet (pyarrow.parquet.read_table reads the folder as one table)."""
        return self.path / "parquet" / f"{qualified}.parquet"

    def relations(self) -> list[str]:
        """Every relation of the snapshot, as schema.name."""
        return sorted(p.stem for p in (self.path / "parquet").glob("*.parquet"))

    def files(self, qualified: str) -> list[Path]:
        """A relation's data files in this version, in the order its view reads them."""
        return sorted(self.parquet(qualified).glob("*.parquet"))


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
def open_snapshot(root: Path, audience: str, community_code: str | None = None, *, threads: int | None = None,
                  memory_limit: str | None = None) -> Iterator[Snapshot]:
    """The current snapshot of `audience` (and community), read-only, held for the block.

    `threads` and `memory_limit` bound the reader's DuckDB (onenet.pipeline passes the reader
    settings for non-engineers, so a reader leaves the cores to the pipeline)."""
    with hold_version(root, audience, community_code) as version_dir, _spill_dir() as spill:
        con = _connect([version_dir], shared_relations(version_dir), spill, threads=threads,
                       memory_limit=memory_limit)
        try:
            yield Snapshot(con, audience, version_dir.name, version_dir, community_code)
        finally:
            con.close()


def manifest(version_dir: Path) -> dict:
    """A held version's manifest: its relations, their parts (hash, rows, files) and shared relations."""
    return json.loads((version_dir / "manifest.json").read_text(encoding="utf-8"))


def shared_relations(version_dir: Path) -> set[str]:
    """Community relations without a community column (the same rows in every community's snapshot),
    as the publish that wrote the version recorded them in its manifest."""
    return set(manifest(version_dir).get("shared", []))


def parquet_files(version_dir: Path) -> dict[str, list[Path]]:
    """A held version's relations ("mart.hotline_rates") and their data files, from its manifest
    (nothing is opened)."""
    from warehouse.publish import relation_files

    held = manifest(version_dir)
    return {q: relation_files(version_dir, held, q) for q in sorted(held["relations"])}


@contextmanager
def hold_version(root: Path, audience: str, community_code: str | None = None) -> Iterator[Path]:
    """The folder of the current version of `audience` (and community), kept from removal for the
    block (a shared lock on its `.readers`), without opening its database."""
    with _hold(audience_dir(root, audience, community_code),
               f"{audience}{' ' + community_code if community_code else ''}") as version_dir:
        yield version_dir


@contextmanager
def hold_district_copy(root: Path) -> Iterator[Path]:
    """The current version of the communities' relations for the whole district (what the serving
    database loads; the pipeline account alone may read it), held as hold_version holds a snapshot."""
    from warehouse.publish import DISTRICT_COPY

    with _hold(root / DISTRICT_COPY, "the communities' district copy") as version_dir:
        yield version_dir


@contextmanager
def _hold(base: Path, what: str) -> Iterator[Path]:
    for _ in range(5):  # the version may be replaced between following the link and locking it
        try:
            version_dir = (base / "current").resolve(strict=True)
        except FileNotFoundError:
            raise SnapshotError(f"nothing published for {what} under {base.parent}; run "
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


@contextmanager
def _spill_dir() -> Iterator[Path]:
    """A private folder (0700, random name) for what a reader's DuckDB spills, removed afterwards:
    DuckDB's default (`.tmp` in the working folder) may be a folder others can read or plant in."""
    path = Path(tempfile.mkdtemp(prefix="onenet-reader-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _connect(version_dirs: list[Path], shared: set[str], spill: Path, *, threads: int | None = None,
             memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with one view per relation over the versions' Parquet files (a relation
    shared by all communities read once); then file access is limited to those folders and locked."""
    con = duckdb.connect(config={"threads": threads} if threads else {})
    try:
        if memory_limit:
            con.execute("set memory_limit = ?", [memory_limit])
        con.execute("set temp_directory = ?", [str(spill)])
        relations = sorted(p.stem for p in (version_dirs[0] / "parquet").glob("*.parquet")) if version_dirs else []
        for qualified in relations:
            globs = [str(d / "parquet" / f"{qualified}.parquet" / "*.parquet") for d in version_dirs]
            schema = qualified.split(".")[0]
            con.execute(f"create schema if not exists {schema}")
            # Each folder is one community's rows (or the analysts' relation); shared ones once.
            source = globs[:1] if qualified in shared else globs
            con.execute(f"create view {qualified} as select * from read_parquet({source!r})")
        con.execute("set allowed_directories = ?", [[str(d / "parquet") + "/" for d in version_dirs]])
        con.execute("set timezone = 'Asia/Shanghai'")
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def remove_old_versions(base: Path, trash: Path | None = None) -> list[str]:
    """Remove every version but the current one that no reader holds; return the names removed.

    With `trash`, a version is renamed into that folder (same file system: one rename) instead of
    deleted here; delete_in_background(trash) then deletes it off the publishing process's path."""
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
            _discard(path, trash)
            removed.append(path.name)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # a reader still holds it: next time
            continue
        try:
            lock.unlink()  # a reader that locks it now sees it gone and follows `current` again
            _discard(path, trash)
            removed.append(path.name)
        finally:
            os.close(fd)
    return removed


def _discard(path: Path, trash: Path | None) -> None:
    if trash is None:
        shutil.rmtree(path, ignore_errors=True)
        return
    trash.mkdir(mode=0o750, exist_ok=True)
    os.replace(path, trash / uuid.uuid4().hex)


def delete_in_background(trash: Path) -> subprocess.Popen | None:
    """Delete what `trash` holds in a detached, lowest-priority process (it outlives the publishing
    process; the next publish starts another for whatever is left)."""
    if not trash.is_dir() or not any(trash.iterdir()):
        return None
    script = ("import os, shutil, sys\n"
              "os.nice(19)\n"
              "for p in os.listdir(sys.argv[1]):\n"
              "    shutil.rmtree(os.path.join(sys.argv[1], p), ignore_errors=True)\n")
    return subprocess.Popen([sys.executable, "-c", script, str(trash)], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            close_fds=True)


@contextmanager
def open_communities(root: Path, codes: list[str], *, threads: int | None = None,
                     memory_limit: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Several communities' snapshots as one read-only connection: each relation a view over the
    union of their Parquet files, so a query runs once for all of them (the daily extract run)."""
    with ExitStack() as stack:
        held = [stack.enter_context(hold_version(root, "community", code)) for code in codes]
        shared = shared_relations(held[0]) if held else set()
        con = _connect(held, shared, stack.enter_context(_spill_dir()), threads=threads, memory_limit=memory_limit)
        stack.callback(con.close)
        yield con
