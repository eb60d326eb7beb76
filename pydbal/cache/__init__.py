"""Caching tiers in front of the database (see docs/caching.md).

- **Hot** (in-process, :mod:`pydbal.cache.hot`): single-workflow reads. LRU bounded per tenant
  (``hot_size``, default 1000) and overall (``hot_max``, default 100 000); TTL ``hot_ttl``
  (default 0.1 s) counted from the *start* of the database read that produced the entry. A hit
  is returned only when its ``tenant_id`` is the caller's tenant.
- **Warm** (:mod:`pydbal.cache.backend`: Redis when a URL is given, else in-process): list pages,
  search results, execution statistics, validation reports; TTL ``warm_ttl`` (default 300 s).
  Keys embed generations bumped by writes (no key scans). Values are stored as JSON and restored
  to their types (:mod:`pydbal.cache.codec`).
- **Single flight** (:mod:`pydbal.cache.singleflight`): concurrent misses of one key (one
  generation) share one loader call.
- **Cold** (the database): validation results with valid_until and the validator version; the
  background re-validator (:mod:`pydbal.revalidate`, created by ``pydbal.connect``) refreshes
  stale ones.

What a cached read returns belongs to the caller: the tiers keep snapshots and hand out new
copies made from them (:func:`pydbal.cache.codec.keep`), so changing a returned value — nested
lists and dicts included — changes nothing another caller gets.

:class:`Cache` (:mod:`pydbal.cache.tiers`) puts the tiers together; ``bypass()``
(:mod:`pydbal.cache.switch`) makes the reads of a block skip them.
"""

from pydbal.cache.backend import LocalWarm, WarmBackend
from pydbal.cache.codec import clock_limit, decode, encode, keep, tenant_ok, workflows_in
from pydbal.cache.switch import bypass
from pydbal.cache.tiers import DEFAULTS, Cache

__all__ = [
    "DEFAULTS",
    "Cache",
    "LocalWarm",
    "WarmBackend",
    "bypass",
    "clock_limit",
    "decode",
    "encode",
    "keep",
    "tenant_ok",
    "workflows_in",
]
