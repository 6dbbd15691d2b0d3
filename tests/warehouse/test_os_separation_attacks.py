"""Attacks on the audiences' OS separation (issue #13), tried as a local analyst or community-staff account.

The host of tests/warehouse/test_os_separation.py (a deployment file at the fixed path, audience
groups, readers as real other uids through `unshare --mount` + `setpriv`) attacked with what its
authors' tests do not try: the access log every reader may write and read, the group-writable
exports folders (links planted at names the pipeline writes, subfolders whoever comes first owns),
and what any local account reaches through the 0711 folders. Each reproduced hole is a strict
expected failure naming the fix; what holds is kept as a regression.

Needs root (accounts, groups, mounts): CI runs as root.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onenet.settings import environment
from tests.warehouse import test_os_separation as separation
from tests.warehouse.test_os_separation import (
    ANALYST,
    ANALYST_UID,
    KEY,
    OTHER_UID,
    STAFF_UID,
    deployment_file,
    onenet_as,
    run_as,
    staff_gids,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("setpriv") and shutil.which("groupadd")),
    reason="needs root, unshare, setpriv and groupadd (util-linux, passwd; CI runs as root)")

host = separation.host  # the same host, built for this module

COLLEAGUE_UID = 46104   # a second staff member of the first community
STRANGER_UID = 46105    # a local account in no onenet group at all
PHONE = "13912340567"   # a phone number a staff member types into a query


def _log(host) -> Path:
    return host["base"] / "log" / "access-log.jsonl"


@contextlib.contextmanager
def as_pipeline(host):
    """This process as the pipeline's account on the test host (its deployment file, its exports)."""
    agree = {"ONENET_PUBLISHED": str(host["published"]), "ONENET_ACCESS_FILE": str(host["etc"] / "access.toml"),
             "ONENET_ACCESS_LOG": str(_log(host)), "ONENET_DEPLOYMENT": "production"}
    with deployment_file(host["etc"] / "deployment.toml"), \
            environment(ONENET_PSEUDONYM_KEY=KEY, ONENET_EXPORTS=str(host["exports"]), **agree):
        yield


@pytest.fixture
def log_kept(host):
    """Put the access log and its anchor back as they were after a test that damages them."""
    log = _log(host)
    anchor = log.with_name(log.name + ".head")
    saved = {p: p.read_bytes() for p in (log, anchor) if p.exists()}
    yield log
    for p, data in saved.items():
        with open(p, "r+b") as f:  # in place: keep the file, its owner, group and mode
            f.write(data)
            f.truncate()


def _engineer():
    from warehouse.access import Principal

    return Principal("onenet", "data_engineer")


def _community_name(host, index: int) -> str:
    index_file = host["published"] / "community" / "communities.json"
    return json.loads(index_file.read_text(encoding="utf-8"))[host["codes"][index]]["name"]


def _add_colleague(host) -> None:
    access = host["etc"] / "access.toml"
    text = access.read_text(encoding="utf-8")
    if f"[users.{COLLEAGUE_UID}]" not in text:
        access.write_text(text + f'\n[users.{COLLEAGUE_UID}]\nrole = "community_staff"\n'
                                 f'community = "{host["codes"][0]}"\n', encoding="utf-8")


# --- the access log: every reader may read it and write it ---------------------------------------

READ_FOR = """
import sys
try:
    text = open(sys.argv[1], encoding='utf-8').read()
except PermissionError:
    print('DENIED')
else:
    print('FOUND' if sys.argv[2] in text else 'ABSENT')
"""


@pytest.mark.xfail(strict=True, reason=(
    "review A1: the access log is 0660 in the readers' group and records a query's SQL verbatim as its "
    "target, so a phone or ID number a staff member (or an engineer, on the warehouse) types into a query "
    "reaches every analyst and every other community's staff; fix: readers must not be able to read the "
    "log (append through a root/setgid helper or a logging daemon), or record a keyed hash of the SQL"))
def test_a_staff_members_query_does_not_reach_other_audiences_through_the_log(host):
    done = onenet_as(host, STAFF_UID, staff_gids(host, 0), "query",
                     f"select count(*) as n from (select '{PHONE}' as phone) where phone = '{PHONE}'")
    assert done.returncode == 0, done.stderr
    # The pipeline's own account finds it there (the record exists)...
    assert PHONE in _log(host).read_text(encoding="utf-8")
    # ...and so does an analyst, and the other community's staff.
    for uid, gids in (ANALYST, (OTHER_UID, staff_gids(host, 1))):
        probe = run_as(host, uid, gids, sys.executable, "-c", READ_FOR, str(_log(host)), PHONE)
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.strip() != "FOUND", (uid, "reads the staff member's phone number in the access log")


FIND_ID = r"""
import re, sys
try:
    text = open(sys.argv[1], encoding='utf-8').read()
except PermissionError:
    print('DENIED')
else:
    print('FOUND' if re.search(r"'\d{17}[\dXx]'", text) else 'ABSENT')
"""


@pytest.mark.xfail(strict=True, reason=(
    "review A1: a failed query's DuckDB error is recorded as the record's reason, and DuckDB quotes the "
    "offending value ('Could not convert string ... to INT32'): an engineer's mistyped query on the "
    "warehouse writes a resident's full ID number into the log every analyst may read, though nobody typed "
    "it; fix as A1, and record the error's kind, not its text"))
def test_a_warehouse_value_in_an_engineers_error_does_not_reach_analysts(host):
    from onenet import pipeline
    from warehouse.query import QueryError

    with as_pipeline(host), environment(ONENET_WAREHOUSE=str(host["warehouse"])), \
            pytest.raises(QueryError, match="convert"):
        pipeline.query("select cast(id_number as integer) from core.person", who=_engineer())
    probe = run_as(host, *ANALYST, sys.executable, "-c", FIND_ID, str(_log(host)))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() != "FOUND", "an analyst reads a resident's full ID number in the access log"


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
    "review A2: any reader may write the access log, and append refuses to write after a damaged tail, "
    "so one line from an analyst stops the pipeline's own publish record (onenet.pipeline.publish ends "
    "in audit_log.append: the merge task fails) and every other reader's command; fix: readers never "
    "hold a writable descriptor of the log (a helper or daemon appends for them)"))
def test_a_reader_cannot_stop_the_pipelines_publish_through_the_log(host, log_kept):
    from warehouse import audit_log

    done = run_as(host, *ANALYST, sys.executable, "-c", f"open({str(log_kept)!r}, 'ab').write(b'not a record\\n')")
    assert done.returncode == 0, done.stderr
    with as_pipeline(host):
        try:
            audit_log.append("publish", "v-after-the-analyst", principal=None)
        except audit_log.AuditLogError as exc:
            raise AssertionError(f"the pipeline cannot record its publish: {exc}") from exc


@pytest.mark.xfail(strict=True, reason=(
    "review A2: a reader may take the access log's exclusive lock and keep it, and every append "
    "(the pipeline's publish record, every reader's read) waits on it without a bound: one analyst "
    "stalls the merge task; fix as above (readers do not open the log), or a bounded LOCK_NB retry"))
def test_a_reader_cannot_hold_the_lock_every_append_waits_on(host):
    hold = ("import fcntl, sys\nf = open(sys.argv[1], 'rb')\nfcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('HELD', flush=True)\nsys.stdin.read()\n")
    reader = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--", "setpriv", f"--reuid={ANALYST[0]}",
         f"--regid={ANALYST[1][0]}", f"--groups={','.join(map(str, ANALYST[1]))}", "--inh-caps=-all",
         "--bounding-set=-all", "--", sys.executable, "-c", hold, str(_log(host))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = reader.stdout.readline() if reader.stdout else ""
        assert line.strip() == "HELD" or line == "", line
        with open(_log(host), "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what audit_log.append asks for (blocking)
            except BlockingIOError:
                pytest.fail("the analyst holds the access log's lock: the pipeline's append would wait forever")
    finally:
        if reader.stdin:
            reader.stdin.close()
        reader.wait(timeout=30)


REWRITE = """
import json, os, sys
from warehouse import audit_log
log, me = sys.argv[1], sys.argv[2]
records = [json.loads(line) for line in open(log, encoding='utf-8')]
kept, prev = [], audit_log.GENESIS
for r in records:
    if r['os_user'] == me:
        continue  # what I did is gone
    r = {**r, 'seq': len(kept) + 1, 'prev_hash': prev}
    r['hash'] = prev = audit_log.record_hash(r)
    kept.append(r)
with open(log, 'r+b') as f:
    f.write(b''.join((json.dumps(r, ensure_ascii=False, separators=(',', ':')) + '\\n').encode() for r in kept))
    f.truncate()
with open(log + '.head', 'r+b') as f:
    f.write(audit_log._anchor_bytes(len(kept), prev))
print(len(records) - len(kept))
"""


@pytest.mark.xfail(strict=True, reason=(
    "review A3: the chain and its anchor are unkeyed and both writable by every reader, and nothing copies "
    "the anchor elsewhere (audit_log's docstring says the pipeline records head() with each run; no code "
    "does, and `onenet audit verify` passes no expect=), so an analyst removes their own records, re-chains "
    "the rest and verify() passes; the README's 'the hash chain and its anchor show an edit or a cut tail' "
    "does not hold against readers; fix: the pipeline records head() where readers cannot write and verify "
    "checks it, or the log is written by an account readers are not"))
def test_a_reader_cannot_erase_their_own_records_unnoticed(host, log_kept):
    from warehouse import audit_log

    denied = onenet_as(host, *ANALYST, "query", "select 1", "--role", "data_engineer")
    assert denied.returncode != 0 and "would widen" in denied.stderr, denied.stdout + denied.stderr
    assert any(r["os_user"] == str(ANALYST_UID) for r in audit_log.tail(10_000, log_kept))
    done = run_as(host, *ANALYST, sys.executable, "-c", REWRITE, str(log_kept), str(ANALYST_UID))
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0, done.stdout
    assert not any(r["os_user"] == str(ANALYST_UID) for r in audit_log.tail(10_000, log_kept))
    result = audit_log.verify(log_kept)
    assert not result.ok, "an analyst deleted their own denied attempt and the access log still verifies"


# --- the exports folders: 2770, shared by an audience and written by the pipeline ----------------

@pytest.mark.xfail(strict=True, reason=(
    "review E1: the daily extract (the pipeline's account, 07:00) writes each workbook through a fixed "
    "temporary name, <name>_<day>.xlsx.part (warehouse/excel.py write_workbook; xlsxwriter opens it "
    "following links), in a folder the community's staff may write (2770, fs.protected_symlinks does not "
    "cover it: not sticky, not world-writable), so a staff member plants a link there and the pipeline "
    "overwrites any file it can write (here a root-only file; the warehouse or the access log in "
    "production); the same holds for reports (.xlsx.part in analyst/reports) and export's .parquet.part; "
    "fix: temporary names from mkstemp/O_EXCL|O_NOFOLLOW in the target folder, as query --out does"))
def test_a_staff_member_cannot_make_the_pipeline_write_through_a_planted_link(host):
    from onenet import pipeline
    from warehouse.extracts.community import extract_path

    day = dt.date(2026, 11, 28)
    victim = host["base"] / "wh" / "precious.txt"  # in the pipeline's 0700 folder: no reader sees it
    victim.write_text("precious", encoding="utf-8")
    part = extract_path(host["exports"], host["codes"][0], _community_name(host, 0), day).with_suffix(".xlsx.part")
    plant = (f"import os\nos.makedirs({str(part.parent)!r}, exist_ok=True)\n"
             f"os.symlink({str(victim)!r}, {str(part)!r})\n")
    done = run_as(host, STAFF_UID, staff_gids(host, 0), sys.executable, "-c", plant)
    assert done.returncode == 0, done.stderr
    with as_pipeline(host):
        pipeline.extract(day, who=_engineer())  # what onenet_daily_extract runs
    assert victim.read_bytes() == b"precious", "the pipeline wrote a workbook through the staff member's link"


@pytest.mark.xfail(strict=True, reason=(
    "review E1: the pipeline's dashboard task (orchestration.rebuild_dashboard) writes the data "
    "dictionary with Path.write_text straight at <exports>/analyst/dictionary.md, a name in a folder "
    "every analyst may write (2770), following whatever link is there: an analyst makes the pipeline "
    "overwrite any file it can write; fix: write through mkstemp in the folder and rename"))
def test_an_analyst_cannot_make_the_pipeline_write_the_dictionary_through_a_link(host):
    from onenet import pipeline

    victim = host["base"] / "wh" / "precious-too.txt"
    victim.write_text("precious", encoding="utf-8")
    target = host["exports"] / "analyst" / "dictionary.md"
    plant = f"import os\nos.symlink({str(victim)!r}, {str(target)!r})\n"
    done = run_as(host, *ANALYST, sys.executable, "-c", plant)
    assert done.returncode == 0, done.stderr
    try:
        with as_pipeline(host):
            pipeline.dictionary()
        assert victim.read_bytes() == b"precious", "the pipeline wrote the dictionary through the analyst's link"
    finally:
        target.unlink(missing_ok=True)


@pytest.mark.xfail(strict=True, reason=(
    "review E2: a subfolder of an exports folder (marts/, reports/, extracts/, extracts/<day>/, dashboard/) "
    "is made 2750 by whoever writes first (private_dir, the 027 umask), so the next member of the same "
    "audience cannot write there: one staff member's `onenet export` locks their colleagues out (and owns "
    "the folder they all read, free to swap its files); fix: the subfolders 2770 with the sticky bit "
    "(3770), made by the pipeline in permissions.exports_folder, files written with O_EXCL"))
def test_a_colleagues_export_is_not_locked_out_by_the_first_one(host):
    _add_colleague(host)
    first = onenet_as(host, STAFF_UID, staff_gids(host, 0), "export")
    assert first.returncode == 0, first.stderr
    second = onenet_as(host, COLLEAGUE_UID, staff_gids(host, 0), "export")
    assert second.returncode == 0, second.stderr


@pytest.mark.xfail(strict=True, reason=(
    "review E2: the pipeline's 07:00 extract makes extracts/ and extracts/<day>/ 2750 as its own account, "
    "so afterwards a staff member can write no extract of their own into their exports folder; the "
    "existing test passes only because staff wrote first; fix as E2"))
def test_staff_still_write_their_extract_after_the_pipelines_run(host):
    from onenet import pipeline

    with as_pipeline(host):
        pipeline.extract(dt.date(2026, 11, 26), who=_engineer())
    done = onenet_as(host, OTHER_UID, staff_gids(host, 1), "extract", "--date", "2026-11-27")
    assert done.returncode == 0, done.stderr


@pytest.mark.xfail(strict=True, reason=(
    "review E3: whoever makes a subfolder of an exports folder first owns it (E2), and an exports folder "
    "is 2770 without the sticky bit, so a staff member who wrote an extract before the pipeline owns "
    "extracts/ and swaps the pipeline's day folder, workbook and all, for a forged one their colleagues "
    "open and act on (wrong phones, wrong residents); fix: the pipeline makes the subfolders itself, "
    "3770 (sticky), so only a file's owner may rename or delete it"))
def test_a_staff_member_cannot_replace_the_pipelines_workbook(host):
    from onenet import pipeline

    day = dt.date(2026, 11, 25)
    # A staff member wrote an extract of another day first: an ordinary morning.
    first = onenet_as(host, STAFF_UID, staff_gids(host, 0), "extract", "--date", "2026-11-24")
    assert first.returncode == 0 or "Permission" in first.stderr, first.stderr
    with as_pipeline(host):
        written = pipeline.extract(day, who=_engineer())
    book = next(r.path for r in written if host["codes"][0] in str(r.path))
    forge = (f"import os\nday = os.path.dirname({str(book)!r})\nos.rename(day, day + '.gone')\nos.mkdir(day)\n"
             f"open({str(book)!r}, 'wb').write(b'PK forged')\n")
    done = run_as(host, STAFF_UID, staff_gids(host, 0), sys.executable, "-c", forge)
    assert done.returncode == 0 or "PermissionError" in done.stderr, done.stderr
    assert not book.read_bytes().startswith(b"PK forged"), "a staff member replaced the pipeline's workbook"


# --- a host that starts separating its audiences ---------------------------------------------------

# review P1, fixed in warehouse/publish/permissions.py: when [groups] is added to a host that already
# published, a publish that changes nothing (the usual daily republish) wrote no new version to seal, so
# the current version kept the pipeline's group and every reader met EACCES until the data changed. Now
# audience_folder seals the current version whose group is not the audience's, copying a file still
# linked into another community's version (the shared relations, one inode before groups) first.
def test_analysts_still_read_after_the_host_starts_separating_audiences(host):
    from tests.warehouse.test_os_separation import _publish

    base = host["base"] / "enable"
    etc = base / "etc"
    etc.mkdir(parents=True)
    os.chmod(base, 0o755)
    os.chmod(etc, 0o755)
    published = base / "published"
    body = (host["etc"] / "deployment.toml").read_text(encoding="utf-8").replace(
        f'published = "{host["published"]}"', f'published = "{published}"')
    assert f'published = "{published}"' in body
    agree = {"ONENET_PUBLISHED": str(published), "ONENET_ACCESS_FILE": str(host["etc"] / "access.toml"),
             "ONENET_ACCESS_LOG": str(_log(host)), "ONENET_DEPLOYMENT": "production"}
    deployment_toml = etc / "deployment.toml"
    deployment_toml.write_text(body.split("[groups]")[0], encoding="utf-8")  # no groups yet
    os.chmod(deployment_toml, 0o644)
    with deployment_file(deployment_toml), environment(ONENET_PSEUDONYM_KEY=KEY, **agree):
        _publish(host["warehouse"], "before-groups")
        deployment_toml.write_text(body, encoding="utf-8")  # the administrator adds [groups]
        _publish(host["warehouse"], "with-groups")  # nothing changed in the warehouse
    done = onenet_as({**host, "etc": etc}, *ANALYST, "query", "select count(*) as n from mart.grid")
    assert done.returncode == 0, done.stderr
    # Each community's staff read their own version, the relations every community shares included,
    # and no file of one community's version carries another community's group.
    from warehouse.publish import community_folder

    shared = json.loads((published / "community" / community_folder(host["codes"][0]) / "current" /
                         "manifest.json").read_text(encoding="utf-8"))["shared"]
    assert shared
    for index, uid in ((0, STAFF_UID), (1, OTHER_UID)):
        sql = " union all ".join(f"select count(*) from {q}" for q in shared)
        done = onenet_as({**host, "etc": etc}, uid, staff_gids(host, index), "query", sql)
        assert done.returncode == 0, done.stderr
        gid = staff_gids(host, index)[0]
        version = (published / "community" / community_folder(host["codes"][index]) / "current").resolve()
        for path in version.rglob("*"):
            assert path.stat().st_gid == gid or path.name == "columns.parquet", path


# --- what any local account reaches ------------------------------------------------------------

def test_an_account_in_no_onenet_group_reads_nothing_published(host):
    """The 0711 roots let anyone pass; what lies behind them must still need a reader's group.
    (review X1, fixed in warehouse/publish/permissions.py: the community index was 0444, so any local
    account read every community's name and code through the 0711 folders.)"""
    probe = ("import sys\nfor p in sys.argv[1:]:\n    try:\n        open(p, 'rb').read(1)\n        print('READ', p)\n"
             "    except OSError:\n        print('DENIED', p)\n")
    targets = [host["published"] / "community" / "communities.json", host["etc"] / "access.toml", _log(host)]
    done = run_as(host, STRANGER_UID, [STRANGER_UID], sys.executable, "-c", probe, *map(str, targets))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"DENIED {t}" for t in targets], done.stdout
