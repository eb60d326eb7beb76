"""Single flight: concurrent callers asking for one key share one loader call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar, cast

T = TypeVar("T")


class SingleFlight:
    """The loads in progress, by key."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Future[Any]] = {}
        self._followers: dict[Hashable, int] = {}

    def followers(self, key: Hashable) -> int:
        """How many callers wait for the load of ``key`` in progress. Read at the end of the
        load (after its last await) it counts every follower that will receive its result —
        nobody can join before the result is set — and possibly, for a moment, followers of an
        earlier load of ``key`` that have not resumed yet."""
        return self._followers.get(key, 0)

    async def run(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Run ``fn`` once for concurrent callers of ``key``: the first caller (the leader) runs
        it inline — no task is created on the common, uncontended path — and the others await
        its result (the same object). Returns ``(result, led)``, ``led`` True for the leader.
        A follower whose leader was cancelled takes over instead of failing."""
        flights = self._flights
        while True:
            fut = flights.get(key)
            if fut is None:
                break
            self._followers[key] = self._followers.get(key, 0) + 1
            try:
                return cast(T, await asyncio.shield(fut)), False
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not fut.cancelled() or (task is not None and task.cancelling()):
                    raise
                # the leader was cancelled, not us: try again (perhaps as the leader)
            finally:
                left = self._followers.get(key, 1) - 1
                if left:
                    self._followers[key] = left
                else:
                    self._followers.pop(key, None)
        fut = asyncio.get_running_loop().create_future()
        flights[key] = fut
        try:
            value = await fn()
        except BaseException as exc:
            if flights.get(key) is fut:
                del flights[key]
            if fut.done():  # cancelled by cancel_all()
                pass
            elif isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
                fut.exception()  # retrieved: no warning when no follower was waiting
            raise
        if flights.get(key) is fut:
            del flights[key]
        if not fut.done():
            fut.set_result(value)
        return value, True

    def cancel_all(self) -> None:
        """Cancel what followers wait for (their leaders run on; at closing)."""
        for fut in list(self._flights.values()):
            fut.cancel()
