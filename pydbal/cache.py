"""Caching tiers in front of the database (see docs/caching.md).

- **Hot** (in-process): single-workflow reads. LRU bounded per tenant (``hot_size``, default
  1000) and overall (``hot_max``, default 100 000); TTL ``hot_ttl`` (default 0.1 s) counted from
  the *start* of the database read that produced the entry. A hit is returned only when its
  ``tenant_id`` is the caller's tenant.
- **Warm** (Redis when a URL is given, else in-process): list pages, search results, execution
  statistics, validation reports; TTL ``warm_ttl`` (default 300 s). Keys embed generations
  bumped by writes (no key scans). Values are stored as JSON and restored to their types.
- **Single flight**: concurrent misses of one key (one generation) share one loader call.
- **Cold** (the database): validation results with valid_until and the validator version; the
  background re-validator (:mod:`pydbal.revalidate`) refreshes stale ones.

Cached models are shared with other callers: treat what a read returns as read-only (a hot hit
is a shallow copy, so assigning attributes is harmless; mutating nested lists/dicts is not).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import TypeAdapter

from pydbal.instrument import note_cache
from pydbal.models import ExecutionStats, Page, Workflow
from pydbal.validation import ValidationReport

if TYPE_CHECKING:
    from pydbal.cache_redis import RedisWarm
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
    "revalidate": True,
    "revalidate_interval": 60.0,  # seconds
    "revalidate_batch": 100,
    # loaded or decoded warm values kept as objects in this process (under their generation-exact
    # key, so never staler than the stored entry): a hit skips decoding
    "memo_ttl": 30.0,
    # a warm value whose encoding is larger than this is not kept (memo included): it is served
    # from the database each time, so one huge page cannot fill Redis or stall its connection
    "warm_max_bytes": 1024 * 1024,
}

_bypass: contextvars.ContextVar[bool] = contextvars.ContextVar("pydbal_cache_bypass", default=False)


@contextlib.contextmanager
def bypass() -> Iterator[None]:
    """Reads inside this block skip every cache tier (and store nothing)."""
    token = _bypass.set(True)
    try:
        yield
    finally:
        _bypass.reset(token)


# -- serialization ----------------------------------------------------------------------------

_ADAPTERS: dict[bytes, TypeAdapter[Any]] = {
    b"W": TypeAdapter(Workflow),
    b"P": TypeAdapter(Page[Workflow]),
    b"L": TypeAdapter(list[Workflow]),
    b"S": TypeAdapter(ExecutionStats),
    b"V": TypeAdapter(ValidationReport),
}


def _tag(value: Any) -> bytes | None:
    if value is None:
        return b"N"
    if isinstance(value, Workflow):
        return b"W"
    if isinstance(value, Page) and all(isinstance(i, Workflow) for i in value.items):
        return b"P"
    if isinstance(value, list) and all(isinstance(i, Workflow) for i in value):
        return b"L"
    if isinstance(value, ExecutionStats):
        return b"S"
    if isinstance(value, ValidationReport):
        return b"V"
    return None


def encode(value: Any) -> bytes | None:
    """Bytes for the warm store, or None for a value of a type the cache does not keep."""
    tag = _tag(value)
    if tag is None:
        return None
    if tag == b"N":
        return tag
    return tag + _ADAPTERS[tag].dump_json(value, warnings=False)


def decode(data: bytes) -> Any:
    tag = data[:1]
    if tag == b"N":
        return None
    return _ADAPTERS[tag].validate_json(data[1:])


def workflows_in(value: Any) -> list[Workflow]:
    if isinstance(value, Workflow):
        return [value]
    if isinstance(value, Page):
        return [w for w in value.items if isinstance(w, Workflow)]
    if isinstance(value, list):
        return [w for w in value if isinstance(w, Workflow)]
    return []


def tenant_ok(value: Any, tenant: str) -> bool:
    return all(w.tenant_id == tenant for w in workflows_in(value))


def clock_limit(value: Any) -> float | None:
    """Seconds until a workflow in ``value`` changes by the clock alone (a 'valid' result
    reaching valid_until reads as 'stale'; a lock reaching its expiry reads as unlocked)."""
    soonest: datetime | None = None
    for w in workflows_in(value):
        for at in (
            w.valid_until if w.validation_status == "valid" else None,
            w.lock_expires_at if w.is_locked else None,
        ):
            if at is not None and (soonest is None or at < soonest):
                soonest = at
    if soonest is None:
        return None
    return (soonest - datetime.now(UTC)).total_seconds()


def _key_hash(kind: str, key: str) -> str:
    return hashlib.blake2b(f"{kind}\0{key}".encode(), digest_size=16).hexdigest()


class _Counters:
    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.expired = 0


# -- the in-process warm store ----------------------------------------------------------------


class LocalWarm:
    """Warm storage inside this process (no Redis): the same generation scheme, local counters."""

    WG_MAX = 100_000

    def __init__(self, size: int) -> None:
        self.size = size
        self.available = True
        self.errors = 0
        self.evictions = 0
        self._seq = 0
        self._lg: dict[str, int] = {}
        self._ep: dict[str, int] = {}
        self._wg: dict[tuple[str, str], int] = {}
        self._store: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

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


# -- the cache --------------------------------------------------------------------------------


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
        self.hot_size = int(o["hot_size"])
        self.hot_max = int(o["hot_max"])
        self.hot_ttl = float(o["hot_ttl"])
        self.warm_ttl = float(o["warm_ttl"])
        self.origin = uuid.uuid4().hex
        self._hot: dict[str, OrderedDict[str, tuple[Any, float]]] = {}
        self._hot_lru: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._gens: dict[str, int] = {}  # per tenant, bumped by every invalidation seen here
        self._flights: dict[Hashable, asyncio.Future[Any]] = {}
        self._memo: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self._tenants: OrderedDict[str, None] = OrderedDict()
        self._hot_c = _Counters()
        self._warm_c = _Counters()
        self._bypassed = 0
        self._oversize = 0
        self.warm_max_bytes = int(o["warm_max_bytes"])
        self._backend: LocalWarm | RedisWarm = LocalWarm(int(o["warm_size"]))
        if redis_url and self.warm_enabled:
            from pydbal.cache_redis import RedisWarm

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
                on_resync=self._drop_all_hot,
            )
        self._revalidator: Revalidator | None = None
        self._db: Database | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, db: Database) -> None:
        self._db = db
        if not isinstance(self._backend, LocalWarm):
            namespace = self.options["namespace"] or await self._namespace(db)
            await self._backend.start(namespace)
        if self.options["revalidate"]:
            from pydbal.revalidate import Revalidator

            self._revalidator = Revalidator(
                self,
                db,
                interval=float(self.options["revalidate_interval"]),
                batch=int(self.options["revalidate_batch"]),
            )
            self._revalidator.start()

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
        if self._revalidator is not None:
            await self._revalidator.stop()

    def background(self) -> dict[str, bool]:
        """The background tasks that should be running, and whether each is alive."""
        tasks: dict[str, bool] = {}
        if self._revalidator is not None:
            tasks["revalidator"] = self._revalidator.alive
        if not isinstance(self._backend, LocalWarm):
            tasks.update(self._backend.background())
        return tasks

    @property
    def redis(self) -> dict[str, Any]:
        """Whether Redis is configured, answering, and its error and outage counts."""
        backend = self._backend
        if isinstance(backend, LocalWarm):
            return {"configured": False, "available": None, "errors": 0, "outages": 0}
        return {
            "configured": True,
            "available": backend.available,
            "errors": backend.errors,
            "outages": backend.outages,
        }

    async def close(self) -> None:
        if self._revalidator is not None:
            await self._revalidator.stop()
            self._revalidator = None
        for fut in list(self._flights.values()):
            fut.cancel()
        await self._backend.close()
        self._drop_all_hot()

    @property
    def revalidator(self) -> Revalidator | None:
        return self._revalidator

    def served_tenants(self) -> list[str]:
        """Tenants this process has served reads for (most recent last)."""
        return list(self._tenants)

    def _touch(self, tenant: str) -> None:
        self._tenants[tenant] = None
        self._tenants.move_to_end(tenant)
        if len(self._tenants) > 100_000:
            self._tenants.popitem(last=False)

    def stats(self) -> dict[str, dict[str, int]]:
        h, w = self._hot_c, self._warm_c
        local = isinstance(self._backend, LocalWarm)
        return {
            "hot": {
                "hits": h.hits,
                "misses": h.misses,
                "evictions": h.evictions,
                "expired": h.expired,
                "size": len(self._hot_lru),
            },
            "warm": {
                "hits": w.hits,
                "misses": w.misses,
                "evictions": self._backend.evictions if isinstance(self._backend, LocalWarm) else 0,
                "bypassed": self._bypassed,
                "oversize": self._oversize,
                "errors": self._backend.errors,
                "available": int(self._backend.available),
                "redis": int(not local),
            },
        }

    # -- single flight ------------------------------------------------------------------------
    async def _flight(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` once for concurrent callers of ``key``: the first caller (the leader) runs it
        inline — no task is created on the common, uncontended path — and the others await its
        result. A follower whose leader was cancelled takes over instead of failing."""
        while True:
            fut = self._flights.get(key)
            if fut is None:
                break
            try:
                return cast(T, await asyncio.shield(fut))
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not fut.cancelled() or (task is not None and task.cancelling()):
                    raise
                # the leader was cancelled, not us: try again (perhaps as the leader)
        fut = asyncio.get_running_loop().create_future()
        self._flights[key] = fut
        try:
            value = await fn()
        except BaseException as exc:
            if self._flights.get(key) is fut:
                del self._flights[key]
            if fut.done():  # cancelled by close()
                pass
            elif isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
                fut.exception()  # retrieved: no warning when no follower was waiting
            raise
        if self._flights.get(key) is fut:
            del self._flights[key]
        if not fut.done():
            fut.set_result(value)
        return value

    # -- hot tier -----------------------------------------------------------------------------
    def _gen(self, tenant: str) -> int:
        return self._gens.get(tenant, 0)

    def _bump(self, tenant: str) -> None:
        self._gens[tenant] = self._gens.get(tenant, 0) + 1

    def _hot_get(self, tenant: str, workflow_id: str) -> tuple[bool, Any]:
        entries = self._hot.get(tenant)
        entry = entries.get(workflow_id) if entries is not None else None
        if entry is None or entries is None:
            return False, None
        value, expires = entry
        if expires <= time.monotonic():
            self._hot_drop(tenant, workflow_id)
            self._hot_c.expired += 1
            return False, None
        if value is not None and getattr(value, "tenant_id", None) != tenant:
            # Never happens by construction (keys hold the tenant); refuse it all the same.
            log.error("hot cache entry of another tenant refused for tenant %r", tenant)
            self._hot_drop(tenant, workflow_id)
            return False, None
        entries.move_to_end(workflow_id)
        self._hot_lru.move_to_end((tenant, workflow_id))
        if isinstance(value, Workflow):
            value = value.model_copy()
        return True, value

    def _hot_put(self, tenant: str, workflow_id: str, value: Any, expires: float) -> None:
        if value is not None and getattr(value, "tenant_id", None) != tenant:
            return
        entries = self._hot.setdefault(tenant, OrderedDict())
        entries[workflow_id] = (value, expires)
        entries.move_to_end(workflow_id)
        self._hot_lru[(tenant, workflow_id)] = None
        self._hot_lru.move_to_end((tenant, workflow_id))
        while len(entries) > self.hot_size:
            oldest = next(iter(entries))
            self._hot_drop(tenant, oldest)
            self._hot_c.evictions += 1
        while len(self._hot_lru) > self.hot_max:
            t, w = next(iter(self._hot_lru))
            self._hot_drop(t, w)
            self._hot_c.evictions += 1

    def _hot_drop(self, tenant: str, workflow_id: str) -> None:
        entries = self._hot.get(tenant)
        if entries is not None:
            entries.pop(workflow_id, None)
            if not entries:
                del self._hot[tenant]
        self._hot_lru.pop((tenant, workflow_id), None)

    def _hot_drop_tenant(self, tenant: str) -> None:
        for w in list(self._hot.get(tenant, ())):
            self._hot_drop(tenant, w)

    def _drop_all_hot(self) -> None:
        for tenant in list(self._hot):
            self._bump(tenant)
        self._hot.clear()
        self._hot_lru.clear()
        for tenant in list(self._gens):
            self._bump(tenant)

    def _drop_local(self, tenant: str, ids: list[str], all_workflows: bool) -> None:
        """Drop what a write makes stale in this process (ours, or pushed by another process)."""
        self._bump(tenant)
        if all_workflows:
            self._hot_drop_tenant(tenant)
        else:
            for i in ids:
                self._hot_drop(tenant, i)

    async def workflow(
        self, tenant: str, workflow_id: str, loader: Callable[[], Awaitable[T]]
    ) -> T:
        """A single workflow by id (hot tier)."""
        if _bypass.get():
            return await loader()
        self._touch(tenant)
        if self.hot_enabled:
            hit, value = self._hot_get(tenant, workflow_id)
            note_cache("hot", hit)
            if hit:
                self._hot_c.hits += 1
                return cast(T, value)
            self._hot_c.misses += 1
        gen = self._gen(tenant)

        async def load() -> T:
            started = time.monotonic()
            value = await loader()
            if self.hot_enabled and self._gen(tenant) == gen:
                ttl = self.hot_ttl
                limit = clock_limit(value)
                if limit is not None:
                    ttl = min(ttl, limit)
                if ttl > 0:
                    self._hot_put(tenant, workflow_id, value, started + ttl)
            return value

        return await self._flight(("hot", tenant, workflow_id, gen), load)

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
        execution statistics or a validation report (``workflow_id``: workflow generation)."""
        if _bypass.get():
            return await loader()
        self._touch(tenant)
        if not self.warm_enabled:
            return await self._flight(("nowarm", tenant, kind, key, self._gen(tenant)), loader)
        key_hash = _key_hash(kind, key)
        vk, data = await self._backend.lookup(tenant, kind, key_hash, workflow_id)
        if vk is None:  # Redis unavailable: straight from the database
            self._bypassed += 1
            note_cache("warm", False)
            return await self._flight(("down", tenant, kind, key, self._gen(tenant)), loader)
        ttl = self.warm_ttl
        if kind in ("list", "search") and '"validation_status"' in key:
            ttl = min(ttl, float(self.options["clock_ttl"]))
        # The memo holds recently loaded or decoded values under their full key, generation
        # included (``vk`` comes from this lookup), so a memo hit is exactly as fresh as the
        # stored entry, without decoding it again.
        memo = self._memo.get(vk)
        if memo is not None and memo[1] > time.monotonic():
            self._warm_c.hits += 1
            note_cache("warm", True)
            return cast(T, memo[0])
        if data is not None:
            try:
                value = decode(data)
            except Exception:
                log.exception("undecodable warm cache entry %s dropped", vk)
            else:
                if tenant_ok(value, tenant):
                    self._warm_c.hits += 1
                    note_cache("warm", True)
                    limit = clock_limit(value)
                    self._remember(vk, value, ttl if limit is None else min(ttl, limit))
                    return cast(T, value)
                log.error("warm cache entry of another tenant refused for tenant %r", tenant)
        self._warm_c.misses += 1
        note_cache("warm", False)

        async def load() -> T:
            value = await loader()
            data = encode(value)
            limit = clock_limit(value)
            entry_ttl = ttl if limit is None else min(ttl, limit)
            if data is not None and len(data) > self.warm_max_bytes:
                self._oversize += 1  # too big to keep: the next read loads it again
            elif data is not None and entry_ttl > 0.001 and tenant_ok(value, tenant):
                self._remember(vk, value, entry_ttl)
                await self._backend.store(vk, data, entry_ttl)
            return value

        return await self._flight(("warm", vk), load)

    def _remember(self, vk: str, value: Any, ttl: float) -> None:
        now = time.monotonic()
        self._memo[vk] = (value, now + min(ttl, float(self.options["memo_ttl"])))
        self._memo.move_to_end(vk)
        while len(self._memo) > 256 or (self._memo and next(iter(self._memo.values()))[1] <= now):
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
