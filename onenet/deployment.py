"""The deployment file: what an administrator fixed for this host, beyond the reach of a reader's environment.

A reader controls their own environment, so anything that decides what they may read cannot come
from it. On a production host an administrator installs `/etc/onenet/deployment.toml` (owner root,
not group- or world-writable, in a folder of the same kind; `config/deployment.example.toml`):

    mode = "production"
    access_file = "/etc/onenet/access.toml"
    published = "/srv/onenet/published"
    access_log = "/var/log/onenet/access-log.jsonl"
    templates = "/etc/onenet/templates"   # administrators' report templates (optional)

    [groups]                          # OS groups that separate the audiences on disk
    analyst = "onenet-analyst"
    community = "onenet-c-{code}"     # one group per community, by its code
    readers = "onenet-readers"        # every reader account: they append to the access log

When the file exists, its values decide; an ONENET_DEPLOYMENT, ONENET_ACCESS_FILE, ONENET_PUBLISHED,
ONENET_ACCESS_LOG or ONENET_TEMPLATES_DIR that disagrees is refused rather than silently used or ignored. Without it the
host is a demo or development machine and those variables (or their defaults) apply.

The file is a convenience for choosing which snapshot a command opens; the boundary itself is the
operating system's: publishing gives each audience's folder its group (setgid, 2750), so a process
can open only what its account's groups reach, whatever code it runs (warehouse/publish/permissions.py).
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from warehouse.access import AccessDenied

DEPLOYMENT_FILE = Path("/etc/onenet/deployment.toml")
MODES = ("demo", "production")
_KEYS = frozenset({"mode", "access_file", "published", "access_log", "templates", "groups"})
REQUIRED = ("access_file", "published", "access_log")
_GROUP_KEYS = frozenset({"analyst", "community", "readers"})
# Each path setting and the environment variable it overrides.
ENV = {"mode": "ONENET_DEPLOYMENT", "access_file": "ONENET_ACCESS_FILE",
       "published": "ONENET_PUBLISHED", "access_log": "ONENET_ACCESS_LOG", "templates": "ONENET_TEMPLATES_DIR"}


class DeploymentError(AccessDenied):
    """The deployment file is unsafe or invalid, or the environment contradicts it: nothing is read."""


@dataclass(frozen=True)
class Groups:
    """OS groups by audience: `community` is a pattern with `{code}`."""

    analyst: str
    community: str
    readers: str

    def for_audience(self, audience: str, community_code: str | None = None) -> int:
        """The gid of an audience's (or one community's) folder."""
        name = self.community.format(code=community_code) if audience == "community" else self.analyst
        return gid(name)


@dataclass(frozen=True)
class Deployment:
    path: Path
    mode: str
    access_file: Path | None
    published: Path | None
    access_log: Path | None
    templates: Path | None
    groups: Groups | None


def load(path: Path | None = None) -> Deployment | None:
    """The host's deployment file, checked; None where there is none (a demo or development host)."""
    path = path or DEPLOYMENT_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise DeploymentError(f"cannot read the deployment file {path}: {exc.strerror}; an administrator "
                              f"makes it readable (mode 0644, owner root)") from None
    try:
        data, _ = checked_toml(fd, path, _check_root_only, "deployment file")
    except tomllib.TOMLDecodeError as exc:
        raise DeploymentError(f"the deployment file {path} is not valid TOML: {exc}") from None
    deployment = _parse(path, data)
    _refuse_contradictions(deployment)
    return deployment


def checked_toml(fd: int, path: Path, check: Callable[[Path, os.stat_result, str], bool | None],
                 what: str) -> tuple[dict, bool]:
    """The TOML file open at `fd` (closed here), after `check` on it and on the folders of `path` and of
    its target (a symlink is followed; both folders count). Checked on the open descriptor, so the file
    checked is the file read. Returns the data and whether any check returned True."""
    try:
        flagged = bool(check(path, os.fstat(fd), what))
        for folder in {path.absolute().parent, Path(os.path.realpath(path)).parent}:
            flagged |= bool(check(folder, os.stat(folder), f"folder of the {what}"))
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return tomllib.load(f), flagged
    finally:
        if fd >= 0:
            os.close(fd)


def setting(key: str, env_default: str | None) -> str | None:
    """A setting the deployment file fixes (`mode`, `access_file`, `published`, `access_log`, `templates`): the
    file's value where one exists (None for an optional key it leaves out), else the environment's
    (`env_default`, read by the caller)."""
    deployment = load()
    if deployment is None:
        return env_default
    fixed = getattr(deployment, key)
    return None if fixed is None else str(fixed)


def _refuse_contradictions(deployment: Deployment) -> None:
    """Any ONENET_* variable that says otherwise than the file: refused whichever setting a command
    happens to read, so a reader's environment never quietly coexists with the host's file."""
    for key, var in ENV.items():
        fixed = getattr(deployment, key)
        env = os.environ.get(var)
        if env and fixed is None:
            raise DeploymentError(f"{var}={env} is set, but the deployment file {deployment.path} gives no "
                                  f"{key}: the deployment file decides on this host; unset {var}")
        if fixed is not None and env and not _same(key, env, str(fixed)):
            raise DeploymentError(f"{var}={env} contradicts {key} = {str(fixed)!r} in the deployment file "
                                  f"{deployment.path}: the deployment file decides on this host; unset {var}")


def groups() -> Groups | None:
    """The audience groups of this host, or None (every folder keeps its creator's group)."""
    deployment = load()
    return deployment.groups if deployment else None


def gid(name: str) -> int:
    """A group's id by name (or a number given as text)."""
    import grp  # here, not at the top: readers never need it (and a C module may be out of reach)

    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise DeploymentError(f"the OS group {name!r} named in the deployment file does not exist; an "
                              f"administrator creates it (`groupadd {name}`) and adds its members") from None


def _same(key: str, env: str, fixed: str) -> bool:
    if key == "mode":
        return env.strip().lower() == fixed
    return Path(env).resolve() == Path(fixed).resolve()


def _check_root_only(path: Path, st: os.stat_result, what: str) -> None:
    is_dir = stat.S_ISDIR(st.st_mode)
    sticky = is_dir and st.st_mode & stat.S_ISVTX
    if st.st_uid != 0:
        raise DeploymentError(f"the {what} {path} is owned by uid {st.st_uid}, not root: whoever owns it "
                              f"decides what everyone reads; an administrator runs `chown root {path}`")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
        raise DeploymentError(f"the {what} {path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                              f"an administrator runs `chmod go-w {path}`")


def _parse(path: Path, data: dict) -> Deployment:
    unknown = set(data) - _KEYS
    if unknown:  # a misspelt key must not silently leave a default in force
        raise DeploymentError(f"the deployment file {path} has unknown keys {sorted(unknown)}; "
                              f"known: {', '.join(sorted(_KEYS))}")
    mode = str(data.get("mode", "production")).strip().lower()
    if mode not in MODES:
        raise DeploymentError(f"mode in {path} must be one of {', '.join(MODES)}, not {mode!r}")
    missing = [key for key in REQUIRED if not data.get(key)]
    if missing:
        raise DeploymentError(f"the deployment file {path} must give {', '.join(missing)} (absolute paths): "
                              f"on a host with one, nothing falls back to a reader's environment")
    paths: dict[str, Path | None] = {}
    for key in ("access_file", "published", "access_log", "templates"):
        value = data.get(key)
        if value is not None and not (isinstance(value, str) and Path(value).is_absolute()):
            raise DeploymentError(f"{key} in {path} must be an absolute path, not {value!r}")
        paths[key] = Path(value) if value else None
    raw_groups = data.get("groups")
    groups_: Groups | None = None
    if raw_groups is not None:
        if not isinstance(raw_groups, dict) or set(raw_groups) != _GROUP_KEYS:
            raise DeploymentError(f"[groups] in {path} must name exactly {', '.join(sorted(_GROUP_KEYS))}")
        if "{code}" not in str(raw_groups["community"]):
            raise DeploymentError(f"groups.community in {path} must contain {{code}} (one group per community)")
        groups_ = Groups(**{k: str(v) for k, v in raw_groups.items()})
    return Deployment(path, mode, paths["access_file"], paths["published"], paths["access_log"], paths["templates"],
                      groups_)
