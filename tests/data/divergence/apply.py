"""Apply the divergence corpus (cases.toml) to a generated village's silos, phase by phase.

    python tests/data/divergence/apply.py --root DIR --warehouse FILE --phase 1|2|3

prints {case: [source.entity, key, ...]} as JSON. The phases follow a day of the pipeline:
1 before an earlier reconciliation (sets up earlier versions), 2 after the next day's sync (the
drift a cursor cannot see), 3 after the scheduled sync, right before the reconciliation under test.
Edits go where each silo keeps its data: the registry's SQLite file, the hotline's and city
feed's parquet files (their servers reload a changed file on the next request). The state each
phase needs later (a row to restore from a "backup") is kept in DIR/divergence.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CASES = tomllib.loads((Path(__file__).with_name("cases.toml")).read_text(encoding="utf-8"))
SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"
TICKET_EVENTS = ("received_at", "dispatched_at", "first_response_at", "resolved_at", "closed_at", "rated_at")
CASE_EVENTS = ("reported_at", "registered_at", "dispatched_at", "disposed_at", "verified_at", "closed_at")

Found = dict[str, list[str]]  # case -> [source.entity, key, key, ...]


def _memo(root: Path) -> dict[str, Any]:
    path = root / "divergence.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _save_memo(root: Path, memo: dict[str, Any]) -> None:
    (root / "divergence.json").write_text(json.dumps(memo, ensure_ascii=False, default=str), encoding="utf-8")


def _state(warehouse: Path, source: str, entity: str) -> dict[str, Any]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute("select state from meta.source_state where source = ? and entity = ?",
                          [source, entity]).fetchone()
    return json.loads(row[0]) if row else {}


def _now(root: Path) -> datetime:
    from simulators import clock

    return clock.now_utc(root)


# --- the HTTP silos' parquet files -------------------------------------------------------------

def _read(path: Path) -> pa.Table:
    with pq.ParquetFile(path) as f:
        return f.read()


def _write(path: Path, table: pa.Table) -> None:
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)  # the server sees a new file signature and reloads


def _finished_before(table: pa.Table, events: tuple[str, ...], until: datetime) -> list[int]:
    """Rows whose every event happened before `until` (nothing changes them later), oldest last event first."""
    latest = []
    for i in range(table.num_rows):
        stamps = [table[e][i].as_py() for e in events if table[e][i].as_py() is not None]
        if stamps and max(stamps) < until:
            latest.append((max(stamps), i))
    return [i for _, i in sorted(latest)]


def _set(table: pa.Table, row: int, column: str, value: Any) -> pa.Table:
    values = table[column].to_pylist()
    values[row] = value
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values, table[column].type))


def _last_event(table: pa.Table, row: int, events: tuple[str, ...]) -> str:
    return max((e for e in events if table[e][row].as_py() is not None), key=lambda e: table[e][row].as_py())


# --- phases -------------------------------------------------------------------------------------

def phase1(root: Path, warehouse: Path) -> Found:
    """Earlier versions: a resident renamed (updated_at moves), a ticket's department changed
    silently; an earlier reconciliation lands both."""
    memo = _memo(root)
    found: Found = {}
    with sqlite3.connect(root / "grid_registry" / "registry.sqlite") as lite:
        lite.row_factory = sqlite3.Row
        row = dict(lite.execute("select * from residents where not is_deleted order by resident_id "
                                "limit 1 offset 20").fetchone())
        memo["backup_resident"] = row
        moved = datetime.strptime(row["updated_at"], SQLITE_TS) + timedelta(seconds=1)
        lite.execute("update residents set name = name || '临', updated_at = ? where resident_id = ?",
                     [moved.strftime(SQLITE_TS), row["resident_id"]])
    found["registry_revert_from_backup"] = ["grid_registry.residents", row["resident_id"]]

    path = root / "hotline" / "tickets.parquet"
    tickets = _read(path)
    # Finished before the day before: nothing about it moves for the rest of the corpus.
    i = _finished_before(tickets, TICKET_EVENTS, _now(root) - timedelta(days=1))[-1]
    before = tickets["department"][i].as_py()
    other = next(d for d in pc.unique(tickets["department"]).to_pylist() if d and d != before)
    memo["revert_ticket"] = {"ticket_id": tickets["ticket_id"][i].as_py(), "department": before}
    _write(path, _set(tickets, i, "department", other))
    found["hotline_revert_department"] = ["hotline.tickets", memo["revert_ticket"]["ticket_id"]]
    _save_memo(root, memo)
    return found


def phase2(root: Path, warehouse: Path) -> Found:
    """The drift a cursor cannot see (and one it now can), after the next day's sync."""
    memo = _memo(root)
    found: Found = {}
    state = _state(warehouse, "grid_registry", "residents")
    watermark = datetime.fromisoformat(state["updated_at"])
    taken = {memo["backup_resident"]["resident_id"]}
    with sqlite3.connect(root / "grid_registry" / "registry.sqlite") as lite:
        lite.row_factory = sqlite3.Row

        def pick(where: str = "1 = 1", *args: Any) -> dict[str, Any]:
            rows = lite.execute(f"select * from residents where not is_deleted and resident_id < ? and {where} "
                                "order by resident_id", [state["key"][0], *args]).fetchall()
            row = dict(next(r for r in rows if r["resident_id"] not in taken))
            taken.add(row["resident_id"])
            return row

        gone = pick("resident_id in (select resident_id from special_groups)")
        groups = [r[0] for r in lite.execute("select group_type from special_groups where resident_id = ?",
                                             [gone["resident_id"]]).fetchall()]
        lite.execute("delete from residents where resident_id = ?", [gone["resident_id"]])
        lite.execute("delete from special_groups where resident_id = ?", [gone["resident_id"]])
        found["registry_hard_delete"] = ["grid_registry.residents", gone["resident_id"]]
        found["registry_special_group_hard_delete"] = ["grid_registry.special_groups",
                                                       *(f"{gone['resident_id']},{g}" for g in groups)]

        silent = pick()
        lite.execute("update residents set name = name || '鑫' where resident_id = ?", [silent["resident_id"]])
        found["registry_silent_change"] = ["grid_registry.residents", silent["resident_id"]]

        late = pick()
        lite.execute("update residents set phone = '13900000001', updated_at = ? where resident_id = ?",
                     [(watermark - timedelta(days=2)).astimezone(UTC).strftime(SQLITE_TS), late["resident_id"]])
        found["registry_back_dated_update"] = ["grid_registry.residents", late["resident_id"]]

        template = pick()
        new = template | {"resident_id": "X-LATE-0001", "name": template["name"] + "新",
                          "updated_at": (watermark - timedelta(days=3)).astimezone(UTC).strftime(SQLITE_TS)}
        lite.execute(f"insert into residents ({', '.join(new)}) values ({', '.join('?' * len(new))})",
                     list(new.values()))
        found["registry_insert_older_updated_at"] = ["grid_registry.residents", "X-LATE-0001"]

        equal = pick()
        lite.execute("update residents set phone = '13900000002', updated_at = ? where resident_id = ?",
                     [watermark.astimezone(UTC).strftime(SQLITE_TS), equal["resident_id"]])
        found["registry_equal_watermark_lower_key"] = ["grid_registry.residents", equal["resident_id"]]

        ahead = pick()  # a clock ahead of the real one (not the simulated one): the future for any cursor
        lite.execute("update residents set phone = '13900000003', updated_at = ? where resident_id = ?",
                     [(datetime.now(UTC) + timedelta(days=400)).strftime(SQLITE_TS), ahead["resident_id"]])
        found["registry_future_updated_at"] = ["grid_registry.residents", ahead["resident_id"]]

        backup = memo["backup_resident"]  # restored from a backup: every column as it was
        lite.execute(f"update residents set {', '.join(f'{c} = ?' for c in backup)} where resident_id = ?",
                     [*backup.values(), backup["resident_id"]])
        found["registry_revert_from_backup"] = ["grid_registry.residents", backup["resident_id"]]

    path = root / "hotline" / "tickets.parquet"
    tickets = _read(path)
    ids = tickets["ticket_id"].to_pylist()
    revert = memo["revert_ticket"]
    tickets = _set(tickets, ids.index(revert["ticket_id"]), "department", revert["department"])
    found["hotline_revert_department"] = ["hotline.tickets", revert["ticket_id"]]
    old = [i for i in _finished_before(tickets, TICKET_EVENTS, _now(root) - timedelta(days=2))
           if ids[i] != revert["ticket_id"]]
    silent, dated, phantom = old[-1], old[-2], old[-3]
    tickets = _set(tickets, silent, "content", tickets["content"][silent].as_py() + "（补充说明）")
    found["hotline_silent_change"] = ["hotline.tickets", ids[silent]]
    event = _last_event(tickets, dated, TICKET_EVENTS)
    tickets = _set(tickets, dated, "content", tickets["content"][dated].as_py() + "（改派）")
    tickets = _set(tickets, dated, event, tickets[event][dated].as_py() + timedelta(seconds=1))
    found["hotline_back_dated_update"] = ["hotline.tickets", ids[dated]]
    found["hotline_phantom"] = ["hotline.tickets", ids[phantom]]
    memo["used_tickets"] = [ids[silent], ids[dated], ids[phantom]]
    tickets = tickets.filter(pa.array([i != phantom for i in range(tickets.num_rows)]))
    _write(path, tickets)

    path = root / "city_cases" / "cases.parquet"
    cases = _read(path)
    cids = cases["case_id"].to_pylist()
    old = _finished_before(cases, CASE_EVENTS, _now(root) - timedelta(days=2))
    silent, phantom = old[-1], old[-2]
    cases = _set(cases, silent, "description", (cases["description"][silent].as_py() or "") + "（已核实）")
    found["city_silent_change"] = ["city_cases.cases", cids[silent]]
    found["city_phantom"] = ["city_cases.cases", cids[phantom]]
    cases = cases.filter(pa.array([i != phantom for i in range(cases.num_rows)]))
    _write(path, cases)
    _save_memo(root, memo)
    return found


def phase3(root: Path, warehouse: Path) -> Found:
    """A change committed after the scheduled sync, its clock past the watermark."""
    path = root / "hotline" / "tickets.parquet"
    tickets = _read(path)
    ids = tickets["ticket_id"].to_pylist()
    memo = _memo(root)
    used = {memo["revert_ticket"]["ticket_id"], *memo["used_tickets"]}
    i = next(i for i in reversed(_finished_before(tickets, TICKET_EVENTS, _now(root) - timedelta(days=3)))
             if ids[i] not in used)
    event = _last_event(tickets, i, TICKET_EVENTS)
    tickets = _set(tickets, i, "content", tickets["content"][i].as_py() + "（回访）")
    tickets = _set(tickets, i, event, _now(root) - timedelta(seconds=1))
    _write(path, tickets)
    return {"hotline_missed_update": ["hotline.tickets", ids[i]]}


PHASES = {1: phase1, 2: phase2, 3: phase3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the village (onenet simulate --out DIR)")
    parser.add_argument("--warehouse", type=Path, required=True, help="the warehouse its silos were synced into")
    parser.add_argument("--phase", type=int, choices=sorted(PHASES), required=True)
    args = parser.parse_args(argv)
    print(json.dumps(PHASES[args.phase](args.root, args.warehouse), ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
