"""The :class:`Cache` facade: the hot and warm tiers, single flight and invalidation together.

What each read goes through:

- ``workflow`` (single workflows by id): the hot tier, then one shared database load per
  (tenant, id, generation);
- ``warm`` (list pages, search results, execution statistics, validation reports): the memo of
  decoded values, the warm backend (Redis or in-process), then one shared database load per
  value key;
- ``invalidate`` (after every write): hot entries dropped, warm generations bumped.

Every value a read returns is the caller's own: the tiers keep snapshots
(:func:`pydbal.cache.codec.keep`) and every hit gets a new copy made from one; of concurrent
callers sharing one load, the one that ran it gets the loaded object and each other caller a copy.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydbal.cache.backend import LocalWarm, WarmBackend
from pydbal.cache.codec import Kept, clock_limit, decode, encode, keep, lazily, share, tenant_ok
from pydbal.cache.hot import HotTier
from pydbal.cache.singleflight import SingleFlight
from pydbal.cache.switch import bypassed
from pydbal.instrument import note_cache

if TYPE_CHECKING:
    from pydbal.database import Database
    from pydbal.revalidate import Revalidator

T = TypeVar("T")
log = logging.getLogger("pydbal.cache")

DEFAULTS: dict[str, Any] = {
    "hot": True,
    "hot_size": 1000,  # entries per tenant
    "hot_max": 100_000,  # entries over all tenants
    "hot_ttl": 0.1,  # seconds
    "warm": True,
    "warm_ttl": 300.0,  # seconds
    "warm_size": 10_000,  # entries of the in-process warm store (no Redis)
    "clock_ttl": 1.0,  # lists filtered by validation status: membership changes with time
    "redis_timeout": 0.1,  # socket read timeout of Redis calls (seconds)
    "redis_connect_timeout": 1.0,  # socket connect timeout (seconds)
    "redis_retry_max": 2.0,  # longest pause between reconnection attempts (seconds)
    "redis_pool": 16,  # connections to Redis (calls beyond wait for one)
    "pubsub": True,  # push invalidations of hot entries to other processes
    "namespace": None,  # default: derived from the database's identity
    # the background re-validator, created by pydbal.connect (see pydbal.revalidate)
    "revalidate": True,
    "revalidate_interval": 60.0,  # seconds
    "revalidate_batch": 100,
    # loaded or decoded warm values kept as objects in this process (under their generation-exact
    # key, so never staler than the stored entry): a hit skips decoding
    "memo_ttl": 30.0,
    # a warm value whose encoding is larger than this is not kept (memo included): it is served
    # from the database each time, so one huge page cannot fill Redis or stall its connection
    "warm_max_bytes": 1024 * 1024,
    # every hit returns the caller's own copy (a caller changing it changes nothing cached);
    # False returns the cached objects themselves: faster for large values, callers must treat
    # them as read-only (bench/bench_cache.py measures both)
    "copies": True,
}

#: Decoded warm values kept by the memo at most.
MEMO_SIZE = 256


def _key_hash(kind: str, key: str) -> str:
    return hashlib.blake2b(f"{kind}\0{key}".encode(), digest_size=16).hexdigest()


class Cache:
    """The caching tiers of one :class:`pydbal.Database` (built by ``pydbal.connect``)."""

    def __init__(self, redis_url: str | None = None, **options: Any) -> None:
        unknown = set(options) - set(DEFAULTS)
        if unknown:
            raise TypeError(
                f"unknown cache option(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(DEFAULTS))}"
            )
        self.redis_url = redis_url
        self.options = {**DEFAULTS, **options}
        o = self.options
        self.hot_enabled = bool(o["hot"]) and o["hot_ttl"] > 0 and o["hot_size"] > 0
        self.warm_enabled = bool(o["warm"]) and o["warm_ttl"] > 0
        self.hot_ttl = float(o["hot_ttl"])
        self.warm_ttl = float(o["warm_ttl"])
        self.warm_max_bytes = int(o["warm_max_bytes"])
        self.origin = uuid.uuid4().hex
        self._keep: Callable[[Any], Kept[Any]] = keep if o["copies"] else share
        self._hot = HotTier(int(o["hot_size"]), int(o["hot_max"]), self._keep)
        self._flights = SingleFlight()
        self._memo: OrderedDict[str, tuple[Kept[Any], float]] = OrderedDict()
        self._tenants: OrderedDict[str, None] = OrderedDict()
        self._warm_hits = 0
        self._warm_misses = 0
        self._bypassed = 0
        self._oversize = 0
        self._backend: WarmBackend = LocalWarm(int(o["warm_size"]))
        if redis_url and self.warm_enabled:
            from pydbal.cache.redis_backend import RedisWarm  # imports redis: only when used

            self._backend = RedisWarm(
                redis_url,
                origin=self.origin,
                timeout=float(o["redis_timeout"]),
                connect_timeout=float(o["redis_connect_timeout"]),
                retry_max=float(o["redis_retry_max"]),
                warm_ttl=self.warm_ttl,
                pubsub=bool(o["pubsub"]),
                pool_size=int(o["redis_pool"]),
                on_remote=self._drop_local,
                on_resync=self._hot.drop_all,
            )
        #: The background re-validator the Database created for this cache's tenants (None with
        #: ``revalidate=False``): reported by ``background()``, stopped by ``stop_background()``.
        self.revalidator: Revalidator | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, db: Database) -> None:
        """Start the warm backend; a shared one gets the namespace of ``db`` (the ``namespace``
        option, else derived from the database's identity)."""
        if self._backend.shared:
            namespace = self.options["namespace"] or await self._namespace(db)
            await self._backend.start(namespace)

    @staticmethod
    async def _namespace(db: Database) -> str:
        """The database's identity: the same for every process using it, never for another."""
        try:
            row = await db.fetchrow(
                "SELECT s.system_identifier::text AS sysid, d.oid::text AS oid "
                "FROM pg_control_system() s, pg_database d WHERE d.datname = current_database()"
            )
            ident = f"{row['sysid']}:{row['oid']}" if row is not None else db.dsn
        except Exception:
            ident = db.dsn
        return hashlib.blake2b(ident.encode(), digest_size=8).hexdigest()

    async def stop_background(self) -> None:
        """Stop the re-validator (the first step of closing: it starts operations of its own)."""
        if self.revalidator is not None:
            await self.revalidator.stop()

    def background(self) -> dict[str, bool]:
        """The background tasks that should be running, and whether each is alive."""
        tasks: dict[str, bool] = {}
        if self.revalidator is not None:
            tasks["revalidator"] = self.revalidator.alive
        tasks.update(self._backend.background())
        return tasks

    @property
    def redis(self) -> dict[str, Any]:
        """Whether Redis is configured, answering, and its error and outage counts."""
        backend = self._backend
        if not backend.shared:
            return {"configured": False, "available": None, "errors": 0, "outages": 0}
        return {
            "configured": True,
            "available": backend.available,
            "errors": backend.errors,
            "outages": backend.outages,
        }

    async def close(self) -> None:
        """Stop the re-validator, release waiting followers, close the backend, drop the hot
        tier."""
        if self.revalidator is not None:
            await self.revalidator.stop()
            self.revalidator = None
        self._flights.cancel_all()
        await self._backend.close()
        self._hot.drop_all()

    def served_tenants(self) -> list[str]:
        """Tenants this process has served reads for (most recent last)."""
        return list(self._tenants)

    def _touch(self, tenant: str) -> None:
        self._tenants[tenant] = None
        self._tenants.move_to_end(tenant)
        if len(self._tenants) > 100_000:
            self._tenants.popitem(last=False)

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters per tier (``pydbal.Database.cache_stats``)."""
        h, backend = self._hot, self._backend
        return {
            "hot": {
                "hits": h.hits,
                "misses": h.misses,
                "evictions": h.evictions,
                "expired": h.expired,
                "size": len(h),
            },
            "warm": {
                "hits": self._warm_hits,
                "misses": self._warm_misses,
                "evictions": backend.evictions,
                "bypassed": self._bypassed,
                "oversize": self._oversize,
                "errors": backend.errors,
                "available": int(backend.available),
                "redis": int(backend.shared),
            },
        }

    # -- hot tier -----------------------------------------------------------------------------
    def _drop_local(self, tenant: str, ids: list[str], all_workflows: bool) -> None:
        """Drop what a write makes stale in this process (ours, or pushed by another process)."""
        self._hot.bump(tenant)
        if all_workflows:
            self._hot.drop_tenant(tenant)
        else:
            for i in ids:
                self._hot.drop(tenant, i)

    async def workflow(
        self, tenant: str, workflow_id: str, loader: Callable[[], Awaitable[T]]
    ) -> T:
        """A single workflow by id (hot tier), as the caller's own copy."""
        if bypassed():
            return await loader()
        self._touch(tenant)
        hot = self._hot
        if self.hot_enabled:
            hit, value = hot.get(tenant, workflow_id)
            note_cache("hot", hit)
            if hit:
                return cast(T, value)
        gen = hot.generation(tenant)
        key = ("hot", tenant, workflow_id, gen)

        async def load() -> tuple[T, Kept[T] | None]:
            started = time.monotonic()
            value = await loader()
            kept = None
            if self.hot_enabled and hot.generation(tenant) == gen:
                ttl = self.hot_ttl
                limit = clock_limit(value)
                if limit is not None:
                    ttl = min(ttl, limit)
                if ttl > 0:
                    kept = hot.put(tenant, workflow_id, value, started + ttl)
            return value, kept

        return await self._once(key, load)

    # -- single flight ------------------------------------------------------------------------
    async def _once(
        self, key: Hashable, load: Callable[[], Awaitable[tuple[T, Kept[T] | None]]]
    ) -> T:
        """Run ``load`` once for concurrent callers of ``key`` (it returns the loaded value and
        the snapshot a tier kept of it, or None). The caller that ran it gets the loaded value;
        every other caller a new copy, from the tier's snapshot or one taken as the load ended
        (before the first caller could change the value)."""
        flights = self._flights

        async def run() -> tuple[T, Kept[T] | None]:
            value, kept = await load()
            if kept is None and flights.followers(key):
                kept = self._keep(value)
            return value, kept

        (value, kept), led = await flights.run(key, run)
        if led or kept is None:  # kept is None: nobody else waited for this load
            return value
        return kept()

    async def _plain(self, key: Hashable, loader: Callable[[], Awaitable[T]]) -> T:
        """``loader()`` once for concurrent callers of ``key``, nothing kept."""

        async def load() -> tuple[T, Kept[T] | None]:
            return await loader(), None

        return await self._once(key, load)

    # -- warm tier ----------------------------------------------------------------------------
    async def warm(
        self,
        tenant: str,
        kind: str,
        key: str,
        loader: Callable[[], Awaitable[T]],
        *,
        workflow_id: str | None = None,
    ) -> T:
        """A list page / search result (tenant generation) or a per-workflow value such as
        execution statistics or a validation report (``workflow_id``: workflow generation), as
        the caller's own copy."""
        if bypassed():
            return await loader()
        self._touch(tenant)
        if not self.warm_enabled:
            return await self._plain(
                ("nowarm", tenant, kind, key, self._hot.generation(tenant)), loader
            )
        key_hash = _key_hash(kind, key)
        vk, data = await self._backend.lookup(tenant, kind, key_hash, workflow_id)
        if vk is None:  # Redis unavailable: straight from the database
            self._bypassed += 1
            note_cache("warm", False)
            return await self._plain(
                ("down", tenant, kind, key, self._hot.generation(tenant)), loader
            )
        ttl = self.warm_ttl
        if kind in ("list", "search") and '"validation_status"' in key:
            ttl = min(ttl, float(self.options["clock_ttl"]))
        # The memo holds recently loaded or decoded values under their full key, generation
        # included (``vk`` comes from this lookup), so a memo hit is exactly as fresh as the
        # stored entry, without decoding it again.
        memo = self._memo.get(vk)
        if memo is not None and memo[1] > time.monotonic():
            self._warm_hits += 1
            note_cache("warm", True)
            return cast(T, memo[0]())
        if data is not None:
            try:
                value = decode(data)
            except Exception:
                log.exception("undecodable warm cache entry %s dropped", vk)
            else:
                if tenant_ok(value, tenant):
                    self._warm_hits += 1
                    note_cache("warm", True)
                    limit = clock_limit(value)
                    # decoded just now: the caller gets it, the memo a snapshot of the bytes,
                    # taken when the memo is first hit
                    memo_entry = lazily(data, keep) if self._keep is keep else share(value)
                    self._remember(vk, memo_entry, ttl if limit is None else min(ttl, limit))
                    return cast(T, value)
                log.error("warm cache entry of another tenant refused for tenant %r", tenant)
        self._warm_misses += 1
        note_cache("warm", False)

        async def load() -> tuple[T, Kept[T] | None]:
            value = await loader()
            data = encode(value)
            limit = clock_limit(value)
            entry_ttl = ttl if limit is None else min(ttl, limit)
            kept = None
            if data is not None and len(data) > self.warm_max_bytes:
                self._oversize += 1  # too big to keep: the next read loads it again
            elif data is not None and entry_ttl > 0.001 and tenant_ok(value, tenant):
                kept = self._keep(value)
                self._remember(vk, kept, entry_ttl)
                await self._backend.store(vk, data, entry_ttl)
            return value, kept

        return await self._once(("warm", vk), load)

    def _remember(self, vk: str, value: Kept[Any], ttl: float) -> None:
        """Keep the snapshot ``value`` in the memo for ``ttl`` (at most ``memo_ttl``) seconds;
        the oldest entries beyond MEMO_SIZE, and expired ones at the old end, are dropped."""
        now = time.monotonic()
        self._memo[vk] = (value, now + min(ttl, float(self.options["memo_ttl"])))
        self._memo.move_to_end(vk)
        while len(self._memo) > MEMO_SIZE or (
            self._memo and next(iter(self._memo.values()))[1] <= now
        ):
            self._memo.popitem(last=False)

    # -- invalidation -------------------------------------------------------------------------
    async def invalidate(
        self,
        tenant: str,
        workflow_ids: Iterable[str] = (),
        *,
        lists: bool = True,
        all_workflows: bool = False,
    ) -> None:
        """After a write: drop the hot entries of ``workflow_ids`` (of every workflow of the
        tenant with ``all_workflows``), and bump the warm generations (the tenant's lists when
        ``lists``; the workflows' stats/validation; everything of the tenant with
        ``all_workflows``). Never raises for a cache failure."""
        ids = [str(i) for i in workflow_ids]
        self._drop_local(tenant, ids, all_workflows)
        # The memo needs no clearing: its keys carry the generations bumped here, so what this
        # write made stale can no longer be looked up.
        try:
            await self._backend.invalidate(tenant, ids, lists, all_workflows)
        except Exception:  # pragma: no cover - backends handle their own failures
            log.exception("cache invalidation failed")
