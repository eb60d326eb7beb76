"""The executions of :class:`pydbal.workflows.Workflows`: ``record_execution`` (one result,
counted once per execution id: sql/41_record_execution.sql) and ``executing()``, the safe
execution (lock, renew, record, release) around a block of the caller's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID, uuid4

from pydbal import limits as lim
from pydbal import queries as q
from pydbal.errors import DBALError, ErrorCode
from pydbal.instrument import operations
from pydbal.models import Lock, RecordedExecution
from pydbal.workflows._base import _status, log
from pydbal.workflows.locks import Locks


@dataclass
class Run:
    """The handle of ``async with workflows.executing(id) as run``."""

    workflow_id: UUID
    lock: Lock
    execution_id: str = field(default_factory=lambda: str(uuid4()))
    lost: bool = False
    error: str | None = None
    recorded: RecordedExecution | None = None


@operations  # every public method: refused once closing, counted in flight, traced when on
class Executions(Locks):
    """Recording executions, one by one or around a block (locks from :class:`Locks`)."""

    async def record_execution(
        self,
        workflow_id: Any,
        status: str,
        execution_time_ms: float | None,
        execution_id: str | int | None = None,
        lock: Lock | None = None,
        started_at: Any = None,
        error: str | None = None,
    ) -> RecordedExecution:
        """Record one execution (counted once per execution id; see sql/41_record_execution.sql).
        ``started_at``: an aware datetime, ISO-8601 text with an offset or epoch milliseconds;
        an integer ``execution_id`` is stored as its decimal text."""
        wid = self._id(workflow_id)
        status = _status(status)
        limits = self._lim
        duration = None
        if execution_time_ms is not None:
            duration = lim.number(
                execution_time_ms,
                "execution_time_ms",
                0,
                limits.duration_max_ms,
                "duration_max_ms",
            )
        if isinstance(execution_id, int) and not isinstance(execution_id, bool):
            execution_id = str(execution_id)
        if execution_id is not None:
            execution_id = lim.text(
                execution_id, "execution_id", limits.execution_id_length, "execution_id_length"
            )
        token = None if lock is None else self._lock(lock).token
        started = lim.optional_timestamp(started_at, "started_at")
        error = lim.optional_text(error, "error", limits.error_length, "error_length")
        row = await self._db.fetchrow(
            q.RECORD_EXECUTION,
            *self._ctx,
            wid,
            status,
            duration,
            execution_id,
            token,
            started,
            error,
        )
        assert row is not None
        await self._after_write("record_execution", [wid])
        return RecordedExecution(execution_id=row["execution_id"], outcome=row["outcome"])

    @contextlib.asynccontextmanager
    async def executing(
        self,
        workflow_id: Any,
        *,
        timeout_ms: int = 30000,
        deadline_ms: int | None = None,
        record: Literal["sync", "batched"] = "sync",
    ) -> AsyncIterator[Run]:
        """The design's safe execution: lock (4042 disabled, 4243 not valid, 4231 held by
        someone), renew while the block runs, record success — or failure when it raises, or
        timeout when it raises TimeoutError or runs past ``deadline_ms`` (then the block is
        cancelled and TimeoutError raised) — with the measured duration, and always release.
        ``timeout_ms`` is the lease, renewed every third of it. ``record="batched"`` queues the
        result on the database's shared recorder (``db.shared_recorder``) instead of awaiting a
        round trip, and releases the lock after the recorder wrote it (so the token is still
        current); ``run.recorded`` then stays None and the execution id is ``run.execution_id``."""
        if record not in ("sync", "batched"):
            raise DBALError(ErrorCode.VALIDATION_ERROR, "record must be 'sync' or 'batched'")
        wid = self._id(workflow_id)
        timeout_ms = self._lease(timeout_ms)
        if deadline_ms is not None:
            deadline_ms = lim.integer(deadline_ms, "deadline_ms", 1, self._lim.duration_max_ms)
        lock = await self.acquire_lock(wid, timeout_ms)
        if lock is None:
            holder = await self._load(wid)
            raise DBALError(
                ErrorCode.WORKFLOW_LOCKED,
                "workflow is locked",
                {
                    "id": str(wid),
                    "locked_by": holder.locked_by if holder else None,
                    "locked_at": holder.locked_at.isoformat()
                    if holder and holder.locked_at
                    else None,
                },
            )
        run = Run(workflow_id=wid, lock=lock)

        async def renew() -> None:
            """Renew the lease every third of it until cancelled; once it was lost, mark the run
            ``lost`` and stop."""
            while True:
                await asyncio.sleep(max(timeout_ms / 3000.0, 0.01))
                renewed = await self.renew_lock(wid, run.lock, timeout_ms)
                if renewed is None:
                    run.lost = True
                    return
                run.lock = renewed

        renewer = asyncio.create_task(renew())
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        raising = False  # an exception (the block's or the record's) is on its way out
        try:
            try:
                if deadline_ms is None:
                    yield run
                else:
                    async with asyncio.timeout(deadline_ms / 1000):
                        yield run
            except (Exception, asyncio.CancelledError) as exc:
                # the block failed, timed out or was cancelled: record that, then re-raise the
                # block's own error whatever recording does (a failed record is logged)
                raising = True
                status = "timeout" if isinstance(exc, TimeoutError) else "failure"
                run.error = f"{type(exc).__name__}: {exc}"
                renewer.cancel()
                try:
                    await self._record_run(run, record, status, t0, started)
                except Exception:
                    log.warning(
                        "executing(%s): recording the %s failed", wid, status, exc_info=True
                    )
                raise
            renewer.cancel()
            try:
                await self._record_run(run, record, "success", t0, started)
            except BaseException:
                raising = True
                raise
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewer
            try:
                await self.release_lock(wid, run.lock)
            except DBALError:
                pass  # the lease was lost or taken over: nothing of ours to release
            except Exception:
                if not raising:
                    raise
                # never mask the error already on its way out
                log.warning("executing(%s): releasing the lock failed", wid, exc_info=True)

    async def _record_run(
        self, run: Run, record: str, status: str, t0: float, started: datetime
    ) -> None:
        """Record the run's outcome ``status``, timed from ``t0``: awaited (``record="sync"``)
        or through the shared recorder (``"batched"``)."""
        elapsed = (time.perf_counter() - t0) * 1000
        if record == "sync":
            run.recorded = await self.record_execution(
                run.workflow_id, status, elapsed, run.execution_id, run.lock, started, run.error
            )
            return
        # Batched: queue it, then wait until the batch holding it is written, because the lock
        # is released right after and a release before the write would make the token stale.
        # The caller awaits one batch (at most max_delay + a round trip), not its own round trip.
        recorder = self._scope.db.shared_recorder
        await recorder.record(
            self._scope,
            run.workflow_id,
            status,
            elapsed,
            execution_id=run.execution_id,
            lock=run.lock,
            started_at=started,
            error=run.error,
        )
        await recorder.wait_written()
