"""The warm tier protects itself: an oversize value is not stored (served from the database), and
one failed write never turns the tier off for other keys or tenants. Real Redis servers (a
private one per test), no fakes."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from .conftest import QueryCounter

NODES = [{"id": "t", "name": "Start", "type": "n8n-nodes-base.manualTrigger"}]


def _big_nodes(kb: int) -> list[dict[str, Any]]:
    return [{"id": "t", "name": "Start", "type": "x", "parameters": {"blob": "b" * kb * 1024}}]


async def _value_keys(url: str, kind: str) -> list[bytes]:
    client = aioredis.from_url(url)
    try:
        return [k async for k in client.scan_iter(match=f"*:v:{kind}:*")]
    finally:
        await client.aclose()


async def test_oversize_values_are_served_from_the_database(open_db, redis_server) -> None:
    database = await open_db(redis_server.url, warm_max_bytes=64 * 1024)
    ws = database.tenant("acme", user_id="u", role="admin").workflows
    await ws.create({"name": "big", "nodes": _big_nodes(100)})
    await ws.create({"name": "small", "nodes": NODES})
    counter = QueryCounter(database)
    for _ in range(3):
        assert (await ws.list({"name": "big"})).total == 1
    assert counter.count("api_list") == 3  # never cached: every read is a query
    assert database.cache_stats()["warm"]["oversize"] == 3
    assert await _value_keys(redis_server.url, "list") == []
    for _ in range(3):
        assert (await ws.list({"name": "small"})).total == 1
    assert counter.count("api_list") == 4  # the small page is cached as usual
    assert len(await _value_keys(redis_server.url, "list")) == 1


async def test_a_failed_write_does_not_disable_the_warm_tier(open_db, redis_server) -> None:
    database = await open_db(redis_server.url, memo_ttl=0.0)
    acme = database.tenant("acme", user_id="u", role="admin").workflows
    globex = database.tenant("globex", user_id="g", role="admin").workflows
    await acme.create({"name": "a", "nodes": NODES})
    await globex.create({"name": "g", "nodes": _big_nodes(50)})
    await acme.list()  # cached in Redis
    await globex.list({"name": "nothing"})  # creates globex's generation key
    # Redis now refuses to store anything more (a real refusal: OOM under noeviction)
    admin = aioredis.from_url(redis_server.url)
    try:
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", 1)
        errors = database.cache_stats()["warm"]["errors"]
        await globex.list()  # its store fails
        assert database.cache_stats()["warm"]["errors"] > errors
        stats = database.cache_stats()["warm"]
        assert stats["available"] == 1
        hits = stats["hits"]
        counter = QueryCounter(database)
        await asyncio.gather(*(acme.list() for _ in range(5)))
        assert counter.count("api_list") == 0  # another tenant's page still comes from Redis
        assert database.cache_stats()["warm"]["hits"] >= hits + 1
        assert database.cache_stats()["warm"]["bypassed"] == 0
    finally:
        await admin.config_set("maxmemory", 0)
        await admin.aclose()
