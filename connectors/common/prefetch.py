"""Read ahead: run a page iterator in a thread, so the next page is fetched while this one is parsed."""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from typing import Any, TypeVar, cast

T = TypeVar("T")


def prefetch(pages: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """The items of `pages`, produced by a background thread at most `depth` items ahead.

    Waiting on a socket releases the GIL, so an HTTP source's next request runs while the caller
    turns the current page into Arrow. The order is kept; an exception of the iterator is raised
    here at the point it happened; a caller that stops early (an exception of its own) stops the
    thread before the next request.
    """
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in pages:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the caller, raised there
            put(("error", exc))

    worker = threading.Thread(target=run, name="prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "done":
                return
            if kind == "error":
                raise cast(BaseException, value)
            yield cast(T, value)
    finally:
        stop.set()
        worker.join()
