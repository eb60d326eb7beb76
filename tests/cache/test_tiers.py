"""The tiers themselves: serialization, hot LRU bounds and TTL, options, stats."""

from __future__ import annotations

import asyncio
from datetime import datetime
from uuid import UUID

import pytest

from pydbal import ExecutionStats, Page, Workflow
from pydbal.cache import Cache, decode, encode
from pydbal.validation import ValidationReport

NODES = [{"id": "a", "name": "A", "type": "trigger.manual", "parameters": {}}]


async def _seed(database, tenant="acme", n=3, prefix="wf"):
    ws = database.tenant(tenant, user_id="u-1", role="admin").workflows
    return ws, [await ws.create({"name": f"{prefix}-{i}", "nodes": NODES}) for i in range(n)]


async def test_values_round_trip_typed(open_db) -> None:
    database = await open_db()
    ws, created = await _seed(database)
    await ws.record_execution(created[0].id, "success", 12.5)
    values = [
        await ws.get(created[0].id),
        await ws.list(),
        await ws.search("wf"),
        await ws.get_execution_stats(created[0].id),
        await ws.validate(created[0].id),
        None,
    ]
    for value in values:
        data = encode(value)
        assert data is not None
        back = decode(data)
        assert back == value
        assert type(back) is type(value)
    wf = decode(encode(values[0]))
    assert isinstance(wf, Workflow) and isinstance(wf.id, UUID)
    assert isinstance(wf.created_at, datetime) and wf.created_at.tzinfo is not None
    page = decode(encode(values[1]))
    assert isinstance(page, Page) and all(isinstance(w, Workflow) for w in page.items)
    assert isinstance(decode(encode(values[3])), ExecutionStats)
    stats = decode(encode(values[3]))
    assert stats.last_executed_at is not None and stats.last_executed_at.tzinfo is not None
    assert isinstance(decode(encode(values[4])), ValidationReport)
    assert encode(object()) is None  # unknown types are not cached


async def test_hot_hits_ttl_and_stats(open_db) -> None:
    database = await open_db(hot_ttl=0.2)
    ws, created = await _seed(database, n=1)
    wid = created[0].id
    first = await ws.get(wid)
    second = await ws.get(wid)
    assert first == second
    hot = database.cache_stats()["hot"]
    assert (hot["hits"], hot["misses"]) == (1, 1)
    second.name = "mutated by a caller"  # a hit is a copy: the cache is not changed by this
    assert (await ws.get(wid)).name == "wf-0"
    await asyncio.sleep(0.25)
    await ws.get(wid)
    hot = database.cache_stats()["hot"]
    assert hot["misses"] == 2 and hot["expired"] == 1


async def test_hot_bounds_per_tenant_and_global(open_db) -> None:
    database = await open_db(hot_size=2, hot_max=3, hot_ttl=30)
    a, a_wfs = await _seed(database, "a", n=3)
    b, b_wfs = await _seed(database, "b", n=2)
    for w in a_wfs:
        await a.get(w.id)
    stats = database.cache_stats()["hot"]
    assert stats["size"] == 2 and stats["evictions"] == 1  # per-tenant bound
    for w in b_wfs:
        await b.get(w.id)
    stats = database.cache_stats()["hot"]
    assert stats["size"] == 3 and stats["evictions"] == 2  # global bound
    # The least recently used entry (a's second workflow) went first; b's are all there.
    before = database.cache_stats()["hot"]["hits"]
    for w in b_wfs:
        await b.get(w.id)
    assert database.cache_stats()["hot"]["hits"] == before + 2


async def test_tiers_can_be_switched_off(open_db) -> None:
    database = await open_db(hot=False, warm=False)
    ws, created = await _seed(database, n=1)
    for _ in range(3):
        await ws.get(created[0].id)
        await ws.list()
    stats = database.cache_stats()
    assert stats["hot"]["hits"] == 0 and stats["hot"]["misses"] == 0
    assert stats["warm"]["hits"] == 0 and stats["warm"]["misses"] == 0


def test_unknown_option_is_refused() -> None:
    with pytest.raises(TypeError, match="hot_sise"):
        Cache(None, hot_sise=10)


async def test_redis_warm_hits(open_db, redis_server) -> None:
    database = await open_db(redis_server.url)
    ws, created = await _seed(database)
    for _ in range(3):
        await ws.list()
        await ws.search("wf")
        await ws.get_execution_stats(created[0].id)
    warm = database.cache_stats()["warm"]
    assert warm["redis"] == 1 and warm["available"] == 1
    assert warm["misses"] == 3 and warm["hits"] == 6
