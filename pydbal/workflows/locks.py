"""The lease locks of :class:`pydbal.workflows.Workflows`: acquire, renew and release (by
the holder, or by admin and up), and releasing the tenant's expired leases.

The rules (who may hold, fencing tokens, expiry) are the database's: ``sql/40_locks.sql``. Each
call invalidates what ``invalidation.INVALIDATES`` names for it.
"""

from __future__ import annotations

from typing import Any

from pydbal import queries as q
from pydbal.errors import DBALError, ErrorCode
from pydbal.instrument import operations
from pydbal.models import Lock
from pydbal.workflows.writes import Writes


@operations  # every public method: refused once closing, counted in flight, traced when on
class Locks(Writes):
    """Lease locks with fencing tokens (re-validates through :class:`Writes` when stale)."""

    async def acquire_lock(self, workflow_id: Any, timeout_ms: int = 30000) -> Lock | None:
        """A lease lock with a fencing token, or None while someone holds one. A stale or
        never-validated workflow is validated once before refusing it."""
        wid = self._id(workflow_id)
        timeout_ms = self._lease(timeout_ms)
        for attempt in range(2):
            try:
                row = await self._db.fetchrow(q.ACQUIRE_LOCK, *self._ctx, wid, timeout_ms)
            except DBALError as exc:
                stale = exc.details.get("validation_status") in ("stale", "pending")
                if exc.code == ErrorCode.VALIDATION_STATUS_INVALID and stale and attempt == 0:
                    current = await self._existing(wid)
                    await self._store_validation(current)
                    continue
                raise
            if row is None:
                return None
            await self._after_write("acquire_lock", [wid])
            return Lock(workflow_id=wid, token=row["token"], expires_at=row["expires_at"])
        return None  # pragma: no cover - the loop always returns or raises

    async def renew_lock(
        self, workflow_id: Any, lock: Lock, timeout_ms: int = 30000
    ) -> Lock | None:
        """The extended lock, or None once it was lost."""
        wid = self._id(workflow_id)
        lock = self._lock(lock)
        timeout_ms = self._lease(timeout_ms)
        expires = await self._db.fetchval(q.RENEW_LOCK, *self._ctx, wid, lock.token, timeout_ms)
        if expires is None:
            return None
        await self._after_write("renew_lock", [wid])
        return Lock(workflow_id=wid, token=lock.token, expires_at=expires)

    async def release_lock(self, workflow_id: Any, lock: Lock | None = None) -> bool:
        """Release by the holder (with its lock) or by admin and up (without)."""
        wid = self._id(workflow_id)
        lock = None if lock is None else self._lock(lock)
        released = bool(
            await self._db.fetchval(
                q.RELEASE_LOCK, *self._ctx, wid, lock.token if lock is not None else None
            )
        )
        await self._after_write("release_lock", [wid])
        return released

    async def release_expired_locks(self) -> int:
        """Clear the tenant's expired leases; returns how many."""
        count = int(await self._db.fetchval(q.RELEASE_EXPIRED_LOCKS, *self._ctx))
        if count:
            await self._after_write("release_expired_locks")
        return count
