"""The warm tier's shared backend (a :class:`pydbal.cache.backend.WarmBackend`): Redis with
generation keys, pub/sub, and failure handling.

Keys of one tenant share a hash tag ``{<namespace>:<tenant>}``; the namespace identifies the
database (system identifier + database oid), so two databases never share entries. Values are
stored under a key that embeds generation values read in the same Lua script:

- ``…:lg``        the tenant's list generation (lists, search pages);
- ``…:ep``        the tenant's epoch (bumped by bulk writes: every per-workflow entry dies);
- ``…:wg:<id>``   a workflow's generation (stats and validation entries of that workflow).

A write bumps the generations (atomically, one script, one round trip) and publishes the
invalidation on ``pydbal:<namespace>:inval`` so other processes drop their hot entries. A reader
stores what it loaded under the generation it read *before* loading, so a write racing a load
can never leave its stale result reachable. Generation values come from the Redis server clock
(microseconds, monotonic per key), so a generation key that expired, was evicted or was lost in a
restart is re-created with a value never used before: losing one costs misses, never staleness.

A failed or slow *store* of one value is not an outage: that value is simply not cached (counted
in ``errors``), and the tier stays in use for every other key and tenant. Only a failed lookup or
invalidation — which every read or write needs — marks Redis down.

Failures (refused, reset, timed out): the backend marks itself unavailable (logged once per
outage), every call is served from the database, invalidations of this process are remembered,
and a background probe retries with exponential backoff. When Redis answers again, the
remembered invalidations are applied (bumped and published) *before* the backend is used again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import orjson
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger("pydbal.cache")

FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
# More remembered workflow ids than this for one tenant collapse into "all of the tenant".
PENDING_IDS_MAX = 1000

_LUA_PRELUDE = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function gen(k, ttl)
  local v = redis.call('GET', k)
  if not v then
    v = string.format('%.0f', now())
    redis.call('SET', k, v, 'PX', ttl)
  end
  return v
end
"""

# KEYS: one or two generation keys. ARGV: value-key prefix, key hash, generation ttl (ms).
# Returns {value key, value or nothing}.
_LOOKUP = (
    _LUA_PRELUDE
    + """
local g = gen(KEYS[1], ARGV[3])
if #KEYS > 1 then g = g .. '.' .. gen(KEYS[2], ARGV[3]) end
local vk = ARGV[1] .. g .. ':' .. ARGV[2]
return {vk, redis.call('GET', vk)}
"""
)

# KEYS: generation keys to bump. ARGV: generation ttl (ms), channel ('' = none), message.
_BUMP = (
    _LUA_PRELUDE
    + """
local n = now()
for _, k in ipairs(KEYS) do
  local c = tonumber(redis.call('GET', k) or '0')
  local v = n
  if c and c >= v then v = c + 1 end
  redis.call('SET', k, string.format('%.0f', v), 'PX', ARGV[1])
end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return 1
"""
)


@dataclass
class Pending:
    """Invalidations of one tenant that could not reach Redis."""

    lists: bool = False
    all_workflows: bool = False
    ids: set[str] = field(default_factory=set)

    def add(self, ids: Iterable[str], lists: bool, all_workflows: bool) -> None:
        self.lists |= lists
        self.all_workflows |= all_workflows
        if not self.all_workflows:
            self.ids.update(ids)
            if len(self.ids) > PENDING_IDS_MAX:
                self.all_workflows = True
        if self.all_workflows:
            self.ids.clear()

    def merge(self, other: Pending) -> None:
        self.add(other.ids, other.lists, other.all_workflows)


RemoteHandler = Callable[[str, list[str], bool], None]


class RedisWarm:
    """Shared warm storage in Redis. Every method is safe to call while Redis is down."""

    shared = True
    evictions = 0  # Redis evicts by its own policy; nothing is counted here

    def __init__(
        self,
        url: str,
        *,
        origin: str,
        timeout: float,
        connect_timeout: float,
        retry_max: float,
        warm_ttl: float,
        pubsub: bool,
        pool_size: int = 16,
        on_remote: RemoteHandler,
        on_resync: Callable[[], None],
    ) -> None:
        self.url = url
        self.origin = origin
        self.timeout = timeout
        self.retry_max = retry_max
        self.gen_ttl_ms = int((2 * warm_ttl + 60) * 1000)
        self.use_pubsub = pubsub
        self.on_remote = on_remote
        self.on_resync = on_resync
        self.namespace = ""
        self.channel = ""
        self.available = False
        self.errors = 0
        self.outages = 0
        self._pending: dict[str, Pending] = {}
        self._closed = False
        self._probe: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        # A bounded pool: a burst of concurrent calls queues for a few connections instead of
        # opening one each. Connecting gets its own, longer timeout: on a loaded machine a burst
        # of new connections overran 100 ms, while a refused or reset connection fails at once.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            timeout=max(1.0, 10 * timeout),
            socket_timeout=timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._r: Redis = Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
        # The subscriber waits for messages: no read timeout on its connection.
        self._sub: Redis = Redis.from_url(
            url,
            socket_timeout=None,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
        self._lookup = self._r.register_script(_LOOKUP)
        self._bump = self._r.register_script(_BUMP)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self, namespace: str) -> None:
        self.namespace = namespace
        self.channel = f"pydbal:{namespace}:inval"
        try:
            await self._r.ping()
        except FAILURES as exc:
            self._down(exc)
        else:
            self.available = True
        if self.use_pubsub:
            self._listener = asyncio.create_task(self._listen(), name="pydbal-cache-pubsub")

    async def close(self) -> None:
        self._closed = True
        for task in (self._probe, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for client in (self._r, self._sub):
            with contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)

    def background(self) -> dict[str, bool]:
        """The pub/sub listener (when used) and whether it is alive."""
        if not self.use_pubsub:
            return {}
        alive = self._listener is not None and not self._listener.done()
        return {"redis_pubsub": alive}

    # -- keys ---------------------------------------------------------------------------------
    def _prefix(self, tenant: str) -> str:
        return f"pydbal:{{{self.namespace}:{quote(tenant, safe='')}}}"

    def _gen_keys(self, tenant: str, workflow_id: str | None) -> list[str]:
        p = self._prefix(tenant)
        if workflow_id is None:
            return [f"{p}:lg"]
        return [f"{p}:ep", f"{p}:wg:{workflow_id}"]

    # -- operations ---------------------------------------------------------------------------
    async def lookup(
        self, tenant: str, kind: str, key_hash: str, workflow_id: str | None
    ) -> tuple[str | None, bytes | None]:
        """(value key, stored bytes or None); (None, None) while Redis is unavailable."""
        if not self.available:
            return None, None
        try:
            res = await self._lookup(
                keys=self._gen_keys(tenant, workflow_id),
                args=[f"{self._prefix(tenant)}:v:{kind}:", key_hash, self.gen_ttl_ms],
            )
        except FAILURES as exc:
            self._down(exc)
            return None, None
        vk = res[0].decode() if isinstance(res[0], bytes) else str(res[0])
        value = res[1] if len(res) > 1 and isinstance(res[1], bytes) else None
        return vk, value

    async def store(self, value_key: str, data: bytes, ttl: float) -> None:
        if not self.available:
            return
        try:
            await self._r.set(value_key, data, px=max(1, int(ttl * 1000)))
        except FAILURES as exc:
            # One value that could not be written (too slow, refused): not cached, nothing
            # else changes. A Redis that is really gone fails the next lookup, which marks it.
            self.errors += 1
            log.debug("warm cache store of %s failed: %s: %s", value_key, type(exc).__name__, exc)

    async def invalidate(
        self, tenant: str, ids: list[str], lists: bool, all_workflows: bool
    ) -> None:
        if not self.available:
            self._remember(tenant, ids, lists, all_workflows)
            return
        try:
            await self._send(tenant, ids, lists, all_workflows)
        except FAILURES as exc:
            # It may or may not have been applied: apply it again once Redis answers.
            self._remember(tenant, ids, lists, all_workflows)
            self._down(exc)

    async def _send(
        self, tenant: str, ids: Iterable[str], lists: bool, all_workflows: bool
    ) -> None:
        p = self._prefix(tenant)
        ids = sorted(set(ids))
        keys = [f"{p}:lg"] if lists or all_workflows else []
        if all_workflows:
            keys.append(f"{p}:ep")
        else:
            keys.extend(f"{p}:wg:{i}" for i in ids)
        message = orjson.dumps(
            {"o": self.origin, "t": tenant, "i": [] if all_workflows else ids, "a": all_workflows}
        )
        channel = self.channel if self.use_pubsub else ""
        await self._bump(keys=keys or [f"{p}:lg"], args=[self.gen_ttl_ms, channel, message])

    def _remember(self, tenant: str, ids: list[str], lists: bool, all_workflows: bool) -> None:
        self._pending.setdefault(tenant, Pending()).add(ids, lists, all_workflows)

    # -- failure and recovery -----------------------------------------------------------------
    def _down(self, exc: BaseException) -> None:
        self.errors += 1
        if self.available or self.outages == 0:
            self.outages += 1
            log.warning(
                "redis at %s is unreachable (%s: %s); serving from the database until it "
                "answers again",
                self.url,
                type(exc).__name__,
                exc,
            )
        self.available = False
        if not self._closed and (self._probe is None or self._probe.done()):
            self._probe = asyncio.get_running_loop().create_task(
                self._recover(), name="pydbal-cache-redis-probe"
            )

    async def _recover(self) -> None:
        delay = min(0.05, self.retry_max)
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await self._r.ping()
                # Apply what this process invalidated meanwhile before anyone reads again.
                while self._pending:
                    pending, self._pending = self._pending, {}
                    try:
                        for tenant, p in pending.items():
                            await self._send(tenant, p.ids, p.lists, p.all_workflows)
                    except BaseException:
                        for tenant, p in pending.items():
                            self._pending.setdefault(tenant, Pending()).merge(p)
                        raise
            except FAILURES:
                self.errors += 1
                delay = min(delay * 2, self.retry_max)
                continue
            self.available = True
            log.warning("redis at %s answers again; warm cache back in use", self.url)
            return

    # -- pub/sub ------------------------------------------------------------------------------
    async def _listen(self) -> None:
        delay = min(0.05, self.retry_max)
        first = True
        while not self._closed:
            ps = self._sub.pubsub()
            try:
                await ps.subscribe(self.channel)
                if not first:
                    self.on_resync()  # messages may have been missed while disconnected
                first = False
                delay = min(0.05, self.retry_max)
                while True:
                    msg = await ps.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        self._handle(msg.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception:
                first = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
            finally:
                with contextlib.suppress(Exception):
                    await ps.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    def _handle(self, data: Any) -> None:
        try:
            msg = orjson.loads(data)
            if msg.get("o") == self.origin:
                return
            self.on_remote(str(msg["t"]), [str(i) for i in msg.get("i", [])], bool(msg.get("a")))
        except Exception:  # a foreign or malformed message: drop everything, to be safe
            self.on_resync()
