"""The true district: grid hierarchy, buildings, households and persons (the ground truth)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

from . import divisions, ids, names
from .rng import stream
from .views import or_none

REFERENCE_DATE = date(2026, 11, 1)
PLACE_WORDS = ("幸福 和平 建设 光明 胜利 友谊 新华 解放 红旗 长青 永安 同心 育才 惠民 丹桂 紫荆 百合 花桥 兴业 "
               "锦绣 祥和 复兴 东方 龙腾 金桥 银湖 翠苑 明珠 江滨 朝阳 春晖 堤角 三眼桥 黄浦 球场 车站 工农 "
               "二七 发展 建安 塔子湖 后湖 百步亭 澳门 台北 香港 永清 吉庆 上海 黎黄陂").split()
CN_ORDINAL = ["", "二", "三", "四", "五", "六", "七", "八", "九", "十"]
COMPOUND_SUFFIX = ["花园", "小区", "新村", "家园", "苑", "公寓", "里"]
MOBILE_PREFIXES = np.array([139, 138, 137, 136, 135, 134, 150, 151, 152, 157, 158, 159, 182, 183,
                            187, 188, 130, 131, 132, 155, 156, 185, 186, 133, 153, 180, 181, 189,
                            177, 199, 191, 166, 198])
# The district's bounding box (WGS-84), around 江岸区.
LON_RANGE = (114.27, 114.36)
LAT_RANGE = (30.59, 30.70)


@dataclass
class Grids:
    """Grid hierarchy as parallel columns; micro grids are buildings."""

    code: list[str]
    level: list[str]
    name: list[str]
    parent: list[str | None]
    # per building (micro grid)
    building_code: np.ndarray
    building_no: np.ndarray
    building_compound: np.ndarray     # compound name
    building_community: np.ndarray    # community name
    building_street: np.ndarray       # street name
    building_area_code: np.ndarray
    building_community_code: np.ndarray
    building_lon: np.ndarray
    building_lat: np.ndarray
    community_names: list[str]
    community_codes: list[str]


def sizes_for(residents: int) -> dict[str, int]:
    """How many streets, communities, area grids and micro grids a district of this size has."""
    micro = max(1, round(residents / 45))          # the village in DOMAIN.md: ~2,000 people, 44
    area = max(1, round(micro / 11))
    community = max(1, round(residents / 7000))
    street = max(1, min(len(divisions.STREETS), round(residents / 75000)))
    community = max(community, street)
    area = max(area, community)
    return {"street": street, "community": community, "area": area, "micro": micro}


def _spread(n_children: int, n_parents: int) -> np.ndarray:
    """Parent index of each child, as even as possible (children stay in parent order)."""
    return (np.arange(n_children) * n_parents) // n_children


def build_grids(seed: int, residents: int) -> Grids:
    rng = stream(seed, "grids")
    s = sizes_for(residents)
    district = str(divisions.HOME_CODE)
    code, level, name = [district], ["district"], [divisions.HOME_DISTRICT]
    parent: list[str | None] = [None]
    village = residents < 5000

    street_codes = [f"{district}{i + 1:03d}" for i in range(s["street"])]
    street_names = [divisions.STREETS[i] for i in range(s["street"])]
    code += street_codes
    level += ["street"] * s["street"]
    name += street_names
    parent += [district] * s["street"]

    comm_street = _spread(s["community"], s["street"])
    comm_codes, comm_names = [], []
    for i, st in enumerate(comm_street):
        k = i - int(np.searchsorted(comm_street, st))
        comm_codes.append(f"{street_codes[st]}{k + 1:03d}")
        w = PLACE_WORDS
        comm_names.append(w[i % len(w)] + CN_ORDINAL[i // len(w) % 10] + ("村" if village else "社区"))
    code += comm_codes
    level += ["community"] * len(comm_codes)
    name += comm_names
    parent += [street_codes[st] for st in comm_street]
    for i, cc in enumerate(comm_codes):  # one special grid (school / market / hospital) each
        code.append(cc + "S1")
        level.append("special")
        name.append(comm_names[i] + ["学校", "农贸市场", "社区医院"][i % 3] + "专属网格")
        parent.append(cc)

    area_comm = _spread(s["area"], s["community"])
    area_codes, compounds = [], []
    for i, cm in enumerate(area_comm):
        k = i - int(np.searchsorted(area_comm, cm))
        area_codes.append(f"{comm_codes[cm]}{k + 1:02d}")
        w, suf = PLACE_WORDS, COMPOUND_SUFFIX
        phase = i // (len(w) * len(suf))
        compounds.append(w[(7 * i + 3) % len(w)] + suf[i % len(suf)] + (f"{phase + 1}期" if phase else ""))
    code += area_codes
    level += ["area"] * len(area_codes)
    name += [f"第{i - int(np.searchsorted(area_comm, cm)) + 1}网格" for i, cm in enumerate(area_comm)]
    parent += [comm_codes[cm] for cm in area_comm]

    micro_area = _spread(s["micro"], s["area"])
    first_in_area = np.searchsorted(micro_area, micro_area)
    building_no = np.arange(s["micro"]) - first_in_area + 1
    micro_codes = np.array([f"{area_codes[a]}{b:03d}" for a, b in zip(micro_area, building_no, strict=True)])
    code += micro_codes.tolist()
    level += ["micro"] * s["micro"]
    name += [f"{compounds[a]}{b}号楼微网格" for a, b in zip(micro_area, building_no, strict=True)]
    parent += [area_codes[a] for a in micro_area]

    comm_lon = rng.uniform(*LON_RANGE, s["community"])
    comm_lat = rng.uniform(*LAT_RANGE, s["community"])
    area_lon = comm_lon[area_comm] + rng.normal(0, 0.003, s["area"])
    area_lat = comm_lat[area_comm] + rng.normal(0, 0.003, s["area"])
    b_comm = area_comm[micro_area]
    return Grids(
        code=code, level=level, name=name, parent=parent,
        building_code=micro_codes, building_no=building_no,
        building_compound=np.array(compounds, dtype=object)[micro_area],
        building_community=np.array(comm_names, dtype=object)[b_comm],
        building_street=np.array(street_names, dtype=object)[comm_street[b_comm]],
        building_area_code=np.array(area_codes)[micro_area],
        building_community_code=np.array(comm_codes)[b_comm],
        building_lon=area_lon[micro_area] + rng.normal(0, 0.0006, s["micro"]),
        building_lat=area_lat[micro_area] + rng.normal(0, 0.0006, s["micro"]),
        community_names=comm_names, community_codes=comm_codes,
    )


@dataclass
class Households:
    household_id: np.ndarray
    building: np.ndarray   # index into Grids.building_*
    unit: np.ndarray
    room: np.ndarray
    size: np.ndarray
    migrant: np.ndarray    # bool: a migrant (流动人口) household
    arrived_day: np.ndarray  # -1 = already there on day 0


@dataclass
class Persons:
    """The true persons, residents first then non-resident callers ('outsiders')."""

    person_id: np.ndarray
    name: np.ndarray
    sex: np.ndarray         # 'M' / 'F'
    birth: np.ndarray       # datetime64[D]
    id18: np.ndarray
    phone: np.ndarray       # own mobile or None
    contact_phone: np.ndarray  # own phone, else the household head's, else a landline
    old_phone: np.ndarray   # a previous number still on file somewhere, or None
    household: np.ndarray   # household index, -1 for outsiders
    relation: np.ndarray    # 户主 / 配偶 / 子女 / 父母 / 其他
    is_resident: np.ndarray
    left_day: np.ndarray    # day the person moved out / died (-1 = stays)
    special: np.ndarray     # '' or 独居老人 / 残疾人 / 困境儿童

    def __len__(self) -> int:
        return len(self.person_id)


def build_households(seed: int, residents: int, grids: Grids, days: int) -> Households:
    rng = stream(seed, "households")
    sizes = rng.choice([1, 2, 3, 4, 5, 6], size=residents, p=[0.2, 0.28, 0.27, 0.14, 0.08, 0.03])
    cum = np.cumsum(sizes)
    n = int(np.searchsorted(cum, residents)) + 1
    sizes = sizes[:n].copy()
    sizes[-1] -= int(cum[n - 1] - residents)
    n_build = len(grids.building_code)
    building = np.sort(rng.integers(0, n_build, n))
    building[:n_build] = np.arange(n_build) if n >= n_build else building[:n_build]
    building = np.sort(building)
    rank = np.arange(n) - np.searchsorted(building, building)
    unit = rank % 3 + 1
    room = (rank // 6 + 1) * 100 + (rank // 3) % 2 + 1
    migrant = rng.random(n) < 0.25
    arrived = np.where(migrant & (rng.random(n) < 0.03), rng.integers(1, max(days, 2), n), -1)
    return Households(np.array([f"H{i + 1:07d}" for i in range(n)]), building, unit, room,
                      sizes, migrant, arrived)


def _mobiles(rng: np.random.Generator, n: int) -> np.ndarray:
    prefix = MOBILE_PREFIXES[rng.integers(0, len(MOBILE_PREFIXES), n)]
    rest = rng.integers(0, 10**8, n)
    return np.array([f"{p}{r:08d}" for p, r in zip(prefix.tolist(), rest.tolist(), strict=True)], dtype=object)


def _unique_ids(rng: np.random.Generator, division: np.ndarray, birth: np.ndarray, sex: np.ndarray) -> np.ndarray:
    """18-digit IDs; the 17th digit is odd for men; (code, birth, sequence) never repeats."""
    ymd = birth.astype("datetime64[D]").astype(object)
    ymd_int = np.array([d.year * 10000 + d.month * 100 + d.day for d in ymd], dtype=np.int64)
    seq = rng.integers(0, 500, len(sex)) * 2 + (sex == "M")
    body = division.astype(np.int64) * 10**11 + ymd_int * 1000 + seq
    while True:
        _, first, counts = np.unique(body, return_index=True, return_counts=True)
        dup = np.ones(len(body), dtype=bool)
        dup[first] = False
        if not dup.any():
            break
        idx = np.flatnonzero(dup)
        body[idx] = (body[idx] // 1000) * 1000 + rng.integers(0, 500, len(idx)) * 2 + (sex[idx] == "M")
    return np.array(ids.make_ids(body // 10**11, (body // 1000) % 10**8, body % 1000), dtype=object)


def _birth_dates(rng: np.random.Generator, age_years: np.ndarray) -> np.ndarray:
    ref = np.datetime64(REFERENCE_DATE.isoformat(), "D")
    days = (np.clip(age_years, 0, 100) * 365.25 + rng.integers(0, 365, len(age_years))).astype(np.int64)
    return ref - days.astype("timedelta64[D]")


def build_persons(seed: int, hh: Households, days: int, outsiders: int) -> Persons:
    rng = stream(seed, "persons")
    n_hh = len(hh.household_id)
    household = np.repeat(np.arange(n_hh), hh.size)
    n = len(household)
    start = np.repeat(np.cumsum(hh.size) - hh.size, hh.size)
    rank = np.arange(n) - start
    size = hh.size[household]

    head_age = rng.integers(24, 86, n_hh).astype(float)
    head_male = rng.random(n_hh) < 0.7
    has_spouse = (hh.size >= 2) & (rng.random(n_hh) < 0.85)
    is_spouse = (rank == 1) & has_spouse[household]
    is_parent = (rank == size - 1) & (size >= 5) & (head_age[household] < 55)
    relation = np.where(rank == 0, "户主", np.where(is_spouse, "配偶", np.where(is_parent, "父母", "子女"))).astype(object)

    h_age = head_age[household]
    age = np.select(
        [rank == 0, is_spouse, is_parent],
        [h_age, h_age + rng.normal(0, 3, n), h_age + rng.uniform(24, 32, n)],
        default=h_age - rng.uniform(22, 36, n),
    )
    odd = age < 0  # a "child" of a young head is really another relative
    relation[odd] = "其他"
    age[odd] = rng.uniform(18, 40, int(odd.sum()))
    age = np.clip(age, 0, 99)

    hm = head_male[household]
    sex = np.select(
        [rank == 0, is_spouse, is_parent],
        [np.where(hm, "M", "F"), np.where(hm, "F", "M"), np.where(rng.random(n) < 0.6, "F", "M")],
        default=np.where(rng.random(n) < 0.51, "M", "F"),
    ).astype(object)

    birth = _birth_dates(rng, age)
    birth_year = birth.astype("datetime64[Y]").astype(int) + 1970

    head_surname = names.draw_surnames(rng, n_hh)
    own_surname = names.draw_surnames(rng, n)
    inherits = (relation == "子女") | ((relation == "父母") & (sex == "M"))
    surname = np.where(inherits, head_surname[household], own_surname)
    name = names.draw_names(rng, sex, birth_year, surname)

    # Division code: the household's place of registration; retired codes only for the old.
    migrant = hh.migrant[household]
    home_codes = np.array(list(divisions.HOME_ORIGINS))
    home_p = np.array(list(divisions.HOME_ORIGINS.values()))
    hh_home = home_codes[rng.choice(len(home_codes), n_hh, p=home_p / home_p.sum())]
    origins = divisions.migrant_origins()
    provs = np.array(list(divisions.MIGRANT_PROVINCES))
    prov_p = np.array(list(divisions.MIGRANT_PROVINCES.values()))
    hh_prov = provs[rng.choice(len(provs), n_hh, p=prov_p / prov_p.sum())]
    hh_origin = np.array([origins[int(p)][int(r * len(origins[int(p)]))]
                          for p, r in zip(hh_prov, rng.random(n_hh), strict=True)])
    division = np.where(migrant, hh_origin[household], hh_home[household])
    retired = division == 420123
    division[retired & (birth_year >= 1985)] = divisions.HOME_CODE
    division[(~migrant) & (birth_year >= 2000)] = divisions.HOME_CODE  # born here, registered here

    minority = migrant & (rng.random(n) < 0.02) & (relation == "户主")
    name[minority] = names.draw_minority_names(rng, int(minority.sum()))

    id18 = _unique_ids(rng, division, birth, sex)

    own_phone = (age >= 16) & ~((age >= 75) & (rng.random(n) < 0.4))
    mobiles = _mobiles(rng, n)
    phone = or_none(own_phone, mobiles)
    head_idx = start  # the head is rank 0 of each household
    landline = np.array([f"0278{r:07d}" for r in rng.integers(0, 10**7, n_hh)], dtype=object)
    contact = np.where(own_phone, mobiles, np.where(own_phone[head_idx], mobiles[head_idx], landline[household]))
    changed = own_phone & (rng.random(n) < 0.06)
    old_phone = or_none(changed, _mobiles(rng, n))

    left = np.where(rng.random(n) < 0.01, rng.integers(1, max(days, 2), n), -1)
    left[hh.arrived_day[household] >= 0] = -1

    special = np.full(n, "", dtype=object)
    special[(size == 1) & (age >= 65)] = "独居老人"
    special[(special == "") & (rng.random(n) < 0.015)] = "残疾人"
    special[(special == "") & (age < 18) & (rng.random(n) < 0.02)] = "困境儿童"

    res = Persons(
        person_id=np.array([f"P{i + 1:08d}" for i in range(n)]), name=name, sex=sex, birth=birth,
        id18=id18, phone=phone, contact_phone=contact, old_phone=old_phone, household=household,
        relation=relation, is_resident=np.ones(n, dtype=bool), left_day=left, special=special,
    )
    return _append_outsiders(res, seed, outsiders)


def _append_outsiders(p: Persons, seed: int, k: int) -> Persons:
    """People who call the hotline or report cases but do not live in the district."""
    rng = stream(seed, "outsiders")
    sex = np.where(rng.random(k) < 0.5, "M", "F").astype(object)
    birth = _birth_dates(rng, rng.uniform(18, 80, k))
    year = birth.astype("datetime64[Y]").astype(int) + 1970
    division = np.array([c for c in divisions.HOME_ORIGINS if c != divisions.HOME_CODE])[rng.integers(0, 6, k)]
    division[(division == 420123) & (year >= 1985)] = 420103
    id18 = _unique_ids(rng, division, birth, sex)
    taken = set(p.id18.tolist())
    keep = np.array([i not in taken for i in id18.tolist()])  # a clash is vanishingly rare: drop it
    mob = _mobiles(rng, k)
    n0 = len(p)
    ids_out = np.array([f"P{n0 + i + 1:08d}" for i in range(int(keep.sum()))])
    cat = np.concatenate
    return Persons(
        person_id=cat([p.person_id, ids_out]),
        name=cat([p.name, names.draw_names(rng, sex, year)[keep]]),
        sex=cat([p.sex, sex[keep]]), birth=cat([p.birth, birth[keep]]), id18=cat([p.id18, id18[keep]]),
        phone=cat([p.phone, mob[keep]]), contact_phone=cat([p.contact_phone, mob[keep]]),
        old_phone=cat([p.old_phone, np.full(int(keep.sum()), None, dtype=object)]),
        household=cat([p.household, np.full(int(keep.sum()), -1)]),
        relation=cat([p.relation, np.full(int(keep.sum()), "", dtype=object)]),
        is_resident=cat([p.is_resident, np.zeros(int(keep.sum()), dtype=bool)]),
        left_day=cat([p.left_day, np.full(int(keep.sum()), -1)]),
        special=cat([p.special, np.full(int(keep.sum()), "", dtype=object)]),
    )
