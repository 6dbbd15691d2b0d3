"""Settings every test process (and every process a test starts) shares, made before any test runs.

The read side takes identity from the OS user through an administrators' access file, records every
read in an access log outside the warehouse, and publishes snapshots under a folder of its own; a
test session gets its own of each in a private temporary folder, never the repository's var/.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

_SESSION = Path(tempfile.mkdtemp(prefix="onenet-tests-"))
os.chmod(_SESSION, 0o750)


def _access_file() -> str:
    from warehouse.identity import os_user, write_default_access_file

    path = _SESSION / "access.toml"
    if not path.exists():
        write_default_access_file(path, os_user())  # the test user is a data engineer; tests narrow
    return str(path)


os.environ.setdefault("ONENET_ACCESS_FILE", _access_file())
os.environ.setdefault("ONENET_ACCESS_LOG", str(_SESSION / "audit" / "access-log.jsonl"))
os.environ.setdefault("ONENET_PUBLISHED", str(_SESSION / "published"))
# Reader functions called in-process would lower pytest's own priority (onenet.pipeline._as_reader);
# the test of that runs in a subprocess with its own setting.
os.environ.setdefault("ONENET_READER_NICE", "0")
os.environ.setdefault("ONENET_PSEUDONYM_KEY", "test-" + secrets.token_urlsafe(32))
