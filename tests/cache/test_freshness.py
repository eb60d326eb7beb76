"""Read-your-writes after every write operation, in one process and across two processes
sharing Redis; and no entry of one tenant ever returned to another."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from pydbal import DBALError, ErrorCode
from pydbal.cache import bypass

NODES = [{"id": "a", "name": "A", "type": "trigger.manual", "parameters": {}}]
HOT_TTL = 0.1


async def _outcome(call: Any) -> Any:
    try:
        return await call
    except DBALError as exc:  # e.g. the statistics of a deleted workflow
        return ("error", exc.code)


class Reads:
    """The cached reads a test compares against the database (read through ``bypass``)."""

    def __init__(self, ids: list[Any], focus: Any) -> None:
        self.ids = ids
        self.focus = focus

    async def warm(self, ws: Any) -> dict[str, Any]:
        return {
            "list": await ws.list(),
            "list_enabled": await ws.list({"enabled": True}, {"field": "name", "direction": "asc"}),
            "first": await ws.find_first({"name": "alpha"}),
            "search": await ws.search("alpha", limit=50),
            "stats": await _outcome(ws.get_execution_stats(self.focus)),
            "stale": await ws.list({"validation_status": "stale"}),
        }

    async def hot(self, ws: Any) -> dict[str, Any]:
        return {str(i): await ws.get(i) for i in self.ids}

    async def truth(self, ws: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        with bypass():
            return await self.warm(ws), await self.hot(ws)


def _same(label: str, what: str, got: dict[str, Any], want: dict[str, Any]) -> None:
    for key in want:
        assert got[key] == want[key], f"after {label}: stale {what} read {key!r}"


async def _scenario(writer: Any, readers: list[tuple[Any, float]]) -> int:
    """Run every write operation through ``writer``; after each, every reader (a workflows
    object and the delay it is allowed for single-workflow reads) must read what the database
    says. Returns how many checks were made."""
    focus = await writer.create({"name": "alpha", "nodes": NODES, "tags": ["t"]})
    other = await writer.create({"name": "alpha other", "nodes": NODES})
    reads = Reads([focus.id, other.id], focus.id)
    checks = 0

    async def step(label: str, write: Any) -> Any:
        nonlocal checks
        for ws, _ in readers:  # fill the caches first, so a stale entry would be served
            await reads.warm(ws)
            await reads.hot(ws)
        result = await write()
        want_warm, want_hot = await reads.truth(writer)
        for ws, _ in readers:
            _same(label, "warm", await reads.warm(ws), want_warm)
        for ws, delay in readers:
            if delay:
                await asyncio.sleep(delay)
            _same(label, "hot", await reads.hot(ws), want_hot)
        checks += 1
        return result

    await step("create", lambda: writer.create({"name": "alpha new", "nodes": NODES}))
    await step(
        "create_many",
        lambda: writer.create_many([{"name": f"alpha bulk {i}", "nodes": NODES} for i in range(3)]),
    )
    await step("update", lambda: writer.update(focus.id, {"description": "alpha described"}))
    definition = {"nodes": NODES, "edges": {}, "variables": {"v": 1}}
    await step("update(definition)", lambda: writer.update(focus.id, definition))
    await step("set_enabled", lambda: writer.set_enabled(other.id, False))
    await step("update_many", lambda: writer.update_many({"name": "alpha"}, {"tags": ["x", "y"]}))
    await step("update_many(all)", lambda: writer.update_many({}, {"category": "automation"}))
    await step("upsert(update)", lambda: writer.upsert("alpha", {}, {"description": "upserted"}))
    await step("upsert(create)", lambda: writer.upsert("alpha upserted", {"nodes": NODES}, {}))
    lock = await step("acquire_lock", lambda: writer.acquire_lock(focus.id, 60000))
    lock = await step("renew_lock", lambda: writer.renew_lock(focus.id, lock, 120000))
    await step(
        "record_execution",
        lambda: writer.record_execution(focus.id, "success", 42.0, "exec-1", lock),
    )
    await step("release_lock", lambda: writer.release_lock(focus.id, lock))
    await step("record_execution(2)", lambda: writer.record_execution(focus.id, "failure", 7.0))
    await step("validate", lambda: writer.validate(focus.id))
    history = await writer.history(focus.id)
    assert history, "a definition change keeps the old version"
    await step("restore", lambda: writer.restore(focus.id, history[-1].version))
    clone = await step("clone", lambda: writer.clone(focus.id, "alpha clone"))
    bundle = await writer.export(focus.id)
    exported = bundle.model_dump(by_alias=True, mode="json")
    await step("import", lambda: writer.import_workflow(exported))
    await step("delete", lambda: writer.delete(clone.id))
    await step("set_enabled(on)", lambda: writer.set_enabled(other.id, True))
    # A short lease that then expires by the clock, with no write in between. The step compares
    # the readers with the database while the lease is live; if it ran out before a failed
    # comparison ended (a loaded machine), that comparison raced the clock, not the cache, and
    # the step is taken again with a longer lease. A stale read while the lease was live still
    # fails: at 19.2 s the lease outlives any step.
    lease_ms = 300
    taken: list[Any] = []
    while True:

        async def take(ms: int = lease_ms) -> Any:
            taken.append(await writer.acquire_lock(other.id, ms))
            return taken[-1]

        try:
            short = await step("acquire_lock(short)", take)
            break
        except AssertionError:
            expired = bool(taken) and datetime.now(UTC) >= taken[-1].expires_at
            if not expired or lease_ms >= 19_200:
                raise
            lease_ms *= 4
    assert short is not None
    # expired by the clock (the cache's clock is this one): cached copies must not show it locked
    await asyncio.sleep((short.expires_at - datetime.now(UTC)).total_seconds() + 0.05)
    want_warm, want_hot = await reads.truth(writer)
    for ws, _ in readers:
        _same("lock expiry", "warm", await reads.warm(ws), want_warm)
        _same("lock expiry", "hot", await reads.hot(ws), want_hot)
    await step("release_expired_locks", writer.release_expired_locks)
    await step("delete_many", lambda: writer.delete_many({"tags": ["x"]}))
    await step("delete(focus)", lambda: writer.delete(focus.id))
    return checks


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_read_your_writes_in_one_process(open_db, redis_server, backend: str) -> None:
    database = await open_db(redis_server.url if backend == "redis" else None, hot_ttl=30)
    ws = database.tenant("acme", user_id="u-1", role="admin").workflows
    checks = await _scenario(ws, [(ws, 0.0)])
    assert checks >= 18
    stats = database.cache_stats()
    assert stats["hot"]["hits"] > 0 and stats["warm"]["hits"] > 0  # the test was not vacuous
    assert stats["warm"]["redis"] == (backend == "redis")


async def test_read_your_writes_across_processes(open_db, redis_server) -> None:
    """Warm entries at once; single workflows once the hot TTL has passed (pub/sub off here,
    so only the documented TTL bound is relied on)."""
    a = await open_db(redis_server.url, hot_ttl=HOT_TTL)
    b = await open_db(redis_server.url, hot_ttl=HOT_TTL, pubsub=False)
    wa = a.tenant("acme", user_id="u-1", role="admin").workflows
    wb = b.tenant("acme", user_id="u-2", role="user").workflows
    checks = await _scenario(wa, [(wa, 0.0), (wb, HOT_TTL)])
    assert checks >= 18
    assert b.cache_stats()["warm"]["hits"] > 0


async def test_pubsub_drops_hot_entries_of_other_processes(open_db, redis_server) -> None:
    a = await open_db(redis_server.url, hot_ttl=30)
    b = await open_db(redis_server.url, hot_ttl=30)  # far longer than the wait below
    wa = a.tenant("acme", user_id="u-1", role="admin").workflows
    wb = b.tenant("acme", user_id="u-1", role="admin").workflows
    wf = await wa.create({"name": "pushed", "nodes": NODES})
    assert (await wb.get(wf.id)).version == 1
    assert (await wb.get(wf.id)).version == 1  # a hot hit
    await wa.update(wf.id, {"description": "v2"})
    deadline = time.monotonic() + 10.0  # returns as soon as it arrives (milliseconds here)
    while (await wb.get(wf.id)).version != 2:
        assert time.monotonic() < deadline, "the invalidation never reached the other process"
        await asyncio.sleep(0.005)
    await wa.update_many({}, {"description": "v3"})  # bulk: every hot entry of the tenant
    deadline = time.monotonic() + 10.0
    while (await wb.get(wf.id)).version != 3:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_no_entry_crosses_tenants(open_db, redis_server, backend: str) -> None:
    url = redis_server.url if backend == "redis" else None
    one = await open_db(url, hot_ttl=30)
    two = await open_db(url, hot_ttl=30)
    tenants = ["acme", "acme}", "acme:x", "globex"]  # key-building edge cases included
    made: dict[str, Any] = {}
    for t in tenants:
        ws = one.tenant(t, user_id="u", role="admin").workflows
        made[t] = await ws.create({"name": "same name", "nodes": NODES, "tags": ["shared"]})
        await ws.record_execution(made[t].id, "success", 1.0)
    for db_ in (one, two):
        for t in tenants:  # warm every tenant's entries, in both processes
            ws = db_.tenant(t, user_id="u", role="admin").workflows
            for _ in range(2):
                for other in tenants:
                    await ws.get(made[other].id)
                    await _outcome(ws.get_execution_stats(made[other].id))
                await ws.list()
                await ws.search("same")
                await ws.find_first({"name": "same name"})
    for db_ in (one, two):
        for t in tenants:
            ws = db_.tenant(t, user_id="u", role="user").workflows
            for other in tenants:
                got = await ws.get(made[other].id)
                stats = await _outcome(ws.get_execution_stats(made[other].id))
                if other == t:
                    assert got is not None and got.tenant_id == t
                    assert stats.total == 1
                else:
                    assert got is None
                    assert stats == ("error", ErrorCode.WORKFLOW_NOT_FOUND)
            page = await ws.list()
            assert [w.tenant_id for w in page.items] == [t]
            assert [w.id for w in page.items] == [made[t].id]
            assert [w.tenant_id for w in await ws.search("same")] == [t]
            first = await ws.find_first({"name": "same name"})
            assert first is not None and first.id == made[t].id
        assert db_.cache_stats()["hot"]["hits"] > 0 and db_.cache_stats()["warm"]["hits"] > 0
