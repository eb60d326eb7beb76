"""A blocking facade for code without an event loop (Django, Flask, scripts, notebooks).

``pydbal.connect_sync(...)`` starts one private event-loop thread, opens the async
:class:`pydbal.Database` on it, and returns a :class:`SyncDatabase`. Every call made through the
facade, from any thread, is submitted to that loop and waited for; so the async client is only
ever touched by its own thread, and the facade is safe to share between threads (calls from
several threads run concurrently on the loop, up to the pool size). Scopes, methods, arguments,
return values and errors are the async API's (the workflow methods are generated from it, see
:mod:`pydbal.sync_gen`).

Calling the facade from the loop's own thread (from async code running on it) would wait on
itself: it raises RuntimeError instead. Async code should use ``pydbal.connect``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydbal.sync_portal import Portal, SyncOperations

if TYPE_CHECKING:
    from pydbal.database import Database, Tenant
    from pydbal.health import Health
    from pydbal.sync_workflows import SyncWorkflows

__all__ = ["Portal", "SyncDatabase", "SyncOperations", "SyncTenant", "connect_sync"]


class SyncTenant:
    """A tenant scope of the facade (see :class:`pydbal.Tenant`)."""

    def __init__(self, portal: Portal, scope: Tenant) -> None:
        self._portal = portal
        self._scope = scope
        self._workflows: SyncWorkflows | None = None

    @property
    def tenant_id(self) -> str:
        return self._scope.tenant_id

    @property
    def user_id(self) -> str:
        return self._scope.user_id

    @property
    def role(self) -> str:
        return self._scope.role

    @property
    def workflows(self) -> SyncWorkflows:
        if self._workflows is None:
            from pydbal.sync_workflows import SyncWorkflows

            self._workflows = SyncWorkflows(self._portal, self._scope.workflows)
        return self._workflows


class SyncDatabase:
    """An open database for synchronous code. Create with ``pydbal.connect_sync(...)``."""

    def __init__(self, portal: Portal, db: Database) -> None:
        self._portal = portal
        self._db = db

    @property
    def dsn(self) -> str:
        return self._db.dsn

    @property
    def database(self) -> Database:
        """The async Database (use it only from coroutines run on this facade's loop)."""
        return self._db

    def tenant(self, tenant_id: str, *, user_id: str, role: str = "user") -> SyncTenant:
        """A scope fixing tenant, user and role (no I/O); see :meth:`pydbal.Database.tenant`."""
        return SyncTenant(self._portal, self._db.tenant(tenant_id, user_id=user_id, role=role))

    def fetch(self, query: str, *args: Any) -> list[Any]:
        """:meth:`pydbal.Database.fetch` (operator queries outside the workflow API)."""
        return self._portal.call(self._db.fetch(query, *args))

    def fetchrow(self, query: str, *args: Any) -> Any:
        return self._portal.call(self._db.fetchrow(query, *args))

    def fetchval(self, query: str, *args: Any) -> Any:
        return self._portal.call(self._db.fetchval(query, *args))

    def health(self, probe_timeout: float = 2.0) -> Health:
        return self._portal.call(self._db.health(probe_timeout))

    def cache_stats(self) -> dict[str, dict[str, int]]:
        return self._portal.call(_value(self._db.cache_stats))

    def pool_stats(self) -> dict[str, int]:
        return self._portal.call(_value(self._db.pool_stats))

    def close(self, grace: float = 10.0) -> None:
        """Close the database (see :meth:`pydbal.Database.close`) and stop the loop thread."""
        if self._portal.loop.is_closed():
            return
        try:
            self._portal.call(self._db.close(grace))
        finally:
            self._portal.stop()

    def __enter__(self) -> SyncDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _value(fn: Any) -> Any:
    return fn()


def connect_sync(
    dsn: str | None = None, redis_url: str | None = None, **options: Any
) -> SyncDatabase:
    """``pydbal.connect(dsn, redis_url, **options)`` for synchronous code: returns a
    :class:`SyncDatabase` (also a context manager) whose calls block until they are done."""
    from pydbal.database import connect

    portal = Portal()

    async def open_() -> Database:
        return await connect(dsn, redis_url, **options)

    try:
        db = portal.call(open_())
    except BaseException:
        portal.stop()
        raise
    return SyncDatabase(portal, db)
