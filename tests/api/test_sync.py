"""The synchronous facade: same scopes, methods, results and errors as the async API, driven from
several threads at once (as a WSGI server would), with the cross-tenant isolation tests run
through it. Plain ``def`` tests: no event loop in the calling thread, as in Django or Flask."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import pydbal
from pydbal import DBALError, ErrorCode

from .conftest import TENANT_A, TENANT_B, valid_definition, valid_nodes
from .test_cross_tenant import ID_OPS


@pytest.fixture
def sync_app(db: Any) -> Iterator[pydbal.SyncDatabase]:
    with pydbal.connect_sync(db.app_dsn, max_size=4, cache={"revalidate": False}) as database:
        yield database


@pytest.fixture
def sync_su(db: Any) -> Iterator[pydbal.SyncDatabase]:
    with pydbal.connect_sync(db.dsn, max_size=2, cache={"revalidate": False}) as database:
        yield database


def test_same_methods_results_and_errors(sync_app: pydbal.SyncDatabase) -> None:
    acme = sync_app.tenant(TENANT_A, user_id="alice", role="admin")
    assert (acme.tenant_id, acme.user_id, acme.role) == (TENANT_A, "alice", "admin")
    wf = acme.workflows.create(valid_definition("sync one", tags=["s"]))
    assert isinstance(wf, pydbal.Workflow) and wf.version == 1
    assert acme.workflows.get(wf.id) == wf
    page = acme.workflows.list({"tags": ["s"]}, {"field": "name", "direction": "asc"})
    assert isinstance(page, pydbal.Page) and [w.id for w in page.items] == [wf.id]
    updated = acme.workflows.update(wf.id, {"description": "d"}, expected_version=1)
    assert updated.version == 2
    with pytest.raises(DBALError) as info:
        acme.workflows.update(wf.id, {"description": "e"}, expected_version=1)
    assert info.value.code == ErrorCode.CONFLICT
    with pytest.raises(DBALError) as info:
        acme.workflows.create(valid_definition("sync one"))
    assert info.value.code == ErrorCode.CONFLICT
    with pytest.raises(DBALError) as info:
        sync_app.tenant(TENANT_A, user_id="u", role="nobody")
    assert info.value.code == ErrorCode.VALIDATION_ERROR
    with acme.workflows.executing(wf.id) as run:
        assert run.lock.workflow_id == wf.id
    assert run.recorded is not None and run.recorded.outcome
    stats = acme.workflows.get_execution_stats(wf.id)
    assert stats.total == 1
    with pytest.raises(RuntimeError, match="boom"), acme.workflows.executing(wf.id):
        raise RuntimeError("boom")
    assert acme.workflows.get_execution_stats(wf.id).total == 2
    assert [e.status for e in acme.workflows.executions(wf.id)].count("failure") == 1
    assert sync_app.health().status == "healthy"
    assert acme.workflows.delete(wf.id) is True


def test_every_async_method_has_a_blocking_twin() -> None:
    from pydbal.sync_workflows import SyncWorkflows
    from pydbal.workflows import Workflows

    public = {n for n in vars(Workflows) if not n.startswith("_") and callable(vars(Workflows)[n])}
    assert public <= set(vars(SyncWorkflows)), public - set(vars(SyncWorkflows))


def test_many_threads_at_once(sync_app: pydbal.SyncDatabase) -> None:
    loop_threads: set[str] = set()

    def request(n: int) -> tuple[str, int]:
        tenant = TENANT_A if n % 2 else TENANT_B
        scope = sync_app.tenant(tenant, user_id=f"u{n}", role="admin")
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()  # like a Flask/Django worker: no loop here
        wf = scope.workflows.create(valid_definition(f"t{n}"))
        got = scope.workflows.get(wf.id)
        assert got is not None and got.tenant_id == tenant
        total = scope.workflows.list(limit=100).total
        loop_threads.add(threading.current_thread().name)
        return tenant, total

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(request, range(40)))
    assert len(loop_threads) == 8
    for tenant, total in results:
        assert 1 <= total <= 20, (tenant, total)
    a = sync_app.tenant(TENANT_A, user_id="x", role="admin").workflows.list(limit=100)
    b = sync_app.tenant(TENANT_B, user_id="x", role="admin").workflows.list(limit=100)
    assert a.total == b.total == 20
    assert all(w.tenant_id == TENANT_A for w in a.items)
    assert all(w.tenant_id == TENANT_B for w in b.items)
    assert {int(w.name[1:]) % 2 for w in a.items} == {1}


def _sync_outcome(op: str, scope: pydbal.SyncTenant, wid: Any, token: int) -> tuple[str, Any]:
    try:
        if op == "executing":
            with scope.workflows.executing(wid):
                value: Any = "ran"
        else:
            value = ID_OPS[op](scope, wid, token)  # type: ignore[arg-type]
    except DBALError as exc:
        return ("raises", exc.code)
    if isinstance(value, pydbal.Page):
        return ("page", (value.total, len(value.items), value.has_more))
    if isinstance(value, pydbal.ExecutionStats):
        return ("stats", value.total)
    if value is None or isinstance(value, bool | int | list):
        return ("returns", value)
    return ("returns", type(value).__name__)


def _b_state(su: pydbal.SyncDatabase) -> list[Any]:
    out = []
    for table in ("workflows", "workflow_versions", "workflow_executions", "audit_log"):
        order = "id" if table == "audit_log" else "1"
        rows = su.fetch(
            f"SELECT * FROM dbal.{table} WHERE tenant_id = $1 ORDER BY {order}", TENANT_B
        )
        out.append([dict(r) for r in rows])
    return out


def test_isolation_through_the_facade(
    sync_app: pydbal.SyncDatabase, sync_su: pydbal.SyncDatabase
) -> None:
    globex = sync_app.tenant(TENANT_B, user_id="gina", role="admin").workflows
    b = globex.create(valid_definition("Globex secret plan"))
    globex.update(b.id, {"nodes": valid_nodes()[:1], "edges": {}})
    globex.record_execution(b.id, "success", 2.0)
    b_lock = globex.acquire_lock(b.id, timeout_ms=60000)
    assert b_lock is not None
    sync_app.tenant(TENANT_A, user_id="alice", role="admin").workflows.create(
        valid_definition("A's")
    )
    before = _b_state(sync_su)
    scopes = [sync_app.tenant(TENANT_A, user_id=f"{r}-1", role=r) for r in ("admin", "user")]

    def check(op: str) -> None:
        for scope in scopes:
            missing = _sync_outcome(op, scope, uuid.uuid4(), b_lock.token)
            foreign = _sync_outcome(op, scope, b.id, b_lock.token)
            assert foreign == missing, f"{op} as {scope.role}: {foreign} vs {missing}"

    with ThreadPoolExecutor(max_workers=4) as pool:  # the ops, from several threads at once
        list(pool.map(check, sorted(ID_OPS)))
    assert _b_state(sync_su) == before
    acme = sync_app.tenant(TENANT_A, user_id="alice", role="supergod").workflows
    assert acme.search("secret") == [] and acme.search("Globex secret plan") == []
    assert acme.list().total == 1
    assert acme.get(b.id) is None and acme.delete(b.id) is False


def test_called_from_its_own_loop_raises_instead_of_deadlocking(
    sync_app: pydbal.SyncDatabase,
) -> None:
    acme = sync_app.tenant(TENANT_A, user_id="alice", role="admin")

    async def inside() -> None:
        acme.workflows.list()

    with pytest.raises(RuntimeError, match="its own event loop"):
        sync_app._portal.call(inside())


def test_close_stops_the_thread_and_refuses_calls(db: Any) -> None:
    before = {t.name for t in threading.enumerate()}
    database = pydbal.connect_sync(db.app_dsn, max_size=1)
    acme = database.tenant(TENANT_A, user_id="alice", role="admin")
    acme.workflows.list()
    database.close()
    database.close()  # idempotent
    time.sleep(0.05)
    assert {t.name for t in threading.enumerate()} <= before | {"MainThread"}
    with pytest.raises(pydbal.DatabaseClosedError):
        acme.workflows.list()


def test_connect_errors_are_the_async_ones(db: Any) -> None:
    threads = threading.active_count()
    with pytest.raises(OSError):
        pydbal.connect_sync("postgresql://postgres@127.0.0.1:1/nothing")
    assert threading.active_count() == threads  # the loop thread was stopped
