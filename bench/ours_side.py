"""Our side of bench/connectors_vs_dlt.py: one initial load with connectors.<source>.sync, printed as JSON."""

# A fresh process per load, like dlt_side.py: no load inherits the memory or caches of another.

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

import pandas  # noqa: F401 - pyarrow imports it once (~1 s); pay that outside the timed part, as dlt_side does

from connectors.common.config import parse_uri
from warehouse import db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", choices=["hotline", "city_cases", "grid_registry", "health_codes"])
    parser.add_argument("uri", help="connection URI, as connectors.common.config.parse_uri reads it")
    parser.add_argument("dest", type=Path, help="new warehouse file")
    a = parser.parse_args()
    a.dest.unlink(missing_ok=True)
    module = importlib.import_module(f"connectors.{a.source}")
    con = db.connect(a.dest)  # migrations run here, outside the timed part
    try:
        t0 = time.perf_counter()
        results = module.sync(con, parse_uri(f"bench_{a.source}", a.uri))
        seconds = time.perf_counter() - t0
    finally:
        con.close()
    print(json.dumps({"rows": sum(r.rows_in for r in results), "seconds": seconds,
                      "landed": sum(r.rows_landed for r in results),
                      "quarantined": sum(r.rows_quarantined for r in results)}))


if __name__ == "__main__":
    main()
