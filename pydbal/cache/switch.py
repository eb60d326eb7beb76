"""``bypass()``: a block whose reads skip every cache tier (``from pydbal.cache import bypass``).

The switch is a context variable, so it holds for the task (and the tasks it starts) that entered
the block, not for other tasks running meanwhile.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_bypass: contextvars.ContextVar[bool] = contextvars.ContextVar("pydbal_cache_bypass", default=False)


@contextlib.contextmanager
def bypass() -> Iterator[None]:
    """Reads inside this block skip every cache tier (and store nothing)."""
    token = _bypass.set(True)
    try:
        yield
    finally:
        _bypass.reset(token)


def bypassed() -> bool:
    """Whether the current task is inside a ``bypass()`` block."""
    return _bypass.get()
