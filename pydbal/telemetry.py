"""OpenTelemetry spans and metrics for pydbal (the ``pydbal[otel]`` extra).

Imported only by ``pydbal.connect(telemetry=...)``; nothing else in pydbal imports OpenTelemetry.

Spans: one per public operation, named ``pydbal.<operation>`` (``pydbal.get``,
``pydbal.create``, ``pydbal.executing``…), kind INTERNAL, with the attributes

- ``db.system.name`` = ``postgresql``, ``pydbal.operation``;
- ``pydbal.tenant``: the tenant id, a keyed hash of it, or absent (``TelemetryOptions.tenant``);
- ``pydbal.cache.tier`` (``hot``/``warm``) and ``pydbal.cache.hit`` when a cache tier answered
  or was missed;
- ``pydbal.rows``: rows returned or affected (a list's length, a page's items, a count, 1 for
  one object, 0 for None/False);
- on failure: status ERROR, the exception recorded, ``error.type`` and, for a
  :class:`pydbal.DBALError`, ``pydbal.error.code`` (its numeric code).

An operation that another operation calls internally (``upsert`` calling ``find_first`` and
``create``) is part of its caller's span, not a span of its own; the statements it sends are
children of that span when ``opentelemetry-instrumentation-asyncpg`` is installed and on, so each
statement appears once, under the operation that sent it.

Metrics (meter ``pydbal``):

- ``pydbal.operation.duration`` (histogram, s; ``pydbal.operation``, ``pydbal.outcome``
  ok/error, ``pydbal.error.code``);
- ``pydbal.cache.hits`` / ``pydbal.cache.misses`` (observable counters; ``pydbal.cache.tier``);
- ``pydbal.pool.size`` / ``pydbal.pool.in_use`` / ``pydbal.pool.idle`` / ``pydbal.pool.waiting``
  / ``pydbal.pool.max`` and ``pydbal.operations.in_flight`` (observable gauges);
- ``pydbal.redis.available`` (observable gauge: 1 answering, 0 not; only with Redis);
- whatever other modules add through ``pydbal.instrument.add_gauge`` / ``add_count``.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Counter, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel

from pydbal.errors import DBALError
from pydbal.instrument import OpRecord, TelemetryOptions, current_op
from pydbal.models import Page

if TYPE_CHECKING:
    from pydbal.database import Database

_SCOPE = "pydbal"
DURATION_BUCKETS = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
]  # fmt: skip


def _version() -> str:
    from pydbal._version import __version__

    return __version__


def rows_of(value: Any) -> int:
    """Rows an operation returned or affected, for ``pydbal.rows``."""
    if value is None or value is False:
        return 0
    if value is True:
        return 1
    if isinstance(value, int):
        return value
    if isinstance(value, Page):
        return len(value.items)
    if isinstance(value, list | tuple):
        return len(value)
    return 1 if isinstance(value, BaseModel) else 0


class Telemetry:
    """Spans and metrics of one Database (see the module's docstring)."""

    def __init__(self, options: TelemetryOptions) -> None:
        if options.tenant not in ("raw", "hashed", "omit"):
            raise ValueError(f"tenant must be raw, hashed or omit, not {options.tenant!r}")
        self.options = options
        self._tracer = trace.get_tracer(_SCOPE, _version(), tracer_provider=options.tracer_provider)
        self._meter = metrics.get_meter(_SCOPE, _version(), meter_provider=options.meter_provider)
        self._duration = self._meter.create_histogram(
            "pydbal.operation.duration",
            unit="s",
            description="Duration of pydbal operations",
            # seconds: the SDK's default buckets (0 … 10 000) suit milliseconds
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._counters: dict[str, Counter] = {}
        self._gauges: set[str] = set()
        self._tenant_keys: dict[str, str] = {}
        self._db: weakref.ref[Database] | None = None

    # -- attributes ---------------------------------------------------------------------------
    def _tenant(self, tenant: str) -> str | None:
        mode = self.options.tenant
        if mode == "raw":
            return tenant
        if mode == "omit":
            return None
        cached = self._tenant_keys.get(tenant)
        if cached is None:
            digest = hashlib.blake2b(
                tenant.encode(), key=self.options.tenant_salt.encode()[:64], digest_size=8
            )
            cached = digest.hexdigest()
            if len(self._tenant_keys) < 10_000:
                self._tenant_keys[tenant] = cached
        return cached

    def _start_attributes(self, name: str, tenant: str) -> dict[str, Any]:
        attrs: dict[str, Any] = {"db.system.name": "postgresql", "pydbal.operation": name}
        shown = self._tenant(tenant)
        if shown is not None:
            attrs["pydbal.tenant"] = shown
        return attrs

    # -- operations ---------------------------------------------------------------------------
    async def run(self, name: str, tenant: str, call: Awaitable[Any]) -> Any:
        """Await ``call`` as operation ``name``: a span (unless inside another operation, whose
        span it is part of), with the cache tier it was served from and the rows returned."""
        if current_op.get() is not None:  # called by another operation: part of its span
            return await call
        record = OpRecord(name)
        token = current_op.set(record)
        try:
            async with self.span(name, tenant) as span:
                try:
                    value = await call
                finally:
                    if record.cache_tier is not None:
                        span.set_attribute("pydbal.cache.tier", record.cache_tier)
                        span.set_attribute("pydbal.cache.hit", bool(record.cache_hit))
                span.set_attribute("pydbal.rows", rows_of(value))
                return value
        finally:
            current_op.reset(token)

    @contextlib.asynccontextmanager
    async def span(self, name: str, tenant: str) -> AsyncIterator[Any]:
        """A span around one operation or a block (``executing``: operations inside it are
        spans of their own, children of this one); an exception marks it failed and is
        re-raised; the duration is recorded with the outcome either way."""
        started = time.perf_counter()
        outcome: dict[str, Any] = {"pydbal.operation": name, "pydbal.outcome": "ok"}
        try:
            with self._tracer.start_as_current_span(
                f"pydbal.{name}",
                kind=SpanKind.INTERNAL,
                attributes=self._start_attributes(name, tenant),
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    yield span
                except BaseException as exc:
                    self._failed(span, exc, outcome)
                    raise
        finally:
            self._duration.record(time.perf_counter() - started, outcome)

    @staticmethod
    def _failed(span: Any, exc: BaseException, outcome: dict[str, Any]) -> None:
        outcome["pydbal.outcome"] = "error"
        span.set_attribute("error.type", type(exc).__qualname__)
        if isinstance(exc, DBALError):
            span.set_attribute("pydbal.error.code", int(exc.code))
            outcome["pydbal.error.code"] = int(exc.code)
            span.set_status(Status(StatusCode.ERROR, f"{exc.code.name}: {exc.message}"))
        else:
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.record_exception(exc)

    # -- metrics ------------------------------------------------------------------------------
    def attach(self, db: Database) -> None:
        """Register the observable instruments that read ``db`` (held weakly)."""
        self._db = weakref.ref(db)
        m = self._meter
        m.create_observable_counter(
            "pydbal.cache.hits", [self._cache("hits")], description="Cache hits per tier"
        )
        m.create_observable_counter(
            "pydbal.cache.misses", [self._cache("misses")], description="Cache misses per tier"
        )
        for key, description in (
            ("size", "Connections in the pool"),
            ("in_use", "Connections in use"),
            ("idle", "Idle connections"),
            ("waiting", "Statements waiting for a connection"),
            ("max", "Largest pool size"),
        ):
            m.create_observable_gauge(
                f"pydbal.pool.{key}", [self._pool(key)], description=description
            )
        m.create_observable_gauge(
            "pydbal.operations.in_flight",
            [self._pool("in_flight")],
            description="Public operations running",
        )
        if db.cache.redis["configured"]:
            m.create_observable_gauge(
                "pydbal.redis.available",
                [self._redis],
                description="1 while Redis answers, 0 while it does not",
            )

    def _live(self) -> Database | None:
        db = self._db() if self._db is not None else None
        if db is None or db.closing:
            return None
        return db

    def _cache(self, what: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            db = self._live()
            if db is None:
                return []
            stats = db.cache_stats()
            return [Observation(stats[t][what], {"pydbal.cache.tier": t}) for t in ("hot", "warm")]

        return observe

    def _pool(self, key: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_: CallbackOptions) -> Iterable[Observation]:
            db = self._live()
            return [] if db is None else [Observation(db.pool_stats()[key])]

        return observe

    def _redis(self, _: CallbackOptions) -> Iterable[Observation]:
        db = self._live()
        return [] if db is None else [Observation(int(bool(db.cache.redis["available"])))]

    def gauge(
        self, name: str, callback: Callable[[], float | int | None], description: str, unit: str
    ) -> None:
        if name in self._gauges:
            raise ValueError(f"gauge {name!r} is already registered")
        self._gauges.add(name)

        def observe(_: CallbackOptions) -> Iterable[Observation]:
            value = callback()
            return [] if value is None else [Observation(value)]

        self._meter.create_observable_gauge(name, [observe], description=description, unit=unit)

    def count(self, name: str, amount: int | float, attributes: Mapping[str, Any]) -> None:
        counter = self._counters.get(name)
        if counter is None:
            counter = self._counters[name] = self._meter.create_counter(name)
        counter.add(amount, dict(attributes))
