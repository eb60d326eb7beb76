"""Issue 10: what a cached read returns belongs to the caller. Mutating it — attributes, nested
lists and dicts — never changes what the next caller of the same read gets, whether the value
came from the database (a miss: the object the cache keeps), the hot tier, or the warm tier."""

from __future__ import annotations

import asyncio
from typing import Any

from pydbal.cache import bypass, keep
from pydbal.validation import ValidationIssue, ValidationReport

NODES = [{"id": "a", "name": "A", "type": "trigger.manual", "parameters": {"x": [1]}}]


def _vandalise(wf: Any) -> None:
    wf.name = "changed by a caller"
    wf.nodes.append({"id": "z", "name": "Z", "type": "x", "parameters": {}})
    wf.nodes[0]["parameters"]["x"].append(2)
    wf.tags.append("mutated")
    wf.edges["a"] = {"main": []}
    wf.variables["v"] = 1
    wf.config["c"] = 1


def _intact(wf: Any) -> None:
    assert wf.name == "wf"
    assert wf.nodes == NODES
    assert wf.tags == ["t"]
    assert wf.edges == {} and wf.variables == {} and wf.config == {}


async def _workflows(
    open_db: Any, redis_url: str | None = None, **options: Any
) -> tuple[Any, Any]:
    database = await open_db(redis_url, **options)
    ws = database.tenant("acme", user_id="u-1", role="admin").workflows
    created = await ws.create({"name": "wf", "nodes": NODES, "tags": ["t"]})
    return database, (ws, created.id)


async def test_a_hot_hit_does_not_carry_another_callers_changes(open_db) -> None:
    database, (ws, wid) = await _workflows(open_db, hot_ttl=30)
    first = await ws.get(wid)  # a miss: the loaded object
    _vandalise(first)
    second = await ws.get(wid)  # a hot hit
    assert database.cache_stats()["hot"]["hits"] == 1
    _intact(second)
    _vandalise(second)
    _intact(await ws.get(wid))
    assert database.cache_stats()["hot"]["hits"] == 2


async def test_concurrent_misses_get_separate_objects(open_db) -> None:
    _, (ws, wid) = await _workflows(open_db, hot_ttl=30)
    got = await asyncio.gather(*(ws.get(wid) for _ in range(5)))
    assert len({id(w) for w in got}) == 5
    _vandalise(got[0])
    for w in got[1:]:
        _intact(w)


async def test_a_warm_hit_does_not_carry_another_callers_changes(open_db) -> None:
    database, (ws, wid) = await _workflows(open_db, hot=False)
    await ws.record_execution(wid, "success", 12.5)
    page = await ws.list()
    _vandalise(page.items[0])
    page.items.append(page.items[0])
    page.total = 99
    stats = await ws.get_execution_stats(wid)
    stats.total = 99
    again = await ws.list()
    assert database.cache_stats()["warm"]["hits"] >= 1
    assert again.total == 1 and len(again.items) == 1
    _intact(again.items[0])
    assert (await ws.get_execution_stats(wid)).total == 1


async def test_a_hit_equals_the_database_read_fields_set_included(open_db) -> None:
    _, (ws, wid) = await _workflows(open_db, hot_ttl=30)
    await ws.get(wid)
    hit = await ws.get(wid)
    with bypass():
        direct = await ws.get(wid)
    assert hit == direct and hit.model_fields_set == direct.model_fields_set


def test_keep_copies_nested_models_and_plain_data() -> None:
    issue = ValidationIssue(code="c", path="p", message="m", severity="error")
    report = ValidationReport(valid=False, errors=[issue], warnings=[], validator_version=1)
    kept = keep(report)
    first, second = kept(), kept()
    assert first == second == report
    first.errors.append(issue)  # a frozen model's lists are not frozen
    assert second.errors == [issue] and kept().errors == [issue]
    report.errors.clear()  # the original may change after it was kept: the snapshot does not
    assert kept().errors == [issue]
    data = {"a": [1, {"b": float("nan")}], 2: (3,)}
    copy = keep(data)()
    assert copy is not data and copy["a"] is not data["a"] and copy["a"][1] is not data["a"][1]
    assert copy["a"][0] == 1 and copy[2] == (3,)


async def test_a_redis_hit_and_its_memo_do_not_carry_another_callers_changes(
    open_db: Any, redis_server: Any
) -> None:
    _, (ws, _wid) = await _workflows(open_db, redis_server.url, hot=False)
    _vandalise((await ws.list()).items[0])  # a miss: stored in Redis
    reader = await open_db(redis_server.url, hot=False)  # another process: decodes from Redis
    rs = reader.tenant("acme", user_id="u-1", role="admin").workflows
    for _ in range(3):  # decoded from Redis, then memo hits (the snapshot taken lazily)
        page = await rs.list()
        _intact(page.items[0])
        _vandalise(page.items[0])
    assert reader.cache_stats()["warm"]["hits"] >= 3
    _intact((await ws.list()).items[0])


async def test_copies_off_shares_the_cached_objects(open_db: Any) -> None:
    """``cache={"copies": False}``: hits are the cached objects themselves (documented: the
    caller must treat them as read-only), so a change by one caller is seen by the next."""
    database, (ws, wid) = await _workflows(open_db, hot_ttl=30, copies=False)
    first = await ws.get(wid)
    second = await ws.get(wid)
    assert database.cache_stats()["hot"]["hits"] == 1
    assert second is first
    page = await ws.list()
    assert (await ws.list()) is page
