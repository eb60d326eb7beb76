"""The one wrapper every public workflow operation goes through, and the telemetry hooks.

- :func:`operations` (a class decorator, applied once to ``Workflows``) wraps each public
  coroutine method and each public async context manager so that the call
  (1) is refused with :class:`DatabaseClosedError` once ``Database.close()`` has begun,
  (2) is counted as in flight while it runs (``close()`` waits for these), and
  (3) when telemetry is on (``connect(telemetry=...)``), runs inside a span with its latency
  recorded. With telemetry off the only extra cost is one ``is None`` check: no OpenTelemetry
  module is imported (``pydbal.telemetry`` holds everything that needs it).
- :func:`note_cache` is how the cache tells the current operation which tier answered.
- :func:`add_gauge` / :func:`add_count` let other modules (the execution recorder, for one)
  publish their own figures through the same meter without importing OpenTelemetry; both are
  no-ops while telemetry is off.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import asyncpg

if TYPE_CHECKING:
    from pydbal.database import Database

C = TypeVar("C", bound=type)

TenantMode = Literal["raw", "hashed", "omit"]


class DatabaseClosedError(asyncpg.InterfaceError):  # type: ignore[misc]  # untyped base
    """The Database is closing or closed: no new operation starts. (An ``InterfaceError``, as
    asyncpg's "pool is closed" was before ``close()`` learned to drain.)"""


@dataclass
class TelemetryOptions:
    """How ``connect(telemetry=...)`` traces and measures (``telemetry=True``: these defaults).

    ``tenant``: the span attribute ``pydbal.tenant`` holds the tenant id as is (``"raw"``), a
    keyed hash of it (``"hashed"``, the default: correlatable, not readable) or nothing
    (``"omit"``). ``tracer_provider`` / ``meter_provider``: None uses the global ones.
    """

    tenant: TenantMode = "hashed"
    tenant_salt: str = ""
    tracer_provider: Any = None
    meter_provider: Any = None


@dataclass
class OpRecord:
    """What one running operation learned about itself (filled by the cache)."""

    name: str
    cache_tier: str | None = None
    cache_hit: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


current_op: contextvars.ContextVar[OpRecord | None] = contextvars.ContextVar(
    "pydbal_current_op", default=None
)


def note_cache(tier: str, hit: bool) -> None:
    """Called by the cache: tier ``hot``/``warm`` answered (hit) or was missed."""
    rec = current_op.get()
    if rec is not None:
        rec.cache_tier = tier
        rec.cache_hit = hit


class Tracer(Protocol):
    """What ``pydbal.telemetry.Telemetry`` offers to the wrapper (kept import-free here)."""

    def attach(self, db: Database) -> None: ...

    def run(self, name: str, tenant: str, call: Awaitable[Any]) -> Awaitable[Any]: ...

    def span(self, name: str, tenant: str) -> contextlib.AbstractAsyncContextManager[Any]: ...

    def gauge(
        self, name: str, callback: Callable[[], float | int | None], description: str, unit: str
    ) -> None: ...

    def count(self, name: str, amount: int | float, attributes: Mapping[str, Any]) -> None: ...


def _closed(db: Database) -> DatabaseClosedError:
    return DatabaseClosedError("the database is closing or closed: open a new one with connect()")


@contextlib.contextmanager
def _inflight(db: Any) -> Iterator[None]:
    """Count an operation of ``db`` while it runs (``close()`` drains them); refused with
    :class:`DatabaseClosedError` once the database is closing."""
    if db._closing:
        raise _closed(db)
    db._inflight += 1
    try:
        yield
    finally:
        db._inflight -= 1
        if db._inflight == 0 and db._drained is not None:
            db._drained.set()


def _wrap_coroutine(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def operation(self: Any, *args: Any, **kwargs: Any) -> Any:
        db = self._db
        with _inflight(db):
            tel = db._telemetry
            if tel is None:
                return await fn(self, *args, **kwargs)
            return await tel.run(name, self._scope.tenant_id, fn(self, *args, **kwargs))

    return operation


def _wrap_context(
    name: str, fn: Callable[..., contextlib.AbstractAsyncContextManager[Any]]
) -> Callable[..., Any]:
    @functools.wraps(fn)
    @contextlib.asynccontextmanager
    async def operation(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        db = self._db
        with _inflight(db):
            tel = db._telemetry
            if tel is None:
                async with fn(self, *args, **kwargs) as value:
                    yield value
            else:
                async with (
                    tel.span(name, self._scope.tenant_id),
                    fn(self, *args, **kwargs) as value,
                ):
                    yield value

    return operation


def operations(cls: C) -> C:
    """Wrap every public coroutine method and async context manager of ``cls`` (see above)."""
    for name, attr in list(vars(cls).items()):
        if name.startswith("_") or not callable(attr):
            continue
        target = inspect.unwrap(attr)
        if inspect.iscoroutinefunction(attr):
            setattr(cls, name, _wrap_coroutine(name, attr))
        elif inspect.isasyncgenfunction(target) and hasattr(attr, "__wrapped__"):
            setattr(cls, name, _wrap_context(name, attr))
    return cls


# -- hooks for other modules ------------------------------------------------------------------


def add_gauge(
    db: Database,
    name: str,
    callback: Callable[[], float | int | None],
    *,
    description: str = "",
    unit: str = "",
) -> None:
    """Publish ``callback()`` as the gauge ``name`` (e.g. ``pydbal.recorder.queue_depth``);
    read at each metrics collection; a None return is skipped. No-op without telemetry."""
    tel = db._telemetry
    if tel is not None:
        tel.gauge(name, callback, description, unit)


def add_count(
    db: Database, name: str, amount: int | float = 1, attributes: Mapping[str, Any] | None = None
) -> None:
    """Add ``amount`` to the counter ``name`` (e.g. ``pydbal.recorder.refusals``). No-op without
    telemetry."""
    tel = db._telemetry
    if tel is not None:
        tel.count(name, amount, attributes or {})
