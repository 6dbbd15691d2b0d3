"""Modules Great Expectations imports at start-up but only uses inside functions we never call.

`import great_expectations` loads every expectation class it ships, and one of them
(`expect_column_kl_divergence_to_be_less_than`) imports `scipy.stats` and `altair` at module
level, only to call `stats.entropy` and `alt.Chart` inside its methods. Those two imports were
about a third of GE's import time (scipy.stats 3.9 s and altair 1.8 s of 16 s under
`python -X importtime -c "import expectations.runner"`, issue #19), paid by every validate task.

`defer()` puts a stand-in module in their place before GE is imported: `import altair as alt` and
`from scipy import stats` bind the stand-in, and its first attribute lookup (`stats.entropy`,
`alt.Chart`) imports the real module and forwards to it. Nothing is changed in what GE does; a
suite that uses the KL-divergence expectation loads scipy.stats then. (The standard library's
`importlib.util.LazyLoader` does not do here: on Python 3.11 an `import altair` statement reads
the module's `__spec__`, which loads a lazy module at once.)
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

# What GE binds at import time and only uses later (checked against GE 1.24.x's sources:
# `import altair as alt` and `from scipy import stats` in expect_column_kl_divergence_to_be_less_than,
# `from scipy import stats` in two column-aggregate metrics, all used inside functions).
DEFERRED = ("scipy.stats", "altair")


class _Deferred(types.ModuleType):
    """A module not imported yet: the first attribute it lacks imports the real one."""

    def __getattr__(self, attr: str) -> object:
        name = self.__name__
        real = sys.modules.get(name)
        if real is None or real is self:
            sys.modules.pop(name, None)
            real = importlib.import_module(name)  # also rebinds the parent package's attribute
        return getattr(real, attr)


def defer(*names: str) -> list[str]:
    """Put a stand-in for each module not imported yet; return the names deferred."""
    deferred = []
    for name in names or DEFERRED:
        if name in sys.modules:
            continue
        parent, _, child = name.rpartition(".")
        spec = importlib.util.find_spec(name)  # imports the parent package (scipy itself is light)
        if spec is None:
            continue
        stand_in = _Deferred(name)
        stand_in.__spec__ = spec  # an `import` statement reads it; it must not trigger the load
        stand_in.__file__ = spec.origin
        # no __path__: importing a submodule (altair.vegalite) asks for it, which loads the real package
        sys.modules[name] = stand_in
        if parent:
            setattr(sys.modules[parent], child, stand_in)
        deferred.append(name)
    return deferred
