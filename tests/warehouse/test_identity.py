"""The acting principal comes from the OS user and an administrator-only access file; flags only narrow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from warehouse import identity
from warehouse.access import AccessDenied
from warehouse.identity import resolve_principal, write_default_access_file

ROOT = Path(__file__).resolve().parents[2]
ACCESS = """\
# who may read what; only administrators may write this file
[users.root]
role = "data_engineer"
[users.wang_li]
role = "community_staff"
community = "幸福社区"
[users.analyst1]
role = "district_analyst"
"""


@pytest.fixture
def access_file(tmp_path, monkeypatch):
    """An access file as an administrator leaves it: root's, 0640, in a folder only root writes."""
    folder = tmp_path / "etc"
    folder.mkdir(mode=0o755)
    path = folder / "access.toml"
    path.write_text(ACCESS, encoding="utf-8")
    path.chmod(0o640)
    monkeypatch.setenv("ONENET_ACCESS_FILE", str(path))
    return path


def act_as(monkeypatch, user: str) -> None:
    # The tests run as root; other OS users are named here rather than created on the machine
    # (test_a_real_other_os_user_* runs a real process as `nobody`).
    monkeypatch.setattr(identity, "os_user", lambda: user)


def test_the_os_user_is_mapped_by_the_access_file_not_by_the_environment(access_file, monkeypatch):
    monkeypatch.setenv("ONENET_ROLE", "community_staff")
    monkeypatch.setenv("ONENET_USER", "wang_li")
    monkeypatch.setenv("USER", "wang_li")
    who = resolve_principal()
    assert (who.user, who.role, who.community) == ("root", "data_engineer", None)
    act_as(monkeypatch, "wang_li")
    who = resolve_principal()
    assert (who.user, who.role, who.community) == ("wang_li", "community_staff", "幸福社区")
    act_as(monkeypatch, "analyst1")
    assert resolve_principal().role == "district_analyst"


def test_an_engineer_may_narrow_to_analyst_or_to_staff_of_a_named_community(access_file):
    analyst = resolve_principal("district_analyst")
    assert (analyst.user, analyst.role, analyst.community) == ("root", "district_analyst", None)
    staff = resolve_principal("community_staff", "花桥社区")
    assert (staff.role, staff.community) == ("community_staff", "花桥社区")
    with pytest.raises(AccessDenied, match="only of a named community: pass --community"):
        resolve_principal("community_staff")


def test_staff_may_name_their_own_community(access_file, monkeypatch):
    act_as(monkeypatch, "wang_li")
    who = resolve_principal("community_staff", "幸福社区")
    assert (who.role, who.community) == ("community_staff", "幸福社区")


@pytest.mark.parametrize(("user", "role", "community", "message"), [
    ("analyst1", "data_engineer", None, "acting as data_engineer would widen"),
    ("analyst1", "community_staff", "幸福社区", "acting as community_staff would widen"),
    ("wang_li", None, "花桥社区", "花桥社区 is not theirs to read"),
    ("wang_li", "district_analyst", None, "acting as district_analyst would widen"),
    ("wang_li", "data_engineer", None, "acting as data_engineer would widen"),
])
def test_widening_is_refused(access_file, monkeypatch, user, role, community, message):
    act_as(monkeypatch, user)
    with pytest.raises(AccessDenied, match=message) as err:
        resolve_principal(role, community)
    assert "\n" not in str(err.value)


def test_an_unknown_role_is_refused(access_file):
    with pytest.raises(AccessDenied, match="unknown role 'admin'"):
        resolve_principal("admin")
    access_file.write_text('[users.root]\nrole = "admin"\n', encoding="utf-8")
    with pytest.raises(AccessDenied, match="users.root .* has role 'admin'"):
        resolve_principal()


def test_an_unmapped_user_is_refused_naming_the_file_and_the_fix(access_file, monkeypatch):
    act_as(monkeypatch, "intruder")
    with pytest.raises(AccessDenied) as err:
        resolve_principal("district_analyst")
    assert str(access_file) in str(err.value) and "[users.intruder]" in str(err.value)


def test_a_misspelt_or_unbound_entry_is_refused(access_file, monkeypatch):
    act_as(monkeypatch, "wang_li")
    access_file.write_text('[users.wang_li]\nrole = "community_staff"\ncomunity = "幸福社区"\n',
                           encoding="utf-8")
    with pytest.raises(AccessDenied, match="unknown keys \\['comunity'\\]"):
        resolve_principal()
    access_file.write_text("[users.wang_li\n", encoding="utf-8")
    with pytest.raises(AccessDenied, match="not valid TOML"):
        resolve_principal()


@pytest.mark.parametrize(("mode", "who"), [(0o660, "group"), (0o642, "world")])
def test_a_group_or_world_writable_file_is_refused(access_file, mode, who):
    access_file.chmod(mode)
    with pytest.raises(AccessDenied, match=f"access file .* is {who}-writable"):
        resolve_principal()


def test_a_writable_folder_is_refused_unless_sticky(access_file):
    access_file.parent.chmod(0o777)
    with pytest.raises(AccessDenied, match="folder of the access file .* is world-writable"):
        resolve_principal()
    access_file.parent.chmod(0o1777)  # like /tmp: others cannot replace a file they do not own
    assert resolve_principal().role == "data_engineer"


def test_a_missing_file_says_how_to_make_one(tmp_path, monkeypatch):
    path = tmp_path / "nowhere" / "access.toml"
    monkeypatch.setenv("ONENET_ACCESS_FILE", str(path))
    with pytest.raises(AccessDenied) as err:
        resolve_principal()
    assert f"no access file at {path}" in str(err.value) and "make demo" in str(err.value)


def test_the_default_path_is_under_the_home(tmp_path, monkeypatch):
    monkeypatch.delenv("ONENET_ACCESS_FILE", raising=False)
    monkeypatch.setenv("ONENET_HOME", str(tmp_path))
    assert identity.access_file_path() == tmp_path / "access.toml"


def test_the_default_file_is_0640_and_kept_unless_overwritten(tmp_path, monkeypatch):
    path = tmp_path / "home" / "access.toml"
    monkeypatch.setenv("ONENET_ACCESS_FILE", str(path))
    write_default_access_file(path, "root")
    assert path.stat().st_mode & 0o777 == 0o640
    assert resolve_principal().role == "data_engineer"
    with pytest.raises(AccessDenied, match="already exists"):
        write_default_access_file(path, "root", "district_analyst")
    write_default_access_file(path, "root", "community_staff", community="幸福社区", overwrite=True)
    assert path.stat().st_mode & 0o777 == 0o640
    who = resolve_principal()
    assert (who.role, who.community) == ("community_staff", "幸福社区")


# A real process as another OS user: the user, and the file owner check, come from the kernel.
# It imports as root (this machine's Python lives under /root, which `nobody` cannot read), then
# drops to `nobody` before it reads the access file.
PROBE = """
import os, sys
from warehouse.access import AccessDenied
from warehouse.identity import resolve_principal
os.setgroups([]); os.setgid(65534); os.setuid(65534)
try:
    who = resolve_principal(*(sys.argv[1:] or [None]))
    print(who.user, who.role)
except AccessDenied as exc:
    print("denied:", exc)
"""


@pytest.fixture
def world_readable_dir():
    # pytest's tmp_path is 0700 root: `nobody` could not reach a file there.
    folder = Path(tempfile.mkdtemp(prefix="onenet-access-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def probe_as_nobody(path: Path, *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "ONENET_ACCESS_FILE": str(path), "PYTHONDONTWRITEBYTECODE": "1",
           "ONENET_ROLE": "data_engineer", "ONENET_USER": "root"}
    done = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another OS user needs root")
def test_a_real_other_os_user_is_mapped_and_the_file_must_be_roots(world_readable_dir):
    path = world_readable_dir / "access.toml"
    path.write_text('[users.nobody]\nrole = "district_analyst"\n', encoding="utf-8")
    path.chmod(0o644)
    assert probe_as_nobody(path) == "nobody district_analyst"
    assert "acting as data_engineer would widen" in probe_as_nobody(path, "data_engineer")
    os.chown(path, 1, -1)  # daemon could now grant nobody anything
    assert "access file" in probe_as_nobody(path) and "owned by daemon, not root" in probe_as_nobody(path)
    os.chown(path, 0, -1)
    os.chown(world_readable_dir, 1, -1)  # daemon could replace the file
    assert "folder of the access file" in probe_as_nobody(path)
    assert "owned by daemon, not root" in probe_as_nobody(path)
    os.chown(world_readable_dir, 0, -1)
    path.write_text('[users.someone_else]\nrole = "district_analyst"\n', encoding="utf-8")
    assert "OS user 'nobody' is not in the access file" in probe_as_nobody(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another OS user needs root")
def test_a_users_own_file_serves_a_one_person_setup_only(world_readable_dir):
    # A developer running `make demo` owns the file the demo wrote: it may make them the data
    # engineer they already are, and nothing narrower, since they could edit it to widen.
    path = world_readable_dir / "access.toml"
    path.write_text('[users.nobody]\nrole = "district_analyst"\n', encoding="utf-8")
    path.chmod(0o644)
    os.chown(path, 65534, -1)
    assert "owned by nobody, who could widen their own role" in probe_as_nobody(path)
    path.write_text('[users.nobody]\nrole = "data_engineer"\n', encoding="utf-8")
    assert probe_as_nobody(path) == "nobody data_engineer"
    assert probe_as_nobody(path, "district_analyst") == "nobody district_analyst"
    # Their own folder counts the same: they could replace root's file in it.
    path.write_text('[users.nobody]\nrole = "district_analyst"\n', encoding="utf-8")
    os.chown(path, 0, -1)
    os.chown(world_readable_dir, 65534, -1)
    assert "owned by nobody, who could widen their own role" in probe_as_nobody(path)
