"""The audiences separated by the operating system, tried as the readers' own OS accounts.

A host with a deployment file (/etc/onenet/deployment.toml, onenet/deployment.py) and audience
groups. The readers run as real other accounts (setpriv: their own uid and groups, no
capabilities) in a private mount namespace that shows them this test's deployment file at the
fixed path, so nothing in the code under test is redirected. What they may not read is refused by
the kernel (EACCES), not by onenet: a forged access file, a widened --role and plain Python that
skips onenet altogether all meet the same wall.

Needs root (accounts, groups, mounts): CI runs as root.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import grp
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from onenet import deployment
from onenet.settings import environment
from tests.warehouse.village import copy_warehouse
from warehouse import db
from warehouse.access import Principal

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv") and shutil.which("groupadd")
                              and shutil.which("chattr")),
    reason="needs root, unshare, setpriv, groupadd and chattr (util-linux, passwd, e2fsprogs; CI runs as root)")

ANALYST_GID, READERS_GID = 46001, 46002
ANALYST_UID, STAFF_UID, OTHER_UID = 46101, 46102, 46103
KEY = "os-separation-test-key-0123456789abcdef"


@contextlib.contextmanager
def deployment_file(path: Path):
    saved = deployment.DEPLOYMENT_FILE
    deployment.DEPLOYMENT_FILE = path
    try:
        yield
    finally:
        deployment.DEPLOYMENT_FILE = saved


@pytest.fixture(scope="module")
def host(merged_town):
    base = Path(tempfile.mkdtemp(prefix="onenet-os-", dir="/tmp"))
    os.chmod(base, 0o755)
    # The mount point of the fixed path; left in place (empty: no deployment file), since another
    # run's readers may be mounting over it.
    Path("/etc/onenet").mkdir(mode=0o755, exist_ok=True)
    os.chmod("/etc/onenet", 0o755)  # whatever the umask made it: other tests read it as other accounts
    groups_made: list[str] = []
    try:
        wh = base / "wh"
        wh.mkdir()
        os.chmod(wh, 0o700)  # the pipeline account's: no reader passes
        warehouse = copy_warehouse(merged_town[1], wh / "warehouse.duckdb")
        con = db.connect(warehouse)
        try:
            codes = [r[0] for r in con.execute("select distinct community_code from core.grid where "
                                               "grid_level = 'community' and community_code is not null "
                                               "order by 1").fetchall()]
        finally:
            con.close()
        assert len(codes) >= 2, codes
        prefix = f"ont{os.getpid() % 100000}"
        for code in codes:
            name = f"{prefix}-{code}"
            subprocess.run(["groupadd", name], check=True)  # the system picks a free gid
            groups_made.append(name)
        etc = base / "etc"
        etc.mkdir()
        os.chmod(etc, 0o755)
        (base / "log").mkdir()
        os.chown(base / "log", 0, READERS_GID)
        os.chmod(base / "log", 0o2750)
        (etc / "deployment.toml").write_text(
            f'mode = "production"\naccess_file = "{etc}/access.toml"\npublished = "{base}/published"\n'
            f'access_log = "{base}/log/access-log.jsonl"\n\n[groups]\nanalyst = "{ANALYST_GID}"\n'
            f'community = "{prefix}-{{code}}"\nreaders = "{READERS_GID}"\n', encoding="utf-8")
        (etc / "access.toml").write_text(
            f'[users.{ANALYST_UID}]\nrole = "district_analyst"\n\n[users.{STAFF_UID}]\nrole = "community_staff"\n'
            f'community = "{codes[0]}"\n\n[users.{OTHER_UID}]\nrole = "community_staff"\ncommunity = "{codes[1]}"\n',
            encoding="utf-8")
        os.chmod(etc / "deployment.toml", 0o644)
        os.chown(etc / "access.toml", 0, READERS_GID)  # readers look themselves up; only root writes it
        os.chmod(etc / "access.toml", 0o640)
        exports = base / "exports"  # the pipeline's: readers pass through to their audience's folder
        exports.mkdir()
        os.chmod(exports, 0o711)
        # The suite's own ONENET_* paths would contradict the deployment file: make them agree.
        agree = {"ONENET_PUBLISHED": str(base / "published"), "ONENET_ACCESS_FILE": str(etc / "access.toml"),
                 "ONENET_ACCESS_LOG": str(base / "log" / "access-log.jsonl"), "ONENET_DEPLOYMENT": "production"}
        with deployment_file(etc / "deployment.toml"), environment(ONENET_PSEUDONYM_KEY=KEY, **agree):
            _publish(warehouse, "v1")
            _publish(warehouse, "v2", touch=True)  # a second version: unchanged parts are hard links
            from warehouse.publish.permissions import prepare_exports

            prepare_exports(exports, base / "published")
        # What an administrator does once the pipeline made the log: append-only for every account.
        for chain in ("access-log.jsonl", "access-log.pipeline.jsonl"):
            subprocess.run(["chattr", "+a", str(base / "log" / chain)], check=True)
        yield {"base": base, "etc": etc, "warehouse": warehouse, "codes": codes, "prefix": prefix,
               "exports": exports, "published": base / "published"}
    finally:
        for name in groups_made:
            subprocess.run(["groupdel", name], check=False)
        for chain in ("access-log.jsonl", "access-log.pipeline.jsonl"):
            subprocess.run(["chattr", "-a", str(base / "log" / chain)], check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def _publish(warehouse: Path, version: str, touch: bool = False) -> None:
    from warehouse import audit_log
    from warehouse.publish import publish

    con = db.connect(warehouse)
    try:
        if touch:
            con.execute("update core.ticket set content = content || '。' where ticket_id = "
                        "(select min(ticket_id) from core.ticket)")
        from onenet import settings

        publish(con, settings.published_dir(), version)
        audit_log.append("publish", version, principal=None, output=settings.published_dir())
    finally:
        con.close()


def run_as(host, uid: int, gids: list[int], *argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`argv` as OS account `uid` with exactly `gids`, no capabilities, seeing the test's deployment
    file at /etc/onenet (a private mount namespace; the host's mounts are untouched)."""
    home = host["base"] / f"home-{uid}"
    if not home.exists():
        home.mkdir()
        os.chown(home, uid, gids[0])
    python_home = Path(sys.base_prefix)
    blocked = next((p for p in reversed(python_home.parents) if not os.stat(p).st_mode & stat.S_IXOTH), None)
    script = ['mount --bind "$ETC" /etc/onenet']
    if blocked is not None:  # e.g. /root 0700 above a pyenv Python: show only the Python itself
        script += ['mkdir -p "$SAVE" && mount --bind "$PYHOME" "$SAVE"',
                   'mount -t tmpfs -o mode=0755 tmpfs "$BLOCKED"',
                   'mkdir -p "$PYHOME" && mount --bind "$SAVE" "$PYHOME"']
    script.append('exec setpriv --reuid="$U" --regid="$G" --groups="$GS" --inh-caps=-all --bounding-set=-all -- "$@"')
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
                "ONENET_EXPORTS": str(host["exports"]), "ONENET_HOME": str(home),
                "ONENET_READER_NICE": "0", "PYTHONDONTWRITEBYTECODE": "1",
                "ETC": str(host["etc"]), "SAVE": str(host["base"] / ".python"), "PYHOME": str(python_home),
                "BLOCKED": str(blocked or ""), "U": str(uid), "G": str(gids[0]),
                "GS": ",".join(map(str, gids))}
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-euc",
                           "\n".join(script), "sh", *argv], env={**base_env, **(env or {})},
                          capture_output=True, text=True, timeout=180, cwd=Path(__file__).parents[2])


def onenet_as(host, uid: int, gids: list[int], *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_as(host, uid, gids, sys.executable, "-m", "onenet.cli", *args, env=env)


def staff_gids(host, index: int) -> list[int]:
    return [grp.getgrnam(f"{host['prefix']}-{host['codes'][index]}").gr_gid, READERS_GID]


ANALYST = (ANALYST_UID, [ANALYST_GID, READERS_GID])

# Plain Python, no onenet: what the kernel lets this account open.
PROBE = """
import sys
for path in sys.argv[1:]:
    try:
        with open(path, 'rb') as f:
            f.read(4)
        print('READ', path)
    except PermissionError:
        print('DENIED', path)
"""


def _a_part(folder: Path) -> Path:
    return next(p for p in sorted((folder / "current").resolve().rglob("*.parquet"))
                if p.is_file() and p.name != "columns.parquet")


def test_an_analyst_reads_the_analyst_snapshot(host):
    done = onenet_as(host, *ANALYST, "query", "select count(*) as n from mart.grid")
    assert done.returncode == 0, done.stderr
    assert "n" in done.stdout


def test_the_kernel_keeps_an_analyst_from_everything_else(host):
    published = host["published"]
    targets = [host["warehouse"], _a_part(published / "community" / host["codes"][0]),
               _a_part(published / "community" / host["codes"][1])]
    done = run_as(host, *ANALYST, sys.executable, "-c", PROBE, *map(str, targets),
                  str(_a_part(published / "analyst")))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [f"DENIED {t}" for t in targets] + [f"READ {_a_part(published / 'analyst')}"], lines


def test_staff_read_their_community_and_nothing_else(host):
    published = host["published"]
    own = _a_part(published / "community" / host["codes"][0])
    denied = [_a_part(published / "community" / host["codes"][1]), _a_part(published / "analyst"),
              host["warehouse"]]
    done = run_as(host, STAFF_UID, staff_gids(host, 0), sys.executable, "-c", PROBE, str(own), *map(str, denied))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"READ {own}"] + [f"DENIED {d}" for d in denied], done.stdout


def test_staff_read_the_pipelines_extract_and_write_their_own_elsewhere(host):
    from onenet import pipeline

    with _as_pipeline(host):
        written = pipeline.extract(dt.date(2026, 11, 29), who=Principal("root", "data_engineer"))
    book = next(r.path for r in written if host["codes"][0] in str(r.path))
    gid = staff_gids(host, 0)[0]
    assert book.stat().st_gid == gid and not book.stat().st_mode & stat.S_IRWXO, book
    mine = run_as(host, STAFF_UID, staff_gids(host, 0), sys.executable, "-c", PROBE, str(book))
    other = run_as(host, OTHER_UID, staff_gids(host, 1), sys.executable, "-c", PROBE, str(book))
    assert mine.stdout.splitlines() == [f"READ {book}"], mine.stdout + mine.stderr
    assert other.stdout.splitlines() == [f"DENIED {book}"], other.stdout + other.stderr
    # The pipeline's folder is the pipeline's alone: a staff member's own extract goes to their folder.
    done = onenet_as(host, STAFF_UID, staff_gids(host, 0), "extract", "--date", "2026-11-29")
    assert done.returncode == 1 and "set ONENET_EXPORTS to a folder of yours" in done.stderr, done.stderr
    own = host["base"] / f"home-{STAFF_UID}" / "onenet-exports"
    done = onenet_as(host, STAFF_UID, staff_gids(host, 0), "extract", "--date", "2026-11-29",
                     env={"ONENET_EXPORTS": str(own)})
    assert done.returncode == 0, done.stderr
    books = list(own.rglob("*.xlsx"))
    assert len(books) == 1 and books[0].stat().st_uid == STAFF_UID, books
    assert books[0].stat().st_gid == gid and not books[0].stat().st_mode & stat.S_IRWXO


@contextlib.contextmanager
def _as_pipeline(host):
    """This process as the pipeline of the test host: its deployment file and paths."""
    agree = {"ONENET_PUBLISHED": str(host["published"]), "ONENET_ACCESS_FILE": str(host["etc"] / "access.toml"),
             "ONENET_ACCESS_LOG": str(host["base"] / "log" / "access-log.jsonl"), "ONENET_DEPLOYMENT": "production",
             "ONENET_EXPORTS": str(host["exports"])}
    with deployment_file(host["etc"] / "deployment.toml"), environment(ONENET_PSEUDONYM_KEY=KEY, **agree):
        yield


def test_a_self_written_access_file_and_a_widened_role_are_refused(host):
    home = host["base"] / f"home-{ANALYST_UID}"
    forged = home / "access.toml"
    make = run_as(host, *ANALYST, sys.executable, "-c",
                  f"open({str(forged)!r}, 'w').write('[users.{ANALYST_UID}]\\nrole = \"data_engineer\"\\n')")
    assert make.returncode == 0, make.stderr
    done = onenet_as(host, *ANALYST, "query", "select 1", env={"ONENET_ACCESS_FILE": str(forged)})
    assert done.returncode != 0 and "contradicts access_file" in done.stderr, done.stdout + done.stderr
    done = onenet_as(host, *ANALYST, "query", "select 1", "--role", "data_engineer")
    assert done.returncode != 0 and "would widen" in done.stderr, done.stdout + done.stderr
    done = onenet_as(host, *ANALYST, "query", "select 1", env={"ONENET_DEPLOYMENT": "demo"})
    assert done.returncode != 0 and "contradicts mode" in done.stderr, done.stdout + done.stderr


def test_every_published_file_belongs_to_its_audience(host):
    published = host["published"]
    community_gids = {code: grp.getgrnam(f"{host['prefix']}-{code}").gr_gid for code in host["codes"]}
    checked = 0
    for audience_dir, gid in [(published / "analyst", ANALYST_GID)] + \
            [(published / "community" / code, g) for code, g in community_gids.items()]:
        st = audience_dir.stat()
        assert st.st_gid == gid and stat.S_IMODE(st.st_mode) == 0o2750, audience_dir
        for path in (audience_dir / "versions").rglob("*"):
            st = path.lstat()
            assert not st.st_mode & stat.S_IRWXO or path.name == "columns.parquet", path
            if path.name != "columns.parquet":
                assert st.st_gid == gid, (path, st.st_gid, gid)
            checked += 1
    assert checked > 100
    for shared in (published, published / "community"):
        assert stat.S_IMODE(shared.stat().st_mode) == 0o711, shared


def test_readers_append_to_the_access_log_but_cannot_read_cut_or_rewrite_it(host):
    log = host["base"] / "log" / "access-log.jsonl"
    tries = ("import sys\nfor mode in ('rb', 'r+b', 'wb'):\n    try:\n        open(sys.argv[1], mode).close()\n"
             "        print(mode, 'OPENED')\n    except PermissionError:\n        print(mode, 'DENIED')\n")
    done = run_as(host, *ANALYST, sys.executable, "-c", tries, str(log))
    assert done.stdout.split() == ["rb", "DENIED", "r+b", "DENIED", "wb", "DENIED"], done.stdout + done.stderr
    # Even the log's owner cannot cut it: append-only (chattr +a).
    with pytest.raises(PermissionError), open(log, "r+b") as f:
        f.truncate(0)


def test_the_access_log_holds_every_account_and_verifies(host):
    from warehouse import audit_log

    onenet_as(host, *ANALYST, "query", "select 1 as one")
    log = host["base"] / "log" / "access-log.jsonl"
    # Two chains: the readers' shared one, and the pipeline account's own (root's here).
    assert [path.name for path in audit_log.chains(log)] == ["access-log.jsonl", "access-log.pipeline.jsonl"]
    assert all(result.ok for _, result in audit_log.verify_all(log)), audit_log.verify_all(log)
    assert {r["os_user"] for r in audit_log.tail(10_000, audit_log.pipeline_log_path(log))} == {"root"}
    records = audit_log.tail_all(10_000, log)
    users = {r["os_user"] for r in records}
    assert {"root", str(ANALYST_UID), str(STAFF_UID)} <= users, users
    assert any(r["outcome"] == "denied" and r["os_user"] == str(ANALYST_UID) for r in records), records[-5:]


def test_an_account_outside_its_audience_group_gets_one_line_and_a_log_record(host):
    # Mapped as an analyst in the access file, but not (yet) in the analysts' OS group: the kernel
    # refuses the snapshot; the user reads what to ask for, not a traceback, and the refusal is logged.
    from warehouse import audit_log

    done = onenet_as(host, ANALYST_UID, [READERS_GID], "query", "select count(*) as n from mart.grid")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "permission denied:" in done.stderr and "group" in done.stderr, done.stderr
    records = audit_log.tail(50, host["base"] / "log" / "access-log.jsonl")
    assert any(r["outcome"] == "denied" and r["os_user"] == str(ANALYST_UID) and "permission denied" in r["reason"]
               for r in records), records[-3:]


def test_a_community_without_its_os_group_is_the_pipelines_alone_until_the_group_exists(host):
    # A new community in the registry before an administrator made its group: the publish goes on for
    # everyone else, names the missing group, and nobody but the pipeline can read that community.
    from warehouse.publish import community_folder, publish

    codes, base = host["codes"], host["base"]
    prefix = f"{host['prefix']}n"
    made = f"{prefix}-{codes[0]}"
    subprocess.run(["groupadd", made], check=True)
    late = f"{prefix}-{codes[1]}"
    etc = base / "etc-newgroup"
    etc.mkdir()
    os.chmod(etc, 0o755)
    published = base / "published-newgroup"
    (etc / "deployment.toml").write_text(
        f'mode = "production"\naccess_file = "{host["etc"]}/access.toml"\npublished = "{published}"\n'
        f'access_log = "{base}/log/access-log.jsonl"\n\n[groups]\nanalyst = "{ANALYST_GID}"\n'
        f'community = "{prefix}-{{code}}"\nreaders = "{READERS_GID}"\n', encoding="utf-8")
    os.chmod(etc / "deployment.toml", 0o644)
    agree = {"ONENET_PUBLISHED": str(published), "ONENET_ACCESS_FILE": str(host["etc"] / "access.toml"),
             "ONENET_ACCESS_LOG": str(base / "log" / "access-log.jsonl"), "ONENET_DEPLOYMENT": "production"}
    try:
        with deployment_file(etc / "deployment.toml"), environment(ONENET_PSEUDONYM_KEY=KEY, **agree):
            con = db.connect(host["warehouse"])
            try:
                first = publish(con, published, "n1")
                lonely = published / "community" / community_folder(codes[1])
                assert [codes[1] in why and late in why for why in first.unopened] == [True], first.unopened
                assert "NOT READABLE BY ITS STAFF" in first.summary()
                for path in [lonely, *(lonely / "versions").rglob("*")]:
                    st = path.lstat()
                    if path.name == "columns.parquet" or stat.S_ISLNK(st.st_mode):
                        continue
                    assert not st.st_mode & stat.S_IRWXO, path
                    if stat.S_ISDIR(st.st_mode):  # folders the pipeline's alone: nothing inside is reachable
                        assert st.st_gid == os.getegid() and not st.st_mode & stat.S_IRWXG, path
                opened = published / "community" / community_folder(codes[0])
                assert opened.stat().st_gid == grp.getgrnam(made).gr_gid, "the other communities publish as usual"
                subprocess.run(["groupadd", late], check=True)
                gid = grp.getgrnam(late).gr_gid
                probe = run_as(host, STAFF_UID, [gid, READERS_GID], sys.executable, "-c", PROBE, str(_a_part(lonely)))
                assert probe.stdout.split()[0] == "DENIED", probe.stdout + probe.stderr  # not before the publish
                second = publish(con, published, "n2")  # nothing changed in the data
                assert second.unopened == [], second.unopened
            finally:
                con.close()
        st = lonely.stat()
        assert st.st_gid == gid and stat.S_IMODE(st.st_mode) == 0o2750
        part = _a_part(lonely)
        assert part.stat().st_gid == gid and stat.S_IMODE(part.stat().st_mode) == 0o440, part
        probe = run_as(host, STAFF_UID, [gid, READERS_GID], sys.executable, "-c", PROBE, str(part))
        assert probe.stdout.split() == ["READ", str(part)], probe.stdout + probe.stderr
    finally:
        for name in (made, late):
            subprocess.run(["groupdel", name], check=False, capture_output=True)


# --- the deployment file itself (in this process) ------------------------------------------------

def _write_deployment(folder: Path, body: str, mode: int = 0o644) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    path = folder / "deployment.toml"
    path.write_text(body, encoding="utf-8")
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("body, mode, owner, message", [
    ('mode = "production"\n', 0o664, 0, "writable by others"),
    ('mode = "production"\n', 0o644, 65534, "not root"),
    ('mode = "production"\npublsihed = "/srv/p"\n', 0o644, 0, "unknown keys"),
    ('mode = "staging"\n', 0o644, 0, "must be one of"),
    ('access_file = "/a"\naccess_log = "/l"\npublished = "relative/p"\n', 0o644, 0, "absolute path"),
    ('mode = "production"\naccess_file = "/a"\n', 0o644, 0, "must give published, access_log"),
    ('access_file = "/a"\npublished = "/p"\naccess_log = "/l"\n[groups]\nanalyst = "a"\ncommunity = "c"\n'
     'readers = "r"\n', 0o644, 0, "{code}"),
])
def test_an_unsafe_or_invalid_deployment_file_is_refused(tmp_path, monkeypatch, body, mode, owner, message):
    path = _write_deployment(tmp_path / "etc", body, mode)
    os.chown(path, owner, 0)
    monkeypatch.setattr(deployment, "DEPLOYMENT_FILE", path)
    with pytest.raises(deployment.DeploymentError, match=re.escape(message)):
        deployment.load()


def test_the_deployment_file_decides_and_a_contradicting_variable_is_refused(tmp_path, monkeypatch):
    from onenet import settings
    from warehouse.identity import access_file_path

    path = _write_deployment(tmp_path / "etc", f'access_file = "{tmp_path}/access.toml"\n'
                                                f'published = "{tmp_path}/published"\n'
                                                f'access_log = "{tmp_path}/log.jsonl"\n')
    monkeypatch.setattr(deployment, "DEPLOYMENT_FILE", path)
    for var in ("ONENET_DEPLOYMENT", "ONENET_PUBLISHED", "ONENET_ACCESS_FILE", "ONENET_ACCESS_LOG"):
        monkeypatch.delenv(var, raising=False)
    assert settings.deployment() == "production"  # the file's default mode
    assert settings.published_dir() == tmp_path / "published"
    assert access_file_path() == tmp_path / "access.toml"
    monkeypatch.setenv("ONENET_PUBLISHED", str(tmp_path / "published" / "." ))  # the same folder: agrees
    assert settings.published_dir() == tmp_path / "published"
    monkeypatch.setenv("ONENET_DEPLOYMENT", "demo")
    with pytest.raises(deployment.DeploymentError, match="ONENET_DEPLOYMENT=demo contradicts mode"):
        access_file_path()  # whichever setting is read, the contradiction is refused
    monkeypatch.delenv("ONENET_DEPLOYMENT")
    monkeypatch.setenv("ONENET_TEMPLATES_DIR", str(tmp_path))  # the file names no templates folder
    with pytest.raises(deployment.DeploymentError, match="gives no templates"):
        access_file_path()
