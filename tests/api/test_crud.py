"""create / get / update / delete / upsert / bulk writes / set_enabled / validate / history."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pydbal
from pydbal import ErrorCode, Tenant, Workflow

from .conftest import (
    TENANT_A,
    TENANT_B,
    count_rows,
    cyclic_definition,
    raises_code,
    row,
    snapshot,
    valid_definition,
    valid_edges,
    valid_nodes,
)

# --- create ------------------------------------------------------------------------------------


async def test_create_returns_typed_workflow_and_get_reads_it(acme: Tenant) -> None:
    wf = await acme.workflows.create(
        valid_definition("Daily Report", description="sends it", tags=["a", "b"])
    )
    assert isinstance(wf, Workflow)
    assert isinstance(wf.id, uuid.UUID)
    assert wf.tenant_id == TENANT_A
    assert wf.created_by == "alice"
    assert wf.version == 1
    assert wf.execution_count == 0
    assert wf.validation_status == "valid"
    assert wf.is_locked is False
    assert isinstance(wf.nodes, list) and isinstance(wf.edges, dict)
    assert wf.tags == ["a", "b"]
    for ts in (wf.created_at, wf.updated_at, wf.validated_at, wf.valid_until):
        assert ts is not None and ts.tzinfo is not None and ts.utcoffset() is not None
    assert wf.valid_until is not None and wf.validated_at is not None
    assert wf.valid_until - wf.validated_at == timedelta(hours=1)

    got = await acme.workflows.get(wf.id)
    assert got is not None
    assert got.model_dump() == wf.model_dump()
    assert await acme.workflows.get(str(wf.id)) is not None  # a string id works too
    assert await acme.workflows.get(uuid.uuid4()) is None
    assert await acme.workflows.get("not-a-uuid") is None


async def test_create_accepts_json_strings_and_comma_tags(acme: Tenant, raw: Any) -> None:
    wf = await acme.workflows.create(
        {
            "name": "From JSON text",
            "nodes": json.dumps(valid_nodes()),
            "edges": json.dumps(valid_edges()),
            "variables": '{"limit": {"type": "number", "defaultValue": 3}}',
            "config": '{"settings": {"executionTimeout": 60}}',
            "tags": " x, y ,z ",
        }
    )
    assert wf.nodes == valid_nodes()
    assert wf.edges == valid_edges()
    assert wf.variables["limit"]["type"] == "number"
    assert wf.config == {"settings": {"executionTimeout": 60}}
    assert wf.tags == ["x", "y", "z"]
    stored = await row(raw, wf.id)
    assert stored is not None
    # stored as JSON values, not as JSON strings inside JSON
    assert (
        await raw.fetchval(
            "SELECT jsonb_typeof(nodes) || '/' || jsonb_typeof(edges) "
            "FROM dbal.workflows WHERE id = $1",
            wf.id,
        )
        == "array/object"
    )
    assert stored["tags"] == ["x", "y", "z"]


async def test_create_accepts_camel_case_input(acme: Tenant) -> None:
    wf = await acme.workflows.create(
        pydbal.CreateWorkflowInput.model_validate(
            {"name": "camel", "nodes": valid_nodes(), "edges": valid_edges(), "tenantId": "acme"}
        )
    )
    assert wf.tenant_id == TENANT_A


async def test_create_bad_json_is_validation_error_and_stores_nothing(
    acme: Tenant, raw: Any
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "bad1", "nodes": "{not json"}, "INVALID_NODES"),
        ({"name": "bad2", "nodes": '{"a": 1}'}, "INVALID_NODES"),
        ({"name": "bad3", "nodes": valid_nodes(), "edges": "[1, 2]"}, "INVALID_EDGES"),
        ({"name": "bad4", "nodes": valid_nodes(), "edges": "nope"}, "INVALID_EDGES"),
    ]
    for payload, issue in cases:
        with raises_code(ErrorCode.VALIDATION_ERROR) as info:
            await acme.workflows.create(payload)
        assert issue in json.dumps(info.value.details), (payload, info.value.details)
    assert await count_rows(raw) == 0


async def test_create_other_tenant_id_is_tenant_mismatch(acme: Tenant, raw: Any) -> None:
    with raises_code(ErrorCode.TENANT_MISMATCH) as info:
        await acme.workflows.create(valid_definition("x", tenant_id=TENANT_B))
    assert int(info.value.code) == 4034
    with raises_code(ErrorCode.TENANT_MISMATCH):
        await acme.workflows.create(valid_definition("y", tenantId=TENANT_B))
    assert await count_rows(raw) == 0
    same = await acme.workflows.create(valid_definition("z", tenant_id=TENANT_A))
    assert same.tenant_id == TENANT_A


async def test_create_duplicate_name_is_conflict(acme: Tenant, globex: Tenant, raw: Any) -> None:
    await acme.workflows.create(valid_definition("Same"))
    with raises_code(ErrorCode.CONFLICT):
        await acme.workflows.create(valid_definition("Same"))
    assert await count_rows(raw, TENANT_A) == 1
    # names are per tenant
    await globex.workflows.create(valid_definition("Same"))


async def test_create_invalid_graph_is_stored_invalid_with_report(acme: Tenant) -> None:
    wf = await acme.workflows.create(cyclic_definition("loop"))
    assert wf.validation_status == "invalid"
    assert "CIRCULAR_DEPENDENCY" in json.dumps(wf.validation_errors)


async def test_create_rejects_bad_fields(acme: Tenant, raw: Any) -> None:
    for payload in (
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 256},
        {"name": "ok", "category": "nonsense"},
        {"name": "ok", "unknown_field": 1},
    ):
        with raises_code(ErrorCode.VALIDATION_ERROR):
            await acme.workflows.create(payload)
    assert await count_rows(raw) == 0


# --- update ------------------------------------------------------------------------------------


async def test_update_bumps_version_every_time(acme: Tenant) -> None:
    wf = await acme.workflows.create(valid_definition("v"))
    w2 = await acme.workflows.update(wf.id, {"description": "one"})
    w3 = await acme.workflows.update(wf.id, {"description": "one"})  # same value: still a bump
    w4 = await acme.workflows.update(wf.id, {"tags": "p,q"}, expected_version=3)
    assert (w2.version, w3.version, w4.version) == (2, 3, 4)
    assert w4.tags == ["p", "q"]
    assert w4.updated_by == "alice"
    assert w4.updated_at >= wf.updated_at


async def test_update_stale_expected_version_is_conflict_nothing_written(
    acme: Tenant, raw: Any
) -> None:
    wf = await acme.workflows.create(valid_definition("v"))
    await acme.workflows.update(wf.id, {"description": "first"})
    before = await snapshot(raw)
    with raises_code(ErrorCode.CONFLICT):
        await acme.workflows.update(wf.id, {"description": "second"}, expected_version=1)
    with raises_code(ErrorCode.CONFLICT):
        await acme.workflows.update(wf.id, {"nodes": valid_nodes("x")}, expected_version=1)
    assert await snapshot(raw) == before


async def test_update_definition_change_keeps_history_and_revalidates(acme: Tenant) -> None:
    wf = await acme.workflows.create(valid_definition("d"))
    assert wf.validation_status == "valid"
    bad = cyclic_definition("d")
    w2 = await acme.workflows.update(wf.id, {"nodes": bad["nodes"], "edges": bad["edges"]})
    assert w2.version == 2
    assert w2.validation_status == "invalid"
    assert "CIRCULAR_DEPENDENCY" in json.dumps(w2.validation_errors)
    history = await acme.workflows.history(wf.id)
    assert [v.version for v in history] == [1]
    assert history[0].nodes == valid_nodes()
    assert history[0].edges == valid_edges()
    assert history[0].replaced_at.tzinfo is not None
    # and back to a valid one
    w3 = await acme.workflows.update(wf.id, {"nodes": valid_nodes(), "edges": valid_edges()})
    assert w3.validation_status == "valid"
    assert [v.version for v in await acme.workflows.history(wf.id)] == [2, 1]


async def test_update_rename_onto_taken_name_is_conflict(acme: Tenant, raw: Any) -> None:
    a = await acme.workflows.create(valid_definition("A"))
    await acme.workflows.create(valid_definition("B"))
    before = await row(raw, a.id)
    with raises_code(ErrorCode.CONFLICT):
        await acme.workflows.update(a.id, {"name": "B"})
    assert await row(raw, a.id) == before
    renamed = await acme.workflows.update(a.id, {"name": "C"})
    assert renamed.name == "C"


async def test_update_missing_and_bad_input(acme: Tenant, raw: Any) -> None:
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await acme.workflows.update(uuid.uuid4(), {"description": "x"})
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await acme.workflows.update("nope", {"description": "x"})
    wf = await acme.workflows.create(valid_definition("u"))
    before = await row(raw, wf.id)
    with raises_code(ErrorCode.VALIDATION_ERROR) as info:
        await acme.workflows.update(wf.id, {"nodes": "{broken"})
    assert "INVALID_NODES" in json.dumps(info.value.details)
    with raises_code(ErrorCode.TENANT_MISMATCH):
        await acme.workflows.update(wf.id, {"tenant_id": TENANT_B, "description": "x"})
    assert await row(raw, wf.id) == before


# --- delete / upsert ---------------------------------------------------------------------------


async def test_delete_returns_bool(acme: Tenant, raw: Any) -> None:
    wf = await acme.workflows.create(valid_definition("del"))
    assert await acme.workflows.delete(wf.id) is True
    archived = await row(raw, wf.id)  # archived, not erased (issue 9)
    assert archived is not None and archived["archived_at"] is not None
    assert await acme.workflows.get(wf.id) is None
    assert await acme.workflows.delete(wf.id) is False
    assert await acme.workflows.delete(uuid.uuid4()) is False
    assert await acme.workflows.delete("garbage") is False


async def test_upsert_creates_then_updates(acme: Tenant, raw: Any) -> None:
    created = await acme.workflows.upsert(
        "Up",
        {"nodes": valid_nodes(), "edges": valid_edges(), "description": "created"},
        {"description": "updated"},
    )
    assert created.version == 1 and created.description == "created"
    updated = await acme.workflows.upsert(
        "Up", {"nodes": [], "description": "created again"}, {"description": "updated"}
    )
    assert updated.id == created.id
    assert updated.version == 2 and updated.description == "updated"
    assert await count_rows(raw) == 1


# --- bulk ------------------------------------------------------------------------------------


async def test_create_many_counts_and_is_all_or_nothing(acme: Tenant, raw: Any) -> None:
    n = await acme.workflows.create_many([valid_definition(f"bulk {i}") for i in range(25)])
    assert n == 25
    assert await count_rows(raw) == 25
    assert await acme.workflows.create_many([]) == 0
    batch = [valid_definition(f"new {i}") for i in range(10)] + [valid_definition("bulk 3")]
    with raises_code(ErrorCode.CONFLICT):
        await acme.workflows.create_many(batch)
    assert await count_rows(raw) == 25
    # a duplicate inside the batch itself fails it too
    with raises_code(ErrorCode.CONFLICT):
        await acme.workflows.create_many([valid_definition("twin"), valid_definition("twin")])
    # bad JSON in one row stores nothing
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.create_many([valid_definition("ok"), {"name": "b", "nodes": "{"}])
    assert await count_rows(raw) == 25


async def test_update_many_and_delete_many_skip_rows_of_others(
    app: pydbal.Database, acme: Tenant, raw: Any
) -> None:
    mine_scope = app.tenant(TENANT_A, user_id="ursula", role="user")
    admin_ids = [
        (await acme.workflows.create(valid_definition(f"admin {i}", tags=["t"]))).id
        for i in range(3)
    ]
    # rows created by the user (the creator case): inserted by an admin scope with that user id
    creator_admin = app.tenant(TENANT_A, user_id="ursula", role="admin")
    mine = [
        (await creator_admin.workflows.create(valid_definition(f"mine {i}", tags=["t"]))).id
        for i in range(2)
    ]
    # one of the admin's rows is locked by another user
    bob = app.tenant(TENANT_A, user_id="bob", role="user")
    lock = await bob.workflows.acquire_lock(admin_ids[0])
    assert lock is not None

    n = await mine_scope.workflows.update_many({"tags": ["t"]}, {"description": "by ursula"})
    assert n == 2
    for wid in mine:
        r = await row(raw, wid)
        assert r is not None and r["description"] == "by ursula" and r["version"] == 2
    for wid in admin_ids:
        r = await row(raw, wid)
        assert r is not None and r["description"] is None and r["version"] == 1

    # an admin may change every row except the one locked by bob
    n = await acme.workflows.update_many({"tags": "t"}, {"category": "automation"})
    assert n == 4
    locked = await row(raw, admin_ids[0])
    assert locked is not None and locked["category"] == "user"

    assert await mine_scope.workflows.delete_many({"tags": ["t"]}) == 2
    assert all([(await row(raw, w) or {}).get("archived_at") is not None for w in mine])
    assert await acme.workflows.delete_many({"tags": ["t"]}) == 2
    assert (await row(raw, admin_ids[0]) or {"archived_at": 1})["archived_at"] is None
    assert await bob.workflows.release_lock(admin_ids[0], lock) is True
    assert await acme.workflows.delete_many(None) == 1
    assert await raw.fetchval("SELECT count(*) FROM dbal.workflows WHERE archived_at IS NULL") == 0
    assert await count_rows(raw) == 5  # archived, not erased


async def test_update_many_definition_revalidates(acme: Tenant) -> None:
    wf = await acme.workflows.create(valid_definition("m", tags=["x"]))
    bad = cyclic_definition("m")
    n = await acme.workflows.update_many(
        {"ids": [str(wf.id)]}, {"nodes": bad["nodes"], "edges": bad["edges"], "variables": {}}
    )
    assert n == 1
    got = await acme.workflows.get(wf.id)
    assert got is not None and got.validation_status == "invalid"


async def test_bulk_filters_reject_unknown_fields(acme: Tenant) -> None:
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.update_many({"colour": "red"}, {"description": "x"})
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.delete_many({"colour": "red"})


# --- set_enabled / validate / history / restore ----------------------------------------------


async def test_set_enabled(acme: Tenant, raw: Any) -> None:
    wf = await acme.workflows.create(valid_definition("e"))
    off = await acme.workflows.set_enabled(wf.id, False)
    assert off.enabled is False and off.version == 2
    r = await row(raw, wf.id)
    assert r is not None and r["enabled"] is False
    on = await acme.workflows.set_enabled(wf.id, True)
    assert on.enabled is True and on.version == 3
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await acme.workflows.set_enabled(uuid.uuid4(), True)
    with raises_code(ErrorCode.VALIDATION_ERROR):
        await acme.workflows.set_enabled(wf.id, "yes")  # type: ignore[arg-type]


async def test_validate_returns_report_with_codes(acme: Tenant, raw: Any) -> None:
    good = await acme.workflows.create(valid_definition("good"))
    report = await acme.workflows.validate(good.id)
    assert isinstance(report, pydbal.ValidationReport)
    assert report.valid is True and report.errors == []

    nodes = [
        *valid_nodes(),
        {"id": "o", "name": "Orphan", "type": "n8n-nodes-base.set"},
        {
            "id": "v",
            "name": "UsesVar",
            "type": "n8n-nodes-base.set",
            "parameters": {"value": "={{ $workflow.variables.missing }}"},
        },
    ]
    edges = {
        **valid_edges(),
        "Set": {"main": [[{"node": "UsesVar", "type": "main", "index": 0}]]},
    }
    bad = await acme.workflows.create(
        {
            "name": "bad",
            "nodes": nodes,
            "edges": edges,
            "variables": {"n": {"type": "number", "defaultValue": "three"}},
        }
    )
    report = await acme.workflows.validate(bad.id)
    assert report.valid is False
    codes = {i.code for i in report.errors}
    assert {"MISSING_VARIABLE", "INVALID_VARIABLE_TYPE"} <= codes
    assert "ORPHANED_NODE" in {w.code for w in report.warnings}
    for issue in [*report.errors, *report.warnings]:
        assert issue.path and issue.message
    orphan = next(w for w in report.warnings if w.code == "ORPHANED_NODE")
    assert orphan.path.startswith("nodes[2]")
    # the result is stored
    r = await row(raw, bad.id)
    assert r is not None and r["validation_status"] == "invalid"
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await acme.workflows.validate(uuid.uuid4())


async def test_history_and_restore(acme: Tenant, raw: Any) -> None:
    wf = await acme.workflows.create(valid_definition("h", description="v1"))
    await acme.workflows.update(wf.id, {"nodes": valid_nodes()[:1], "edges": {}})
    await acme.workflows.update(wf.id, {"name": "h renamed"})
    history = await acme.workflows.history(wf.id)
    versions = [v.version for v in history]
    assert versions == sorted(versions, reverse=True)
    assert 1 in versions
    restored = await acme.workflows.restore(wf.id, 1)
    assert restored.version == 4
    assert restored.nodes == valid_nodes()
    assert restored.edges == valid_edges()
    assert restored.name == "h"
    assert restored.validation_status == "valid"
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await acme.workflows.restore(wf.id, 99)
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await acme.workflows.history(uuid.uuid4())


async def test_model_dump_by_alias_is_camel_case(acme: Tenant) -> None:
    wf = await acme.workflows.create(valid_definition("camel"))
    dumped = wf.model_dump(by_alias=True)
    for key in (
        "tenantId",
        "createdAt",
        "updatedAt",
        "createdBy",
        "executionCount",
        "lastExecutedAt",
        "validationStatus",
        "isLocked",
        "lockExpiresAt",
        "averageExecutionTime",
    ):
        assert key in dumped, key
    assert "tenant_id" not in dumped and "created_at" not in dumped
    as_json = json.loads(wf.model_dump_json(by_alias=True))
    assert as_json["tenantId"] == TENANT_A
    assert as_json["createdAt"].endswith(("Z", "+00:00"))
