"""Cross-tenant: tenant B's id used from tenant A behaves exactly as a random missing id (same
error code, or same None / False / empty result) and changes nothing of B's. Also for god and
supergod, who have admin's rights inside their tenant and none outside it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import pydbal
from pydbal import DBALError, ErrorCode, Lock, Tenant

from .conftest import TENANT_A, TENANT_B, valid_definition, valid_nodes


async def _run_executing(scope: Tenant, wid: Any) -> str:
    async with scope.workflows.executing(wid):
        return "ran"


def _lock_for(wid: Any, token: int) -> Lock:
    return Lock(workflow_id=wid, token=token, expires_at=datetime.now(UTC) + timedelta(minutes=1))


IdOp = Callable[[Tenant, Any, int], Awaitable[Any]]

ID_OPS: dict[str, IdOp] = {
    "get": lambda s, w, t: s.workflows.get(w),
    "update": lambda s, w, t: s.workflows.update(w, {"description": "hijacked"}),
    "update_expected_version": lambda s, w, t: s.workflows.update(
        w, {"description": "hijacked"}, expected_version=2
    ),
    "update_definition": lambda s, w, t: s.workflows.update(w, {"nodes": valid_nodes()[:1]}),
    "delete": lambda s, w, t: s.workflows.delete(w),
    "set_enabled": lambda s, w, t: s.workflows.set_enabled(w, False),
    "validate": lambda s, w, t: s.workflows.validate(w),
    "acquire_lock": lambda s, w, t: s.workflows.acquire_lock(w),
    "renew_lock": lambda s, w, t: s.workflows.renew_lock(w, _lock_for(w, t)),
    "release_lock": lambda s, w, t: s.workflows.release_lock(w),
    "release_lock_token": lambda s, w, t: s.workflows.release_lock(w, _lock_for(w, t)),
    "record_execution": lambda s, w, t: s.workflows.record_execution(w, "success", 1.0),
    "record_execution_token": lambda s, w, t: s.workflows.record_execution(
        w, "success", 1.0, lock=_lock_for(w, t)
    ),
    "get_execution_stats": lambda s, w, t: s.workflows.get_execution_stats(w),
    "executions": lambda s, w, t: s.workflows.executions(w),
    "audit": lambda s, w, t: s.workflows.audit(w),
    "history": lambda s, w, t: s.workflows.history(w),
    "restore": lambda s, w, t: s.workflows.restore(w, 1),
    "clone": lambda s, w, t: s.workflows.clone(w),
    "export": lambda s, w, t: s.workflows.export(w),
    "executing": lambda s, w, t: _run_executing(s, w),
    "list_ids": lambda s, w, t: s.workflows.list({"ids": [str(w)]}),
    "find_first_ids": lambda s, w, t: s.workflows.find_first({"ids": [str(w)]}),
    "update_many_ids": lambda s, w, t: s.workflows.update_many(
        {"ids": [str(w)]}, {"description": "hijacked"}
    ),
    "delete_many_ids": lambda s, w, t: s.workflows.delete_many({"ids": [str(w)]}),
}


async def _outcome(op: str, scope: Tenant, wid: Any, token: int) -> tuple[str, Any]:
    try:
        value = await ID_OPS[op](scope, wid, token)
    except DBALError as exc:
        return ("raises", exc.code)
    if isinstance(value, pydbal.Page):
        return ("page", (value.total, len(value.items), value.has_more))
    if isinstance(value, pydbal.ExecutionStats):
        return ("stats", value.total)
    if value is None or isinstance(value, bool | int | list):
        return ("returns", value)
    return ("returns", type(value).__name__)


async def _b_state(raw: Any) -> list[Any]:
    out = []
    for table in ("workflows", "workflow_versions", "workflow_executions", "audit_log"):
        order = "id" if table == "audit_log" else "1"
        rows = await raw.fetch(
            f"SELECT * FROM dbal.{table} WHERE tenant_id = $1 ORDER BY {order}", TENANT_B
        )
        out.append([dict(r) for r in rows])
    return out


@pytest.mark.parametrize("op", sorted(ID_OPS))
async def test_other_tenants_id_is_like_a_missing_one(
    app: pydbal.Database, raw: Any, op: str
) -> None:
    globex = app.tenant(TENANT_B, user_id="gina", role="admin")
    b = await globex.workflows.create(valid_definition("B's"))
    await globex.workflows.update(b.id, {"nodes": valid_nodes()[:1], "edges": {}})  # history v1
    await globex.workflows.record_execution(b.id, "success", 2.0)
    b_lock = await globex.workflows.acquire_lock(b.id, timeout_ms=60000)
    assert b_lock is not None
    # A has a workflow of its own, so "nothing found" is not just an empty tenant
    await app.tenant(TENANT_A, user_id="alice", role="admin").workflows.create(
        valid_definition("A's")
    )
    before = await _b_state(raw)
    for role in ("admin", "god", "supergod", "user"):
        scope = app.tenant(TENANT_A, user_id=f"{role}-1", role=role)
        missing = await _outcome(op, scope, uuid.uuid4(), b_lock.token)
        foreign = await _outcome(op, scope, b.id, b_lock.token)
        assert foreign == missing, f"{op} as {role}: B's id {foreign} vs missing id {missing}"
        assert foreign[1] != ErrorCode.CROSS_TENANT_ACCESS_DENIED
        assert await _b_state(raw) == before, f"{op} as {role} changed tenant B's data"


async def test_cross_tenant_payload_cannot_switch_tenant(app: pydbal.Database, raw: Any) -> None:
    acme = app.tenant(TENANT_A, user_id="alice", role="supergod")
    for call in (
        lambda: acme.workflows.create(valid_definition("x", tenant_id=TENANT_B)),
        lambda: acme.workflows.create_many([valid_definition("y", tenantId=TENANT_B)]),
        lambda: acme.workflows.upsert(
            "z", valid_definition("z", tenant_id=TENANT_B), {"description": "d"}
        ),
    ):
        with pytest.raises(DBALError) as info:
            await call()
        assert info.value.code == ErrorCode.TENANT_MISMATCH
    wf = await acme.workflows.create(valid_definition("mine"))
    with pytest.raises(DBALError) as info:
        await acme.workflows.update(wf.id, {"tenantId": TENANT_B})
    assert info.value.code == ErrorCode.TENANT_MISMATCH
    with pytest.raises(DBALError) as info:
        await acme.workflows.upsert("mine", {}, {"tenant_id": TENANT_B})
    assert info.value.code == ErrorCode.TENANT_MISMATCH
    # filters cannot name a tenant either
    with pytest.raises(DBALError) as info:
        await acme.workflows.list({"tenant_id": TENANT_B})
    assert info.value.code == ErrorCode.VALIDATION_ERROR
    assert (
        await raw.fetchval("SELECT count(*) FROM dbal.workflows WHERE tenant_id=$1", TENANT_B) == 0
    )


async def test_search_and_lists_never_show_other_tenants(app: pydbal.Database) -> None:
    acme = app.tenant(TENANT_A, user_id="alice", role="supergod")
    globex = app.tenant(TENANT_B, user_id="gina", role="supergod")
    await globex.workflows.create(valid_definition("Secret Globex Plan", tags=["secret"]))
    assert await acme.workflows.search("Secret Globex Plan") == []
    assert await acme.workflows.search("Secret Globex Plam") == []
    assert (await acme.workflows.list()).total == 0
    assert await acme.workflows.find_by_field("tags", "secret") == []
    assert await acme.workflows.find_by_field("created_by", "gina") == []
    assert await acme.workflows.audit() == []


async def test_upsert_update_path_rejects_foreign_create_payload(
    app: pydbal.Database, raw: Any
) -> None:
    acme = app.tenant(TENANT_A, user_id="alice", role="admin")
    wf = await acme.workflows.create(valid_definition("mine"))
    before = dict(await raw.fetchrow("SELECT * FROM dbal.workflows WHERE id = $1", wf.id))
    with pytest.raises(DBALError) as info:
        await acme.workflows.upsert("mine", {"tenant_id": TENANT_B}, {"description": "x"})
    assert info.value.code == ErrorCode.TENANT_MISMATCH
    after = dict(await raw.fetchrow("SELECT * FROM dbal.workflows WHERE id = $1", wf.id))
    assert after == before
