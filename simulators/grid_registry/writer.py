"""The grid registry's writer: applies each day's resident changes to the database as the clock moves."""

from __future__ import annotations

import sys
from pathlib import Path

from simulators import follower
from simulators.grid_registry import registry


def action(root: Path):
    return lambda day: registry.advance(root, day)


if __name__ == "__main__":
    sys.exit(follower.main(sys.argv[1:], "grid_registry", action))
