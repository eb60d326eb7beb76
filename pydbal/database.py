"""Opening a database: the connection pool, the schema check, and tenant scopes.

``pydbal.connect()`` finds the server (argument → ``$PYDBAL_DSN`` → an embedded PostgreSQL),
checks that its schema is the one this package expects (migrating the embedded server on first
use; any other server must be migrated with ``pydbal migrate``), and opens an asyncpg pool.
Every request is one statement calling a ``dbal.api_*`` function that sets its own
transaction-local context, so pooled connections never carry session state and the pool's
reset round trip can be skipped.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import orjson

from pydbal import limits as lim
from pydbal import migrate as migrations
from pydbal import queries as q
from pydbal.errors import DBALError, ErrorCode, from_postgres
from pydbal.models import ROLES
from pydbal.server import is_embedded, resolve_dsn

if TYPE_CHECKING:
    from datetime import timedelta

    from pydbal.cache import Cache
    from pydbal.maintenance import Scheduler
    from pydbal.recorder import Recorder
    from pydbal.workflows import Workflows

R = TypeVar("R")


class SchemaOutdatedError(RuntimeError):
    """The database's schema is not the one this version of pydbal needs."""


def _encode_json(value: Any) -> str:
    # Values are pre-encoded by pydbal (str); anything else is encoded here.
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(
            name, encoder=_encode_json, decoder=orjson.loads, schema="pg_catalog"
        )


async def _reset_connection(conn: asyncpg.Connection) -> None:
    # Context is transaction-local: a connection released outside a transaction carries no
    # request state, so asyncpg's reset round trip (advisory unlock, CLOSE ALL, RESET ALL) is
    # only needed when a caller left something open.
    if conn.is_in_transaction():
        await conn.reset()


def translate(exc: BaseException) -> BaseException:
    """The DBALError for a database error, or the error itself."""
    mapped = from_postgres(exc)
    return mapped if mapped is not None else exc


class Database:
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
        self._pool = pool
        self.dsn = dsn
        self.embedded = embedded
        self.cache = cache
        self.limits = limits
        self._recorder: Recorder | None = None
        #: The in-process maintenance scheduler when this process runs one (see connect()).
        self.scheduler: Scheduler | None = None

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

    # -- statements ---------------------------------------------------------------------------
    async def _run(self, fn: Callable[[asyncpg.Connection], Awaitable[R]]) -> R:
        try:
            async with self._pool.acquire() as conn:
                return await fn(conn)
        except (asyncpg.PostgresError, asyncpg.DataError) as exc:
            raise translate(exc) from exc

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run(lambda c: c.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._run(lambda c: c.fetchrow(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._run(lambda c: c.fetchval(query, *args))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside one transaction; database errors become DBALError."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                yield conn
        except (asyncpg.PostgresError, asyncpg.DataError) as exc:
            raise translate(exc) from exc

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

    async def close(self) -> None:
        if self.scheduler is not None:
            scheduler, self.scheduler = self.scheduler, None
            await scheduler.stop()
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            await recorder.close()
        await self.cache.close()
        await self._pool.close()

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


async def _check_schema(dsn: str, embedded: bool, auto_migrate: bool | None) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval(q.LEDGER_EXISTS)
        version = await conn.fetchval(q.SCHEMA_VERSION) if exists else None
    finally:
        await conn.close()
    expected = migrations.SCHEMA_VERSION
    if version == expected:
        return
    if version is not None and version > expected:
        raise SchemaOutdatedError(
            f"the database's schema ({version}) is newer than this pydbal ({expected}): "
            "upgrade the package"
        )
    if auto_migrate if auto_migrate is not None else embedded:
        await migrations.migrate(dsn)
        return
    raise SchemaOutdatedError(
        f"the database's schema is {version or 'not installed'}, pydbal needs {expected}: "
        "run `pydbal migrate --dsn ...` (as a superuser) first"
    )


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
) -> Database:
    from pydbal.cache import Cache

    resolved = resolve_dsn(dsn)
    embedded = is_embedded(resolved)
    await _check_schema(resolved, embedded, auto_migrate)
    pool = await asyncpg.create_pool(
        resolved,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        statement_cache_size=statement_cache_size,
        init=_init_connection,
        reset=_reset_connection,
        **pool_options,
    )
    redis = redis_url if redis_url is not None else os.environ.get("PYDBAL_REDIS_URL")
    cache = Cache(redis, **cache_options)
    db = Database(pool, resolved, embedded=embedded, cache=cache, limits=limits)
    await cache.start(db)
    run_maintenance = (
        maintenance if maintenance is not None else (embedded or bool(maintenance_dsn))
    )
    if run_maintenance:
        from pydbal.maintenance import Scheduler

        db.scheduler = Scheduler(maintenance_dsn or resolved, interval=maintenance_interval)
        db.scheduler.start()
    return db


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
    **pool_options: Any,
) -> _Connecting:
    """Open pydbal's database.

    ``dsn``: None → ``$PYDBAL_DSN`` → an embedded PostgreSQL under ``$PYDBAL_HOME`` (or a
    per-user data directory), migrated on first use. ``redis_url``: None →
    ``$PYDBAL_REDIS_URL`` → an in-process warm cache. ``statement_cache_size=0`` for PgBouncer
    in transaction mode. ``auto_migrate`` (default: only for the embedded server) migrates a
    database whose schema is behind. ``cache``: options of :class:`pydbal.cache.Cache`.
    ``limits``: input limits to change (:class:`pydbal.limits.Limits` field names; each must lie
    within the database's hard limit, else ``ValueError``).
    Other keyword arguments go to ``asyncpg.create_pool``.
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
    )
