"""Audiences separated by the operating system: each audience's folder belongs to its own OS group.

With `[groups]` in the host's deployment file (onenet/deployment.py), publishing gives
- the published root and `community/` mode 0711: anyone may pass through, nobody but the
  pipeline may list them;
- `analyst/` the analyst group, and each `community/<folder>/` its community's group: mode 2750
  (setgid, so what is created inside keeps the group), data files 0440;
- `community/communities.json` (community names and codes, no resident data) and each relation's
  0-row `columns.parquet` (column names only) the readers' group, mode 0440: the 0711 folders let
  every local account pass, so a world bit would hand the index to accounts in no onenet group.

A reader's process then opens only what its account's groups reach, whatever code it runs: a
forged access file, a widened --role or a copied CLI without checks still meets EACCES. The
warehouse itself stays with the pipeline account (README, "Separating the audiences on a host").

A community whose OS group does not exist yet (a new community in the registry, before an
administrator ran `groupadd`) is published for the pipeline account alone: folders 2700, files 0400,
the pipeline's own group. The other audiences publish as usual, the publish result names the
missing group, and the next publish after `groupadd` opens the community to its group.

Without groups (a demo or development host) nothing here changes a mode or a group: folders stay
0750 and files 0640 for the account running the pipeline, as `private_umask` makes them.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from onenet import deployment
from warehouse.access import AccessDenied

SHARED_DIR_MODE = 0o711
AUDIENCE_DIR_MODE = 0o2750
EXPORTS_DIR_MODE = 0o2750
DATA_FILE_MODE = 0o440
SHARED_FILE_MODE = 0o440
PIPELINE_ONLY_DIR_MODE = 0o2700  # a community whose OS group is missing: nobody but the pipeline
PIPELINE_ONLY_FILE_MODE = 0o400


@dataclass(frozen=True)
class _Access:
    """Who an audience folder is for: its group and the modes that open it to that group."""

    gid: int
    dir_mode: int
    file_mode: int
    missing: str | None = None  # why the audience's own group could not be used


def _access(groups: deployment.Groups, audience: str, community_code: str | None) -> _Access:
    try:
        return _Access(groups.for_audience(audience, community_code), AUDIENCE_DIR_MODE, DATA_FILE_MODE)
    except deployment.DeploymentError as exc:
        if audience != "community":  # the analysts' group is made once, with the host: its absence is an error
            raise
        return _Access(os.getegid(), PIPELINE_ONLY_DIR_MODE, PIPELINE_ONLY_FILE_MODE,
                       f"community {community_code}: {exc}; until then its snapshot is readable by the "
                       f"pipeline account only, and the next publish opens it to the group")


def enabled() -> bool:
    """Whether this host separates audiences by OS group."""
    return deployment.groups() is not None


def prepare_root(root: Path) -> None:
    """The published root and `community/`: passable by every account, listable by none but the owner."""
    if not enabled():
        return
    for folder in (root, root / "community"):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, SHARED_DIR_MODE)


def audience_folder(folder: Path, audience: str, community_code: str | None = None) -> str | None:
    """Give an audience's folder (`analyst/`, `community/<folder>/`) its group, setgid, 2750. Returns
    why a community's folder is the pipeline's alone (its OS group is missing), else None."""
    groups = deployment.groups()
    if groups is None:
        return None
    access = _access(groups, audience, community_code)
    folder.mkdir(parents=True, exist_ok=True)
    _own(folder, access.gid, access.dir_mode)
    if (folder / "versions").is_dir():  # made before this host separated its audiences
        _own(folder / "versions", access.gid, access.dir_mode)
    # The version readers follow, published before this host separated its audiences (or under another
    # group, or for the pipeline alone): sealed now, since a publish that changes nothing writes no
    # new version to seal.
    current = folder / "current"
    if current.is_symlink():
        version_dir = current.resolve()
        if version_dir.is_dir() and (version_dir.stat().st_gid, stat.S_IMODE(version_dir.stat().st_mode)) != (
                access.gid, access.dir_mode):
            seal(version_dir, audience, community_code)
    return access.missing


def seal(version_dir: Path, audience: str, community_code: str | None = None) -> None:
    """Before a version is installed: every folder in it its audience's group and 2750, every data
    file that group and 0440; the shared 0-row column files the readers' group (0440 too). The
    version folder itself last: its group says the whole version was sealed (audience_folder)."""
    groups = deployment.groups()
    if groups is None:
        return
    from warehouse.publish import COLUMNS_FILE

    access = _access(groups, audience, community_code)
    readers = deployment.gid(groups.readers)
    for dirpath, dirnames, filenames in os.walk(version_dir):
        for name in dirnames:
            _own(Path(dirpath) / name, access.gid, access.dir_mode)
        for name in filenames:
            # A columns file is one inode linked into every community's version: it names columns only.
            if name == COLUMNS_FILE:
                _own(Path(dirpath) / name, readers, SHARED_FILE_MODE)
            else:
                _own_alone(Path(dirpath) / name, access.gid, access.file_mode)
    _own(version_dir, access.gid, access.dir_mode)


def _own_alone(path: Path, gid: int, mode: int) -> None:
    """_own for a data file. One still linked elsewhere under another group (a relation every
    community's version shared as one inode before this host separated its audiences) is copied
    first, so the group given here reaches this audience's copy alone."""
    st = os.lstat(path)
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and st.st_gid != gid:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.own")
        shutil.copyfile(path, tmp)
        _own(tmp, gid, mode)
        os.replace(tmp, path)
        return
    _own(path, gid, mode)


def shared_file(path: Path) -> None:
    """A file every reader needs (the community index): the readers' group, 0440 (never the world's:
    the published root is 0711, so any local account reaches it by name)."""
    groups = deployment.groups()
    if groups is not None:
        _own(path, deployment.gid(groups.readers), SHARED_FILE_MODE)


def _own(path: Path, gid: int, mode: int) -> None:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return
    if st.st_gid != gid:
        os.chown(path, -1, gid)  # the pipeline account must be a member of every audience group
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def exports_folder(exports: Path, audience: str, community_code: str | None = None) -> Path:
    """An audience's exports folder (`<exports>/analyst`, `<exports>/community/<folder>`), created as
    needed. With groups: the audience's group, 2750, written by the pipeline alone and read by the
    audience (`<exports>` and `community/` 0711). No folder is writable by two accounts, so nobody
    can plant a link the pipeline would write through, or lock a colleague out of a folder. A reader
    writes their own extracts and reports where their own ONENET_EXPORTS points."""
    from warehouse.publish import community_folder

    folder = exports / "community" / community_folder(community_code or "") if audience == "community" \
        else exports / "analyst"
    groups = deployment.groups()
    if groups is None:
        return folder
    try:
        for shared in (exports, exports / "community"):
            shared.mkdir(parents=True, exist_ok=True)
            _settle(shared, None, SHARED_DIR_MODE)
        folder.mkdir(parents=True, exist_ok=True)
        access = _access(groups, audience, community_code)
        _settle(folder, access.gid, EXPORTS_DIR_MODE if access.missing is None else PIPELINE_ONLY_DIR_MODE)
    except PermissionError as exc:
        raise AccessDenied(f"{folder} is written by the pipeline only (you may read what it writes there): "
                           f"to write your own, set ONENET_EXPORTS to a folder of yours, e.g. "
                           f"ONENET_EXPORTS=~/onenet-exports ({exc})") from None
    if not os.access(folder, os.W_OK):
        raise AccessDenied(f"{folder} is written by the pipeline only (you may read what it writes there): "
                           f"to write your own, set ONENET_EXPORTS to a folder of yours, e.g. "
                           f"ONENET_EXPORTS=~/onenet-exports")
    return folder


def _settle(path: Path, gid: int | None, mode: int) -> None:
    """_own, for a folder another account may have created: only a mismatch needs its owner."""
    st = os.stat(path)
    if (gid is None or st.st_gid == gid) and stat.S_IMODE(st.st_mode) == mode:
        return
    try:
        _own(path, gid if gid is not None else st.st_gid, mode)
    except PermissionError:
        raise PermissionError(f"{path} has group {st.st_gid} and mode {stat.S_IMODE(st.st_mode):04o}, not "
                              f"{gid if gid is not None else st.st_gid} and {mode:04o}, and is not this account's "
                              f"to change; an administrator runs `chgrp`/`chmod` on it") from None


def prepare_exports(exports: Path, published: Path) -> None:
    """After a publish: every audience's exports folder exists with its group (2750), so readers never
    need to create a shared folder (`<exports>` and `community/` stay the pipeline's, 0711)."""
    if not enabled():
        return
    from warehouse.publish.snapshot import communities

    exports_folder(exports, "analyst")
    for code in communities(published):
        exports_folder(exports, "community", code)
