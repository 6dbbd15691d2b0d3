"""Incidents and the two silos that see them: 12345 hotline tickets and city-management cases."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from . import ticket_text
from .population import Grids, Households, Persons
from .rng import stream
from .surge import SurgeSpec, extra_per_day
from .views import (
    NA,
    NoiseLog,
    addresses,
    links,
    noisy_ids,
    noisy_names,
    noisy_phones,
    or_none,
    ts_array,
)

MIN = 60_000_000
HOUR = 60 * MIN
DAY = 24 * HOUR

# (category, department, city case it may become or None, weight); what callers say: ticket_text.py
HOTLINE = [
    ("环境卫生", "区城管局", ("事件", "S0102", "暴露垃圾"), 0.16),
    ("市政设施", "区城管局", ("部件", "B0101", "上水井盖"), 0.10),
    ("交通出行", "区交通运输局", ("事件", "S0506", "机动车乱停放"), 0.09),
    ("噪音扰民", "公安江岸分局", None, 0.10),
    ("物业管理", "区住建局", None, 0.14),
    ("供水供电", "水务集团", None, 0.08),
    ("疫情防控", "区卫健局", None, 0.15),
    ("邻里纠纷", "街道办事处", None, 0.07),
    ("社会保障", "区民政局", None, 0.06),
    ("市场监管", "区市场监管局", None, 0.05),
]
CITY = [
    ("部件", "B0101", "上水井盖", "井盖破损"), ("部件", "B0102", "污水井盖", "井盖缺失"),
    ("部件", "B0110", "路灯", "路灯不亮"), ("部件", "B0205", "道路护栏", "护栏倒伏"),
    ("部件", "B0303", "垃圾箱", "垃圾箱破损"), ("事件", "S0101", "私搭乱建", "违章搭建"),
    ("事件", "S0102", "暴露垃圾", "垃圾暴露堆放"), ("事件", "S0104", "道路不洁", "路面脏污"),
    ("事件", "S0109", "占道经营", "占道经营"), ("事件", "S0201", "违章张贴小广告", "小广告张贴"),
    ("事件", "S0506", "机动车乱停放", "机动车乱停放"), ("事件", "S0402", "自来水管破裂", "水管破裂漏水"),
]
URGENCY = np.array(["紧急", "加急", "一般"])
RESPONSE_LIMIT = np.array([2 * HOUR, 12 * HOUR, 24 * HOUR])
RESOLVE_LIMIT = np.array([1 * DAY, 3 * DAY, 7 * DAY])
SATISFACTION = np.array(["满意", "基本满意", "不满意"])
TICKETS, CASES = "hotline.tickets", "city_cases.cases"


def _ids(prefix: str, t_us: np.ndarray) -> np.ndarray:
    """Numbers like GD2026110100012: the Beijing day, then a sequence within that day."""
    order = np.argsort(t_us, kind="stable")
    day = (t_us + 8 * HOUR) // DAY
    out = np.empty(len(t_us), dtype=object)
    seq = 0
    last = None
    for i in order.tolist():
        if day[i] != last:
            last, seq = day[i], 0
        seq += 1
        d = datetime.fromtimestamp(int(day[i]) * 86400, UTC)
        out[i] = f"{prefix}{d:%Y%m%d}{seq:05d}"
    return out


def _uniform(rng: np.random.Generator, lo, hi, n: int) -> np.ndarray:
    return (lo + rng.random(n) * (np.asarray(hi) - np.asarray(lo))).astype(np.int64)


def build(seed: int, g: Grids, hh: Households, p: Persons, rates, day0_us: int, days: int,
          worker_person: np.ndarray, log: NoiseLog, surge: SurgeSpec | None = None):
    """Tickets and cases tables, truth links (source, key, person) and truth incidents (source, key, incident).

    With `surge`, each day gets more hotline incidents (and city cases) as the surge's level says.
    """
    rng = stream(seed, "events")
    residents = int(p.is_resident.sum())
    stable = np.flatnonzero(p.is_resident & (p.left_day < 0) & (hh.arrived_day[np.maximum(p.household, 0)] < 0))
    outsiders = np.flatnonzero(~p.is_resident)
    bld_of = np.where(p.household >= 0, hh.building[np.maximum(p.household, 0)], -1)

    # --- hotline incidents and the tickets callers open about them ---
    k = max(5, round(residents * 0.0015 * days))
    cat = rng.choice(len(HOTLINE), k, p=np.array([c[3] for c in HOTLINE]) / sum(c[3] for c in HOTLINE))
    hour = rng.choice(np.arange(24), k, p=_day_profile())
    t0 = day0_us + rng.integers(0, days, k) * DAY + hour * HOUR + rng.integers(0, HOUR, k)
    caller = np.where(rng.random(k) < 0.85, stable[rng.integers(0, len(stable), k)],
                      outsiders[rng.integers(0, len(outsiders), k)])
    if surge is not None:
        cat, t0, caller = _surge_incidents(seed, surge, residents * 0.0015, days, day0_us, cat, t0, caller,
                                           stable, outsiders)
        k = len(cat)
    building = np.where(bld_of[caller] >= 0, bld_of[caller], rng.integers(0, len(g.building_code), k))
    extra = np.where(rng.random(k) < 0.15, rng.integers(1, 4, k), 0)
    inc = np.repeat(np.arange(k), 1 + extra)
    first = np.r_[True, inc[1:] != inc[:-1]]
    n = len(inc)
    by_bld = np.argsort(bld_of[stable], kind="stable")
    sb = bld_of[stable][by_bld]
    ticket_caller = caller[inc].copy()
    for i in np.flatnonzero(~first):  # repeat callers: neighbours in the same building, if any
        lo, hi = np.searchsorted(sb, building[inc[i]]), np.searchsorted(sb, building[inc[i]], side="right")
        ticket_caller[i] = stable[by_bld[lo + int(rng.integers(0, hi - lo))]] if hi > lo else \
            stable[int(rng.integers(0, len(stable)))]
    received = t0[inc] + np.where(first, 0, _uniform(rng, HOUR, 48 * HOUR, n))
    ticket_id = _ids("GD", received)
    urg = rng.choice(3, n, p=[0.05, 0.2, 0.75])
    tl = _ticket_timeline(rng, received, urg)
    r = rates.hotline
    c = ticket_caller
    name, nk = noisy_names(rng, p.name[c], r)
    phone, pk = noisy_phones(rng, p.contact_phone[c], p.old_phone[c], r)
    idn, ik = noisy_ids(rng, p.id18[c], r, masked=rates.hotline_id_masked)
    b = building[inc]
    addr, _ = addresses(rng, ("武汉市江岸区" + g.building_street[b]).astype(object), g.building_compound[b],
                        g.building_no[b], rng.integers(1, 4, n), rng.integers(1, 19, n) * 100 + 1, r)
    place = g.building_compound[b] + g.building_no[b].astype(str).astype(object) + "号楼"
    tcat = cat[inc]
    rng.random(n)  # the draw the old fixed templates used, kept so every later draw stays put
    text_rng = stream(seed, "ticket_text")
    problems = ticket_text.draw(text_rng, [HOTLINE[ci][0] for ci in cat])
    content = ticket_text.compose(text_rng, [HOTLINE[ci][0] for ci in tcat], inc, place, problems)
    tickets = pa.table({
        "ticket_id": ticket_id, "caller_name": pa.array(name, pa.string()),
        "caller_phone": pa.array(phone, pa.string()), "caller_id_number": pa.array(idn, pa.string()),
        "address": addr, "street": g.building_street[b], "department": [HOTLINE[ci][1] for ci in tcat],
        "category": [HOTLINE[ci][0] for ci in tcat], "urgency": URGENCY[urg], "content": content,
        **{k_: ts_array(v) for k_, v in tl.items() if k_ != "satisfaction"},
        "satisfaction": pa.array(tl["satisfaction"], pa.string()),
    }).sort_by("ticket_id")
    for fld, kinds in (("caller_name", nk), ("caller_phone", pk), ("caller_id_number", ik)):
        log.add(TICKETS, ticket_id, fld, kinds)
    truth = [links(TICKETS, ticket_id, p.person_id[c])]
    incident_ids = np.array([f"I{i + 1:07d}" for i in range(k)])
    incidents = [links(TICKETS, ticket_id, incident_ids[inc], "incident_id")]

    # --- city cases: transferred tickets, the same incidents seen by grid workers, and their own ---
    city_scope = np.array([HOTLINE[ci][2] is not None for ci in cat])
    fi = np.flatnonzero(first)  # the first ticket of each incident, in incident order
    u = rng.random(k)
    transferred = np.flatnonzero(city_scope & (u < 0.35))
    seen = np.flatnonzero(city_scope & (u >= 0.35) & (u < 0.45))
    own = max(3, round(residents * 0.0008 * days))
    rows: dict[str, list] = {x: [] for x in ("inc", "cat", "bld", "t", "rtype", "person", "src")}

    def add(inc_idx, cats, blds, t, rtype, person, src):
        for key, val in (("inc", inc_idx), ("cat", cats), ("bld", blds), ("t", t), ("rtype", rtype),
                         ("person", person), ("src", src)):
            rows[key].append(np.asarray(val))

    city_code = {c_[1]: i for i, c_ in enumerate(CITY)}
    cat_of = np.array([city_code[HOTLINE[ci][2][1]] if HOTLINE[ci][2] else -1 for ci in cat])
    tt = fi[transferred]
    add(transferred, cat_of[transferred], building[transferred],
        tl["dispatched_at"][tt] + _uniform(rng, 30 * MIN, 6 * HOUR, len(tt)),
        np.full(len(tt), "12345转办"), np.full(len(tt), -1), ticket_id[tt])
    ws = worker_person[rng.integers(0, len(worker_person), len(seen))] if len(worker_person) else np.full(len(seen), -1)
    add(seen, cat_of[seen], building[seen], t0[seen] + _uniform(rng, -12 * HOUR, 12 * HOUR, len(seen)),
        np.full(len(seen), "网格员"), ws, np.full(len(seen), None, dtype=object))
    rt = rng.choice(np.array(["网格员", "监督员", "市民"]), own, p=[0.5, 0.3, 0.2])
    who = np.select([rt == "网格员", rt == "监督员"],
                    [worker_person[rng.integers(0, max(len(worker_person), 1), own)] if len(worker_person) else -1,
                     outsiders[rng.integers(0, len(outsiders), own)]],
                    default=stable[rng.integers(0, len(stable), own)])
    own_t = day0_us + rng.integers(0, days, own) * DAY + rng.choice(np.arange(24), own, p=_day_profile()) * HOUR + rng.integers(0, HOUR, own)
    add(np.arange(k, k + own), rng.integers(0, len(CITY), own), rng.integers(0, len(g.building_code), own),
        own_t, rt, who, np.full(own, None, dtype=object))
    if surge is not None:  # more of the city's own cases too, on their own stream
        srng = stream(seed, "surge_cases")
        more_t = _days_times(srng, extra_per_day(own / days, days, surge.cases), day0_us)
        more = len(more_t)
        add(np.arange(k + own, k + own + more), srng.integers(0, len(CITY), more),
            srng.integers(0, len(g.building_code), more), more_t, np.full(more, "网格员"),
            worker_person[srng.integers(0, len(worker_person), more)] if len(worker_person) else np.full(more, -1),
            np.full(more, None, dtype=object))
        own += more
    col = {key: np.concatenate(v) for key, v in rows.items()}
    m = len(col["t"])
    case_id = _ids("CG", col["t"])
    ctl = _case_timeline(rng, col["t"], np.array([CITY[i][0] for i in col["cat"]]))
    cb = col["bld"]
    cr = rates.city_cases
    person = col["person"].astype(np.int64)
    has_person = (person >= 0) & (col["rtype"] != "12345转办")
    pname, cnk = noisy_names(rng, np.where(has_person, p.name[person], ""), cr)
    pphone, cpk = noisy_phones(rng, or_none(has_person, p.contact_phone[person]),
                               or_none(has_person, p.old_phone[person]), cr)
    pname = or_none(has_person, pname)
    caddr, _ = addresses(rng, ("武汉市江岸区" + g.building_street[cb]).astype(object), g.building_compound[cb],
                         g.building_no[cb], None, None, cr)
    # A case grid workers saw of a hotline incident tells of the callers' problem; the others of their category.
    description = np.array([g.building_compound[b_] + "附近" + CITY[i][3] for i, b_ in zip(col["cat"], cb, strict=True)],
                           dtype=object)
    is_seen = np.zeros(m, dtype=bool)
    is_seen[len(tt):len(tt) + len(seen)] = True
    description[is_seen] = ticket_text.describe(stream(seed, "case_text"), [HOTLINE[ci][0] for ci in cat[seen]],
                                                seen, g.building_compound[cb[is_seen]], problems)
    cases = pa.table({
        "case_id": case_id, "category_type": [CITY[i][0] for i in col["cat"]],
        "category_code": [CITY[i][1] for i in col["cat"]], "category_name": [CITY[i][2] for i in col["cat"]],
        "description": description,
        "lon": np.round(g.building_lon[cb] + rng.normal(0, 0.0002, m), 6),
        "lat": np.round(g.building_lat[cb] + rng.normal(0, 0.0002, m), 6),
        "address": caddr, "street": g.building_street[cb], "community": g.building_community[cb],
        "reporter_type": col["rtype"], "reporter_name": pa.array(pname, pa.string()),
        "reporter_phone": pa.array(pphone, pa.string()), "source_ticket_id": pa.array(col["src"], pa.string()),
        **{k_: ts_array(v) for k_, v in ctl.items()},
    }).sort_by("case_id")
    log.add(CASES, case_id, "reporter_name", np.where(has_person, cnk, ""))
    log.add(CASES, case_id, "reporter_phone", np.where(has_person, cpk, ""))
    all_inc = np.array([f"I{i + 1:07d}" for i in range(k + own)])
    truth.append(links(CASES, case_id[has_person], p.person_id[person[has_person]]))
    incidents.append(links(CASES, case_id, all_inc[col["inc"]], "incident_id"))
    return tickets, cases, pa.concat_tables(truth), pa.concat_tables(incidents)


def _days_times(rng: np.random.Generator, per_day: np.ndarray, day0_us: int) -> np.ndarray:
    """Instants for per_day[d] events on each day d, spread over the hours as callers call."""
    day = np.repeat(np.arange(len(per_day)), per_day)
    n = len(day)
    return day0_us + day * DAY + rng.choice(np.arange(24), n, p=_day_profile()) * HOUR + rng.integers(0, HOUR, n)


def _surge_incidents(seed: int, surge: SurgeSpec, base_per_day: float, days: int, day0_us: int, cat: np.ndarray,
                     t0: np.ndarray, caller: np.ndarray, stable: np.ndarray, outsiders: np.ndarray):
    """The base incidents plus the surge's: each day's extra volume, a share of it about the epidemic."""
    srng = stream(seed, "surge_events")
    more_t = _days_times(srng, extra_per_day(base_per_day, days, surge.hotline), day0_us)
    m = len(more_t)
    weights = np.array([c[3] for c in HOTLINE]) / sum(c[3] for c in HOTLINE)
    epidemic = [c[0] for c in HOTLINE].index("疫情防控")
    more_cat = np.where(srng.random(m) < surge.epidemic_share, epidemic, srng.choice(len(HOTLINE), m, p=weights))
    more_caller = np.where(srng.random(m) < 0.85, stable[srng.integers(0, len(stable), m)],
                           outsiders[srng.integers(0, len(outsiders), m)])
    return (np.concatenate([cat, more_cat]), np.concatenate([t0, more_t]),
            np.concatenate([caller, more_caller]))


def _day_profile() -> np.ndarray:
    w = np.array([1, 0.5, 0.3, 0.3, 0.3, 0.5, 1, 3, 6, 8, 8, 7, 5, 6, 7, 7, 6, 5, 5, 5, 4, 3, 2, 1.5])
    return w / w.sum()


def _ticket_timeline(rng: np.random.Generator, received: np.ndarray, urg: np.ndarray) -> dict[str, np.ndarray]:
    n = len(received)
    resp_lim, res_lim = RESPONSE_LIMIT[urg], RESOLVE_LIMIT[urg]
    dispatched = received + _uniform(rng, 5 * MIN, 2 * HOUR, n)
    on_time = rng.random(n) < 0.88
    f = np.where(on_time, 0.1 + 0.9 * rng.random(n), 1.0 + 2.0 * rng.random(n))
    responded = np.maximum(dispatched + MIN, received + (f * resp_lim).astype(np.int64))
    g = np.where(rng.random(n) < 0.85, 0.2 + 0.8 * rng.random(n), 1.0 + 1.5 * rng.random(n))
    resolved = np.maximum(responded + HOUR, received + (g * res_lim).astype(np.int64))
    never = rng.random(n) < 0.05
    resolved[never] = NA
    closed = np.where(never, NA, resolved + _uniform(rng, HOUR, DAY, n))
    rated_ok = (~never) & (rng.random(n) < 0.7)
    rated = np.where(rated_ok, closed + _uniform(rng, DAY // 2, 5 * DAY, n), NA)  # late updates
    sat = or_none(rated_ok, SATISFACTION[rng.choice(3, n, p=[0.75, 0.15, 0.10])])
    return {"received_at": received, "dispatched_at": dispatched, "first_response_at": responded,
            "resolved_at": resolved, "closed_at": closed, "rated_at": rated,
            "response_deadline": received + resp_lim, "resolve_deadline": received + res_lim,
            "satisfaction": sat}


def _case_timeline(rng: np.random.Generator, reported: np.ndarray, kind: np.ndarray) -> dict[str, np.ndarray]:
    n = len(reported)
    registered = reported + _uniform(rng, 10 * MIN, 2 * HOUR, n)
    dispatched = registered + _uniform(rng, 10 * MIN, 4 * HOUR, n)
    deadline = registered + np.where(kind == "部件", 3 * DAY, 2 * DAY)
    disposed = dispatched + ((0.1 + 1.2 * rng.random(n)) * (deadline - dispatched)).astype(np.int64)
    never = rng.random(n) < 0.05
    disposed[never] = NA
    verified = np.where(never, NA, disposed + _uniform(rng, HOUR, DAY, n))
    closed = np.where(never, NA, verified + _uniform(rng, 0, 6 * HOUR, n))
    return {"reported_at": reported, "registered_at": registered, "dispatched_at": dispatched,
            "disposed_at": disposed, "verified_at": verified, "closed_at": closed, "deadline": deadline}
