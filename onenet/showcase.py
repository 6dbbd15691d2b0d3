"""Show what each simulated silo holds, reading it the way a client would (masked, as a person sees it)."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import requests
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, func, select

from simulators import clock
from simulators.grid_registry import schema
from simulators.grid_registry.database import sqlite_url
from simulators.health_codes import drop, files
from warehouse.masking import mask_id, mask_phone

console = Console()


def _url(root: Path, name: str) -> str:
    return json.loads((root / "run" / f"{name}.json").read_text(encoding="utf-8"))["url"]


def _page_all(url: str, headers: dict, key: str, params: dict) -> list[dict]:
    rows: list[dict] = []
    cursor = None
    while True:
        q = dict(params, **({"cursor": cursor} if cursor else {}))
        body = requests.get(url, headers=headers, params=q, timeout=10).json()
        rows += body[key]
        cursor = body.get("next_cursor") or body.get("cursor")
        if not body.get("has_more"):
            return rows


def _wait_for_files(root: Path, day: int, timeout: float = 20.0) -> None:
    """The uploader delivers files a moment after the clock moves; wait until they are all there."""
    want = {p.name: p.stat().st_size for d in range(day + 1) if drop.outbox_dir(root, d).exists()
            for p in drop.outbox_dir(root, d).iterdir() if not p.name.startswith((".", "_"))}
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        have = {p.name: p.stat().st_size for p in drop.drop_dir(root).iterdir()}
        if all(have.get(n) == s for n, s in want.items()):
            return
        time.sleep(0.2)


def show(root: Path) -> None:
    day = clock.read_day(root)
    console.rule(f"simulated district {root} — day {day} ({clock.start_date(root).isoformat()} + {day})")

    engine = create_engine(sqlite_url(root))
    t = Table(title="grid registry (SQLite, SQLAlchemy)", title_justify="left")
    t.add_column("table")
    t.add_column("rows", justify="right")
    with engine.connect() as conn:
        for name, table in schema.metadata.tables.items():
            t.add_row(name, f"{conn.execute(select(func.count()).select_from(table)).scalar_one():,}")
        res = schema.metadata.tables["residents"]
        sample = conn.execute(select(res.c.name, res.c.id_number, res.c.phone, res.c.residence_type)
                              .order_by(res.c.updated_at.desc()).limit(3)).all()
    engine.dispose()
    console.print(t)
    for who, idn, phone, kind in sample:
        console.print(f"  e.g. {who}  {mask_id(str(idn) if idn else None)}  {mask_phone(str(phone) if phone else None)}  {kind}")

    token = os.environ.get("ONENET_SIM_HOTLINE_TOKEN", "dev-hotline-token")
    hot = _url(root, "hotline")
    tickets = _page_all(hot + "/api/v1/tickets", {"Authorization": f"Bearer {token}"}, "data", {"page_size": 500})
    key = os.environ.get("ONENET_SIM_CITY_API_KEY", "dev-city-key")
    city = _url(root, "city_cases")
    cases = _page_all(city + "/api/cases", {"X-Api-Key": key}, "cases", {"limit": 500})
    t = Table(title="12345 hotline and city management (HTTP)", title_justify="left")
    for col in ("silo", "records", "by status", "notes"):
        t.add_column(col)
    t.add_row("hotline tickets", f"{len(tickets):,}", _counts(tickets, "status"),
              f"{sum(1 for x in tickets if x['caller_id_number']):,} with an ID number (mostly masked)")
    t.add_row("city cases", f"{len(cases):,}", _counts(cases, "status"),
              f"{sum(1 for x in cases if x['source_ticket_id']):,} transferred from a hotline ticket")
    console.print(t)

    _wait_for_files(root, day)
    t = Table(title="health codes (drop folder)", title_justify="left")
    for col in ("file", "bytes", "rows", "code colours"):
        t.add_column(col)
    for path in sorted(drop.drop_dir(root).iterdir()):
        rows = files.read_export(path, skip_bad_lines=True)
        t.add_row(path.name, f"{path.stat().st_size:,}", f"{rows.num_rows:,}",
                  _counts(rows.to_pylist(), "code_color"))
    console.print(t)
    console.print(
        "with the silos up (`onenet simulators up`), try:\n"
        f"      curl -H 'Authorization: Bearer {token}' '{hot}/api/v1/tickets?page_size=2'\n"
        f"      curl -H 'X-Api-Key: {key}' '{city}/api/cases?limit=2'\n"
        f"      sqlite3 {root}/grid_registry/registry.sqlite 'select count(*) from residents'\n"
        f"      libreoffice {drop.drop_dir(root)}/<file>   (GB18030 CSV or XLSX)",
        soft_wrap=True,
    )


def _counts(rows: list[dict], key: str) -> str:
    return ", ".join(f"{k} {v}" for k, v in Counter(r[key] for r in rows).most_common())
