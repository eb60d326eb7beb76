"""The :class:`Recorder`: the queue of executions, split per scope and lane, and the writer
task that sends each lane's batches (see the package doc for its failure behaviour).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, cast
from uuid import UUID, uuid4

from pydbal.errors import DBALError, ErrorCode
from pydbal.recorder.results import (
    MAX_BATCH,
    STATUSES,
    Admission,
    ErrorHook,
    FlushReport,
    Item,
    Refused,
    Stored,
)
from pydbal.recorder.statement import Key, refusal, send
from pydbal.workflows.invalidation import after_write

if TYPE_CHECKING:
    from pydbal.database import Database, Tenant
    from pydbal.models import Lock
    from pydbal.workflows import Workflows

log = logging.getLogger("pydbal.recorder")


class _Scope:
    """The queue of one scope (tenant, user, role) and lane."""

    __slots__ = ("inflight_first", "items", "oldest")

    def __init__(self) -> None:
        self.items: deque[tuple[int, Item]] = deque()
        self.oldest = 0.0  # monotonic time the oldest queued item arrived
        self.inflight_first = 0  # sequence number of the first item of the batch being written


class Recorder:
    """Records executions in batches. Create with ``db.recorder(...)``; see the module doc."""

    def __init__(
        self,
        db: Database,
        *,
        batch_size: int = 500,
        max_delay: float = 0.05,
        max_queue: int = 10000,
        on_error: ErrorHook | None = None,
        retry_for: float = 30.0,
        concurrency: int = 2,
        keep_results: bool = True,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1 to {MAX_BATCH}")
        if max_delay < 0 or max_queue < batch_size or retry_for < 0 or concurrency < 1:
            raise ValueError("need max_delay >= 0, max_queue >= batch_size, retry_for >= 0")
        self._db = db
        self.batch_size = batch_size
        self.max_delay = max_delay
        self.max_queue = max_queue
        self.retry_for = retry_for
        self.concurrency = concurrency
        self.keep_results = keep_results
        self._on_error = on_error
        self._scopes: dict[Key, _Scope] = {}
        self._size = 0  # items queued (not waiting) and not yet resolved
        self._waiting: deque[tuple[Item, asyncio.Future[None]]] = deque()
        self._seq = 0
        self._report = FlushReport()
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._urgent = 0  # flushes waiting: write whatever is queued without waiting max_delay
        self._closing = False
        self._writer: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    # -- producer side ------------------------------------------------------------------------
    def record(
        self,
        scope: Tenant | Workflows,
        workflow_id: UUID | str,
        status: str,
        execution_time_ms: float | None,
        *,
        execution_id: str | None = None,
        lock: Lock | None = None,
        started_at: datetime | None = None,
        error: str | None = None,
    ) -> Admission:
        """Queue one execution; no I/O. Raises VALIDATION_ERROR for bad arguments and a
        RuntimeError once the recorder is closed. Await the result for back-pressure."""
        if self._closing:
            raise RuntimeError("the recorder is closed")
        tenant = cast("Tenant", getattr(scope, "_scope", scope))
        if status not in STATUSES:
            raise DBALError(ErrorCode.VALIDATION_ERROR, f"unknown execution status {status!r}")
        if execution_time_ms is not None and (
            isinstance(execution_time_ms, bool) or not isinstance(execution_time_ms, int | float)
        ):
            raise DBALError(ErrorCode.VALIDATION_ERROR, "execution_time_ms must be a number")
        if started_at is not None and started_at.tzinfo is None:
            raise DBALError(ErrorCode.VALIDATION_ERROR, "started_at must be timezone-aware")
        try:
            wid = workflow_id if isinstance(workflow_id, UUID) else UUID(str(workflow_id))
        except ValueError:
            raise DBALError(ErrorCode.VALIDATION_ERROR, "workflow_id is not a UUID") from None
        item = Item(
            tenant.tenant_id,
            tenant.user_id,
            tenant.role,
            wid,
            status,
            None if execution_time_ms is None else float(execution_time_ms),
            execution_id if execution_id is not None else str(uuid4()),
            lock.token if lock is not None else None,
            started_at,
            error,
        )
        if self._writer is None:
            self._start()
        if self._size >= self.max_queue or self._waiting:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append((item, future))
            return Admission(item.execution_id, future)
        self._enqueue(item)
        return Admission(item.execution_id, None)

    def _enqueue(self, item: Item) -> None:
        """Put ``item`` in its scope's lane; wake the writer when the lane was empty or is full."""
        key = (item.tenant_id, item.user_id, item.role, item.workflow_id.int % self.concurrency)
        scope = self._scopes.get(key)
        if scope is None:
            scope = self._scopes[key] = _Scope()
        self._seq += 1
        if not scope.items:
            scope.oldest = time.monotonic()
            self._wake.set()
        scope.items.append((self._seq, item))
        self._size += 1
        if len(scope.items) == self.batch_size:
            self._wake.set()

    def _admit_waiting(self) -> None:
        """Move items waiting for room into the queue while there is room."""
        while self._waiting and self._size < self.max_queue:
            item, future = self._waiting.popleft()
            self._enqueue(item)
            if not future.done():
                future.set_result(None)

    @property
    def queued(self) -> int:
        """Items not yet resolved (queued, being written, or waiting for room)."""
        return self._size + len(self._waiting)

    # -- flushing and lifecycle ---------------------------------------------------------------
    async def flush(self) -> FlushReport:
        """Write everything queued so far; return what was resolved since the last flush."""
        await self.wait_written()
        report, self._report = self._report, FlushReport()
        return report

    async def wait_written(self) -> None:
        """Wait until everything queued so far is resolved, without taking the report."""
        if self._writer is not None:
            target = self._seq + len(self._waiting)
            self._urgent += 1
            self._wake.set()
            try:
                async with self._changed:
                    await self._changed.wait_for(lambda: self._done_upto(target))
            finally:
                self._urgent -= 1

    def _done_upto(self, target: int) -> bool:
        """Every item up to sequence number ``target`` is resolved."""
        if self._waiting and self._seq < target:
            return False
        for scope in self._scopes.values():
            if scope.items and scope.items[0][0] <= target:
                return False
            if scope.inflight_first and scope.inflight_first <= target:
                return False
        return True

    async def close(self) -> FlushReport:
        """Flush and stop the writer. Idempotent."""
        report = await self.flush()
        self._closing = True
        if self._writer is not None:
            self._wake.set()
            writer, self._writer = self._writer, None
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return report

    async def __aenter__(self) -> Recorder:
        """Start the writer."""
        self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close (flush, then stop the writer), also when the owning task is cancelled."""
        # Flush even when the owning task is being cancelled: finish the close, then let the
        # cancellation continue.
        task = asyncio.ensure_future(self.close())
        cancelled = False
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                cancelled = True
        task.result()
        if cancelled:
            raise asyncio.CancelledError

    def _start(self) -> None:
        """Start the writer task unless running or closed."""
        if self._writer is None and not self._closing:
            self._writer = asyncio.get_running_loop().create_task(self._dispatch())

    # -- the writer ---------------------------------------------------------------------------
    async def _dispatch(self) -> None:
        """The writer: launch each lane's batch once full, due (``max_delay``) or flushed, at
        most ``concurrency`` batches in flight."""
        while True:
            self._wake.clear()
            now = time.monotonic()
            next_due: float | None = None
            # the scope (lane) waiting longest first, so no lane starves the others
            ready = [kv for kv in self._scopes.items() if kv[1].items and not kv[1].inflight_first]
            ready.sort(key=lambda kv: kv[1].oldest)
            for key, scope in ready:
                due = scope.oldest + self.max_delay
                if len(scope.items) >= self.batch_size or self._urgent or due <= now:
                    if len(self._inflight) >= self.concurrency:
                        break
                    self._launch(key, scope)
                else:
                    next_due = due if next_due is None else min(next_due, due)
            timeout = None if next_due is None else max(next_due - now, 0.0)
            if not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)

    def _launch(self, key: Key, scope: _Scope) -> None:
        """Take up to ``batch_size`` items of the lane and write them in a task."""
        n = min(len(scope.items), self.batch_size)
        batch = [scope.items.popleft() for _ in range(n)]
        if scope.items:
            scope.oldest = time.monotonic()
        scope.inflight_first = batch[0][0]
        task = asyncio.get_running_loop().create_task(self._write(key, scope, batch))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _write(self, key: Key, scope: _Scope, batch: list[tuple[int, Item]]) -> None:
        """Send one batch, report each item's result, invalidate what it stored (the
        ``record_batch`` entry of ``workflows.invalidation``), and free its lane."""
        items = [item for _, item in batch]
        try:
            results = await self._send(key, items)
        except BaseException as exc:  # reported per item (failed), never swallowed silently
            results = [refusal(item, exc) for item in items]
        hooks: list[Refused] = []
        stored = 0
        for result in results:
            if isinstance(result, Stored):
                stored += 1
                if self.keep_results:
                    self._report.stored.append(result)
            else:
                if self.keep_results:
                    self._report.refused.append(result)
                hooks.append(result)
        self._report.stored_count += stored
        if stored:
            with contextlib.suppress(Exception):
                await after_write(
                    self._db.cache, key[0], "record_batch", {i.workflow_id for i in items}
                )
        for refused in hooks:
            await self._call_hook(refused)
        scope.inflight_first = 0
        self._size -= len(items)
        self._admit_waiting()
        # This batch no longer counts against ``concurrency`` (the done callback would run only
        # after the dispatcher's next pass, which would then launch one batch too few).
        self._inflight.discard(cast("asyncio.Task[None]", asyncio.current_task()))
        self._wake.set()
        async with self._changed:
            self._changed.notify_all()

    async def _send(self, key: Key, items: Sequence[Item]) -> list[Stored | Refused]:
        """Write one batch (``statement.send``, retried for up to ``retry_for`` seconds)."""
        return await send(self._db, key, items, self.retry_for)

    async def _call_hook(self, refused: Refused) -> None:
        """Report a refused item to ``on_error`` (or the log without one); a failing hook is
        logged, never raised."""
        if self._on_error is None:
            log.warning(
                "recorder: execution %s of workflow %s not recorded: %s",
                refused.item.execution_id,
                refused.item.workflow_id,
                refused.message,
            )
            return
        try:
            result = self._on_error(refused)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("recorder: on_error hook failed")
