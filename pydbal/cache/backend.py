"""Where the warm tier stores encoded values: the :class:`WarmBackend` protocol and its
in-process implementation :class:`LocalWarm` (the Redis one is
:class:`pydbal.cache.redis_backend.RedisWarm`).

Both use the same generation scheme: a value is stored under a key that embeds the generations
current when it was looked up — the tenant's list generation for lists and searches
(``workflow_id`` None), the tenant's epoch and the workflow's generation for per-workflow values —
and an invalidation bumps generations instead of finding and deleting keys.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol


class WarmBackend(Protocol):
    """What the cache facade needs of a warm store."""

    #: True for a store shared with other processes (Redis), False for one inside this process.
    shared: bool
    #: False while the store does not answer (then every read goes to the database).
    available: bool
    #: Failed calls; values dropped by the size bound; outages (periods of not answering).
    errors: int
    evictions: int
    outages: int

    async def start(self, namespace: str) -> None:
        """Begin serving; ``namespace`` identifies the database (keys of two never meet)."""

    async def lookup(
        self, tenant: str, kind: str, key_hash: str, workflow_id: str | None
    ) -> tuple[str | None, bytes | None]:
        """``(value key, stored bytes or None)``; ``(None, None)`` while unavailable. The value
        key embeds the generations read now: store what is loaded next under it."""

    async def store(self, value_key: str, data: bytes, ttl: float) -> None:
        """Keep ``data`` under ``value_key`` for ``ttl`` seconds (a failure only loses it)."""

    async def invalidate(
        self, tenant: str, ids: list[str], lists: bool, all_workflows: bool
    ) -> None:
        """Bump the generations a write makes stale: the tenant's lists (``lists`` or
        ``all_workflows``), the workflows ``ids``, or every workflow (``all_workflows``)."""

    def background(self) -> dict[str, bool]:
        """Background tasks of the store that should be running, and whether each is alive."""

    async def close(self) -> None:
        """Stop its tasks and release what it holds."""


class LocalWarm:
    """Warm storage inside this process (no Redis): LRU bounded to ``size`` values, generations
    from a local counter."""

    shared = False
    #: More per-workflow generations than this: all are forgotten, with every stored value.
    WG_MAX = 100_000

    def __init__(self, size: int) -> None:
        self.size = size
        self.available = True
        self.errors = 0
        self.evictions = 0
        self.outages = 0
        self._seq = 0
        self._lg: dict[str, int] = {}
        self._ep: dict[str, int] = {}
        self._wg: dict[tuple[str, str], int] = {}
        self._store: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    async def start(self, namespace: str) -> None:
        """Nothing to do: one process, one database."""

    def background(self) -> dict[str, bool]:
        return {}

    async def lookup(
        self, tenant: str, kind: str, key_hash: str, workflow_id: str | None
    ) -> tuple[str | None, bytes | None]:
        if workflow_id is None:
            gen = f"{self._lg.get(tenant, 0)}"
        else:
            gen = f"{self._ep.get(tenant, 0)}.{self._wg.get((tenant, workflow_id), 0)}"
        vk = f"{tenant}\0{kind}\0{gen}\0{key_hash}"
        entry = self._store.get(vk)
        if entry is None:
            return vk, None
        if entry[1] <= time.monotonic():
            del self._store[vk]
            return vk, None
        self._store.move_to_end(vk)
        return vk, entry[0]

    async def store(self, value_key: str, data: bytes, ttl: float) -> None:
        self._store[value_key] = (data, time.monotonic() + ttl)
        self._store.move_to_end(value_key)
        while len(self._store) > self.size:
            self._store.popitem(last=False)
            self.evictions += 1

    async def invalidate(
        self, tenant: str, ids: list[str], lists: bool, all_workflows: bool
    ) -> None:
        self._seq += 1
        if lists or all_workflows:
            self._lg[tenant] = self._seq
        if all_workflows:
            self._ep[tenant] = self._seq
            return
        if len(self._wg) + len(ids) > self.WG_MAX:
            # Forgetting generations would revive old entries: drop the entries too.
            self._wg.clear()
            self._store.clear()
        for i in ids:
            self._wg[(tenant, i)] = self._seq

    async def close(self) -> None:
        self._store.clear()
