"""The read side attacked (issue #13): every leak and lock-out the reviewers found, as regressions
through the CLI in real subprocesses, on a merged two-community town published for its audiences.

The town's data is planted with what leaked before: ID numbers, phones (full-width, with +86 and
dashes) and plate numbers in ticket text, and a community named to climb out of the exports folder.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
import unicodedata
from contextlib import ExitStack
from pathlib import Path

import duckdb
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from expectations.identity import check_char
from tests.warehouse.village import copy_warehouse
from warehouse import audit_log, db
from warehouse.identity import os_user, write_default_access_file
from warehouse.publish import PublishError, new_version, publish
from warehouse.publish.snapshot import communities, hold_version, open_snapshot

PLANTED_ID = "420102199001011236"  # a valid check character (checked below)
PLANTED_TEXT = (f"身份证{PLANTED_ID}，电话138-1234-5678，也可打＋８６ １３９ １２３４ ５６７８，"
                "老证420102900101123，车牌鄂A·12345")
CLIMBER = "../../逃逸社区"


def test_the_planted_id_is_valid():
    assert check_char(PLANTED_ID[:17]) == PLANTED_ID[17]


# --- an adversarial town, published ----------------------------------------------------------------

@pytest.fixture(scope="module")
def town(merged_town, tmp_path_factory):
    """(folder, warehouse, published root, env, codes): the merged town with planted values, published."""
    folder = tmp_path_factory.mktemp("read_side")
    warehouse = copy_warehouse(merged_town[1], folder / "warehouse.duckdb")
    root = folder / "published"
    con = db.connect(warehouse)
    try:
        con.execute("update core.ticket set content = content || ? where ticket_id in "
                    "(select ticket_id from core.ticket order by ticket_id limit 5)", [PLANTED_TEXT])
        codes = [r[0] for r in con.execute("select community_code from core.grid where grid_level = 'community' "
                                           "order by 1").fetchall()]
        con.execute("update core.grid set community_name = ? where community_code = ? and grid_level = 'community'",
                    [CLIMBER, codes[1]])
        publish(con, root, new_version("attack"))
    finally:
        con.close()
    env = {**os.environ, "ONENET_WAREHOUSE": str(warehouse), "ONENET_PUBLISHED": str(root),
           "ONENET_EXPORTS": str(folder / "exports"), "ONENET_ACCESS_LOG": str(folder / "audit" / "log.jsonl"),
           "ONENET_HOME": str(folder)}
    return folder, warehouse, root, env, codes


def onenet(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onenet.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def as_staff(town, tmp_path, code: str) -> dict:
    """The town's environment for an OS user whom the administrators mapped to community staff of `code`."""
    access = write_default_access_file(tmp_path / "staff.toml", os_user(), "community_staff", community=code)
    return {**town[3], "ONENET_ACCESS_FILE": str(access)}


def as_analyst(town, tmp_path) -> dict:
    access = write_default_access_file(tmp_path / "analyst.toml", os_user(), "district_analyst")
    return {**town[3], "ONENET_ACCESS_FILE": str(access)}


# --- detectors: what a leaked ID or phone looks like ------------------------------------------------

_DIGITS = re.compile(r"[0-9Xx]")


def personal_numbers(value: str) -> list[str]:
    """ID numbers (18 with a valid check character, or 15 with a valid date) and mobile numbers in a
    value, however written: full-width, with spaces, dashes or +86."""
    text = unicodedata.normalize("NFKC", value)
    found = []
    # Join digit runs broken only by spaces or dashes, so 138-1234-5678 is seen as one number.
    for run in re.findall(r"[0-9][0-9 \-]*[0-9Xx]", text):
        digits = re.sub(r"[ \-]", "", run)
        if digits.startswith("86") and len(digits) == 13:
            digits = digits[2:]
        for i in range(len(digits)):
            window18 = digits[i:i + 18]
            if len(window18) == 18 and window18[:17].isdigit() and check_char(window18[:17]) == window18[17].upper() \
                    and window18[6:8] in ("18", "19", "20"):
                found.append(window18)
        if len(digits) == 11 and re.fullmatch(r"1[3-9][0-9]{9}", digits):
            found.append(digits)
        if len(digits) == 15 and re.fullmatch(r"[1-9][0-9]{5}[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{3}",
                                              digits):
            found.append(digits)
    return found


def test_the_detector_sees_every_way_of_writing_them():
    assert PLANTED_ID in personal_numbers(PLANTED_TEXT)
    assert "13812345678" in personal_numbers(PLANTED_TEXT)
    assert "13912345678" in personal_numbers(PLANTED_TEXT)
    assert "420102900101123" in personal_numbers(PLANTED_TEXT)
    assert personal_numbers("GD2026110100001 42010200100101001 3号楼2单元501") == []


# --- no analyst relation can hold an ID or a phone ---------------------------------------------------

def test_every_published_analyst_value_is_free_of_ids_and_phones(town):
    _, _, root, _, _ = town
    with open_snapshot(root, "analyst") as snap:
        scanned = 0
        for qualified in snap.relations():
            table = pq.read_table(snap.parquet(qualified))
            for name in table.column_names:
                assert not re.search(r"(^|_)(id_number|id_std|id_raw|phone|birth_date|name)$", name) \
                    or name in ("grid_name", "community_name", "street_name", "area_name", "district_name",
                                "status_name", "category_name", "scope_name", "division_name", "case_category_name"), \
                    f"{qualified}.{name}"
                values = {str(v) for v in table.column(name).to_pylist() if v is not None}
                if values and all(re.fullmatch("[0-9a-f]{64}", v) for v in values):
                    continue  # HMAC pseudonyms: hex digests, where a digit run may look like a number by chance
                scanned += len(values)
                leaks = [(v, personal_numbers(v)) for v in values if personal_numbers(v)]
                assert not leaks, f"{qualified}.{name}: {leaks[:3]}"
    assert scanned > 10_000  # the scan saw the data, not an empty snapshot


def test_ticket_text_is_scrubbed_for_analysts_and_ids_masked_for_staff(town):
    _, _, root, _, codes = town
    with open_snapshot(root, "analyst") as snap:
        texts = [r[0] for r in snap.con.execute("select content from mart.ticket where content like '%已隐去%'").fetchall()]
    assert len(texts) == 5 and all("鄂A" not in t and "1234" not in t for t in texts)
    staff_texts = []
    for code in codes:
        with open_snapshot(root, "community", code) as snap:
            staff_texts += [r[0] for r in snap.con.execute(
                "select content from community.ticket where content like '%电话%'").fetchall()]
    assert len(staff_texts) == 5
    for text in staff_texts:  # staff call back: phones stay; IDs are masked as in the ID column
        assert "138-1234-5678" in text and PLANTED_ID not in text and "420102********1236" in text
        assert "420102900101123" not in text


@pytest.mark.parametrize("sql", [
    "select id_number as x, phone as y from mart.special_group_roster",
    "select upper(id_number) from mart.special_group_roster",
    'select "id_number"::varchar from mart.special_group_roster',
    "select left(id_number, 6) || strftime(birth_date, '%Y%m%d') || right(id_number, 4) from mart.special_group_roster",
    "select * from core.person",
    "select * from meta.quarantine",
    "select * from raw.grid_registry_residents",
    "select * from read_text('/etc/passwd')",
    "select * from read_csv('/etc/passwd')",
    "attach '{warehouse}' as w",
    "copy mart.ticket to '/tmp/onenet-leak.csv'",
    "select * from pragma_storage_info('core.person')",
])
def test_analyst_sql_cannot_reach_what_analysts_may_not_see(town, tmp_path, sql):
    env = as_analyst(town, tmp_path)
    done = onenet(env, "query", sql.format(warehouse=town[1]))
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("error:") and "Traceback" not in done.stderr
    assert not personal_numbers(done.stdout + done.stderr)


def test_analysts_read_the_marts_and_ref_with_any_sql(town, tmp_path):
    env = as_analyst(town, tmp_path)
    done = onenet(env, "query", "select count(*) as n from ref.division_codes", "--out", str(tmp_path / "ref.csv"))
    assert done.returncode == 0, done.stderr
    assert int(pacsv.read_csv(tmp_path / "ref.csv").column("n")[0].as_py()) > 3000
    done = onenet(env, "query", "select table_schema, table_name from information_schema.tables order by all",
                  "--limit", "100")
    schemas = set(re.findall(r"│ (\w+)\s+│", done.stdout))
    assert done.returncode == 0 and schemas <= {"mart", "ref"}, done.stdout


def test_pseudonyms_are_an_hmac_that_does_not_reverse(town):
    _, warehouse, root, _, _ = town
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        person_id, key = con.execute("select person_id, person_key from core.person where is_special_group "
                                     "order by person_id limit 1").fetchone()
    finally:
        con.close()
    secret = os.environ["ONENET_PSEUDONYM_KEY"].encode()
    assert key == hmac.new(secret, person_id.encode(), hashlib.sha256).hexdigest()
    assert key != hashlib.sha256(f"onenet-dev-pseudonym-key:{person_id}".encode()).hexdigest()
    with open_snapshot(root, "analyst") as snap:
        assert snap.con.execute("select count(*) from mart.special_group_roster where person_key = ?",
                                [key]).fetchone() == (1,)


# --- identity: from the deployment, never widened by a flag ------------------------------------------

def test_a_flag_cannot_widen_the_deployments_role_and_refusals_are_logged(town, tmp_path):
    codes = town[4]
    env = as_staff(town, tmp_path, codes[0])
    for args in (["--role", "data_engineer"], ["--role", "district_analyst"], ["--community", codes[1]]):
        done = onenet(env, "query", "select 1", *args)
        assert done.returncode == 1 and "error:" in done.stderr, (args, done.stdout)
    assert onenet(env, "query", "select 1", "--user", "someone_else").returncode == 2  # no such option
    denied = [r for r in audit_log.tail(20, Path(env["ONENET_ACCESS_LOG"])) if r["outcome"] == "denied"]
    assert len(denied) >= 3 and {r["os_user"] for r in denied} == {os_user()}
    assert audit_log.verify(Path(env["ONENET_ACCESS_LOG"])).ok


def test_community_staff_see_only_their_community(town, tmp_path):
    folder, _, _, _, codes = town
    mine, theirs = codes
    env = as_staff(town, tmp_path, mine)
    done = onenet(env, "query", "select distinct community_code from community.ticket "
                               "union select distinct community_code from community.special_group_roster")
    assert done.returncode == 0 and mine in done.stdout and theirs not in done.stdout, done.stdout
    done = onenet(env, "export")
    assert done.returncode == 0, done.stderr
    exported = folder / "exports" / "community" / mine / "marts"
    files = sorted(exported.glob("*.parquet"))
    assert files and not (folder / "exports" / "community" / theirs).exists()
    for f in files:
        table = pq.read_table(f)
        if "community_code" in table.column_names:
            assert set(table.column("community_code").to_pylist()) <= {mine}, f.name
        if "id_number" in table.column_names:
            assert all(v is None or "*" in v for v in table.column("id_number").to_pylist()), f.name
        assert "birth_date" not in table.column_names
    # An engineer's later export goes to the analysts' folder, never into a community's.
    assert onenet(town[3], "export").returncode == 0
    assert sorted(exported.glob("*.parquet")) == files and (folder / "exports" / "analyst" / "marts").is_dir()


def test_analysts_get_no_extract_and_staff_no_district_dashboard(town, tmp_path):
    done = onenet(as_analyst(town, tmp_path), "extract", "--date", "2026-11-29")
    assert done.returncode == 1 and "community staff" in done.stderr
    done = onenet(as_staff(town, tmp_path, town[4][0]), "dashboard")
    assert done.returncode == 1 and "analysts" in done.stderr


# --- templates are code, outputs are hygienic -------------------------------------------------------

TEMPLATE = """[report]
name = "{name}"
title = "攻击"
department = "x"
unit = "street"
period = "day"
source = "{source}"
date_column = "{date_column}"

[[columns]]
header = "x"
sql = "{sql}"
"""


@pytest.mark.parametrize("source, date_column, sql", [
    ("core.person", "first_seen_at", "count(*)"),
    ("meta.quarantine", "quarantined_at", "count(*)"),
    ("raw.hotline_tickets", "_extracted_at", "count(*)"),
    ("mart.ticket", "received_on", "(select string_agg(content, '') from read_text('/etc/passwd'))"),
    ("mart.ticket", "received_on", "(select max(id_number) from core.person)"),
])
def test_template_sql_cannot_read_restricted_data(town, tmp_path, source, date_column, sql):
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "attack.toml").write_text(TEMPLATE.format(name="attack", source=source, date_column=date_column,
                                                        sql=sql), encoding="utf-8")
    env = {**as_analyst(town, tmp_path), "ONENET_TEMPLATES_DIR": str(folder)}
    done = onenet(env, "report", "--template", "attack", "--date", "2026-11-29")
    assert done.returncode == 1 and done.stderr.startswith("error:"), done.stdout + done.stderr
    assert "root:" not in done.stdout + done.stderr and not personal_numbers(done.stdout + done.stderr)


def test_a_template_file_outside_the_allowed_folders_is_refused(town, tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(TEMPLATE.format(name="mine", source="mart.ticket", date_column="received_on", sql="count(*)"),
                    encoding="utf-8")
    done = onenet(as_analyst(town, tmp_path), "report", "--template", str(path), "--date", "2026-11-29")
    assert done.returncode == 1 and "templates load only from" in done.stderr


def test_csv_cells_stay_text_and_outputs_are_private(town, tmp_path):
    out = tmp_path / "out" / "x.csv"
    done = onenet(as_analyst(town, tmp_path), "query",
                  "select '=1+1' as a, '@SUM(A1)' as b, '+86 1' as c, '-2' as d, chr(9) || 'x' as e, 'ok' as f",
                  "--out", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8-sig").splitlines()[1]
    assert text.startswith('"\'=1+1","\'@SUM(A1)","\'+86 1","\'-2","\'\tx","ok"'), text
    assert out.stat().st_mode & 0o777 == 0o640


def test_a_community_name_cannot_climb_out_of_the_exports_folder(town):
    folder, _, root, env, codes = town
    assert communities(root)[codes[1]]["name"] == CLIMBER
    done = onenet(env, "extract", "--date", "2026-11-29")
    assert done.returncode == 0, done.stderr
    exports = (folder / "exports").resolve()
    workbooks = list(exports.rglob("*.xlsx"))
    assert len(workbooks) == 2 and all(w.resolve().is_relative_to(exports / "community") for w in workbooks)
    assert not any(p.name.startswith("..") or "/" in p.name for p in workbooks)
    assert not list(folder.parent.rglob("*逃逸*.xlsx")) or all(p.resolve().is_relative_to(exports)
                                                             for p in folder.parent.rglob("*逃逸*.xlsx"))


def test_nothing_published_or_exported_is_world_readable(town):
    folder, _, root, env, _ = town
    assert onenet(env, "dashboard").returncode == 0
    assert onenet(env, "report", "--template", "hotline_monthly", "--date", "2026-11-29").returncode == 0
    paths = [p for base in (root, folder / "exports") for p in base.rglob("*") if not p.is_symlink()]
    assert len(paths) > 50
    loose = [f"{p} {oct(p.stat().st_mode & 0o777)}" for p in paths if p.stat().st_mode & 0o007]
    assert not loose, loose[:5]


# --- nobody is locked out ---------------------------------------------------------------------------

HOLD_WAREHOUSE = """
import sys, time
from warehouse import db
con = db.connect(sys.argv[1])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def hold(warehouse: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_WAREHOUSE, str(warehouse), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout and proc.stdout.readline().strip() == "held"
    return proc


def test_parallel_analyst_queries_run_while_the_pipeline_holds_the_warehouse(town, tmp_path):
    env = as_analyst(town, tmp_path)
    holder = hold(town[1], 60)
    try:
        queries = [subprocess.Popen([sys.executable, "-m", "onenet.cli", "query",
                                     "select street, sum(orders) from mart.hotline_rates group by all"],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for _ in range(4)]
        results = [(q.wait(timeout=120), q.stderr.read() if q.stderr else "") for q in queries]
    finally:
        holder.kill()
        holder.wait()
    assert all(code == 0 for code, _ in results), results
    log = [r for r in audit_log.tail(50, Path(env["ONENET_ACCESS_LOG"])) if r["action"] == "query"]
    assert len(log) >= 4 and audit_log.verify(Path(env["ONENET_ACCESS_LOG"])).ok


READER = """
import sys
from pathlib import Path
from warehouse.publish.snapshot import open_snapshot
with open_snapshot(Path(sys.argv[1]), "analyst") as snap:
    print(snap.version, flush=True)
    sys.stdin.readline()  # holds its version until the test says go on (however long a publish takes)
    print(snap.con.execute("select count(*) from mart.ticket").fetchone()[0], flush=True)
"""


def test_a_reader_holding_a_snapshot_does_not_stop_a_merge_and_keeps_its_version(town, tmp_path):
    warehouse = copy_warehouse(town[1], tmp_path / "w.duckdb")
    root = tmp_path / "published"
    con = db.connect(warehouse)
    try:
        publish(con, root, new_version("first"))
        reader = subprocess.Popen([sys.executable, "-c", READER, str(root)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert reader.stdout and reader.stdin
        held = reader.stdout.readline().strip()
        con.execute("delete from core.ticket where ticket_id = (select min(ticket_id) from core.ticket)")
        publish(con, root, new_version("second"))  # does not wait for the reader
        assert (root / "analyst" / "current").resolve().name != held
        assert (root / "analyst" / "versions" / held).exists()  # still held: kept
        reader.stdin.write("go on\n")
        reader.stdin.flush()
        tickets_seen = int(reader.stdout.readline())
        assert reader.wait(timeout=60) == 0
        expected = con.execute("select count(*) + 1 from core.ticket").fetchone()[0]
        assert tickets_seen == expected  # the reader saw its whole version, not the new one
        con.execute("delete from core.ticket where ticket_id = (select min(ticket_id) from core.ticket)")
        publish(con, root, new_version("third"))
        assert not (root / "analyst" / "versions" / held).exists()  # released: removed
    finally:
        con.close()


WAIT = """
import sys
from onenet import pipeline
con = pipeline._open_warehouse("test step")
print("opened", flush=True)
con.close()
"""


def test_a_writer_waits_visibly_for_the_warehouse_then_gives_up_with_one_line(town, tmp_path):
    warehouse = copy_warehouse(town[1], tmp_path / "w.duckdb")
    env = {**town[3], "ONENET_WAREHOUSE": str(warehouse), "ONENET_LOCK_TIMEOUT": "60"}
    holder = hold(warehouse, 3)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", WAIT], env=env, capture_output=True, text=True, timeout=120)
    holder.wait()
    assert done.returncode == 0 and "opened" in done.stdout, done.stderr
    assert "waiting for the warehouse" in done.stderr and time.monotonic() - started >= 2
    holder = hold(warehouse, 30)
    try:
        done = subprocess.run([sys.executable, "-c", WAIT], env={**env, "ONENET_LOCK_TIMEOUT": "2"},
                              capture_output=True, text=True, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1 and "still held by another onenet step after" in done.stderr


def test_the_manifest_says_what_each_version_holds(town):
    root = town[2]
    manifest = json.loads((root / "analyst" / "current" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["audience"] == "analyst" and "mart.ticket" in manifest["relations"]
    assert manifest["relations"]["mart.ticket"]["rows"] > 0


def test_a_publish_killed_half_way_leaves_nothing_a_reader_sees_and_the_next_one_cleans_up(town, tmp_path):
    warehouse = copy_warehouse(town[1], tmp_path / "w.duckdb")
    root = tmp_path / "published"
    code = town[4][0]
    script = f"""
import os, signal
from pathlib import Path
import warehouse.publish as p
from warehouse import db
def killed(*args):
    os.kill(os.getpid(), signal.SIGKILL)  # after the analyst snapshot, inside the first community
p._fill_community = killed
con = db.connect({str(warehouse)!r})
p.publish(con, Path({str(root)!r}), p.new_version("killed"))
"""
    con = db.connect(warehouse)
    try:
        publish(con, root, new_version("before"))
        con.execute("delete from core.ticket where ticket_id = (select min(ticket_id) from core.ticket "
                    "where community_code = ?)", [code])
    finally:
        con.close()
    with open_snapshot(root, "community", code) as snap:
        before = snap.version
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr
    with open_snapshot(root, "community", code) as snap:  # still the complete earlier version
        assert snap.version == before and snap.con.execute("select count(*) from community.ticket").fetchone()[0]
    assert list(root.glob("community/*/versions/*killed*")) or list(root.glob("community/.staging-*"))
    con = db.connect(warehouse)
    try:
        publish(con, root, new_version("after"))
    finally:
        con.close()
    # The analysts' snapshot was complete before the kill and stays current (nothing changed since);
    # the community's half-made version and the staging folder are gone.
    assert not list(root.glob("community/**/*killed*")) and not list(root.glob("community/.staging-*"))
    assert not list(root.glob("**/.*.tmp"))
    with open_snapshot(root, "community", code) as snap:
        assert snap.version.endswith("after")


# --- only what changed is published; what is linked was checked ------------------------------------

def _files(root: Path, audience: str, version: str, qualified: str) -> dict[str, Path]:
    base = root / audience if audience == "analyst" else root / "community" / audience
    folder = base / "versions" / version / "parquet" / f"{qualified}.parquet"
    return {p.name: p for p in folder.glob("*.parquet") if p.name != "columns.parquet"}


def test_unchanged_parts_are_linked_and_a_changed_one_is_scanned_again(town, tmp_path):
    warehouse = copy_warehouse(town[1], tmp_path / "w.duckdb")
    root = tmp_path / "published"
    mine, theirs = town[4]
    con = db.connect(warehouse)
    try:
        first = new_version("first")
        publish(con, root, first)
        con.execute("update core.ticket set category = category || '（改）' where ticket_id = (select min(ticket_id) "
                    "from core.ticket where community_code = ?)", [mine])
        second = new_version("second")
        with ExitStack() as held:  # readers keep the first versions, so both can be compared
            for audience, code in (("analyst", None), ("community", mine), ("community", theirs)):
                held.enter_context(hold_version(root, audience, code))
            result = publish(con, root, second)

            def same(audience: str, qualified: str) -> bool:
                before, after = _files(root, audience, first, qualified), _files(root, audience, second, qualified)
                assert sorted(before) == sorted(after) and after, (audience, qualified)
                return all(os.path.samefile(before[n], after[n]) for n in after)

            assert not same("analyst", "mart.ticket") and same("analyst", "ref.division_codes")
            assert not same(mine, "community.ticket") and same(mine, "mart.grid")
            # the other community's rows did not change: it keeps its version, nothing written for it
            assert (root / "community" / theirs / "current").resolve().name == first
        assert result.parts_linked > result.parts_written > 0 and result.communities_unchanged == 1
        # The summary names where the time went: every relation built is timed, the slowest three shown.
        assert set(result.relation_seconds) >= {"analyst mart.ticket", "community community.ticket"}
        assert re.search(r"\(slowest: (analyst|community) \S+ [0-9.]+ s, .+, .+\)", result.summary()), result.summary()
        with open_snapshot(root, "community", mine) as snap:  # the reader sees the change
            assert snap.con.execute("select count(*) from community.ticket where category like '%（改）'").fetchone() == (1,)
        # A phone planted in a relation: its changed part is checked when it is written, and the publish fails.
        con.execute("update mart.grid_daily set grid_name = '联系13812345678' where day_on = "
                    "(select min(day_on) from mart.grid_daily)")
        with pytest.raises(PublishError, match=r"mart.grid_daily.*grid_name"):
            publish(con, root, new_version("third"))
        assert (root / "analyst" / "current").resolve().name == second  # readers keep the checked version
    finally:
        con.close()


def test_a_changed_week_is_written_and_the_other_weeks_are_linked(town, tmp_path, monkeypatch):
    """policy.toml [partitions] with weeks: mart.ticket (and community.ticket, per community) cut by
    the week of received_on. A ticket changed in its first week rewrites that week's file only; the
    reader still sees every row, the changed one included."""
    import warehouse.publish as publishing

    declared = publishing.policy()
    weekly = {"column": "received_on", "every": "week"}
    monkeypatch.setattr(publishing, "policy", lambda: {**declared, "partitions": {
        "mart.ticket": weekly, "community.ticket": weekly}})
    warehouse = copy_warehouse(town[1], tmp_path / "w.duckdb")
    root = tmp_path / "published"
    mine = town[4][0]
    con = db.connect(warehouse)
    try:
        weeks = con.execute("select count(distinct date_trunc('week', received_on)) from core.ticket").fetchone()[0]
        assert weeks >= 2  # else this test shows nothing
        first = new_version("first")
        publish(con, root, first)
        ticket, week = con.execute(
            "select ticket_id, date_trunc('week', received_on) from core.ticket where community_code = ? "
            "order by received_on, ticket_id limit 1", [mine]).fetchone()
        con.execute("update core.ticket set category = category || '（改）' where ticket_id = ?", [ticket])
        second = new_version("second")
        with ExitStack() as held:
            for audience, code in (("analyst", None), ("community", mine)):
                held.enter_context(hold_version(root, audience, code))
            publish(con, root, second)
            for audience, qualified in (("analyst", "mart.ticket"), (mine, "community.ticket")):
                before, after = _files(root, audience, first, qualified), _files(root, audience, second, qualified)
                assert sorted(before) == sorted(after) and len(after) == weeks, (audience, sorted(after))
                rewritten = [n for n in after if not os.path.samefile(before[n], after[n])]
                assert rewritten == [n for n in after if n.startswith(week.strftime("%Y-%m-%d"))], rewritten
                assert len(rewritten) == 1
        with open_snapshot(root, "analyst") as snap:
            assert snap.con.execute("select count(*), count(*) filter (where category like '%（改）') "
                                    "from mart.ticket").fetchone() == (
                con.execute("select count(*) from core.ticket").fetchone()[0], 1)
        # A week of a time with a zone would move with the session's zone: refused, naming the entry.
        monkeypatch.setattr(publishing, "policy", lambda: {**declared, "partitions": {
            "mart.ticket": {"column": "received_at", "every": "week"}}})
        with pytest.raises(PublishError, match=r"mart.ticket: policy.toml \[partitions\] cuts 'received_at' by week"):
            publish(con, root, new_version("third"))
        assert (root / "analyst" / "current").resolve().name == second
    finally:
        con.close()


def test_a_partition_entry_must_name_a_column_and_a_known_period():
    from warehouse.publish import Partition

    assert Partition.of("day_on", "mart.x") == Partition("day_on")
    assert "date_trunc('week', \"day_on\")" in Partition.of({"column": "day_on", "every": "week"}, "mart.x").key_sql()
    for bad in ({"column": "day_on", "every": "fortnight"}, {"every": "week"}, {"column": "d", "by": "week"}):
        with pytest.raises(ValueError, match=r"\[partitions\] mart.x"):
            Partition.of(bad, "mart.x")
    # The serving database cannot delete a week by column = value: such parts carry no where, so it
    # loads the relation by changed rows or whole (serving.py), and each week keeps its own part id.
    from warehouse.publish.serving import parts_of

    entry = {"partition": "received_on", "every": "week", "parts": {
        week: {"hash": week, "rows": 1, "files": [f"{week}-0.parquet"]} for week in ("2026-11-02", "2026-11-09")}}
    parts = parts_of(entry, Path("/v"), "community.ticket", "C1")
    assert len(parts) == 2 and all(part.where == () for part in parts.values())
    day = parts_of({**entry, "every": None}, Path("/v"), "community.ticket", "C1")
    assert sorted(part.where for part in day.values()) == [
        (("community_code", "C1"), ("received_on", w)) for w in ("2026-11-02", "2026-11-09")]


def test_the_resolution_summary_counts_each_silos_persons_as_the_links_do(town):
    """mart.resolution_summary takes persons per silo from core.person.sources (issue #13: a tenth of
    a distinct count over every link at district scale): it must give the figures the links give."""
    _, warehouse, root, _, _ = town
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        links = con.execute("select source, count(*), count(distinct person_id) from core.person_source "
                            "group by grouping sets ((source), ())").fetchall()
    finally:
        con.close()
    with open_snapshot(root, "analyst") as snap:
        published = snap.con.execute("select source, records, persons from mart.resolution_summary").fetchall()
    assert sorted(published, key=str) == sorted(links, key=str)
    assert len(links) > 3 and all(persons > 0 for _, _, persons in links)


def test_part_names_that_collide_are_drawn_again_under_another_seed(town, tmp_path, monkeypatch):
    """A part's name is a 64-bit hash of its owner and key: should two parts' names collide, the
    names are drawn again under the next seed, and every file lands under its own part. Here the
    first seed names every part 0; a name that always collides stops the publish, naming the relation."""
    import warehouse.publish as publishing

    monkeypatch.setattr(publishing, "PART_NAME",
                        "case when {seed} = 0 then 0::ubigint else hash({owner}, {key}, {seed}) end")
    warehouse = copy_warehouse(town[1], tmp_path / "w.duckdb")
    root = tmp_path / "published"
    con = db.connect(warehouse)
    try:
        publish(con, root, new_version("first"))
        with open_snapshot(root, "analyst") as snap:  # weeks of grid_daily: several parts, one relation
            for published, source in (("mart.ticket", "core.ticket"), ("mart.grid_daily", "mart.grid_daily")):
                assert snap.con.execute(f"select count(*) from {published}").fetchone() == \
                    con.execute(f"select count(*) from {source}").fetchone()
        mine = town[4][0]
        with open_snapshot(root, "community", mine) as snap:
            assert snap.con.execute("select count(*), count(distinct community_code) from community.ticket").fetchone() == (
                con.execute("select count(*) from core.ticket where community_code = ?", [mine]).fetchone()[0], 1)
        monkeypatch.setattr(publishing, "PART_NAME", "0::ubigint")
        with pytest.raises(PublishError, match=r"analyst mart.grid_daily: part names collide under three seeds"):
            publish(con, root, new_version("second"))
    finally:
        con.close()
