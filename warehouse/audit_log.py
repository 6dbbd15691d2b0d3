"""The access log: append-only JSON lines outside the warehouse, each record chained to the last by SHA-256.

Like X-Road's message log, every record carries the hash of the one before it (`prev_hash`, 64
zeros for the first) and its own (`hash`: SHA-256 hex of the record without `hash` as UTF-8 JSON
with sorted keys, no spaces and non-ASCII unescaped, so an auditor can recompute it with any JSON
tool). Editing, deleting, inserting or reordering a record breaks the chain there; `verify` names it.

What the chain proves: the records up to the last one form one unbroken sequence, unchanged since
they were written. What it does not: a chain alone cannot see its tail cut off, so a small anchor
(`<log>.head`: last seq and hash) is rewritten under the same lock at each append and `verify`
reports a log that ends before it. Whoever can write the log can also write the anchor, so an
attacker who rewrites the whole file and the anchor defeats both; a deployment copies the anchor
elsewhere (the pipeline records `head()` with each run) and passes it to `verify(expect=...)`.
Nor does the chain prove who wrote a line: `os_user` is what `append` found, but anyone who may
append could write a well-chained line by hand. Authorship needs a writer the readers cannot
impersonate (a logging daemon or a setuid helper), which this module is not.

Permissions: the folder is created 2750 (setgid, so files inherit its group), the log 0620 and its
anchor 0660. Readers running as several OS users append through that shared group: they may add
lines but not read them (a staff member's query text, or a value quoted in an error, is not for
analysts), and cannot create, rename or delete files in the folder. That is also why the anchor is
rewritten in place (one fixed-size write) rather than renamed into place. A reader, who cannot read
the log, chains from the anchor; the log's owner chains from the last record, checked against the
anchor. A damaged last line (anyone in the group can write one) does not stop the chain: the next
record chains from the anchor and `verify` names the damaged line. Appends are serialised by a lock
on the anchor, taken with a bounded wait (LOCK_WAIT seconds), so a reader holding it stalls nobody
for long. On a host that separates audiences an administrator also makes the log append-only
(`chattr +a`): then no account, the pipeline's included, can cut or rewrite what was written.

On such a host the pipeline's account (the owner of the log's folder) keeps its own records in a
chain of its own beside the readers' (`<log stem>.pipeline.jsonl` and its anchor, both 0600): no
reader can open, let alone lock, a file of it, so a reader holding the shared lock never costs the
pipeline a record (a publish, a daily extract). Its appends also mend the shared chain's anchor when
a reader damaged it (looked at only when its lock is free: never waited for). `verify_all` and
`tail_all` read both chains. What is left: a reader holding the shared lock still refuses other
readers' commands while they hold it; a logging daemon the readers cannot impersonate would end that.

Appending never opens the DuckDB warehouse: readers record their reads without its lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from onenet import settings
from warehouse.access import Principal
from warehouse.identity import os_user

GENESIS = "0" * 64
MAX_TARGET = 4000
OUTCOMES = ("allowed", "denied")
FIELDS = ("seq", "at", "os_user", "role", "community", "action", "target", "output", "rows",
          "full_values", "outcome", "reason", "prev_hash", "hash")
_HEX64 = re.compile(r"[0-9a-f]{64}")
LOCK_WAIT = 30.0  # seconds an append waits for another's lock before it gives up, naming the log
_ANCHOR_SIZE = 86  # "<seq, 20 digits> <hash, 64 hex>\n": fixed, so a rewrite is one in-place write


class AuditLogError(Exception):
    """The access log cannot take a record (broken tail, anchor mismatch, no permission)."""


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking the chain: `first_broken` is a 1-based line number."""

    ok: bool
    records: int
    first_broken: int | None = None
    reason: str | None = None


def log_path() -> Path:
    """The access log: the deployment file's `access_log`, else $ONENET_ACCESS_LOG or <home>/audit/access-log.jsonl."""
    from onenet import deployment as host

    env = host.setting("access_log", os.environ.get("ONENET_ACCESS_LOG"))
    return Path(env) if env else settings.home() / "audit" / "access-log.jsonl"


def pipeline_log_path(log: Path) -> Path:
    """The pipeline account's own chain beside a shared log, on a host that separates audiences."""
    return log.with_name(f"{log.stem}.pipeline{log.suffix or '.jsonl'}")


def chains(log: Path | None = None) -> list[Path]:
    """The log's chains that exist: the shared one, then the pipeline's own where there is one."""
    log = Path(log) if log else log_path()
    return [log] + [p for p in [pipeline_log_path(log)] if p.exists()]


def _own_chain(log: Path) -> Path | None:
    """The pipeline's own chain, where this process is the pipeline's account (the owner of the
    log's folder) on a host that separates audiences by OS group; else None (one shared chain)."""
    from onenet import deployment

    if deployment.groups() is None:
        return None
    try:
        owner = os.stat(log.parent).st_uid
    except FileNotFoundError:
        return None
    return pipeline_log_path(log) if owner == os.geteuid() else None


def anchor_path(log: Path) -> Path:
    """The anchor beside a log: `<log>.head`."""
    return log.with_name(log.name + ".head")


def record_hash(record: dict) -> str:
    """SHA-256 hex of the canonical JSON of a record without its `hash`."""
    body = {k: v for k, v in record.items() if k != "hash"}
    canon = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def append(action: str, target: str, *, principal: Principal | None, rows: int = 0,
           output: str | os.PathLike | None = None, full_values: bool = False,
           outcome: str = "allowed", reason: str | None = None,
           path: Path | None = None) -> dict:
    """Append one record and return it; safe across concurrent processes.

    `principal` may be None for a denial before anyone was identified (an unmapped OS user).
    Raises AuditLogError when the log's tail or anchor does not check out: a read that cannot be
    recorded should not happen, and appending would paper over the damage. Without `path`, the
    pipeline's account on a host that separates audiences appends to its own chain.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, not {outcome!r}")
    if not action:
        raise ValueError("an access record needs an action")
    own = None if path else _own_chain(log_path())
    if own:  # readers cannot create files in the folder: the shared chain's files are made here
        for shared, mode in ((log_path(), 0o620), (anchor_path(log_path()), 0o660)):
            os.close(_open_shared(shared, os.O_WRONLY | os.O_APPEND, mode))
        if _anchor_damaged(log_path()):  # a reader wrote into it: readers chain from it, so mend it
            append("repair", f"the anchor {anchor_path(log_path())}", principal=None, path=log_path())
    path = own or (Path(path) if path else log_path())
    log_mode, anchor_mode = (0o600, 0o600) if own else (0o620, 0o660)
    _ensure_folder(path.parent)
    fd, readable = _open_log(path, log_mode)
    try:
        afd = _open_shared(anchor_path(path), os.O_RDWR, anchor_mode)
        try:
            _lock(afd, path)
            try:
                anchor, damaged = _read_anchor(afd), False
            except AuditLogError:
                if not readable:  # a reader cannot see the tail to chain from: wait for the owner
                    raise AuditLogError(f"the access log's anchor {anchor_path(path)} is damaged; the "
                                        f"pipeline's next record rewrites it from the log, and "
                                        f"`onenet audit verify` names what is wrong") from None
                anchor, damaged = None, True  # the owner chains from the log's last record instead
                note = "the anchor was found damaged and was rewritten from the log's last record"
                reason = f"{reason}; {note}" if reason else note
            last_seq, last_hash = _chain_point(fd, readable, anchor, path, trust_tail=damaged)
            seq = last_seq + 1
            record: dict = {
                "seq": seq,
                "at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "os_user": os_user(),
                "role": principal.role if principal else None,
                "community": principal.community if principal else None,
                "action": action,
                "target": str(target)[:MAX_TARGET],
                "output": os.fspath(output) if output is not None else None,
                "rows": int(rows),
                "full_values": bool(full_values),
                "outcome": outcome,
                "reason": reason,
                "prev_hash": last_hash,
            }
            digest = record["hash"] = record_hash(record)
            line = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            _write_all(fd, line)
            os.fsync(fd)
            os.pwrite(afd, _anchor_bytes(seq, digest), 0)
            os.fsync(afd)
        finally:
            os.close(afd)  # closing releases the lock
    finally:
        os.close(fd)
    return record


def _open_log(path: Path, mode: int) -> tuple[int, bool]:
    """The log opened for appending, and whether this account may also read it (its owner)."""
    try:
        fd = _open_shared(path, os.O_RDWR | os.O_APPEND, mode)
    except AuditLogError:
        return _open_shared(path, os.O_WRONLY | os.O_APPEND, mode), False
    st = os.fstat(fd)
    if st.st_uid == os.geteuid() and st.st_mode & 0o077 & ~mode:  # e.g. from before readers stopped reading it
        os.fchmod(fd, mode)
    return fd, True


def _lock(fd: int, path: Path) -> None:
    """The appenders' lock, waited for at most LOCK_WAIT seconds."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise AuditLogError(f"another process has held the access log's lock ({anchor_path(path)}) "
                                    f"for {LOCK_WAIT:.0f} s; find it with `fuser {anchor_path(path)}`") from None
            time.sleep(0.05)


def _chain_point(fd: int, readable: bool, anchor: tuple[int, str] | None, path: Path, *,
                 trust_tail: bool = False) -> tuple[int, str]:
    """(seq, hash) the next record chains to (`trust_tail`: the anchor was damaged, the tail decides)."""
    if not readable:  # a reader cannot see the tail: the anchor is the chain's state
        return anchor or (0, GENESIS)
    try:
        last = _last_record(fd, path)
    except AuditLogError:
        if anchor is None:
            raise
        return anchor  # the damaged line stays for `verify` to name; the chain goes on past it
    if not trust_tail:
        _check_anchor(anchor, last, path)
    return (last["seq"], last["hash"]) if last else (0, GENESIS)


def head(path: Path | None = None) -> tuple[int, str] | None:
    """(seq, hash) of the last record per the anchor: what a pipeline run copies elsewhere."""
    path = Path(path) if path else log_path()
    try:
        fd = os.open(anchor_path(path), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return _read_anchor(fd)
    finally:
        os.close(fd)


def verify(path: Path | None = None, *, expect: tuple[int, str] | None = None) -> VerifyResult:
    """Recompute the chain, streaming; report the first broken line and why.

    `expect` is an anchor recorded elsewhere (seq, hash): that record must still be in the log.
    """
    path = Path(path) if path else log_path()
    apath = anchor_path(path)
    try:
        f = open(path, "rb")  # noqa: SIM115 - held across the lock and the streaming below
    except FileNotFoundError:
        if apath.exists():
            return VerifyResult(False, 0, 1, f"the log is missing but its anchor {apath} exists")
        if expect:
            return VerifyResult(False, 0, 1, f"the log is missing; record {expect[0]} was expected")
        return VerifyResult(True, 0)
    with f:
        # A shared lock for a consistent snapshot (anchor + size), then stream without holding it.
        fcntl.flock(f.fileno(), fcntl.LOCK_SH)
        try:
            anchor = head(path)
            size = os.fstat(f.fileno()).st_size
        except AuditLogError as exc:
            return VerifyResult(False, 0, 1, str(exc))
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        checks = ([(*anchor, f"its anchor {apath}")] if anchor else []) + \
                 ([(*expect, "the expected anchor")] if expect else [])
        watch = {seq for seq, _, _ in checks}
        seen: dict[int, str] = {}
        records, prev = 0, GENESIS
        for lineno, raw in _lines(f, size):
            problem = _check_line(raw, lineno, prev)
            if problem:
                return VerifyResult(False, records, lineno, problem)
            records, prev = lineno, json.loads(raw)["hash"]
            if lineno in watch:
                seen[lineno] = prev
    for seq, digest, what in checks:
        if seq > records:
            return VerifyResult(False, records, records + 1,
                                f"the log ends at record {records} but {what} says {seq}: "
                                f"its tail was cut off")
        if seen.get(seq) != digest:
            return VerifyResult(False, records, seq,
                                f"record {seq} does not match {what}: the log was rewritten")
    if anchor is None and records:
        return VerifyResult(False, records, records + 1,
                            f"the anchor {apath} is missing: a cut tail could not be seen")
    # The anchor lags by one record only if a process died between the two writes of an append.
    if anchor and records > anchor[0] + 1:
        return VerifyResult(False, records, anchor[0] + 2,
                            f"records after {anchor[0] + 1} were not written through append "
                            f"(its anchor {apath} says {anchor[0]})")
    return VerifyResult(True, records)


def verify_all(log: Path | None = None) -> list[tuple[Path, VerifyResult]]:
    """`verify` on each of the log's chains (the shared one, and the pipeline's own where it exists)."""
    return [(path, verify(path)) for path in chains(log)]


def tail_all(n: int, log: Path | None = None) -> list[dict]:
    """The last `n` records of all the log's chains together, oldest first (by time)."""
    records = [r for path in chains(log) if path.exists() for r in tail(n, path)]
    return sorted(records, key=lambda r: str(r.get("at")))[-n:] if n > 0 else []


def tail(n: int, path: Path | None = None) -> list[dict]:
    """The last `n` records, oldest first, read from the end of the file."""
    path = Path(path) if path else log_path()
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        buf, pos = b"", end
        while pos > 0 and buf.count(b"\n") <= n:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
    lines = [ln for ln in buf.split(b"\n") if ln]
    return [json.loads(ln) for ln in lines[-n:]] if n > 0 else []


def _check_line(raw: bytes, lineno: int, prev: str) -> str | None:
    """Why a line breaks the chain, or None."""
    if not raw.endswith(b"\n"):
        return "the last line is incomplete (no newline): a write was cut off"
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as exc:
        return f"not a JSON record ({exc.msg})"
    except UnicodeDecodeError:
        return "not UTF-8 text"
    if not isinstance(record, dict) or set(record) != set(FIELDS):
        return "not an access record (fields missing or added)"
    if not isinstance(record["hash"], str) or not _HEX64.fullmatch(record["hash"]):
        return "its hash is not a SHA-256 hex digest"
    if record_hash(record) != record["hash"]:
        return "its content does not match its hash: the record was edited"
    if record["seq"] != lineno:
        return (f"its seq is {record['seq']}, expected {lineno}: "
                f"a record was deleted, inserted or moved")
    if record["prev_hash"] != prev:
        return (f"its prev_hash does not match record {lineno - 1}'s hash: "
                f"a record before it was rewritten, deleted or moved")
    return None


def _lines(f, size: int) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of the first `size` bytes, one line in memory at a time."""
    f.seek(0)
    pos, lineno = 0, 0
    while pos < size:
        raw = f.readline(size - pos)
        if not raw:
            break
        pos += len(raw)
        lineno += 1
        yield lineno, raw


def _last_record(fd: int, path: Path) -> dict | None:
    """The last record, read backwards from the end of the file."""
    end = os.fstat(fd).st_size
    if end == 0:
        return None
    if os.pread(fd, 1, end - 1) != b"\n":
        raise AuditLogError(f"the access log {path} ends in an incomplete line; "
                            f"run `onenet audit verify` and have an administrator repair it")
    buf, pos = b"", end - 1
    while pos > 0 and b"\n" not in buf:
        step = min(4096, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
    line = buf.rsplit(b"\n", 1)[-1] if b"\n" in buf else buf
    try:
        record = json.loads(line)
        if record_hash(record) != record["hash"]:
            raise ValueError("hash mismatch")
        return record
    except (ValueError, KeyError, TypeError, AttributeError):
        raise AuditLogError(f"the last record of the access log {path} is damaged; "
                            f"run `onenet audit verify`") from None


def _check_anchor(anchor: tuple[int, str] | None, last: dict | None, path: Path) -> None:
    """Refuse to append when the log's tail does not match its anchor, keeping the evidence."""
    if last is None and anchor is None:
        return
    if anchor is not None and last is not None:
        if anchor == (last["seq"], last["hash"]):
            return
        if anchor == (last["seq"] - 1, last["prev_hash"]):
            return  # a process died between writing its line and the anchor
    raise AuditLogError(f"the access log {path} does not end where its anchor "
                        f"{anchor_path(path)} says (cut or rewritten); "
                        f"run `onenet audit verify`")


def _anchor_damaged(log: Path) -> bool:
    """Whether a log's anchor is unreadable, looked at only if nobody holds its lock (never waits)."""
    fd = os.open(anchor_path(log), os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # an append is under way (or a reader holds the lock): the next record looks again
        try:
            _read_anchor(fd)
        except AuditLogError:
            return True
        return False
    finally:
        os.close(fd)


def _read_anchor(fd: int) -> tuple[int, str] | None:
    data = os.pread(fd, _ANCHOR_SIZE, 0)
    if not data:
        return None
    parts = data.decode("ascii", "replace").split()
    if len(parts) != 2 or not parts[0].isdigit() or not _HEX64.fullmatch(parts[1]):
        raise AuditLogError("the access log's anchor is damaged; run `onenet audit verify`")
    return int(parts[0]), parts[1]


def _anchor_bytes(seq: int, digest: str) -> bytes:
    return f"{seq:020d} {digest}\n".encode("ascii")


def _write_all(fd: int, data: bytes) -> None:
    # One write on an O_APPEND descriptor; a short write (a signal) is finished under the same lock.
    while data:
        data = data[os.write(fd, data):]


def _ensure_folder(folder: Path) -> None:
    if folder.is_dir():
        return
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):  # made concurrently by another user: theirs stands
        os.chmod(folder, 0o2750)


def _open_shared(path: Path, flags: int, mode: int) -> int:
    """Open a file of the log, creating it with `mode` (whatever the umask) if missing."""
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        pass
    except PermissionError as exc:
        raise AuditLogError(f"cannot create {path}: {exc.strerror}; readers append through the "
                            f"folder's group") from None
    else:
        os.fchmod(fd, mode)
        return fd
    try:
        return os.open(path, flags)
    except PermissionError as exc:
        raise AuditLogError(f"cannot write the access log {path}: {exc.strerror}; an "
                            f"administrator adds this user to the log's group") from None
