"""warehouse/outputs.py: a file written through `replacing` leaves nothing behind, even when the
process writing it was killed half-way."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from warehouse import outputs
from warehouse.outputs import replacing


def _killed_while_writing(path: Path) -> None:
    """A real process that starts writing `path` through `replacing` and is SIGKILLed inside the block."""
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from warehouse.outputs import replacing
        with replacing(Path({str(path)!r})) as f:
            f.write(b"half a workbook")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == -9


def test_a_write_killed_half_way_is_cleaned_up_by_the_next_write(tmp_path):
    path = tmp_path / "幸福村_20261105.xlsx"
    _killed_while_writing(path)
    left = [p.name for p in tmp_path.iterdir()]
    assert not path.exists() and len(left) == 1 and left[0].endswith(".part"), left
    with replacing(path) as f:
        f.write(b"the whole workbook")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert path.read_bytes() == b"the whole workbook"


def test_only_this_hosts_dead_writers_files_of_this_very_file_are_removed(tmp_path):
    path = tmp_path / "report.csv"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # a process that has ended
    host = outputs._host()
    abandoned = tmp_path / f".report.csv.{host}-{dead}.abcd1234.part"
    kept = [
        tmp_path / f".report.csv.{host}-{os.getpid()}.abcd1234.part",  # a write under way in this process
        tmp_path / f".report.csv.otherhost-{dead}.abcd1234.part",  # a container sharing the folder
        tmp_path / f".report.csv.1.csv.{host}-{dead}.abcd1234.part",  # the file report.csv.1.csv's
        tmp_path / f".other.csv.{host}-{dead}.abcd1234.part",  # another file's
    ]
    for p in [abandoned, *kept]:
        p.write_bytes(b"x")
    assert outputs.remove_abandoned(path) == [abandoned]
    assert not abandoned.exists() and all(p.exists() for p in kept)
