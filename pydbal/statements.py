"""Running statements on pooled connections (the base of :class:`pydbal.database.Database`).

Connections are kept checked out of the pool between statements (at most the pool's size):
taking one is a list pop, where the pool's acquire and release cost ~50 µs of an uncached get.
A connection goes back to the pool (which resets or replaces it) after any error, a cancellation
or an open transaction; the rest wait in this object for the next call. Database errors come out
as :class:`pydbal.errors.DBALError` where pydbal maps them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from pydbal.errors import from_postgres

R = TypeVar("R")


def translate(exc: BaseException) -> BaseException:
    """The DBALError for a database error, or the error itself."""
    mapped = from_postgres(exc)
    return mapped if mapped is not None else exc


class Statements:
    """``fetch``/``fetchrow``/``fetchval``/``transaction`` over the connections of ``pool``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._idle: list[asyncpg.Connection] = []
        self._held = 0  # connections taken from the pool: idle ones and those in use
        self._max = pool.get_max_size()
        self._waiters: collections.deque[asyncio.Future[asyncpg.Connection | None]] = (
            collections.deque()
        )
        #: Set when closing: connections checked in from then on go back to the pool.
        self._closing = False

    async def _checkout(self) -> asyncpg.Connection:
        """A connection for one statement or transaction: an idle one, else a new one from the
        pool while fewer than its max_size are held, else the next one checked in."""
        while True:
            if self._idle:
                return self._idle.pop()
            if self._held < self._max:
                self._held += 1
                try:
                    conn: asyncpg.Connection = await self._pool.acquire()
                except asyncpg.PostgresError as exc:  # raised by a new connection's init
                    self._held -= 1
                    raise translate(exc) from exc
                except BaseException:
                    self._held -= 1
                    raise
                return conn
            fut: asyncio.Future[asyncpg.Connection | None] = (
                asyncio.get_running_loop().create_future()
            )
            self._waiters.append(fut)
            try:
                handed = await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():  # handed over as we were cancelled
                    late = fut.result()
                    if late is not None:
                        await self._checkin(late, clean=True)
                    else:
                        self._wake(None)
                raise
            if handed is not None:
                return handed
            # a connection went back to the pool: take its place (loop)

    def _wake(self, conn: asyncpg.Connection | None) -> bool:
        """Hand ``conn`` (None: "a place in the pool is free") to the first waiter still
        waiting; False when there is none."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return True
        return False

    async def _checkin(self, conn: asyncpg.Connection, clean: bool) -> None:
        """Give ``conn`` back: to a waiter or the idle list when ``clean`` (and not closing, not
        closed, not in a transaction), else to the pool."""
        if clean and not self._closing and not conn.is_closed() and not conn.is_in_transaction():
            if not self._wake(conn):
                self._idle.append(conn)
            return
        self._held -= 1
        try:
            await self._pool.release(conn)
        finally:
            self._wake(None)

    async def _release_idle(self) -> None:
        """Give the idle connections back to the pool (when closing)."""
        idle, self._idle = self._idle, []
        self._held -= len(idle)
        for conn in idle:
            with contextlib.suppress(Exception):
                await self._pool.release(conn)

    async def _run(self, fn: Callable[[asyncpg.Connection], Awaitable[R]]) -> R:
        conn = await self._checkout()
        try:
            result = await fn(conn)
        except BaseException as exc:
            await self._checkin(conn, clean=False)
            if isinstance(exc, (asyncpg.PostgresError, asyncpg.DataError)):
                raise translate(exc) from exc
            raise
        await self._checkin(conn, clean=True)
        return result

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._run(lambda c: c.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._run(lambda c: c.fetchrow(query, *args))

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._run(lambda c: c.fetchval(query, *args))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside one transaction; database errors become DBALError."""
        conn = await self._checkout()
        clean = False
        try:
            async with conn.transaction():
                yield conn
            clean = True
        except (asyncpg.PostgresError, asyncpg.DataError) as exc:
            raise translate(exc) from exc
        finally:
            await self._checkin(conn, clean)
