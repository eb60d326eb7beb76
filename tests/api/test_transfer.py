"""clone, export, import_workflow / import_many."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pydbal
from pydbal import ErrorCode, Tenant

from .conftest import (
    TENANT_A,
    count_rows,
    cyclic_definition,
    raises_code,
    valid_definition,
    valid_edges,
    valid_nodes,
)


def _n8n_editor_file(name: str = "n8n flow") -> dict[str, Any]:
    return {
        "id": "42",
        "name": name,
        "nodes": [
            {
                "id": "1",
                "name": "When clicking",
                "type": "n8n-nodes-base.manualTrigger",
                "position": [0, 0],
                "parameters": {},
            },
            {
                "id": "2",
                "name": "Edit Fields",
                "type": "n8n-nodes-base.set",
                "position": [200, 0],
                "parameters": {},
            },
            {
                "id": "3",
                "name": "Note",
                "type": "n8n-nodes-base.stickyNote",
                "position": [0, 200],
                "parameters": {"content": "hi"},
            },
        ],
        "connections": {
            "When clicking": {"main": [[{"node": "Edit Fields", "type": "main", "index": 0}]]}
        },
        "settings": {"executionOrder": "v1"},
        "tenantId": "${TENANT_ID}",
        "createdBy": "someone-else",
        "meta": {"instanceId": "abc"},
        "pinData": {},
        "active": True,
    }


def _without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


# --- clone -------------------------------------------------------------------------------------


async def test_clone_names_counters_and_enabled(acme: Tenant) -> None:
    src = await acme.workflows.create(valid_definition("Report", tags=["a"], category="automation"))
    await acme.workflows.record_execution(src.id, "success", 5.0)
    c1 = await acme.workflows.clone(src.id)
    assert c1.name == "Report (Clone)"
    assert c1.id != src.id
    assert c1.enabled is False
    assert c1.execution_count == 0 and c1.last_executed_at is None
    assert c1.average_execution_time is None and c1.last_execution_status is None
    assert c1.version == 1
    assert c1.nodes == src.nodes and c1.edges == src.edges
    assert c1.tags == ["a"] and c1.category == "automation"
    assert c1.is_locked is False
    c2 = await acme.workflows.clone(src.id)
    assert c2.name == "Report (Clone) (2)"
    c3 = await acme.workflows.clone(src.id)
    assert c3.name == "Report (Clone) (3)"
    named = await acme.workflows.clone(src.id, "Report", enabled=True)
    assert named.name == "Report (2)" and named.enabled is True
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await acme.workflows.clone(uuid.uuid4())


async def test_clone_of_locked_workflow_is_unlocked(acme: Tenant) -> None:
    src = await acme.workflows.create(valid_definition("L"))
    assert await acme.workflows.acquire_lock(src.id) is not None
    c = await acme.workflows.clone(src.id)
    assert c.is_locked is False and c.locked_by is None


# --- export ------------------------------------------------------------------------------------


async def test_export_bundle_format_and_camel_case(acme: Tenant) -> None:
    wf = await acme.workflows.create(
        valid_definition(
            "Exp",
            description="d",
            variables={"n": {"type": "number", "defaultValue": 1}},
            tags=["t"],
            config={"settings": {"executionTimeout": 30}},
        )
    )
    bundle = await acme.workflows.export(wf.id)
    assert isinstance(bundle, pydbal.ExportBundle)
    assert bundle.format == "pydbal.workflow/v1"
    assert bundle.exported_at.tzinfo is not None
    dumped = json.loads(bundle.model_dump_json(by_alias=True))
    assert set(dumped) >= {"format", "exportedAt", "workflow", "validationReport"}
    w = dumped["workflow"]
    assert w["name"] == "Exp" and w["nodes"] == valid_nodes() and w["edges"] == valid_edges()
    assert w["variables"] == {"n": {"type": "number", "defaultValue": 1}}
    assert w["tags"] == ["t"] and w["description"] == "d"
    assert not any("_" in k for k in w), f"snake_case keys in export: {sorted(w)}"
    assert dumped["validationReport"]["valid"] is True
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND):
        await acme.workflows.export(uuid.uuid4())


async def test_export_import_export_round_trip(acme: Tenant, globex: Tenant) -> None:
    wf = await acme.workflows.create(
        valid_definition(
            "Round",
            description="trip",
            tags=["x", "y"],
            variables={"v": {"type": "string", "defaultValue": "s"}},
            config={"settings": {"executionTimeout": 10}, "extra": [1, 2]},
        )
    )
    first = (await acme.workflows.export(wf.id)).model_dump(mode="json", by_alias=True)
    imported = await globex.workflows.import_workflow(first)
    assert imported.tenant_id == "globex"
    assert imported.created_by == "gina"
    assert imported.name == "Round"
    assert imported.enabled is False
    second = (await globex.workflows.export(imported.id)).model_dump(mode="json", by_alias=True)
    # `enabled` is exported but import takes its own `enabled` argument (default False): the
    # rest of the definition must survive unchanged
    assert first["workflow"]["enabled"] is True and second["workflow"]["enabled"] is False
    assert _without(second["workflow"], "enabled") == _without(first["workflow"], "enabled")
    enabled_copy = await globex.workflows.import_workflow(first, enabled=True)
    fourth = (await globex.workflows.export(enabled_copy.id)).model_dump(mode="json", by_alias=True)
    assert _without(fourth["workflow"], "name") == _without(first["workflow"], "name")
    # from JSON text too, within the same tenant: the name collides
    again = await acme.workflows.import_workflow(json.dumps(first))
    assert again.name == "Round (2)"
    third = (await acme.workflows.export(again.id)).model_dump(mode="json", by_alias=True)
    assert _without(third["workflow"], "name", "enabled") == _without(
        first["workflow"], "name", "enabled"
    )


# --- import ------------------------------------------------------------------------------------


async def test_import_n8n_editor_file(acme: Tenant) -> None:
    wf = await acme.workflows.import_workflow(_n8n_editor_file())
    assert wf.name == "n8n flow"
    assert wf.tenant_id == TENANT_A and wf.created_by == "alice"
    assert wf.edges == _n8n_editor_file()["connections"]  # connections become edges
    assert len(wf.nodes) == 3
    assert wf.validation_status == "valid"  # the sticky note is not an orphan
    assert wf.enabled is False
    assert wf.execution_count == 0
    assert wf.id != "42"
    # unknown extra fields are kept in config
    assert "meta" in json.dumps(wf.config) or "pinData" in json.dumps(wf.config)


async def test_import_name_override_enabled_and_collision(acme: Tenant) -> None:
    a = await acme.workflows.import_workflow(_n8n_editor_file(), name="Mine", enabled=True)
    assert a.name == "Mine" and a.enabled is True
    b = await acme.workflows.import_workflow(_n8n_editor_file(), name="Mine")
    assert b.name == "Mine (2)"
    c = await acme.workflows.import_workflow(_n8n_editor_file(), name="Mine")
    assert c.name == "Mine (3)"


async def test_import_n8n_database_export_array_of_one(acme: Tenant) -> None:
    wf = await acme.workflows.import_workflow([_n8n_editor_file("from db")])
    assert wf.name == "from db"
    many = await acme.workflows.import_many(
        [_n8n_editor_file("one"), _n8n_editor_file("two"), _n8n_editor_file("one")]
    )
    assert [w.name for w in many] == ["one", "two", "one (2)"]
    with raises_code(ErrorCode.INVALID_EXPORT_FORMAT):
        await acme.workflows.import_workflow([_n8n_editor_file("a"), _n8n_editor_file("b")])


async def test_import_template_wrapper(acme: Tenant) -> None:
    inner = _n8n_editor_file()
    wrapper = {
        "id": 1234,
        "name": "Template title",
        "workflow": {"workflow": {"nodes": inner["nodes"], "connections": inner["connections"]}},
    }
    wf = await acme.workflows.import_workflow(wrapper)
    assert len(wf.nodes) == 3
    assert wf.edges == inner["connections"]
    assert wf.name  # some name: the wrapper's title or one derived from the nodes
    assert wf.validation_status == "valid"


async def test_import_file_without_name_gets_one(acme: Tenant, tmp_path: Path) -> None:
    data = _n8n_editor_file()
    del data["name"]
    wf = await acme.workflows.import_workflow(data)
    assert wf.name.strip()
    path = tmp_path / "my-flow.json"
    path.write_text(json.dumps(data))
    from_file = await acme.workflows.import_workflow(path)
    assert from_file.name.strip()


async def test_import_strict_invalid_graph_stores_nothing(acme: Tenant, raw: Any) -> None:
    bad = cyclic_definition("bad import")
    with raises_code(ErrorCode.IMPORT_VALIDATION_FAILED) as info:
        await acme.workflows.import_workflow(bad, strict=True)
    assert int(info.value.code) == 4252
    assert "CIRCULAR_DEPENDENCY" in json.dumps(info.value.details)
    assert await count_rows(raw) == 0
    stored = await acme.workflows.import_workflow(bad)  # not strict: stored as invalid
    assert stored.validation_status == "invalid"
    ok = await acme.workflows.import_workflow(valid_definition("fine"), strict=True)
    assert ok.validation_status == "valid"


async def test_import_not_json_or_no_nodes(acme: Tenant, raw: Any) -> None:
    for data in ("{not json", b"\x00\x01garbage", '{"name": "no nodes"}', "[]", "42", '"text"'):
        with raises_code(ErrorCode.INVALID_EXPORT_FORMAT) as info:
            await acme.workflows.import_workflow(data)
        assert int(info.value.code) == 4251
        assert info.value.message
    with raises_code(ErrorCode.INVALID_EXPORT_FORMAT):
        await acme.workflows.import_workflow({"name": "x", "nodes": "not a list"})
    with raises_code(ErrorCode.INVALID_EXPORT_FORMAT):
        await acme.workflows.import_workflow(Path("/nonexistent/file.json"))
    assert await count_rows(raw) == 0


async def test_import_metabuilder_shape(acme: Tenant) -> None:
    data = {
        "id": "wf-1",
        "name": "MB",
        "tenantId": "${TENANT_ID}",
        "nodes": [
            {"id": "n1", "name": "Trigger", "type": "trigger"},
            {"id": "n2", "name": "Act", "type": "action"},
        ],
        "connections": {"n1": {"main": {"0": [{"node": "n2", "type": "main", "index": 0}]}}},
        "executionCount": 99,
        "isLocked": True,
        "lockedBy": "x",
    }
    wf = await acme.workflows.import_workflow(data)
    assert wf.tenant_id == TENANT_A
    assert wf.execution_count == 0 and wf.is_locked is False and wf.locked_by is None
    assert wf.validation_status == "valid"


async def test_concurrent_clones_all_get_distinct_names(acme: Tenant) -> None:
    src = await acme.workflows.create(valid_definition("popular"))
    clones = await asyncio.gather(*(acme.workflows.clone(src.id) for _ in range(8)))
    names = sorted(c.name for c in clones)
    assert len(set(names)) == 8
    assert "popular (Clone)" in names and "popular (Clone) (2)" in names


async def test_export_many_keeps_order_and_matches_export(acme: Tenant, globex: Tenant) -> None:
    made = [await acme.workflows.create(valid_definition(f"bulk export {i}")) for i in range(3)]
    bad = await acme.workflows.create(cyclic_definition("bulk export cyclic"))
    ids = [made[2].id, bad.id, made[0].id, made[1].id]
    bundles = await acme.workflows.export_many(ids)
    assert [b.workflow["name"] for b in bundles] == [
        "bulk export 2", "bulk export cyclic", "bulk export 0", "bulk export 1"
    ]
    for wid, bundle in zip(ids, bundles, strict=True):
        single = await acme.workflows.export(wid)
        assert bundle.workflow == single.workflow
        assert bundle.validation_report == single.validation_report
    assert bundles[1].validation_report is not None
    assert bundles[1].validation_report["valid"] is False
    foreign = await globex.workflows.create(valid_definition("theirs"))
    with raises_code(ErrorCode.WORKFLOW_NOT_FOUND) as info:
        await acme.workflows.export_many([made[0].id, foreign.id, uuid.uuid4()])
    assert len(info.value.details["ids"]) == 2 and str(foreign.id) in info.value.details["ids"]
