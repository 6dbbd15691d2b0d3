"""Helpers every silo view uses: apply one silo's noise to arrays of IDs, names, phones, addresses."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from . import noise
from .noise import SiloNoise


@dataclass
class NoiseLog:
    """What noise was applied to which record: the ground truth the noise-rate tests check."""

    rows: dict[str, list] = field(default_factory=lambda: {"source": [], "record_key": [], "field": [], "kind": []})

    def add(self, source: str, keys: np.ndarray, fld: str, kinds: np.ndarray) -> None:
        hit = np.flatnonzero(kinds != "")
        self.rows["source"] += [source] * len(hit)
        self.rows["record_key"] += keys[hit].tolist()
        self.rows["field"] += [fld] * len(hit)
        self.rows["kind"] += kinds[hit].tolist()

    def table(self) -> pa.Table:
        return pa.table({k: pa.array(v, pa.string()) for k, v in self.rows.items()})


def _mark(kinds: np.ndarray, idx: np.ndarray, kind: str) -> None:
    kinds[idx] = np.where(kinds[idx] == "", kind, kinds[idx] + "+" + kind)


def noisy_ids(rng: np.random.Generator, id18: np.ndarray, rates: SiloNoise,
              old: np.ndarray | None = None, masked: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """IDs as a silo holds them, and the noise kinds applied (''=clean) per record."""
    n = len(id18)
    out = id18.astype(object).copy()
    kinds = np.full(n, "", dtype=object)
    u = rng.random((n, 7))
    missing = u[:, 0] < rates.id_missing
    out[missing] = None
    _mark(kinds, np.flatnonzero(missing), "missing")
    live = ~missing
    if old is not None:
        legacy = np.flatnonzero(live & old & (u[:, 1] < rates.id_legacy15_old))
        out[legacy] = [v[:6] + v[8:17] for v in out[legacy]]
        _mark(kinds, legacy, "legacy15")
    typo = np.flatnonzero(live & (u[:, 2] < rates.id_typo) & (np.array([len(v or "") for v in out]) == 18))
    out[typo] = [noise.id_typo(v, r) for v, r in zip(out[typo], u[typo, 3], strict=True)]
    _mark(kinds, typo, "typo")
    if masked:
        m = np.flatnonzero(live & (u[:, 4] < masked) & (np.array([len(v or "") for v in out]) == 18))
        out[m] = [noise.id_masked(v) for v in out[m]]
        _mark(kinds, m, "masked")
    has_x = np.array([bool(v) and v.endswith("X") for v in out])
    low = np.flatnonzero(has_x & (u[:, 5] < rates.id_lower_x))
    out[low] = [v[:-1] + "x" for v in out[low]]
    _mark(kinds, low, "lower_x")
    fw = np.flatnonzero(live & (u[:, 6] < rates.id_fullwidth))
    out[fw] = [noise.fullwidth(v) for v in out[fw]]
    _mark(kinds, fw, "fullwidth")
    sp = np.flatnonzero(live & (u[:, 6] >= 1 - rates.id_spaces))
    out[sp] = [noise.id_spaced(v) for v in out[sp]]
    _mark(kinds, sp, "spaces")
    return out, kinds


def noisy_names(rng: np.random.Generator, name: np.ndarray, rates: SiloNoise) -> tuple[np.ndarray, np.ndarray]:
    n = len(name)
    out = name.astype(object).copy()
    kinds = np.full(n, "", dtype=object)
    u = rng.random((n, 2))
    edges = np.cumsum([rates.name_missing, rates.name_homophone, rates.name_traditional, rates.name_spaced])
    which = np.searchsorted(edges, u[:, 0], side="right")
    for k, kind in enumerate(["missing", "homophone", "traditional", "spaced"]):
        idx = np.flatnonzero(which == k)
        if kind == "missing":
            out[idx] = None
        else:
            new = np.array([noise.name_noisy(v, kind, r) for v, r in zip(out[idx], u[idx, 1], strict=True)], dtype=object)
            changed = idx[new != out[idx]] if len(idx) else idx
            out[idx] = new
            idx = changed
        _mark(kinds, idx, kind)
    return out, kinds


def noisy_phones(rng: np.random.Generator, phone: np.ndarray, old_phone: np.ndarray,
                 rates: SiloNoise) -> tuple[np.ndarray, np.ndarray]:
    n = len(phone)
    out = phone.astype(object).copy()
    kinds = np.full(n, "", dtype=object)
    u = rng.random((n, 3))
    outdated = np.flatnonzero((old_phone != None) & (u[:, 0] < rates.phone_outdated))  # noqa: E711
    out[outdated] = old_phone[outdated]
    _mark(kinds, outdated, "outdated")
    missing = np.flatnonzero((out != None) & (u[:, 1] < rates.phone_missing))  # noqa: E711
    out[missing] = None
    _mark(kinds, missing, "missing")
    fmt = np.flatnonzero((out != None) & (u[:, 2] < rates.phone_formatted))  # noqa: E711
    out[fmt] = [noise.phone_formatted(v, r) for v, r in zip(out[fmt], rng.random(len(fmt)), strict=True)]
    _mark(kinds, fmt, "formatted")
    return out, kinds


def addresses(rng: np.random.Generator, prefix: np.ndarray, compound: np.ndarray, building: np.ndarray,
              unit: np.ndarray | None, room: np.ndarray | None, rates: SiloNoise) -> tuple[np.ndarray, np.ndarray]:
    """Free-hand addresses with this silo's variant and missing-prefix rates (unit/room None: a building)."""
    n = len(prefix)
    if unit is None or room is None:
        unit = room = np.full(n, None, dtype=object)
    u = rng.random((n, 3))
    variant = u[:, 0] < rates.address_variant
    no_prefix = u[:, 1] < rates.address_no_prefix
    out = np.array([
        noise.address_text(p, c, int(b), un if un is None else int(un), r if r is None else int(r), float(v) if var else None, bool(np_))
        for p, c, b, un, r, v, var, np_ in zip(prefix, compound, building, unit, room, u[:, 2], variant,
                                               no_prefix, strict=True)
    ], dtype=object)
    kinds = np.full(n, "", dtype=object)
    _mark(kinds, np.flatnonzero(variant), "variant")
    _mark(kinds, np.flatnonzero(no_prefix), "no_prefix")
    return out, kinds


def or_none(mask: np.ndarray, values) -> np.ndarray:
    """`values` where `mask` holds, None elsewhere (an object array)."""
    out = np.full(len(mask), None, dtype=object)
    vals = np.broadcast_to(np.asarray(values, dtype=object), (len(mask),))
    out[mask] = vals[mask]
    return out


def links(source: str, keys, values, column: str = "person_id") -> pa.Table:
    """Ground-truth rows (source, record_key, <column>) for records of one source."""
    keys = pa.array(np.asarray(keys, dtype=object), pa.string())
    return pa.table({"source": pa.array(np.full(len(keys), source, dtype=object), pa.string()),
                     "record_key": keys, column: pa.array(np.asarray(values, dtype=object), pa.string())})


def ts_array(micros: np.ndarray) -> pa.Array:
    """int64 microseconds (NA = int64 min) as a UTC timestamp array."""
    na = micros == np.iinfo(np.int64).min
    return pa.array(micros, type=pa.int64(), mask=na).cast(pa.timestamp("us", tz="UTC"))


NA = np.iinfo(np.int64).min
