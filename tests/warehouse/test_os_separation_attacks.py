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
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from onenet.settings import environment
from tests.warehouse import test_os_separation as separation
from tests.warehouse.test_os_separation import (
    ANALYST,
    ANALYST_UID,
    KEY,
    OTHER_UID,
    PROBE,
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
        try:
            with open(p, "r+b") as f:  # in place: keep the file, its owner, group and mode
                f.write(data)
                f.truncate()
        except PermissionError:  # an append-only log (chattr +a): nobody could have rewritten it either
            pass


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


# review A1, fixed in 2ecdd94 (the log 0620: readers append, cannot read): the access log was 0660 in the
# readers' group and records a query's SQL verbatim as its target, so a phone or ID number a staff member
# (or an engineer, on the warehouse) typed into a query reached every analyst and the other communities.
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


# review A1, fixed in 2ecdd94: a failed query's DuckDB error is the record's reason, and DuckDB quotes the
# offending value ('Could not convert string ... to INT32'), so an engineer's mistyped warehouse query put
# a resident's full ID number into a log every analyst could read, though nobody typed it.
def test_a_warehouse_value_in_an_engineers_error_does_not_reach_analysts(host):
    from onenet import pipeline
    from warehouse.query import QueryError

    with as_pipeline(host), environment(ONENET_WAREHOUSE=str(host["warehouse"])), \
            pytest.raises(QueryError, match="convert"):
        pipeline.query("select cast(id_number as integer) from core.person", who=_engineer())
    probe = run_as(host, *ANALYST, sys.executable, "-c", FIND_ID, str(_log(host)))
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() != "FOUND", "an analyst reads a resident's full ID number in the access log"


# Fixed (was a strict xfail): review A2: a reader may take the exclusive lock appends serialise on
# (the anchor's, 0660) and keep it: every append then failed after the bounded wait (30 s), the
# pipeline's publish record included. Now the pipeline's account keeps its records in a chain of its
# own (0600 files no reader can open, so none can lock); what is left: a reader holding the shared
# lock still refuses other readers' commands for as long as they hold it (a logging daemon would end that).
def test_a_reader_cannot_hold_the_lock_every_append_waits_on(host, log_kept, monkeypatch):
    from warehouse import audit_log

    # Whichever of the two files append locks: a reader opens both (to append, and to move the anchor).
    hold = ("import fcntl, os, sys\nheld = []\nfor p in sys.argv[1:]:\n"
            "    try:\n        fd = os.open(p, os.O_RDONLY)\n    except PermissionError:\n"
            "        fd = os.open(p, os.O_WRONLY | os.O_APPEND)\n"
            "    fcntl.flock(fd, fcntl.LOCK_EX)\n    held.append(fd)\n"
            "print('HELD', flush=True)\nsys.stdin.read()\n")
    log = _log(host)
    files = [log, log.with_name(log.name + ".head")]
    reader = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--", "setpriv", f"--reuid={ANALYST[0]}",
         f"--regid={ANALYST[1][0]}", f"--groups={','.join(map(str, ANALYST[1]))}", "--inh-caps=-all",
         "--bounding-set=-all", "--", sys.executable, "-c", hold, *map(str, files)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = reader.stdout.readline() if reader.stdout else ""
        if line.strip() != "HELD":
            return  # the reader could not open or lock them: what a safe log gives
        # The pipeline records a publish while the analyst holds them (a bounded wait, where there is
        # one, shortened so the test does not sit through it).
        monkeypatch.setattr(audit_log, "LOCK_WAIT", 1.0, raising=False)
        outcome: dict = {}

        def publish_record() -> None:
            try:
                with as_pipeline(host):
                    audit_log.append("publish", "while-an-analyst-holds-the-lock", principal=None)
                outcome["ok"] = True
            except Exception as exc:  # noqa: BLE001 - reported below
                outcome["error"] = exc

        thread = threading.Thread(target=publish_record, daemon=True)
        thread.start()
        thread.join(60)  # a liveness bound, not a timing: a held lock means it never returns
        assert not thread.is_alive(), "the pipeline's append waits on the analyst's lock without end"
        assert outcome.get("ok"), f"the pipeline's append failed while the analyst held the lock: {outcome}"
        own = audit_log.pipeline_log_path(log)
        assert audit_log.tail(1, own)[-1]["target"] == "while-an-analyst-holds-the-lock"
        assert audit_log.verify(own).ok
        # Nor can the reader open (and so lock) any file of the pipeline's chain.
        probe = run_as(host, *ANALYST, sys.executable, "-c", PROBE, str(own), str(audit_log.anchor_path(own)))
        assert probe.stdout.split() == ["DENIED", str(own), "DENIED", str(audit_log.anchor_path(own))], \
            probe.stdout + probe.stderr
    finally:
        if reader.stdin:
            reader.stdin.close()
        reader.wait(timeout=30)
        if "thread" in locals():
            thread.join(60)  # a record that waited finishes before the next test


REWRITE = """
import json, os, sys
from warehouse import audit_log
log, me = sys.argv[1], sys.argv[2]
try:
    records = [json.loads(line) for line in open(log, encoding='utf-8')]
except PermissionError:  # a log readers cannot read: wipe what can be written, the log and its anchor
    for path in (log, log + '.head'):
        try:
            open(path, 'r+b').truncate()
        except PermissionError:
            pass
    print('WIPED')
    sys.exit(0)
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


# Fixed (was a strict xfail): review A4: since 2ecdd94 readers chain from the anchor, which stays 0660
# for every reader; one write  into it (garbage, or another seq and hash) and every later append
# fails: the pipeline's (it checks  the log's last record against the anchor) and, for garbage, every
# reader's too, until an  administrator repairs it: one analyst refuses every read on the host and
# loses the pipeline's  records, lasting where the lock (A2) lasts as long as it is held; fix: readers
# do not write the  anchor (a helper or daemon appends), or the owner's append treats a bad anchor
# like a damaged last  line (chain from the checked last record, keep the evidence for verify)
def test_a_reader_cannot_stop_every_append_through_the_anchor(host, log_kept):
    from warehouse import audit_log

    anchor_file = log_kept.with_name(log_kept.name + ".head")
    done = run_as(host, *ANALYST, sys.executable, "-c", f"open({str(anchor_file)!r}, 'r+b').write(b'x' * 86)")
    assert done.returncode == 0 or "PermissionError" in done.stderr, done.stderr
    with as_pipeline(host):
        audit_log.append("publish", "after-the-analyst-wrote-the-anchor", principal=None)
    query = onenet_as(host, STAFF_UID, staff_gids(host, 0), "query", "select 1 as one")
    assert query.returncode == 0, query.stderr


# review A3, fixed in 2ecdd94 on a host whose administrator makes the log append-only (chattr +a, as this
# host does): the chain and its anchor are unkeyed, and the log and anchor were 0660 for every reader, so
# an analyst removed their own records, re-chained the rest, rewrote the anchor and verify() passed. Now a
# reader cannot read the log; what they can still do (cut what they can write) must not verify. Without
# chattr +a a reader could still truncate the 0620 log and its anchor, which verifies as an empty log.
def test_a_reader_cannot_erase_their_own_records_unnoticed(host, log_kept):
    from warehouse import audit_log

    denied = onenet_as(host, *ANALYST, "query", "select 1", "--role", "data_engineer")
    assert denied.returncode != 0 and "would widen" in denied.stderr, denied.stdout + denied.stderr
    assert f'"os_user":"{ANALYST_UID}"' in log_kept.read_text(encoding="utf-8")
    done = run_as(host, *ANALYST, sys.executable, "-c", REWRITE, str(log_kept), str(ANALYST_UID))
    assert done.returncode == 0, done.stderr
    if done.stdout.strip() != "WIPED":
        assert int(done.stdout) > 0, done.stdout
        assert f'"os_user":"{ANALYST_UID}"' not in log_kept.read_text(encoding="utf-8")
    result = audit_log.verify(log_kept)
    assert not result.ok, f"an analyst erased their records ({done.stdout.strip()}) and the access log still verifies"


# review A2, fixed in 2ecdd94 (a damaged last line no longer stops the chain): any reader may append to
# the log, and append refused to write after a damaged tail, so one line from an analyst stopped the
# pipeline's own publish record and every other reader's command. Last in this section: on an
# append-only log its garbage line stays.
def test_a_reader_cannot_stop_the_pipelines_publish_through_the_log(host, log_kept):
    from warehouse import audit_log

    done = run_as(host, *ANALYST, sys.executable, "-c", f"open({str(log_kept)!r}, 'ab').write(b'not a record\\n')")
    assert done.returncode == 0, done.stderr
    with as_pipeline(host):
        try:
            audit_log.append("publish", "v-after-the-analyst", principal=None)
        except audit_log.AuditLogError as exc:
            raise AssertionError(f"the pipeline cannot record its publish: {exc}") from exc



PIPELINE_WRITER = """
import sys
from pathlib import Path
from onenet import deployment
from warehouse.audit_log import append
deployment.DEPLOYMENT_FILE = Path(sys.argv[2])  # as deployment_file() does in this process
for i in range(40):
    append("publish", f"{sys.argv[1]} {i}", principal=None)
"""


def test_two_pipeline_processes_appending_at_once_leave_one_intact_chain(host):
    # Two of the pipeline's tasks (a merge's publish and the daily extract, say) record at the same
    # moment: both append to the pipeline's own chain, serialised by its 0600 lock, and the chain
    # holds every record of both, in one unbroken order.
    from warehouse import audit_log

    chain = audit_log.pipeline_log_path(_log(host))
    with as_pipeline(host):
        audit_log.append("publish", "before the two writers", principal=None)
        before = audit_log.verify(chain).records
        writers = [subprocess.Popen([sys.executable, "-c", PIPELINE_WRITER, name, str(host["etc"] / "deployment.toml")],
                                    cwd=Path(__file__).parents[2])
                   for name in ("merge", "extract")]
        assert [w.wait(timeout=300) for w in writers] == [0, 0]
    result = audit_log.verify(chain)
    assert result.ok and result.records == before + 80, result
    written = [r["target"] for r in audit_log.tail(80, chain)]
    assert sorted(written) == sorted(f"{name} {i}" for name in ("merge", "extract") for i in range(40))
    assert {r["os_user"] for r in audit_log.tail(80, chain)} == {"root"}


# --- the exports folders, written by the pipeline: nobody else may plant in them ------------------

PLANT = """
import os, sys
try:
    os.makedirs(os.path.dirname(sys.argv[2]), exist_ok=True)
    os.symlink(sys.argv[1], sys.argv[2])
except PermissionError:
    print('REFUSED')
else:
    print('PLANTED')
"""


# review E1, fixed in 2ecdd94 (the exports folders 2750, the pipeline's alone): the daily extract (the
# pipeline's account) writes each workbook through a fixed temporary name, <name>_<day>.xlsx.part
# (warehouse/excel.py write_workbook; xlsxwriter follows a link there), in what was a folder the
# community's staff could write (2770), so a staff member's link made the pipeline overwrite any file it
# can write (here a root-only file; the warehouse or the access log in production).
def test_a_staff_member_cannot_make_the_pipeline_write_through_a_planted_link(host):
    from onenet import pipeline
    from warehouse.extracts.community import extract_path

    day = dt.date(2026, 11, 28)
    victim = host["base"] / "wh" / "precious.txt"  # in the pipeline's 0700 folder: no reader sees it
    victim.write_text("precious", encoding="utf-8")
    part = extract_path(host["exports"], host["codes"][0], _community_name(host, 0), day).with_suffix(".xlsx.part")
    done = run_as(host, STAFF_UID, staff_gids(host, 0), sys.executable, "-c", PLANT, str(victim), str(part))
    assert done.returncode == 0, done.stderr
    with as_pipeline(host):
        pipeline.extract(day, who=_engineer())  # what onenet_daily_extract runs
    assert victim.read_bytes() == b"precious", f"the pipeline wrote a workbook through the staff member's link ({done.stdout})"


# review E1, fixed in 2ecdd94: the dashboard task's pipeline.dictionary() writes with Path.write_text
# straight at <exports>/analyst/dictionary.md, following whatever link an analyst put there.
def test_an_analyst_cannot_make_the_pipeline_write_the_dictionary_through_a_link(host):
    from onenet import pipeline

    victim = host["base"] / "wh" / "precious-too.txt"
    victim.write_text("precious", encoding="utf-8")
    target = host["exports"] / "analyst" / "dictionary.md"
    target.unlink(missing_ok=True)
    done = run_as(host, *ANALYST, sys.executable, "-c", PLANT, str(victim), str(target))
    assert done.returncode == 0, done.stderr
    try:
        with as_pipeline(host):
            pipeline.dictionary()
        assert victim.read_bytes() == b"precious", "the pipeline wrote the dictionary through the analyst's link"
    finally:
        if target.is_symlink():
            target.unlink()


# review E2, fixed in 2ecdd94: a subfolder of a 2770 exports folder (marts/, reports/, extracts/<day>/)
# was made 2750 by whoever wrote first, locking the audience's other members (and the pipeline's later
# runs, or the reverse) out. Now no reader writes there at all: the property E1-E3 rest on.
def test_no_reader_may_write_in_an_exports_folder_the_pipeline_writes(host):
    from onenet import pipeline

    with as_pipeline(host):
        pipeline.extract(dt.date(2026, 11, 26), who=_engineer())
        pipeline.dictionary()
    probe = ("import os, sys\nfor folder in sys.argv[1:]:\n    for root, dirs, files in os.walk(folder):\n"
             "        try:\n            open(os.path.join(root, '.probe'), 'x').close()\n"
             "            print('WROTE', root)\n        except OSError:\n            pass\n")
    staff_folder = host["exports"] / "community" / host["codes"][0]
    for uid, gids, folder in ((STAFF_UID, staff_gids(host, 0), staff_folder),
                              (ANALYST[0], ANALYST[1], host["exports"] / "analyst")):
        done = run_as(host, uid, gids, sys.executable, "-c", probe, str(folder))
        assert done.returncode == 0, done.stderr
        assert done.stdout == "", done.stdout


# review E3, fixed in 2ecdd94: with 2770 folders and no sticky bit, a staff member who had made extracts/
# swapped the pipeline's day folder, workbook and all, for a forged one their colleagues then opened.
def test_a_staff_member_cannot_replace_the_pipelines_workbook(host):
    from onenet import pipeline

    day = dt.date(2026, 11, 25)
    onenet_as(host, STAFF_UID, staff_gids(host, 0), "extract", "--date", "2026-11-24")  # refused now, or not
    with as_pipeline(host):
        written = pipeline.extract(day, who=_engineer())
    book = next(r.path for r in written if host["codes"][0] in str(r.path))
    forge = (f"import os\nday = os.path.dirname({str(book)!r})\nos.rename(day, day + '.gone')\nos.mkdir(day)\n"
             f"open({str(book)!r}, 'wb').write(b'PK forged')\n")
    done = run_as(host, STAFF_UID, staff_gids(host, 0), sys.executable, "-c", forge)
    assert done.returncode == 0 or "PermissionError" in done.stderr, done.stderr
    assert not book.read_bytes().startswith(b"PK forged"), "a staff member replaced the pipeline's workbook"


# Fixed (was a strict xfail): review E4: a host that ran cf62074's 2770 exports keeps what its readers
# made there: 2ecdd94 narrows  each audience folder to 2750 but leaves a staff-owned extracts/ (or
# marts/, reports/) in it, where  its owner can still plant a link at the fixed <name>_<day>.xlsx.part
# the pipeline writes through (the  E1 attack, after the upgrade); fix: write_workbook, dictionary,
# dashboard and export write through  mkstemp (O_EXCL refuses a planted link) and refuse a folder on
# the way that is not the pipeline's;  permissions.exports_folder names (or moves aside) entries
# another account owns
def test_a_folder_a_reader_made_before_the_upgrade_is_no_way_in(host):
    from onenet import pipeline
    from warehouse.extracts.community import extract_path

    day = dt.date(2026, 11, 23)
    victim = host["base"] / "wh" / "precious-three.txt"
    victim.write_text("precious", encoding="utf-8")
    folder = host["exports"] / "community" / host["codes"][1]
    mode = folder.stat().st_mode
    os.chmod(folder, 0o2770)  # the layout of cf62074: staff wrote their own files here
    try:
        made = run_as(host, OTHER_UID, staff_gids(host, 1), sys.executable, "-c",
                      f"import os\nos.makedirs({str(folder / 'extracts-old')!r})\n")
        assert made.returncode == 0, made.stderr
        extracts = folder / "extracts"
        if extracts.exists():  # an earlier test's pipeline run made it: as if staff had been first
            os.rename(extracts, folder / "extracts-pipeline")
        os.rename(folder / "extracts-old", extracts)
    finally:
        os.chmod(folder, mode)  # what the upgraded pipeline's exports_folder does anyway
    part = extract_path(host["exports"], host["codes"][1], _community_name(host, 1), day).with_suffix(".xlsx.part")
    done = run_as(host, OTHER_UID, staff_gids(host, 1), sys.executable, "-c", PLANT, str(victim), str(part))
    assert done.returncode == 0, done.stderr
    with as_pipeline(host):
        pipeline.extract(day, who=_engineer())
    assert victim.read_bytes() == b"precious", f"the pipeline wrote through a link in a staff-owned folder ({done.stdout})"


# --- what the reader's environment still decides ------------------------------------------------

# Fixed (was a strict xfail): review T1 (low): report templates are code (issue #13 item 5: the
# shipped folder and an  administrator-configured one), yet ONENET_TEMPLATES_DIR comes from the
# reader's own environment and  the deployment file does not fix it: an analyst runs a template they
# wrote (its SQL still meets only  their snapshot); fix: a templates_dir key in the deployment file,
# the variable refused when it differs
def test_a_reader_cannot_bring_their_own_report_template(host):
    from warehouse.reports.templates_engine import TEMPLATES

    folder = host["base"] / f"home-{ANALYST_UID}" / "templates"
    body = (TEMPLATES / "hotline_monthly.toml").read_text(encoding="utf-8").replace(
        'name = "hotline_monthly"', 'name = "my_own"', 1)
    make = run_as(host, *ANALYST, sys.executable, "-c",
                  f"import os\nos.makedirs({str(folder)!r}, exist_ok=True)\n"
                  f"open({str(folder / 'my_own.toml')!r}, 'w', encoding='utf-8').write({body!r})\n")
    assert make.returncode == 0, make.stderr
    done = onenet_as(host, *ANALYST, "report", "--template", "my_own", "--date", "2026-11-29",
                     env={"ONENET_TEMPLATES_DIR": str(folder), "ONENET_EXPORTS": str(folder.parent / "exports")})
    assert done.returncode != 0, "a template from the reader's own folder ran: " + done.stdout


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


def test_no_reader_reaches_the_district_copy_the_serving_database_loads(host):
    """The district copy holds every community's rows of a relation in one file (the serving
    database's input, issue #13): neither an analyst nor a community's staff may open it, or list it."""
    from warehouse.publish import DISTRICT_COPY

    district = host["published"] / DISTRICT_COPY
    data = sorted(p for p in district.glob("current/parquet/*/*.parquet") if p.name != "columns.parquet")
    assert data, "the publish wrote no district copy"
    probe = ("import os, sys\nfor p in sys.argv[1:]:\n    try:\n"
             "        os.listdir(p) if os.path.isdir(p) else open(p, 'rb').read(1)\n        print('READ', p)\n"
             "    except OSError:\n        print('DENIED', p)\n")
    targets = [district, district / "current" / "manifest.json", data[0]]
    for uid, gids in (ANALYST, (STAFF_UID, staff_gids(host, 0)), (STRANGER_UID, [STRANGER_UID])):
        done = run_as(host, uid, gids, sys.executable, "-c", probe, *map(str, targets))
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [f"DENIED {t}" for t in targets], (uid, done.stdout)
