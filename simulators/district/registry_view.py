"""The grid registry's view: grids, households, residents (with day-by-day changes), special groups, workers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from .population import Grids, Households, Persons
from .rng import stream
from .views import NA, NoiseLog, addresses, links, noisy_ids, noisy_names, noisy_phones, ts_array

DAY_US = 86_400_000_000
SOURCE = "grid_registry.residents"


def build(seed: int, g: Grids, hh: Households, p: Persons, rates, day0_us: int, days: int,
          log: NoiseLog) -> tuple[dict[str, pa.Table], pa.Table, pa.Table, np.ndarray]:
    """Registry tables at day 0, residents' changes per day, truth links (source, key, person), workers."""
    rng = stream(seed, "registry")
    r = rates.grid_registry

    def before(n: int) -> np.ndarray:
        """Times within the two years before day 0: when the rows were last edited."""
        return day0_us - rng.integers(DAY_US, 720 * DAY_US, n)

    grids = pa.table({
        "grid_code": g.code, "level": g.level, "name": g.name, "parent_code": g.parent,
        "updated_at": ts_array(np.full(len(g.code), day0_us - 400 * DAY_US)),
    })

    b = hh.building
    hh_addr, _ = addresses(rng, np.array(["武汉市江岸区"] * len(b), dtype=object) + g.building_street[b]
                           + g.building_community[b], g.building_compound[b], g.building_no[b], hh.unit,
                           hh.room, r)
    households = pa.table({
        "household_id": hh.household_id, "grid_code": g.building_code[b], "address": hh_addr,
        "compound": g.building_compound[b], "building": [f"{n}号楼" for n in g.building_no[b]],
        "unit": [f"{u}单元" for u in hh.unit], "room": [str(x) for x in hh.room],
        "updated_at": ts_array(before(len(b))),
    })

    # Who the registry knows: residents, less one in ten migrants who never registered.
    res = np.flatnonzero(p.is_resident)
    migrant = hh.migrant[p.household[res]]
    registered = res[~(migrant & (rng.random(len(res)) < 0.10))]
    dup = registered[rng.random(len(registered)) < r.duplicate_row]
    rows = np.concatenate([registered, dup])  # a person registered twice, under two resident ids
    n = len(rows)
    resident_id = np.array([f"R{i + 1:07d}" for i in rng.permutation(n)])
    truth = [links(SOURCE, resident_id, p.person_id[rows])]

    year = p.birth[rows].astype("datetime64[Y]").astype(int) + 1970
    id_number, id_kind = noisy_ids(rng, p.id18[rows], r, old=year < 1960)
    name, name_kind = noisy_names(rng, p.name[rows], r)
    phone, phone_kind = noisy_phones(rng, p.contact_phone[rows], p.old_phone[rows], r)
    for fld, kinds in (("id_number", id_kind), ("name", name_kind), ("phone", phone_kind)):
        log.add(SOURCE, resident_id, fld, kinds)
    log.add(SOURCE, resident_id[len(registered):], "row", np.full(len(dup), "duplicate", dtype=object))

    arrived = hh.arrived_day[p.household[rows]]
    updated = np.where(arrived >= 1, day0_us + arrived * DAY_US + rng.integers(0, DAY_US // 2, n), before(n))
    birth_known = rng.random(n) >= 0.01
    moved_in = (updated // DAY_US).astype("datetime64[D]") - rng.integers(0, 3000, n).astype("timedelta64[D]")
    moved_in = np.where(arrived >= 1, (updated // DAY_US).astype("datetime64[D]"), moved_in)
    residents = pa.table({
        "resident_id": resident_id, "household_id": hh.household_id[p.household[rows]],
        "name": pa.array(name, pa.string()), "id_number": pa.array(id_number, pa.string()),
        "sex": np.where(p.sex[rows] == "M", "男", "女"),
        "birth_date": pa.array(p.birth[rows], pa.date32(), mask=~birth_known),
        "phone": pa.array(phone, pa.string()), "relation": p.relation[rows],
        "residence_type": np.where(hh.migrant[p.household[rows]], "流动", "户籍"),
        "moved_in_on": pa.array(moved_in, pa.date32()),
        "updated_at": ts_array(updated), "is_deleted": np.zeros(n, dtype=bool),
        "deleted_at": ts_array(np.full(n, NA)),
    })

    # Changes: newcomers appear on their day; people who leave are soft-deleted; some update a
    # phone or move to another household. A change never follows the person's departure.
    change_day = np.where(arrived >= 1, arrived, -1)
    left = p.left_day[rows]
    fix_day = rng.integers(1, max(days, 2), n)
    before_leaving = (change_day < 1) & ((left < 0) | (fix_day < left))
    phone_fix = (phone_kind == "outdated") & (rng.random(n) < 0.3) & before_leaving
    move = ~phone_fix & before_leaving & (rng.random(n) < 0.003)
    new_household = hh.household_id[rng.integers(0, len(hh.household_id), n)]
    parts = []
    for mask, day, what in ((change_day >= 1, change_day, "arrive"), (left >= 1, left, "leave"),
                            (phone_fix, fix_day, "phone"), (move, fix_day, "move")):
        idx = np.flatnonzero(mask)
        if not len(idx):
            continue
        t = residents.take(pa.array(idx))
        at = day0_us + day[idx] * DAY_US + rng.integers(DAY_US // 3, DAY_US * 2 // 3, len(idx))
        t = t.set_column(t.schema.get_field_index("updated_at"), "updated_at", ts_array(at))
        if what == "leave":
            t = t.set_column(t.schema.get_field_index("is_deleted"), "is_deleted", pa.array(np.ones(len(idx), bool)))
            t = t.set_column(t.schema.get_field_index("deleted_at"), "deleted_at", ts_array(at))
        if what == "phone":
            t = t.set_column(t.schema.get_field_index("phone"), "phone",
                             pa.array(p.contact_phone[rows][idx], pa.string()))
        if what == "move":
            t = t.set_column(t.schema.get_field_index("household_id"), "household_id",
                             pa.array(new_household[idx], pa.string()))
        parts.append(t.append_column("day", pa.array(day[idx], pa.int32())))
    changes = pa.concat_tables(parts).sort_by([("day", "ascending"), ("updated_at", "ascending")]) if parts else \
        residents.schema.append(pa.field("day", pa.int32())).empty_table()
    day0 = residents.filter(pa.array(change_day < 1))

    sp = np.flatnonzero(p.special[rows] != "")
    sp = sp[change_day[sp] < 1]
    special = pa.table({
        "resident_id": resident_id[sp], "group_type": p.special[rows][sp],
        "since": pa.array((day0_us // DAY_US - rng.integers(30, 2000, len(sp))).astype("datetime64[D]"), pa.date32()),
        "note": pa.array([None] * len(sp), pa.string()), "updated_at": ts_array(before(len(sp))),
    }).sort_by("resident_id")

    workers, worker_truth, worker_person = _workers(rng, g, hh, p, day0_us)
    truth.append(worker_truth)
    tables = {"grids": grids, "households": households, "residents": day0,
              "special_groups": special, "grid_workers": workers}
    return tables, changes, pa.concat_tables(truth), worker_person


def _workers(rng: np.random.Generator, g: Grids, hh: Households, p: Persons, day0_us: int):
    """Grid workers are residents too: one per area grid, a head per community, some building heads."""
    adult = np.flatnonzero(p.is_resident & (p.birth < np.datetime64("2000-01-01")) & (p.birth > np.datetime64("1966-01-01")))
    bld = hh.building[p.household[adult]]
    order = np.argsort(bld, kind="stable")
    adult, bld = adult[order], bld[order]
    roles = []
    for code, role, members in (
        (g.building_area_code, "网格员", None), (g.building_community_code, "网格长", None),
        (g.building_code, "楼栋长", 4),
    ):
        uniq, first = np.unique(code, return_index=True)
        if members:  # every fourth building has a building head
            uniq, first = uniq[::members], first[::members]
        for c, bi in zip(uniq.tolist(), first.tolist(), strict=True):
            lo, hi = np.searchsorted(bld, bi), np.searchsorted(bld, bi, side="right")
            if hi > lo:
                roles.append((c, role, int(adult[lo + int(rng.integers(0, hi - lo))])))
    person = np.array([x[2] for x in roles], dtype=np.int64)
    worker_id = np.array([f"W{i + 1:05d}" for i in range(len(roles))])
    table = pa.table({
        "worker_id": worker_id, "name": p.name[person], "phone": pa.array(p.contact_phone[person], pa.string()),
        "grid_code": [x[0] for x in roles], "role": [x[1] for x in roles],
        "updated_at": ts_array(np.full(len(roles), day0_us - 100 * DAY_US)),
    })
    truth = links("grid_registry.grid_workers", worker_id, p.person_id[person])
    return table, truth, person
