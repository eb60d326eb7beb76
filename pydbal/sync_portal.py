"""The event-loop thread of the sync facade (:class:`Portal`) and the base of its generated
operations classes (:class:`SyncOperations`); :mod:`pydbal.sync` builds the facade on them.

Kept apart from :mod:`pydbal.sync` so that the generated :mod:`pydbal.sync_workflows`, which
:mod:`pydbal.sync` imports, does not import it back.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydbal.workflows import Workflows

T = TypeVar("T")


class Portal:
    """One event loop running in a private daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._main, name="pydbal-sync-loop", daemon=True)
        self.thread.start()
        self._ready.wait()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (or its exception)."""
        if threading.get_ident() == self.thread.ident:
            coro.close()
            raise RuntimeError(
                "the pydbal sync facade was called from its own event loop: use the async API"
            )
        if self.loop.is_closed():
            coro.close()
            from pydbal.instrument import DatabaseClosedError

            raise DatabaseClosedError("the database is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # the caller was interrupted (KeyboardInterrupt): stop the call too
            raise

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class SyncOperations:
    """Base of the generated :class:`pydbal.sync_workflows.SyncWorkflows`."""

    def __init__(self, portal: Portal, operations: Workflows) -> None:
        self._portal = portal
        self._async = operations

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._portal.call(coro)

    @contextlib.contextmanager
    def _context(self, cm: contextlib.AbstractAsyncContextManager[T]) -> Iterator[T]:
        """An async context manager entered and exited in one task on the loop; the block runs
        in the caller's thread in between. (A deadline that fires meanwhile cannot interrupt
        the caller's thread: it is reported when the block ends.)"""
        portal = self._portal
        entered: concurrent.futures.Future[tuple[T, asyncio.Event]] = concurrent.futures.Future()
        failure: list[BaseException] = []

        async def hold() -> None:
            release = asyncio.Event()
            async with cm as value:
                entered.set_result((value, release))
                await release.wait()
                if failure:
                    raise failure[0]

        task = portal.submit(hold())
        pending: list[concurrent.futures.Future[Any]] = [entered, task]
        concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
        if not entered.done():
            task.result()  # raises what entering raised
            raise RuntimeError("the context manager did not enter")  # pragma: no cover
        value, release = entered.result()
        try:
            yield value
        except BaseException as exc:
            failure.append(exc)
            portal.loop.call_soon_threadsafe(release.set)
            task.result()  # re-raises exc, or what the context manager raised instead
            return  # the context manager suppressed it
        portal.loop.call_soon_threadsafe(release.set)
        task.result()
