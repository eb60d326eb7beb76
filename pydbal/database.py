"""Opening a database, and the objects it is used through: ``Database`` and ``Tenant``.

``pydbal.connect()`` finds the server (argument → ``$PYDBAL_DSN`` → an embedded PostgreSQL),
checks that its schema is the one this package expects and opens an asyncpg pool
(:mod:`pydbal.pool`), then builds the Database (statements: :mod:`pydbal.statements`), its cache
(:mod:`pydbal.cache`), the background re-validator (:mod:`pydbal.revalidate`; the cache holds it
to report and stop it), and when asked the maintenance scheduler and telemetry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

import asyncpg

from pydbal import limits as lim
from pydbal import queries as q
from pydbal.cache import Cache
from pydbal.errors import DBALError, ErrorCode
from pydbal.instrument import TelemetryOptions, Tracer
from pydbal.models import ROLES
from pydbal.pool import SchemaOutdatedError, open_pool
from pydbal.revalidate import Revalidator
from pydbal.server import is_embedded, resolve_dsn
from pydbal.statements import Statements, translate

if TYPE_CHECKING:
    from datetime import timedelta

    from pydbal.health import Health
    from pydbal.maintenance import Scheduler
    from pydbal.recorder import Recorder
    from pydbal.workflows import Workflows

__all__ = ["Database", "SchemaOutdatedError", "Tenant", "connect", "translate"]

log = logging.getLogger("pydbal")
CloseHook = Callable[[], Awaitable[None]]


class Database(Statements):
    """An open pydbal database. Create with ``await pydbal.connect(...)``."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        dsn: str,
        *,
        embedded: bool,
        cache: Cache,
        limits: lim.Limits = lim.DEFAULTS,
    ) -> None:
        super().__init__(pool)
        self.dsn = dsn
        self.embedded = embedded
        self.cache = cache
        self.limits = limits
        self._recorder: Recorder | None = None
        #: The in-process maintenance scheduler when this process runs one (see connect()).
        self.scheduler: Scheduler | None = None
        self._telemetry: Tracer | None = None
        self._inflight = 0  # public operations running (pydbal.instrument)
        self._closed: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None
        self._close_hooks: list[tuple[str, CloseHook]] = []

    # -- tenant scopes ------------------------------------------------------------------------
    def tenant(self, tenant_id: str, *, user_id: str, role: str = "user") -> Tenant:
        """A scope fixing tenant, user and role for every call made through it (no I/O)."""
        limits = self.limits
        lim.text(tenant_id, "tenant_id", limits.tenant_id_length, "tenant_id_length")
        lim.text(user_id, "user_id", limits.user_id_length, "user_id_length")
        if not isinstance(role, str) or role not in ROLES:
            raise DBALError(
                ErrorCode.VALIDATION_ERROR,
                f"unknown role {role!r}: use one of {', '.join(ROLES)}",
                {"role": role},
            )
        return Tenant(self, tenant_id, user_id, role)

    # -- the batched recorder -----------------------------------------------------------------
    def recorder(self, **options: Any) -> Recorder:
        """A new batched execution recorder (``async with db.recorder(...) as rec``); options:
        ``batch_size``, ``max_delay``, ``max_queue``, ``on_error``, ``retry_for``,
        ``concurrency``, ``keep_results`` (see :mod:`pydbal.recorder`)."""
        from pydbal.recorder import Recorder

        return Recorder(self, **options)

    @property
    def shared_recorder(self) -> Recorder:
        """The recorder of ``executing(..., record="batched")``: created on first use, results
        not kept (refusals are logged), flushed and closed by :meth:`close`."""
        if self._recorder is None:
            self._recorder = self.recorder(keep_results=False)
        return self._recorder

    # -- lifecycle ----------------------------------------------------------------------------
    def cache_stats(self) -> dict[str, dict[str, int]]:
        """Hits, misses and evictions per cache tier."""
        return self.cache.stats()

    def pool_stats(self) -> dict[str, int]:
        """Connections of the pool: size, idle, in use, and statements waiting for one; and the
        public operations in flight."""
        pool = self._pool
        size = pool.get_size()
        idle = pool.get_idle_size() + len(self._idle)  # in the pool, or checked out and idle
        return {
            "size": size,
            "idle": idle,
            "in_use": size - idle,
            "waiting": sum(1 for f in self._waiters if not f.done()),
            "min": pool.get_min_size(),
            "max": pool.get_max_size(),
            "in_flight": self._inflight,
        }

    async def health(self, probe_timeout: float = 2.0) -> Health:
        """Database reachable (and its latency), schema version, Redis, pool, background tasks;
        ``status`` is healthy, degraded or unreachable. Never raises for a failed check; the
        database gets ``probe_timeout`` seconds to answer."""
        from pydbal.health import check

        return await check(self, probe_timeout)

    def on_close(self, name: str, hook: CloseHook) -> None:
        """Run ``await hook()`` during ``close()``, after in-flight operations finished (or the
        timeout passed) and before the pool closes: the place to flush buffered writes."""
        self._close_hooks.append((name, hook))

    @property
    def closing(self) -> bool:
        return self._closing

    async def close(self, grace: float = 10.0) -> None:
        """Stop accepting operations, wait up to ``grace`` seconds for those in flight, run
        the ``on_close`` hooks, stop background tasks and close the pool (terminating
        connections still busy when the time is up). Never waits longer than about ``grace``
        plus a few seconds; calling it again waits for the first call."""
        if self._closing:
            if self._closed is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), grace + 5.0)
            return
        self._closing = True
        self._closed = asyncio.Event()
        deadline = time.monotonic() + max(0.0, grace)

        def left(minimum: float = 0.0) -> float:
            return max(minimum, deadline - time.monotonic())

        try:
            await self._bounded("stopping the re-validator", self.cache.stop_background(), 1.0)
            if self._inflight:
                self._drained = asyncio.Event()
                try:
                    await asyncio.wait_for(self._drained.wait(), left())
                except TimeoutError:
                    log.warning(
                        "close(): %d operation(s) still running after %.1f s; closing anyway",
                        self._inflight,
                        grace,
                    )
            if self.scheduler is not None:
                scheduler, self.scheduler = self.scheduler, None
                await self._bounded(
                    "stopping the maintenance scheduler", scheduler.stop(), left(1.0)
                )
            if self._recorder is not None:
                recorder, self._recorder = self._recorder, None
                await self._bounded("flushing the recorder", recorder.close(), left(1.0))
            for name, hook in self._close_hooks:
                await self._bounded(f"close hook {name!r}", hook(), left(1.0))
            await self._bounded("closing the cache", self.cache.close(), 2.0)
            await self._release_idle()
            try:
                await asyncio.wait_for(self._pool.close(), left(0.5))
            except (TimeoutError, Exception) as exc:
                if not isinstance(exc, TimeoutError):
                    log.warning("close(): closing the pool failed: %s", exc)
                self._pool.terminate()
        finally:
            self._closed.set()

    @staticmethod
    async def _bounded(what: str, call: Awaitable[Any], limit: float) -> None:
        try:
            await asyncio.wait_for(call, limit)
        except TimeoutError:
            log.warning("close(): %s took longer than %.1f s; skipped", what, limit)
        except Exception:
            log.exception("close(): %s failed", what)

    async def __aenter__(self) -> Database:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Tenant:
    """Operations of one tenant, as one user with one role. Get it from ``Database.tenant``."""

    def __init__(self, db: Database, tenant_id: str, user_id: str, role: str) -> None:
        self.db = db
        self.tenant_id = tenant_id
        self.user_id = user_id
        self.role = role
        self._workflows: Workflows | None = None

    @property
    def workflows(self) -> Workflows:
        if self._workflows is None:
            from pydbal.workflows import Workflows

            self._workflows = Workflows(self)
        return self._workflows

    @property
    def ctx(self) -> tuple[str, str, str]:
        """The first three arguments of every entry point: tenant, user, role."""
        return (self.tenant_id, self.user_id, self.role)

    async def retention(self) -> dict[str, timedelta]:
        """This tenant's effective retention per kind (executions, stats_hourly, stats_daily,
        audit): its own override, else the operator's default."""
        rows = await self.db.fetch(q.RETENTION, *self.ctx)
        return {r["kind"]: r["keep"] for r in rows}

    async def set_retention(self, kind: str, keep: timedelta | None) -> timedelta:
        """Set this tenant's retention of one kind (``None``: back to the default); returns the
        effective value. Admin, god and supergod only (else FORBIDDEN), and not longer than the
        default (FORBIDDEN) unless the login is an operator (superuser)."""
        return await self.db.fetchval(q.SET_RETENTION, *self.ctx, kind, keep)  # type: ignore[no-any-return]


async def _open(
    dsn: str | None,
    redis_url: str | None,
    *,
    min_size: int,
    max_size: int,
    command_timeout: float | None,
    statement_cache_size: int,
    auto_migrate: bool | None,
    cache_options: dict[str, Any],
    limits: lim.Limits,
    pool_options: dict[str, Any],
    maintenance: bool | None = None,
    maintenance_dsn: str | None = None,
    maintenance_interval: float = 15.0,
    pgbouncer: bool,
    telemetry: bool | TelemetryOptions | None,
) -> Database:
    tracer: Tracer | None = None
    if telemetry:
        tracer = _telemetry(telemetry)
    resolved = resolve_dsn(dsn)
    embedded = is_embedded(resolved)
    pool = await open_pool(
        resolved,
        embedded=embedded,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        statement_cache_size=statement_cache_size,
        auto_migrate=auto_migrate,
        pgbouncer=pgbouncer,
        pool_options=pool_options,
    )
    redis = redis_url if redis_url is not None else os.environ.get("PYDBAL_REDIS_URL")
    cache = Cache(redis, **cache_options)
    db = Database(pool, resolved, embedded=embedded, cache=cache, limits=limits)
    await cache.start(db)
    if cache.options["revalidate"]:
        # The database owns the re-validator (it reads through db's tenant scopes); the cache
        # holds it to report it in background() and stop it first when closing.
        cache.revalidator = Revalidator(
            cache,
            db,
            interval=float(cache.options["revalidate_interval"]),
            batch=int(cache.options["revalidate_batch"]),
        )
        cache.revalidator.start()
    run_maintenance = (
        maintenance if maintenance is not None else (embedded or bool(maintenance_dsn))
    )
    if run_maintenance:
        from pydbal.maintenance import Scheduler

        db.scheduler = Scheduler(maintenance_dsn or resolved, interval=maintenance_interval)
        db.scheduler.start()
    if tracer is not None:
        db._telemetry = tracer
        tracer.attach(db)
    return db


def _telemetry(option: bool | TelemetryOptions) -> Tracer:
    try:
        from pydbal.telemetry import Telemetry
    except ImportError as exc:
        raise RuntimeError(
            f"telemetry needs OpenTelemetry ({exc}): pip install 'pydbal[otel]'"
        ) from None
    return Telemetry(option if isinstance(option, TelemetryOptions) else TelemetryOptions())


class _Connecting:
    """What ``connect()`` returns: await it, or use it with ``async with``."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._db: Database | None = None

    def __await__(self) -> Generator[Any, None, Database]:
        return _open(**self._kwargs).__await__()

    async def __aenter__(self) -> Database:
        self._db = await _open(**self._kwargs)
        return self._db

    async def __aexit__(self, *exc: object) -> None:
        if self._db is not None:
            await self._db.close()


def connect(
    dsn: str | None = None,
    redis_url: str | None = None,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float | None = 60.0,
    statement_cache_size: int = 100,
    auto_migrate: bool | None = None,
    cache: dict[str, Any] | None = None,
    limits: dict[str, int] | None = None,
    maintenance: bool | None = None,
    maintenance_dsn: str | None = None,
    maintenance_interval: float = 15.0,
    pgbouncer: bool = False,
    telemetry: bool | TelemetryOptions | None = None,
    **pool_options: Any,
) -> _Connecting:
    """Open pydbal's database.

    ``dsn``: None → ``$PYDBAL_DSN`` → an embedded PostgreSQL under ``$PYDBAL_HOME`` (or a
    per-user data directory), migrated on first use. ``redis_url``: None →
    ``$PYDBAL_REDIS_URL`` → an in-process warm cache. ``pgbouncer=True`` (the same as
    ``statement_cache_size=0``) when the DSN points at PgBouncer in transaction or statement
    mode. ``auto_migrate`` (default: only for the embedded server) migrates a database whose
    schema is behind. ``cache``: options of :class:`pydbal.cache.Cache`. ``limits``: input limits
    to change (:class:`pydbal.limits.Limits` field names; each must lie within the database's
    hard limit, else ``ValueError``). ``maintenance``: run the maintenance scheduler in this
    process (default: on the embedded server, or when ``maintenance_dsn`` is given).
    ``telemetry``: True or a :class:`pydbal.TelemetryOptions` for OpenTelemetry spans and
    metrics (needs ``pydbal[otel]``). Other keyword arguments go to ``asyncpg.create_pool``.
    """
    return _Connecting(
        dsn=dsn,
        redis_url=redis_url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        statement_cache_size=statement_cache_size,
        auto_migrate=auto_migrate,
        cache_options=cache or {},
        limits=lim.DEFAULTS.configured(limits),
        pool_options=pool_options,
        maintenance=maintenance,
        maintenance_dsn=maintenance_dsn,
        maintenance_interval=maintenance_interval,
        pgbouncer=pgbouncer,
        telemetry=telemetry,
    )
