"""Python's cyclic garbage collector paused while a bulk transfer runs (:func:`paused`).

``pydbal.gcpause.PAUSE = False`` turns it off for the process (bench/results/TRANSFER.md has
what it saves)."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

PAUSE = True
"""Whether bulk transfers pause the collector (set False to keep it running)."""
_gc_lock = threading.Lock()
_gc_pauses = 0  # bulk operations running with the collector paused
_gc_resume = False  # whether the collector was enabled when the first of them started


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused (``gc.disable()``) while a bulk transfer runs,
    back on when the last one running ends, if it was on when the first began.

    A bulk transfer holds hundreds of thousands of containers at once (the parsed input, the
    decoded rows: no cycles among them, nothing for the collector to free), and each automatic
    full collection walks every one of them again: on 500 imported 10 KB workflows that was
    about 30 % of import_many (bench/results/TRANSFER.md). Paused, nothing is walked; garbage
    with cycles made meanwhile (by any code of the process) waits until the collector is back
    on, for the seconds a transfer lasts. :data:`PAUSE` False turns this off."""
    global _gc_pauses, _gc_resume
    if not PAUSE:
        yield
        return
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_resume = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_resume:
                gc.enable()
