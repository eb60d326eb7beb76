"""The access matrix: 4 roles x every write operation, plus the creator case for role user.

The target workflow is created by "alice" (admin); the caller is "rita" with the role under test.
A denied call raises FORBIDDEN (release_lock: LOCK_NOT_OWNED, per the SQL core's contract; bulk
writes: count 0) and changes nothing, checked against a superuser snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

import pydbal
from pydbal import ErrorCode, Lock, Tenant

from .conftest import ROLES, TENANT_A, raises_code, row, snapshot, valid_definition, valid_nodes


@dataclass
class Target:
    id: Any
    name: str
    lock: Lock | None


Op = Callable[[Tenant, Target], Awaitable[Any]]

OPS: dict[str, Op] = {
    "create": lambda s, t: s.workflows.create(valid_definition("new one")),
    "create_many": lambda s, t: s.workflows.create_many(
        [valid_definition("m1"), valid_definition("m2")]
    ),
    "update": lambda s, t: s.workflows.update(t.id, {"description": "changed"}),
    "delete": lambda s, t: s.workflows.delete(t.id),
    "upsert_update": lambda s, t: s.workflows.upsert(
        t.name, valid_definition(t.name), {"description": "changed"}
    ),
    "upsert_create": lambda s, t: s.workflows.upsert(
        "brand new", valid_definition("brand new"), {"description": "changed"}
    ),
    "update_many": lambda s, t: s.workflows.update_many({}, {"description": "changed"}),
    "delete_many": lambda s, t: s.workflows.delete_many({}),
    "set_enabled": lambda s, t: s.workflows.set_enabled(t.id, False),
    "clone": lambda s, t: s.workflows.clone(t.id),
    "import_workflow": lambda s, t: s.workflows.import_workflow(valid_definition("imported")),
    "restore": lambda s, t: s.workflows.restore(t.id, 1),
    "release_lock_of_another": lambda s, t: s.workflows.release_lock(t.id),
}
CREATE_OPS = {"create", "create_many", "upsert_create", "clone", "import_workflow"}
BULK_OPS = {"update_many", "delete_many"}


async def _target(
    app: pydbal.Database, *, creator: str, locked: bool, name: str = "target"
) -> Target:
    admin = app.tenant(TENANT_A, user_id=creator, role="admin")
    wf = await admin.workflows.create(valid_definition(name))
    await admin.workflows.update(wf.id, {"nodes": valid_nodes()[:1], "edges": {}})  # history v1
    lock = None
    if locked:
        holder = app.tenant(TENANT_A, user_id="holder", role="user")
        # enabled, valid, single node: lockable
        lock = await holder.workflows.acquire_lock(wf.id, timeout_ms=60000)
        assert lock is not None
    return Target(id=wf.id, name=wf.name, lock=lock)


def _denied_code(op: str) -> ErrorCode:
    return ErrorCode.LOCK_NOT_OWNED if op == "release_lock_of_another" else ErrorCode.FORBIDDEN


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("op", sorted(OPS))
async def test_access_matrix(app: pydbal.Database, raw: Any, role: str, op: str) -> None:
    target = await _target(app, creator="alice", locked=op == "release_lock_of_another")
    scope = app.tenant(TENANT_A, user_id="rita", role=role)
    before = await snapshot(raw)
    if role == "user":
        if op in BULK_OPS:
            assert await OPS[op](scope, target) == 0
        else:
            with raises_code(_denied_code(op)) as info:
                await OPS[op](scope, target)
            assert info.value.message
        assert await snapshot(raw) == before, f"denied {op} changed something"
        return
    result = await OPS[op](scope, target)
    after = await snapshot(raw)
    assert after != before, f"{op} as {role} changed nothing"
    stored = await row(raw, target.id)
    if op in ("delete", "delete_many"):
        assert stored is not None and stored["archived_at"] is not None  # archived, kept
        assert result is True or result == 1
    elif op in ("update", "upsert_update", "update_many"):
        assert stored is not None and stored["description"] == "changed"
        assert stored["updated_by"] == "rita"
    elif op == "set_enabled":
        assert stored is not None and stored["enabled"] is False
    elif op == "restore":
        assert stored is not None and stored["version"] == 3
        assert len(json.loads(stored["nodes"])) == 2
    elif op == "release_lock_of_another":
        assert result is True
        assert stored is not None and stored["is_locked"] is False
    else:
        assert op in CREATE_OPS
        created = [w for w in after["workflows"] if w["created_by"] == "rita"]
        assert created, f"{op} as {role} created nothing by rita"
        assert all(w["tenant_id"] == TENANT_A for w in created)


CREATOR_OPS = [
    "update",
    "delete",
    "upsert_update",
    "update_many",
    "delete_many",
    "set_enabled",
    "restore",
]


@pytest.mark.parametrize("op", CREATOR_OPS)
async def test_role_user_may_change_own_workflows(app: pydbal.Database, raw: Any, op: str) -> None:
    target = await _target(app, creator="rita", locked=False)
    other = await _target(app, creator="alice", locked=False, name="alice's")
    other_before = await row(raw, other.id)
    scope = app.tenant(TENANT_A, user_id="rita", role="user")
    result = await OPS[op](scope, target)
    stored = await row(raw, target.id)
    if op in ("delete", "delete_many"):
        assert stored is not None and stored["archived_at"] is not None  # archived, kept
        assert result is True or result == 1
    elif op in ("update", "upsert_update", "update_many"):
        assert stored is not None and stored["description"] == "changed"
        if op == "update_many":
            assert result == 1
    elif op == "set_enabled":
        assert stored is not None and stored["enabled"] is False
    else:
        assert stored is not None and stored["version"] == 3
    assert await row(raw, other.id) == other_before


@pytest.mark.parametrize("role", ROLES)
async def test_every_role_may_read_and_execute(app: pydbal.Database, role: str) -> None:
    target = await _target(app, creator="alice", locked=False)
    scope = app.tenant(TENANT_A, user_id="rita", role=role)
    assert await scope.workflows.get(target.id) is not None
    assert (await scope.workflows.list()).total == 1
    assert len(await scope.workflows.history(target.id)) == 1
    lock = await scope.workflows.acquire_lock(target.id)
    assert lock is not None
    rec = await scope.workflows.record_execution(target.id, "success", 1.0, lock=lock)
    assert rec.outcome == "recorded"
    assert await scope.workflows.release_lock(target.id, lock) is True
    report = await scope.workflows.validate(target.id)
    assert report.valid


async def test_holder_releases_own_lock_as_user(app: pydbal.Database) -> None:
    target = await _target(app, creator="alice", locked=True)
    holder = app.tenant(TENANT_A, user_id="holder", role="user")
    with raises_code(ErrorCode.LOCK_NOT_OWNED):
        await holder.workflows.release_lock(target.id)  # without its token
    assert await holder.workflows.release_lock(target.id, target.lock) is True


def test_unknown_role_and_bad_scope_are_rejected_without_io(app: pydbal.Database) -> None:
    for kwargs in (
        {"tenant_id": "acme", "user_id": "u", "role": "root"},
        {"tenant_id": "", "user_id": "u", "role": "user"},
        {"tenant_id": "acme", "user_id": "", "role": "user"},
        {"tenant_id": "x" * 256, "user_id": "u", "role": "user"},
    ):
        with raises_code(ErrorCode.VALIDATION_ERROR):
            app.tenant(kwargs["tenant_id"], user_id=kwargs["user_id"], role=kwargs["role"])
