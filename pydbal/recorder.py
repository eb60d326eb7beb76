"""The batched execution recorder: ``async with db.recorder(...) as rec: rec.record(...)``.

Failure behaviour first:

- ``record()`` is a synchronous call: it checks its arguments, gives the item an execution id
  (a UUID unless one is given) and queues it. No round trip. When ``max_queue`` items are
  waiting it still keeps the item (nothing is ever dropped) and returns an awaitable that
  completes once there is room again: producers write ``await rec.record(...)``, which costs
  nothing while there is room.
- A background writer sends, per scope (tenant, user, role) and lane, up to ``batch_size``
  items as ONE statement (``dbal.record_executions``, sql/43_record_batch.sql) as soon as a
  batch is full or its oldest item waited ``max_delay`` seconds. Every item has the guarantees
  of ``record_execution`` (the batch's result is that of recording its items one by one):
  idempotent per execution id, a ``pending`` run completed once, fencing per item, counters and
  roll-ups in the same transaction.
- Lanes: a scope's items are split by workflow into ``concurrency`` lanes, one batch in flight
  per lane, so concurrent batches of one tenant never lock the same workflow and run in
  parallel instead of waiting for each other. Items of one workflow keep their order (one
  lane); items of different workflows are independent, except an execution id reused for
  another workflow, whose refusal (409) then depends on which lane commits first, as with
  concurrent ``record_execution`` calls.
- A refused item (stale lock token, locked by another user, unknown workflow, conflicting
  status, bad input) refuses only itself; it is reported by ``flush()`` and to ``on_error``.
- A lost connection, a server restart or an overload is retried with exponential backoff for
  up to ``retry_for`` seconds; since execution ids were fixed when the items were queued, a
  retried batch that had in fact committed counts nothing twice (its items come back as
  ``duplicate``). After ``retry_for`` the items are reported as failed (``flush()`` and
  ``on_error``) with the last error, and are not retried further.
- ``flush()`` returns once every item queued before the call is resolved: what it reports as
  stored is committed. ``close()`` (and leaving the ``async with`` block, also by an exception
  or by cancellation of the owning task) flushes before it returns.
- **The loss window**: items in memory that no ``flush()``/``close()`` acknowledged are lost if
  the process dies (SIGKILL, power loss, ``os._exit``). At most ``max_queue`` items plus the
  batches in flight; usually no more than ``max_delay`` seconds of executions.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID, uuid4

import asyncpg

from pydbal import queries as q
from pydbal.errors import DBALError, ErrorCode, from_postgres
from pydbal.models import EXECUTION_STATUSES
from pydbal.workflows.invalidation import after_write

if TYPE_CHECKING:
    from pydbal.database import Database, Tenant
    from pydbal.models import Lock
    from pydbal.workflows import Workflows

log = logging.getLogger("pydbal.recorder")

STATUSES = frozenset(EXECUTION_STATUSES)
MAX_BATCH = 10000  # dbal.record_executions accepts at most this many items per call

# SQLSTATE classes and codes worth retrying: connection exceptions, operator intervention
# (shutdown, crash recovery), too many connections, serialization failure, deadlock.
_TRANSIENT_PREFIXES = ("08", "57P", "53300", "40001", "40P01")


@dataclass(frozen=True)
class Item:
    """One execution as queued: the arguments of ``record()`` with its execution id fixed."""

    tenant_id: str
    user_id: str
    role: str
    workflow_id: UUID
    status: str
    execution_time_ms: float | None
    execution_id: str
    token: int | None
    started_at: datetime | None
    error: str | None


@dataclass(frozen=True)
class Stored:
    """An item in the database: ``outcome`` is ``recorded``, ``completed`` or ``duplicate``."""

    item: Item
    outcome: str


@dataclass(frozen=True)
class Refused:
    """An item not recorded: refused by the database (``code`` is an :class:`ErrorCode`) or,
    with ``failed=True``, not written because the database stayed unreachable for
    ``retry_for`` seconds (``code`` is None, ``message`` the last error)."""

    item: Item
    code: ErrorCode | int | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    failed: bool = False


@dataclass
class FlushReport:
    """What happened to the items resolved since the previous ``flush()``."""

    stored: list[Stored] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    stored_count: int = 0  # also counts stored items not kept (``keep_results=False``)

    @property
    def failed(self) -> list[Refused]:
        return [r for r in self.refused if r.failed]


class Admission:
    """What ``record()`` returns: awaiting it returns the execution id, at once while the queue
    has room, else once the item entered the queue (back-pressure)."""

    __slots__ = ("_future", "execution_id")

    def __init__(self, execution_id: str, future: asyncio.Future[None] | None) -> None:
        self.execution_id = execution_id
        self._future = future

    @property
    def admitted(self) -> bool:
        return self._future is None or self._future.done()

    def __await__(self) -> Generator[Any, None, str]:
        if self._future is not None:
            yield from self._future.__await__()
        return self.execution_id


ErrorHook = Callable[[Refused], Awaitable[None] | None]
_Key = tuple[str, str, str, int]  # tenant, user, role, lane


class _Scope:
    __slots__ = ("inflight_first", "items", "oldest")

    def __init__(self) -> None:
        self.items: deque[tuple[int, Item]] = deque()
        self.oldest = 0.0  # monotonic time the oldest queued item arrived
        self.inflight_first = 0  # sequence number of the first item of the batch being written


def _transient(exc: BaseException) -> bool:
    if isinstance(
        exc,
        OSError
        | ConnectionError
        | TimeoutError
        | asyncpg.InterfaceError
        | asyncpg.PostgresConnectionError,
    ):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return bool(state) and state.startswith(_TRANSIENT_PREFIXES)


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
        self._scopes: dict[_Key, _Scope] = {}
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
        self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
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
        if self._writer is None and not self._closing:
            self._writer = asyncio.get_running_loop().create_task(self._dispatch())

    # -- the writer ---------------------------------------------------------------------------
    async def _dispatch(self) -> None:
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

    def _launch(self, key: _Key, scope: _Scope) -> None:
        n = min(len(scope.items), self.batch_size)
        batch = [scope.items.popleft() for _ in range(n)]
        if scope.items:
            scope.oldest = time.monotonic()
        scope.inflight_first = batch[0][0]
        task = asyncio.get_running_loop().create_task(self._write(key, scope, batch))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _write(self, key: _Key, scope: _Scope, batch: list[tuple[int, Item]]) -> None:
        items = [item for _, item in batch]
        try:
            results = await self._send(key, items)
        except BaseException as exc:  # reported per item (failed), never swallowed silently
            results = [self._refusal(item, exc) for item in items]
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

    def _refusal(self, item: Item, exc: BaseException) -> Refused:
        mapped = exc if isinstance(exc, DBALError) else from_postgres(exc)
        if isinstance(mapped, DBALError):
            return Refused(item, mapped.code, mapped.message, mapped.details)
        return Refused(item, None, f"{type(exc).__name__}: {exc}", {}, failed=True)

    async def _send(self, key: _Key, items: Sequence[Item]) -> list[Stored | Refused]:
        args = (
            *key[:3],
            [i.workflow_id for i in items],
            [i.status for i in items],
            [i.execution_time_ms for i in items],
            [i.execution_id for i in items],
            [i.token for i in items],
            [i.started_at for i in items],
            [i.error for i in items],
        )
        deadline = time.monotonic() + self.retry_for
        delay = 0.05
        attempt = 0
        while True:
            attempt += 1
            try:
                rows = await self._db._run(lambda c: c.fetch(q.RECORD_EXECUTIONS, *args))
                break
            except BaseException as exc:
                cause = exc.__cause__ if isinstance(exc, DBALError) else exc
                if isinstance(exc, asyncio.CancelledError) or not _transient(cause or exc):
                    raise
                if time.monotonic() + delay > deadline:
                    log.error(
                        "recorder: giving up on %d execution(s) after %d attempt(s): %s",
                        len(items),
                        attempt,
                        exc,
                    )
                    raise
                if attempt == 1:
                    log.warning("recorder: database unavailable (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        out: list[Stored | Refused] = []
        for row in rows:
            item = items[row["ord"] - 1]
            if row["outcome"] == "refused":
                code = row["code"]
                with contextlib.suppress(ValueError):
                    code = ErrorCode(code)
                out.append(Refused(item, code, row["message"], row["details"] or {}))
            else:
                out.append(Stored(item, row["outcome"]))
        return out

    async def _call_hook(self, refused: Refused) -> None:
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
