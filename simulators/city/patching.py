"""Run the district generator as one district of the city, without copying it.

The district generator draws one district, 江岸区, whose identity lives in module constants
(division code, name, streets, bounding box, place words) and in two address prefixes and a
department name written as literals. `as_district` swaps those for another district's for the
duration of a call, and hooks three steps so the city can shape who lives where:

- `_unique_ids` avoids ID numbers other districts already issued (two people never share one);
- `build_persons` is followed by `persons_hook(hh, persons)` (movers, cross-district callers);
- `registry_view.build` is followed by `registry_hook(...)` (stale registrations).

Module state is process-wide, so a lock keeps one district at a time; the tests check every
output carries the district's own codes, so a change in the generator that escapes this fails them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np

from simulators.district import divisions, events_view, ids, population, registry_view

from .districts import CITY_NAME, DistrictSpec

HOME_PREFIX = "武汉市江岸区"
HOME_POLICE = "公安江岸分局"
_LOCK = threading.Lock()


def _setattr(stack: ExitStack, obj: Any, name: str, value: Any) -> None:
    old = getattr(obj, name)
    setattr(obj, name, value)
    stack.callback(setattr, obj, name, old)


def avoiding(original: Callable, taken: set[str]) -> Callable:
    """`_unique_ids` that also never returns an ID in `taken` (issued by another district)."""

    def unique_ids(rng: np.random.Generator, division: np.ndarray, birth: np.ndarray, sex: np.ndarray) -> np.ndarray:
        out = original(rng, division, birth, sex)
        while True:
            values = out.tolist()
            seen: set[str] = set()
            bad = []
            for i, v in enumerate(values):
                if v in taken or v in seen:
                    bad.append(i)
                seen.add(v)
            if not bad:
                return out
            idx = np.array(bad)
            div = np.array([int(out[i][:6]) for i in bad])
            ymd = np.array([int(out[i][6:14]) for i in bad])
            seq = rng.integers(0, 500, len(idx)) * 2 + (sex[idx] == "M")
            out[idx] = ids.make_ids(div, ymd, seq)

    return unique_ids


@contextmanager
def as_district(spec: DistrictSpec, index: int, taken_ids: set[str],
                persons_hook: Callable[[Any, Any], None] | None = None,
                registry_hook: Callable[..., Any] | None = None) -> Iterator[None]:
    """Within the block, the district generator draws `spec` (the city's district number `index`)."""
    prefix = CITY_NAME + spec.name
    words = population.PLACE_WORDS
    shift = (11 * index) % len(words)  # each district its own compound and community names
    with _LOCK, ExitStack() as stack:
        _setattr(stack, divisions, "HOME_CODE", spec.code)
        _setattr(stack, divisions, "HOME_DISTRICT", spec.name)
        _setattr(stack, divisions, "STREETS", list(spec.streets))
        _setattr(stack, divisions, "HOME_ORIGINS", spec.home_origins())
        _setattr(stack, population, "LON_RANGE", spec.lon)
        _setattr(stack, population, "LAT_RANGE", spec.lat)
        _setattr(stack, population, "PLACE_WORDS", words[shift:] + words[:shift])
        _setattr(stack, population, "_unique_ids", avoiding(population._unique_ids, taken_ids))
        _setattr(stack, events_view, "HOTLINE", [
            (c, spec.police if d == HOME_POLICE else d, case, w) for c, d, case, w in events_view.HOTLINE])

        def addresses(original: Callable) -> Callable:
            def wrapped(rng, prefixes, *args, **kwargs):  # noqa: ANN001 - the generator's own signature
                fixed = np.array([p.replace(HOME_PREFIX, prefix, 1) for p in prefixes.tolist()], dtype=object)
                return original(rng, fixed, *args, **kwargs)
            return wrapped

        _setattr(stack, events_view, "addresses", addresses(events_view.addresses))
        _setattr(stack, registry_view, "addresses", addresses(registry_view.addresses))
        if persons_hook is not None:
            build_persons = population.build_persons

            def persons(seed, hh, days, outsiders):  # noqa: ANN001
                p = build_persons(seed, hh, days, outsiders)
                persons_hook(hh, p)
                return p

            _setattr(stack, population, "build_persons", persons)
        if registry_hook is not None:
            build_registry = registry_view.build

            def registry(*args, **kwargs):  # noqa: ANN002, ANN003
                return registry_hook(build_registry(*args, **kwargs), *args)

            _setattr(stack, registry_view, "build", registry)
        yield
