"""Routing through a Citus coordinator: one tenant's call goes to the one worker holding it.

Each call below is the statement pydbal sends (``pydbal.queries``), made on an app-login
connection to the coordinator with ``citus.log_remote_commands`` on: the coordinator reports
every command it sends to a node. A delegated call is exactly one command, to the worker that
holds the tenant's shard group, and nothing else (the function runs there, locally).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from dbhelpers import create_workflow

from pydbal import queries as q

from .conftest import node_of, remote_nodes, tenants_on_two_workers
from conftest import TestDatabase

pytestmark = pytest.mark.citus


def tenant_calls(conn: Any, tenant: str, wf: uuid.UUID) -> dict[str, Any]:
    """The statements pydbal sends for one tenant's calls, ready to run on ``conn``."""
    ctx = (tenant, "u1", "admin")
    release = (
        "SELECT dbal.release_lock(p_workflow => $4::uuid, p_token => NULL::bigint, "
        "p_tenant => $1::text, p_user => $2::text, p_role => $3::text)"
    )
    now = datetime.now(UTC)
    return {
        "get": lambda: conn.fetch(q.GET, *ctx, wf),
        "list": lambda: conn.fetch(q.LIST, *ctx, None, "name", False, 0, 20, None, None),
        "acquire_lock": lambda: conn.fetch(q.ACQUIRE_LOCK, *ctx, wf, 30_000),
        "record_execution": lambda: conn.fetch(
            q.RECORD_EXECUTION, *ctx, wf, "success", 12.5, None, None, now, None
        ),
        "release_lock": lambda: conn.fetch(release, *ctx, wf),
        "stats": lambda: conn.fetch(q.EXECUTION_STATS, *ctx, wf, None, None),
    }


async def test_each_call_of_a_tenant_touches_exactly_its_worker(db: TestDatabase) -> None:
    admin = await db.connect(as_app=False)
    conn = await db.connect()
    a, b = await tenants_on_two_workers(admin)
    for tenant in (a, b):
        wf = await create_workflow(conn, tenant, "routed")
        home = await node_of(admin, tenant)
        for name, call in tenant_calls(conn, tenant, wf).items():
            nodes = await remote_nodes(conn, call)
            assert nodes == [home], (tenant, name, nodes)
    # vacuity guard: a statement that is not one tenant's call fans out to both workers
    fan_out = await remote_nodes(admin, lambda: admin.fetch("SELECT count(*) FROM dbal.workflows"))
    assert len(set(fan_out)) == 2, fan_out


async def test_tenants_on_different_workers_do_not_wait_on_each_other(db: TestDatabase) -> None:
    admin = await db.connect(as_app=False)
    a, b = await tenants_on_two_workers(admin)
    assert await node_of(admin, a) != await node_of(admin, b)
    setup = await db.connect()
    wf_a = await create_workflow(setup, a, "busy")
    wf_b = await create_workflow(setup, b, "free")

    holder = await db.connect()
    waiter = await db.connect()
    other = await db.connect()
    tx = holder.transaction()
    await tx.start()
    try:
        # tenant A's worker: a transaction holds A's workflow row (acquire_lock's FOR UPDATE)
        assert (
            await holder.fetchval(
                "SELECT token FROM dbal.acquire_lock_lease(p_workflow => $1::uuid, p_timeout_ms => "
                "60000, p_tenant => $2::text, p_user => 'u1', p_role => 'admin')",
                wf_a,
                a,
            )
            == 1
        )
        # control: a second call on A's row waits for that transaction (times out)
        await waiter.execute("SET statement_timeout = 1000")
        with pytest.raises(asyncpg.QueryCanceledError):
            await waiter.fetch(q.ACQUIRE_LOCK, a, "u2", "admin", wf_a, 30_000)
        # tenant B on the other worker: served at once, writes included
        started = time.perf_counter()
        for _ in range(20):
            assert await other.fetch(q.GET, b, "u1", "admin", wf_b)
            await other.fetch(
                q.RECORD_EXECUTION,
                b,
                "u1",
                "admin",
                wf_b,
                "success",
                3.0,
                str(uuid.uuid4()),
                None,
                datetime.now(UTC),
                None,
            )
        assert time.perf_counter() - started < 5.0
    finally:
        await tx.rollback()
    # once A's transaction ends, A's waiter gets through
    await waiter.execute("RESET statement_timeout")
    assert await asyncio.wait_for(
        waiter.fetch(q.ACQUIRE_LOCK, a, "u2", "admin", wf_a, 30_000), timeout=5
    )
