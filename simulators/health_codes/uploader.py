"""The health-code platform's uploader: delivers each day's files into the drop folder as the clock moves."""

from __future__ import annotations

import sys
from pathlib import Path

from simulators import follower
from simulators.health_codes import drop

# How long a slow upload stays half-written: long enough for a poller to see it.
PARTIAL_SECONDS = 2.0


def action(root: Path):
    return lambda day: drop.deliver_until(root, day, partial_seconds=PARTIAL_SECONDS)


if __name__ == "__main__":
    sys.exit(follower.main(sys.argv[1:], "health_codes", action))
