"""Generate a simulated city: N districts from the district generator, people crossing between them,
and a city-level ground truth.

Layout of the output folder:
    manifest.json                      seed, districts (code, name, folder, seed), crossings
    districts/<code>/                  one district each, exactly the district generator's layout
    truth/                             the city's ground truth, never read by a connector:
      persons.parquet                  (district_code, person_id) -> city_person_id, every true person
      source_records.parquet           (district_code, source, record_key) -> city_person_id
      movers.parquet                   city person, from/to district, day, their person ids there
      stale_registrations.parquet      city person, home district, district holding the old row
      cross_callers.parquet            city person, home district, district whose hotline they call
      cross_district_tickets.parquet   (district_code, ticket_id) -> the district of the place
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from simulators.clock import DEFAULT_START
from simulators.district import population, views
from simulators.district.generate import GeneratorError, Step, generate
from simulators.district.noise import NoiseRates
from simulators.district.population import Grids, Households, Persons
from simulators.district.rng import stream
from simulators.district.surge import SurgeSpec

from .districts import CITY_NAME, DISTRICTS, MAX_DISTRICTS, DistrictSpec
from .patching import as_district
from .plan import CityPlan, Rates, make_plan

IDENTITY = ("name", "sex", "birth", "id18", "phone", "contact_phone", "old_phone")
REGISTRY = "grid_registry.residents"
DAY_US = 86_400_000_000


def district_seed(seed: int, k: int) -> int:
    """Each district its own seed, derived from the city's."""
    return seed * 100 + k + 1


def city_id(k: int, person_id: str) -> str:
    """A person's city id: where they were first drawn, then their id there (P00001234 -> C0100001234)."""
    return f"C{k + 1:02d}{person_id[1:]}"


def _population(spec: DistrictSpec, k: int, seed: int, residents: int, days: int,
                taken: set[str]) -> tuple[Grids, Households, Persons]:
    with as_district(spec, k, taken):
        g = population.build_grids(seed, residents)
        hh = population.build_households(seed, residents, g, days)
        p = population.build_persons(seed, hh, days, outsiders=max(50, residents // 20))
    return g, hh, p


def _copy_identity(p: Persons, dst: np.ndarray, sp: Persons, src: np.ndarray, fields=IDENTITY) -> None:
    for f in fields:
        getattr(p, f)[dst] = getattr(sp, f)[src]


def _persons_hook(k: int, plan: CityPlan, pops: list):
    def hook(hh: Households, p: Persons) -> None:
        for m in plan.moves:
            if m.src == k:
                p.left_day[m.src_members] = m.day
            if m.dst == k:
                shh, sp = pops[m.src][1], pops[m.src][2]
                hh.arrived_day[m.dst_household] = m.day
                hh.migrant[m.dst_household] = shh.migrant[m.src_household]
                _copy_identity(p, m.dst_members, sp, m.src_members, IDENTITY + ("relation", "special"))
                p.left_day[m.dst_members] = -1
        for o, src, person in plan.callers[k]:
            sp = pops[src][2]
            _copy_identity(p, np.array([o]), sp, np.array([person]))
            p.contact_phone[o] = sp.phone[person]  # a caller gives their own mobile
    return hook


def _registry_hook(k: int, plan: CityPlan, pops: list, stale_ids: dict):
    """Append old registrations of people now living in other districts to district k's registry."""
    def hook(result, seed, g, hh, p, rates, day0_us, days, log):  # noqa: ANN001, ARG001
        tables, changes, truth, workers = result
        rows = plan.stale[k]
        if not rows:
            return result
        rng = stream(seed, "city-stale")
        residents = tables["residents"]
        known = pc.max(pc.utf8_slice_codeunits(pa.concat_arrays(
            [residents["resident_id"].combine_chunks(), changes["resident_id"].combine_chunks()]), 1)).as_py()
        n = len(rows)
        rid = np.array([f"R{int(known) + i + 1:07d}" for i in range(n)])
        src = [pops[s][2] for s, _ in rows]
        idx = [i for _, i in rows]
        col = {f: np.array([getattr(sp, f)[i] for sp, i in zip(src, idx, strict=True)], dtype=object) for f in IDENTITY}
        migrant = np.array([pops[s][1].migrant[pops[s][2].household[i]] for s, i in rows])
        r = rates.grid_registry
        year = col["birth"].astype("datetime64[D]").astype("datetime64[Y]").astype(int) + 1970
        id_number, ik = views.noisy_ids(rng, col["id18"].astype(object), r, old=year < 1960)
        name, nk = views.noisy_names(rng, col["name"], r)
        phone, pk = views.noisy_phones(rng, col["contact_phone"], col["old_phone"], r)
        for fld, kinds in (("id_number", ik), ("name", nk), ("phone", pk)):
            log.add(REGISTRY, rid, fld, kinds)
        household = tables["households"]["household_id"].to_numpy(zero_copy_only=False)
        edited = day0_us - rng.integers(400 * DAY_US, 1500 * DAY_US, n)  # untouched for years
        moved_in = (edited // DAY_US - rng.integers(100, 2000, n)).astype("datetime64[D]")
        stale = pa.table({
            "resident_id": rid, "household_id": household[rng.integers(0, len(household), n)],
            "name": pa.array(name, pa.string()), "id_number": pa.array(id_number, pa.string()),
            "sex": np.where(col["sex"] == "M", "男", "女"),
            "birth_date": pa.array(col["birth"].astype("datetime64[D]"), pa.date32()),
            "phone": pa.array(phone, pa.string()), "relation": np.full(n, "其他"),
            "residence_type": np.where(migrant, "流动", "户籍"),
            "moved_in_on": pa.array(moved_in, pa.date32()), "updated_at": views.ts_array(edited),
            "is_deleted": np.zeros(n, dtype=bool), "deleted_at": views.ts_array(np.full(n, views.NA)),
        }).cast(residents.schema)
        tables = dict(tables, residents=pa.concat_tables([residents, stale]))
        ids = np.array([f"X{i + 1:07d}" for i in range(n)])
        stale_ids[k] = list(zip(rid.tolist(), ids.tolist(), rows, strict=True))
        return tables, changes, pa.concat_tables([truth, views.links(REGISTRY, rid, ids)]), workers
    return hook


def _cross_tickets(seed: int, k: int, folder: Path, specs: list[DistrictSpec], pops: list,
                   rates: Rates, noise: NoiseRates) -> list[tuple[str, int, str]]:
    """Move some single-report tickets of district k to a place in another district (address, street,
    the place named in the text); return (ticket_id, place district index, place street)."""
    rng = stream(seed, "city-cross-tickets")
    path = folder / "hotline" / "tickets.parquet"
    tickets = pq.read_table(path)
    inc = pq.read_table(folder / "truth" / "incidents.parquet").to_pandas()
    sizes = inc.groupby("incident_id").size()
    single = set(inc[(inc.source == "hotline.tickets") & inc.incident_id.map(sizes).eq(1)].record_key)
    ids = tickets["ticket_id"].to_pylist()
    cand = [i for i, t in enumerate(ids) if t in single]
    chosen = sorted(rng.permutation(np.array(cand, dtype=np.int64))[: max(1, round(len(ids) * rates.cross_tickets))].tolist())
    if not chosen:
        return []
    n = len(specs)
    place = np.array([(k + 1 + rng.integers(0, n - 1)) % n for _ in chosen])
    own = pops[k][0]
    compounds = sorted(set(own.building_compound.tolist()), key=len, reverse=True)
    address = tickets["address"].to_pylist()
    street = tickets["street"].to_pylist()
    content = tickets["content"].to_pylist()
    out = []
    for row, a in zip(chosen, place.tolist(), strict=True):
        g = pops[a][0]
        b = int(rng.integers(0, len(g.building_code)))
        prefix = np.array([CITY_NAME + specs[a].name + g.building_street[b]], dtype=object)  # as the hotline writes it
        text, _ = views.addresses(rng, prefix, g.building_compound[b:b + 1], g.building_no[b:b + 1],
                                  rng.integers(1, 4, 1), rng.integers(1, 19, 1) * 100 + 1, noise.hotline)
        address[row], street[row] = text[0], g.building_street[b]
        new_place = f"{g.building_compound[b]}{g.building_no[b]}号楼"
        for c in compounds:  # the text names the place too
            if c in content[row]:
                content[row] = re.sub(re.escape(c) + r"\d+号楼", new_place, content[row]).replace(c, g.building_compound[b])
                break
        out.append((ids[row], a, g.building_street[b]))
    for name, values in (("address", address), ("street", street), ("content", content)):
        tickets = tickets.set_column(tickets.schema.get_field_index(name), name, pa.array(values, pa.string()))
    pq.write_table(tickets, path, compression="zstd")
    return out


def generate_city(out: Path, *, districts: int, residents: int, seed: int, days: int = 30,
                  start: date = DEFAULT_START, rates: Rates | None = None, step: Step | None = None,
                  surge: SurgeSpec | None = None) -> dict:
    """Generate a city of `districts` districts of `residents` residents each into `out`; deterministic.
    `surge`: every district goes through the same surge month (simulators/district/surge.py)."""
    if not 2 <= districts <= MAX_DISTRICTS:
        raise GeneratorError(f"--districts must be between 2 and {MAX_DISTRICTS}, got {districts}")
    rates = rates or Rates()
    step = step or Step()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / "manifest.json").exists() or "districts" not in json.loads((out / "manifest.json").read_text()):
            raise GeneratorError(f"{out} is not empty and holds no simulated city; choose an empty folder")
        for name in ("districts", "truth"):
            shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    specs = list(DISTRICTS[:districts])

    step.start("city populations", districts)
    pops: list = []
    taken: list[set[str]] = []
    issued: set[str] = set()
    for k, spec in enumerate(specs):
        taken.append(set(issued))
        pops.append(_population(spec, k, district_seed(seed, k), residents, days, taken[k]))
        issued |= set(pops[-1][2].id18.tolist())
        step.advance(1)
    plan = make_plan(seed, [(hh, p) for _, hh, p in pops], days, rates)

    stale_ids: dict[int, list] = {}
    crossing: dict[int, list] = {}
    folders = []
    noise = NoiseRates()
    for k, spec in enumerate(specs):
        folder = out / "districts" / str(spec.code)
        folders.append(folder)
        with as_district(spec, k, taken[k], _persons_hook(k, plan, pops), _registry_hook(k, plan, pops, stale_ids)):
            generate(folder, residents=residents, seed=district_seed(seed, k), days=days, start=start, step=step,
                     surge=surge)
        crossing[k] = _cross_tickets(seed, k, folder, specs, pops, rates, noise)
    counts = _write_truth(out / "truth", specs, folders, pops, plan, stale_ids, crossing)
    manifest = {
        "city": CITY_NAME, "seed": seed, "residents_per_district": residents, "days": days,
        "start_date": start.isoformat(),
        "districts": [{"code": s.code, "name": s.name, "folder": f"districts/{s.code}", "seed": district_seed(seed, k)}
                      for k, s in enumerate(specs)],
        "rates": rates.__dict__, "counts": counts,
    }
    if surge is not None:
        manifest["surge"] = json.loads((folders[0] / "manifest.json").read_text(encoding="utf-8")).get("surge")
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest


def _write_truth(folder: Path, specs: list[DistrictSpec], folders: list[Path], pops: list, plan: CityPlan,
                 stale_ids: dict, crossing: dict) -> dict:
    """The city truth: every district person and source record -> city person, and the crossings."""
    folder.mkdir(parents=True, exist_ok=True)
    pid = [p.person_id for _, _, p in pops]
    # Who is whom: by default a person is their own; copies point at the original.
    maps = [{x: city_id(k, x) for x in ids.tolist()} for k, ids in enumerate(pid)]
    movers: dict[str, list] = {f: [] for f in ("city_person_id", "from_district", "to_district", "day", "from_person_id", "to_person_id")}
    for m in plan.moves:
        for s, d in zip(m.src_members.tolist(), m.dst_members.tolist(), strict=True):
            cid = city_id(m.src, pid[m.src][s])
            maps[m.dst][pid[m.dst][d]] = cid
            for key, v in zip(movers, (cid, specs[m.src].code, specs[m.dst].code, m.day, pid[m.src][s], pid[m.dst][d]),
                              strict=True):
                movers[key].append(v)
    callers: dict[str, list] = {f: [] for f in ("city_person_id", "home_district", "called_district", "person_id")}
    for k, rows in plan.callers.items():
        for o, src, person in rows:
            cid = city_id(src, pid[src][person])
            maps[k][pid[k][o]] = cid
            for key, v in zip(callers, (cid, specs[src].code, specs[k].code, pid[k][o]), strict=True):
                callers[key].append(v)
    stale: dict[str, list] = {f: [] for f in ("city_person_id", "home_district", "stale_district", "resident_id", "person_id")}
    for k, rows in stale_ids.items():
        for rid, xid, (src, person) in rows:
            cid = city_id(src, pid[src][person])
            maps[k][xid] = cid
            for key, v in zip(stale, (cid, specs[src].code, specs[k].code, rid, xid), strict=True):
                stale[key].append(v)
    persons, records = [], []
    for k, (spec, f) in enumerate(zip(specs, folders, strict=True)):
        ids_k = maps[k]
        persons.append(pa.table({"district_code": pa.array([spec.code] * len(ids_k), pa.int32()),
                                 "person_id": list(ids_k), "city_person_id": list(ids_k.values())}))
        sr = pq.read_table(f / "truth" / "source_records.parquet")
        records.append(pa.table({
            "district_code": pa.array([spec.code] * sr.num_rows, pa.int32()), "source": sr["source"],
            "record_key": sr["record_key"],
            "city_person_id": pa.array([ids_k[x] for x in sr["person_id"].to_pylist()], pa.string())}))
    cross: dict[str, list] = {"district_code": [], "ticket_id": [], "place_district_code": [], "place_street": []}
    for k, rows in crossing.items():
        for ticket, a, street in rows:
            for key, v in zip(cross, (specs[k].code, ticket, specs[a].code, street), strict=True):
                cross[key].append(v)
    write = {"persons": pa.concat_tables(persons), "source_records": pa.concat_tables(records),
             "movers": pa.table(movers, schema=_schema(movers, ("day", "from_district", "to_district"))),
             "stale_registrations": pa.table(stale, schema=_schema(stale, ("home_district", "stale_district"))),
             "cross_callers": pa.table(callers, schema=_schema(callers, ("home_district", "called_district"))),
             "cross_district_tickets": pa.table(cross, schema=_schema(cross, ("district_code", "place_district_code")))}
    for name, table in write.items():
        pq.write_table(table, folder / f"{name}.parquet", compression="zstd")
    return {"movers": len(movers["city_person_id"]), "mover_households": len(plan.moves),
            "stale_registrations": len(stale["city_person_id"]), "cross_callers": len(callers["city_person_id"]),
            "cross_district_tickets": len(cross["ticket_id"]),
            "city_persons": len(set(pa.concat_tables(persons)["city_person_id"].to_pylist()))}


def _schema(cols: dict, ints: tuple[str, ...]) -> pa.Schema:
    return pa.schema([(c, pa.int32() if c in ints else pa.string()) for c in cols])
