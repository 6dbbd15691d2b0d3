"""The access log: a hash chain that names the first edited, deleted, moved or cut record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from warehouse import audit_log
from warehouse.access import Principal
from warehouse.audit_log import GENESIS, AuditLogError, append, head, record_hash, verify

ROOT = Path(__file__).resolve().parents[2]
ONENET = Path(sys.executable).parent / "onenet"
STAFF = Principal("wang_li", "community_staff", "幸福社区")


@pytest.fixture
def log(tmp_path):
    """A log of five records."""
    path = tmp_path / "audit" / "access-log.jsonl"
    for i in range(1, 6):
        append("query", f"select {i} from mart.hotline_rates", principal=STAFF, rows=i, path=path)
    return path


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def rewrite(path: Path, new: list[str]) -> None:
    path.write_text("".join(new), encoding="utf-8")


def test_an_intact_log_verifies_and_every_record_chains_to_the_last(log):
    assert verify(log) == audit_log.VerifyResult(True, 5)
    records = [json.loads(line) for line in lines(log)]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev_hash"] == GENESIS
    for before, after in zip(records, records[1:], strict=False):
        assert after["prev_hash"] == before["hash"] == record_hash(before)
    first = records[0]
    assert (first["os_user"], first["role"], first["community"]) == ("root", "community_staff", "幸福社区")
    assert first["outcome"] == "allowed" and first["full_values"] is False and first["rows"] == 1
    assert head(log) == (5, records[-1]["hash"])


def test_a_record_holds_output_denials_and_a_bounded_target(tmp_path):
    path = tmp_path / "log.jsonl"
    r = append("extract", "x" * 5000, principal=STAFF, rows=12, output=tmp_path / "a.xlsx",
               full_values=True, path=path)
    assert len(r["target"]) == 4000 and r["output"] == str(tmp_path / "a.xlsx") and r["full_values"]
    denied = append("query", "select * from core.person", principal=None, outcome="denied",
                    reason="OS user 'x' is not in the access file", path=path)
    assert (denied["role"], denied["outcome"], denied["seq"]) == (None, "denied", 2)
    assert json.loads(lines(path)[1]) == denied
    with pytest.raises(ValueError, match="outcome"):
        append("query", "q", principal=STAFF, outcome="maybe", path=path)
    assert verify(path).records == 2


def test_folder_and_file_let_a_shared_group_append_but_not_replace(tmp_path):
    path = tmp_path / "audit" / "access-log.jsonl"
    append("query", "select 1", principal=STAFF, path=path)
    assert path.parent.stat().st_mode & 0o7777 == 0o2750
    assert path.stat().st_mode & 0o777 == 0o620  # the group appends but cannot read what others did
    assert audit_log.anchor_path(path).stat().st_mode & 0o777 == 0o660


def test_the_default_path_is_under_the_home(tmp_path, monkeypatch):
    monkeypatch.delenv("ONENET_ACCESS_LOG", raising=False)
    monkeypatch.setenv("ONENET_HOME", str(tmp_path))
    assert audit_log.log_path() == tmp_path / "audit" / "access-log.jsonl"
    monkeypatch.setenv("ONENET_ACCESS_LOG", str(tmp_path / "elsewhere.jsonl"))
    append("query", "select 1", principal=STAFF)
    assert verify(tmp_path / "elsewhere.jsonl").records == 1


def test_a_deleted_line_is_named(log):
    rewrite(log, [line for i, line in enumerate(lines(log), 1) if i != 3])
    result = verify(log)
    assert (result.ok, result.first_broken, result.records) == (False, 3, 2)
    assert result.reason.startswith("its seq is 4, expected 3: a record was deleted")


def test_an_edited_field_is_named(log):
    edited = lines(log)
    record = json.loads(edited[1])
    record["rows"] = 0  # hide how many rows left; the stored hash is left as it was
    edited[1] = json.dumps(record, ensure_ascii=False) + "\n"
    rewrite(log, edited)
    result = verify(log)
    assert (result.ok, result.first_broken) == (False, 2)
    assert "edited" in result.reason


def test_an_edited_line_with_its_hash_recomputed_breaks_the_next_record(log):
    edited = lines(log)
    record = json.loads(edited[1])
    record["target"] = "select 1"
    record["hash"] = record_hash(record)
    edited[1] = json.dumps(record, ensure_ascii=False) + "\n"
    rewrite(log, edited)
    result = verify(log)
    assert (result.ok, result.first_broken) == (False, 3)
    assert "prev_hash does not match record 2" in result.reason


def test_a_reordering_is_named(log):
    moved = lines(log)
    moved[1], moved[2] = moved[2], moved[1]
    rewrite(log, moved)
    result = verify(log)
    assert (result.ok, result.first_broken) == (False, 2)
    assert result.reason.startswith("its seq is 3, expected 2") and "moved" in result.reason


def test_a_malformed_line_is_named(log):
    broken = lines(log)
    broken[3] = '{"seq": 4, "at": \n'
    rewrite(log, broken)
    result = verify(log)
    assert (result.ok, result.first_broken) == (False, 4)
    assert "not a JSON record" in result.reason


def test_a_cut_tail_is_seen_by_the_anchor_and_not_papered_over(log):
    rewrite(log, lines(log)[:3])
    result = verify(log)
    assert (result.ok, result.first_broken, result.records) == (False, 4, 3)
    assert "tail was cut off" in result.reason
    # Appending would rewrite the anchor and erase the evidence: it is refused instead.
    with pytest.raises(AuditLogError, match="does not end where its anchor"):
        append("query", "select 6", principal=STAFF, path=log)
    assert len(lines(log)) == 3 and head(log)[0] == 5


def test_a_missing_anchor_is_reported(log):
    audit_log.anchor_path(log).unlink()
    result = verify(log)
    assert (result.ok, result.first_broken) == (False, 6)
    assert "anchor" in result.reason and "missing" in result.reason


def test_a_whole_rewrite_passes_the_local_chain_but_not_an_anchor_kept_elsewhere(log, tmp_path):
    kept = head(log)  # what the pipeline records outside the log
    forged = tmp_path / "forged.jsonl"
    for i in range(1, 6):
        append("query", f"select {i}", principal=None, path=forged)
    log.write_bytes(forged.read_bytes())
    audit_log.anchor_path(log).write_bytes(audit_log.anchor_path(forged).read_bytes())
    assert verify(log).ok  # the limit the module docstring states
    result = verify(log, expect=kept)
    assert (result.ok, result.first_broken) == (False, 5)
    assert "the expected anchor" in result.reason


WRITER = """
import sys
from pathlib import Path
from warehouse.access import Principal
from warehouse.audit_log import append
path, name = Path(sys.argv[1]), sys.argv[2]
for i in range(50):
    append("query", f"{name} {i}", principal=Principal(name, "district_analyst"), rows=i, path=path)
"""


def test_four_processes_appending_at_once_leave_one_intact_chain(tmp_path):
    path = tmp_path / "audit" / "access-log.jsonl"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"w{n}"], cwd=ROOT)
               for n in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]
    assert verify(path) == audit_log.VerifyResult(True, 200)
    targets = sorted(json.loads(line)["target"] for line in lines(path))
    assert targets == sorted(f"w{n} {i}" for n in range(4) for i in range(50))
    assert head(path)[0] == 200


def test_appending_needs_no_warehouse_lock(tmp_path):
    import duckdb

    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    env = {**os.environ, "ONENET_HOME": str(tmp_path), "ONENET_WAREHOUSE": str(warehouse),
           "ONENET_ACCESS_LOG": str(tmp_path / "audit" / "access-log.jsonl")}
    # Another process holds the warehouse's write lock, as a running merge does.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('held', flush=True); time.sleep(60)", str(warehouse)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = subprocess.run(
            [sys.executable, "-c", "from warehouse.access import Principal; "
             "from warehouse.audit_log import append; "
             "append('query', 'select 1', principal=Principal('a', 'district_analyst'))"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        holder.kill()
        holder.wait()
    assert verify(tmp_path / "audit" / "access-log.jsonl").records == 1


def onenet(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(ONENET), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def test_onenet_audit_verify_through_the_cli(log):
    ok = onenet("audit", "verify", "--log", str(log))
    assert (ok.returncode, ok.stdout.strip()) == (0, "access log OK: 5 records, chain intact")
    via_env = onenet("audit", "verify", env={"ONENET_ACCESS_LOG": str(log)})
    assert via_env.returncode == 0 and "5 records" in via_env.stdout
    rewrite(log, [line for i, line in enumerate(lines(log), 1) if i != 2])
    broken = onenet("audit", "verify", "--log", str(log))
    assert broken.returncode == 1
    assert broken.stderr.startswith("error: access log broken at line 2: its seq is 3")
    assert len(broken.stderr.strip().splitlines()) == 1


def test_onenet_audit_show_through_the_cli(log):
    shown = onenet("audit", "show", "--tail", "2", "--log", str(log))
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout.strip().splitlines()
    assert len(out) == 2 and out[0].split()[0] == "4" and out[1].split()[0] == "5"
    assert "root as community_staff of 幸福社区 query 5 rows: select 5" in out[1]
    missing = onenet("audit", "show", "--log", str(log.parent / "none.jsonl"))
    assert missing.returncode == 1 and "no access log at" in missing.stderr


def test_an_anchor_one_record_behind_is_a_crash_not_tampering(log):
    anchor = audit_log.anchor_path(log)
    before = anchor.read_bytes()
    append("query", "select 6", principal=STAFF, path=log)
    anchor.write_bytes(before)  # as if the process died between its line and the anchor
    assert verify(log) == audit_log.VerifyResult(True, 6)
    append("query", "select 7", principal=STAFF, path=log)
    assert verify(log) == audit_log.VerifyResult(True, 7) and head(log)[0] == 7
    anchor.write_bytes(before)  # two behind: lines were added without going through append
    result = verify(log)
    assert (result.ok, result.first_broken) == (False, 7)
    assert "not written through append" in result.reason
