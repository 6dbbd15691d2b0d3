"""warehouse/outputs.py: a file written through `replacing` leaves nothing behind, even when the
process writing it was killed half-way."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from warehouse.outputs import remove_abandoned, replacing


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


def test_a_write_under_way_in_a_running_process_is_left_alone(tmp_path):
    path = tmp_path / "report.csv"
    live = tmp_path / f".{path.name}.{os.getpid()}.abcd1234.part"  # this process is running
    live.write_bytes(b"being written")
    other = tmp_path / ".other.csv.1.abcd1234.part"  # another file's temporary file
    other.write_bytes(b"x")
    assert remove_abandoned(path) == []
    assert live.exists() and other.exists()
