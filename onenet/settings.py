"""Where things live: one place decides the folders and source addresses, from the environment."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The project's working folder (warehouse, simulated district, exports): $ONENET_HOME or ./var."""
    return Path(os.environ.get("ONENET_HOME", "var")).resolve()


def district_dir() -> Path:
    """The simulated district the simulators serve: $ONENET_DISTRICT or <home>/district."""
    env = os.environ.get("ONENET_DISTRICT")
    return Path(env).resolve() if env else home() / "district"
