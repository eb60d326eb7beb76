"""Redis down at start, killed and restarted mid-run, hung; single flight; the re-validator."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pydbal.cache import bypass

from .conftest import QueryCounter

NODES = [{"id": "a", "name": "A", "type": "trigger.manual", "parameters": {}}]
FAST = {"redis_timeout": 0.05, "redis_retry_max": 0.2}


async def _until(predicate: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def _unreachable_logs(caplog: Any) -> int:
    return sum("unreachable" in r.getMessage() for r in caplog.records)


async def _reads(ws: Any, wid: Any) -> tuple[Any, ...]:
    return (
        await ws.get(wid),
        await ws.list(),
        await ws.search("resilient", limit=50),
        await ws.get_execution_stats(wid),
    )


async def _truth(ws: Any, wid: Any) -> tuple[Any, ...]:
    with bypass():
        return await _reads(ws, wid)


async def test_redis_down_at_start_then_back(open_db, redis_server, caplog) -> None:
    caplog.set_level(logging.WARNING, "pydbal.cache")
    redis_server.stop()
    database = await open_db(redis_server.url, **FAST)
    ws = database.tenant("acme", user_id="u", role="admin").workflows
    wf = await ws.create({"name": "resilient one", "nodes": NODES})
    for _ in range(20):
        assert await _reads(ws, wf.id) == await _truth(ws, wf.id)
    assert database.cache_stats()["warm"]["available"] == 0
    assert _unreachable_logs(caplog) == 1  # once, not per call
    redis_server.start()
    await _until(lambda: database.cache_stats()["warm"]["available"] == 1)
    await ws.list()
    await ws.list()
    assert database.cache_stats()["warm"]["hits"] >= 1


async def test_redis_killed_and_restarted_mid_run(open_db, redis_server, caplog) -> None:
    caplog.set_level(logging.WARNING, "pydbal.cache")
    a = await open_db(redis_server.url, hot_ttl=0.05, **FAST)
    b = await open_db(redis_server.url, hot_ttl=0.05, **FAST)
    wa = a.tenant("acme", user_id="u", role="admin").workflows
    wb = b.tenant("acme", user_id="u", role="admin").workflows
    wf = await wa.create({"name": "resilient", "nodes": NODES})
    failures: list[BaseException] = []
    stop = asyncio.Event()

    async def traffic(ws: Any, writer: bool) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if writer and n % 3 == 0:
                    await ws.update(wf.id, {"description": f"d{n}"})
                    await ws.record_execution(wf.id, "success", float(n))
                await _reads(ws, wf.id)
            except BaseException as exc:  # every operation must succeed
                failures.append(exc)
            await asyncio.sleep(0.002)

    tasks = [asyncio.create_task(traffic(wa, True)), asyncio.create_task(traffic(wb, False))]
    await asyncio.sleep(0.3)
    redis_server.stop()
    await asyncio.sleep(0.5)
    redis_server.start()
    await _until(lambda: all(d.cache_stats()["warm"]["available"] for d in (a, b)))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*tasks)
    assert failures == []
    assert _unreachable_logs(caplog) == 2  # once per process for the outage
    await asyncio.sleep(0.06)  # the hot bound
    for ws in (wa, wb):
        assert await _reads(ws, wf.id) == await _truth(wa, wf.id)


async def test_writes_while_redis_hung_leave_nothing_stale(open_db, redis_server) -> None:
    """Redis keeps its data (SIGSTOP, not a restart): entries cached before the outage must be
    dead once the writer is back, in the writer's and in another process."""
    a = await open_db(redis_server.url, hot_ttl=0.05, pubsub=False, **FAST)
    b = await open_db(redis_server.url, hot_ttl=0.05, pubsub=False, **FAST)
    wa = a.tenant("acme", user_id="u", role="admin").workflows
    wb = b.tenant("acme", user_id="u", role="admin").workflows
    wf = await wa.create({"name": "resilient", "nodes": NODES})
    for ws in (wa, wb):  # cached in Redis
        await _reads(ws, wf.id)
        await _reads(ws, wf.id)
    redis_server.pause()
    t0 = time.monotonic()
    await wa.update(wf.id, {"name": "resilient renamed"})  # invalidation cannot reach Redis
    await wa.record_execution(wf.id, "success", 5.0)
    await wa.update_many({}, {"description": "bulk while hung"})
    assert time.monotonic() - t0 < 2.0  # timeouts, not hangs
    assert await _reads(wa, wf.id) == await _truth(wa, wf.id)  # served from the database
    redis_server.resume()
    await _until(lambda: a.cache_stats()["warm"]["available"] == 1)
    await asyncio.sleep(0.06)
    for ws in (wb, wa):
        assert await _reads(ws, wf.id) == await _truth(wa, wf.id)


async def test_slow_redis_is_bypassed(open_db, redis_server) -> None:
    database = await open_db(redis_server.url, **FAST)
    ws = database.tenant("acme", user_id="u", role="admin").workflows
    wf = await ws.create({"name": "resilient", "nodes": NODES})
    await ws.list()
    redis_server.pause()
    try:
        t0 = time.monotonic()
        for _ in range(10):
            assert (await ws.list()).total == 1
        elapsed = time.monotonic() - t0
    finally:
        redis_server.resume()
    assert elapsed < 1.0  # one timeout, then straight to the database
    assert database.cache_stats()["warm"]["bypassed"] >= 9
    await _until(lambda: database.cache_stats()["warm"]["available"] == 1)
    assert (await ws.get(wf.id)) is not None


async def test_one_query_for_100_concurrent_misses(open_db, redis_server) -> None:
    database = await open_db(redis_server.url, hot_ttl=5)
    ws = database.tenant("acme", user_id="u", role="admin").workflows
    wf = await ws.create({"name": "popular", "nodes": NODES})
    counter = QueryCounter(database)
    got = await asyncio.gather(*(ws.get(wf.id) for _ in range(100)))
    assert all(g is not None and g.id == wf.id for g in got)
    assert counter.count("api_get") == 1
    pages = await asyncio.gather(*(ws.list({"name": "popular"}) for _ in range(100)))
    assert all(p.total == 1 for p in pages)
    assert counter.count("api_list") == 1
    stats = await asyncio.gather(*(ws.get_execution_stats(wf.id) for _ in range(100)))
    assert all(s.total == 0 for s in stats)
    assert counter.count("execution_stats") == 1


async def test_one_query_for_100_concurrent_misses_in_memory(open_db) -> None:
    database = await open_db(None)
    ws = database.tenant("acme", user_id="u", role="admin").workflows
    await ws.create({"name": "popular", "nodes": NODES})
    counter = QueryCounter(database)
    await asyncio.gather(*(ws.search("popular") for _ in range(100)))
    assert counter.count("api_search") == 1


async def test_background_revalidation(open_db, db) -> None:
    database = await open_db(None, revalidate=True, revalidate_interval=0.1)
    ws = database.tenant("acme", user_id="u", role="admin").workflows
    expired = await ws.create({"name": "expired", "nodes": NODES})
    old = await ws.create({"name": "old validator", "nodes": NODES})
    fresh = await ws.create({"name": "fresh", "nodes": NODES})
    assert (await ws.get(expired.id)).validation_status == "valid"
    su = await db.connect(as_app=False)
    await su.execute(
        "UPDATE dbal.workflows SET valid_until = now() - interval '1 minute' WHERE id = $1",
        expired.id,
    )
    await su.execute("UPDATE dbal.workflows SET validator_version = 0 WHERE id = $1", old.id)
    with bypass():
        assert (await ws.get(expired.id)).validation_status == "stale"
        assert (await ws.get(old.id)).validation_status == "stale"
        stale = await ws.list({"validation_status": "stale"})
        assert {w.id for w in stale.items} == {expired.id, old.id}

    async def statuses() -> dict[Any, tuple[str, Any, Any]]:
        rows = await su.fetch(
            "SELECT id, dbal.effective_validation_status(validation_status, valid_until, "
            "validator_version) AS s, valid_until, validator_version FROM dbal.workflows"
        )
        return {r["id"]: (r["s"], r["valid_until"], r["validator_version"]) for r in rows}

    deadline = time.monotonic() + 5
    while True:
        now = await statuses()
        if now[expired.id][0] == "valid" and now[old.id][0] == "valid":
            break
        assert time.monotonic() < deadline, f"not re-validated: {now}"
        await asyncio.sleep(0.05)
    assert now[old.id][2] != 0
    assert database.cache.revalidator is not None and database.cache.revalidator.revalidated >= 2
    await asyncio.sleep(0.15)  # the readers see it too
    for w in (expired, old, fresh):
        assert (await ws.get(w.id)).validation_status == "valid"
    assert (await ws.list({"validation_status": "stale"})).total == 0


async def test_revalidation_off_by_option(open_db) -> None:
    database = await open_db(None, revalidate=False)
    assert database.cache.revalidator is None
