"""Who crosses between districts: movers, callers of another district's hotline, stale registrations.

Chosen from every district's true population (drawn first, unchanged), with the city's own random
stream, so the same seed gives the same city. Indices are positions in each district's `Persons`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulators.district.population import Households, Persons
from simulators.district.rng import stream


@dataclass(frozen=True)
class Rates:
    """How much crossing the city has (documented in the README's City section)."""

    movers: float = 0.01          # of households: move to another district during the period
    callers: float = 0.4          # of a district's non-resident callers: residents of another district
    stale: float = 0.005          # of residents: an old registration in another district never removed
    cross_tickets: float = 0.02   # of a district's single-report tickets: about a place in another district


@dataclass
class Move:
    """A household leaving district `src` on `day` and arriving in `dst` (members in rank order)."""

    src: int
    src_household: int
    src_members: np.ndarray
    dst: int
    dst_household: int
    dst_members: np.ndarray
    day: int


@dataclass
class CityPlan:
    moves: list[Move] = field(default_factory=list)
    # per district: (outsider index in it, source district, source person index)
    callers: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)
    # per district holding the stale row: (source district, source person index)
    stale: dict[int, list[tuple[int, int]]] = field(default_factory=dict)


def _members(hh: Households) -> tuple[np.ndarray, np.ndarray]:
    start = np.cumsum(hh.size) - hh.size
    return start, hh.size


def _age(p: Persons, at: str = "2026-11-01") -> np.ndarray:
    return (np.datetime64(at) - p.birth.astype("datetime64[D]")).astype(int) / 365.25


def make_plan(seed: int, pops: list[tuple[Households, Persons]], days: int, rates: Rates) -> CityPlan:
    """Choose the crossings; no person takes part in two of them."""
    rng = stream(seed, "city-plan")
    n = len(pops)
    plan = CityPlan(callers={k: [] for k in range(n)}, stale={k: [] for k in range(n)})
    used = [np.zeros(len(p), dtype=bool) for _, p in pops]
    used_hh = [np.zeros(len(h.household_id), dtype=bool) for h, _ in pops]

    def settled(k: int) -> np.ndarray:
        """Households there all period, nobody leaving, of 1-4 people."""
        hh, p = pops[k]
        start, size = _members(hh)
        left_any = np.zeros(len(size), dtype=bool)
        res = np.flatnonzero(p.is_resident & (p.left_day >= 0))
        left_any[p.household[res]] = True
        return (hh.arrived_day < 0) & ~left_any & (size <= 4)

    ok = [settled(k) for k in range(n)]
    for src in range(n):
        hh, _ = pops[src]
        cand = rng.permutation(np.flatnonzero(ok[src]))
        want = max(1, round(len(hh.household_id) * rates.movers))
        for h in cand[: want * 2]:
            if want == 0:
                break
            if used_hh[src][h]:
                continue
            dst = int((src + 1 + rng.integers(0, n - 1)) % n)
            dhh, _ = pops[dst]
            size = int(hh.size[h])
            pool = np.flatnonzero(ok[dst] & ~used_hh[dst] & (dhh.size == size))
            if not len(pool):
                continue
            d = int(pool[rng.integers(0, len(pool))])
            s0, d0 = int(_members(hh)[0][h]), int(_members(dhh)[0][d])
            plan.moves.append(Move(src, int(h), np.arange(s0, s0 + size), dst, d, np.arange(d0, d0 + size),
                                   int(rng.integers(1, max(days, 2)))))
            used_hh[src][h] = used_hh[dst][d] = True
            used[src][s0:s0 + size] = True
            used[dst][d0:d0 + size] = True
            want -= 1

    def pick(k: int, mask: np.ndarray, count: int) -> list[int]:
        idx = rng.permutation(np.flatnonzero(mask & ~used[k]))[:count]
        used[k][idx] = True
        return idx.tolist()

    for dst in range(n):
        _, p = pops[dst]
        outsiders = np.flatnonzero(~p.is_resident)
        chosen = rng.permutation(outsiders)[: round(len(outsiders) * rates.callers)]
        for o in chosen.tolist():
            src = int((dst + 1 + rng.integers(0, n - 1)) % n)
            shh, sp = pops[src]
            age = _age(sp)
            migrant = np.zeros(len(sp), dtype=bool)
            res = sp.household >= 0
            migrant[res] = shh.migrant[sp.household[res]]
            adult = sp.is_resident & (sp.left_day < 0) & (age >= 18) & (age <= 75) & (sp.phone != None)  # noqa: E711
            # "migrants registered in one district who call the hotline of another": mostly migrants
            got = pick(src, adult & migrant, 1) if rng.random() < 0.7 else []
            got = got or pick(src, adult, 1)
            if got:
                used[dst][o] = True
                plan.callers[dst].append((o, src, got[0]))
    for src in range(n):
        shh, sp = pops[src]
        stable = sp.is_resident & (sp.left_day < 0) & (_age(sp) >= 18)
        stable[sp.household >= 0] &= shh.arrived_day[sp.household[sp.household >= 0]] < 0
        for person in pick(src, stable, round(int(sp.is_resident.sum()) * rates.stale)):
            dst = int((src + 1 + rng.integers(0, n - 1)) % n)
            plan.stale[dst].append((src, person))
    return plan
