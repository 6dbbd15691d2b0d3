"""Files people take away: private modes, safe names from silo text, CSV cells that stay text.

Every output (workbook, CSV, Parquet, dashboard, published snapshot) is written 0640 in folders
0750: readable by its owner and the audience's group, never by everyone on the host.
"""

from __future__ import annotations

import glob
import os
import re
import socket
import stat
import tempfile
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

FILE_MODE = 0o640
DIR_MODE = 0o750
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Characters kept in a file or sheet name: letters and digits of any script (Chinese included),
# and - _ ( ) （ ）; everything else (separators, dots, controls, quotes) becomes "_".
_UNSAFE = re.compile(r"[^\w\-()（）]", re.UNICODE)


def safe_name(value: str, *, max_length: int = 80) -> str:
    """A name from a silo made safe as one path component (or sheet name): no separator, no '..',
    no control character, never empty; Chinese kept."""
    value = unicodedata.normalize("NFKC", str(value))
    cleaned = _UNSAFE.sub("_", value).strip("_")[:max_length]
    return cleaned or "_"


def neutralise_cell(value: object) -> object:
    """A CSV cell that opens as text in Excel: a leading = + - @ tab or CR gets a quote prefix."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) with mode 0750 (keeping setgid: an audience's group); return it."""
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE | (path.stat().st_mode & stat.S_ISGID))
    return path


@contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """Write `path` through a new file beside it, renamed over it when the block ends (0640): a
    reader never sees half a file, and the temporary name is random and created exclusively
    (mkstemp), so a link planted at a predictable name is never followed; a link at `path` itself is
    replaced, not followed. What a killed earlier write left beside it is removed first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{_writer()}.", suffix=".part", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def remove_abandoned(path: Path) -> list[Path]:
    """Remove the temporary files that earlier writes of `path` on this host left when their process
    was killed before the rename (`replacing` names them after the host and the process id); return
    them. A file of a process still running (another write of the same file under way), of another
    host or container sharing the folder (its process ids are not ours to test), or of another
    file whose name merely starts like this one's, is left alone."""
    removed = []
    prefix = f".{path.name}."
    mine = re.compile(re.escape(_host()) + r"-(\d+)\.[a-z0-9_]{8}\.part")  # mkstemp's 8 random characters
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*.part"):
        match = mine.fullmatch(tmp.name[len(prefix):])
        if match and not _running(int(match.group(1))):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _host() -> str:
    return safe_name(socket.gethostname(), max_length=40)


def _writer() -> str:
    """What names a temporary file's writer: this host (or container) and this process."""
    return f"{_host()}-{os.getpid()}"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def private_umask() -> Iterator[None]:
    """Files and folders created inside get 0640 / 0750 (the umask of the whole process, briefly)."""
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def make_private(path: Path) -> Path:
    """Set a written file to 0640 (a folder to 0750); return it."""
    os.chmod(path, DIR_MODE if path.is_dir() else FILE_MODE)
    return path
