"""Try the newest Great Expectations in a throwaway venv: install it over the lock, run tests/expectations.

    .venv/bin/python bench/ge_upgrade.py [--venv /tmp/onenet-ge-upgrade] [--version X.Y.Z] [--keep]

Builds the venv with uv from requirements.lock (hashes checked), then upgrades great_expectations
alone to the newest release on the index (or --version), checks expectations/ge_private.py's list
against it, and runs `pytest tests/expectations` with the repository on the path. Prints one line
per step and a summary; exits 0 only if everything passed, so an upgrade is this one command
followed by changing the pin in pyproject.toml and `make lock`. The project's .venv is untouched.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).with_name("uv")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    began = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    print(f"  {' '.join(map(str, cmd[:4]))} … exit {out.returncode} in {time.monotonic() - began:.0f} s", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/onenet-ge-upgrade"))
    parser.add_argument("--version", help="a GE version instead of the newest")
    parser.add_argument("--keep", action="store_true", help="keep the venv afterwards")
    args = parser.parse_args()
    python = args.venv / "bin" / "python"
    if not python.exists():
        if run([str(UV), "venv", "--python", sys.executable, str(args.venv)]).returncode:
            return 2
        lock = run([str(UV), "pip", "install", "--python", str(python), "-r", str(REPO / "requirements.lock")])
        if lock.returncode:
            print(lock.stderr[-3000:])
            return 2
    spec = f"great_expectations=={args.version}" if args.version else "great_expectations"
    # Only GE moves (and what its new version requires); the rest stays as locked.
    upgrade = run([str(UV), "pip", "install", "--python", str(python), "--upgrade-package", "great_expectations", spec])
    if upgrade.returncode:
        print(upgrade.stderr[-3000:])
        return 2
    changed = [line.strip() for line in upgrade.stderr.splitlines() if line.strip().startswith(("+", "-"))]
    version = run([str(python), "-c", "import great_expectations as g; print(g.__version__)"]).stdout.strip()
    print(f"great_expectations {version}; packages changed by the upgrade: {', '.join(changed) or 'none'}")
    private = run([str(python), "-c", "from expectations import ge_private; print(len(ge_private.check()))"], cwd=REPO)
    print("private names:", "all present" if private.returncode == 0 else private.stderr.strip().splitlines()[-1])
    tests = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/expectations"], cwd=REPO)
    summary = (re.findall(r"^=* ?(\d+ (?:passed|failed).*?)=*$", tests.stdout, re.M) or [tests.stdout[-300:]])[-1]
    failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", tests.stdout, re.M)))
    print(f"tests/expectations on great_expectations {version}: {summary.strip()}")
    for name in failed:
        print(f"  {name}")
    if not args.keep:
        shutil.rmtree(args.venv, ignore_errors=True)
    return 0 if private.returncode == 0 and tests.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
