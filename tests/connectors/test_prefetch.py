"""connectors.common.prefetch: order kept, errors raised where they happened, early stops end the thread."""

from __future__ import annotations

import threading

import pytest

from connectors.common.prefetch import prefetch


def test_items_come_in_order_and_errors_at_their_place():
    def pages():
        yield from range(5)
        raise RuntimeError("page 6 failed")

    got = []
    with pytest.raises(RuntimeError, match="page 6 failed"):
        for item in prefetch(pages()):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]


def test_a_caller_that_stops_early_stops_the_reader():
    fetched = []

    def pages():
        for i in range(1000):
            fetched.append(i)
            yield i

    with pytest.raises(ValueError):
        for item in prefetch(pages(), depth=2):
            if item == 3:
                raise ValueError("schema drift on page 4")
    assert not any(t.name == "prefetch" for t in threading.enumerate())
    assert len(fetched) < 10  # read ahead by at most a few pages, not to the end
