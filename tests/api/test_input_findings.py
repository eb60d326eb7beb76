"""One test per finding of issue 11: every odd input gets a DBALError (422 naming the field and
the limit), never a raw driver/pydantic/TypeError, and nothing is written when it is refused.

Each test uses the public API on a real database; ``unchanged`` compares everything a write could
touch (workflows, history, executions, audit) before and after the refused call.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import pydbal
from pydbal import DBALError, ErrorCode, Tenant

from .conftest import TENANT_A, snapshot, valid_definition

NUL = "a\x00b"
SURROGATE = "a\ud800b"


async def _state(raw: Any) -> dict[str, Any]:
    state = await snapshot(raw)
    state["audit"] = int(await raw.fetchval("SELECT count(*) FROM dbal.audit_log"))
    return state


@contextlib.asynccontextmanager
async def refused(raw: Any, field: str | None = None) -> AsyncIterator[None]:
    """The block must raise VALIDATION_ERROR (naming ``field`` when given) and write nothing."""
    before = await _state(raw)
    started = time.monotonic()
    with pytest.raises(DBALError) as info:
        yield
    assert time.monotonic() - started < 5, "refusing took too long"
    assert info.value.code == ErrorCode.VALIDATION_ERROR, repr(info.value)
    if field is not None:
        assert info.value.details.get("field") == field, repr(info.value)
        assert "limit" in info.value.details, repr(info.value)
    assert await _state(raw) == before


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
async def wf(acme: Tenant) -> pydbal.Workflow:
    return await acme.workflows.create(valid_definition("target"))


# -- NUL bytes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "extra"),
    [
        ("name", {"name": NUL}),
        ("description", {"description": NUL}),
        ("tags", {"tags": [NUL]}),
        ("nodes", {"nodes": [{"id": "t", "name": NUL, "type": "x"}]}),
        ("variables", {"variables": {NUL: {"type": "string"}}}),
    ],
)
async def test_nul_bytes_in_definitions_are_refused(
    acme: Tenant, raw: Any, field: str, extra: dict[str, Any]
) -> None:
    data = {**valid_definition("nul"), **extra}
    async with refused(raw, field):
        await acme.workflows.create(data)
    async with refused(raw, field):
        await acme.workflows.create_many([valid_definition("fine"), data])
    async with refused(raw, field):
        await acme.workflows.import_many([valid_definition("fine"), data])


async def test_nul_bytes_in_arguments_are_refused(
    app: pydbal.Database, acme: Tenant, raw: Any, wf: pydbal.Workflow
) -> None:
    async with refused(raw, "search"):
        await acme.workflows.search(NUL)
    async with refused(raw, "filter.name"):
        await acme.workflows.list({"name": NUL})
    async with refused(raw, "tenant_id"):
        await app.tenant(NUL, user_id="u", role="admin").workflows.list()
    async with refused(raw, "user_id"):
        await app.tenant(TENANT_A, user_id=NUL, role="admin").workflows.list()
    lock = await acme.workflows.acquire_lock(wf.id)
    assert lock is not None
    async with refused(raw, "execution_id"):
        await acme.workflows.record_execution(wf.id, "success", 5, execution_id=NUL, lock=lock)
    async with refused(raw, "error"):
        await acme.workflows.record_execution(wf.id, "failure", 5, lock=lock, error=NUL)


# -- lone surrogates --------------------------------------------------------------------------


async def test_lone_surrogates_are_refused(app: pydbal.Database, acme: Tenant, raw: Any) -> None:
    data = valid_definition("sur", nodes=[{"id": "t", "name": SURROGATE, "type": "x"}])
    async with refused(raw, "nodes"):
        await acme.workflows.create(data)
    async with refused(raw, "search"):
        await acme.workflows.search(SURROGATE)
    async with refused(raw, "tenant_id"):
        await app.tenant(SURROGATE, user_id="u", role="admin").workflows.list()


# -- nesting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [100, 255, 256, 500, 990, 5000])
async def test_deep_json_is_refused_at_every_depth(
    acme: Tenant, raw: Any, wf: pydbal.Workflow, depth: int
) -> None:
    nodes = [{"id": "t", "name": "Start", "type": "x", "parameters": {"v": nested(depth)}}]
    async with refused(raw, "nodes"):
        await acme.workflows.create(valid_definition("deep", nodes=nodes))
    async with refused(raw, "nodes"):
        await acme.workflows.update(wf.id, {"nodes": nodes})
    async with refused(raw, "config"):
        await acme.workflows.update(wf.id, {"config": {"x": nested(depth)}})


@pytest.mark.parametrize("depth", [100, 256, 500, 990, 5000])
@pytest.mark.parametrize("form", ["data", "text"])
async def test_deep_json_is_refused_alike_by_create_and_import(
    acme: Tenant, raw: Any, depth: int, form: str
) -> None:
    # issue 11: from 256 levels on, import_workflow/import_many answered INVALID_EXPORT_FORMAT
    # (4251) where create answers VALIDATION_ERROR naming the field and the json_depth limit
    import json

    from pydbal.formats.depth import PARSE_DEPTH_MAX

    given = valid_definition("deep", nodes=[{"id": "t", "name": "S", "type": "x", "v": 0}])
    text = json.dumps(given).replace('"v": 0', '"v": ' + "[" * depth + "1" + "]" * depth)
    given["nodes"][0]["v"] = nested(depth)
    async with refused(raw, "nodes"):
        await acme.workflows.create(given)
    with pytest.raises(DBALError) as created:
        await acme.workflows.create(given)
    if form == "text":  # the definition field given as JSON text: the same refusal
        nodes_text = '[{"id": "t", "name": "S", "type": "x", "v": ' + "[" * depth + "1"
        nodes_text += "]" * depth + "}]"
        async with refused(raw, "nodes"):
            await acme.workflows.create({**valid_definition("deep"), "nodes": nodes_text})
        with pytest.raises(DBALError) as as_text:
            await acme.workflows.create({**valid_definition("deep"), "nodes": nodes_text})
        assert as_text.value.details == created.value.details
    expected = {**created.value.details, "index": 0}
    message = f"workflow 0: {created.value.message}"
    if form == "text" and depth > PARSE_DEPTH_MAX:  # beyond the parser: the argument is named
        expected = {"field": "data", "limit": "json_depth", "max": 64}
        message = "data: at most 64 levels of nesting (limit json_depth)"
    payload = given if form == "data" else text
    for attempt in (
        lambda: acme.workflows.import_workflow(payload),
        lambda: acme.workflows.import_many(payload),
    ):
        async with refused(raw, expected["field"]):
            await attempt()
        with pytest.raises(DBALError) as imported:
            await attempt()
        assert imported.value.details == expected
        assert imported.value.message == message
    many = f"[{json.dumps(valid_definition('fine'))}, {text}]"
    async with refused(raw, expected["field"]):
        await acme.workflows.import_many(many if form == "text" else [valid_definition("f"), given])


# -- integers beyond 64 bits ------------------------------------------------------------------


async def test_integers_beyond_64_bits_are_refused(acme: Tenant, raw: Any) -> None:
    nodes = [{"id": "t", "name": "Start", "type": "x", "parameters": {"n": 2**64}}]
    async with refused(raw, "nodes"):
        await acme.workflows.create(valid_definition("big", nodes=nodes))


# -- numbers at the edges ---------------------------------------------------------------------


async def test_numbers_at_the_edges(acme: Tenant, raw: Any, wf: pydbal.Workflow) -> None:
    async with refused(raw, "page"):
        await acme.workflows.list(page=10**9)
    async with refused(raw, "timeout_ms"):
        await acme.workflows.acquire_lock(wf.id, timeout_ms=2**40)
    async with refused(raw, "timeout_ms"):
        await acme.workflows.acquire_lock(wf.id, timeout_ms=1.5)  # not a whole number of ms
    async with refused(raw, "expected_version"):
        await acme.workflows.update(wf.id, {"description": "x"}, expected_version=2**40)
    lock = await acme.workflows.acquire_lock(wf.id, timeout_ms="5000")  # integral text: fine
    assert lock is not None
    async with refused(raw, "lock"):
        await acme.workflows.release_lock(
            wf.id, {"workflow_id": wf.id, "token": 2**70, "expires_at": datetime.now(UTC)}
        )
    async with refused(raw, "execution_time_ms"):
        await acme.workflows.record_execution(wf.id, "success", 1e308, lock=lock)
    done = await acme.workflows.record_execution(wf.id, "success", 3, execution_id=12345, lock=lock)
    assert done.execution_id == "12345"
    updated = await acme.workflows.update(wf.id, {"description": "y"}, expected_version="1")
    assert updated.version == 2


# -- wrong types ------------------------------------------------------------------------------


async def test_wrong_types_are_refused_or_coerced(
    acme: Tenant, raw: Any, wf: pydbal.Workflow
) -> None:
    lock = await acme.workflows.acquire_lock(wf.id)
    assert lock is not None
    async with refused(raw, "started_at"):  # a date without an offset is naive: not guessed
        await acme.workflows.record_execution(
            wf.id, "success", 1, lock=lock, started_at="2024-01-01"
        )
    async with refused(raw, "started_at"):
        await acme.workflows.record_execution(
            wf.id, "success", 1, lock=lock, started_at=datetime(2024, 1, 1)
        )
    async with refused(raw, "start"):
        await acme.workflows.get_execution_stats(wf.id, start="x")
    async with refused(raw, "start"):
        await acme.workflows.executions(wf.id, start="x")
    async with refused(raw, "lock"):
        await acme.workflows.renew_lock(wf.id, None)  # type: ignore[arg-type]
    async with refused(raw, "lock"):
        await acme.workflows.release_lock(wf.id, {"nonsense": 1})  # type: ignore[arg-type]
    # accepted: ISO-8601 with an offset, epoch milliseconds (the seed's type), aware datetimes
    start_ms = int((datetime.now(UTC) - timedelta(days=1)).timestamp() * 1000)
    iso = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    await acme.workflows.record_execution(wf.id, "success", 1, lock=lock, started_at=iso)
    stats = await acme.workflows.get_execution_stats(wf.id, start=start_ms, end=str(2**41))
    assert stats.total == 1
    assert len(await acme.workflows.executions(wf.id, start=start_ms)) == 1


# -- long searches and keys -------------------------------------------------------------------


async def test_long_searches_are_refused(acme: Tenant, raw: Any) -> None:
    async with refused(raw, "search"):
        await acme.workflows.search("-a " * 33000)
    async with refused(raw, "filter.search"):
        await acme.workflows.list({"search": "word " * 20000})


async def test_long_keys_are_refused(app: pydbal.Database, acme: Tenant, raw: Any) -> None:
    async with refused(raw, "user_id"):
        await app.tenant(TENANT_A, user_id="u" * 1_000_000, role="admin").workflows.create(
            valid_definition("long user")
        )
    async with refused(raw, "tags"):
        await acme.workflows.create(valid_definition("long tag", tags=["t" * 1_000_000]))


# -- size -------------------------------------------------------------------------------------


async def test_huge_definitions_are_refused_quickly(acme: Tenant, raw: Any) -> None:
    nodes = [{"id": f"n{i}", "name": f"N{i}", "type": "x", "p": "v" * 150} for i in range(250_000)]
    async with refused(raw, "nodes"):
        await acme.workflows.create(valid_definition("huge", nodes=nodes))
    text = "[" + ",".join(['{"id":"n","name":"n","type":"' + "v" * 200 + '"}'] * 250_000) + "]"
    started = time.monotonic()
    async with refused(raw, "nodes"):
        await acme.workflows.create(valid_definition("huge text", nodes=text))
    assert time.monotonic() - started < 1.0  # refused by its length, before it is parsed


async def test_default_lease_is_one_second_to_one_hour(db: Any, raw: Any) -> None:
    async with pydbal.connect(db.app_dsn, max_size=2) as database:
        acme = database.tenant(TENANT_A, user_id="alice", role="admin")
        wf = await acme.workflows.create(valid_definition("lease"))
        for bad in (999, 3_600_001):
            async with refused(raw, "timeout_ms"):
                await acme.workflows.acquire_lock(wf.id, timeout_ms=bad)
        assert await acme.workflows.acquire_lock(wf.id, timeout_ms=1000) is not None
    with pytest.raises(ValueError, match="lease_max_ms"):
        pydbal.connect(db.app_dsn, limits={"lease_max_ms": 86_400_001})
