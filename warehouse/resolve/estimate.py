"""Fellegi–Sunter parameters from the data: u from random pairs, m and lambda by EM on pattern counts."""

from __future__ import annotations

import math
from dataclasses import dataclass

import duckdb
import numpy as np

from .config import ResolverConfig
from .profiles import WORK

M_FLOOR = 1e-6


@dataclass
class Parameters:
    """Estimated m and u per comparison level (else level last), the prior lambda, and EM iterations."""

    m: dict[str, list[float]]
    u: dict[str, list[float]]
    lam: float
    iterations: int
    u_floor: float = 0.0

    def weights(self) -> dict[str, list[float]]:
        """log2(m/u) per comparison level: the evidence each level carries.

        A level seen neither among matches nor among random pairs carries no evidence (weight 0)
        rather than the ratio of two smoothing floors.
        """
        return {k: [0.0 if mi <= 2 * M_FLOOR and ui <= self.u_floor else math.log2(mi / ui)
                    for mi, ui in zip(self.m[k], self.u[k], strict=True)] for k in self.m}

    def as_json(self, cfg: ResolverConfig) -> dict:
        """Parameters labelled by level, for meta.resolution_runs."""
        w = self.weights()
        return {"lambda": self.lam, "em_iterations": self.iterations, "threshold": cfg.threshold,
                "u_floor": self.u_floor,
                "comparisons": {c.name: {label: {"m": self.m[c.name][i], "u": self.u[c.name][i],
                                                 "weight": round(w[c.name][i], 4)}
                                         for i, label in enumerate(c.labels)} for c in cfg.comparisons}}


def estimate_u(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> dict[str, list[float]]:
    """P(level | non-match) from the random pairs; a level never seen counts half a pair (smoothing)."""
    u: dict[str, list[float]] = {}
    for c in cfg.comparisons:
        n_levels = len(c.labels)
        counts = dict(con.execute(
            f"select g_{c.name}, count(*) from {WORK}random_pairs where g_{c.name} >= 0 group by 1").fetchall())
        raw = np.array([counts.get(i, 0) + 0.5 for i in range(n_levels)], dtype=float)
        u[c.name] = (raw / raw.sum()).tolist()
    return u


def patterns(con: duckdb.DuckDBPyConnection, cfg: ResolverConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (rule mask, comparison vector) of the candidate pairs with their pair counts, sorted."""
    g = ", ".join(f"g_{c.name}" for c in cfg.comparisons)
    rows = con.execute(f"select rules, {g}, count(*) from {WORK}pairs group by all order by all").fetchall()
    if not rows:
        return np.zeros((0, len(cfg.comparisons)), dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64)
    arr = np.array(rows, dtype=np.int64)
    return arr[:, 1:-1], arr[:, -1].astype(float), arr[:, 0]


def _start_m(cfg: ResolverConfig) -> dict[str, np.ndarray]:
    # High on the best level, low elsewhere; EM moves it where the data says.
    m = {}
    for c in cfg.comparisons:
        n = len(c.labels)
        start = np.array([0.9] + [0.1 / max(n - 1, 1)] * (n - 1))
        m[c.name] = start / start.sum()
    return m


def _em(cfg: ResolverConfig, gam: np.ndarray, counts: np.ndarray, u: dict[str, np.ndarray],
        m: dict[str, np.ndarray], lam: float, train: set[str]) -> tuple[dict[str, np.ndarray], float, int]:
    """EM over pattern counts: update lambda, and m of the comparisons in `train` (u stays fixed)."""
    names = [c.name for c in cfg.comparisons]
    m = {k: v.copy() for k, v in m.items()}
    it = 0
    while it < cfg.em_max_iterations:
        it += 1
        log_m = np.full(len(counts), math.log(lam))
        log_u = np.full(len(counts), math.log(1 - lam))
        for j, k in enumerate(names):
            g = gam[:, j]
            known = g >= 0
            log_m[known] += np.log(m[k][g[known]])
            log_u[known] += np.log(u[k][g[known]])
        p = 1.0 / (1.0 + np.exp(np.clip(log_u - log_m, -700, 700)))
        w = counts * p
        new_lam = min(max(float(w.sum() / counts.sum()), 1e-9), 1 - 1e-9)
        delta = abs(new_lam - lam)
        lam = new_lam
        for j, k in enumerate(names):
            if k not in train:
                continue
            g = gam[:, j]
            sums = np.array([w[g == lv].sum() for lv in range(len(m[k]))])
            if sums.sum() <= 0:
                continue
            new = np.maximum(sums / sums.sum(), M_FLOOR)
            new = new / new.sum()
            delta = max(delta, float(np.abs(new - m[k]).max()))
            m[k] = new
        if delta < cfg.em_tolerance:
            break
    return m, lam, it


def em(cfg: ResolverConfig, gam: np.ndarray, counts: np.ndarray, masks: np.ndarray,
       u: dict[str, list[float]]) -> Parameters:
    """m by EM per blocking rule (as Splink trains), averaged; then lambda over all candidate pairs.

    Pairs found by a rule agree on the rule's columns by construction, so those comparisons say nothing
    about matching there: each rule's session trains only the other comparisons. A comparison no session
    can train is trained on all pairs.
    """
    u_arr = {k: np.array(v) for k, v in u.items()}
    names = [c.name for c in cfg.comparisons]
    start = _start_m(cfg)
    if counts.size == 0:
        return Parameters({k: v.tolist() for k, v in start.items()}, u, 0.5, 0)
    trained: dict[str, list[np.ndarray]] = {k: [] for k in names}
    iterations = 0
    for s, rule in enumerate(cfg.blocking_rules):
        sel = (masks & (1 << s)) != 0
        if not sel.any():
            continue
        skip = cfg.blocked_comparisons(rule)
        g = gam[sel].copy()
        for j, k in enumerate(names):
            if k in skip:
                g[:, j] = -1
        train = set(names) - skip
        m_s, _, it = _em(cfg, g, counts[sel], u_arr, start, 0.3, train)
        iterations += it
        for k in train:
            trained[k].append(m_s[k])
    m = {k: (np.mean(trained[k], axis=0) if trained[k] else start[k]) for k in names}
    untrained = {k for k in names if not trained[k]}
    if untrained:
        m, _, it = _em(cfg, gam, counts, u_arr, m, 0.3, untrained)
        iterations += it
    _, lam, it = _em(cfg, gam, counts, u_arr, m, 0.3, set())
    return Parameters({k: (v / v.sum()).tolist() for k, v in m.items()}, u, lam, iterations + it)
