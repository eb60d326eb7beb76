"""The hot tier: single workflows by id, kept in this process.

LRU bounded per tenant (``hot_size``) and over all tenants (``hot_max``); an entry expires at the
time given when it was put (the facade counts ``hot_ttl`` from the *start* of the database read
that produced it). A hit is returned only when its ``tenant_id`` is the caller's tenant.

An entry is a snapshot (:func:`pydbal.cache.codec.keep`) taken when the value was loaded: every
hit returns a new copy made from it, so what a caller changes stays with that caller.
Why copies and not frozen models: ``frozen=True`` leaves nested lists and dicts mutable and
would forbid callers to build or change models, while these copies cost, per hit
(bench/bench_cache_copy.py, µs, median of 5 x 500 hits on a loaded 2-core machine; "shared" is
what handing out one frozen object costs, "shallow" what pydbal did before, nested values shared):

===============================  ======  =======  ====  =====  ======  ======
hit                              shared  shallow  keep  deep   pickle  decode
===============================  ======  =======  ====  =====  ======  ======
hot, 1-node workflow (1 KB)         0.7      2.1    14     84      28      22
hot, 40-node workflow (14 KB)       0.7      2.2   112    659      73     211
warm memo, page of 20 x 1 KB        1.5      2.9   121    898     168     162
warm memo, page of 20 x 14 KB        10       10  4912  22872    6710   12228
===============================  ======  =======  ====  =====  ======  ======

On a quiet run (timeit, best of 7) ``keep``'s copy of the 14 KB workflow took 53 µs, pickle's
73 µs, a copy of only the top-level lists and dicts 8 µs (which would leave node dicts shared);
taking the snapshot, once per miss that stores an entry, 13 µs (1 KB) and 37 µs (14 KB).
An uncached get of such a workflow is about 540 µs and a page of 20 about 5.4 ms
(bench/results/REPORT.md): a hot hit stays ~10x cheaper than the database, a warm page hit of
large definitions only a few times cheaper.

The tier also holds this process's invalidation generation per tenant (bumped by every
invalidation it sees), which the facade uses to tell a load that raced a write.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pydbal.cache.codec import Kept, keep

log = logging.getLogger("pydbal.cache")


class HotTier:
    """Entries ``(tenant, workflow id) → (snapshot, expiry on time.monotonic())`` and counters."""

    def __init__(
        self, size: int, max_entries: int, snapshot: Callable[[Any], Kept[Any]] = keep
    ) -> None:
        self.size = size
        self._snapshot = snapshot
        self.max_entries = max_entries
        self._entries: dict[str, OrderedDict[str, tuple[Kept[Any], float]]] = {}
        self._lru: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._gens: dict[str, int] = {}
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._lru)

    # -- generations --------------------------------------------------------------------------
    def generation(self, tenant: str) -> int:
        """A counter of ``tenant`` that every invalidation seen by this process increases: a load
        that started under another value raced a write."""
        return self._gens.get(tenant, 0)

    def bump(self, tenant: str) -> None:
        self._gens[tenant] = self._gens.get(tenant, 0) + 1

    # -- entries ------------------------------------------------------------------------------
    def get(self, tenant: str, workflow_id: str) -> tuple[bool, Any]:
        """``(True, a new copy of the entry)`` for a live entry, else ``(False, None)`` (an expired
        entry is dropped); counts the hit or miss."""
        entries = self._entries.get(tenant)
        entry = entries.get(workflow_id) if entries is not None else None
        if entry is None or entries is None:
            self.misses += 1
            return False, None
        kept, expires = entry
        if expires <= time.monotonic():
            self.drop(tenant, workflow_id)
            self.expired += 1
            self.misses += 1
            return False, None
        value = kept()
        if value is not None and getattr(value, "tenant_id", None) != tenant:
            # Never happens by construction (keys hold the tenant); refuse it all the same.
            log.error("hot cache entry of another tenant refused for tenant %r", tenant)
            self.drop(tenant, workflow_id)
            self.misses += 1
            return False, None
        entries.move_to_end(workflow_id)
        self._lru.move_to_end((tenant, workflow_id))
        self.hits += 1
        return True, value

    def put(self, tenant: str, workflow_id: str, value: Any, expires: float) -> Kept[Any] | None:
        """Keep a snapshot of ``value`` until ``expires`` and return it (None: a value of another
        tenant, not kept). Evicts the least recently used entries beyond the per-tenant and the
        global bound."""
        if value is not None and getattr(value, "tenant_id", None) != tenant:
            return None
        kept = self._snapshot(value)
        entries = self._entries.setdefault(tenant, OrderedDict())
        entries[workflow_id] = (kept, expires)
        entries.move_to_end(workflow_id)
        self._lru[(tenant, workflow_id)] = None
        self._lru.move_to_end((tenant, workflow_id))
        while len(entries) > self.size:
            oldest = next(iter(entries))
            self.drop(tenant, oldest)
            self.evictions += 1
        while len(self._lru) > self.max_entries:
            t, w = next(iter(self._lru))
            self.drop(t, w)
            self.evictions += 1
        return kept

    def drop(self, tenant: str, workflow_id: str) -> None:
        entries = self._entries.get(tenant)
        if entries is not None:
            entries.pop(workflow_id, None)
            if not entries:
                del self._entries[tenant]
        self._lru.pop((tenant, workflow_id), None)

    def drop_tenant(self, tenant: str) -> None:
        for w in list(self._entries.get(tenant, ())):
            self.drop(tenant, w)

    def drop_all(self) -> None:
        """Forget every entry and bump the generation of every tenant seen (a load in progress
        will not be kept)."""
        for tenant in list(self._entries):
            self.bump(tenant)
        self._entries.clear()
        self._lru.clear()
        for tenant in list(self._gens):
            self.bump(tenant)
