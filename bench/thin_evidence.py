"""Person precision / recall under variants of the evidence rule (issue #17 item 5), on a built warehouse.

    .venv/bin/python -m bench.thin_evidence --warehouse OUT/warehouse.duckdb [--truth OUT/district/truth] \
        [--variants rule-off phone-rule building building-own-phone role committed building-any+role] \
        [--memory-limit 4GB] [--threads 1]

Copies the warehouse's staging.stg_person_records (built by bench/district_warehouse.py on a commit that
has its second-field columns) into a scratch DuckDB file next to this run's work folder, resolves it
once per variant of the person configuration, and prints one JSON line per variant: pairwise precision,
recall and F1 against the generator's truth, and for the records that hold a phone and nothing else
(no name, no ID) how many share a person with another record and how many of those joined someone else.

Variants (all from warehouse/resolve/person_config.py):
- rule-off: min_evidence 0, without the second fields (the configuration before item 5);
- phone-rule: min_evidence 2 without the second fields (item 5 as first committed);
- building: + the ticket's building against the registered one, evidence 1, whoever holds the phone;
- building-own-phone: + the same, counted only when one named person holds the phone;
- role: + 网格员 on a grid worker's own case against the register, evidence 1;
- own-phone+role: building-own-phone and role (the configuration committed before the named caller);
- committed: the configuration as committed (the building counted with a phone one named person
  holds, or with the same name and no differing phone; and role; a masked ID one typo off no veto);
- building-any+role: building (ungated) and role.

Any variant but committed may end in +typo (a masked ID one typo off tolerated, as committed; without
it any difference is a veto, as before) and/or +ties (a record whose best links lead to two clusters at
the same weight joins neither, as committed; without it, the first one), e.g. rule-off+typo+ties.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import resolution_input as ri
from warehouse import db
from warehouse.resolve import resolve
from warehouse.resolve.person_config import PERSON, person_config

TABLE = "staging.stg_person_records"
NEW_COLUMNS = ("home_building", "reported_building", "reporter_role", "phone_holders")
VARIANTS = ("rule-off", "phone-rule", "building", "building-own-phone", "role", "own-phone+role", "committed",
            "building-any+role")
SUFFIXES = ("+typo", "+ties")
OWN_PHONE = " and l.phone_std = r.phone_std and l.phone_holders = 1"


def variant(name: str) -> dict[str, Any]:
    """The person configuration of one variant, as plain data."""
    d: dict[str, Any] = copy.deepcopy(PERSON)
    if name == "committed":
        return d
    comps = {c["name"]: c for c in d["comparisons"]}
    building, role = comps.pop("home_building"), comps.pop("reporter_role")
    d["comparisons"] = list(comps.values())
    d["columns"] = [c for c in d["columns"] if c not in NEW_COLUMNS]
    # Without the named caller: no blocking on the ticket's building, and the building's first level
    # counts only with a phone one named person holds.
    d["blocking_rules"] = [b for b in d["blocking_rules"] if "building" not in b]
    mods = set()
    while name.endswith(SUFFIXES):
        mods.add(name[-5:])
        name = name[:-5]
    if "+typo" not in mods:
        # A masked ID that differs at all is another person, as before one typo was tolerated.
        d["vetoes"] = [d["vetoes"][0], "l.id_prefix6 <> r.id_prefix6 or l.id_suffix4 <> r.id_suffix4"]
        d["exclusive_near"] = {}
    if "+ties" not in mods:
        d["refuse_ties"] = False
    gated, plain = building["levels"]
    building["levels"] = [{"label": "same building, own phone",
                           "condition": f"({plain['condition']}){OWN_PHONE}", "evidence": gated["evidence"]}, plain]
    if name == "rule-off":
        d["min_evidence"] = 0
        return d
    if name == "phone-rule":
        return d
    if name in ("building", "building-any+role"):
        _gated, plain = building["levels"]
        building["levels"] = [plain | {"evidence": 1}]
    if name in ("building", "building-own-phone", "own-phone+role", "building-any+role"):
        d["comparisons"].append(building)
        d["columns"] += ["home_building", "reported_building", "phone_holders"]
    if name in ("role", "own-phone+role", "building-any+role"):
        d["comparisons"].append(role)
        d["columns"] += ["reporter_role"]
    if name not in VARIANTS or name == "committed":
        raise SystemExit(f"variant {name!r}: use one of {', '.join(VARIANTS)}, optionally ending in "
                         f"{' and/or '.join(SUFFIXES)} (not committed)")
    return d


def thin(con: Any, truth: Path) -> dict[str, dict[str, int]]:
    """Per source: records with a phone and no name or ID, those with true mates, linked, linked wrongly."""
    rows = con.execute(f"""
        with t as (
            select s.record_uid, s.source, s.name_std, s.id_prefix6, s.phone_std,
                   tr.person_id as true_id, r.person_id as got_id
            from {TABLE} s
            join '{truth}/source_records.parquet' tr on tr.source = s.source and tr.record_key = s.record_key
            join core.person_source r on r.record_uid = s.record_uid
        ),
        thin as (select * from t where name_std is null and id_prefix6 is null and phone_std is not null),
        per as (
            select thin.record_uid, thin.source,
                   count(*) filter (where o.got_id = thin.got_id) as mates,
                   count(*) filter (where o.got_id = thin.got_id and o.true_id <> thin.true_id) as wrong_mates,
                   count(*) filter (where o.true_id = thin.true_id) as true_mates
            from thin
            left join t o on (o.got_id = thin.got_id or o.true_id = thin.true_id) and o.record_uid <> thin.record_uid
            group by all
        )
        select source, count(*), count(*) filter (where true_mates > 0), count(*) filter (where mates > 0),
               count(*) filter (where wrong_mates > 0)
        from per group by 1 order by 1""").fetchall()
    return {r[0]: dict(zip(("records", "with_true_mates", "linked", "linked_wrongly"), r[1:], strict=True))
            for r in rows}


def main() -> None:
    """Resolve the warehouse's person records under each variant and print the scores."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--warehouse", required=True, type=Path)
    ap.add_argument("--truth", type=Path, help="default: WAREHOUSE_DIR/district/truth")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS),
                    help=f"of {', '.join(VARIANTS)}; any but committed may end in +typo and/or +ties")
    ap.add_argument("--memory-limit", default="4GB")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    truth = args.truth or args.warehouse.parent / "district" / "truth"
    with tempfile.TemporaryDirectory(prefix="thin-evidence-") as work:
        for name in args.variants:
            path = Path(work) / f"{name}.duckdb"
            con = db.connect(path)
            con.execute(f"set memory_limit = '{args.memory_limit}'")
            con.execute(f"set threads = {int(args.threads)}")
            con.execute(f"attach '{args.warehouse}' as src (read_only)")
            con.execute("create schema if not exists staging")
            con.execute(f"create table {TABLE} as select * from src.{TABLE}")
            con.execute("detach src")
            cfg = person_config(**{k: v for k, v in variant(name).items() if k != "name"})
            t = time.perf_counter()
            with db.transaction(con):
                resolve(con, cfg, run_id=f"thin-evidence-{name}")
            seconds = time.perf_counter() - t
            s = ri.scores(con, ri.truth_pairs_sql(TABLE, truth, "core.person_source"))
            print(json.dumps({"warehouse": str(args.warehouse), "variant": name, "seconds": round(seconds, 1),
                              "precision": round(s["precision"], 5), "recall": round(s["recall"], 5),
                              "f1": round(s["f1"], 5), "clusters": s["clusters"], "thin": thin(con, truth)},
                             ensure_ascii=False), flush=True)
            con.close()
            path.unlink()


if __name__ == "__main__":
    main()
