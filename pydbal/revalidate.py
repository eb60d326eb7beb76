"""The cold tier's background re-validator.

Validation results live in the database with ``valid_until`` (1 hour) and the validator's
version; ``dbal.effective_validation_status`` reads an expired or old-version 'valid' result as
'stale'. This task, created and started by ``pydbal.connect`` for its Database (unless
``cache={"revalidate": False}``), handed to the cache as ``Cache.revalidator`` and stopped by
``Database.close``, wakes every ``revalidate_interval`` seconds and, for every tenant
this process has served, re-validates the workflows that read as stale, in batches, bypassing
the cache for its own reads so it sees what the database says now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from pydbal.cache import bypass
from pydbal.errors import DBALError

if TYPE_CHECKING:
    from pydbal.cache import Cache
    from pydbal.database import Database

log = logging.getLogger("pydbal.cache")

USER_ID = "system:revalidator"
MAX_BATCHES_PER_TENANT = 10


class Revalidator:
    """Re-validates, every ``interval`` seconds, the stale workflows of the tenants ``cache``
    served, through ``db``; at most ``batch`` (1..100) per page, MAX_BATCHES_PER_TENANT pages
    per tenant and pass."""

    def __init__(self, cache: Cache, db: Database, *, interval: float, batch: int) -> None:
        self.cache = cache
        self.db = db
        self.interval = interval
        self.batch = max(1, min(batch, 100))
        self.revalidated = 0
        self.runs = 0
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="pydbal-revalidator")

    @property
    def alive(self) -> bool:
        """The loop is running (False once stopped, or if it died)."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                if not self._failing:  # once per failure streak, not once per tick
                    log.exception(
                        "background re-validation failed; retrying every %ss", self.interval
                    )
                self._failing = True
            else:
                self._failing = False

    async def run_once(self) -> int:
        """One pass over the served tenants; returns how many workflows were re-validated."""
        done = 0
        for tenant in self.cache.served_tenants():
            workflows = self.db.tenant(tenant, user_id=USER_ID, role="user").workflows
            tried: set[str] = set()
            for _ in range(MAX_BATCHES_PER_TENANT):
                with bypass():
                    page = await workflows.list({"validation_status": "stale"}, limit=self.batch)
                todo = [w for w in page.items if str(w.id) not in tried]
                if not todo:
                    break
                for w in todo:
                    tried.add(str(w.id))
                    try:
                        with bypass():
                            await workflows.validate(w.id)
                    except DBALError as exc:  # deleted or changed meanwhile: next time
                        log.debug("re-validation of %s skipped: %s", w.id, exc)
                        continue
                    done += 1
                if not page.has_more:
                    break
        self.runs += 1
        self.revalidated += done
        return done
