"""Small peers for bench/connectors_vs_dlt.py, one fresh process per run, printed as JSON like the other sides.

    python bench/peer_side.py read_csv FILE.csv DEST.duckdb
    python bench/peer_side.py http_floor SOURCE URL SECRET

read_csv: DuckDB's own CSV reader landing the file as text into a new database file, as our landing
does. http_floor: a bare requests loop over the same pages (500 each), what the simulator and HTTP
cost alone. "seconds" excludes imports, as in ours_side.py and dlt_side.py.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import duckdb
import requests


def read_csv(path: str, dest: str) -> dict:
    Path(dest).unlink(missing_ok=True)
    con = duckdb.connect(dest)
    try:
        t0 = time.perf_counter()
        con.execute("create table exports as select * from read_csv(?, all_varchar = true)", [path])
        seconds = time.perf_counter() - t0
        rows = con.execute("select count(*) from exports").fetchall()[0][0]
    finally:
        con.close()
    return {"rows": rows, "seconds": seconds}


def http_floor(source: str, url: str, secret: str) -> dict:
    path, rows_key, next_key, size = {"hotline": ("/api/v1/tickets", "data", "next_cursor", "page_size"),
                                      "city_cases": ("/api/cases", "cases", "cursor", "limit")}[source]
    auth = {"Authorization": f"Bearer {secret}"} if source == "hotline" else {"X-Api-Key": secret}
    rows, params = 0, {size: 500}
    t0 = time.perf_counter()
    with requests.Session() as session:
        while True:
            page = session.get(url + path, params=params, headers=auth, timeout=30).json()
            rows += len(page[rows_key])
            if not page["has_more"]:
                break
            params = {size: 500, "cursor": page[next_key]}
    return {"rows": rows, "seconds": time.perf_counter() - t0}


if __name__ == "__main__":
    kind, *rest = sys.argv[1:]
    print(json.dumps(read_csv(*rest) if kind == "read_csv" else http_floor(*rest)))
