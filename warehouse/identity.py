"""Who is acting: the OS user, mapped to a role by an access file only administrators can write."""

from __future__ import annotations

import json
import os
import pwd
import re
import stat
import tomllib
from pathlib import Path

from onenet import settings
from warehouse.access import (
    COMMUNITY_STAFF,
    DATA_ENGINEER,
    DISTRICT_ANALYST,
    ROLES,
    AccessDenied,
    Principal,
)

# What each granted role may narrow to with --role; community staff stay in their own community.
NARROWS_TO = {
    DATA_ENGINEER: (DATA_ENGINEER, DISTRICT_ANALYST, COMMUNITY_STAFF),
    DISTRICT_ANALYST: (DISTRICT_ANALYST,),
    COMMUNITY_STAFF: (COMMUNITY_STAFF,),
}
_ENTRY_KEYS = frozenset({"role", "community"})
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def access_file_path() -> Path:
    """The access file: the deployment file's `access_file`, else $ONENET_ACCESS_FILE or <home>/access.toml."""
    from onenet import deployment as host

    env = host.setting("access_file", os.environ.get("ONENET_ACCESS_FILE"))
    return Path(env) if env else settings.home() / "access.toml"


def os_user() -> str:
    """The effective OS user's name (its numeric uid where the system has no name for it)."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:  # a container's arbitrary uid: map it in the access file by number
        return str(uid)


def resolve_principal(role: str | None = None, community: str | None = None) -> Principal:
    """The acting principal: the OS user, its role from the access file, narrowed by role/community.

    `role` and `community` (the CLI's --role / --community) may only narrow what the file grants:
    an engineer may act as an analyst or as staff of any community, an analyst only as an analyst,
    community staff only as staff of their own community. Anything else raises AccessDenied.
    """
    user = os_user()
    path = access_file_path()
    entries, self_owned = _load(path)
    entry = entries.get(user)
    if entry is None:
        raise AccessDenied(
            f"OS user {user!r} is not in the access file {path}; an administrator adds them with "
            f'a [users.{_toml_key(user)}] table holding role = "{DISTRICT_ANALYST}" (or another role)')
    granted, bound = entry
    if self_owned and (granted != DATA_ENGINEER or settings.deployment() == "production"):
        # On a demo machine their own file can only make them what its owner is anyway: its
        # administrator. In production an administrator's file decides, never the reader's own.
        raise AccessDenied(f"the access file {path} (or its folder) is owned by {user}, who could "
                           f"widen their own role; an administrator must run `chown root {path}`")
    if role is not None and role not in ROLES:
        raise AccessDenied(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    acting = role or granted
    if acting not in NARROWS_TO[granted]:
        raise AccessDenied(f"{user} is {granted} in {path}; acting as {acting} would widen that")
    if granted == COMMUNITY_STAFF:
        if community is not None and community != bound and not (bound and _same_community(community, bound)):
            raise AccessDenied(f"{user} is community staff of {bound} in {path}; "
                               f"{community} is not theirs to read")
        return Principal(user, COMMUNITY_STAFF, bound)
    if acting == COMMUNITY_STAFF and not community:
        raise AccessDenied(f"{user} may act as community staff only of a named community: "
                           f"pass --community")
    # For engineers and analysts a community only narrows what is read; it grants nothing.
    return Principal(user, acting, community or None)


def _same_community(a: str, b: str) -> bool:
    """Whether `a` and `b` name one published community (one its code, the other its unique name):
    staff bound by name may pass their own code, and the reverse, since it narrows to the same rows."""
    from warehouse.publish.snapshot import SnapshotError, community_code

    root = settings.published_dir()
    try:
        return community_code(root, a) == community_code(root, b)
    except SnapshotError:  # unknown or ambiguous: not provably the same
        return False


def load_access_file(path: Path) -> dict[str, tuple[str, str | None]]:
    """{user: (role, community)} from the access file, after checking only administrators can write it."""
    return _load(path)[0]


def _load(path: Path) -> tuple[dict[str, tuple[str, str | None]], bool]:
    """The entries, and whether the file or a folder of it is the current (non-root) user's own."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise AccessDenied(
            f"no access file at {path}: an administrator creates it (owned by root, mode 0640) "
            f"mapping OS users to roles, e.g. [users.{_toml_key(os_user())}] role = "
            f'"{DATA_ENGINEER}"; set ONENET_ACCESS_FILE to use another path; `make demo` writes '
            f"a default one") from None
    except OSError as exc:
        raise AccessDenied(f"cannot read the access file {path}: {exc.strerror}") from None
    from onenet.deployment import checked_toml

    try:
        # A symlink (e.g. to /etc/onenet/access.toml) is followed; both folders count.
        data, self_owned = checked_toml(fd, path, lambda p, st, what: _check_admin_only(p, st, what=what),
                                        "access file")
    except tomllib.TOMLDecodeError as exc:
        raise AccessDenied(f"the access file {path} is not valid TOML: {exc}") from None
    return _entries(path, data), self_owned


def _check_admin_only(path: Path, st: os.stat_result, *, what: str) -> bool:
    """Refuse a file or folder that someone other than an administrator could change.

    True when it is the current non-root user's own: acceptable only for a data engineer (a
    one-person setup such as `make demo` run by a developer), which resolve_principal checks.
    """
    is_dir = stat.S_ISDIR(st.st_mode)
    sticky = is_dir and st.st_mode & stat.S_ISVTX
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not sticky:
        who = "world" if st.st_mode & stat.S_IWOTH else "group"
        raise AccessDenied(f"the {what} {path} is {who}-writable (mode {stat.S_IMODE(st.st_mode):04o}); "
                           f"an administrator must run `chmod go-w {path}`")
    # Whoever owns it can rewrite who may read what, so it must be root's. Root itself may read
    # anyone's file (a root process can read anything anyway: a file widens nothing for it).
    euid = os.geteuid()
    if st.st_uid == 0 or euid == 0:
        return False
    if st.st_uid == euid:
        return True
    raise AccessDenied(f"the {what} {path} is owned by {_user_name(st.st_uid)}, not root; an "
                       f"administrator must run `chown root {path}`")


def _entries(path: Path, data: dict) -> dict[str, tuple[str, str | None]]:
    users = data.get("users", {})
    if not isinstance(users, dict):
        raise AccessDenied(f"the access file {path} needs [users.<name>] tables")
    out: dict[str, tuple[str, str | None]] = {}
    for name, entry in users.items():
        if not isinstance(entry, dict):
            raise AccessDenied(f"users.{name} in {path} must be a table with role = ...")
        # A misspelt key (comunity = ...) must not silently change what someone may read.
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise AccessDenied(f"users.{name} in {path} has unknown keys {sorted(unknown)}; "
                               f"only role and community are read")
        role, community = entry.get("role"), entry.get("community")
        if role not in ROLES:
            raise AccessDenied(f"users.{name} in {path} has role {role!r}; "
                               f"choose one of {', '.join(ROLES)}")
        if role == COMMUNITY_STAFF and not (isinstance(community, str) and community):
            raise AccessDenied(f"users.{name} in {path} is community staff but names no community")
        if role != COMMUNITY_STAFF and community is not None:
            raise AccessDenied(f"users.{name} in {path} is {role}; a community binds staff only")
        out[str(name)] = (role, community)
    return out


def write_default_access_file(path: Path, user: str, role: str = DATA_ENGINEER, *,
                              community: str | None = None, overwrite: bool = False) -> Path:
    """Write an access file mapping one user to a role (mode 0640); an existing file is kept
    unless `overwrite`. The demo uses it to map whoever runs it."""
    if role not in ROLES:
        raise AccessDenied(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if role == COMMUNITY_STAFF and not community:
        raise AccessDenied("a community staff mapping needs a community")
    path = Path(path)
    lines = ["# Who may read what: OS user -> role (and community for community staff).",
             "# Only administrators may write this file (owner root, not group- or world-writable).",
             f"# Roles: {', '.join(ROLES)}.", "",
             f"[users.{_toml_key(user)}]", f"role = {json.dumps(role)}"]
    if community:
        lines.append(f"community = {json.dumps(community, ensure_ascii=False)}")
    body = ("\n".join(lines) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    if overwrite:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        _write_new(tmp, body)
        os.replace(tmp, path)
    else:
        try:
            _write_new(path, body)
        except FileExistsError:
            raise AccessDenied(f"an access file already exists at {path}; it is kept "
                               f"(overwrite=True replaces it)") from None
    return path


def _write_new(path: Path, body: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        os.fchmod(fd, 0o640)  # the umask may only have narrowed it; say it exactly
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)


def _toml_key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
